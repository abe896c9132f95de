"""vLLM's HTTP routes (vllm/entrypoints/openai/api_server.py) on top of the shared OpenAI layer."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request as HttpRequest
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .generation import Request
from .metrics import VllmMetrics
from .openai_api import ApiError, OpenAIServer, Prepared

VERSION = "0.11.0"

# vllm/entrypoints/chat_utils.py resolve_hf_chat_template -> ValueError -> 400.
NO_TEMPLATE = (
    "As of transformers v4.44, default chat template is no longer allowed, so you must provide "
    "a chat template if the tokenizer does not define one."
)


class VllmServer(OpenAIServer):
    owned_by = "vllm"
    no_template_message = NO_TEMPLATE

    def __init__(self, *, metrics: VllmMetrics, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.metrics = metrics
        self.engine_dead = False

    def error_body(self, status: int, message: str, err_type: str) -> dict[str, Any]:
        # protocol.py ErrorResponse(error=ErrorInfo(message, type, param, code)) since v0.10.2.
        return {"error": {"message": message, "type": err_type, "param": None, "code": status}}

    def check_model(self, model: Any) -> None:
        # serving_engine.py _check_model: an unknown name is a 404.
        if model is None or model in self.served_names:
            return
        raise ApiError(404, f"The model `{model}` does not exist.", "NotFoundError")

    def limit_max_tokens(self, prompt_len: int, max_tokens: int | None) -> int:
        # serving_engine.py _validate_input / renderer _create_tokens_prompt.
        n, limit = prompt_len, self.max_model_len
        if n > limit or (max_tokens is None and n >= limit):
            raise ApiError(
                400,
                f"This model's maximum context length is {limit} tokens. However, your request "
                f"has {n} input tokens. Please reduce the length of the input messages.",
            )
        if max_tokens is None:
            return limit - n
        if n + max_tokens > limit:
            raise ApiError(
                400,
                f"'max_tokens' or 'max_completion_tokens' is too large: {max_tokens}. This "
                f"model's maximum context length is {limit} tokens and your request has {n} "
                f"input tokens ({max_tokens} > {limit} - {n}).",
            )
        return max_tokens

    def choice_extras(self, finish: str, stop: str | None) -> dict[str, Any]:
        return {"stop_reason": stop}

    def observe(self, req: Request, prepared: Prepared, finish: str) -> None:
        m, lv = self.metrics, self.metrics.label_values
        reason = "abort" if req.aborted or req.error else finish
        m.success.labels(*lv, reason).inc()
        if req.error or req.aborted:
            return
        n = len(req.output_ids)
        m.prompt_tokens.labels(*lv).inc(req.prompt_len)
        m.generation_tokens.labels(*lv).inc(n)
        m.req_prompt_tokens.labels(*lv).observe(req.prompt_len)
        m.req_generation_tokens.labels(*lv).observe(n)
        m.req_max_tokens.labels(*lv).observe(prepared.max_tokens)
        m.prefix_queries.labels(*lv).inc(req.prompt_len)
        m.ttft.labels(*lv).observe(req.first_token - req.arrived)
        m.e2e.labels(*lv).observe(req.finished - req.arrived)
        m.queue_time.labels(*lv).observe(req.scheduled - req.arrived)
        m.prefill_time.labels(*lv).observe(req.first_token - req.scheduled)
        m.decode_time.labels(*lv).observe(req.finished - req.first_token)
        m.inference_time.labels(*lv).observe(req.finished - req.scheduled)
        if n > 1:
            per_token = (req.finished - req.first_token) / (n - 1)
            for _ in range(n - 1):
                m.itl.labels(*lv).observe(per_token)
                m.tpot.labels(*lv).observe(per_token)

    def routes(self) -> list[Route]:
        return [
            Route("/health", self.h_health, methods=["GET"]),
            Route("/ping", self.h_ping, methods=["GET", "POST"]),
            Route("/version", self.h_version, methods=["GET"]),
            Route("/metrics", self.h_metrics, methods=["GET"]),
            Route("/tokenize", self.h_tokenize, methods=["POST"]),
            Route("/detokenize", self.h_detokenize, methods=["POST"]),
            *super().routes(),
        ]

    async def h_health(self, request: HttpRequest) -> Response:
        # api_server.py health(): engine_client.check_health(); only a dead engine core is 503.
        if self.engine_dead or self.unhealthy:
            return Response(status_code=503)
        return Response(status_code=200)

    async def h_ping(self, request: HttpRequest) -> Response:
        return await self.h_health(request)

    async def h_version(self, request: HttpRequest) -> Response:
        return JSONResponse({"version": VERSION})

    async def h_metrics(self, request: HttpRequest) -> Response:
        s = self.scheduler
        body = self.metrics.render(len(s.running), len(s.waiting), s.kv_usage)
        return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")

    async def h_tokenize(self, request: HttpRequest) -> Response:
        # serving_tokenization.py: TokenizeCompletionRequest (prompt) or TokenizeChatRequest
        # (messages; add_special_tokens defaults to False there, True for prompt).
        data = await self.read_json(request)
        self.check_model(data.get("model"))
        if "messages" in data:
            text = self.render_chat(data)
            add_special = bool(data.get("add_special_tokens", False))
        elif isinstance(data.get("prompt"), str):
            text = data["prompt"]
            add_special = bool(data.get("add_special_tokens", True))
        else:
            raise ApiError(400, "prompt: Field required")
        ids = self.tok.encode(text, add_special_tokens=add_special)
        token_strs = None
        if data.get("return_token_strs"):
            token_strs = [self.tok.id_to_token(i) for i in ids]
        return JSONResponse(
            {
                "count": len(ids),
                "max_model_len": self.max_model_len,
                "tokens": ids,
                "token_strs": token_strs,
            }
        )

    async def h_detokenize(self, request: HttpRequest) -> Response:
        data = await self.read_json(request)
        self.check_model(data.get("model"))
        tokens = data.get("tokens")
        if not isinstance(tokens, list) or not all(isinstance(t, int) for t in tokens):
            raise ApiError(400, "tokens: Field required")
        if any(t < 0 or t >= self.tok.vocab_size for t in tokens):
            raise ApiError(400, f"Token id out of vocabulary (vocab size {self.tok.vocab_size})")
        return JSONResponse({"prompt": self.tok.decode(tokens, skip_special_tokens=True)})

"""SGLang's HTTP routes (sglang/srt/entrypoints/http_server.py) on the shared OpenAI layer."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request as HttpRequest
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from devstack.vllm_simulator.generation import Request, truncate_at_stop
from devstack.vllm_simulator.openai_api import ApiError, OpenAIServer, Prepared

from .metrics import SglangMetrics

VERSION = "0.5.5"
HEALTH_CHECK_TIMEOUT = 20  # http_server.py SGLANG_HEALTH_CHECK_TIMEOUT default
DEFAULT_MAX_NEW_TOKENS = 128  # sampling_params.py SamplingParams.max_new_tokens

# transformers' apply_chat_template without a template; SGLang's serving_chat.py returns it as 400.
NO_TEMPLATE = (
    "Cannot use chat template functions because tokenizer.chat_template is not set and no "
    "template argument was passed! For information about writing templates and setting the "
    "tokenizer.chat_template attribute, please see the documentation at "
    "https://huggingface.co/docs/transformers/main/en/chat_templating"
)


class SglangServer(OpenAIServer):
    owned_by = "sglang"
    no_template_message = NO_TEMPLATE

    def __init__(
        self,
        *,
        metrics: SglangMetrics | None,
        server_info: dict[str, Any],
        model_info: dict[str, Any],
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.metrics = metrics
        self.server_info = server_info
        self.model_info = model_info
        self.ready = False  # ServerStatus.Starting until the warm-up request succeeded
        self.max_req_len = min(self.max_model_len - 1, self.scheduler.kv_pool_tokens - 1)

    def error_body(self, status: int, message: str, err_type: str) -> dict[str, Any]:
        # entrypoints/openai/protocol.py ErrorResponse: object="error", flat fields.
        return {
            "object": "error",
            "message": message,
            "type": err_type,
            "param": None,
            "code": status,
        }

    def limit_max_tokens(self, prompt_len: int, max_tokens: int | None) -> int:
        # managers/tokenizer_manager.py _validate_one_request, then the scheduler's cap.
        if prompt_len >= self.max_model_len:
            raise ApiError(
                400,
                f"The input ({prompt_len} tokens) is longer than the model's context length "
                f"({self.max_model_len} tokens).",
            )
        if max_tokens is not None and max_tokens + prompt_len >= self.max_req_len:
            raise ApiError(
                400,
                f"Requested token count exceeds the model's maximum context length of "
                f"{self.max_model_len} tokens. You requested a total of {max_tokens + prompt_len} "
                f"tokens: {prompt_len} tokens from the input messages and {max_tokens} tokens for "
                f"the completion. Please reduce the number of tokens in the input messages or the "
                f"completion to fit within the limit.",
            )
        cap = self.max_req_len - prompt_len - 1
        return max(1, min(max_tokens if max_tokens is not None else cap, cap))

    def completion_id(self) -> str:
        return uuid.uuid4().hex

    def chat_id(self) -> str:
        return uuid.uuid4().hex

    def choice_extras(self, finish: str, stop: str | None) -> dict[str, Any]:
        if finish != "stop":
            return {"matched_stop": None}
        return {"matched_stop": stop if stop is not None else self.answerer.eos_id}

    def observe(self, req: Request, prepared: Prepared, finish: str) -> None:
        m = self.metrics
        if m is None or req.error or req.aborted:
            return
        tl = m.tok_labels
        n = len(req.output_ids)
        m.prompt_tokens.labels(**tl).inc(req.prompt_len)
        m.generation_tokens.labels(**tl).inc(n)
        m.num_requests.labels(**tl).inc()
        m.ttft.labels(**tl).observe(req.first_token - req.arrived)
        m.e2e.labels(**tl).observe(req.finished - req.arrived)
        if n > 1:
            per_token = (req.finished - req.first_token) / (n - 1)
            for _ in range(n - 1):
                m.itl.labels(**tl).observe(per_token)
        if m.prompt_hist is not None and m.generation_hist is not None:
            m.prompt_hist.labels(**tl).observe(req.prompt_len)
            m.generation_hist.labels(**tl).observe(n)

    def routes(self) -> list[Route]:
        routes = [
            Route("/health", self.h_health, methods=["GET"]),
            Route("/health_generate", self.h_health, methods=["GET"]),
            Route("/get_model_info", self.h_model_info, methods=["GET"]),
            Route("/model_info", self.h_model_info, methods=["GET"]),
            Route("/get_server_info", self.h_server_info, methods=["GET"]),
            Route("/server_info", self.h_server_info, methods=["GET"]),
            Route("/generate", self.h_generate, methods=["POST", "PUT"]),
            Route("/v1/tokenize", self.h_tokenize, methods=["POST"]),
            Route("/v1/detokenize", self.h_detokenize, methods=["POST"]),
            *super().routes(),
        ]
        if self.metrics is not None:
            routes.append(Route("/metrics", self.h_metrics, methods=["GET"]))
        return routes

    async def h_health(self, request: HttpRequest) -> Response:
        # http_server.py health_generate (both paths): 503 while starting; otherwise one token
        # must come out within HEALTH_CHECK_TIMEOUT seconds.
        if not self.ready or self.unhealthy:
            return Response(status_code=503)
        if self.scheduler.running:  # busy: the running batch already proves progress
            return Response(status_code=200)
        probe = Request(prompt_len=1, output_ids=[self.answerer.word_ids[0]], reserve=2)
        self.scheduler.submit(probe)
        try:
            await asyncio.wait_for(self._until_done(probe), HEALTH_CHECK_TIMEOUT)
        except TimeoutError:
            probe.abort()
            return Response(status_code=503)
        return Response(status_code=503 if probe.error else 200)

    @staticmethod
    async def _until_done(req: Request) -> None:
        while not req.done:
            await req.progress(req.emitted)

    async def h_model_info(self, request: HttpRequest) -> Response:
        return JSONResponse(self.model_info)

    async def h_server_info(self, request: HttpRequest) -> Response:
        s = self.scheduler
        info = {
            **self.server_info,
            "internal_states": [
                {
                    "last_gen_throughput": 0.0,
                    "max_total_num_tokens": s.kv_pool_tokens,
                    "max_running_requests": s.max_running,
                }
            ],
            "version": VERSION,
        }
        return JSONResponse(info)

    async def h_metrics(self, request: HttpRequest) -> Response:
        assert self.metrics is not None
        s = self.scheduler
        generated, s.generated_since = s.generated_since, 0
        body = self.metrics.render(len(s.running), len(s.waiting), s.kv_used, s.kv_usage, generated)
        return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")

    # --- /v1/tokenize, /v1/detokenize (entrypoints/openai/serving_tokenize.py) ---------------

    async def h_tokenize(self, request: HttpRequest) -> Response:
        data = await self.read_json(request)
        add_special = bool(data.get("add_special_tokens", True))
        # max_model_len is the tokenizer's model_max_length (transformers' 1e30 when unset),
        # not the server's context length.
        max_len = self.tok.model_max_length or int(1e30)
        prompt = data.get("prompt")
        if isinstance(prompt, str):
            ids = self.tok.encode(prompt, add_special_tokens=add_special)
            return JSONResponse({"tokens": ids, "count": len(ids), "max_model_len": max_len})
        if isinstance(prompt, list) and all(isinstance(p, str) for p in prompt):
            lists = [self.tok.encode(p, add_special_tokens=add_special) for p in prompt]
            return JSONResponse(
                {"tokens": lists, "count": [len(i) for i in lists], "max_model_len": max_len}
            )
        raise ApiError(400, f"Invalid prompt type: {type(prompt)}. Expected str or List[str].")

    async def h_detokenize(self, request: HttpRequest) -> Response:
        data = await self.read_json(request)
        tokens = data.get("tokens")
        skip = bool(data.get("skip_special_tokens", True))
        if isinstance(tokens, list) and not tokens:
            return JSONResponse({"text": ""})
        if isinstance(tokens, list) and all(isinstance(t, int) for t in tokens):
            return JSONResponse({"text": self.tok.decode(tokens, skip_special_tokens=skip)})
        if isinstance(tokens, list) and all(isinstance(t, list) for t in tokens):
            texts = [self.tok.decode(t, skip_special_tokens=skip) for t in tokens]
            return JSONResponse({"text": texts})
        raise ApiError(400, "Invalid input: 'tokens' must be a list of integers.")

    # --- native /generate -------------------------------------------------------------------

    async def h_generate(self, request: HttpRequest) -> Response:
        data = await self.read_json(request)
        params = data.get("sampling_params") or {}
        try:
            if isinstance(data.get("input_ids"), list):
                prompt_ids = [int(i) for i in data["input_ids"]]
            elif isinstance(data.get("text"), str):
                prompt_ids = self.tok.encode(data["text"], add_special_tokens=True)
            else:
                raise ApiError(400, "Either text, input_ids or input_embeds should be provided.")
            requested = params.get("max_new_tokens", DEFAULT_MAX_NEW_TOKENS)
            max_tokens = self.limit_max_tokens(len(prompt_ids), requested)
        except ApiError as exc:
            # http_server.py generate_request: ValueError -> {"error": {"message": ...}}, 400.
            return JSONResponse({"error": {"message": exc.message}}, status_code=400)
        stop = params.get("stop") or []
        stops = [stop] if isinstance(stop, str) else [str(s) for s in stop]
        ids, finish = self.answerer.answer(prompt_ids, max_tokens)
        ids, stop_text = truncate_at_stop(self.answerer, ids, stops)
        stop_hit = None
        if stop_text is not None:
            finish, stop_hit = "stop", next(s for s in stops if s in self.answerer.text(ids))
        prepared = Prepared(
            prompt_ids, max_tokens, requested, bool(data.get("stream")), False, stops
        )
        req = Request(
            prompt_len=len(prompt_ids), output_ids=ids, reserve=len(prompt_ids) + max_tokens
        )
        self.scheduler.submit(req)
        rid = data.get("rid") or uuid.uuid4().hex

        def meta(upto: int, last: bool) -> dict[str, Any]:
            reason: dict[str, Any] | None = None
            if last:
                if finish == "length":
                    reason = {"type": "length", "length": len(ids)}
                else:
                    reason = {
                        "type": "stop",
                        "matched": stop_hit if stop_hit is not None else self.answerer.eos_id,
                    }
            return {
                "id": rid,
                "finish_reason": reason,
                "prompt_tokens": req.prompt_len,
                "weight_version": "default",
                "completion_tokens": upto,
                "cached_tokens": 0,
                "e2e_latency": time.monotonic() - started,
            }

        started = time.monotonic()
        if prepared.stream:

            async def chunks() -> AsyncIterator[dict[str, Any]]:
                seen = 0
                while True:
                    await req.progress(seen)
                    if req.error:
                        yield {"error": {"message": req.error}}
                        return
                    seen, last = req.emitted, req.done
                    # Cumulative text in every chunk (SGLang's default, not incremental).
                    yield {
                        "text": self.text_of(req, seen, stop_hit),
                        "output_ids": ids[:seen],
                        "meta_info": meta(seen, last),
                    }
                    if last:
                        break
                self.finished(req, prepared, finish)

            return self.sse(chunks(), req, prepared)
        await self.wait_done(req, request)
        self.finished(req, prepared, finish)
        return JSONResponse(
            {
                "text": self.text_of(req, len(ids), stop_hit),
                "output_ids": ids,
                "meta_info": meta(len(ids), True),
            }
        )

    async def wait_done(self, req: Request, request: HttpRequest) -> None:
        while not req.done:
            await req.progress(req.emitted)
        if req.error:
            raise ApiError(500, req.error, "InternalServerError")

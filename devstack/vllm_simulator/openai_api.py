"""The OpenAI-compatible routes both vLLM and SGLang serve, with the engine-specific parts
(error body, length checks, ids, extra choice fields, metrics) left to subclasses.

Shapes follow vllm/entrypoints/openai/protocol.py, serving_chat.py and serving_completion.py
(CompletionResponse, ChatCompletionResponse, the chunk types and UsageInfo) and
sglang/srt/entrypoints/openai/protocol.py, serving_chat.py, serving_completions.py, which copy
them. Streaming is Server-Sent Events: one ``data: {json}`` per chunk, then ``data: [DONE]``;
``stream_options.include_usage`` adds a last chunk with ``choices: []`` and ``usage``.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import jinja2
from starlette.applications import Starlette
from starlette.requests import Request as HttpRequest
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from .generation import Answerer, Request, Scheduler, truncate_at_stop
from .weights import ModelTokenizer as Tokenizer
from .weights import NoChatTemplate


class ApiError(Exception):
    def __init__(self, status: int, message: str, err_type: str = "BadRequestError") -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.err_type = err_type


@dataclass
class Prepared:
    """A validated generation request."""

    prompt_ids: list[int]
    max_tokens: int
    requested_max_tokens: int | None
    stream: bool
    include_usage: bool
    stops: list[str]
    echo_prompt: str | None = None


def dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def message_text(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            str(p.get("text", "")) for p in content if isinstance(p, Mapping) and "text" in p
        )
    return str(content)


class OpenAIServer:
    """Engine-neutral part of the HTTP server. Subclasses set the class attributes and hooks."""

    owned_by = "vllm"
    no_template_message = ""

    def __init__(
        self,
        *,
        tokenizer: Tokenizer,
        answerer: Answerer,
        scheduler: Scheduler,
        served_names: Sequence[str],
        model_root: str,
        max_model_len: int,
        unhealthy: bool = False,
    ) -> None:
        self.tok = tokenizer
        self.answerer = answerer
        self.scheduler = scheduler
        self.served_names = list(served_names)
        self.model_root = model_root
        self.max_model_len = max_model_len
        self.unhealthy = unhealthy
        self.created = int(time.time())

    # --- hooks for the engines ----------------------------------------------------------------

    def error_body(self, status: int, message: str, err_type: str) -> dict[str, Any]:
        raise NotImplementedError

    def check_model(self, model: Any) -> None:
        """vLLM refuses unknown names; SGLang serves whatever is asked."""

    def limit_max_tokens(self, prompt_len: int, max_tokens: int | None) -> int:
        raise NotImplementedError

    def completion_id(self) -> str:
        return f"cmpl-{uuid.uuid4().hex}"

    def chat_id(self) -> str:
        return f"chatcmpl-{uuid.uuid4().hex}"

    def choice_extras(self, finish: str, stop: str | None) -> dict[str, Any]:
        return {}

    def observe(self, req: Request, prepared: Prepared, finish: str) -> None:
        """Record the finished request in the engine's metrics."""

    def routes(self) -> list[Route]:
        return [
            Route("/v1/models", self.h_models, methods=["GET"]),
            Route("/v1/completions", self.h_completions, methods=["POST"]),
            Route("/v1/chat/completions", self.h_chat, methods=["POST"]),
        ]

    def app(self) -> Starlette:
        return Starlette(
            routes=self.routes(),
            exception_handlers={ApiError: self._api_error},  # type: ignore[dict-item]
        )

    # --- helpers ------------------------------------------------------------------------------

    async def _api_error(self, request: HttpRequest, exc: ApiError) -> Response:
        return self.error(exc)

    def error(self, exc: ApiError) -> JSONResponse:
        return JSONResponse(self.error_body(exc.status, exc.message, exc.err_type), exc.status)

    async def read_json(self, request: HttpRequest) -> dict[str, Any]:
        try:
            data = json.loads(await request.body() or b"null")
        except json.JSONDecodeError as exc:
            raise ApiError(400, f"JSON decode error: {exc}") from None
        if not isinstance(data, dict):
            raise ApiError(400, "Input should be a valid dictionary or object")
        return data

    def model_card(self, name: str) -> dict[str, Any]:
        return {
            "id": name,
            "object": "model",
            "created": self.created,
            "owned_by": self.owned_by,
            "root": self.model_root,
            "parent": None,
            "max_model_len": self.max_model_len,
        }

    async def h_models(self, request: HttpRequest) -> Response:
        return JSONResponse(
            {"object": "list", "data": [self.model_card(n) for n in self.served_names]}
        )

    def render_chat(self, data: Mapping[str, Any]) -> str:
        messages = data.get("messages")
        if not isinstance(messages, list) or not messages:
            raise ApiError(400, "messages: Field required")
        plain = [
            {**m, "content": message_text(m.get("content"))}
            for m in messages
            if isinstance(m, dict)
        ]
        try:
            return self.tok.apply_chat_template(
                plain,
                add_generation_prompt=bool(data.get("add_generation_prompt", True)),
                tools=data.get("tools"),
            )
        except NoChatTemplate:
            raise ApiError(400, self.no_template_message) from None
        except jinja2.TemplateError as exc:  # raise_exception() in the template
            raise ApiError(400, str(exc)) from None

    def prepare(self, data: Mapping[str, Any], prompt_ids: list[int]) -> Prepared:
        raw_max = data.get("max_completion_tokens", data.get("max_tokens"))
        if raw_max is not None and (not isinstance(raw_max, int) or isinstance(raw_max, bool)):
            raise ApiError(400, "max_tokens: Input should be a valid integer")
        if raw_max is not None and raw_max < 1:
            raise ApiError(400, f"max_tokens must be at least 1, got {raw_max}.")
        stop = data.get("stop") or []
        stops = [stop] if isinstance(stop, str) else [str(s) for s in stop]
        options = data.get("stream_options") or {}
        stream = bool(data.get("stream", False))
        if options and not stream:
            raise ApiError(400, "Stream options can only be defined when `stream=True`.")
        return Prepared(
            prompt_ids=prompt_ids,
            max_tokens=self.limit_max_tokens(len(prompt_ids), raw_max),
            requested_max_tokens=raw_max,
            stream=stream,
            include_usage=bool(options.get("include_usage", False)),
            stops=stops,
        )

    def launch(self, p: Prepared) -> tuple[Request, str, str | None]:
        ids, finish = self.answerer.answer(p.prompt_ids, p.max_tokens)
        ids, stop_text = truncate_at_stop(self.answerer, ids, p.stops)
        stop_hit = None
        if stop_text is not None:
            finish = "stop"
            stop_hit = next(s for s in p.stops if s and s in self.answerer.text(ids))
        req = Request(
            prompt_len=len(p.prompt_ids), output_ids=ids, reserve=len(p.prompt_ids) + p.max_tokens
        )
        self.scheduler.submit(req)
        return req, finish, stop_hit

    def text_of(self, req: Request, upto: int, stop_hit: str | None) -> str:
        text = self.answerer.text(req.output_ids[:upto])
        if stop_hit is not None and stop_hit in text:
            text = text[: text.find(stop_hit)]
        return text

    def usage(self, req: Request) -> dict[str, Any]:
        n = len(req.output_ids)
        return {
            "prompt_tokens": req.prompt_len,
            "total_tokens": req.prompt_len + n,
            "completion_tokens": n,
            "prompt_tokens_details": None,
        }

    async def wait_done(self, req: Request, request: HttpRequest) -> None:
        while not req.done:
            await req.progress(req.emitted)
        if req.error:
            raise ApiError(500, req.error, "InternalServerError")

    def finished(self, req: Request, p: Prepared, finish: str) -> None:
        self.observe(req, p, finish)

    # --- completions -----------------------------------------------------------------------

    async def h_completions(self, request: HttpRequest) -> Response:
        data = await self.read_json(request)
        self.check_model(data.get("model"))
        prompt = data.get("prompt")
        if isinstance(prompt, list) and len(prompt) == 1:
            prompt = prompt[0]
        if isinstance(prompt, list) and all(isinstance(i, int) for i in prompt):
            prompt_ids = list(prompt)
        elif isinstance(prompt, str):
            prompt_ids = self.tok.encode(prompt, add_special_tokens=True)
        else:
            raise ApiError(400, "prompt: Field required")
        p = self.prepare(data, prompt_ids)
        if data.get("echo") and isinstance(prompt, str):
            p.echo_prompt = prompt
        req, finish, stop_hit = self.launch(p)
        rid, created, name = self.completion_id(), int(time.time()), self.response_model(data)
        if p.stream:
            return self.sse(
                self._completion_chunks(req, p, finish, stop_hit, rid, created, name), req, p
            )
        await self.wait_done(req, request)
        self.finished(req, p, finish)
        text = (p.echo_prompt or "") + self.text_of(req, len(req.output_ids), stop_hit)
        body = {
            "id": rid,
            "object": "text_completion",
            "created": created,
            "model": name,
            "choices": [
                {
                    "index": 0,
                    "text": text,
                    "logprobs": None,
                    "finish_reason": finish,
                    **self.choice_extras(finish, stop_hit),
                }
            ],
            "usage": self.usage(req),
        }
        return JSONResponse(body)

    async def _completion_chunks(
        self,
        req: Request,
        p: Prepared,
        finish: str,
        stop_hit: str | None,
        rid: str,
        created: int,
        name: str,
    ) -> AsyncIterator[dict[str, Any]]:
        sent, seen = "", 0
        while True:
            await req.progress(seen)
            if req.error:
                yield self.error_body(500, req.error, "InternalServerError")
                return
            seen = req.emitted
            text = self.text_of(req, seen, stop_hit)
            last = req.done
            delta, sent = text[len(sent) :], text
            if delta or last:
                yield {
                    "id": rid,
                    "object": "text_completion",
                    "created": created,
                    "model": name,
                    "choices": [
                        {
                            "index": 0,
                            "text": delta,
                            "logprobs": None,
                            "finish_reason": finish if last else None,
                            **(self.choice_extras(finish, stop_hit) if last else {}),
                        }
                    ],
                }
            if last:
                break
        self.finished(req, p, finish)
        if p.include_usage:
            yield {
                "id": rid,
                "object": "text_completion",
                "created": created,
                "model": name,
                "choices": [],
                "usage": self.usage(req),
            }

    # --- chat --------------------------------------------------------------------------------

    async def h_chat(self, request: HttpRequest) -> Response:
        data = await self.read_json(request)
        self.check_model(data.get("model"))
        prompt = self.render_chat(data)
        # The template carries its own BOS (vllm serving_chat.py: add_special_tokens=False).
        prompt_ids = self.tok.encode(
            prompt, add_special_tokens=bool(data.get("add_special_tokens", False))
        )
        p = self.prepare(data, prompt_ids)
        req, finish, stop_hit = self.launch(p)
        rid, created, name = self.chat_id(), int(time.time()), self.response_model(data)
        if p.stream:
            return self.sse(self._chat_chunks(req, p, finish, stop_hit, rid, created, name), req, p)
        await self.wait_done(req, request)
        self.finished(req, p, finish)
        body = {
            "id": rid,
            "object": "chat.completion",
            "created": created,
            "model": name,
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": self.text_of(req, len(req.output_ids), stop_hit),
                        "tool_calls": [],
                        "reasoning_content": None,
                    },
                    "logprobs": None,
                    "finish_reason": finish,
                    **self.choice_extras(finish, stop_hit),
                }
            ],
            "usage": self.usage(req),
        }
        return JSONResponse(body)

    async def _chat_chunks(
        self,
        req: Request,
        p: Prepared,
        finish: str,
        stop_hit: str | None,
        rid: str,
        created: int,
        name: str,
    ) -> AsyncIterator[dict[str, Any]]:
        def chunk(delta: dict[str, Any], reason: str | None) -> dict[str, Any]:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": reason}
            if reason is not None:
                choice.update(self.choice_extras(finish, stop_hit))
            return {
                "id": rid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": name,
                "choices": [choice],
            }

        # First chunk: the role (serving_chat.py chat_completion_stream_generator).
        yield chunk({"role": "assistant", "content": ""}, None)
        sent, seen = "", 0
        while True:
            await req.progress(seen)
            if req.error:
                yield self.error_body(500, req.error, "InternalServerError")
                return
            seen = req.emitted
            text = self.text_of(req, seen, stop_hit)
            last = req.done
            delta, sent = text[len(sent) :], text
            if delta or last:
                yield chunk(
                    {"content": delta} if delta or not last else {}, finish if last else None
                )
            if last:
                break
        self.finished(req, p, finish)
        if p.include_usage:
            yield {
                "id": rid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": name,
                "choices": [],
                "usage": self.usage(req),
            }

    def response_model(self, data: Mapping[str, Any]) -> str:
        model = data.get("model")
        return model if isinstance(model, str) and model else self.served_names[0]

    def sse(
        self, chunks: AsyncIterator[dict[str, Any]], req: Request, prepared: Prepared
    ) -> StreamingResponse:
        async def body() -> AsyncIterator[str]:
            try:
                async for c in chunks:
                    yield f"data: {dumps(c)}\n\n"
                yield "data: [DONE]\n\n"
            finally:
                # The client went away mid-stream: the engine aborts the request (frees its KV).
                if not req.done:
                    req.abort()
                    self.observe(req, prepared, "abort")

        return StreamingResponse(body(), media_type="text/event-stream")

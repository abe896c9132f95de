"""TGI's HTTP API (text-generation-router 3.x) as a raw ASGI app.

Raw ASGI rather than a framework keeps per-request overhead low: the simulator must sustain
thousands of small requests per second so that gateway benchmarks through it measure the
gateway. Shapes, status codes, headers and error texts follow router/src/server.rs, lib.rs,
chat.rs, validation.rs and infer/mod.rs.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from devstack.model_files import NoChatTemplate

from .config import Settings
from .engine import Engine, Sequence
from .faults import Faults
from .log import Log, fmt_duration
from .metrics import TgiMetrics
from .tokens import TokenModel

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

DEFAULT_GENERATION_LENGTH = 1024  # validation.rs: default max_new_tokens cap when unset
_JSON = (b"content-type", b"application/json")
# tower-http CorsLayer with AllowOrigin::any() answers every request with these.
_CORS = [
    (b"access-control-allow-origin", b"*"),
    (b"vary", b"origin, access-control-request-method, access-control-request-headers"),
]
_SSE_HEADERS = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache"),
]


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


class InferError(Exception):
    def __init__(self, status: int, error: str, error_type: str) -> None:
        super().__init__(error)
        self.status = status
        self.error = error
        self.error_type = error_type

    def body(self) -> dict[str, str]:
        return {"error": self.error, "error_type": self.error_type}


def validation_error(msg: str) -> InferError:
    return InferError(422, f"Input validation error: {msg}", "validation")


class BodyError(Exception):
    """axum ``Json`` extractor rejections: plain-text bodies."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.text = text


def _type_name(v: Any) -> str:
    if isinstance(v, bool):
        return f"boolean `{str(v).lower()}`"
    if isinstance(v, int):
        return f"integer `{v}`"
    if isinstance(v, float):
        return f"floating point `{v}`"
    if isinstance(v, str):
        return f'string "{v}"'
    if isinstance(v, list):
        return "sequence"
    if isinstance(v, dict):
        return "map"
    return "null"


class Fields:
    """Typed access to a JSON object with serde-like error messages."""

    def __init__(self, data: Any, path: str = "") -> None:
        if not isinstance(data, dict):
            raise self._err(path, data, "a map")
        self.d = data
        self.path = path

    def _err(self, key: str, v: Any, expected: str) -> BodyError:
        where = f"{key}: " if key else ""
        return BodyError(
            422,
            "Failed to deserialize the JSON body into the target type: "
            f"{where}invalid type: {_type_name(v)}, expected {expected} at line 1 column 1",
        )

    def _key(self, k: str) -> str:
        return f"{self.path}.{k}" if self.path else k

    def required(self, k: str) -> Any:
        if k not in self.d:
            raise BodyError(
                422,
                "Failed to deserialize the JSON body into the target type: "
                f"missing field `{k}` at line 1 column 1",
            )
        return self.d[k]

    def text(self, k: str, default: Any = None, required: bool = False) -> Any:
        v = self.required(k) if required else self.d.get(k, default)
        if v is None and not required:
            return default
        if not isinstance(v, str):
            raise self._err(self._key(k), v, "a string")
        return v

    def num(self, k: str, integer: bool = False, minimum: int | None = None) -> Any:
        v = self.d.get(k)
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise self._err(self._key(k), v, "u32" if integer else "f32")
        if integer:
            if isinstance(v, float):
                raise self._err(self._key(k), v, "u32")
            if minimum is not None and v < minimum:
                raise BodyError(
                    422,
                    "Failed to deserialize the JSON body into the target type: "
                    f"{self._key(k)}: invalid value: integer `{v}`, expected u32 "
                    "at line 1 column 1",
                )
        return v

    def flag(self, k: str, default: bool = False) -> bool:
        v = self.d.get(k)
        if v is None:
            return default
        if not isinstance(v, bool):
            raise self._err(self._key(k), v, "a boolean")
        return v

    def strings(self, k: str) -> list[str]:
        v = self.d.get(k)
        if v is None:
            return []
        if isinstance(v, str):
            return [v]
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            raise self._err(self._key(k), v, "a sequence of strings")
        return list(v)


@dataclass
class GenParams:
    best_of: int | None = None
    temperature: float | None = None
    repetition_penalty: float | None = None
    frequency_penalty: float | None = None
    top_k: int | None = None
    top_p: float | None = None
    typical_p: float | None = None
    do_sample: bool = False
    max_new_tokens: int | None = 100
    return_full_text: bool | None = None
    stop: list[str] = field(default_factory=list)
    truncate: int | None = None
    details: bool = False
    decoder_input_details: bool = False
    seed: int | None = None
    top_n_tokens: int | None = None

    @classmethod
    def parse(cls, raw: Any) -> GenParams:
        if raw is None:
            return cls()
        f = Fields(raw, "parameters")
        p = cls(
            best_of=f.num("best_of", integer=True, minimum=0),
            temperature=f.num("temperature"),
            repetition_penalty=f.num("repetition_penalty"),
            frequency_penalty=f.num("frequency_penalty"),
            top_k=f.num("top_k", integer=True),
            top_p=f.num("top_p"),
            typical_p=f.num("typical_p"),
            do_sample=f.flag("do_sample"),
            return_full_text=f.d.get("return_full_text"),
            stop=f.strings("stop"),
            truncate=f.num("truncate", integer=True, minimum=0),
            details=f.flag("details"),
            decoder_input_details=f.flag("decoder_input_details"),
            seed=f.num("seed", integer=True, minimum=0),
            top_n_tokens=f.num("top_n_tokens", integer=True, minimum=0),
        )
        # `max_new_tokens` defaults to 100 when absent; an explicit null means "unset".
        p.max_new_tokens = (
            f.num("max_new_tokens", integer=True, minimum=0) if ("max_new_tokens" in f.d) else 100
        )
        return p


@dataclass
class Plan:
    """A validated request: what the backend will generate."""

    inputs: str
    input_length: int
    max_new_tokens: int
    params: GenParams
    seq: Sequence
    seed: int | None
    eos: bool


class Simulator:
    """Shared state + the request handlers."""

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        metrics: TgiMetrics,
        tokens: TokenModel,
        faults: Faults,
        log: Log,
        *,
        version: str,
        git_sha: str,
        docker_label: str | None,
        model_sha: str | None,
        pipeline_tag: str | None,
        natural_tokens: int,
        compute_type: str,
    ) -> None:
        self.s = settings
        self.engine = engine
        self.m = metrics
        self.tk = tokens
        self.faults = faults
        self.log = log
        self.natural_tokens = natural_tokens
        self.max_concurrent = settings.args["max_concurrent_requests"]
        self.in_flight = 0
        self.max_input = settings.max_input_tokens
        self.max_total = settings.max_total_tokens
        self.payload_limit = settings.args["payload_limit"]
        api_key = settings.args["api_key"]
        self.auth = ("bearer " + api_key).lower() if api_key else None
        self.compute_type = compute_type.encode()
        self.model_id = settings.args["model_id"]
        self.version = version
        self.fingerprint = f"{version}-{docker_label or 'native'}"
        self.compat_return_full_text = pipeline_tag is None or pipeline_tag == "text-generation"
        self.info = {
            "model_id": self.model_id,
            "model_sha": model_sha,
            "model_pipeline_tag": pipeline_tag,
            "max_concurrent_requests": self.max_concurrent,
            "max_best_of": settings.args["max_best_of"],
            "max_stop_sequences": settings.args["max_stop_sequences"],
            "max_input_tokens": self.max_input,
            "max_total_tokens": self.max_total,
            "validation_workers": settings.args["validation_workers"],
            "max_client_batch_size": settings.args["max_client_batch_size"],
            "router": "text-generation-router",
            "version": version,
            "sha": git_sha,
            "docker_label": docker_label,
        }
        self._info_body = dumps(self.info)
        self._models_body = dumps(
            {
                "object": "list",
                "data": [
                    {
                        "id": self.model_id,
                        "object": "model",
                        "created": 0,
                        "owned_by": self.model_id,
                    }
                ],
            }
        )
        self._rng = random.Random()  # noqa: S311  (sampling seeds, not secrets)
        # (method, path) -> (handler, needs auth)
        self.routes: dict[tuple[str, str], tuple[Callable[..., Awaitable[None]], bool]] = {
            ("GET", "/health"): (self.h_health, False),
            ("GET", "/ping"): (self.h_health, False),
            ("GET", "/"): (self.h_health, False),
            ("GET", "/info"): (self.h_info, False),
            ("GET", "/metrics"): (self.h_metrics, False),
            ("GET", "/v1/models"): (self.h_models, False),
            ("GET", "/docs"): (self.h_docs, False),
            ("POST", "/generate"): (self.h_generate, True),
            ("POST", "/generate_stream"): (self.h_generate_stream, True),
            ("POST", "/"): (self.h_compat, True),
            ("POST", "/v1/chat/completions"): (self.h_chat, True),
            ("POST", "/v1/completions"): (self.h_completions, True),
            ("POST", "/tokenize"): (self.h_tokenize, True),
            ("POST", "/invocations"): (self.h_invocations, False),
            ("POST", "/chat_tokenize"): (self.h_chat_tokenize, False),
        }
        self._paths = {p for _, p in self.routes}

    # --- ASGI plumbing ----------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                while True:
                    msg = await receive()
                    if msg["type"] == "lifespan.startup":
                        await send({"type": "lifespan.startup.complete"})
                    elif msg["type"] == "lifespan.shutdown":
                        await send({"type": "lifespan.shutdown.complete"})
                        return
            return
        path = scope["path"]
        route = self.routes.get((scope["method"], path))
        if route is None:
            status = 405 if path in self._paths else 404
            await self._plain(send, status, b"")
            return
        handler, needs_auth = route
        if needs_auth and self.auth is not None:
            token = None
            for k, v in scope["headers"]:
                if k == b"authorization":
                    token = v.decode("latin-1")
                    break
            if token is None or token.lower() != self.auth:
                await self._plain(send, 401, b"")
                return
        try:
            await handler(scope, receive, send)
        except BodyError as exc:
            await self._plain(send, exc.status, exc.text.encode(), b"text/plain; charset=utf-8")

    async def _plain(
        self, send: Send, status: int, body: bytes, ctype: bytes | None = None
    ) -> None:
        headers = [(b"content-length", str(len(body)).encode()), *_CORS]
        if ctype:
            headers.insert(0, (b"content-type", ctype))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _json(
        self,
        send: Send,
        status: int,
        body: bytes,
        extra: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        headers = [_JSON, (b"content-length", str(len(body)).encode()), *_CORS]
        if extra:
            headers.extend(extra)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _error(self, send: Send, err: InferError) -> None:
        await self._json(send, err.status, dumps(err.body()))

    async def _read_json(self, scope: Scope, receive: Receive) -> Any:
        ctype = b""
        for k, v in scope["headers"]:
            if k == b"content-type":
                ctype = v.split(b";")[0].strip().lower()
                break
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                raise BodyError(400, "client disconnected")
            chunk = msg.get("body", b"")
            size += len(chunk)
            if size > self.payload_limit:
                raise BodyError(413, "Failed to buffer the request body: length limit exceeded")
            chunks.append(chunk)
            more = msg.get("more_body", False)
        if not (
            ctype == b"application/json"
            or (ctype.startswith(b"application/") and ctype.endswith(b"+json"))
        ):
            raise BodyError(415, "Expected request with `Content-Type: application/json`")
        raw = b"".join(chunks)
        try:
            return json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise BodyError(400, f"Failed to parse the request body as JSON: {exc}") from None

    # --- simple endpoints -------------------------------------------------------------------

    async def h_health(self, scope: Scope, receive: Receive, send: Send) -> None:
        unhealthy = self.faults.unhealthy or (
            self.faults.error_health and not self.engine.generation_healthy
        )
        if unhealthy:
            await self._json(send, 503, b'{"error":"unhealthy","error_type":"healthcheck"}')
        else:
            await self._plain(send, 200, b"")

    async def h_info(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._json(send, 200, self._info_body)

    async def h_models(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._json(send, 200, self._models_body)

    async def h_docs(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = b"<!doctype html><title>Text Generation Inference</title><p>Swagger UI (simulated)"
        await self._plain(send, 200, body, b"text/html")

    async def h_metrics(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._plain(send, 200, self.m.render().encode(), b"text/plain; charset=utf-8")

    async def h_tokenize(self, scope: Scope, receive: Receive, send: Send) -> None:
        data = await self._read_json(scope, receive)
        f = Fields(data)
        inputs = f.text("inputs", required=True)
        add_special = f.flag("add_special_tokens", True)
        toks = [
            {"id": t.id, "text": t.text, "start": t.start, "stop": t.stop}
            for t in self.tk.pieces(inputs, add_special)
        ]
        await self._json(send, 200, dumps(toks))

    async def h_chat_tokenize(self, scope: Scope, receive: Receive, send: Send) -> None:
        data = await self._read_json(scope, receive)
        self.m.request_count.inc()
        try:
            prompt = self._chat_prompt(Fields(data))
        except InferError as err:
            await self._error(send, err)
            return
        # router/src/server.rs get_chat_tokenize: the chat request becomes a GenerateRequest
        # with add_special_tokens=false (the template already wrote BOS).
        toks = [
            {"id": t.id, "text": t.text, "start": t.start, "stop": t.stop}
            for t in self.tk.pieces(prompt, False)
        ]
        await self._json(send, 200, dumps({"tokenize_response": toks, "templated_text": prompt}))

    # --- validation & scheduling (validation.rs / infer/mod.rs) -----------------------------

    def _acquire(self) -> None:
        if self.in_flight >= self.max_concurrent:
            self.m.request_failure.inc(err="overloaded")
            self.log.emit(
                "ERROR", "text_generation_router::infer", "Model is overloaded", "generate"
            )
            raise InferError(429, "Model is overloaded", "overloaded")
        self.in_flight += 1

    def _release(self) -> None:
        self.in_flight -= 1

    def _validate(self, inputs: str, p: GenParams, add_special_tokens: bool, stream: bool) -> Plan:
        try:
            return self._validate_inner(inputs, p, add_special_tokens, stream)
        except InferError as err:
            self.m.request_failure.inc(err="validation")
            self.log.emit("ERROR", "text_generation_router::infer", err.error, "generate")
            raise

    def _validate_inner(
        self, inputs: str, p: GenParams, add_special_tokens: bool, stream: bool
    ) -> Plan:
        a = self.s.args
        best_of = p.best_of if p.best_of is not None else 1
        if best_of != 1:
            if stream:
                raise validation_error("`best_of` != 1 is not supported when streaming tokens")
            if a["max_best_of"] == 1:
                raise validation_error("`best_of` != 1 is not allowed for this endpoint")
            if best_of == 0 or best_of > a["max_best_of"]:
                raise validation_error(
                    f"`best_of` must be > 0 and <= {a['max_best_of']}. Given: {best_of}"
                )
        sampling = p.do_sample or any(
            x is not None for x in (p.temperature, p.top_k, p.top_p, p.typical_p)
        )
        if best_of > 1 and not sampling:
            raise validation_error("you must use sampling when `best_of` is > 1")
        if p.temperature is not None and p.temperature <= 0:
            raise validation_error("`temperature` must be strictly positive")
        if p.repetition_penalty is not None and p.repetition_penalty <= 0:
            raise validation_error("`repetition_penalty` must be strictly positive")
        if p.frequency_penalty is not None and not -2.0 <= p.frequency_penalty <= 2.0:
            raise validation_error("`frequency_penalty` must be >= -2.0 and <= 2.0")
        if p.top_p is not None and not 0.0 < p.top_p < 1.0:
            raise validation_error("`top_p` must be > 0.0 and < 1.0")
        if p.typical_p is not None and not 0.0 < p.typical_p < 1.0:
            raise validation_error("`typical_p` must be > 0.0 and < 1.0")
        if p.top_k is not None and p.top_k <= 0:
            raise validation_error("`top_k` must be strictly positive")
        if p.max_new_tokens == 0:
            raise validation_error("`max_new_tokens` must be strictly positive")
        if len(p.stop) > a["max_stop_sequences"]:
            raise validation_error(
                f"`stop` supports up to {a['max_stop_sequences']} stop sequences. "
                f"Given: {len(p.stop)}"
            )
        if p.seed is not None and best_of > 1:
            raise validation_error("`seed` must not be set when `best_of` > 1")
        if p.top_n_tokens is not None and p.top_n_tokens > a["max_top_n_tokens"]:
            raise validation_error(
                f"`top_n_tokens` must be >= 0 and <= {a['max_top_n_tokens']}. "
                f"Given: {p.top_n_tokens}"
            )
        if not inputs:
            raise validation_error("`inputs` cannot be empty")
        if p.truncate is not None and (p.truncate == 0 or p.truncate > self.max_input):
            raise validation_error(
                f"`truncate` must be strictly positive and less than {self.max_input}. "
                f"Given: {p.truncate}"
            )
        length = self.tk.input_length(inputs, add_special_tokens)
        if p.truncate is not None:
            length = min(length, p.truncate)
        if p.max_new_tokens is not None:
            max_new = total_new = p.max_new_tokens
        else:
            total_new = max(0, self.max_total - length)
            max_new = min(total_new, DEFAULT_GENERATION_LENGTH)
        if length + max_new > self.max_total:
            raise validation_error(
                f"`inputs` tokens + `max_new_tokens` must be <= {self.max_total}. "
                f"Given: {length} `inputs` tokens and {max_new} `max_new_tokens`"
            )
        if length > self.max_input:
            raise validation_error(
                f"`inputs` must have less than {self.max_input} tokens. Given: {length}"
            )
        self.m.request_input_length.observe(float(length))
        self.m.request_max_new_tokens.observe(float(max_new))

        # What the simulated model will do: answer `natural_tokens` tokens then EOS, unless the
        # budget or a stop sequence ends it first.
        offset = self.tk.generation_offset(inputs)
        natural = self.natural_tokens
        if 0 < natural <= total_new and self.tk.eos_id is not None:
            n, finish, eos = natural, "eos_token", True
        else:
            n, finish, eos = total_new, "length", False
        if p.stop:
            hit = self.tk.find_stop(offset, n - 1 if eos else n, p.stop)
            if hit is not None:
                n, finish, eos = hit, "stop_sequence", False
        seed = None
        if sampling:
            seed = p.seed if p.seed is not None else self._rng.getrandbits(64)
        seq = Sequence(
            input_length=length,
            max_new_tokens=max_new,
            n_tokens=max(1, n),
            finish_reason=finish,
            offset=offset,
            stream=stream,
        )
        return Plan(inputs, length, max_new, p, seq, seed, eos)

    def _token(self, plan: Plan, i: int) -> dict[str, Any]:
        seq = plan.seq
        if plan.eos and i == seq.n_tokens - 1:
            # The model's own EOS ends a natural answer (generation_config / tokenizer).
            eos = self.tk.eos_id
            return {"id": eos, "text": self.tk.eos_text, "logprob": -0.0625, "special": True}
        return {
            "id": self.tk.token_id(seq.offset, i),
            "text": self.tk.token_text(seq.offset, i),
            "logprob": -round(0.05 + (i * 37 % 100) / 400.0, 4),
            "special": False,
        }

    def _text(self, plan: Plan) -> str:
        seq = plan.seq
        return self.tk.generated_text(seq.offset, seq.n_tokens - 1 if plan.eos else seq.n_tokens)

    async def _watch_disconnect(self, receive: Receive, seq: Sequence) -> None:
        while True:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                seq.cancel()
                return

    # --- generate_internal / generate_stream_internal ---------------------------------------

    async def generate_internal(
        self,
        inputs: str,
        p: GenParams,
        receive: Receive,
        *,
        add_special_tokens: bool = True,
        span: str = "generate",
    ) -> tuple[dict[str, Any], list[tuple[bytes, bytes]], Plan]:
        start = time.perf_counter()
        self.m.request_count.inc()
        compute_characters = len(inputs)
        add_prompt = inputs if p.return_full_text else None
        details = p.details or p.decoder_input_details
        self._acquire()
        try:
            plan = self._validate(inputs, p, add_special_tokens, stream=False)
            seq = plan.seq
            loop = asyncio.get_running_loop()
            queued_loop = loop.time()
            queued = time.perf_counter()
            self.engine.submit(seq)
            watcher = None
            if self.engine.latency > 0:
                watcher = loop.create_task(self._watch_disconnect(receive, seq))
            try:
                while not seq.done:
                    seq.waiter = loop.create_future()
                    await seq.waiter
            finally:
                if watcher is not None:
                    watcher.cancel()
            if seq.cancelled:
                raise InferError(500, "Incomplete generation", "incomplete_generation")
            if seq.error is not None:
                self.m.request_failure.inc(err="generation")
                err = InferError(
                    424, f"Request failed during generation: {seq.error}", "generation"
                )
                self.log.emit("ERROR", "text_generation_router::infer", err.error, span)
                raise err
        finally:
            self._release()
        end = time.perf_counter()
        # Map the engine's loop-clock timestamps onto this request's perf_counter timeline.
        queue_time = max(0.0, seq.started_at - queued_loop)
        inference_time = max(0.0, end - queued - queue_time)
        total_time = end - start
        validation_time = queued - start
        n = seq.n_tokens
        time_per_token = inference_time / n
        headers = [
            (b"x-compute-type", self.compute_type),
            (b"x-compute-time", repr(total_time).encode()),
            (b"x-compute-characters", str(compute_characters).encode()),
            (b"x-total-time", str(int(total_time * 1000)).encode()),
            (b"x-validation-time", str(int(validation_time * 1000)).encode()),
            (b"x-queue-time", str(int(queue_time * 1000)).encode()),
            (b"x-inference-time", str(int(inference_time * 1000)).encode()),
            (b"x-time-per-token", str(int(time_per_token * 1000)).encode()),
            (b"x-prompt-tokens", str(plan.input_length).encode()),
            (b"x-generated-tokens", str(n).encode()),
        ]
        m = self.m
        m.request_success.inc()
        m.request_duration.observe(total_time)
        m.request_validation_duration.observe(validation_time)
        m.request_queue_duration.observe(queue_time)
        m.request_inference_duration.observe(inference_time)
        m.request_mean_time_per_token_duration.observe(time_per_token)
        m.request_generated_tokens.observe(float(n))
        self._log_success(
            span, total_time, validation_time, queue_time, inference_time, time_per_token, plan.seed
        )
        text = self._text(plan)
        if add_prompt is not None:
            text = add_prompt + text
        resp: dict[str, Any] = {"generated_text": text}
        if details:
            prefill = []
            if p.decoder_input_details:
                prefill = [
                    {"id": t.id, "text": t.text, "logprob": None if k == 0 else -1.5}
                    for k, t in enumerate(self.tk.pieces(inputs, add_special_tokens))
                ][-plan.input_length :]
            resp["details"] = {
                "finish_reason": seq.finish_reason,
                "generated_tokens": n,
                "seed": plan.seed,
                "prefill": prefill,
                "tokens": [self._token(plan, i) for i in range(n)],
            }
            if p.top_n_tokens:
                resp["details"]["top_tokens"] = [[self._token(plan, i)] for i in range(n)]
        return resp, headers, plan

    def _log_success(
        self,
        span: str,
        total: float,
        validation: float,
        queue: float,
        inference: float,
        per_token: float,
        seed: int | None,
    ) -> None:
        log = self.log
        if not log.enabled("INFO"):
            return
        fields = (
            f'{span}{{total_time="{fmt_duration(total)}" validation_time='
            f'"{fmt_duration(validation)}" queue_time="{fmt_duration(queue)}" inference_time='
            f'"{fmt_duration(inference)}" time_per_token="{fmt_duration(per_token)}" '
            f'seed="{"None" if seed is None else f"Some({seed})"}"}}'
        )
        log.emit("INFO", "text_generation_router::server", "Success", fields, flush=False)

    async def generate_stream_internal(
        self,
        inputs: str,
        p: GenParams,
        receive: Receive,
        *,
        add_special_tokens: bool = True,
        span: str = "generate_stream",
    ) -> AsyncIterator[tuple[str, Any]]:
        """Yields ("token", (index, token, None, None, plan)), ("end", ...) or ("error", err)."""
        start = time.perf_counter()
        self.m.request_count.inc()
        add_prompt = inputs if p.return_full_text else None
        if p.best_of not in (None, 1):
            self.m.request_failure.inc(err="validation")
            yield "error", validation_error("`best_of` != 1 is not supported when streaming tokens")
            return
        if p.decoder_input_details:
            self.m.request_failure.inc(err="validation")
            yield (
                "error",
                validation_error(
                    "`decoder_input_details` == true is not supported when streaming tokens"
                ),
            )
            return
        try:
            self._acquire()
        except InferError as err:
            yield "error", err
            return
        watcher = None
        try:
            try:
                plan = self._validate(inputs, p, add_special_tokens, stream=True)
            except InferError as err:
                yield "error", err
                return
            seq = plan.seq
            loop = asyncio.get_running_loop()
            queued_loop = loop.time()
            queued = time.perf_counter()
            self.engine.submit(seq)
            watcher = loop.create_task(self._watch_disconnect(receive, seq))
            sent = 0
            while True:
                await seq.wait_progress(sent)
                if seq.cancelled:
                    return
                if seq.error is not None:
                    self.m.request_failure.inc(err="generation")
                    gen_err = InferError(
                        424, f"Request failed during generation: {seq.error}", "generation"
                    )
                    self.log.emit("ERROR", "text_generation_router::infer", gen_err.error, span)
                    yield "error", gen_err
                    return
                upto = seq.emitted
                last = seq.n_tokens - 1
                while sent < upto:
                    i = sent
                    sent += 1
                    token = self._token(plan, i)
                    if i < last:
                        yield "token", (i + 1, token, None, None, plan)
                        continue
                    end = time.perf_counter()
                    queue_time = max(0.0, seq.started_at - queued_loop)
                    inference_time = max(0.0, end - queued - queue_time)
                    total_time = end - start
                    validation_time = queued - start
                    per_token = inference_time / seq.n_tokens
                    m = self.m
                    m.request_success.inc()
                    m.request_duration.observe(total_time)
                    m.request_validation_duration.observe(validation_time)
                    m.request_queue_duration.observe(queue_time)
                    m.request_inference_duration.observe(inference_time)
                    m.request_mean_time_per_token_duration.observe(per_token)
                    m.request_generated_tokens.observe(float(seq.n_tokens))
                    self._log_success(
                        span,
                        total_time,
                        validation_time,
                        queue_time,
                        inference_time,
                        per_token,
                        plan.seed,
                    )
                    text = self._text(plan)
                    if add_prompt is not None:
                        text = add_prompt + text
                    details = {
                        "finish_reason": seq.finish_reason,
                        "generated_tokens": seq.n_tokens,
                        "seed": plan.seed,
                    }
                    yield "end", (i + 1, token, text, details, plan)
                    return
        finally:
            if watcher is not None:
                watcher.cancel()
            self._release()

    async def _sse(
        self,
        send: Send,
        events: AsyncIterator[tuple[str, Any]],
        render: Callable[[str, Any], list[bytes]],
        headers: list[tuple[bytes, bytes]],
        done_marker: bool,
    ) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [*_SSE_HEADERS, *headers, *_CORS],
            }
        )
        buf: list[bytes] = []
        try:
            async for kind, payload in events:
                if kind == "error":
                    buf.append(b"data: " + dumps(payload.body()) + b"\n\n")
                else:
                    buf.extend(b"data: " + chunk + b"\n\n" for chunk in render(kind, payload))
                # Flush once per engine step: several tokens may arrive together.
                if kind != "token" or not self._more_ready(payload):
                    await send(
                        {"type": "http.response.body", "body": b"".join(buf), "more_body": True}
                    )
                    buf.clear()
        finally:
            await _aclose(events)
        tail = b"".join(buf)
        if done_marker:
            tail += b"data: [DONE]\n\n"
        await send({"type": "http.response.body", "body": tail, "more_body": False})

    @staticmethod
    def _more_ready(payload: Any) -> bool:
        index, _, _, _, plan = payload
        return index < plan.seq.emitted

    # --- endpoints ----------------------------------------------------------------------------

    def _parse_generate(self, data: Any) -> tuple[str, GenParams, bool]:
        f = Fields(data)
        inputs = f.text("inputs", required=True)
        params = GenParams.parse(f.d.get("parameters"))
        return inputs, params, f.flag("stream")

    async def h_generate(self, scope: Scope, receive: Receive, send: Send) -> None:
        data = await self._read_json(scope, receive)
        inputs, p, _ = self._parse_generate(data)
        try:
            resp, headers, _ = await self.generate_internal(inputs, p, receive)
        except InferError as err:
            await self._error(send, err)
            return
        await self._json(send, 200, dumps(resp), headers)

    def _stream_headers(self, inputs: str) -> list[tuple[bytes, bytes]]:
        return [
            (b"x-compute-type", self.compute_type),
            (b"x-compute-characters", str(len(inputs)).encode()),
            (b"x-accel-buffering", b"no"),
        ]

    def _render_generate(self, kind: str, payload: Any) -> list[bytes]:
        index, token, text, details, _ = payload
        return [
            dumps(
                {
                    "index": index,
                    "token": token,
                    "generated_text": text,
                    "details": details if payload[4].params.details else None,
                }
            )
        ]

    async def h_generate_stream(self, scope: Scope, receive: Receive, send: Send) -> None:
        data = await self._read_json(scope, receive)
        inputs, p, _ = self._parse_generate(data)
        events = self.generate_stream_internal(inputs, p, receive)
        await self._sse(send, events, self._render_generate, self._stream_headers(inputs), False)

    async def h_compat(self, scope: Scope, receive: Receive, send: Send) -> None:
        data = await self._read_json(scope, receive)
        await self._compat(data, receive, send)

    async def _compat(self, data: Any, receive: Receive, send: Send) -> None:
        inputs, p, stream = self._parse_generate(data)
        if p.return_full_text is None:
            p.return_full_text = self.compat_return_full_text
        if stream:
            events = self.generate_stream_internal(inputs, p, receive)
            await self._sse(
                send, events, self._render_generate, self._stream_headers(inputs), False
            )
            return
        try:
            resp, headers, _ = await self.generate_internal(inputs, p, receive)
        except InferError as err:
            await self._error(send, err)
            return
        await self._json(send, 200, dumps([resp]), headers)

    async def h_invocations(self, scope: Scope, receive: Receive, send: Send) -> None:
        # SageMaker route: dispatches on the body's shape (chat / completion / generate).
        data = await self._read_json(scope, receive)
        if isinstance(data, dict) and "messages" in data:
            await self._chat(data, receive, send)
        elif isinstance(data, dict) and "prompt" in data:
            await self._completions(data, receive, send)
        else:
            await self._compat(data, receive, send)

    # chat ---------------------------------------------------------------------------------

    def _chat_prompt(self, f: Fields) -> str:
        messages = f.required("messages")
        if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
            raise BodyError(
                422,
                "Failed to deserialize the JSON body into the target type: messages: "
                "invalid type: expected a sequence of messages at line 1 column 1",
            )
        tools = f.d.get("tools") if isinstance(f.d.get("tools"), list) else None
        try:
            return self.tk.apply_chat_template(messages, tools=tools)
        except NoChatTemplate:
            # router/src/infer/mod.rs apply_chat_template: no template at all is
            # TemplateError(TemplateNotFound) -> 422 "template_error" (not counted as a failure).
            raise InferError(422, "Template error: template not found", "template_error") from None
        except Exception as exc:
            # Render errors are counted and logged (same function, `map_err`).
            self.m.request_failure.inc(err="template")
            self.log.emit("ERROR", "text_generation_router::infer", f"{exc}", "chat_completions")
            raise InferError(422, f"Template error: {exc}", "template_error") from None

    def _chat_params(self, f: Fields) -> GenParams:
        max_tokens = f.num("max_completion_tokens", integer=True, minimum=0)
        if max_tokens is None:
            max_tokens = f.num("max_tokens", integer=True, minimum=0)
        temperature = f.num("temperature")
        do_sample = True
        if temperature is not None and temperature == 0:
            do_sample, temperature = False, None
        presence = f.num("presence_penalty")
        top_logprobs = f.num("top_logprobs", integer=True, minimum=0)
        return GenParams(
            temperature=temperature,
            repetition_penalty=None if presence is None else presence + 2.0,
            frequency_penalty=f.num("frequency_penalty"),
            top_p=f.num("top_p"),
            do_sample=do_sample,
            max_new_tokens=max_tokens,
            return_full_text=False,
            stop=f.strings("stop"),
            details=True,
            decoder_input_details=False,
            seed=f.num("seed", integer=True, minimum=0),
            top_n_tokens=top_logprobs,
        )

    async def h_chat(self, scope: Scope, receive: Receive, send: Send) -> None:
        data = await self._read_json(scope, receive)
        await self._chat(data, receive, send)

    async def _chat(self, data: Any, receive: Receive, send: Send) -> None:
        self.m.request_count.inc()  # chat_completions counts, then generate_internal again
        f = Fields(data)
        stream = f.flag("stream")
        try:
            # Applied before the stream starts, so a streaming request gets the plain 422 too
            # (router/src/server.rs chat_completions: `chat.try_into_generate(&infer)?`).
            prompt = self._chat_prompt(f)
        except InferError as err:
            await self._error(send, err)
            return
        p = self._chat_params(f)
        opts = f.d.get("stream_options") or {}
        include_usage = bool(isinstance(opts, dict) and opts.get("include_usage"))
        logprobs = f.flag("logprobs")
        model = self.model_id
        fp = self.fingerprint
        if stream:
            events = self.generate_stream_internal(
                prompt, p, receive, add_special_tokens=False, span="chat_completions"
            )

            def render(kind: str, payload: Any) -> list[bytes]:
                _, token, _, details, plan = payload
                finish = None
                if details is not None:
                    finish = "length" if details["finish_reason"] == "length" else "stop"
                chunk = {
                    "object": "chat.completion.chunk",
                    "id": "",
                    "created": int(time.time()),
                    "model": model,
                    "system_fingerprint": fp,
                    "choices": [
                        {
                            "index": 0,
                            "delta": {
                                "role": "assistant",
                                "content": "" if token["special"] else token["text"],
                            },
                            "logprobs": _chat_logprobs(token) if logprobs else None,
                            "finish_reason": finish,
                        }
                    ],
                    "usage": None,
                }
                out = [dumps(chunk)]
                if details is not None and include_usage:
                    n = details["generated_tokens"]
                    out.append(
                        dumps(
                            {
                                "object": "chat.completion.chunk",
                                "id": "",
                                "created": int(time.time()),
                                "model": model,
                                "system_fingerprint": fp,
                                "choices": [],
                                "usage": {
                                    "prompt_tokens": plan.input_length,
                                    "completion_tokens": n,
                                    "total_tokens": plan.input_length + n,
                                },
                            }
                        )
                    )
                return out

            await self._sse(send, events, render, self._stream_headers(prompt), True)
            return
        try:
            resp, headers, plan = await self.generate_internal(
                prompt, p, receive, add_special_tokens=False, span="chat_completions"
            )
        except InferError as err:
            await self._error(send, err)
            return
        d = resp["details"]
        n = d["generated_tokens"]
        body = {
            "object": "chat.completion",
            "id": "",
            "created": int(time.time()),
            "model": model,
            "system_fingerprint": fp,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": resp["generated_text"]},
                    "logprobs": (
                        {"content": [_chat_logprobs(t)["content"][0] for t in d["tokens"]]}
                        if logprobs
                        else None
                    ),
                    "finish_reason": "length" if d["finish_reason"] == "length" else "stop",
                }
            ],
            "usage": {
                "prompt_tokens": plan.input_length,
                "completion_tokens": n,
                "total_tokens": plan.input_length + n,
            },
        }
        await self._json(send, 200, dumps(body), headers)

    # completions ----------------------------------------------------------------------------

    async def h_completions(self, scope: Scope, receive: Receive, send: Send) -> None:
        data = await self._read_json(scope, receive)
        await self._completions(data, receive, send)

    async def _completions(self, data: Any, receive: Receive, send: Send) -> None:
        self.m.request_count.inc()
        f = Fields(data)
        raw_prompt = f.required("prompt")
        if isinstance(raw_prompt, str):
            prompts = [raw_prompt]
        elif isinstance(raw_prompt, list) and all(isinstance(x, str) for x in raw_prompt):
            prompts = list(raw_prompt)
        else:
            raise f._err("prompt", raw_prompt, "a string or a sequence of strings")
        stream = f.flag("stream")
        max_tokens = f.num("max_tokens", integer=True, minimum=0)
        temperature = f.num("temperature")
        do_sample = True
        if temperature is not None and temperature == 0:
            do_sample, temperature = False, None
        if f.d.get("suffix") is not None:
            self.m.request_failure.inc(err="validation")
            await self._error(
                send,
                InferError(
                    422,
                    "Suffix is not supported and can be achieved by preprocessing the prompt.",
                    "suffix not supported",
                ),
            )
            return
        max_batch = self.s.args["max_client_batch_size"]
        if len(prompts) > max_batch:
            self.m.request_failure.inc(err="validation")
            await self._error(
                send,
                InferError(
                    422,
                    f"Number of prompts exceeds the maximum allowed batch size of {max_batch}",
                    "batch size exceeded",
                ),
            )
            return

        def params() -> GenParams:
            return GenParams(
                temperature=temperature,
                repetition_penalty=f.num("repetition_penalty"),
                frequency_penalty=f.num("frequency_penalty"),
                top_p=f.num("top_p"),
                do_sample=do_sample,
                max_new_tokens=100 if max_tokens is None else max_tokens,
                stop=f.strings("stop"),
                details=True,
                decoder_input_details=not stream,
                seed=f.num("seed", integer=True, minimum=0),
            )

        model, fp = self.model_id, self.fingerprint
        if stream:
            await self._completions_stream(prompts, params, receive, send, model, fp)
            return
        results = await asyncio.gather(
            *(self.generate_internal(pr, params(), receive, span="completions") for pr in prompts),
            return_exceptions=True,
        )
        for r in results:
            if isinstance(r, InferError):
                await self._error(send, r)
                return
            if isinstance(r, BaseException):
                raise r
        choices = []
        usage = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
        agg: dict[bytes, int] = {}
        compute_type = self.compute_type
        for index, (resp, headers, plan) in enumerate(results):  # type: ignore[misc]
            d = resp["details"]
            choices.append(
                {
                    "finish_reason": "length" if d["finish_reason"] == "length" else "stop",
                    "index": index,
                    "logprobs": None,
                    "text": resp["generated_text"],
                }
            )
            usage["prompt_tokens"] += plan.input_length
            usage["completion_tokens"] += d["generated_tokens"]
            usage["total_tokens"] += plan.input_length + d["generated_tokens"]
            for k, v in headers:
                if k in (b"x-compute-type", b"x-compute-time"):
                    continue
                agg[k] = agg.get(k, 0) + int(v)
        body = {
            "object": "text_completion",
            "id": "",
            "created": int(time.time()),
            "model": model,
            "system_fingerprint": fp,
            "choices": choices,
            "usage": usage,
        }
        out_headers = [(b"x-compute-type", compute_type)]
        out_headers += [(k, str(v).encode()) for k, v in agg.items()]
        await self._json(send, 200, dumps(body), out_headers)

    async def _completions_stream(
        self,
        prompts: list[str],
        params: Callable[[], GenParams],
        receive: Receive,
        send: Send,
        model: str,
        fp: str,
    ) -> None:
        q: asyncio.Queue[tuple[int, str, Any] | None] = asyncio.Queue()

        async def pump(index: int, prompt: str) -> None:
            try:
                async for kind, payload in self.generate_stream_internal(
                    prompt, params(), receive, span="completions"
                ):
                    await q.put((index, kind, payload))
            finally:
                await q.put(None)

        async def merged() -> AsyncIterator[tuple[str, Any]]:
            tasks = [asyncio.ensure_future(pump(i, pr)) for i, pr in enumerate(prompts)]
            remaining = len(tasks)
            try:
                while remaining:
                    item = await q.get()
                    if item is None:
                        remaining -= 1
                        continue
                    index, kind, payload = item
                    if kind == "error":
                        yield kind, payload
                    else:
                        yield kind, (index, payload)
            finally:
                for t in tasks:
                    t.cancel()

        def render(kind: str, wrapped: Any) -> list[bytes]:
            index, (_, token, _, details, plan) = wrapped
            now = int(time.time())
            if details is None:
                return [
                    dumps(
                        {
                            "object": "text_completion",
                            "id": "",
                            "created": now,
                            "choices": [
                                {
                                    "finish_reason": "",
                                    "index": index,
                                    "logprobs": None,
                                    "text": token["text"],
                                }
                            ],
                            "model": model,
                            "system_fingerprint": fp,
                        }
                    )
                ]
            n = details["generated_tokens"]
            return [
                dumps(
                    {
                        "object": "text_completion",
                        "id": "",
                        "created": now,
                        "model": model,
                        "system_fingerprint": fp,
                        "choices": [
                            {
                                "finish_reason": details["finish_reason"],
                                "index": index,
                                "logprobs": None,
                                "text": token["text"],
                            }
                        ],
                        "usage": {
                            "prompt_tokens": plan.input_length,
                            "completion_tokens": n,
                            "total_tokens": plan.input_length + n,
                        },
                    }
                )
            ]

        headers = [
            (b"x-compute-type", self.compute_type),
            (b"x-compute-characters", str(sum(len(p) for p in prompts)).encode()),
            (b"x-accel-buffering", b"no"),
        ]

        await self._sse_merged(send, merged(), render, headers)

    async def _sse_merged(
        self,
        send: Send,
        events: AsyncIterator[tuple[str, Any]],
        render: Callable[[str, Any], list[bytes]],
        headers: list[tuple[bytes, bytes]],
    ) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [*_SSE_HEADERS, *headers, *_CORS],
            }
        )
        try:
            async for kind, payload in events:
                if kind == "error":
                    body = b"data: " + dumps(payload.body()) + b"\n\n"
                else:
                    body = b"".join(b"data: " + c + b"\n\n" for c in render(kind, payload))
                await send({"type": "http.response.body", "body": body, "more_body": True})
        finally:
            await _aclose(events)
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n", "more_body": False})


def _chat_logprobs(token: dict[str, Any]) -> dict[str, Any]:
    return {"content": [{"token": token["text"], "logprob": token["logprob"], "top_logprobs": []}]}


async def _aclose(it: AsyncIterator[Any]) -> None:
    close = getattr(it, "aclose", None)
    if close is not None:
        await close()

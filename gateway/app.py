"""The OpenAI-compatible gateway: one stable endpoint per tenant in front of its serving pods.

A plain ASGI application (no framework: every microsecond here is added to every token
stream). Per request, in order, and without touching the database:

1. the key is looked up by its keyed hash in the in-memory snapshot (``snapshot.py``);
2. the body is read up to the tenant's payload limit and ``model`` resolved to one of the
   tenant's deployments the key may use;
3. output caps: ``max_tokens`` required if the tenant says so, clamped to the tenant's ceiling
   and to the deployment's max total tokens minus the input; input over the deployment's max
   input tokens is refused here. Counting tokens exactly costs a call to the pod's tokenizer, so
   it happens only when a cheap upper bound (the body's byte length: a byte-level tokenizer
   never makes more tokens than bytes) does not already settle it;
4. RPM and TPM are reserved atomically in Redis (``ratelimit.py``) for the tenant and the key;
5. the request goes to a ready pod of the active colour (``endpoints.py``), retried once on
   another pod if the connection fails before any answer (a pod leaving during a promotion);
   streams are relayed event by event, never buffered;
6. the reservation is settled with the usage the model server reported, and metered.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import math
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from engines import DEFAULT_ENGINE, ENGINES, InferenceEngine
from engines.base import HttpCall
from gateway import errors, metering
from gateway.endpoints import Upstreams
from gateway.errors import GatewayError
from gateway.ratelimit import Decision, Limits, RateLimiter
from gateway.snapshot import KeyEntry, Route, Snapshot
from tenants.keys import hash_gateway_key_secret, split_gateway_key

logger = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

CHAT_PATH = "/v1/chat/completions"
COMPLETIONS_PATH = "/v1/completions"
MODELS_PATH = "/v1/models"
# Chat templates add role markers and a preamble; per message the JSON ({"role":..,
# "content":..}) already costs more bytes than the template adds tokens.
TEMPLATE_ALLOWANCE_TOKENS = 64
UPSTREAM_ATTEMPTS = 2
_PASS_HEADERS = (
    "x-compute-time",
    "x-total-time",
    "x-validation-time",
    "x-queue-time",
    "x-inference-time",
    "x-time-per-token",
    "x-prompt-tokens",
    "x-generated-tokens",
)
_JSON = [(b"content-type", b"application/json")]


@dataclass
class Call:
    """One request's facts, filled in as the pipeline goes (for metering and settling)."""

    started: float
    key: KeyEntry | None = None
    route: Route | None = None
    decision: Decision | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    usage_known: bool = False
    streamed_events: int = 0  # token events relayed, for usage when a stream is cut short
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def labels(self) -> tuple[str, str, str]:
        return (
            self.key.tenant.slug if self.key else "",
            self.key.prefix if self.key else "",
            self.route.name if self.route else "",
        )


class ClientGone(Exception):
    """The client disconnected; the upstream request was cancelled."""


class Gateway:
    """The ASGI application. ``snapshot`` is swapped whole by the config loader."""

    def __init__(
        self,
        *,
        limiter: RateLimiter,
        upstreams: Upstreams,
        session_factory: Callable[[], aiohttp.ClientSession],
        on_startup: Callable[[Gateway], Awaitable[None]] | None = None,
        on_shutdown: Callable[[Gateway], Awaitable[None]] | None = None,
    ) -> None:
        self.limiter = limiter
        self.upstreams = upstreams
        self.snapshot = Snapshot()
        self.snapshot_loaded = False
        self._session_factory = session_factory
        self._session: aiohttp.ClientSession | None = None
        self._on_startup = on_startup
        self._on_shutdown = on_shutdown

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = self._session_factory()
        return self._session

    # --- ASGI ------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        if path in (CHAT_PATH, COMPLETIONS_PATH):
            if method != "POST":
                await self._error(send, _method_not_allowed(), Call(time.monotonic()))
                return
            await self._completion(scope, receive, send, path)
        elif path == MODELS_PATH:
            await self._models(scope, send)
        elif path == "/metrics":
            await _respond(
                send,
                200,
                generate_latest(metering.REGISTRY),
                [(b"content-type", CONTENT_TYPE_LATEST.encode())],
            )
        elif path == "/healthz":
            await _respond(send, 200, b"ok", [(b"content-type", b"text/plain")])
        elif path == "/readyz":
            ready = self.snapshot_loaded and self.upstreams.synced.is_set()
            await _respond(send, 200 if ready else 503, b"ready" if ready else b"starting", [])
        else:
            error = GatewayError(404, f"no route {method} {path}", "unknown_url", "not_found")
            await self._error(send, error, Call(time.monotonic()))

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    if self._on_startup:
                        await self._on_startup(self)
                except Exception as exc:
                    logger.exception("gateway startup failed")
                    await send({"type": "lifespan.startup.failed", "message": repr(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self._on_shutdown:
                    await self._on_shutdown(self)
                if self._session is not None:
                    await self._session.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    # --- authentication --------------------------------------------------------------------

    def _authenticate(self, scope: Scope) -> KeyEntry:
        presented = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, token = value.decode("latin-1").partition(" ")
                if scheme.lower() == "bearer" and token.strip():
                    presented = token.strip()
                break
        if presented is None:
            raise GatewayError(
                401,
                "You didn't provide an API key. Send 'Authorization: Bearer <gateway key>'; "
                "tenant owners create keys in the portal.",
                "missing_api_key",
                "unauthorized",
            )
        parts = split_gateway_key(presented)
        entry = None
        if parts is not None:
            entry = self.snapshot.keys_by_hash.get(hash_gateway_key_secret(parts[1]))
        if entry is None or parts is None or not hmac.compare_digest(entry.prefix, parts[0]):
            raise GatewayError(
                401,
                "Incorrect API key provided (unknown or revoked gateway key).",
                "invalid_api_key",
                "unauthorized",
            )
        return entry

    # --- /v1/models ------------------------------------------------------------------------

    async def _models(self, scope: Scope, send: Send) -> None:
        call = Call(time.monotonic())
        try:
            if scope["method"] != "GET":
                raise _method_not_allowed()
            call.key = self._authenticate(scope)
        except GatewayError as error:
            await self._error(send, error, call)
            return
        key = call.key
        data = [
            {
                "id": route.name,
                "object": "model",
                "created": route.created,
                "owned_by": key.tenant.slug,
            }
            for route in self.snapshot.routes_of(key.tenant.id)
            if key.may_use(route.name)
        ]
        await _respond(send, 200, orjson.dumps({"object": "list", "data": data}), _JSON)
        metering.record(tenant=key.tenant.slug, key=key.prefix, deployment="", code=200)

    # --- completions -----------------------------------------------------------------------

    async def _completion(self, scope: Scope, receive: Receive, send: Send, path: str) -> None:
        call = Call(time.monotonic())
        try:
            call.key = key = self._authenticate(scope)
            raw = await _read_body(scope, receive, key.tenant.max_request_bytes)
            body = _parse(raw)
            call.route = route = self._route(key, body)
            stream = body.get("stream") is True
            client_wants_usage = _wants_usage(body)
            changed = await self._cap_output(call, body, raw, path)
            if body["model"] != route.model_id:
                # Clients name the deployment; the server knows its model by the name it was
                # started with (vLLM refuses any other: vllm/entrypoints/openai/serving_engine.py
                # _check_model answers 404 "The model `chat` does not exist.").
                body["model"] = route.model_id
                changed = True
            if stream and not client_wants_usage:
                # Ask for the usage chunk (and drop it from the client's stream) to meter exactly.
                body["stream_options"] = {
                    **(body.get("stream_options") or {}),
                    "include_usage": True,
                }
                changed = True
            payload = orjson.dumps(body) if changed else raw
            await self._reserve(call)
        except GatewayError as error:
            await self._error(send, error, call)
            return
        except ClientGone:
            self._finish(call, 499, "client_disconnected")
            return

        response_started = False
        done = False
        task = asyncio.current_task()
        disconnected = asyncio.Event()

        async def watch_disconnect() -> None:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    if not done and task is not None:
                        disconnected.set()
                        task.cancel()
                    return

        watcher = asyncio.create_task(watch_disconnect())
        try:
            if stream:
                response_started = await self._relay_stream(
                    call, route, path, payload, send, drop_usage=not client_wants_usage
                )
            else:
                await self._relay_json(call, route, path, payload, send)
            done = True
            self._finish(call, 200)
        except GatewayError as error:
            done = True
            if response_started:
                await _send_stream_error(send, error)
                self._finish(call, 200, error.kind)
            else:
                await self._error(send, error, call)
        except asyncio.CancelledError:
            if not disconnected.is_set():
                raise
            # The client went away: the upstream request was closed with this task.
            self._finish(call, 499, "client_disconnected")
        finally:
            done = True
            watcher.cancel()
        await self._settle(call)

    def _route(self, key: KeyEntry, body: dict[str, Any]) -> Route:
        model = body.get("model")
        if not isinstance(model, str) or not model:
            raise errors.invalid(
                "'model' must name one of your deployments", "model", "missing_model"
            )
        route = self.snapshot.routes.get((key.tenant.id, model))
        if route is None or not key.may_use(model):
            raise GatewayError(
                404,
                f"The model '{model}' does not exist or you do not have access to it. "
                "Use a deployment name from GET /v1/models.",
                "model_not_found",
                "model_not_found",
                param="model",
            )
        return route

    async def _cap_output(self, call: Call, body: dict[str, Any], raw: bytes, path: str) -> bool:
        """Enforce the output caps on ``body`` in place; True when it was changed."""
        assert call.key is not None and call.route is not None
        policy, route = call.key.tenant, call.route
        changed = False
        requested = body.get("max_tokens")
        param = "max_tokens"
        if requested is None and body.get("max_completion_tokens") is not None:
            requested, param = body.pop("max_completion_tokens"), "max_completion_tokens"
            changed = True  # TGI knows max_tokens only (vLLM and SGLang take both)
        if requested is not None and (
            isinstance(requested, bool) or not isinstance(requested, int) or requested < 1
        ):
            raise errors.invalid(f"'{param}' must be a positive integer", param)
        if requested is None and policy.require_max_tokens:
            raise errors.invalid(
                "This tenant requires 'max_tokens' on every request (an output cap protects the "
                "shared GPUs); set it to the most tokens you need.",
                "max_tokens",
                "max_tokens_required",
            )
        wanted = requested
        if policy.max_output_tokens is not None:
            wanted = (
                policy.max_output_tokens
                if wanted is None
                else min(wanted, policy.max_output_tokens)
            )

        bound = len(raw) + TEMPLATE_ALLOWANCE_TOKENS  # tokens <= bytes (see module docstring)
        input_tokens: int | None = None
        if bound > route.max_input_tokens or (
            wanted is not None and bound + wanted > route.max_total_tokens
        ):
            input_tokens, unknown = await self._count_input(route, body, path)
            if input_tokens > route.max_input_tokens:
                field_name = "messages" if path == CHAT_PATH else "prompt"
                raise errors.invalid(
                    f"This deployment accepts at most {route.max_input_tokens} input tokens; "
                    f"your {field_name} has {input_tokens}. Shorten it, or redeploy with a larger "
                    "max input.",
                    field_name,
                    "context_length_exceeded",
                )
            room = route.max_total_tokens - input_tokens
            if room < 1:
                raise errors.invalid(
                    f"The input ({input_tokens} tokens) leaves no room for output within the "
                    f"deployment's {route.max_total_tokens} total tokens.",
                    "messages" if path == CHAT_PATH else "prompt",
                    "context_length_exceeded",
                )
            if wanted is not None:
                # Where the count leaves the chat template out, leave room for it too (the
                # engine refuses input + max_tokens over its context length).
                wanted = min(wanted, max(1, room - unknown))
            input_tokens += unknown
        if wanted is not None and wanted != requested:
            call.headers["x-gateway-max-tokens"] = str(wanted)
            if requested is not None:
                call.headers["x-gateway-max-tokens-clamped-from"] = str(requested)
        if wanted != body.get("max_tokens"):
            body["max_tokens"] = wanted
            changed = True
        prompt_estimate = (
            input_tokens if input_tokens is not None else min(bound, route.max_input_tokens)
        )
        output_estimate = wanted if wanted is not None else route.max_total_tokens - prompt_estimate
        call.prompt_tokens = prompt_estimate
        call.completion_tokens = max(0, output_estimate)
        return changed

    async def _count_input(self, route: Route, body: dict[str, Any], path: str) -> tuple[int, int]:
        """Input tokens from the model server's own tokenizer (the longest prompt when a
        completion request carries several), through the route's engine's tokenize call, and
        an upper bound of the tokens that count leaves out (0 when it is exact)."""
        engine = ENGINES.get(route.engine, ENGINES[DEFAULT_ENGINE])
        if path == CHAT_PATH:
            messages = body.get("messages")
            if not isinstance(messages, list):
                raise errors.invalid("'messages' must be a list of messages", "messages")
            call = engine.tokenize_chat(body)
            if call is not None:
                return await self._tokenize(route, engine, call), 0
            # No chat tokenizer (SGLang): the messages' text without the template's tokens, a
            # lower bound. Refusals stay certain; the answer's usage settles the exact count.
            # The template adds fewer tokens than the messages' JSON markup has bytes, plus
            # a preamble (see TEMPLATE_ALLOWANCE_TOKENS).
            texts = [_message_text(message) for message in messages]
            text = "\n".join(texts)
            count = await self._tokenize(route, engine, engine.tokenize_text(text))
            markup = max(0, len(orjson.dumps(messages)) - len(text.encode()))
            return count, markup + TEMPLATE_ALLOWANCE_TOKENS
        prompt = body.get("prompt")
        prompts = [prompt] if isinstance(prompt, str) else prompt
        if not isinstance(prompts, list) or not all(isinstance(p, str) for p in prompts):
            raise errors.invalid("'prompt' must be a string or a list of strings", "prompt")
        counts = [await self._tokenize(route, engine, engine.tokenize_text(p)) for p in prompts]
        return max(counts, default=0), 0

    async def _tokenize(self, route: Route, engine: InferenceEngine, call: HttpCall) -> int:
        """The token count the engine's tokenize route answers for ``call``."""
        async with self._upstream(route, call.path, orjson.dumps(call.payload)) as response:
            payload = await response.read()
            if response.status != 200:
                raise errors.from_upstream(response.status, payload)
        try:
            answer = orjson.loads(payload)
        except orjson.JSONDecodeError:
            answer = None
        count = engine.token_count(call, answer)
        if count is None:
            raise GatewayError(
                502,
                "the model server's tokenizer answered unreadably",
                "upstream_error",
                "upstream_error",
                type="server_error",
            )
        return count

    async def _reserve(self, call: Call) -> None:
        assert call.key is not None
        key = call.key
        # A key's burst without its own per-minute limit smooths at the tenant's rate (as
        # validated): the key then gets a window at the tenant's limit, which changes nothing.
        key_rpm = key.requests_per_minute or (
            key.tenant.requests_per_minute if key.requests_burst else None
        )
        limits = Limits(
            tenant_rpm=key.tenant.requests_per_minute,
            tenant_tpm=key.tenant.tokens_per_minute,
            key_rpm=key_rpm,
            key_tpm=key.tokens_per_minute,
            tenant_rpm_burst=key.tenant.requests_burst,
            key_rpm_burst=key.requests_burst,
        )
        estimate = call.prompt_tokens + call.completion_tokens
        decision = await self.limiter.reserve(key.tenant.slug, str(key.id), limits, estimate)
        call.decision = decision
        if decision.degraded:
            metering.RATE_LIMITER_DEGRADED.inc()
        if decision.allowed:
            call.headers.update(decision.headers())
            return
        name = decision.refused_by.value if decision.refused_by else "limit"
        scope = "tenant" if name.startswith("tenant") else "key"
        unit = "requests" if name.endswith("rpm") else "tokens"
        if decision.too_large:
            message = (
                f"This request may use {estimate} tokens (input + max_tokens), more than the "
                f"{scope}'s limit of {decision.limit_tokens} tokens per minute; lower max_tokens."
            )
        else:
            message = (
                # Neutral about which constraint refused: the window or the requests burst.
                f"Rate limit reached: the {scope}'s {unit} per minute (or its burst) are used up; "
                f"retry in {max(1, math.ceil(decision.retry_after_seconds))} s."
            )
        raise GatewayError(
            429,
            message,
            "rate_limit_exceeded",
            "rate_limited",
            type=unit,
            headers=decision.headers(),
        )

    # --- upstream --------------------------------------------------------------------------

    def _upstream(self, route: Route, endpoint: str, payload: bytes) -> _UpstreamRequest:
        return _UpstreamRequest(self, route, endpoint, payload)

    async def _relay_json(
        self, call: Call, route: Route, path: str, payload: bytes, send: Send
    ) -> None:
        async with self._upstream(route, path, payload) as response:
            try:
                body = await response.read()
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise GatewayError(
                    502,
                    f"the model server's answer broke off: {exc!r}",
                    "upstream_error",
                    "upstream_error",
                    type="server_error",
                ) from None
            if response.status != 200:
                raise errors.from_upstream(response.status, body)
            if not _read_usage(call, body):
                # No usage reported: keep the reservation's estimate as the charge (never
                # refund work that was done).
                call.usage_known = True
            headers = _JSON + _pass_headers(response) + _encode(call.headers)
        await _respond(send, 200, body, headers)

    async def _relay_stream(
        self, call: Call, route: Route, path: str, payload: bytes, send: Send, *, drop_usage: bool
    ) -> bool:
        async with self._upstream(route, path, payload) as response:
            if response.status != 200:
                raise errors.from_upstream(response.status, await response.read())
            headers = [
                (b"content-type", b"text/event-stream"),
                (b"cache-control", b"no-cache"),
                (b"x-accel-buffering", b"no"),
                *_pass_headers(response),
                *_encode(call.headers),
            ]
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            pending = b""
            try:
                async for chunk in response.content.iter_any():
                    pending += chunk
                    out = []
                    while True:
                        end = pending.find(b"\n\n")
                        if end < 0:
                            break
                        event, pending = pending[: end + 2], pending[end + 2 :]
                        if _stream_usage(call, event) and drop_usage:
                            continue
                        call.streamed_events += 1
                        out.append(event)
                    if out:
                        await send(
                            {"type": "http.response.body", "body": b"".join(out), "more_body": True}
                        )
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise GatewayError(
                    502,
                    f"the model server stream broke: {exc!r}",
                    "upstream_error",
                    "upstream_error",
                    type="server_error",
                ) from None
            await send({"type": "http.response.body", "body": pending, "more_body": False})
        return True

    # --- endings ---------------------------------------------------------------------------

    async def _settle(self, call: Call) -> None:
        decision = call.decision
        if decision is None or decision.reservation is None:
            return
        call.decision = None  # settle once, whichever path ends the request
        if call.usage_known:
            used = call.prompt_tokens + call.completion_tokens
        else:
            # Cut short (client gone, upstream broke): charge what was streamed (an event carries
            # about one token with every engine), plus the prompt estimate; nothing when nothing
            # was served.
            used = call.prompt_tokens + call.streamed_events if call.streamed_events else 0
        try:
            await self.limiter.settle(decision.reservation, used)
        except Exception:  # settling is bookkeeping: never fail a finished request over it
            logger.exception("rate limiter settle failed")

    def _finish(self, call: Call, code: int, error: str | None = None) -> None:
        tenant, key, deployment = call.labels
        metering.record(
            tenant=tenant,
            key=key,
            deployment=deployment,
            code=code,
            error=error,
            prompt_tokens=call.prompt_tokens if call.usage_known else 0,
            completion_tokens=call.completion_tokens if call.usage_known else 0,
            seconds=time.monotonic() - call.started,
        )

    async def _error(self, send: Send, error: GatewayError, call: Call) -> None:
        headers = _JSON + _encode(error.headers)
        await _respond(send, error.status, error.body(), headers)
        self._finish(call, error.status, error.kind)
        await self._settle(call)


class _UpstreamRequest:
    """POST to a ready pod of the route's active Service; on a connection failure (nothing was
    answered yet) try another pod once."""

    def __init__(self, gateway: Gateway, route: Route, endpoint: str, payload: bytes) -> None:
        self._gateway = gateway
        self._route = route
        self._endpoint = endpoint
        self._payload = payload
        self._response: aiohttp.ClientResponse | None = None

    async def __aenter__(self) -> aiohttp.ClientResponse:
        tried: set[str] = set()
        last: Exception | None = None
        for _ in range(UPSTREAM_ATTEMPTS):
            address = self._gateway.upstreams.pick(
                self._route.namespace, self._route.service, frozenset(tried)
            )
            if address is None:
                break
            tried.add(address)
            try:
                self._response = await self._gateway.session.post(
                    f"http://{address}{self._endpoint}",
                    data=self._payload,
                    headers={"content-type": "application/json"},
                )
                return self._response
            except (aiohttp.ClientConnectionError, TimeoutError) as exc:
                last = exc
                logger.info("upstream %s failed (%r); trying another pod", address, exc)
        if last is None:
            raise errors.upstream_unavailable(
                f"The deployment '{self._route.name}' has no ready replicas right now; "
                "retry shortly (see its page in the portal)."
            )
        raise errors.upstream_unavailable(
            f"The deployment '{self._route.name}' could not be reached ({last!r}); retry shortly."
        )

    async def __aexit__(self, *exc: object) -> None:
        if self._response is not None:
            self._response.release()
            if exc[0] is not None:
                self._response.close()  # cancelled or failed mid-body: drop the connection


# --- helpers -------------------------------------------------------------------------------


async def _respond(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]]
) -> None:
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def _send_stream_error(send: Send, error: GatewayError) -> None:
    event = b"data: " + error.body() + b"\n\n"
    await send({"type": "http.response.body", "body": event, "more_body": False})


def _method_not_allowed() -> GatewayError:
    return GatewayError(405, "method not allowed", "method_not_allowed", "invalid_request")


async def _read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    too_large = GatewayError(
        413,
        f"The request body exceeds this tenant's limit of {limit} bytes.",
        "payload_too_large",
        "payload_too_large",
    )
    for name, value in scope["headers"]:
        if name == b"content-length" and value.isdigit() and int(value) > limit:
            raise too_large
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


def _parse(raw: bytes) -> dict[str, Any]:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise errors.invalid(f"The body is not valid JSON: {exc}", None, "invalid_json") from None
    if not isinstance(body, dict):
        raise errors.invalid("The body must be a JSON object", None, "invalid_json")
    return body


def _wants_usage(body: dict[str, Any]) -> bool:
    options = body.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True


def _read_usage(call: Call, body: bytes) -> bool:
    """Take the reported usage into ``call``; False when the answer carries none."""
    try:
        usage = orjson.loads(body).get("usage")
    except (orjson.JSONDecodeError, AttributeError):
        return False
    if not isinstance(usage, dict):
        return False
    call.prompt_tokens = int(usage.get("prompt_tokens") or 0)
    call.completion_tokens = int(usage.get("completion_tokens") or 0)
    call.usage_known = True
    return True


def _stream_usage(call: Call, event: bytes) -> bool:
    """Record a usage-only chunk (``choices: []`` plus ``usage``); True if ``event`` is one."""
    if b'"usage"' not in event or not event.startswith(b"data: {"):
        return False
    try:
        chunk = orjson.loads(event[6:])
    except orjson.JSONDecodeError:
        return False
    usage = chunk.get("usage")
    if not isinstance(usage, dict):
        return False
    call.prompt_tokens = int(usage.get("prompt_tokens") or 0)
    call.completion_tokens = int(usage.get("completion_tokens") or 0)
    call.usage_known = True
    return not chunk.get("choices")


def _pass_headers(response: aiohttp.ClientResponse) -> list[tuple[bytes, bytes]]:
    return [
        (name.encode(), response.headers[name].encode())
        for name in _PASS_HEADERS
        if name in response.headers
    ]


def _encode(headers: dict[str, str]) -> list[tuple[bytes, bytes]]:
    return [(k.encode(), v.encode()) for k, v in headers.items()]


def _message_text(message: Any) -> str:
    """The text of a chat message (string content or the text parts of a content list)."""
    content = message.get("content") if isinstance(message, dict) else None
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            str(part.get("text", ""))
            for part in content
            if isinstance(part, dict) and part.get("type") == "text"
        )
    return ""

"""OpenAI-style error bodies: ``{"error": {"message", "type", "param", "code"}}``.

Clients written for OpenAI read ``error.message`` and branch on the status code and
``error.code``; the official clients retry 408/409/429/5xx and honour Retry-After.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import orjson


@dataclass
class GatewayError(Exception):
    """A refusal or failure answered to the client. ``kind`` is the metering label."""

    status: int
    message: str
    code: str
    kind: str
    type: str = "invalid_request_error"
    param: str | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def body(self) -> bytes:
        return orjson.dumps(
            {
                "error": {
                    "message": self.message,
                    "type": self.type,
                    "param": self.param,
                    "code": self.code,
                }
            }
        )


def invalid(message: str, param: str | None, code: str = "invalid_value") -> GatewayError:
    return GatewayError(400, message, code, "invalid_request", param=param)


def upstream_unavailable(message: str) -> GatewayError:
    return GatewayError(
        503,
        message,
        "service_unavailable",
        "upstream_unavailable",
        type="server_error",
        headers={"retry-after": "1"},
    )


def from_upstream(status: int, payload: bytes) -> GatewayError:
    """Map a model server's error to OpenAI's shape: TGI's ``{"error": "...", "error_type":
    "..."}``, vLLM's ``{"error": {"message": ...}}`` and SGLang's flat ``{"message": ...,
    "type": ...}`` (vllm/entrypoints/openai/protocol.py ErrorResponse; sglang's
    entrypoints/openai/protocol.py ErrorResponse)."""
    message, error_type = f"the model server answered {status}", ""
    try:
        parsed = orjson.loads(payload)
    except orjson.JSONDecodeError:
        parsed = None
    if isinstance(parsed, dict):
        inner = parsed.get("error")
        if isinstance(inner, str):
            message, error_type = inner, str(parsed.get("error_type") or "")
        elif isinstance(inner, dict) and isinstance(inner.get("message"), str):
            message = inner["message"]
        elif isinstance(parsed.get("message"), str):
            message = parsed["message"]
    if status in (400, 422) or error_type in ("validation", "template"):
        return GatewayError(400, message, error_type or "invalid_value", "invalid_request")
    if status == 429 or error_type == "overloaded":
        # The server's own queue is full. Not the tenant's rate limit: say so; clients retry.
        return GatewayError(
            503,
            f"the model server is overloaded, retry shortly ({message})",
            "overloaded",
            "upstream_overloaded",
            type="server_error",
            headers={"retry-after": "1"},
        )
    return GatewayError(
        502,
        f"the model server failed: {message}",
        error_type or "upstream_error",
        "upstream_error",
        type="server_error",
    )

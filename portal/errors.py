"""Domain errors raised by services and turned into HTTP answers by the UI and the API."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError


class DomainError(Exception):
    """A request the domain refuses; `field` names the input at fault when there is one."""

    status_code = 400
    code = "invalid"

    def __init__(self, message: str, *, field: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        if code:
            self.code = code


class Conflict(DomainError):
    """The request clashes with the current state (a duplicate, a concurrent operation)."""

    status_code = 409
    code = "conflict"


class Forbidden(DomainError):
    """The actor may see the object but not do this to it."""

    status_code = 403
    code = "permission_denied"


def validation_messages(error: ValidationError) -> dict[str, list[str]]:
    """A Django ValidationError as {field: [messages]} ('non_field_errors' for the rest)."""
    if hasattr(error, "error_dict"):
        return {
            ("non_field_errors" if field == "__all__" else field): [str(m) for m in errors]
            for field, errors in error.message_dict.items()
        }
    return {"non_field_errors": [str(m) for m in error.messages]}


def error_body(status_code: int, code: str, message: str, fields: Any = None) -> dict[str, Any]:
    """The one error envelope of the API: {"error": {status, code, message, fields?}}."""
    body: dict[str, Any] = {"status": status_code, "code": code, "message": message}
    if fields:
        body["fields"] = fields
    return {"error": body}

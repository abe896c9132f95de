"""Base of every API view and the API's error handler (tenant scoping: tenants.scoping)."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework.views import exception_handler as drf_exception_handler

from portal.errors import DomainError, error_body, validation_messages
from portal.schema import DECLARED_QUERIES, query_parameter_errors


class ApiContract(APIView):
    """Base of every API view: a request is held to what the schema declares for it.

    - Query parameters: only those the operation's schema declares, once each, with values of
      the declared type and bounds (portal.schema reads them from the generated schema);
      anything else is a 400 naming the parameter, never a value silently ignored.
    - Bodies: JSON only (REST_FRAMEWORK's DEFAULT_PARSER_CLASSES). On an operation that declares
      a body, one of another content type is a 415 before the view runs, because form
      encodings cannot carry the nested objects and nulls the bodies declare. Operations that
      declare none (promote, DELETE) read none, whatever is sent.
    Both run after authentication and permissions, so a stranger still gets 401/404 first.
    """

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        errors = query_parameter_errors(
            request._request.path_info, request.method or "GET", request.query_params
        )
        if errors:
            raise exceptions.ValidationError(errors)
        if DECLARED_QUERIES.declares_body(request._request.path_info, request.method or "GET"):
            request.data  # noqa: B018 - parsing is what refuses an undeclared content type


def _first_message(fields: dict[str, list[str]]) -> str:
    field, messages = next(iter(fields.items()))
    return f"{field}: {messages[0]}" if field != "non_field_errors" else messages[0]


def _flatten(detail: Any) -> Any:
    """DRF error detail → plain {field: [messages]} (nested serializers flattened with dots)."""
    if isinstance(detail, dict):
        flat: dict[str, list[str]] = {}
        for key, value in detail.items():
            inner = _flatten(value)
            if isinstance(inner, dict):
                for sub_key, sub_value in inner.items():
                    flat[f"{key}.{sub_key}"] = sub_value
            else:
                flat[str(key)] = inner
        return flat
    if isinstance(detail, list):
        out: list[str] = []
        for item in detail:
            inner = _flatten(item)
            out.extend(inner if isinstance(inner, list) else [str(inner)])
        return out
    return [str(detail)]


def error_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Every API error has the body {"error": {status, code, message, fields?}}."""
    if isinstance(exc, DomainError):
        fields = {exc.field: [exc.message]} if exc.field else None
        message = f"{exc.field}: {exc.message}" if exc.field else exc.message
        return Response(error_body(exc.status_code, exc.code, message, fields), exc.status_code)
    if isinstance(exc, DjangoValidationError):
        fields = validation_messages(exc)
        return Response(
            error_body(400, "invalid", _first_message(fields), fields), status.HTTP_400_BAD_REQUEST
        )
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    if isinstance(exc, exceptions.UnsupportedMediaType):
        view = context.get("view")
        accepted = ", ".join(parser.media_type for parser in getattr(view, "parser_classes", []))
        exc.detail = exceptions.ErrorDetail(
            f"{exc.detail} Send one of: {accepted}.", code="unsupported_media_type"
        )
    if isinstance(exc, exceptions.ValidationError):
        fields = _flatten(exc.detail)
        if isinstance(fields, list):
            fields = {"non_field_errors": fields}
        response.data = error_body(response.status_code, "invalid", _first_message(fields), fields)
    else:
        detail = getattr(exc, "detail", "")
        code = getattr(detail, "code", None) or getattr(exc, "default_code", "error")
        response.data = error_body(response.status_code, str(code), str(detail))
    return response

"""Base classes for the REST API: tenant-scoped viewsets, role permission, errors, pagination."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db.models import QuerySet
from django.http import Http404
from rest_framework import exceptions, permissions, status, viewsets
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework.views import exception_handler as drf_exception_handler

from portal.errors import DomainError, validation_messages
from portal.schema import DECLARED_QUERIES, query_parameter_errors
from portal.tenancy import TenantScopedQuerySet
from tenants.access import READ_METHODS, TenantAccess, resolve_access
from tenants.models import ApiToken


class TenantRolePermission(permissions.BasePermission):
    """Resolves the URL's tenant for the caller and checks the role the action needs."""

    def has_permission(self, request: Request, view: Any) -> bool:
        if not request.user or not request.user.is_authenticated:
            return False
        token = request.auth if isinstance(request.auth, ApiToken) else None
        view.access = resolve_access(request.user, view.kwargs["tenant_slug"], token=token)
        if not view.access.may(view.operation(request)):
            raise exceptions.PermissionDenied("your role in this tenant does not allow this")
        return True


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


class TenantScopedViewSet(ApiContract, viewsets.GenericViewSet):
    """Base of every tenant API: URLs carry the tenant slug, querysets are always scoped.

    Viewsets name the operations they perform (keys of tenants.roles.OPERATION_ROLES, which
    the UI's views name too): `read_operation` and `write_operation` by method, and
    `action_operations` per viewset action.
    """

    permission_classes = [TenantRolePermission]
    read_operation: str = "tenant.view"
    write_operation: str = "tenant.write"
    action_operations: dict[str, str] = {}
    access: TenantAccess

    def operation(self, request: Request) -> str:
        if self.action in self.action_operations:
            return self.action_operations[self.action]
        if (request.method or "GET").upper() in READ_METHODS:
            return self.read_operation
        return self.write_operation

    @property
    def tenant(self) -> Any:
        return self.access.tenant

    def get_queryset(self) -> QuerySet[Any]:
        queryset = super().get_queryset()
        if not isinstance(queryset, TenantScopedQuerySet):
            raise TypeError(f"{type(self).__name__} must use a tenant-owned model")
        return queryset.for_tenant(self.tenant)


def _error_body(status_code: int, code: str, message: str, fields: Any = None) -> dict[str, Any]:
    body: dict[str, Any] = {"status": status_code, "code": code, "message": message}
    if fields:
        body["fields"] = fields
    return {"error": body}


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
        return Response(_error_body(exc.status_code, exc.code, message, fields), exc.status_code)
    if isinstance(exc, DjangoValidationError):
        fields = validation_messages(exc)
        return Response(
            _error_body(400, "invalid", _first_message(fields), fields), status.HTTP_400_BAD_REQUEST
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
        response.data = _error_body(response.status_code, "invalid", _first_message(fields), fields)
    else:
        detail = getattr(exc, "detail", "")
        code = getattr(detail, "code", None) or getattr(exc, "default_code", "error")
        response.data = _error_body(response.status_code, str(code), str(detail))
    return response

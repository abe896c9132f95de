"""OpenAPI 3 schema of the REST API (drf-spectacular): error answers, auth scheme, list views.

Every operation documents the error envelope that `portal.api.error_handler` produces for the
statuses it can answer with. The usual ones follow from the operation's shape (any call can be
unauthenticated, a path parameter can name nothing, a write can be invalid or conflict);
operations that reach Kubernetes or the Hub add theirs with `errors(...)` in `extend_schema`.
"""

from __future__ import annotations

import copy
import re
import threading
from typing import Any

from django.core.exceptions import FieldDoesNotExist
from django.core.validators import RegexValidator
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.plumbing import build_bearer_security_scheme_object, get_override
from drf_spectacular.utils import OpenApiResponse, inline_serializer
from rest_framework import serializers

ERROR_DESCRIPTIONS = {
    400: "Invalid input: `fields` names each field at fault.",
    401: "Not signed in, or the API token is unknown, expired or revoked.",
    403: "Your role (or your token's) does not allow this.",
    404: "No such object in a tenant you belong to (other tenants' objects answer 404 too).",
    409: "The request clashes with the current state (a duplicate, a concurrent change).",
    502: "An upstream service (the Hugging Face Hub) answered with an error.",
    503: "The Kubernetes cluster or the Hugging Face Hub cannot be reached; retry later.",
}
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


# A serializer cannot declare a field named `fields` (it is DRF's own attribute), so the inner
# object is built with inline_serializer.
ERROR_BODY = inline_serializer(
    name="ErrorBody",
    fields={
        "status": serializers.IntegerField(),
        "code": serializers.CharField(help_text="e.g. `invalid`, `not_found`, `conflict`"),
        "message": serializers.CharField(),
        "fields": serializers.DictField(
            child=serializers.ListField(child=serializers.CharField()),
            required=False,
            help_text="Messages per input field (nested fields joined with dots).",
        ),
    },
)


class ErrorSerializer(serializers.Serializer):
    """The body of every error answer of the API."""

    error = ERROR_BODY


def errors(*codes: int) -> dict[int, OpenApiResponse]:
    """Error responses for `extend_schema(responses={...})`."""
    return {
        code: OpenApiResponse(ErrorSerializer, description=ERROR_DESCRIPTIONS[code])
        for code in codes
    }


class PortalAutoSchema(AutoSchema):
    """AutoSchema plus the error answers every operation can give.

    A viewset action named `list` that answers with one object (quota, /me/) declares a
    response serializer marked `extend_schema_serializer(many=False)`; that mark is honoured
    for pagination and filter parameters too, not only for the response body.
    """

    def _is_list_view(self, serializer: Any = None) -> bool:
        main = serializer if serializer is not None else self.get_response_serializers()
        if isinstance(main, dict) and main:
            main = {str(code): value for code, value in main.items()}
            main = main[min(main)]
        if isinstance(main, OpenApiResponse):
            main = main.response
        if main is not None and get_override(main, "many") is False:
            return False
        return bool(super()._is_list_view(serializer))

    def _map_serializer_field(
        self, field: Any, direction: Any, bypass_extensions: bool = False
    ) -> Any:
        schema = super()._map_serializer_field(_as_answered(field), direction, bypass_extensions)
        if (
            direction == "request"
            and isinstance(field, serializers.CharField)
            and field.trim_whitespace
            and not field.allow_blank
            and isinstance(schema, dict)
            and schema.get("type") == "string"
            and "pattern" not in schema
            # validators (a RegexField's) are added to the schema later: keep their pattern
            and not any(isinstance(v, RegexValidator) for v in field.validators)
        ):
            # DRF trims the value before its blank check, so "  " is refused as blank although
            # minLength 1 allows it: the schema says a non-space character is needed.
            schema["pattern"] = r"\S"
        return schema

    def get_operation(self, *args: Any, **kwargs: Any) -> dict[str, Any] | None:
        operation: dict[str, Any] | None = super().get_operation(*args, **kwargs)
        if operation is None:
            return None
        responses = operation["responses"]
        for code in self._usual_error_codes(operation):
            if str(code) not in responses:
                response = OpenApiResponse(ErrorSerializer, description=ERROR_DESCRIPTIONS[code])
                responses[str(code)] = self._get_response_for_code(response, str(code))
        operation["responses"] = dict(sorted(responses.items()))
        return operation

    def _usual_error_codes(self, operation: dict[str, Any]) -> list[int]:
        parameters = operation.get("parameters", [])
        in_query = {p["name"] for p in parameters if p.get("in") == "query"}
        in_path = any(p.get("in") == "path" for p in parameters)
        codes = [401, 403]
        if self.method in WRITE_METHODS or in_query:
            codes.append(400)
        if in_path or "page" in in_query:
            codes.append(404)  # a path parameter naming nothing, or a page past the end
        if self.method in WRITE_METHODS:
            codes.append(409)
        return codes


def _as_answered(field: Any) -> Any:
    """A read-only field of a model serializer, with the blank and null its model field allows.

    DRF drops allow_blank from read-only model fields and declared fields (a username through a
    nullable foreign key) default to allow_null=False, yet a blank choice (no previous colour
    yet) or a null (no one acknowledged the licence yet) is what they answer.
    """
    if not field.read_only or "." in (field.source or "") or field.source == "*":
        return field
    model = getattr(getattr(field.parent, "Meta", None), "model", None)
    if model is None:
        return field
    try:
        model_field = model._meta.get_field(field.source)
    except FieldDoesNotExist:
        return field
    null = bool(getattr(model_field, "null", False)) and not field.allow_null
    blank = (
        isinstance(field, serializers.ChoiceField)
        and bool(getattr(model_field, "blank", False))
        and not field.allow_blank
    )
    if not (null or blank):
        return field
    field = copy.copy(field)
    if null:
        field.allow_null = True
    if blank:
        field.allow_blank = True
    return field


class ApiTokenScheme(OpenApiAuthenticationExtension):
    """`Authorization: Bearer ipt_…`, a token scoped to one tenant (tenants.authentication)."""

    target_class = "tenants.authentication.ApiTokenAuthentication"
    name = "apiToken"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        scheme: dict[str, Any] = build_bearer_security_scheme_object(
            header_name="Authorization",
            token_prefix="Bearer",  # noqa: S106 - the scheme's keyword, not a secret
            bearer_format="ipt_…",
        )
        scheme["description"] = (
            "An API token of one tenant (created on the tenant's API tokens page or with "
            "POST /api/v1/tenants/{slug}/tokens/). It never carries more than its holder's "
            "role in that tenant, nor platform-admin powers."
        )
        return scheme


# --- the query parameters each operation declares (portal.api holds every request to them) -


class _DeclaredQueries:
    """The schema's query parameters per operation, generated once per process.

    The generated schema is the single statement of what a route accepts, so the check in
    portal.api reads it rather than a second list kept by hand per view.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._schema: dict[str, Any] | None = None
        self._routes: list[tuple[re.Pattern[str], dict[str, Any]]] = []

    def _load(self) -> dict[str, Any]:
        with self._lock:
            if self._schema is None:
                schema = SchemaGenerator().get_schema(request=None, public=True)
                routes = []
                for path, operations in schema["paths"].items():
                    parts = re.split(r"(\{[^}]+\})", path)
                    pattern = "".join("[^/]+" if p.startswith("{") else re.escape(p) for p in parts)
                    routes.append((path.count("{"), re.compile(pattern), operations))
                # A literal segment wins over a template that would match it too.
                routes.sort(key=lambda route: route[0])
                self._routes = [(pattern, operations) for _, pattern, operations in routes]
                self._schema = schema
            return self._schema

    def operation(self, path: str, method: str) -> dict[str, Any] | None:
        """The schema's operation for a request path; None when it has none."""
        self._load()
        for pattern, operations in self._routes:
            if pattern.fullmatch(path):
                operation: dict[str, Any] | None = operations.get(method.lower())
                return operation
        return None

    def for_request(self, path: str, method: str) -> dict[str, dict[str, Any]] | None:
        """name: parameter object; None when the schema has no such operation."""
        operation = self.operation(path, method)
        if operation is None:
            return None
        return {p["name"]: p for p in operation.get("parameters", []) if p["in"] == "query"}

    def declares_body(self, path: str, method: str) -> bool:
        operation = self.operation(path, method)
        return operation is not None and "requestBody" in operation

    def resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        """A parameter's schema with a component `$ref` replaced by the component."""
        ref = schema.get("$ref", "")
        if not ref.startswith("#/components/schemas/"):
            return schema
        components: dict[str, Any] = self._load()["components"]["schemas"]
        return dict(components[ref.rsplit("/", 1)[1]])


DECLARED_QUERIES = _DeclaredQueries()


def query_parameter_errors(path: str, method: str, query: Any) -> dict[str, list[str]]:
    """{parameter: [message]} for each query parameter the operation does not declare, gives
    twice, or gives a value its declared schema refuses."""
    declared = DECLARED_QUERIES.for_request(path, method)
    if declared is None:
        return {}
    errors: dict[str, list[str]] = {}
    for name in query:
        parameter = declared.get(name)
        if parameter is None:
            accepted = ", ".join(sorted(declared)) or "none"
            errors[name] = [f"unknown query parameter (this route accepts: {accepted})"]
            continue
        values = query.getlist(name)
        if len(values) > 1:
            errors[name] = ["given more than once"]
            continue
        message = _value_error(values[0], DECLARED_QUERIES.resolve(parameter.get("schema", {})))
        if message:
            errors[name] = [message]
    return errors


_INTEGER = re.compile(r"-?[0-9]+")


def _value_error(value: str, schema: dict[str, Any]) -> str | None:
    kind = schema.get("type")
    if kind == "integer":
        if not _INTEGER.fullmatch(value):
            return "must be an integer"
        number = int(value)
        if "minimum" in schema and number < schema["minimum"]:
            return f"must be at least {schema['minimum']}"
        if "maximum" in schema and number > schema["maximum"]:
            return f"must be at most {schema['maximum']}"
    elif kind == "boolean" and value not in ("true", "false"):
        return "must be true or false"
    if "enum" in schema and value not in [str(choice) for choice in schema["enum"]]:
        return "must be one of: " + ", ".join(str(choice) for choice in schema["enum"])
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        return f"must be at most {schema['maxLength']} characters"
    if "\x00" in value:
        return "must not contain NUL characters"
    return None

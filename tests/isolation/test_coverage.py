"""The isolation table must cover every URL pattern and HTTP method the project serves."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from django.urls import URLPattern, URLResolver, get_resolver

from tests.isolation.routes import ROUTES

# Django's own admin console is covered by tests/tenants/test_admin.py (staff only).
EXCLUDED_NAMESPACES = {"admin"}


def _patterns(resolver: URLResolver, namespace: str = "") -> Iterator[tuple[str, URLPattern]]:
    for entry in resolver.url_patterns:
        if isinstance(entry, URLResolver):
            inner = entry.namespace or namespace
            if inner in EXCLUDED_NAMESPACES:
                continue
            yield from _patterns(entry, inner)
        else:
            yield namespace, entry


def _served_methods(callback: Any) -> set[str]:
    if getattr(callback, "actions", None):  # a DRF viewset bound to actions (HEAD mirrors GET)
        return set(callback.actions) - {"head"}
    view_class = getattr(callback, "view_class", None)
    if view_class is not None:
        allowed = getattr(callback, "view_initkwargs", {}).get(
            "http_method_names", view_class.http_method_names
        )
        return {
            method
            for method in allowed
            if method not in ("options", "head") and hasattr(view_class, method)
        }
    return {"get"}


def test_every_url_and_method_is_in_the_isolation_table() -> None:
    declared = {(route.url_name, route.method) for route in ROUTES}
    missing = []
    for _, pattern in _patterns(get_resolver()):
        assert pattern.name, f"URL pattern {pattern.pattern} needs a name to be testable"
        for method in _served_methods(pattern.callback):
            if (pattern.name, method) not in declared:
                missing.append(f"{method.upper()} {pattern.name}")
    assert not missing, "add these to tests/isolation/routes.py: " + ", ".join(sorted(missing))

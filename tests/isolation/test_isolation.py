"""Every route and every persona gets exactly the declared status: no leaks across tenants."""

from __future__ import annotations

import json

import pytest
from django.urls import reverse

from tests.fixtures.personas import PERSONAS, World
from tests.isolation.routes import ROUTES, Route

CASES = [(route, persona) for route in ROUTES for persona in PERSONAS]


@pytest.mark.parametrize(
    ("route", "persona"), CASES, ids=[f"{route.id} as {persona}" for route, persona in CASES]
)
def test_route_answers_persona_with_declared_status(
    world: World, route: Route, persona: str
) -> None:
    client = world.client_for(persona)
    url = reverse(route.url_name, kwargs=route.kwargs(world))
    send = getattr(client, route.method)
    if route.json:
        response = send(url, data=json.dumps(route.data or {}), content_type="application/json")
    else:
        response = send(url, data=route.data or {})
    expected = route.expect[persona]
    assert response.status_code == expected, (
        f"{route.method.upper()} {url} as {persona}: expected {expected}, "
        f"got {response.status_code}: {response.content[:300]!r}"
    )


@pytest.mark.parametrize("persona", ["owner_b", "maintainer_a"])
def test_other_tenants_names_never_appear_in_pages(world: World, persona: str) -> None:
    """Pages a user can open never mention a tenant they do not belong to."""
    client = world.client_for(persona)
    foreign = world.tenant_a if persona == "owner_b" else world.tenant_b
    for url_name in ("tenant-list", "api-tenant-list", "api-me"):
        body = client.get(reverse(url_name)).content.decode()
        assert foreign.namespace not in body
        assert foreign.name not in body

"""The serving schema is the one statement of each field: the API and the wizard refuse the
same out-of-range values naming the same field, offer the same choices and fill the same
defaults."""

from __future__ import annotations

from typing import Any

import pytest

from deployments.admission import ServingRequest
from deployments.forms import DeploymentForm
from deployments.serializers import DeploymentCreateSerializer
from deployments.serving_fields import SERVING_FIELDS, SERVING_SCHEMA, ServingField
from tests.fixtures.personas import World

BOUNDED = [f for f in SERVING_SCHEMA if f.kind == "integer"]
CHOICES = [f for f in SERVING_SCHEMA if f.kind == "choice"]


def submitted(world: World, **values: Any) -> dict[str, Any]:
    model = world.objects["model_a"]
    return {"name": "chat", "model": model.pk, "tier": "a100-80g", **values}


def api_errors(world: World, data: dict[str, Any]) -> dict[str, Any]:
    serializer = DeploymentCreateSerializer(data=data, context={"tenant": world.tenant_a})
    serializer.is_valid()
    return dict(serializer.errors)


def form_errors(world: World, data: dict[str, Any]) -> dict[str, Any]:
    form = DeploymentForm(data, tenant=world.tenant_a)
    form.is_valid()
    return dict(form.errors)


def outside(field: ServingField) -> list[int]:
    values = [field.min_value - 1] if field.min_value is not None else []
    return values + ([field.max_value + 1] if field.max_value is not None else [])


@pytest.mark.parametrize("field", BOUNDED, ids=lambda f: f.name)
def test_api_and_wizard_refuse_the_same_out_of_range_values(
    world: World, field: ServingField
) -> None:
    for value in outside(field):
        data = submitted(world, **{field.name: value})
        assert field.name in api_errors(world, data), value
        assert field.name in form_errors(world, data), value
    inside = field.min_value or 1
    data = submitted(world, **{"max_total_tokens": 4096, field.name: inside})
    assert field.name not in api_errors(world, data)
    assert field.name not in form_errors(world, data)


@pytest.mark.parametrize("field", CHOICES, ids=lambda f: f.name)
def test_api_and_wizard_refuse_a_value_that_is_not_offered(
    world: World, field: ServingField
) -> None:
    data = submitted(world, **{field.name: "no-such-value"})
    assert field.name in api_errors(world, data)
    assert field.name in form_errors(world, data)


def test_left_out_fields_take_the_schema_defaults_in_the_api_and_the_request(world: World) -> None:
    serializer = DeploymentCreateSerializer(
        data=submitted(world), context={"tenant": world.tenant_a}
    )
    assert serializer.is_valid(), serializer.errors
    request = serializer.serving_request()
    defaults = ServingRequest(model=request.model, tier=request.tier)
    for field in SERVING_SCHEMA:
        assert getattr(request, field.name) == field.default == getattr(defaults, field.name)
    assert list(serializer.fields)[2 : 2 + len(SERVING_FIELDS)] == list(SERVING_FIELDS)

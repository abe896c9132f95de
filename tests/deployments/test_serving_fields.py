"""The serving and promotion schemas are the one statement of each field: the API, the wizard
and the services refuse the same out-of-range values naming the same field, offer the same
choices and fill the same defaults, and the rows that store them have a column per field."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import models

from deployments import services
from deployments.admission import ServingRequest
from deployments.forms import DeploymentForm
from deployments.models import Deployment, DeploymentRevision, Rollout, Tier
from deployments.serializers import DeploymentCreateSerializer
from deployments.serving_fields import (
    PROMOTION_SCHEMA,
    SERVING_FIELDS,
    SERVING_SCHEMA,
    ServingField,
)
from portal.errors import DomainError
from tenants.audit import Actor
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


def test_an_empty_wizard_input_takes_the_schema_default(world: World) -> None:
    with_defaults = [f for f in SERVING_SCHEMA if f.kind == "integer" and not f.optional]
    data = submitted(world, **{f.name: "" for f in with_defaults})
    data.update(promotion="", promote_after_seconds="")
    form = DeploymentForm(data, tenant=world.tenant_a)
    assert form.is_valid(), form.errors
    request = form.serving_request()
    for field in with_defaults:
        assert getattr(request, field.name) == field.default
    assert form.promotion_choice() == services.Promotion()


# The wizard names the promotion's inputs as its templates do.
WIZARD_NAMES = {"mode": "promotion", "after_seconds": "promote_after_seconds"}


@pytest.mark.parametrize("field", PROMOTION_SCHEMA, ids=lambda f: f.name)
def test_api_wizard_and_services_refuse_the_same_promotion_values(
    world: World, field: ServingField
) -> None:
    wrong: list[Any] = ["no-such-mode"] if field.kind == "choice" else outside(field)
    owner = Actor(world.users["owner_a"], "cli")
    request = ServingRequest(model=world.objects["model_a"], tier=Tier.objects.get(slug="a100-80g"))
    for value in wrong:
        errors = api_errors(world, submitted(world, promotion={field.name: value}))
        assert field.name in errors.get("promotion", {}), (value, errors)
        if field.name in WIZARD_NAMES:
            name = WIZARD_NAMES[field.name]
            assert name in form_errors(world, submitted(world, **{name: value})), value
        # Services called directly (the CLI, a task) refuse it too, before anything is saved.
        promotion = services.Promotion(**{field.name: value})
        with pytest.raises(DomainError) as refused:
            services.create_deployment(
                owner, world.tenant_a, name="refused", request=request, promotion=promotion
            )
        assert refused.value.field == f"promotion.{field.name}"
    assert not Deployment.objects.filter(tenant=world.tenant_a, name="refused").exists()


MODEL_KINDS = {
    "integer": (models.PositiveIntegerField, models.IntegerField),
    "choice": (models.CharField,),
    "boolean": (models.BooleanField,),
}


# Where a rollout stores its promotion (the other promotion fields keep their names).
ROLLOUT_COLUMNS = {"mode": "promotion_mode", "after_seconds": "promote_after_seconds"}


@pytest.mark.parametrize(
    ("model", "fields", "columns"),
    [(DeploymentRevision, SERVING_SCHEMA, {}), (Rollout, PROMOTION_SCHEMA, ROLLOUT_COLUMNS)],
    ids=["revision", "rollout"],
)
def test_the_stored_row_has_a_column_per_schema_field(
    model: type[models.Model], fields: tuple[ServingField, ...], columns: dict[str, str]
) -> None:
    """A field added to a schema without its column (or with another default) fails here,
    not when a revision is rebuilt from the row."""
    for field in fields:
        stored = model._meta.get_field(columns.get(field.name, field.name))
        assert isinstance(stored, MODEL_KINDS[field.kind]), field.name
        assert isinstance(stored, models.Field)
        if not field.optional:
            assert stored.default == field.default, field.name

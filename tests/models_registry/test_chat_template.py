"""Registration records whether a model ships a chat template (base models do not)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.urls import reverse

from devstack.hub import fixtures as hub
from models_registry import services
from models_registry.metadata import has_chat_template
from models_registry.models import RegisteredModel
from tests.fixtures.personas import World


@pytest.fixture
def tenant_token(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tenant's Hub token may read gated repositories (without a Secret in a cluster)."""
    monkeypatch.setattr(services, "tenant_hub_token", lambda tenant: hub.TOKEN_READ)


def register(world: World, repo_id: str) -> Any:
    return world.client_for("maintainer_a").post(
        reverse("api-model-list", args=["alpha"]),
        data=json.dumps({"repo_id": repo_id}),
        content_type="application/json",
    )


@pytest.mark.usefixtures("tenant_token")
def test_base_model_is_recorded_without_a_chat_template(world: World) -> None:
    response = register(world, hub.LLAMA_8B_BASE_ID)
    assert response.status_code == 201, response.content
    assert response.json()["current"]["has_chat_template"] is False
    model = RegisteredModel.objects.get(repo_id=hub.LLAMA_8B_BASE_ID)
    page = world.client_for("viewer_a").get(reverse("model-detail", args=["alpha", model.pk]))
    assert "none — a base model: completions only" in page.content.decode()


@pytest.mark.usefixtures("tenant_token")
def test_instruct_model_is_recorded_with_its_chat_template(world: World) -> None:
    response = register(world, hub.LLAMA_8B_ID)
    assert response.status_code == 201, response.content
    assert response.json()["current"]["has_chat_template"] is True
    model = RegisteredModel.objects.get(repo_id=hub.LLAMA_8B_ID)
    page = world.client_for("viewer_a").get(reverse("model-detail", args=["alpha", model.pk]))
    assert "yes — serves chat completions" in page.content.decode()


def test_the_flag_is_read_only_in_the_api(world: World) -> None:
    model = world.objects["model_a"]
    response = world.client_for("maintainer_a").patch(
        reverse("api-model-detail", args=["alpha", model.pk]),
        data=json.dumps({"current": {"has_chat_template": True}}),
        content_type="application/json",
    )
    assert response.status_code in (400, 405)
    model.current_revision.refresh_from_db()
    assert model.current_revision.has_chat_template is None  # never recorded for this fixture


@pytest.mark.usefixtures("tenant_token")
def test_lookup_says_whether_a_model_can_chat(world: World) -> None:
    url = reverse("api-hub-lookup", args=["alpha"])
    viewer = world.client_for("viewer_a")
    base = viewer.get(url, {"repo_id": hub.LLAMA_8B_BASE_ID}).json()
    assert base["registrable"] is True and base["model"]["has_chat_template"] is False
    gptq = viewer.get(url, {"repo_id": hub.MISTRAL_GPTQ_ID}).json()
    assert gptq["model"]["has_chat_template"] is True
    page = viewer.get(reverse("model-lookup", args=["alpha"]), {"repo_id": hub.LLAMA_8B_BASE_ID})
    assert "none (base model: completions only)" in page.content.decode()


def test_update_records_the_flag_of_the_new_commit(world: World) -> None:
    model = world.objects["model_a"]
    services.acknowledge_license(services.Actor(world.users["owner_a"], "cli"), model)
    main = hub.repo(hub.MISTRAL_7B_ID).branches["main"]
    moved = world.client_for("maintainer_a").post(
        reverse("api-model-update", args=["alpha", model.pk]),
        data=json.dumps({"revision": "main", "expected_sha": main}),
        content_type="application/json",
    )
    assert moved.status_code == 200, moved.content
    assert moved.json()["current"]["has_chat_template"] is True


@pytest.mark.parametrize(
    ("tokenizer_config", "files", "expected"),
    [
        ({"chat_template": "{{ messages }}"}, [], True),
        ({"chat_template": [{"name": "default", "template": "{{ x }}"}]}, [], True),
        ({"chat_template": [{"name": "tool_use", "template": "{{ x }}"}]}, [], True),
        ({"chat_template": "   "}, [], False),
        ({"chat_template": []}, [], False),
        ({"bos_token": "<s>"}, [], False),
        (None, [], False),
        (None, ["chat_template.jinja"], True),
    ],
)
def test_has_chat_template_reads_both_layouts(
    tokenizer_config: dict[str, Any] | None, files: list[str], expected: bool
) -> None:
    assert has_chat_template(tokenizer_config, files) is expected

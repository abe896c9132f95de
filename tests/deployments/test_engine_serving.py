"""What a deployed model serves, per engine: its own tokenizer, and a base model's routes.

One fleet per engine runs two deployments side by side, a Mistral chat model and the Llama 3.1
base model (no chat template), so both checks share the two rollouts.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import httpx
import pytest
from tokenizers import Tokenizer

from deployments import services
from deployments.choices import RolloutState as S
from deployments.models import Deployment
from deployments.rendering import active_service_name
from deployments.rendering.specs import ServingSpec
from deployments.rollout import ready_endpoint_ips
from deployments.specs import serving_spec
from devstack.hub import fixtures as hub
from engines import ENGINES
from models_registry import services as registry
from models_registry.models import RegisteredModel
from tenants.audit import Actor
from tests.fixtures.fleet import Fleet

pytestmark = [pytest.mark.cluster, pytest.mark.worker, pytest.mark.slow]

TEXT = "Bonjour, the café is open."
# The ids of each family's beginning-of-sequence token (tokenizer_config.json's bos_token).
BOS = {hub.MISTRAL_7B_ID: 1, hub.LLAMA_8B_BASE_ID: 128000}
# How each engine refuses a chat request for a model without a chat template: TGI's router
# (router/src/infer/chat_template.rs, 422 "Template error: template not found"), vLLM's and
# SGLang's OpenAI servers (400, transformers' "no chat template" ValueError).
NO_TEMPLATE_STATUS = {"tgi": 422, "vllm": 400, "sglang": 400}


def own_ids(repo_id: str, commit_sha: str, text: str) -> list[int]:
    """The ids the model's own tokenizer.json gives (special tokens added), read from the Hub."""
    commit = hub.repo(repo_id).commits[commit_sha]
    tokenizer = Tokenizer.from_str(commit.files["tokenizer.json"].content.decode())
    return list(tokenizer.encode(text).ids)


def served_ids(answer: Any) -> list[int]:
    """Token ids in a tokenize answer: TGI lists {id, text, start, stop}; vLLM and SGLang
    answer {"tokens": [...], "count": n, ...}."""
    if isinstance(answer, list):
        return [int(token["id"]) for token in answer]
    return [int(token) for token in answer["tokens"]]


def serving_pod(fleet: Fleet, deployment: Deployment) -> tuple[str, ServingSpec]:
    spec = serving_spec(deployment.active_revision)  # type: ignore[arg-type]
    [ip] = ready_endpoint_ips(fleet.tenant.namespace, active_service_name(spec))
    return f"http://{ip}:{spec.engine.port}", spec


@pytest.mark.parametrize("engine", list(ENGINES))
def test_models_tokenize_with_their_own_tokenizer_and_a_base_model_only_completes(
    fleet: Fleet, engine: str
) -> None:
    owner = Actor(fleet.world.users["owner_a"], "cli")
    registry.set_hub_token(owner, fleet.tenant, hub.TOKEN_READ)  # the Llama repos are gated
    base = registry.register_model(owner, fleet.tenant, repo_id=hub.LLAMA_8B_BASE_ID)
    registry.acknowledge_license(owner, base)
    assert base.current_revision is not None and base.current_revision.has_chat_template is False
    mistral: RegisteredModel = fleet.world.objects["model_a"]
    rollouts = {}
    for name, model in (("mistral", mistral), ("llama-base", base)):
        deployment, rollout, _ = services.create_deployment(
            fleet.actor,
            fleet.tenant,
            name=name,
            request=dataclasses.replace(fleet.request(), model=model),
            promotion=services.Promotion(scale_down_delay_seconds=1),
        )
        rollouts[name] = (deployment, rollout)
    for deployment, rollout in rollouts.values():
        # The base model passes the pre-promotion check through the completion route.
        fleet.wait_state(rollout, S.COMPLETED, timeout=180)
        deployment.refresh_from_db()

    # /tokenize, as the gateway counts tokens: each model's own ids, starting with its own BOS.
    seen: dict[str, list[int]] = {}
    for deployment, _ in rollouts.values():
        url, spec = serving_pod(fleet, deployment)
        call = spec.engine.tokenize_text(TEXT)
        answer = httpx.post(f"{url}{call.path}", json=dict(call.payload or {}), timeout=10)
        assert answer.status_code == 200, answer.text
        ids = served_ids(answer.json())
        repo_id = spec.model.repo_id
        assert ids == own_ids(repo_id, spec.model.commit_sha, TEXT), repo_id
        assert ids[0] == BOS[repo_id] and ids.count(BOS[repo_id]) == 1, ids
        assert spec.engine.token_count(call, answer.json()) == len(ids)
        seen[repo_id] = ids
    assert seen[hub.MISTRAL_7B_ID] != seen[hub.LLAMA_8B_BASE_ID]

    # The base model completes text but refuses chat with the engine's template error.
    url, spec = serving_pod(fleet, rollouts["llama-base"][0])
    completion = httpx.post(
        f"{url}/v1/completions",
        json={"model": spec.model.repo_id, "prompt": "The capital of France is", "max_tokens": 4},
        timeout=10,
    )
    assert completion.status_code == 200, completion.text
    assert completion.json()["choices"][0]["text"]
    chat = httpx.post(
        f"{url}/v1/chat/completions",
        json={
            "model": spec.model.repo_id,
            "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 4,
        },
        timeout=10,
    )
    assert chat.status_code == NO_TEMPLATE_STATUS[engine], chat.text
    assert "template" in chat.text.lower()

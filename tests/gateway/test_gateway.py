"""The gateway as tenants' clients meet it: the official `openai` client against real gateway
processes, real Redis, and simulated engine pods on the local cluster (the main routes once per
engine, the rest on the default engine)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import html
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from django.urls import reverse

from engines import ENGINES
from tenants import services as tenant_services
from tenants.models import GatewayKey
from tests.gateway.conftest import ROOT, Gateways, Served

pytestmark = [pytest.mark.cluster, pytest.mark.worker, pytest.mark.slow]


def client(gateway_url: str, key: str, **options: object) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway_url}/v1", api_key=key, max_retries=0, **options)  # type: ignore[arg-type]


@pytest.mark.parametrize("engine", list(ENGINES))
def test_openai_client_chat_completions_and_models(served: Served, gateways: Gateways) -> None:
    """The routes an OpenAI client uses, in front of each engine (one rollout per engine)."""
    gateway = gateways.start()
    openai_client = client(gateway.url, served.key)

    answer = openai_client.chat.completions.create(
        model="chat", messages=[{"role": "user", "content": "Say hello"}], max_tokens=5
    )
    assert answer.choices[0].message.content
    assert answer.usage is not None
    assert answer.usage.completion_tokens == 5
    assert answer.usage.prompt_tokens > 0

    chunks = list(
        openai_client.chat.completions.create(
            model="chat",
            messages=[{"role": "user", "content": "Count to ten"}],
            max_tokens=8,
            stream=True,
        )
    )
    content = [c.choices[0].delta.content for c in chunks if c.choices]
    assert len([c for c in content if c]) == 8
    # Not asked for: the usage chunk the gateway requests for metering is not passed on.
    assert all(c.choices for c in chunks)

    with_usage = list(
        openai_client.chat.completions.create(
            model="chat",
            messages=[{"role": "user", "content": "Count to ten"}],
            max_tokens=8,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert with_usage[-1].usage is not None
    assert with_usage[-1].usage.completion_tokens == 8

    models = openai_client.models.list()
    assert [m.id for m in models.data] == ["chat"]
    completion = openai_client.completions.create(model="chat", prompt="Hello", max_tokens=3)
    assert completion.choices[0].text
    assert completion.usage is not None and completion.usage.completion_tokens == 3


def test_stream_is_relayed_as_tokens_arrive(served: Served, gateways: Gateways) -> None:
    """No buffering: the first event reaches the client long before the last one is generated."""
    gateway = gateways.start()
    arrivals = []
    started = time.monotonic()
    with httpx.stream(
        "POST",
        f"{gateway.url}/v1/completions",
        headers={"Authorization": f"Bearer {served.key}"},
        json={"model": "chat", "prompt": "Once upon", "max_tokens": 60, "stream": True},
        timeout=30,
    ) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("data: {"):
                arrivals.append(time.monotonic() - started)
    assert len(arrivals) == 60
    # The simulator spends time per token; a buffering proxy would deliver everything at once.
    assert arrivals[-1] - arrivals[0] > 0.1
    assert arrivals[0] < arrivals[-1] / 2


def test_requests_are_balanced_over_ready_pods(served: Served, gateways: Gateways) -> None:
    gateway = gateways.start()

    # Each request generates one token: the pods' own output-token counters say who served it.
    generated = served.engine.metrics.output_tokens_counter
    before = served.pod_counters(generated)
    for _ in range(8):
        response = httpx.post(
            f"{gateway.url}/v1/chat/completions",
            headers={"Authorization": f"Bearer {served.key}"},
            json={
                "model": "chat",
                "messages": [{"role": "user", "content": "hi"}],
                "max_tokens": 1,
            },
        )
        assert response.status_code == 200, response.text
    after = served.pod_counters(generated)
    assert [b - a for a, b in zip(before, after, strict=True)] == [4, 4]


def test_unknown_model_bad_key_and_revoked_key(served: Served, gateways: Gateways) -> None:
    gateway = gateways.start()
    with pytest.raises(openai.NotFoundError) as missing:
        client(gateway.url, served.key).chat.completions.create(
            model="nope", messages=[{"role": "user", "content": "x"}], max_tokens=1
        )
    assert missing.value.code == "model_not_found"
    assert "GET /v1/models" in missing.value.message
    with pytest.raises(openai.AuthenticationError):
        client(gateway.url, "igk_000000000000_wrong").models.list()
    response = httpx.post(f"{gateway.url}/v1/chat/completions", json={})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "missing_api_key"


def test_revoked_key_is_refused_within_a_second(served: Served, gateways: Gateways) -> None:
    first, second = gateways.start(), gateways.start()
    key = GatewayKey.objects.get(pk=served.key_id)
    for gateway in (first, second):
        assert client(gateway.url, served.key).models.list().data
    tenant_services.revoke_gateway_key(served.owner, key)
    revoked_at = time.monotonic()
    refused: dict[int, float] = {}
    while len(refused) < 2 and time.monotonic() - revoked_at < 5:
        for gateway in (first, second):
            if gateway.port in refused:
                continue
            status = httpx.get(
                f"{gateway.url}/v1/models", headers={"Authorization": f"Bearer {served.key}"}
            ).status_code
            if status == 401:
                refused[gateway.port] = time.monotonic() - revoked_at
        time.sleep(0.02)
    assert len(refused) == 2, refused
    assert max(refused.values()) < 1.0, refused


def test_scoped_key_reaches_only_its_deployments(served: Served, gateways: Gateways) -> None:
    gateway = gateways.start()
    _, rollout = served.fleet.deploy("other", max_total_tokens=2048, max_input_tokens=1024)
    served.fleet.wait_state(rollout, "completed", timeout=180)
    scoped = served.new_key(deployments=["other"])
    time.sleep(1)  # new keys reach running gateways within a second
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # the new deployment reaches the gateway's snapshot
        ids = [m.id for m in client(gateway.url, served.key).models.list().data]
        if ids == ["chat", "other"]:
            break
        time.sleep(0.1)
    assert [m.id for m in client(gateway.url, scoped).models.list().data] == ["other"]
    with pytest.raises(openai.NotFoundError):
        client(gateway.url, scoped).chat.completions.create(
            model="chat", messages=[{"role": "user", "content": "x"}], max_tokens=1
        )
    ok = client(gateway.url, scoped).chat.completions.create(
        model="other", messages=[{"role": "user", "content": "x"}], max_tokens=1
    )
    assert ok.choices


def test_client_disconnect_cancels_the_upstream_request(served: Served, gateways: Gateways) -> None:
    gateway = gateways.start()

    async def start_and_drop() -> None:
        async with (
            httpx.AsyncClient(timeout=30) as http,
            http.stream(
                "POST",
                f"{gateway.url}/v1/completions",
                headers={"Authorization": f"Bearer {served.key}"},
                json={"model": "chat", "prompt": "go", "max_tokens": 1000, "stream": True},
            ) as response,
        ):
            async for line in response.aiter_lines():
                if line.startswith("data:"):
                    break  # leave after the first token

    asyncio.run(start_and_drop())
    # TGI (the default engine) counts a request dropped by its client as a failure of kind
    # "dropped" once it notices, instead of generating the remaining tokens.
    assert served.engine.name == "tgi", "this check reads TGI's own failure counter"
    deadline = time.monotonic() + 10
    dropped = 0.0
    while time.monotonic() < deadline:
        dropped = sum(served.pod_counters("tgi_request_failure"))
        if dropped:
            break
        time.sleep(0.2)
    assert dropped == 1
    assert "client_disconnected" in httpx.get(f"{gateway.url}/metrics").text


def test_many_concurrent_streams(served: Served, gateways: Gateways) -> None:
    gateway = gateways.start()

    def one(i: int) -> int:
        chunks = client(gateway.url, served.key).chat.completions.create(
            model="chat", messages=[{"role": "user", "content": f"n{i}"}], max_tokens=4, stream=True
        )
        return sum(1 for c in chunks if c.choices)

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        assert list(pool.map(one, range(32))) == [4] * 32


OPENAI_JS_VERSION = "7.57.0"


def _openai_js(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The official `openai` npm package, installed once per machine under var/."""
    target = ROOT / "var" / "node" / f"openai-{OPENAI_JS_VERSION}"
    if not (target / "node_modules" / "openai" / "package.json").exists():
        target.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                "npm",
                "install",
                "--no-audit",
                "--no-fund",
                "--prefix",
                str(target),
                f"openai@{OPENAI_JS_VERSION}",
            ],
            check=True,
            capture_output=True,
            timeout=300,
        )
    return target


def test_deployment_page_snippets_run_against_the_gateway(
    served: Served, gateways: Gateways, settings: Any, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The Python and JavaScript snippets on the deployment page, copied verbatim, work."""
    gateway = gateways.start()
    settings.GATEWAY_PUBLIC_URL = gateway.url
    page = served.fleet.world.client_for("owner_a").get(
        reverse("deployment-detail", args=[served.fleet.tenant.slug, served.deployment.pk])
    )
    body = page.content.decode()

    def snippet(element_id: str) -> str:
        start = body.index(f'id="{element_id}">') + len(f'id="{element_id}">')
        return html.unescape(body[start : body.index("</pre>", start)])

    env = {**os.environ, "PORTAL_GATEWAY_KEY": served.key}
    python = subprocess.run(
        [sys.executable, "-c", snippet("snippet-python")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert python.returncode == 0, python.stderr
    assert python.stdout.strip()  # the model's reply
    modules = _openai_js(tmp_path_factory)
    script = modules / "snippet.mjs"
    script.write_text(snippet("snippet-js"))
    node = subprocess.run(
        ["node", str(script)], env=env, capture_output=True, text=True, timeout=60, cwd=modules
    )
    assert node.returncode == 0, node.stderr
    assert node.stdout.strip()  # streamed reply

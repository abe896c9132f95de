"""Names every caller derives from ``deployments.rendering`` and the one EndpointSlice readiness
rule. Plain pytest: no database, no cluster."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from deployments.rendering import (
    TenantSpec,
    render_hub_token_secret,
    render_namespace,
    render_tenant_namespace,
    service_host,
    service_name,
    workload_name,
)
from deployments.rendering.constants import DEPLOYMENT_NAME_MAX
from deployments.rendering.endpointslices import endpoint_ready, ready_ips, service_port


def test_names_existing_clusters_hold_stay_unchanged() -> None:
    assert service_name("chat") == "tgi-chat"
    assert service_name("chat", preview=True) == "tgi-chat-preview"
    assert workload_name("chat", "blue") == "tgi-chat-blue"
    assert service_host("chat", "tenant-acme") == "tgi-chat.tenant-acme.svc"
    assert service_host("chat", "tenant-acme", preview=True) == "tgi-chat-preview.tenant-acme.svc"


def test_longest_allowed_deployment_name_keeps_a_readable_preview_service() -> None:
    name = "d" * DEPLOYMENT_NAME_MAX

    assert service_name(name, preview=True) == f"tgi-{name}-preview"
    assert len(service_name(name, preview=True)) == 63


def test_hub_token_path_applies_the_same_namespace_as_a_rollout() -> None:
    # Both are server-side applied under one field manager: a Namespace with fewer labels
    # would remove the others (the Pod Security level among them).
    tenant = TenantSpec(slug="acme", namespace="tenant-acme", max_gpus=8, max_pods=20)

    assert render_namespace("acme", "tenant-acme") == render_tenant_namespace(tenant)[0]


def test_hub_token_secret_carries_the_token_under_the_engines_key() -> None:
    secret = render_hub_token_secret("acme", "tenant-acme", "hf_abc", "sha256:1234")

    assert secret["metadata"]["name"] == "hf-token"
    assert secret["metadata"]["namespace"] == "tenant-acme"
    assert secret["metadata"]["labels"]["inference.portal/tenant"] == "acme"
    assert secret["metadata"]["annotations"] == {"inference.portal/fingerprint": "sha256:1234"}
    assert base64.b64decode(secret["data"]["token"]) == b"hf_abc"


def _endpoint(ip: str, **conditions: bool) -> dict[str, Any]:
    return {"addresses": [ip], "conditions": conditions}


@pytest.mark.parametrize(
    ("conditions", "ready"),
    [
        ({}, True),  # nil ready: Kubernetes says read it as true
        ({"ready": True}, True),
        ({"ready": False}, False),
        ({"ready": False, "serving": True, "terminating": True}, False),  # draining
        # Only a Service publishing not-ready addresses yields this; its owner wants them used.
        ({"ready": True, "terminating": True}, True),
    ],
)
def test_endpoint_readiness_follows_the_ready_condition(
    conditions: dict[str, bool], ready: bool
) -> None:
    assert endpoint_ready(_endpoint("10.0.0.1", **conditions)) is ready


def test_endpoint_without_conditions_is_ready() -> None:
    assert endpoint_ready({"addresses": ["10.0.0.1"]})


def test_ready_ips_and_service_port_of_a_slice() -> None:
    endpoint_slice = {
        "ports": [{"name": "metrics", "port": 9000}, {"name": "http", "port": 8000}],
        "endpoints": [
            _endpoint("10.0.0.1", ready=True),
            _endpoint("10.0.0.2", ready=False, terminating=True),
            {"addresses": ["10.0.0.3"]},
        ],
    }

    assert ready_ips(endpoint_slice) == ["10.0.0.1", "10.0.0.3"]
    assert service_port(endpoint_slice) == 8000
    assert service_port({"ports": [{"port": 80}]}) == 80
    assert service_port({"ports": []}) is None

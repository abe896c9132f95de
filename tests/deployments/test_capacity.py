"""GPU capacity from the labels real GPU nodes carry: a tier is the nodes its selector matches,
a pool is what the cloud or the autoscaler calls it. No label of the portal's own is needed."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from deployments import admission
from deployments.capacity import ClusterCapacity, NodeGpus, pool_name
from deployments.models import Tier
from deployments.rendering.meta import label_selector_problem
from deployments.specs import tier_spec
from tests.deployments.test_api import acknowledge
from tests.deployments.test_services import request_for, set_quota
from tests.fixtures.personas import World

L4 = {"nvidia.com/gpu.product": "NVIDIA-L4", "node.kubernetes.io/instance-type": "g2-standard-24"}
A100 = {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}
LABEL = "nvidia.com/gpu.product"


def gke(pool: str, labels: dict[str, str]) -> dict[str, str]:
    return {**labels, "cloud.google.com/gke-nodepool": pool}


CLUSTER = ClusterCapacity(
    [
        NodeGpus("l4-a", gke("l4", L4), allocatable=1, requested=1),
        NodeGpus("l4-b", gke("l4", L4), allocatable=1, requested=0),
        NodeGpus("l4-c", gke("l4-spot", L4), allocatable=1, requested=0),
        NodeGpus("a100-a", {**A100, "karpenter.sh/nodepool": "a100"}, allocatable=8, requested=3),
        NodeGpus("a100-b", A100 | {"node.kubernetes.io/instance-type": "a2-ultragpu-8g"}, 0, 0),
    ]
)


def test_a_tier_counts_every_node_its_selector_matches_across_pools() -> None:
    l4 = CLUSTER.matching({"nvidia.com/gpu.product": "NVIDIA-L4"})
    assert l4 is not None
    assert (l4.nodes, l4.allocatable, l4.free) == (3, 3, 2)
    assert l4.replicas_that_fit(1) == 2 and l4.gpu_product == "NVIDIA-L4"
    pool = CLUSTER.matching({"cloud.google.com/gke-nodepool": "l4"})
    assert pool is not None and pool.free_per_node == {"l4-a": 0, "l4-b": 1}


def test_a_selector_no_gpu_node_matches_finds_nothing() -> None:
    assert CLUSTER.matching({"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}) is None
    assert CLUSTER.matching({**L4, "cloud.google.com/gke-nodepool": "a100"}) is None


def test_replicas_fit_per_node_not_per_pool() -> None:
    a100 = CLUSTER.matching(A100)
    assert a100 is not None
    # 5 free GPUs on one node, none on the cordoned one: two 2-GPU replicas, not 2.5.
    assert (a100.free, a100.replicas_that_fit(2)) == (5, 2)


def test_pools_are_named_as_the_cloud_or_autoscaler_names_them() -> None:
    assert set(CLUSTER.pools()) == {"l4", "l4-spot", "a100", "a2-ultragpu-8g"}
    assert pool_name({"eks.amazonaws.com/nodegroup": "gpu-ng"}) == "gpu-ng"
    assert pool_name({"kubernetes.azure.com/agentpool": "gpupool"}) == "gpupool"
    assert pool_name({}) == "unpooled"


@pytest.mark.parametrize(
    ("selector", "problem"),
    [
        ({"nvidia.com/gpu.product": "NVIDIA-L4"}, ""),
        ({"cloud.google.com/gke-nodepool": "l4-pool", "node.kubernetes.io/instance-type": ""}, ""),
        (["nvidia.com/gpu.product"], "a JSON object of node labels"),
        ({"nvidia.com/gpu product": "x"}, "is not a label key"),
        ({"/product": "x"}, "is not a label key"),
        ({"Example.com/product": "x"}, "is not a label key"),
        ({"nvidia.com/gpu.product": "NVIDIA L4"}, "is not a label value"),
        ({"nvidia.com/gpu.count": 1}, "is not a label value"),
        ({"k": "v" * 64}, "is not a label value"),
    ],
)
def test_node_selectors_are_checked_as_the_api_server_would(selector: Any, problem: str) -> None:
    found = label_selector_problem(selector)
    assert (problem in found) if problem else found == ""


def test_a_tier_renders_exactly_its_selector(world: World) -> None:
    tier = Tier.objects.get(slug="l4")
    assert tier_spec(tier, "image:1").node_selector == {
        "nvidia.com/gpu.product": "NVIDIA-L4",
        "cloud.google.com/gke-nodepool": "l4",
    }


def test_admission_refuses_a_tier_no_node_matches_naming_its_selector(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    acknowledge(world)
    only_a100 = ClusterCapacity([n for n in CLUSTER.nodes if n.labels.get(LABEL) != "NVIDIA-L4"])
    monkeypatch.setattr(admission, "pool_capacity", lambda: only_a100)
    with pytest.raises(admission.AdmissionRefused) as refused:
        admission.admit(world.tenant_a, request_for(world), None, name="chat")
    assert refused.value.field == "tier"
    assert refused.value.message == (
        "no GPU node in the cluster matches the tier's node selector "
        "cloud.google.com/gke-nodepool=l4,nvidia.com/gpu.product=NVIDIA-L4"
    )


def test_admission_refuses_more_replicas_than_the_matching_nodes_hold(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    acknowledge(world)
    set_quota(world, max_gpus=8, max_replicas_per_deployment=4)
    monkeypatch.setattr(admission, "pool_capacity", lambda: CLUSTER)
    with pytest.raises(admission.AdmissionRefused) as refused:
        admission.admit(world.tenant_a, request_for(world, replicas=2), None, name="chat")
    assert refused.value.field == "replicas"
    assert refused.value.message == (
        "the tier's 2 nodes (cloud.google.com/gke-nodepool=l4,nvidia.com/gpu.product=NVIDIA-L4) "
        "have 1 free GPUs (room for 1 replicas of 1 GPUs) but the new side needs 2 replicas"
    )


def _tier_form(tier: Tier, selector: str) -> dict[str, str]:
    return {
        "slug": tier.slug,
        "name": tier.name,
        "description": tier.description,
        "is_active": "on",
        "node_selector": selector,
        "tolerations": json.dumps(tier.tolerations),
        "gpu_product": tier.gpu_product,
        "gpu_memory_gb": str(tier.gpu_memory_gb),
        "gpus_per_replica": str(tier.gpus_per_replica),
        "cpu_request": tier.cpu_request,
        "memory_request": tier.memory_request,
        "engine_images": json.dumps(tier.engine_images),
        "default_max_total_tokens": str(tier.default_max_total_tokens),
        "max_total_tokens_limit": str(tier.max_total_tokens_limit),
        "price_per_gpu_hour": str(tier.price_per_gpu_hour),
        "queue_depth_alert": str(tier.queue_depth_alert),
        "ttft_p95_alert_seconds": str(tier.ttft_p95_alert_seconds),
    }


@pytest.mark.parametrize(
    ("selector", "error"),
    [
        ("{}", "name at least one label of the tier&#x27;s GPU nodes"),
        ('{"nvidia.com/gpu product": "NVIDIA-L4"}', "is not a label key"),
    ],
)
def test_the_tier_admin_refuses_a_selector_that_selects_nothing_sensible(
    world: World, no_cluster: None, selector: str, error: str
) -> None:
    tier = Tier.objects.get(slug="l4")
    assert tier.node_selector
    client: Client = world.client_for("admin")
    url = reverse("admin:deployments_tier_change", args=[tier.pk])
    response = client.post(url, _tier_form(tier, selector))
    assert response.status_code == 200
    assert error in response.content.decode()
    before = tier.node_selector
    tier.refresh_from_db()
    assert tier.node_selector == before  # nothing saved

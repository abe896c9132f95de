"""The manifest renderers: what a tenant's pods, Services and policies end up looking like.

Plain pytest: no database, no cluster — except the one optional ``cluster`` test, which
server-side applies (dry-run) everything into a throwaway namespace of the running local
cluster and is skipped when none answers.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from deployments.rendering import (
    ModelRevisionSpec,
    OwnerRef,
    ServingSpec,
    SpecError,
    TenantSpec,
    TierSpec,
    object_key,
    owner_ref_from,
    render_all,
    render_colour_deployment,
    render_deployment_root,
    render_hpa,
    render_network_policy,
    render_services,
    render_tenant_namespace,
    render_weights,
    render_weights_download_job,
    render_weights_pvc,
    sanitize_label_value,
    switch_selector_patch,
    weights_request_gib,
)
from engines import ENGINES

SHA = "0e9e39f249a16976918f6564b8830bc894c89659"
IMAGE = "ghcr.io/huggingface/text-generation-inference:3.3.6"
GPU_TOLERATION = {
    "key": "nvidia.com/gpu",
    "operator": "Equal",
    "value": "present",
    "effect": "NoSchedule",
}
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
KUBECONFIG = Path(__file__).resolve().parents[2] / "var" / "cluster" / "kubeconfig"

MODEL_CLASSES: dict[str, Any] = {
    "Namespace": client.V1Namespace,
    "ResourceQuota": client.V1ResourceQuota,
    "LimitRange": client.V1LimitRange,
    "ConfigMap": client.V1ConfigMap,
    "PersistentVolumeClaim": client.V1PersistentVolumeClaim,
    "Job": client.V1Job,
    "Deployment": client.V1Deployment,
    "Service": client.V1Service,
    "HorizontalPodAutoscaler": client.V2HorizontalPodAutoscaler,
    "NetworkPolicy": client.V1NetworkPolicy,
}


def make_tier(**overrides: Any) -> TierSpec:
    fields: dict[str, Any] = {
        "name": "a100-80g",
        "node_selector": {"inference.portal/pool": "a100-80g"},
        "tolerations": [],
        "gpu_product": "NVIDIA-A100-SXM4-80GB",
        "gpu_memory_gib": 80,
        "gpus_per_replica": 2,
        "cpu_request": "8",
        "memory_request": "64Gi",
        "image": IMAGE,
    }
    return TierSpec(**(fields | overrides))


def make_spec(**overrides: Any) -> ServingSpec:
    fields: dict[str, Any] = {
        "tenant": TenantSpec(slug="acme", namespace="tenant-acme", max_gpus=8, max_pods=20),
        "deployment_name": "chat",
        "revision_number": 3,
        "tier": make_tier(),
        "model": ModelRevisionSpec(
            repo_id="meta-llama/Llama-3.1-8B-Instruct",
            commit_sha=SHA,
            weights_pvc_name="weights-llama-3-1-8b-0e9e39f2",
            weights_size_bytes=16_060_522_496,
        ),
        "max_input_tokens": 4096,
        "max_total_tokens": 8192,
        "max_batch_prefill_tokens": 8242,
        "max_concurrent_requests": 64,
        "replicas": 2,
        "min_replicas": 1,
        "max_replicas": 4,
        "hf_token_secret_name": "hf-token",
        "owner": OwnerRef("v1", "ConfigMap", "tgi-chat", "7c9d6f1e-0000-4000-8000-000000000001"),
    }
    return ServingSpec(**(fields | overrides))


def with_model(spec: ServingSpec, **overrides: Any) -> ServingSpec:
    return dataclasses.replace(spec, model=dataclasses.replace(spec.model, **overrides))


def tgi_container(manifest: dict[str, Any]) -> dict[str, Any]:
    containers = manifest["spec"]["template"]["spec"]["containers"]
    assert [c["name"] for c in containers] == ["tgi"]
    return containers[0]


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch (what the API server does with a merge-patch body)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def everything(spec: ServingSpec) -> list[dict[str, Any]]:
    """Every kind the package renders, for the whole-output checks."""
    hpa = render_hpa(dataclasses.replace(spec, autoscaling=True), "green")
    assert hpa is not None
    return [
        *render_tenant_namespace(spec.tenant),
        *render_all(spec, "blue", "green", hf_endpoint=None),
        render_colour_deployment(spec, "blue"),
        hpa,
    ]


# --- the TGI container ---------------------------------------------------------------------


def test_tgi_args_are_exactly_the_spec() -> None:
    container = tgi_container(render_colour_deployment(make_spec(), "blue"))

    assert container["image"] == IMAGE
    assert "command" not in container  # the image's launcher entrypoint takes the flags
    assert container["args"] == [
        "--model-id", "meta-llama/Llama-3.1-8B-Instruct",
        "--revision", SHA,
        "--num-shard", "2",
        "--max-input-tokens", "4096",
        "--max-total-tokens", "8192",
        "--max-batch-prefill-tokens", "8242",
        "--max-concurrent-requests", "64",
        "--port", "80",
        "--hostname", "0.0.0.0",
        "--huggingface-hub-cache", "/data",
    ]  # fmt: skip


def test_quantize_dtype_and_kv_cache_flags_appear_only_when_set() -> None:
    spec = make_spec(quantize="awq", dtype="float16", kv_cache_dtype="fp8_e5m2")
    args = tgi_container(render_colour_deployment(spec, "blue"))["args"]

    for flag, value in [
        ("--quantize", "awq"),
        ("--dtype", "float16"),
        ("--kv-cache-dtype", "fp8_e5m2"),
    ]:
        assert args.count(flag) == 1
        assert args[args.index(flag) + 1] == value

    plain = tgi_container(render_colour_deployment(make_spec(), "blue"))["args"]
    assert not {"--quantize", "--dtype", "--kv-cache-dtype"} & set(plain)


def test_trust_remote_code_only_when_approved() -> None:
    approved = with_model(make_spec(), trust_remote_code=True)

    assert (
        "--trust-remote-code" in tgi_container(render_colour_deployment(approved, "blue"))["args"]
    )
    assert (
        "--trust-remote-code"
        not in tgi_container(render_colour_deployment(make_spec(), "blue"))["args"]
    )


def test_gpu_requests_and_limits_equal_the_shards() -> None:
    spec = make_spec(tier=make_tier(gpus_per_replica=4))
    container = tgi_container(render_colour_deployment(spec, "green"))
    args = container["args"]

    assert args[args.index("--num-shard") + 1] == "4"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "4"
    assert container["resources"]["requests"]["nvidia.com/gpu"] == "4"
    assert container["resources"]["requests"]["cpu"] == "8"
    assert container["resources"]["requests"]["memory"] == "64Gi"
    # Limits == requests: Guaranteed QoS, untouched by the tenant LimitRange defaults.
    assert container["resources"]["limits"] == container["resources"]["requests"]


def test_pods_land_on_the_tiers_nodes_and_tolerate_the_gpu_taint() -> None:
    spot = {"key": "cloud.google.com/gke-spot", "operator": "Exists", "effect": "NoSchedule"}
    tier = make_tier(
        node_selector={"inference.portal/pool": "h100-80g", "nvidia.com/gpu.product": "H100"},
        tolerations=[spot],
    )
    pod = render_colour_deployment(make_spec(tier=tier), "blue")["spec"]["template"]["spec"]

    assert pod["nodeSelector"] == {
        "inference.portal/pool": "h100-80g",
        "nvidia.com/gpu.product": "H100",
    }
    assert pod["tolerations"] == [spot, GPU_TOLERATION]


def test_a_tier_that_already_tolerates_gpus_gets_no_second_toleration() -> None:
    exists = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    pod = render_colour_deployment(make_spec(tier=make_tier(tolerations=[exists])), "blue")

    assert pod["spec"]["template"]["spec"]["tolerations"] == [exists]


def test_probes_give_a_large_model_time_to_load_and_grace_exceeds_tgi_drain() -> None:
    deployment = render_colour_deployment(make_spec(), "blue")
    container = tgi_container(deployment)
    startup, readiness, liveness = (
        container[name] for name in ("startupProbe", "readinessProbe", "livenessProbe")
    )

    for probe in (startup, readiness, liveness):
        assert probe["httpGet"] == {"path": "/health", "port": 80, "scheme": "HTTP"}
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 30 * 60
    assert (readiness["periodSeconds"], readiness["failureThreshold"]) == (5, 3)
    assert (liveness["periodSeconds"], liveness["failureThreshold"]) == (10, 6)
    assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 120
    assert container["ports"] == [{"name": "http", "containerPort": 80, "protocol": "TCP"}]

    longer = tgi_container(
        render_colour_deployment(make_spec(), "blue", startup_timeout_seconds=3600)
    )
    assert longer["startupProbe"]["failureThreshold"] == 1800  # 3600 s at one probe per 2 s


def test_pod_reads_weights_offline_from_the_pvc_with_shared_memory() -> None:
    deployment = render_colour_deployment(make_spec(), "blue")
    pod = deployment["spec"]["template"]["spec"]
    container = tgi_container(deployment)

    assert env_of(container) == {
        "HF_TOKEN": {"secretKeyRef": {"name": "hf-token", "key": "token", "optional": True}},
        "HF_HUB_OFFLINE": "1",
        "HF_HOME": "/data",
        "PORT": "80",
        "USAGE_STATS": "off",
    }
    assert container["volumeMounts"] == [
        {"name": "weights", "mountPath": "/data", "readOnly": True},
        {"name": "dshm", "mountPath": "/dev/shm"},
    ]
    assert pod["volumes"] == [
        {
            "name": "weights",
            "persistentVolumeClaim": {
                "claimName": "weights-llama-3-1-8b-0e9e39f2",
                "readOnly": True,
            },
        },
        {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "1Gi"}},
    ]
    assert pod["automountServiceAccountToken"] is False
    assert pod["enableServiceLinks"] is False


def test_public_model_without_token_secret_gets_no_hf_token() -> None:
    spec = make_spec(hf_token_secret_name=None)

    assert "HF_TOKEN" not in env_of(tgi_container(render_colour_deployment(spec, "blue")))
    job = render_weights_download_job(spec)
    pod = job["spec"]["template"]["spec"]
    for container in [*pod["initContainers"], *pod["containers"]]:
        assert "HF_TOKEN" not in env_of(container)


# --- the colour Deployment ------------------------------------------------------------------


def test_deployment_is_named_and_labelled_for_its_colour_and_revision() -> None:
    deployment = render_colour_deployment(make_spec(), "green")
    template_labels = deployment["spec"]["template"]["metadata"]["labels"]

    assert deployment["metadata"]["name"] == "tgi-chat-green"
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["progressDeadlineSeconds"] == 600
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    for labels in (deployment["metadata"]["labels"], template_labels):
        assert labels == {
            "app.kubernetes.io/name": "text-generation-inference",
            "app.kubernetes.io/instance": "chat",
            "app.kubernetes.io/component": "inference-server",
            "app.kubernetes.io/part-of": "inference-portal",
            "app.kubernetes.io/managed-by": "inference-portal",
            "app.kubernetes.io/version": "3.3.6",
            "inference.portal/tenant": "acme",
            "inference.portal/deployment": "chat",
            "inference.portal/colour": "green",
            "inference.portal/revision": "3",
            "inference.portal/model": "meta-llama.Llama-3.1-8B-Instruct",
            "inference.portal/tier": "a100-80g",
            "inference.backend": "tgi",
        }
    assert deployment["metadata"]["annotations"] == {
        "inference.portal/model-id": "meta-llama/Llama-3.1-8B-Instruct",
        "inference.portal/model-sha": SHA,
    }


def test_selector_survives_a_new_revision_on_the_same_colour() -> None:
    old = render_colour_deployment(make_spec(), "blue")
    new = render_colour_deployment(
        with_model(make_spec(revision_number=4), commit_sha="a" * 40), "blue"
    )
    selector = old["spec"]["selector"]["matchLabels"]

    assert selector == {
        "app.kubernetes.io/name": "text-generation-inference",
        "inference.portal/deployment": "chat",
        "inference.portal/colour": "blue",
    }
    assert new["spec"]["selector"] == old["spec"]["selector"]  # immutable in apps/v1
    assert selector.items() <= new["spec"]["template"]["metadata"]["labels"].items()
    assert new["spec"]["template"]["metadata"]["labels"]["inference.portal/revision"] == "4"


def test_pod_annotations_carry_scrape_hints_and_extra_annotations() -> None:
    faults = '{"startup_seconds": 5}'
    deployment = render_colour_deployment(
        make_spec(), "blue", extra_pod_annotations={"sim.inference.portal/faults": faults}
    )

    assert deployment["spec"]["template"]["metadata"]["annotations"] == {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": "80",
        "prometheus.io/path": "/metrics",
        "inference.portal/model-id": "meta-llama/Llama-3.1-8B-Instruct",
        "inference.portal/model-sha": SHA,
        "sim.inference.portal/faults": faults,
    }
    with pytest.raises(SpecError):
        render_colour_deployment(
            make_spec(), "blue", extra_pod_annotations={"inference.portal/model-sha": "x"}
        )


def test_replicas_can_be_left_to_an_autoscaler() -> None:
    deployment = render_colour_deployment(make_spec(), "blue", include_replicas=False)

    assert "replicas" not in deployment["spec"]


# --- Services -------------------------------------------------------------------------------


def test_active_service_selects_active_colour_and_preview_the_other() -> None:
    active, preview = render_services(make_spec(), "green")

    assert active["metadata"]["name"] == "tgi-chat"
    assert preview["metadata"]["name"] == "tgi-chat-preview"
    assert active["spec"]["selector"]["inference.portal/colour"] == "green"
    assert preview["spec"]["selector"]["inference.portal/colour"] == "blue"
    for service in (active, preview):
        assert service["spec"]["type"] == "ClusterIP"
        assert service["spec"]["ports"] == [
            {"name": "http", "protocol": "TCP", "port": 80, "targetPort": "http"}
        ]
        assert service["spec"]["selector"]["inference.portal/deployment"] == "chat"
        assert service["spec"]["selector"]["app.kubernetes.io/name"] == (
            "text-generation-inference"
        )


def test_services_select_exactly_the_pods_of_their_colour() -> None:
    spec = make_spec()
    active, preview = render_services(spec, "blue")
    blue_pods = render_colour_deployment(spec, "blue")["spec"]["template"]["metadata"]["labels"]
    green_pods = render_colour_deployment(spec, "green")["spec"]["template"]["metadata"]["labels"]

    assert active["spec"]["selector"].items() <= blue_pods.items()
    assert not active["spec"]["selector"].items() <= green_pods.items()
    assert preview["spec"]["selector"].items() <= green_pods.items()


def test_switch_selector_patch_flips_only_the_colour() -> None:
    active, _ = render_services(make_spec(), "blue")

    switched = merge_patch(active, switch_selector_patch("green"))

    assert switched["spec"]["selector"] == {
        **active["spec"]["selector"],
        "inference.portal/colour": "green",
    }
    assert merge_patch(switched, switch_selector_patch("blue")) == active
    with pytest.raises(SpecError):
        switch_selector_patch("red")  # type: ignore[arg-type]


# --- HPA ------------------------------------------------------------------------------------


def test_no_hpa_when_autoscaling_is_off() -> None:
    assert render_hpa(make_spec(autoscaling=False), "blue") is None


def test_hpa_scales_the_colour_on_tgi_queue_size() -> None:
    hpa = render_hpa(make_spec(autoscaling=True, queue_size_target=6), "green")

    assert hpa is not None
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["metadata"]["name"] == "tgi-chat-green"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "tgi-chat-green",
    }
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (1, 4)
    assert hpa["spec"]["metrics"] == [
        {
            "type": "Pods",
            "pods": {
                "metric": {"name": "tgi_queue_size"},
                "target": {"type": "AverageValue", "averageValue": "6"},
            },
        }
    ]
    assert hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] >= 300

    fractional = render_hpa(make_spec(autoscaling=True, queue_size_target=2.5), "blue")
    assert fractional is not None
    assert fractional["spec"]["metrics"][0]["pods"]["target"]["averageValue"] == "2500m"


# --- NetworkPolicy --------------------------------------------------------------------------


def test_network_policy_admits_only_gateway_and_prometheus_on_the_serving_port() -> None:
    policy = render_network_policy(make_spec())

    assert policy["spec"]["podSelector"] == {
        "matchLabels": {
            "app.kubernetes.io/name": "text-generation-inference",
            "inference.portal/deployment": "chat",
        }
    }
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    assert policy["spec"]["ingress"] == [
        {
            "from": [
                {
                    "podSelector": {"matchLabels": {"inference.portal/serving-client": "true"}},
                    "namespaceSelector": {},
                },
                {
                    "namespaceSelector": {
                        "matchLabels": {"kubernetes.io/metadata.name": "monitoring"}
                    }
                },
            ],
            "ports": [{"protocol": "TCP", "port": "http"}],
        }
    ]


def test_network_policy_can_pin_gateway_and_monitoring_namespaces() -> None:
    policy = render_network_policy(
        make_spec(), gateway_namespace="inference-portal", monitoring_namespace="observability"
    )
    gateway, prometheus = policy["spec"]["ingress"][0]["from"]

    assert gateway["namespaceSelector"] == {
        "matchLabels": {"kubernetes.io/metadata.name": "inference-portal"}
    }
    assert prometheus["namespaceSelector"] == {
        "matchLabels": {"kubernetes.io/metadata.name": "observability"}
    }


def test_network_policy_covers_both_colours() -> None:
    spec = make_spec()
    selector = render_network_policy(spec)["spec"]["podSelector"]["matchLabels"]

    for colour in ("blue", "green"):
        pod_labels = render_colour_deployment(spec, colour)["spec"]["template"]["metadata"]
        assert selector.items() <= pod_labels["labels"].items()


# --- tenant namespace -----------------------------------------------------------------------


def test_tenant_namespace_with_gpu_quota_and_default_limits() -> None:
    tenant = TenantSpec(
        slug="acme",
        namespace="tenant-acme",
        max_gpus=16,
        max_pods=40,
        default_cpu_request="250m",
        default_memory_request="256Mi",
        default_cpu_limit="2",
        default_memory_limit="1Gi",
    )
    namespace, quota, limit_range = render_tenant_namespace(tenant)

    assert namespace["metadata"]["name"] == "tenant-acme"
    assert "namespace" not in namespace["metadata"]
    assert namespace["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "inference-portal"
    assert namespace["metadata"]["labels"]["inference.portal/tenant"] == "acme"
    assert quota["metadata"]["name"] == "portal-quota"
    assert quota["spec"]["hard"] == {"requests.nvidia.com/gpu": "16", "pods": "40"}
    assert limit_range["metadata"]["name"] == "portal-defaults"
    assert limit_range["spec"]["limits"] == [
        {
            "type": "Container",
            "defaultRequest": {"cpu": "250m", "memory": "256Mi"},
            "default": {"cpu": "2", "memory": "1Gi"},
        }
    ]
    for obj in (quota, limit_range):
        assert obj["metadata"]["namespace"] == "tenant-acme"
        assert "ownerReferences" not in obj["metadata"]


# --- weights PVC and download Job -----------------------------------------------------------


@pytest.mark.parametrize(
    ("size_bytes", "gib"),
    [
        (1, 1),
        (5 * 1024**3, 6),  # exactly 6 GiB with headroom
        (5 * 1024**3 + 1, 7),
        (16_060_522_496, 18),  # Llama-3.1-8B bf16: 17.95 GiB with headroom
    ],
)
def test_weights_pvc_requests_size_plus_headroom_in_whole_gib(size_bytes: int, gib: int) -> None:
    assert weights_request_gib(size_bytes) == gib
    spec = with_model(make_spec(), weights_size_bytes=size_bytes)
    assert render_weights_pvc(spec)["spec"]["resources"]["requests"]["storage"] == f"{gib}Gi"


def test_weights_pvc_belongs_to_the_model_revision() -> None:
    pvc = render_weights_pvc(make_spec())

    assert pvc["metadata"]["name"] == "weights-llama-3-1-8b-0e9e39f2"
    assert pvc["metadata"]["namespace"] == "tenant-acme"
    assert pvc["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert "storageClassName" not in pvc["spec"]
    assert pvc["metadata"]["labels"]["inference.portal/model"] == (
        "meta-llama.Llama-3.1-8B-Instruct"
    )
    assert pvc["metadata"]["labels"]["inference.portal/model-sha"] == SHA
    assert "ownerReferences" not in pvc["metadata"]  # shared by deployments of the tenant


def test_shared_volume_weights_are_one_readwritemany_pvc_every_pod_mounts_read_only() -> None:
    spec = make_spec(
        tier=make_tier(weights_strategy="shared-volume", weights_storage_class="filestore")
    )
    pvc, job = render_weights(spec, hf_endpoint=None)

    assert pvc["spec"]["storageClassName"] == "filestore"
    # ReadOnlyMany would refuse the download Job's writes; the pods mount it read-only.
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    assert job["kind"] == "Job"
    pod = render_colour_deployment(spec, "green")["spec"]["template"]["spec"]
    assert "initContainers" not in pod
    assert pod["volumes"][0] == {
        "name": "weights",
        "persistentVolumeClaim": {"claimName": pvc["metadata"]["name"], "readOnly": True},
    }


def test_a_shared_volume_without_a_storage_class_is_refused() -> None:
    with pytest.raises(SpecError, match=r"tier\.weights_storage_class"):
        make_tier(weights_strategy="shared-volume")
    with pytest.raises(SpecError, match=r"tier\.weights_strategy"):
        make_tier(weights_strategy="nfs")


def test_node_local_weights_have_no_pvc_and_each_pod_downloads_into_its_own_disk() -> None:
    spec = make_spec(tier=make_tier(weights_strategy="node-local"))
    job_pod = render_weights_download_job(spec, hf_endpoint="http://hub:8080")["spec"]
    job_containers = [*job_pod["template"]["spec"]["initContainers"]]
    job_containers += job_pod["template"]["spec"]["containers"]

    assert render_weights(spec, hf_endpoint="http://hub:8080") == []
    with pytest.raises(SpecError, match="uses no volume"):
        render_weights_pvc(spec)
    pod = render_colour_deployment(spec, "blue", hf_endpoint="http://hub:8080")["spec"]["template"][
        "spec"
    ]
    # The very download steps of the Job, in the same order, writing the pod's own emptyDir.
    same = ("name", "image", "command", "env", "volumeMounts", "securityContext")
    assert [{k: c[k] for k in same} for c in pod["initContainers"]] == [
        {k: c[k] for k in same} for c in job_containers
    ]
    # Requests equal to limits in every container keep the serving pod Guaranteed QoS.
    assert all(
        c["resources"]["requests"] == c["resources"]["limits"] for c in pod["initContainers"]
    )
    assert pod["volumes"][0] == {
        "name": "weights",
        "emptyDir": {"sizeLimit": f"{weights_request_gib(spec.model.weights_size_bytes)}Gi"},
    }
    (server,) = pod["containers"]
    weights_mount = next(m for m in server["volumeMounts"] if m["name"] == "weights")
    assert weights_mount["readOnly"] is True
    assert all("readOnly" not in m for c in pod["initContainers"] for m in c["volumeMounts"])
    # The download runs unprivileged; the engine container keeps its image's user.
    assert all(c["securityContext"]["runAsNonRoot"] for c in pod["initContainers"])
    assert "securityContext" not in server
    assert [m["kind"] for m in render_all(spec, "blue", "green", hf_endpoint=None)].count(
        "PersistentVolumeClaim"
    ) == 0


def test_single_node_volume_keeps_readwriteonce_on_the_default_class() -> None:
    pvc = render_weights_pvc(make_spec(tier=make_tier(weights_strategy="single-node-volume")))
    assert pvc["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert "storageClassName" not in pvc["spec"]


def test_download_job_runs_the_engines_own_download_tools_into_the_pvc() -> None:
    job = render_weights_download_job(make_spec(), hf_endpoint="http://hub.devstack:8080")
    pod = job["spec"]["template"]["spec"]
    (snapshot,) = pod["initContainers"]
    (weights,) = pod["containers"]

    assert job["metadata"]["name"] == "weights-llama-3-1-8b-0e9e39f2-download"
    assert "ownerReferences" not in job["metadata"]
    assert job["spec"]["backoffLimit"] == 3
    assert job["spec"]["ttlSecondsAfterFinished"] > 0
    assert job["spec"]["activeDeadlineSeconds"] == 6 * 3600
    assert pod["restartPolicy"] == "OnFailure"
    # The tier's TGI image, whose tools are huggingface_hub's CLI for the whole snapshot
    # (first: a Hub error then fails the step rather than leaving a snapshot without its
    # tokenizer) and TGI's own downloader (.bin converted to safetensors).
    assert weights["image"] == snapshot["image"] == IMAGE
    assert weights["command"] == [
        "text-generation-server", "download-weights",
        "meta-llama/Llama-3.1-8B-Instruct", "--revision", SHA,
    ]  # fmt: skip
    assert snapshot["command"] == [
        "huggingface-cli", "download", "meta-llama/Llama-3.1-8B-Instruct",
        "--revision", SHA, "--cache-dir", "/data",
    ]  # fmt: skip
    for container in (weights, snapshot):
        assert "args" not in container and "workingDir" not in container
        env = env_of(container)
        assert env["HF_TOKEN"] == {
            "secretKeyRef": {"name": "hf-token", "key": "token", "optional": True}
        }
        assert env["HF_ENDPOINT"] == "http://hub.devstack:8080"
        assert env["HF_HUB_CACHE"] == "/data"  # where the serving pods look, offline
        assert env["HF_HUB_ENABLE_HF_TRANSFER"] == "0"
        assert container["volumeMounts"] == [{"name": "weights", "mountPath": "/data"}]
        assert "nvidia.com/gpu" not in json.dumps(container["resources"])
    assert pod["volumes"] == [
        {
            "name": "weights",
            "persistentVolumeClaim": {"claimName": "weights-llama-3-1-8b-0e9e39f2"},
        }
    ]
    # Any node: no GPU, no node pinning, and the unprivileged user can write the volume.
    assert "nodeSelector" not in pod and "tolerations" not in pod
    assert pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsUser"]


@pytest.mark.parametrize(
    ("engine", "image"),
    [("vllm", "vllm/vllm-openai:v0.11.0"), ("sglang", "lmsysorg/sglang:v0.5.5")],
)
def test_vllm_and_sglang_download_with_the_hf_cli_of_their_image(engine: str, image: str) -> None:
    spec = dataclasses.replace(make_spec(), engine=ENGINES[engine], tier=make_tier(image=image))
    pod = render_weights_download_job(spec)["spec"]["template"]["spec"]
    (container,) = pod["containers"]

    assert "initContainers" not in pod
    assert container["image"] == image
    assert container["command"] == [
        "hf", "download", "meta-llama/Llama-3.1-8B-Instruct",
        "--revision", SHA, "--cache-dir", "/data",
    ]  # fmt: skip
    assert env_of(container)["HF_HUB_CACHE"] == "/data"


def test_download_job_leaves_hf_endpoint_to_the_default_when_none() -> None:
    job = render_weights_download_job(make_spec(), hf_endpoint=None)

    assert "HF_ENDPOINT" not in env_of(job["spec"]["template"]["spec"]["containers"][0])


# --- every manifest -------------------------------------------------------------------------


def test_every_namespaced_object_has_namespace_labels_and_owner() -> None:
    spec = make_spec()
    owned_kinds = {"Deployment", "Service", "HorizontalPodAutoscaler", "NetworkPolicy"}
    model_kinds = {"PersistentVolumeClaim", "Job"}

    for manifest in everything(spec):
        meta = manifest["metadata"]
        kind = manifest["kind"]
        labels = meta["labels"]
        assert labels["app.kubernetes.io/managed-by"] == "inference-portal", kind
        assert labels["inference.portal/tenant"] == "acme", kind
        if kind == "Namespace":
            continue
        assert meta["namespace"] == "tenant-acme", kind
        if kind in owned_kinds | {"ConfigMap"}:
            assert labels["inference.portal/deployment"] == "chat", kind
            assert labels["app.kubernetes.io/instance"] == "chat", kind
            assert labels["inference.backend"] == "tgi", kind
        if kind in owned_kinds:
            assert meta["ownerReferences"] == [
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "name": "tgi-chat",
                    "uid": "7c9d6f1e-0000-4000-8000-000000000001",
                    "controller": False,
                    "blockOwnerDeletion": False,
                }
            ], kind
        else:
            assert "ownerReferences" not in meta, kind
        if kind in model_kinds:
            assert labels["inference.portal/model-sha"] == SHA, kind


def test_root_holds_the_portal_ids_and_needs_no_owner() -> None:
    spec = make_spec(owner=None)
    root = render_deployment_root(spec)

    assert (root["kind"], root["metadata"]["name"]) == ("ConfigMap", "tgi-chat")
    assert root["data"] == {"tenant": "acme", "deployment": "chat", "revision": "3"}
    with pytest.raises(SpecError, match="owner"):
        render_colour_deployment(spec, "blue")

    applied = {**root, "metadata": {**root["metadata"], "uid": "1f0c"}}
    assert owner_ref_from(applied) == OwnerRef("v1", "ConfigMap", "tgi-chat", "1f0c")


@pytest.mark.parametrize(
    "repo_id",
    [
        "meta-llama/Llama-3.1-8B-Instruct",
        "org/" + "x" * 120,
        "a-very-long-organisation-name-for-testing/" + "Model_Name." * 12 + "-GPTQ",
        "x" * 62 + "-/name",  # the cut would end on a separator
    ],
)
def test_label_values_are_valid_even_for_long_repo_ids(repo_id: str) -> None:
    spec = with_model(make_spec(), repo_id=repo_id)

    for manifest in everything(spec):
        pod_labels = manifest.get("spec", {}).get("template", {}).get("metadata", {})
        for labels in (manifest["metadata"]["labels"], pod_labels.get("labels", {})):
            for key, value in labels.items():
                assert len(value) <= 63 and LABEL_VALUE.match(value), (key, value)
    annotations = render_colour_deployment(spec, "blue")["metadata"]["annotations"]
    assert annotations["inference.portal/model-id"] == repo_id  # never shortened


def test_tier_slug_becomes_the_tier_label() -> None:
    spec = make_spec(tier=make_tier(name="A100_80g-x2"))

    labels = render_colour_deployment(spec, "blue")["spec"]["template"]["metadata"]["labels"]
    assert labels["inference.portal/tier"] == "A100_80g-x2"


def test_long_repo_ids_keep_distinct_label_values() -> None:
    first = "org/" + "a" * 70 + "-v1"
    second = "org/" + "a" * 70 + "-v2"

    assert sanitize_label_value(first) != sanitize_label_value(second)
    assert len(sanitize_label_value(first)) <= 63


def test_longest_deployment_name_still_gives_valid_object_names() -> None:
    name = "d" * 63
    spec = make_spec(deployment_name=name)

    keys = [object_key(m) for m in everything(spec)]
    assert len(set(keys)) == len(keys)  # e.g. the two colours and the two Services stay apart
    for key in keys:
        assert len(key.name) <= 63 and DNS1123_LABEL.match(key.name), key
    active, preview = render_services(spec, "blue")
    assert active["metadata"]["name"] != preview["metadata"]["name"]


def test_rendering_is_deterministic_and_json_serialisable() -> None:
    first = json.dumps(everything(make_spec()))
    second = json.dumps(everything(make_spec()))

    assert first == second


def test_rendered_manifests_share_nothing_with_the_spec() -> None:
    spec = make_spec(tier=make_tier(tolerations=[dict(GPU_TOLERATION)]))
    deployment = render_colour_deployment(spec, "blue")
    pod = deployment["spec"]["template"]["spec"]
    pod["nodeSelector"]["mutated"] = "yes"
    pod["tolerations"][0]["value"] = "mutated"

    assert render_colour_deployment(spec, "blue") != deployment
    assert spec.tier.tolerations[0]["value"] == "present"


def test_manifests_are_accepted_by_the_kubernetes_client_models() -> None:
    api = client.ApiClient()
    for manifest in everything(make_spec(quantize="gptq", hf_token_secret_name=None)):
        model = MODEL_CLASSES[manifest["kind"]]
        # Strict: unknown field names and wrong types are errors.
        model.model_validate(manifest)
        # And nothing is lost in a round trip through the client's own deserialiser.
        obj = api._ApiClient__deserialize(copy.deepcopy(manifest), model.__name__)  # type: ignore[attr-defined]
        assert api.sanitize_for_serialization(obj) == manifest, manifest["kind"]


def test_render_all_orders_root_first_and_adds_hpa_only_to_the_serving_colour() -> None:
    spec = make_spec(autoscaling=True)

    preview = render_all(spec, "blue", "green", hf_endpoint=None)
    kinds = [(m["kind"], m["metadata"]["name"]) for m in preview]
    assert kinds == [
        ("ConfigMap", "tgi-chat"),
        ("PersistentVolumeClaim", "weights-llama-3-1-8b-0e9e39f2"),
        ("Job", "weights-llama-3-1-8b-0e9e39f2-download"),
        ("NetworkPolicy", "tgi-chat"),
        ("Deployment", "tgi-chat-green"),
        ("Service", "tgi-chat"),
        ("Service", "tgi-chat-preview"),
    ]

    first = render_all(spec, "green", "green", hf_endpoint=None)
    assert object_key(first[-1]) == (
        "autoscaling/v2",
        "HorizontalPodAutoscaler",
        "tenant-acme",
        "tgi-chat-green",
    )


def test_object_key_of_a_cluster_scoped_object_has_no_namespace() -> None:
    namespace = render_tenant_namespace(make_spec().tenant)[0]

    assert object_key(namespace) == ("v1", "Namespace", "", "tenant-acme")


# --- specs the renderers refuse -------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: with_model(make_spec(), commit_sha="main"), "model.commit_sha"),
        (lambda: make_spec(max_input_tokens=8192), "max_input_tokens"),
        (lambda: make_spec(quantize="int3"), "quantize"),
        (lambda: make_spec(quantize="exl2"), "quantize"),  # 2 shards
        (lambda: make_spec(kv_cache_dtype="fp16"), "kv_cache_dtype"),
        (lambda: make_spec(deployment_name="Chat_Bot"), "deployment_name"),
        (lambda: make_spec(autoscaling=True, replicas=9), "replicas"),
        (lambda: make_tier(cpu_request="eight"), "tier.cpu_request"),
        (lambda: make_tier(gpus_per_replica=0), "tier.gpus_per_replica"),
        (lambda: make_tier(name="a100 80g"), "tier.name"),
    ],
)
def test_invalid_specs_are_refused_naming_the_field(build: Any, field: str) -> None:
    with pytest.raises(SpecError) as excinfo:
        build()

    assert excinfo.value.field == field


def test_unknown_colour_is_refused() -> None:
    with pytest.raises(SpecError):
        render_colour_deployment(make_spec(), "red")  # type: ignore[arg-type]
    with pytest.raises(SpecError):
        render_services(make_spec(), "red")  # type: ignore[arg-type]


# --- optional: the real API server ----------------------------------------------------------


@pytest.fixture
def live_api() -> Iterator[client.ApiClient]:
    """The running local cluster's API client; skipped (never started) when none answers."""
    from kubernetes import config as kube_config
    from urllib3.exceptions import HTTPError

    if not KUBECONFIG.exists():
        pytest.skip("no local cluster (var/cluster/kubeconfig missing)")
    api = kube_config.new_client_from_config(config_file=str(KUBECONFIG))
    try:
        client.VersionApi(api).get_code(_request_timeout=3)
    except (HTTPError, OSError, client.ApiException) as exc:
        api.close()
        pytest.skip(f"local cluster not answering: {exc}")
    yield api
    api.close()


@pytest.mark.cluster
def test_api_server_accepts_every_manifest_in_a_dry_run_apply(live_api: client.ApiClient) -> None:
    from kubernetes.dynamic import DynamicClient

    dynamic = DynamicClient(live_api)
    core = client.CoreV1Api(live_api)
    namespace = f"t-rendering-{uuid.uuid4().hex[:8]}"
    tenant = TenantSpec(slug="rendering", namespace=namespace, max_gpus=8, max_pods=20)
    manager = "rendering-test"

    def apply(manifest: dict[str, Any], *, dry_run: bool) -> Any:
        resource = dynamic.resources.get(api_version=manifest["apiVersion"], kind=manifest["kind"])
        return resource.server_side_apply(
            body=manifest,
            field_manager=manager,
            dry_run="All" if dry_run else None,
        )

    try:
        # Real: the namespace with its quota and defaults, then the root for its uid.
        for manifest in render_tenant_namespace(tenant):
            apply(manifest, dry_run=False)
        spec = make_spec(tenant=tenant, owner=None, autoscaling=True)
        root = apply(render_deployment_root(spec), dry_run=False)
        spec = dataclasses.replace(spec, owner=owner_ref_from(root.to_dict()))

        # Dry run: everything a rollout applies, both colours and the HPA.
        manifests: list[dict[str, Any] | None] = [
            *render_all(spec, "blue", "green", hf_endpoint=None),
            render_colour_deployment(spec, "blue", extra_pod_annotations={"a.example/b": "c"}),
            render_hpa(spec, "green"),
        ]
        for candidate in manifests:
            assert candidate is not None
            applied = apply(candidate, dry_run=True).to_dict()
            assert applied["metadata"]["labels"] == candidate["metadata"]["labels"]

        # Real Services, then the colour switch as a merge patch keeps the other keys.
        active, _ = render_services(spec, "blue")
        apply(active, dry_run=False)
        core.patch_namespaced_service(
            active["metadata"]["name"],
            namespace,
            switch_selector_patch("green"),
            _content_type="application/merge-patch+json",
        )
        service = core.read_namespaced_service(active["metadata"]["name"], namespace)
        assert service.spec is not None
        assert service.spec.selector == {
            **active["spec"]["selector"],
            "inference.portal/colour": "green",
        }
    finally:
        try:
            core.delete_namespace(namespace, propagation_policy="Background")
        except client.ApiException as exc:
            if exc.status != 404:
                raise


def test_a_failed_download_job_is_retried_only_when_an_earlier_rollout_made_it() -> None:
    from datetime import UTC, datetime, timedelta

    from deployments.rollout import _created_before

    started = datetime(2026, 11, 25, 12, 0, 0, 700_000, tzinfo=UTC)
    earlier = {"metadata": {"creationTimestamp": "2026-11-25T11:00:00Z"}}
    this_rollouts = {"metadata": {"creationTimestamp": "2026-11-25T12:00:00Z"}}
    margin = started - timedelta(seconds=2)
    assert _created_before(earlier, margin)
    assert not _created_before(this_rollouts, margin)  # whole seconds: same second, kept
    assert not _created_before({"metadata": {}}, margin)

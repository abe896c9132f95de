"""KWOK Stage configuration, and the rule splitting pods between KWOK and the simulated kubelet.

KWOK fakes every pod's lifecycle through Stage objects whose selectors are jq expressions over
the pod. Engine pods (TGI, vLLM, SGLang) and the portal's own pods must instead be run as real
local processes by the simulated kubelet (devstack/kubelet), which writes their status itself.
We therefore add one matchExpression to KWOK's pod stages that excludes those pods. The same
rule is exposed in Python (`is_sim_kubelet_pod`) so the simulated kubelet picks exactly the
complementary set.

The rule: a pod belongs to the simulated kubelet when
  * any of its containers' image contains one of SIM_KUBELET_IMAGE_MARKERS, or
  * it carries the annotation SIM_KUBELET_ANNOTATION = SIM_KUBELET_ANNOTATION_VALUE (opt-in for
    other images, e.g. a test that wants a real process).

Deletion: KWOK's pod-delete stage skips those pods too, so the simulated kubelet can terminate
the process gracefully and then delete the pod (grace period 0), as a real kubelet does. As a
safety net (simulated kubelet not running) the extra stage `sim-kubelet-pod-delete-fallback`
deletes such a pod once its deletionTimestamp (request time + grace period) has passed.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from . import build

SIM_KUBELET_IMAGE_MARKERS: tuple[str, ...] = (
    "text-generation-inference",
    "vllm/vllm-openai",
    "lmsysorg/sglang",
    "inference-portal",
)
SIM_KUBELET_ANNOTATION = "devstack.inference.portal/runtime"
SIM_KUBELET_ANNOTATION_VALUE = "sim-kubelet"

# gojq expression evaluating to true for pods owned by the simulated kubelet. KWOK compares the
# boolean result as the string "true"; an evaluation error yields "no value", which the NotIn
# operator treats as a match, so unexpected pod shapes fall back to KWOK handling them.
SIM_KUBELET_POD_JQ = (
    f'(.metadata.annotations["{SIM_KUBELET_ANNOTATION}"] // "") == "{SIM_KUBELET_ANNOTATION_VALUE}"'
    ' or ([.spec.containers[]?.image // ""'
    f' | test("{"|".join(SIM_KUBELET_IMAGE_MARKERS)}")] | any)'
)

# Stages (by metadata.name) that must never act on simulated-kubelet pods.
STAGES_EXCLUDING_SIM_KUBELET_PODS: tuple[str, ...] = ("pod-ready", "pod-complete", "pod-delete")

_EXCLUDE_EXPRESSION = {"key": SIM_KUBELET_POD_JQ, "operator": "NotIn", "values": ["true"]}


def is_sim_kubelet_pod(pod: Mapping[str, Any] | Any) -> bool:
    """True when the simulated kubelet (not KWOK) owns this pod's lifecycle.

    Accepts a pod as a dict (camelCase API JSON) or a kubernetes-client V1Pod.
    """
    if isinstance(pod, Mapping):
        annotations = (pod.get("metadata") or {}).get("annotations") or {}
        images = [c.get("image") or "" for c in (pod.get("spec") or {}).get("containers") or []]
    else:
        annotations = (pod.metadata.annotations if pod.metadata else None) or {}
        images = [c.image or "" for c in (pod.spec.containers if pod.spec else None) or []]
    if annotations.get(SIM_KUBELET_ANNOTATION) == SIM_KUBELET_ANNOTATION_VALUE:
        return True
    return any(marker in image for image in images for marker in SIM_KUBELET_IMAGE_MARKERS)


def _fallback_delete_stage() -> dict[str, Any]:
    return {
        "apiVersion": "kwok.x-k8s.io/v1alpha1",
        "kind": "Stage",
        "metadata": {"name": "sim-kubelet-pod-delete-fallback"},
        "spec": {
            "resourceRef": {"apiGroup": "v1", "kind": "Pod"},
            "selector": {
                "matchExpressions": [
                    {"key": ".metadata.deletionTimestamp", "operator": "Exists"},
                    {"key": SIM_KUBELET_POD_JQ, "operator": "In", "values": ["true"]},
                ]
            },
            # A timestamp value means "wait until then": the end of the pod's grace period.
            "delay": {
                "durationMilliseconds": 0,
                "durationFrom": {"expressionFrom": ".metadata.deletionTimestamp"},
            },
            "next": {"delete": True},
        },
    }


def render_stages(stages_dir: Path | None = None) -> list[dict[str, Any]]:
    """Upstream stages from the pinned kwok module, with the simulated-kubelet exclusion added."""
    source = stages_dir or build.kwok_stages_dir()
    documents: list[dict[str, Any]] = []
    for rel in build.KWOK_STAGE_FILES:
        for doc in yaml.safe_load_all((source / Path(rel).name).read_text()):
            if not doc:
                continue
            if doc["metadata"]["name"] in STAGES_EXCLUDING_SIM_KUBELET_PODS:
                selector = doc["spec"].setdefault("selector", {})
                selector.setdefault("matchExpressions", []).append(dict(_EXCLUDE_EXPRESSION))
            documents.append(doc)
    documents.append(_fallback_delete_stage())
    return documents


def write_kwok_config(target: Path, stages_dir: Path | None = None) -> Path:
    """Write the multi-document --config file kwok reads its Stage objects from."""
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(yaml.safe_dump_all(render_stages(stages_dir), sort_keys=False))
    return target

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

Autoscaled nodes: kwok's node-initialize stage makes a node Ready the moment it appears. Nodes
that Karpenter creates (label karpenter.sh/nodepool) skip it and go through two stages of our own
instead, as a cloud VM's kubelet does: on registration the node reports Ready=False with the
kubelet's KubeletNotReady reason while the network plugin starts (kubernetes
pkg/kubelet/nodestatus/setters.go ReadyCondition, message from the runtime's NetworkReady
status) and nvidia.com/gpu at 0 until the NVIDIA device plugin registers its GPUs (the device
plugin manager reports 0 for a registered-but-unhealthy resource); then, after
config.AUTOSCALED_NODE_READY_SECONDS, Ready=True with the GPUs. The node lifecycle controller
taints a NotReady node node.kubernetes.io/not-ready:NoSchedule meanwhile, so nothing is
scheduled there early, and Karpenter counts the node as initialized only once it is Ready with
its GPUs (pkg/controllers/nodeclaim/lifecycle/initialization.go).

Deletion: KWOK's pod-delete stage skips those pods too, so the simulated kubelet can terminate
the process gracefully and then delete the pod (grace period 0), as a real kubelet does. As a
safety net (simulated kubelet not running) the extra stage `sim-kubelet-pod-delete-fallback`
deletes such a pod once its deletionTimestamp (request time + grace period) has passed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from . import build, config, nodes

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

# Set by Karpenter on every node it creates (sigs.k8s.io/karpenter pkg/apis/v1 NodePoolLabelKey).
AUTOSCALED_NODE_JQ = '.metadata.labels["karpenter.sh/nodepool"]'
_READY_JQ = '.status.conditions.[] | select( .type == "Ready" ) | .status'
# The node stage that would make an autoscaled node Ready at once.
NODE_INITIALIZE_STAGE = "node-initialize"
# Capacity as the machine reports it: cpu and memory from the kwok provider's instance labels
# (Karpenter's own Node has the pods' requests as capacity), GPUs from GFD's count label.
_CAPACITY_TEMPLATE = """
capacity:
  cpu: {{ index .metadata.labels "karpenter.kwok.sh/instance-cpu" | Quote }}
  memory: {{ index .metadata.labels "karpenter.kwok.sh/instance-memory" | Quote }}
  pods: {{ index .status.allocatable "pods" | Quote }}
"""
# Addresses and kubelet port as nodes.node_manifest gives the static nodes: the apiserver must
# reach the simulated kubelet for pods/log on these nodes too.
_ADDRESSES_TEMPLATE = f"""
addresses:
{{{{ with NodeIP }}}}
- address: {{{{ . | Quote }}}}
  type: InternalIP
{{{{ end }}}}
- address: {{{{ NodeName | Quote }}}}
  type: Hostname
- address: {config.KUBELET_HOSTNAME}
  type: {config.KUBELET_ADDRESS_TYPE}
daemonEndpoints:
  kubeletEndpoint:
    Port: {config.KUBELET_PORT}
nodeInfo:
  architecture: amd64
  containerRuntimeVersion: {{{{ printf "kwok-%s" Version }}}}
  kernelVersion: {{{{ printf "kwok-%s" Version }}}}
  kubeProxyVersion: {{{{ printf "kwok-%s" Version }}}}
  kubeletVersion: {{{{ printf "kwok-%s" Version }}}}
  operatingSystem: linux
"""
# What a kubelet reports until the CNI plugin is up (setters.go ReadyCondition, runtime status).
_NOT_READY_MESSAGE = (
    "container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady "
    "message:Network plugin returns error: cni plugin not initialized"
)
_GPU_COUNT = f'index .metadata.labels "{nodes.GPU_COUNT_LABEL}"'
_REGISTER_TEMPLATE = (
    """{{ $now := Now }}
conditions:
- lastHeartbeatTime: {{ $now | Quote }}
  lastTransitionTime: {{ $now | Quote }}
  type: Ready
  status: "False"
  reason: KubeletNotReady
  message: {{ NOT_READY_MESSAGE | Quote }}
phase: Pending
""".replace("{{ NOT_READY_MESSAGE | Quote }}", json.dumps(_NOT_READY_MESSAGE))
    + _ADDRESSES_TEMPLATE
    + _CAPACITY_TEMPLATE
    + f"""{{{{ with {_GPU_COUNT} }}}}
  {nodes.GPU_RESOURCE}: "0"
allocatable:
  {nodes.GPU_RESOURCE}: "0"
{{{{ end }}}}
"""
)
_READY_TEMPLATE = (
    """{{ $now := Now }}
conditions:
{{ range NodeConditions }}
- lastHeartbeatTime: {{ $now | Quote }}
  lastTransitionTime: {{ $now | Quote }}
  message: {{ .message | Quote }}
  reason: {{ .reason | Quote }}
  status: {{ .status | Quote }}
  type: {{ .type | Quote }}
{{ end }}
phase: Running
"""
    + _CAPACITY_TEMPLATE
    + f"""{{{{ with {_GPU_COUNT} }}}}
  {nodes.GPU_RESOURCE}: {{{{ . | Quote }}}}
allocatable:
  {nodes.GPU_RESOURCE}: {{{{ . | Quote }}}}
{{{{ end }}}}
"""
)


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


def _node_stage(
    name: str, expressions: list[dict[str, Any]], template: str, delay_seconds: int = 0
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "resourceRef": {"apiGroup": "v1", "kind": "Node"},
        "selector": {
            "matchExpressions": [{"key": AUTOSCALED_NODE_JQ, "operator": "Exists"}, *expressions]
        },
        "next": {"statusTemplate": template},
    }
    if delay_seconds:
        spec["delay"] = {"durationMilliseconds": delay_seconds * 1000}
    return {
        "apiVersion": "kwok.x-k8s.io/v1alpha1",
        "kind": "Stage",
        "metadata": {"name": name},
        "spec": spec,
    }


def autoscaled_node_stages(ready_seconds: int) -> list[dict[str, Any]]:
    """Registration (NotReady, no GPUs yet), then Ready with GPUs after `ready_seconds`."""
    return [
        _node_stage(
            "autoscaled-node-register",
            [{"key": _READY_JQ, "operator": "DoesNotExist"}],
            _REGISTER_TEMPLATE,
        ),
        _node_stage(
            "autoscaled-node-ready",
            # Unknown too: the node lifecycle controller sets it when a long delay outlasts
            # its grace period for the first status update.
            [{"key": _READY_JQ, "operator": "In", "values": ["False", "Unknown"]}],
            _READY_TEMPLATE,
            ready_seconds,
        ),
    ]


def render_stages(
    stages_dir: Path | None = None, ready_seconds: int = config.AUTOSCALED_NODE_READY_SECONDS
) -> list[dict[str, Any]]:
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
            if doc["metadata"]["name"] == NODE_INITIALIZE_STAGE:
                selector = doc["spec"].setdefault("selector", {})
                selector.setdefault("matchExpressions", []).append(
                    {"key": AUTOSCALED_NODE_JQ, "operator": "DoesNotExist"}
                )
            documents.append(doc)
    documents.append(_fallback_delete_stage())
    documents.extend(autoscaled_node_stages(ready_seconds))
    return documents


def write_kwok_config(target: Path, stages_dir: Path | None = None) -> Path:
    """Write the multi-document --config file kwok reads its Stage objects from."""
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(yaml.safe_dump_all(render_stages(stages_dir), sort_keys=False))
    return target

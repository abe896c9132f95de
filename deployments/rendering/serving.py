"""Per-deployment objects: the root owner, one Deployment per colour, the active and preview
Services, the autoscaler and the NetworkPolicy.

Blue/green (Argo Rollouts semantics): each colour is a whole Deployment. The idle colour is
re-applied with the new revision while the active Service keeps pointing at the serving
colour; the preview Service points at the idle one for pre-promotion checks; promotion flips
the active Service's colour selector.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence
from typing import Any

from deployments.rendering import constants as c
from deployments.rendering.errors import SpecError
from deployments.rendering.meta import (
    colour_labels,
    colour_name,
    deployment_labels,
    metadata,
    model_annotations,
    resource_name,
    root_name,
    selector_labels,
    service_name,
)
from deployments.rendering.specs import (
    RESERVED_ANNOTATION_PREFIXES,
    Colour,
    ServingSpec,
    check_colour,
    other_colour,
)
from deployments.rendering.weights import download_containers, weights_pod_volume

# Keys the portal sets on pod templates; extra annotations may not override them.


def render_deployment_root(spec: ServingSpec) -> dict[str, Any]:
    """The ConfigMap ``tgi-<name>`` every other per-deployment object is owned by.

    It holds the portal's ids so an operator (or a reconciler) can map cluster objects back to
    portal rows. Apply it first; its uid then goes into ``ServingSpec.owner``.
    """
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": metadata(
            root_name(spec),
            spec.namespace,
            {**deployment_labels(spec), c.LABEL_COMPONENT: c.COMPONENT_DEPLOYMENT_ROOT},
        ),
        "data": {
            "tenant": spec.tenant.slug,
            "deployment": spec.deployment_name,
            "revision": str(spec.revision_number),
        },
    }


def _tolerates_gpu_taint(tolerations: Sequence[Mapping[str, Any]]) -> bool:
    taint = c.GPU_TOLERATION
    for toleration in tolerations:
        if toleration.get("effect") not in (None, "", taint["effect"]):
            continue
        key = toleration.get("key") or ""
        operator = toleration.get("operator") or "Equal"
        if operator == "Exists" and key in ("", taint["key"]):
            return True
        if (
            key == taint["key"]
            and operator == "Equal"
            and toleration.get("value") == taint["value"]
        ):
            return True
    return False


def _tolerations(spec: ServingSpec) -> list[dict[str, Any]]:
    tolerations = [copy.deepcopy(dict(t)) for t in spec.tier.tolerations]
    if not _tolerates_gpu_taint(tolerations):
        tolerations.append(dict(c.GPU_TOLERATION))
    return tolerations


def _http_probe(
    spec: ServingSpec,
    path: str,
    *,
    period: int,
    failure_threshold: int,
    timeout: int = c.PROBE_TIMEOUT_SECONDS,
) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": spec.engine.port, "scheme": "HTTP"},
        "periodSeconds": period,
        "timeoutSeconds": timeout,
        "successThreshold": 1,
        "failureThreshold": failure_threshold,
    }


def _pod_annotations(spec: ServingSpec, extra: Mapping[str, str] | None) -> dict[str, str]:
    annotations = {
        c.PROMETHEUS_SCRAPE: "true",
        c.PROMETHEUS_PORT: str(spec.engine.port),
        c.PROMETHEUS_PATH: spec.engine.metrics_path,
        **model_annotations(spec.model),
    }
    for key, value in sorted((extra or {}).items()):
        if key.startswith(RESERVED_ANNOTATION_PREFIXES):
            raise SpecError("extra_pod_annotations", f"{key!r} is set by the portal")
        if not isinstance(value, str):
            raise SpecError("extra_pod_annotations", f"{key!r} must map to a string")
        annotations[key] = value
    return annotations


def render_colour_deployment(
    spec: ServingSpec,
    colour: Colour,
    *,
    progress_deadline_seconds: int = c.PROGRESS_DEADLINE_SECONDS,
    startup_timeout_seconds: int = c.STARTUP_TIMEOUT_SECONDS,
    extra_pod_annotations: Mapping[str, str] | None = None,
    include_replicas: bool = True,
    hf_endpoint: str | None = None,
) -> dict[str, Any]:
    """The apps/v1 Deployment ``tgi-<name>-<colour>`` serving ``spec`` with the engine.

    With the ``node-local`` weights strategy each pod first runs the engine's download steps
    as init containers (reaching the Hub at ``hf_endpoint``) into its own emptyDir; otherwise
    it mounts the revision's weights PVC. Either way the engine reads the weights read-only.

    ``include_replicas=False`` leaves ``spec.replicas`` out so that re-applying (server-side)
    does not take the field back from an HPA that scales this colour.

    ``progress_deadline_seconds`` only sets the Progressing condition (the controller never
    rolls back); with a startup budget longer than it, ProgressDeadlineExceeded can be
    reported while a large model is still loading — the rollout should judge readiness by the
    startup budget, or pass a deadline at least as long.
    """
    check_colour(colour)
    engine = spec.engine
    gpus = str(spec.tier.gpus_per_replica)
    labels = colour_labels(spec, colour)
    # CPU and memory limits equal the requests: with the GPU's equal request/limit the pod is
    # Guaranteed QoS (last to be evicted, eligible for exclusive cores), and the tenant
    # LimitRange's default limits — sized for small containers — never apply to it.
    resources = {
        "requests": {
            "cpu": spec.tier.cpu_request,
            "memory": spec.tier.memory_request,
            c.GPU_RESOURCE: gpus,
        },
        "limits": {
            "cpu": spec.tier.cpu_request,
            "memory": spec.tier.memory_request,
            c.GPU_RESOURCE: gpus,
        },
    }
    container = {
        "name": engine.container_name,
        "image": spec.tier.image,
        "imagePullPolicy": "IfNotPresent",
        **({"command": command} if (command := engine.command()) else {}),
        "args": engine.args(spec),
        "env": engine.env(spec),
        "ports": [{"name": c.SERVING_PORT_NAME, "containerPort": engine.port, "protocol": "TCP"}],
        "resources": resources,
        "volumeMounts": [
            {"name": c.WEIGHTS_VOLUME, "mountPath": c.WEIGHTS_MOUNT_PATH, "readOnly": True},
            {"name": c.SHM_VOLUME, "mountPath": c.SHM_MOUNT_PATH},
        ],
        # Weights load (and CUDA graphs warm up) before the port is bound: connection refused
        # until then, so only the startup probe's budget bounds a slow start.
        "startupProbe": _http_probe(
            spec,
            engine.probes.startup,
            period=c.STARTUP_PERIOD_SECONDS,
            failure_threshold=math.ceil(startup_timeout_seconds / c.STARTUP_PERIOD_SECONDS),
        ),
        "readinessProbe": _http_probe(
            spec,
            engine.probes.readiness,
            period=c.READINESS_PERIOD_SECONDS,
            failure_threshold=c.READINESS_FAILURE_THRESHOLD,
        ),
        "livenessProbe": _http_probe(
            spec,
            engine.probes.liveness,
            period=c.LIVENESS_PERIOD_SECONDS,
            failure_threshold=c.LIVENESS_FAILURE_THRESHOLD,
        ),
    }
    pod_spec = {
        "automountServiceAccountToken": False,  # the server never talks to the API
        # No FOO_SERVICE_HOST/FOO_PORT variables for every Service of the namespace: they can
        # collide with the launcher's env-backed flags (MASTER_PORT, PORT, ...).
        "enableServiceLinks": False,
        # Longer than the engine's own drain after SIGTERM (TGI: 90 s).
        "terminationGracePeriodSeconds": engine.graceful_shutdown_seconds + 30,
        "nodeSelector": dict(sorted(spec.tier.node_selector.items())),
        "tolerations": _tolerations(spec),
        **(
            {}
            if spec.tier.weights_on_volume
            else {
                "initContainers": download_containers(
                    spec, hf_endpoint=hf_endpoint, guaranteed=True
                )
            }
        ),
        "containers": [container],
        "volumes": [
            weights_pod_volume(spec),
            {"name": c.SHM_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": c.SHM_SIZE}},
        ],
    }
    deployment_spec: dict[str, Any] = {}
    if include_replicas:
        deployment_spec["replicas"] = spec.replicas
    deployment_spec.update(
        {
            "revisionHistoryLimit": c.REVISION_HISTORY_LIMIT,
            "progressDeadlineSeconds": progress_deadline_seconds,
            # Recreate, not RollingUpdate: a colour's pod template changes only while it is
            # the idle side being replaced, so there is no traffic to protect (blue/green is
            # the zero-downtime mechanism). Recreate guarantees the preview Service never
            # routes to a mix of two revisions during pre-promotion checks, and needs no surge
            # pods, which would require GPUs beyond the tenant's quota for both colours.
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": selector_labels(spec, colour)},
            "template": {
                "metadata": {
                    "labels": dict(labels),
                    "annotations": _pod_annotations(spec, extra_pod_annotations),
                },
                "spec": pod_spec,
            },
        }
    )
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata(
            colour_name(spec, colour),
            spec.namespace,
            labels,
            annotations=model_annotations(spec.model),
            owned_by=spec,
        ),
        "spec": deployment_spec,
    }


def active_service_name(spec: ServingSpec) -> str:
    return service_name(spec.deployment_name)


def preview_service_name(spec: ServingSpec) -> str:
    return service_name(spec.deployment_name, preview=True)


def _service(spec: ServingSpec, name: str, colour: Colour) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": metadata(name, spec.namespace, deployment_labels(spec), owned_by=spec),
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(spec, colour),
            "ports": [
                {
                    "name": c.SERVICE_PORT_NAME,
                    "protocol": "TCP",
                    "port": 80,
                    # The container port's name, not its number: during an engine switch the
                    # active Service (rendered from the new spec) still selects the old engine's
                    # pods, whose port differs (TGI 80, vLLM 8000, SGLang 30000).
                    "targetPort": c.SERVING_PORT_NAME,
                }
            ],
        },
    }


def render_services(spec: ServingSpec, active_colour: Colour) -> list[dict[str, Any]]:
    """``tgi-<name>`` selecting the active colour and ``tgi-<name>-preview`` the other one.

    Never make a colour active before its Deployment is fully available.
    """
    check_colour(active_colour, "active_colour")
    return [
        _service(spec, active_service_name(spec), active_colour),
        _service(spec, preview_service_name(spec), other_colour(active_colour)),
    ]


def switch_selector_patch(colour: Colour) -> dict[str, Any]:
    """The smallest body that points a Service at `colour`: only the colour selector key.

    Send it as a merge patch (``application/merge-patch+json`` or strategic merge, the Python
    client's default for ``patch_namespaced_service``); the other selector keys stay. Do NOT
    send it as a server-side APPLY under the field manager that applied the full Service:
    apply removes the fields that manager owned and omitted, leaving a selector that matches
    that colour of every deployment in the namespace. For an apply, re-apply
    ``render_services(spec, colour)``, which carries the whole selector.
    """
    check_colour(colour)
    return {"spec": {"selector": {c.LABEL_COLOUR: colour}}}


def _quantity(value: float) -> str:
    """A positive number as a Kubernetes quantity (integers plain, fractions in milli-units)."""
    if float(value).is_integer():
        return str(int(value))
    return f"{round(value * 1000)}m"


def render_hpa(spec: ServingSpec, colour: Colour) -> dict[str, Any] | None:
    """An autoscaling/v2 HPA on the colour's Deployment, scaling on the engine's per-pod queue
    size (the engine's ``queue_size_metric``); None when the spec does not autoscale.

    The Pods metric must be served by a custom metrics adapter (e.g. prometheus-adapter
    exposing the gauge under custom.metrics.k8s.io). GPU pods take minutes to become ready, so
    scale-up is limited and scale-down waits for a long stabilisation window.
    """
    check_colour(colour)
    if not spec.autoscaling:
        return None
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": metadata(
            colour_name(spec, colour), spec.namespace, colour_labels(spec, colour), owned_by=spec
        ),
        "spec": {
            "scaleTargetRef": {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "name": colour_name(spec, colour),
            },
            "minReplicas": spec.min_replicas,
            "maxReplicas": spec.max_replicas,
            "metrics": [
                {
                    "type": "Pods",
                    "pods": {
                        "metric": {"name": spec.engine.queue_size_metric},
                        "target": {
                            "type": "AverageValue",
                            "averageValue": _quantity(spec.queue_size_target),
                        },
                    },
                }
            ],
            "behavior": {
                "scaleUp": {
                    "stabilizationWindowSeconds": 0,
                    "selectPolicy": "Max",
                    "policies": [
                        {
                            "type": "Pods",
                            "value": c.HPA_SCALE_UP_PODS_PER_PERIOD,
                            "periodSeconds": c.HPA_SCALE_UP_PERIOD_SECONDS,
                        }
                    ],
                },
                "scaleDown": {
                    "stabilizationWindowSeconds": c.HPA_SCALE_DOWN_WINDOW_SECONDS,
                    "selectPolicy": "Max",
                    "policies": [
                        {
                            "type": "Pods",
                            "value": c.HPA_SCALE_DOWN_PODS_PER_PERIOD,
                            "periodSeconds": c.HPA_SCALE_DOWN_PERIOD_SECONDS,
                        }
                    ],
                },
            },
        },
    }


def render_network_policy(
    spec: ServingSpec,
    *,
    gateway_namespace: str | None = None,
    monitoring_namespace: str = c.DEFAULT_MONITORING_NAMESPACE,
) -> dict[str, Any]:
    """Ingress to the deployment's serving pods (both colours) only from the portal's clients
    of them (the gateway, and the worker's pre/post-promotion checks) and from Prometheus, on
    the engine port only.

    The client peer matches pods labelled ``inference.portal/serving-client=true`` in
    ``gateway_namespace``, or in any namespace when None. Prometheus is admitted by
    namespace (``kubernetes.io/metadata.name``). Kubelet probes are not subject to
    NetworkPolicy on common CNIs (host traffic), so health checks keep working.
    """
    gateway_peer: dict[str, Any] = {
        "podSelector": {"matchLabels": {c.SERVING_CLIENT_LABEL: "true"}},
        "namespaceSelector": (
            {"matchLabels": {c.NAMESPACE_NAME_LABEL: gateway_namespace}}
            if gateway_namespace is not None
            else {}
        ),
    }
    prometheus_peer = {
        "namespaceSelector": {"matchLabels": {c.NAMESPACE_NAME_LABEL: monitoring_namespace}}
    }
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": metadata(
            resource_name(spec), spec.namespace, deployment_labels(spec), owned_by=spec
        ),
        "spec": {
            "podSelector": {"matchLabels": selector_labels(spec)},
            "policyTypes": ["Ingress"],
            "ingress": [
                {
                    "from": [gateway_peer, prometheus_peer],
                    # Named: both colours are admitted whatever engine each runs.
                    "ports": [{"protocol": "TCP", "port": c.SERVING_PORT_NAME}],
                }
            ],
        },
    }

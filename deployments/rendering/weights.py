"""The weights cache of one model revision: a PVC and the Job that fills it, or (strategy
``node-local``) a per-pod emptyDir filled by init containers running the same download steps.

Both belong to the MODEL REVISION, not to a portal deployment: several deployments of a tenant
may serve the same repo@sha from one PVC, so these carry the model labels and no
ownerReferences (deleting a deployment's root must not delete weights another one mounts).
The portal deletes them when no deployment revision of the tenant references the sha any more.

Layout contract with the engines' download steps: the serving pods run offline
(``HF_HUB_OFFLINE=1``) on the Hub cache at the mount path, so the Job must write the Hugging Face
cache layout there (``models--<org>--<name>/snapshots/<sha>/...``), safetensors included, since
the serving pods mount the volume read-only and cannot convert or fetch anything.
"""

from __future__ import annotations

from typing import Any

from deployments.rendering import constants as c
from deployments.rendering.errors import SpecError
from deployments.rendering.meta import bounded_name, metadata, model_annotations, model_labels
from deployments.rendering.specs import ServingSpec
from engines.base import hf_token_env


def weights_request_gib(size_bytes: int) -> int:
    """PVC size in GiB: the weights plus 20 % headroom, rounded up, at least 1."""
    numerator = size_bytes * c.WEIGHTS_HEADROOM_NUMERATOR
    denominator = c.WEIGHTS_HEADROOM_DENOMINATOR * c.GIB
    return max(1, -(-numerator // denominator))


def download_job_name(spec: ServingSpec) -> str:
    """``<pvc>-download``, shortened with a hash when over 63 characters (a Job's name is
    copied into its pods' ``job-name`` label, so it must fit a label value)."""
    return download_job_name_of(spec.model.weights_pvc_name)


def download_job_name_of(weights_pvc_name: str) -> str:
    """The download Job filling the PVC `weights_pvc_name` (when only the PVC is known)."""
    return bounded_name(weights_pvc_name, "-download")


def render_weights_pvc(spec: ServingSpec) -> dict[str, Any]:
    """The PVC caching one model revision's weights, as the tier's weights strategy wants it.

    ``shared-volume``: ReadWriteMany on the tier's storage class (a shared filesystem such as
    Filestore/EFS/Azure Files, without zone affinity), so the download Job and every replica of
    both colours, on any node and zone, mount the same volume. ``single-node-volume``:
    ReadWriteOnce on the default class, which attaches to one node only. ``node-local`` has
    no PVC (``SpecError``).
    """
    tier = spec.tier
    if not tier.weights_on_volume:
        raise SpecError("tier.weights_strategy", f"{tier.weights_strategy} uses no volume")
    pvc_spec: dict[str, Any] = {
        "accessModes": [c.WEIGHTS_ACCESS_MODE[tier.weights_strategy]],
        "resources": {"requests": {"storage": _weights_size(spec)}},
        "volumeMode": "Filesystem",
    }
    if tier.weights_strategy == c.WEIGHTS_SHARED_VOLUME:
        pvc_spec["storageClassName"] = tier.weights_storage_class
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": metadata(
            spec.model.weights_pvc_name,
            spec.namespace,
            {**model_labels(spec.tenant, spec.model), c.LABEL_COMPONENT: c.COMPONENT_WEIGHTS},
            annotations=model_annotations(spec.model),
        ),
        "spec": pvc_spec,
    }


def _weights_size(spec: ServingSpec) -> str:
    return f"{weights_request_gib(spec.model.weights_size_bytes)}Gi"


def render_weights(spec: ServingSpec, *, hf_endpoint: str | None) -> list[dict[str, Any]]:
    """What a rollout applies before any serving pod: the PVC and its download Job, or
    nothing when each pod downloads its own copy (``node-local``)."""
    if not spec.tier.weights_on_volume:
        return []
    return [render_weights_pvc(spec), render_weights_download_job(spec, hf_endpoint=hf_endpoint)]


def download_containers(
    spec: ServingSpec, *, hf_endpoint: str | None, guaranteed: bool = False
) -> list[dict[str, Any]]:
    """The engine's download steps (``spec.engine.weights_download``) as containers writing the
    Hub cache at the weights mount: the download Job's, or a node-local pod's init containers.

    Each runs unprivileged (engine images run as root by default; a download needs no
    privilege) at the container level, so a serving pod's engine container keeps its user.
    ``guaranteed`` requests the limits: a pod is Guaranteed QoS only if its init containers
    are too, and init containers run before the engine, so the pod requests no more for it.
    """
    limits = dict(c.DOWNLOAD_RESOURCES["limits"])
    requests = dict(limits) if guaranteed else dict(c.DOWNLOAD_RESOURCES["requests"])
    common: list[dict[str, Any]] = [*hf_token_env(spec.hf_token_secret_name)]
    if hf_endpoint is not None:
        common.append({"name": "HF_ENDPOINT", "value": hf_endpoint})
    common += [
        # huggingface_hub's own HTTP downloads (resumable); hf_transfer may be missing.
        {"name": "HF_HUB_ENABLE_HF_TRANSFER", "value": "0"},
        # The unprivileged user below has no home directory; keep the library's state in /tmp.
        {"name": "HF_HOME", "value": c.DOWNLOAD_HF_HOME},
    ]
    return [
        {
            "name": step.name,
            "image": spec.tier.image,
            "imagePullPolicy": "IfNotPresent",
            "command": list(step.command),
            "env": [*common, *step.env],
            "resources": {"requests": requests, "limits": dict(limits)},
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": c.DOWNLOAD_UID,
                "runAsGroup": c.DOWNLOAD_UID,
                "allowPrivilegeEscalation": False,
            },
            "volumeMounts": [{"name": c.WEIGHTS_VOLUME, "mountPath": c.WEIGHTS_MOUNT_PATH}],
        }
        for step in spec.engine.weights_download(spec)
    ]


def weights_pod_volume(spec: ServingSpec) -> dict[str, Any]:
    """The serving pods' weights volume: the revision's PVC (read-only), or for ``node-local``
    an emptyDir on the node's disk sized like the PVC would be (the kubelet evicts a pod
    writing beyond ``sizeLimit``, so a wrong size is seen rather than filling the node)."""
    if spec.tier.weights_on_volume:
        return {
            "name": c.WEIGHTS_VOLUME,
            "persistentVolumeClaim": {"claimName": spec.model.weights_pvc_name, "readOnly": True},
        }
    return {"name": c.WEIGHTS_VOLUME, "emptyDir": {"sizeLimit": _weights_size(spec)}}


def render_weights_download_job(
    spec: ServingSpec,
    *,
    hf_endpoint: str | None = None,
    ttl_seconds_after_finished: int = c.DOWNLOAD_TTL_SECONDS,
    active_deadline_seconds: int = c.DOWNLOAD_ACTIVE_DEADLINE_SECONDS,
) -> dict[str, Any]:
    """A Job downloading repo@sha into the weights PVC with the engine's own image and tools
    (``spec.engine.weights_download``): the image the serving pods pull anyway, so a node
    that can run the model can run its download, and nothing else needs to be published.

    Runs on any node (no GPU request, no GPU toleration): the CPU pool does the download and
    GPUs are only claimed once the weights are there. Re-running it is harmless: the
    download tools skip files already in the cache. ``activeDeadlineSeconds`` bounds it.
    """
    labels = {
        **model_labels(spec.tenant, spec.model),
        c.LABEL_COMPONENT: c.COMPONENT_WEIGHTS_DOWNLOAD,
    }
    containers = download_containers(spec, hf_endpoint=hf_endpoint)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": metadata(
            download_job_name(spec),
            spec.namespace,
            labels,
            annotations=model_annotations(spec.model),
        ),
        "spec": {
            "backoffLimit": c.DOWNLOAD_BACKOFF_LIMIT,
            "activeDeadlineSeconds": active_deadline_seconds,
            "ttlSecondsAfterFinished": ttl_seconds_after_finished,
            "template": {
                "metadata": {"labels": dict(labels), "annotations": model_annotations(spec.model)},
                "spec": {
                    "restartPolicy": "OnFailure",
                    "automountServiceAccountToken": False,
                    # Engine images run as root by default; a download needs no privilege.
                    # The fresh volume is made writable for the user's group.
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": c.DOWNLOAD_UID,
                        "runAsGroup": c.DOWNLOAD_UID,
                        "fsGroup": c.DOWNLOAD_UID,
                        "fsGroupChangePolicy": "OnRootMismatch",
                    },
                    "enableServiceLinks": False,
                    **({"initContainers": containers[:-1]} if len(containers) > 1 else {}),
                    "containers": containers[-1:],
                    "volumes": [
                        {
                            "name": c.WEIGHTS_VOLUME,
                            "persistentVolumeClaim": {"claimName": spec.model.weights_pvc_name},
                        }
                    ],
                },
            },
        },
    }

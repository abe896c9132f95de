"""Names, label keys and defaults shared by the manifest renderers.

Label keys under ``inference.portal/`` belong to the portal; the ``app.kubernetes.io/`` ones follow
the Kubernetes recommended labels.
"""

from __future__ import annotations

from typing import Final

from engines.base import HF_TOKEN_SECRET_KEY, HUB_CACHE_PATH

__all__ = ["HF_TOKEN_SECRET_KEY"]  # re-exported for the renderers

MANAGED_BY: Final = "inference-portal"
PART_OF: Final = "inference-portal"

# Recommended labels (https://kubernetes.io/docs/concepts/overview/working-with-objects/common-labels/)
LABEL_NAME: Final = "app.kubernetes.io/name"
LABEL_INSTANCE: Final = "app.kubernetes.io/instance"
LABEL_COMPONENT: Final = "app.kubernetes.io/component"
LABEL_PART_OF: Final = "app.kubernetes.io/part-of"
LABEL_MANAGED_BY: Final = "app.kubernetes.io/managed-by"
LABEL_VERSION: Final = "app.kubernetes.io/version"
# Every object the portal creates carries it; a label selector for all of them.
MANAGED_BY_SELECTOR: Final = f"{LABEL_MANAGED_BY}={MANAGED_BY}"

# Portal labels
LABEL_TENANT: Final = "inference.portal/tenant"
LABEL_DEPLOYMENT: Final = "inference.portal/deployment"
LABEL_COLOUR: Final = "inference.portal/colour"
LABEL_REVISION: Final = "inference.portal/revision"
LABEL_MODEL: Final = "inference.portal/model"
LABEL_MODEL_SHA: Final = "inference.portal/model-sha"
LABEL_TIER: Final = "inference.portal/tier"
LABEL_BACKEND: Final = "inference.backend"
# The app.kubernetes.io/name of every serving pod, whatever its engine. It is part of the
# Deployments' selectors (immutable in apps/v1) and of the Services' selectors: an engine-specific
# value would make switching a deployment's engine re-apply a colour with another selector (the
# API server refuses) and leave the active Service selecting nothing until promotion. The value
# is TGI's historical one so that deployments created before engines were plug-ins keep working;
# the engine is in LABEL_BACKEND.
SERVING_APP_NAME: Final = "text-generation-inference"
# The serving container's port name: Services and the NetworkPolicy refer to it by name, so
# they reach either colour whatever port its engine listens on.
SERVING_PORT_NAME: Final = "http"

# Annotations (values may be longer than a label allows)
ANNOTATION_MODEL_ID: Final = "inference.portal/model-id"
ANNOTATION_MODEL_SHA: Final = "inference.portal/model-sha"
ANNOTATION_FINGERPRINT: Final = "inference.portal/fingerprint"

COMPONENT_INFERENCE_SERVER: Final = "inference-server"
COMPONENT_WEIGHTS: Final = "model-weights"
COMPONENT_WEIGHTS_DOWNLOAD: Final = "weights-download"
COMPONENT_DEPLOYMENT_ROOT: Final = "deployment-root"
# The portal's weights PVCs, cluster-wide (the reconciler collects unused ones).
WEIGHTS_SELECTOR: Final = f"{MANAGED_BY_SELECTOR},{LABEL_COMPONENT}={COMPONENT_WEIGHTS}"
WEIGHTS_APP_NAME: Final = "model-weights"

# The gateway's pods carry this name; the NetworkPolicy admits only them and Prometheus.
# Pods allowed to call serving pods (the gateway, and the worker's pre/post-promotion checks)
# carry this label; deploy/k8s sets it on both.
SERVING_CLIENT_LABEL: Final = "inference.portal/serving-client"
DEFAULT_MONITORING_NAMESPACE: Final = "monitoring"
# Set by the API server on every namespace since Kubernetes 1.22 (NamespaceDefaultLabelName).
NAMESPACE_NAME_LABEL: Final = "kubernetes.io/metadata.name"
# Set by the EndpointSlice controller on every slice it manages for a Service.
ENDPOINTSLICE_SERVICE_LABEL: Final = "kubernetes.io/service-name"

# Tenant namespace objects
RESOURCE_QUOTA_NAME: Final = "portal-quota"
LIMIT_RANGE_NAME: Final = "portal-defaults"
GPU_RESOURCE: Final = "nvidia.com/gpu"
# Node label set by NVIDIA GPU feature discovery.
LABEL_GPU_PRODUCT: Final = "nvidia.com/gpu.product"
# Well-known node label (kubelet --node-labels / cloud provider): the machine type.
LABEL_INSTANCE_TYPE: Final = "node.kubernetes.io/instance-type"
# Node labels that name a node's pool, as GKE, EKS managed node groups, Karpenter and AKS set
# them; the first present names the pool (capacity pages), else the instance type does.
LABEL_GKE_NODEPOOL: Final = "cloud.google.com/gke-nodepool"
NODE_POOL_LABELS: Final = (
    LABEL_GKE_NODEPOOL,
    "eks.amazonaws.com/nodegroup",
    "karpenter.sh/nodepool",
    "kubernetes.azure.com/agentpool",
)
# ResourceQuota accepts extended resources only with the "requests." prefix (no limits.* form).
GPU_QUOTA_KEY: Final = f"requests.{GPU_RESOURCE}"
# The taint GPU node pools carry (NVIDIA GPU operator / cloud GPU pools convention).
GPU_TOLERATION: Final = {
    "key": GPU_RESOURCE,
    "operator": "Equal",
    "value": "present",
    "effect": "NoSchedule",
}
POD_SECURITY_ENFORCE_LABEL: Final = "pod-security.kubernetes.io/enforce"
POD_SECURITY_LEVEL: Final = "baseline"  # TGI runs as root; "restricted" would refuse it

# Names. The prefix is TGI's historical one, kept for every engine: clusters hold objects so named.
NAME_PREFIX: Final = "tgi-"
PREVIEW_SUFFIX: Final = "-preview"
DNS1123_LABEL_MAX: Final = 63
LABEL_VALUE_MAX: Final = 63
# The longest deployment name whose preview Service name needs no hash.
DEPLOYMENT_NAME_MAX: Final = DNS1123_LABEL_MAX - len(NAME_PREFIX) - len(PREVIEW_SUFFIX)
# The Services' port name (EndpointSlices repeat it on their ports).
SERVICE_PORT_NAME: Final = "http"
# The tenant's Secret holding its Hugging Face token (the key is HF_TOKEN_SECRET_KEY).
HUB_TOKEN_SECRET_NAME: Final = "hf-token"  # noqa: S105 - the Secret's name, not a secret

# The secret key holding a tenant's Hugging Face token (HF_TOKEN_SECRET_KEY) and the weights
# mount path are the engines' contract, re-exported here for the renderers.

# Weights cache volume
WEIGHTS_VOLUME: Final = "weights"
WEIGHTS_MOUNT_PATH: Final = HUB_CACHE_PATH
WEIGHTS_HEADROOM_NUMERATOR: Final = 6  # request = size x 1.2, rounded up to whole GiB
WEIGHTS_HEADROOM_DENOMINATOR: Final = 5
GIB: Final = 1024**3
# Where a revision's weights live (TierSpec.weights_strategy; chosen per cluster and tier):
# one ReadWriteMany volume per model commit that every pod on any node and zone mounts;
# an emptyDir per pod filled by an init container (no shared storage, slower starts);
# or one ReadWriteOnce volume, which attaches to a single node (every pod must land there).
WEIGHTS_SHARED_VOLUME: Final = "shared-volume"
WEIGHTS_NODE_LOCAL: Final = "node-local"
WEIGHTS_SINGLE_NODE_VOLUME: Final = "single-node-volume"
WEIGHTS_STRATEGIES: Final = (WEIGHTS_SHARED_VOLUME, WEIGHTS_NODE_LOCAL, WEIGHTS_SINGLE_NODE_VOLUME)
# ReadOnlyMany cannot be written by the download Job: the shared volume is ReadWriteMany and
# the serving pods mount it read-only.
WEIGHTS_ACCESS_MODE: Final = {
    WEIGHTS_SHARED_VOLUME: "ReadWriteMany",
    WEIGHTS_SINGLE_NODE_VOLUME: "ReadWriteOnce",
}
SHM_VOLUME: Final = "dshm"
SHM_MOUNT_PATH: Final = "/dev/shm"  # noqa: S108 - the pod's own shared memory, not a temp file
SHM_SIZE: Final = "1Gi"  # like `docker run --shm-size 1g`; NCCL needs it for num_shard > 1

# Weights download Job (runs the portal's own image)
DOWNLOAD_UID: Final = 10001  # any unprivileged uid: the download writes only the volume
DOWNLOAD_HF_HOME: Final = "/tmp/huggingface"  # noqa: S108 - per-pod scratch, not shared
DOWNLOAD_BACKOFF_LIMIT: Final = 3
DOWNLOAD_TTL_SECONDS: Final = 24 * 3600
DOWNLOAD_ACTIVE_DEADLINE_SECONDS: Final = 6 * 3600
DOWNLOAD_RESOURCES: Final = {
    "requests": {"cpu": "500m", "memory": "1Gi"},
    "limits": {"cpu": "2", "memory": "4Gi"},
}

# Inference server pod
PROGRESS_DEADLINE_SECONDS: Final = 600
STARTUP_TIMEOUT_SECONDS: Final = 30 * 60
STARTUP_PERIOD_SECONDS: Final = 2  # cheap while loading (connection refused); promotes soon after
READINESS_PERIOD_SECONDS: Final = 5
READINESS_FAILURE_THRESHOLD: Final = 3
LIVENESS_PERIOD_SECONDS: Final = 10
LIVENESS_FAILURE_THRESHOLD: Final = 6
# TGI's /health may run a one-token generation when no request succeeded lately; 1 s is tight.
PROBE_TIMEOUT_SECONDS: Final = 5
REVISION_HISTORY_LIMIT: Final = 2

# HorizontalPodAutoscaler
HPA_SCALE_DOWN_WINDOW_SECONDS: Final = 600
HPA_SCALE_DOWN_PODS_PER_PERIOD: Final = 1
HPA_SCALE_DOWN_PERIOD_SECONDS: Final = 300
HPA_SCALE_UP_PODS_PER_PERIOD: Final = 2
HPA_SCALE_UP_PERIOD_SECONDS: Final = 60

# Prometheus scrape hints (honoured by the common `kubernetes-pods` scrape job)
PROMETHEUS_SCRAPE: Final = "prometheus.io/scrape"
PROMETHEUS_PORT: Final = "prometheus.io/port"
PROMETHEUS_PATH: Final = "prometheus.io/path"

# The portal's own workloads (deploy/k8s): their namespace, the app name and the components
# whose pods serve /metrics. deploy/prometheus/ scrapes them by these.
PORTAL_NAMESPACE: Final = "inference-portal"
PORTAL_APP_NAME: Final = "inference-portal"
PORTAL_METRICS_COMPONENTS: Final = ("web", "gateway")

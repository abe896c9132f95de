"""A tenant's namespace with its GPU/pod quota and default container resources."""

from __future__ import annotations

from typing import Any

from deployments.rendering import constants as c
from deployments.rendering.meta import metadata, tenant_labels
from deployments.rendering.specs import TenantSpec


def render_tenant_namespace(tenant: TenantSpec) -> list[dict[str, Any]]:
    """Namespace, ResourceQuota ``portal-quota`` and LimitRange ``portal-defaults``.

    These belong to the tenant, not to a deployment: no ownerReferences.
    """
    labels = tenant_labels(tenant)
    namespace = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": metadata(
            tenant.namespace,
            None,
            # Baseline Pod Security: TGI runs as root (refused by "restricted"), but tenants
            # get no host namespaces, host paths or privileged containers.
            {**labels, c.POD_SECURITY_ENFORCE_LABEL: c.POD_SECURITY_LEVEL},
        ),
    }
    quota = {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": metadata(c.RESOURCE_QUOTA_NAME, tenant.namespace, labels),
        "spec": {
            "hard": {
                # Extended resources are quota'd only as requests.<name> (requests == limits).
                c.GPU_QUOTA_KEY: str(tenant.max_gpus),
                # Counts non-terminal pods of both colours and the weights download Jobs.
                "pods": str(tenant.max_pods),
            }
        },
    }
    limit_range = {
        "apiVersion": "v1",
        "kind": "LimitRange",
        "metadata": metadata(c.LIMIT_RANGE_NAME, tenant.namespace, labels),
        "spec": {
            "limits": [
                {
                    "type": "Container",
                    "defaultRequest": {
                        "cpu": tenant.default_cpu_request,
                        "memory": tenant.default_memory_request,
                    },
                    "default": {
                        "cpu": tenant.default_cpu_limit,
                        "memory": tenant.default_memory_limit,
                    },
                }
            ]
        },
    }
    return [namespace, quota, limit_range]

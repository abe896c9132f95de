"""A tenant's namespace with its GPU/pod quota and default container resources, and the Secret
holding its Hugging Face token."""

from __future__ import annotations

import base64
from typing import Any

from deployments.rendering import constants as c
from deployments.rendering.meta import metadata, tenant_labels
from deployments.rendering.specs import TenantSpec


def render_namespace(slug: str, namespace: str) -> dict[str, Any]:
    """The tenant's Namespace alone, for writers that need it before any rollout (the Hub
    token's Secret). Always this one manifest: a server-side apply of a Namespace with fewer
    labels, under the same field manager, would remove the ones it omits.
    """
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": metadata(
            namespace,
            None,
            # Baseline Pod Security: TGI runs as root (refused by "restricted"), but tenants
            # get no host namespaces, host paths or privileged containers.
            {**tenant_labels(slug), c.POD_SECURITY_ENFORCE_LABEL: c.POD_SECURITY_LEVEL},
        ),
    }


def render_tenant_namespace(tenant: TenantSpec) -> list[dict[str, Any]]:
    """Namespace, ResourceQuota ``portal-quota`` and LimitRange ``portal-defaults``.

    These belong to the tenant, not to a deployment: no ownerReferences.
    """
    labels = tenant_labels(tenant.slug)
    namespace = render_namespace(tenant.slug, tenant.namespace)
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


def render_hub_token_secret(
    slug: str, namespace: str, token: str, fingerprint: str
) -> dict[str, Any]:
    """The Secret ``hf-token`` the serving pods and download Jobs read the tenant's token from;
    `fingerprint` identifies the token without revealing it."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": metadata(
            c.HUB_TOKEN_SECRET_NAME,
            namespace,
            tenant_labels(slug),
            annotations={c.ANNOTATION_FINGERPRINT: fingerprint},
        ),
        "data": {c.HF_TOKEN_SECRET_KEY: base64.b64encode(token.encode()).decode()},
    }

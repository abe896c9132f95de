"""Which endpoints of a Service's EndpointSlices may receive traffic: one rule for the rollout's
pre-promotion checks and the gateway. Pure, on the API's dict form (camelCase keys, as the
watch delivers it or ``ApiClient.sanitize_for_serialization`` returns it).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from deployments.rendering import constants as c


def slice_selector(service: str) -> str:
    """The label selector of the EndpointSlices the controller maintains for `service`."""
    return f"{c.ENDPOINTSLICE_SERVICE_LABEL}={service}"


def endpoint_ready(endpoint: Mapping[str, Any]) -> bool:
    """Kubernetes' rule (discovery/v1 EndpointConditions): a nil ``ready`` is to be read as true.

    ``terminating`` is not consulted: the EndpointSlice controller already sets ready=false on a
    terminating pod's endpoint unless its Service publishes not-ready addresses, which the
    portal's Services never do. (``serving`` and ``terminating`` are for proxies that fall back
    to draining pods when nothing is ready; the portal waits or retries instead.)
    """
    ready = (endpoint.get("conditions") or {}).get("ready")
    return ready is None or ready is True


def ready_ips(endpoint_slice: Mapping[str, Any]) -> list[str]:
    """The addresses of the slice's ready endpoints, in the slice's order."""
    return [
        address
        for endpoint in endpoint_slice.get("endpoints") or []
        if endpoint_ready(endpoint)
        for address in endpoint.get("addresses") or []
    ]


def service_port(endpoint_slice: Mapping[str, Any]) -> int | None:
    """The slice's port for the Service port the portal renders (or its only port)."""
    ports = endpoint_slice.get("ports") or []
    port = next((p.get("port") for p in ports if p.get("name") == c.SERVICE_PORT_NAME), None)
    if port is None and len(ports) == 1:
        port = ports[0].get("port")
    return port

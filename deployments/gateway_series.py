"""The gateway's Prometheus series: names and labels, the contract between the gateway that
exports them (gateway/metering.py) and the panels that read them (deployments/metrics.py).

They live here, below both, because the layers let the gateway import deployments and never the
reverse; this module imports nothing, so the gateway process does not load the query layer.
Counters are declared without their ``_total`` suffix (prometheus_client adds it on export);
``total()`` names the series a query reads.
"""

from __future__ import annotations

REQUESTS = "gateway_requests"
ERRORS = "gateway_errors"
PROMPT_TOKENS = "gateway_prompt_tokens"
COMPLETION_TOKENS = "gateway_completion_tokens"
DURATION = "gateway_request_duration_seconds"
RATE_LIMITER_DEGRADED = "gateway_rate_limiter_degraded"

TENANT = "tenant"
"""The tenant's slug (not its namespace)."""
KEY = "key"
"""The key's public prefix, never its secret."""
DEPLOYMENT = "deployment"
CODE = "code"
KIND = "kind"


def total(counter: str) -> str:
    """The exported series of a counter."""
    return f"{counter}_total"

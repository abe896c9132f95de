"""What every inference engine tells the portal (the contract of an ``engines/<name>`` package)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from deployments.rendering.specs import ServingSpec

# Where the serving pod mounts the weights volume, laid out as a Hugging Face Hub cache.
HUB_CACHE_PATH = "/data"
# The key of the tenant's Hub-token Secret (tenants' Secrets are written by the registry).
HF_TOKEN_SECRET_KEY = "token"  # noqa: S105 - a key name, not a secret


class InferenceEngine(Protocol):
    """What the renderers need to know about an inference server image."""

    @property
    def name(self) -> str:
        """Short id, the value of the ``inference.backend`` label (e.g. "tgi")."""
        ...

    @property
    def label(self) -> str:
        """Human name shown in the UI."""
        ...

    @property
    def app_name(self) -> str:
        """The ``app.kubernetes.io/name`` of the serving pods."""
        ...

    @property
    def container_name(self) -> str: ...

    @property
    def port(self) -> int:
        """The one HTTP port serving the API, /health and /metrics."""
        ...

    @property
    def health_path(self) -> str: ...

    @property
    def metrics_path(self) -> str: ...

    @property
    def queue_size_metric(self) -> str:
        """Per-pod gauge of requests waiting for a batch slot (the autoscaling signal)."""
        ...

    @property
    def graceful_shutdown_seconds(self) -> int:
        """How long the server drains in-flight requests after SIGTERM."""
        ...

    def validate(self, spec: ServingSpec) -> None:
        """Raise SpecError for settings this engine refuses at start-up."""
        ...

    def args(self, spec: ServingSpec) -> list[str]:
        """Container args (the image's entrypoint is kept)."""
        ...

    def env(self, spec: ServingSpec) -> list[dict[str, Any]]:
        """Container environment, in a stable order."""
        ...


def hf_token_env(secret_name: str | None) -> list[dict[str, Any]]:
    """HF_TOKEN from the tenant's Secret; optional so public models start without one."""
    if secret_name is None:
        return []
    return [
        {
            "name": "HF_TOKEN",
            "valueFrom": {
                "secretKeyRef": {"name": secret_name, "key": HF_TOKEN_SECRET_KEY, "optional": True}
            },
        }
    ]

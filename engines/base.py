"""What every inference engine tells the portal (the contract of an ``engines/<name>`` package)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from deployments.rendering.specs import ServingSpec
    from engines.promql import EngineMetrics

# Where the serving pod mounts the weights volume, laid out as a Hugging Face Hub cache.
HUB_CACHE_PATH = "/data"
# The key of the tenant's Hub-token Secret (tenants' Secrets are written by the registry).
HF_TOKEN_SECRET_KEY = "token"  # noqa: S105 - a key name, not a secret


@dataclass(frozen=True)
class DownloadStep:
    """One command of the weight-download Job, run in the engine's own image with the tools
    that image ships. Steps run in order (all but the last as init containers)."""

    name: str
    command: list[str]
    env: list[dict[str, Any]] = field(default_factory=list)


def hub_snapshot_step(spec: ServingSpec, cli: str, hub_cache: str) -> DownloadStep:
    """The whole snapshot of repo@sha in the Hub cache layout the offline engines read, with
    huggingface_hub's CLI (`hf download`, or `huggingface-cli download` before 0.34): the
    weights, config, tokenizer and any remote code. Files already cached are skipped."""
    command = [cli, "download", spec.model.repo_id, "--revision", spec.model.commit_sha]
    return DownloadStep(
        name="download",
        command=[*command, "--cache-dir", hub_cache],
        env=[{"name": "HF_HUB_CACHE", "value": hub_cache}],
    )


@dataclass(frozen=True)
class Probes:
    """HTTP GET paths the kubelet probes. ``readiness`` must prove the server can answer a
    request (not only that the process lives): it decides whether a pod gets traffic."""

    startup: str
    readiness: str
    liveness: str


@dataclass(frozen=True)
class QuantizationTable:
    """Quantization an engine accepts, and what it does to the weights' size.

    ``on_the_fly``: methods applied while loading a 16-bit checkpoint, with the weight size they
    leave relative to 16 bits. ``pre_quantized``: the values accepted for a checkpoint whose
    config.json says ``quantization_config.quant_method`` (None: served as stored).
    """

    on_the_fly: Mapping[str, float]
    pre_quantized: Mapping[str, tuple[str, ...]]
    float16_only: frozenset[str] = frozenset()
    dtypes: frozenset[str] = frozenset({"float16", "bfloat16"})
    kv_cache_dtypes: frozenset[str] = frozenset()
    no_tensor_parallel: frozenset[str] = frozenset()

    @property
    def all_values(self) -> frozenset[str]:
        return frozenset(
            {*self.on_the_fly, *(q for options in self.pre_quantized.values() for q in options)}
        )

    def valid_for(self, quantization_method: str) -> list[str | None]:
        """Values of the quantization setting for a checkpoint (None: as the checkpoint is)."""
        if quantization_method:
            return [None, *self.pre_quantized.get(quantization_method, ())]
        return [None, *self.on_the_fly]


@dataclass(frozen=True)
class MemoryModel:
    """The fit check's engine-specific numbers (models_registry/fit.py)."""

    fraction_for_kv: float
    """Share of the memory left after weights and overhead the engine gives the KV cache."""
    runtime_overhead_bytes: int
    """CUDA context, NCCL buffers, activations and CUDA graphs per GPU."""
    explanation: str
    """One sentence naming the engine's own knob, for the fit page."""
    reserved_fraction_of_total: float = 0.0
    """Share of the whole GPU the engine never uses (vLLM's 1 − gpu_memory_utilization)."""


@dataclass(frozen=True)
class HttpCall:
    """One request of a check: ``payload`` None means GET."""

    path: str
    payload: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class InfoCheck:
    """A GET whose JSON must carry ``expected`` (dotted paths into the answer, e.g.
    ``data.0.id``) before promotion: the pod serves the revision the spec asked for."""

    path: str
    expected: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Failure:
    """What an operator reading a crashed container's exit code and log would conclude."""

    reason: str
    remedy: str


class InferenceEngine(Protocol):
    """What the portal needs to know about an inference server image."""

    @property
    def name(self) -> str:
        """Short id, the value of the ``inference.backend`` label (e.g. "tgi")."""
        ...

    @property
    def label(self) -> str:
        """Human name shown in the UI."""
        ...

    @property
    def default_image(self) -> str:
        """The image (with tag) a tier offers unless its admin pins another."""
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
    def probes(self) -> Probes: ...

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

    @property
    def quantization(self) -> QuantizationTable: ...

    @property
    def memory(self) -> MemoryModel: ...

    @property
    def metrics(self) -> EngineMetrics:
        """PromQL of every panel, alert and the autoscaling signal over this engine's series."""
        ...

    def validate(self, spec: ServingSpec) -> None:
        """Raise SpecError for settings this engine refuses at start-up."""
        ...

    def args(self, spec: ServingSpec) -> list[str]:
        """Container args (the image's entrypoint is kept)."""
        ...

    def command(self) -> list[str] | None:
        """The container command, or None to keep the image's entrypoint."""
        ...

    def env(self, spec: ServingSpec) -> list[dict[str, Any]]:
        """Container environment, in a stable order."""
        ...

    def weights_download(self, spec: ServingSpec) -> list[DownloadStep]:
        """The commands, in this engine's image, that fill the weights volume (mounted at the
        engine's Hub cache path) with everything the offline server reads."""
        ...

    # The gateway's exact input-token count (see gateway/app.py).
    def tokenize_text(self, prompt: str) -> HttpCall: ...

    def tokenize_chat(self, body: Mapping[str, Any]) -> HttpCall | None:
        """The call counting a chat request's templated prompt; None when the engine has none."""
        ...

    def token_count(self, call: HttpCall, answer: Any) -> int | None:
        """Tokens in the answer of a tokenize call; None when it is unreadable."""
        ...

    # The pre-promotion check (deployments/serving_checks.py).
    def info_checks(self, spec: ServingSpec) -> Sequence[InfoCheck]: ...

    def smoke_request(self, spec: ServingSpec) -> HttpCall:
        """A tiny generation through the route a client would use for this model."""
        ...

    def smoke_answered(self, call: HttpCall, answer: Any) -> bool: ...

    def classify_failure(self, exit_code: int | None, log_tail: Sequence[str]) -> Failure | None:
        """The cause of a container's last termination, from its exit code and last log lines."""
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


def dig(answer: Any, path: str) -> Any:
    """``answer["data"][0]["id"]`` for ``"data.0.id"``; None where the path does not exist."""
    current = answer
    for part in path.split("."):
        if isinstance(current, list) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        elif isinstance(current, dict) and part in current:
            current = current[part]
        else:
            return None
    return current


def first_match(log_tail: Sequence[str], *needles: str) -> str | None:
    """The last log line containing any needle (case-sensitive, as engines log)."""
    for line in reversed(log_tail):
        if any(needle in line for needle in needles):
            return line.strip()
    return None


# Offline start without the files in the Hub cache: huggingface_hub's messages, whichever
# engine calls it (huggingface_hub/file_download.py, errors.LocalEntryNotFoundError).
MISSING_WEIGHTS_NEEDLES = (
    "LocalEntryNotFoundError",
    "Cannot find the requested files in the local cache",
    "outgoing traffic has been disabled",
    "We couldn't connect to 'https://huggingface.co'",
)
MISSING_WEIGHTS_REMEDY = (
    "the pod runs offline (HF_HUB_OFFLINE=1) and the weights volume lacks this revision's "
    "files: re-run the weight download for the model revision, then deploy again"
)

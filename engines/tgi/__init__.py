"""Hugging Face text-generation-inference (TGI 3.3, maintenance mode since December 2025)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from engines.base import HUB_CACHE_PATH, hf_token_env
from engines.errors import SpecError

if TYPE_CHECKING:
    from deployments.rendering.specs import ServingSpec


TGI_QUANTIZE_VALUES = frozenset(
    {
        "awq",
        "compressed-tensors",
        "eetq",
        "exl2",
        "gptq",
        "marlin",
        "bitsandbytes",
        "bitsandbytes-nf4",
        "bitsandbytes-fp4",
        "fp8",
    }
)
TGI_DTYPE_VALUES = frozenset({"float16", "bfloat16"})
TGI_KV_CACHE_DTYPE_VALUES = frozenset({"fp8_e4m3fn", "fp8_e5m2"})


@dataclass(frozen=True)
class TGIEngine:
    """Hugging Face text-generation-inference (launcher flags as in TGI 3.3)."""

    name: str = "tgi"
    label: str = "Text Generation Inference"
    app_name: str = "text-generation-inference"
    container_name: str = "tgi"
    port: int = 80
    health_path: str = "/health"
    metrics_path: str = "/metrics"
    queue_size_metric: str = "tgi_queue_size"
    graceful_shutdown_seconds: int = 90  # --graceful-termination-timeout default
    hub_cache_path: str = HUB_CACHE_PATH

    def validate(self, spec: ServingSpec) -> None:
        if spec.quantize is not None and spec.quantize not in TGI_QUANTIZE_VALUES:
            allowed = ", ".join(sorted(TGI_QUANTIZE_VALUES))
            raise SpecError("quantize", f"TGI accepts {allowed} (got {spec.quantize!r})")
        if spec.dtype is not None and spec.dtype not in TGI_DTYPE_VALUES:
            raise SpecError("dtype", f"TGI accepts float16 or bfloat16 (got {spec.dtype!r})")
        if spec.kv_cache_dtype is not None and spec.kv_cache_dtype not in TGI_KV_CACHE_DTYPE_VALUES:
            raise SpecError(
                "kv_cache_dtype",
                f"TGI accepts fp8_e4m3fn or fp8_e5m2 (got {spec.kv_cache_dtype!r})",
            )
        if spec.quantize == "exl2" and spec.tier.gpus_per_replica > 1:
            raise SpecError("quantize", "exl2 does not support tensor parallelism (num_shard > 1)")

    def args(self, spec: ServingSpec) -> list[str]:
        self.validate(spec)
        args = [
            "--model-id",
            spec.model.repo_id,
            "--revision",
            spec.model.commit_sha,
            "--num-shard",
            str(spec.tier.gpus_per_replica),
        ]
        if spec.quantize is not None:
            args += ["--quantize", spec.quantize]
        if spec.dtype is not None:
            args += ["--dtype", spec.dtype]
        if spec.kv_cache_dtype is not None:
            args += ["--kv-cache-dtype", spec.kv_cache_dtype]
        args += [
            "--max-input-tokens",
            str(spec.max_input_tokens),
            "--max-total-tokens",
            str(spec.max_total_tokens),
            "--max-batch-prefill-tokens",
            str(spec.max_batch_prefill_tokens),
            "--max-concurrent-requests",
            str(spec.max_concurrent_requests),
            "--port",
            str(self.port),
            "--hostname",
            "0.0.0.0",
            "--huggingface-hub-cache",
            self.hub_cache_path,
        ]
        if spec.model.trust_remote_code:
            # Only for models an admin approved; the pinned --revision limits what runs.
            args.append("--trust-remote-code")
        return args

    def env(self, spec: ServingSpec) -> list[dict[str, Any]]:
        return [
            *hf_token_env(spec.hf_token_secret_name),
            # The weights were downloaded into the PVC beforehand; never reach the Hub from a
            # GPU pod (a missing file fails fast instead of a slow, unaudited download).
            {"name": "HF_HUB_OFFLINE", "value": "1"},
            {"name": "HF_HOME", "value": self.hub_cache_path},
            {"name": "PORT", "value": str(self.port)},
            # The router otherwise reports anonymous usage statistics to huggingface.co.
            {"name": "USAGE_STATS", "value": "off"},
        ]


TGI_ENGINE = TGIEngine()

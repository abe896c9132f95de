"""Hugging Face text-generation-inference (TGI 3.3, maintenance mode since December 2025)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from engines.base import (
    HUB_CACHE_PATH,
    MISSING_WEIGHTS_NEEDLES,
    MISSING_WEIGHTS_REMEDY,
    DownloadStep,
    Failure,
    HttpCall,
    InfoCheck,
    MemoryModel,
    Probes,
    QuantizationTable,
    first_match,
    hf_token_env,
    hub_snapshot_step,
)
from engines.errors import SpecError
from engines.promql import EngineMetrics
from engines.tgi.metrics import TGI_METRICS

if TYPE_CHECKING:
    from deployments.rendering.specs import ServingSpec

# launcher/src/main.rs `Quantization` and server/text_generation_server/utils/quantization.py.
TGI_QUANTIZATION = QuantizationTable(
    # Applied while loading a 16-bit checkpoint, with the weight size left relative to 16 bits.
    on_the_fly={
        "bitsandbytes": 0.5,
        "bitsandbytes-nf4": 0.25,
        "bitsandbytes-fp4": 0.25,
        "eetq": 0.5,
        "fp8": 0.5,
    },
    # Needs a checkpoint quantized that way, by the checkpoint's quant_method.
    pre_quantized={
        "awq": ("awq",),
        "gptq": ("gptq", "marlin"),
        "marlin": ("marlin",),
        "exl2": ("exl2",),
        "compressed-tensors": ("compressed-tensors",),
    },
    float16_only=frozenset({"awq", "gptq", "marlin", "exl2"}),
    dtypes=frozenset({"float16", "bfloat16"}),
    kv_cache_dtypes=frozenset({"fp8_e4m3fn", "fp8_e5m2"}),
    no_tensor_parallel=frozenset({"exl2"}),
)
TGI_QUANTIZE_VALUES = TGI_QUANTIZATION.all_values
TGI_DTYPE_VALUES = TGI_QUANTIZATION.dtypes
TGI_KV_CACHE_DTYPE_VALUES = TGI_QUANTIZATION.kv_cache_dtypes

REMEDY_OOM = (
    "lower max input tokens or quantize the model (or lower max total tokens / batch prefill "
    "tokens, or choose a tier with more GPU memory)"
)

TGI_PROBES = Probes(startup="/health", readiness="/health", liveness="/health")
TGI_MEMORY = MemoryModel(
    fraction_for_kv=0.90,
    runtime_overhead_bytes=1_500_000_000,
    explanation="TGI keeps 10% of the rest in reserve (TGI_WIGGLE_ROOM)",
)


@dataclass(frozen=True)
class TGIEngine:
    """Hugging Face text-generation-inference (launcher flags as in TGI 3.3)."""

    name: str = "tgi"
    label: str = "Text Generation Inference"
    default_image: str = "ghcr.io/huggingface/text-generation-inference:3.3.6"
    app_name: str = "text-generation-inference"
    container_name: str = "tgi"
    port: int = 80
    health_path: str = "/health"
    # router/src/server.rs: /health answers 200 only when the shards can serve (it runs a
    # one-token prefill when no request succeeded lately); the port binds after warm-up.
    probes: Probes = TGI_PROBES
    metrics_path: str = "/metrics"
    queue_size_metric: str = "tgi_queue_size"
    graceful_shutdown_seconds: int = 90  # --graceful-termination-timeout default
    hub_cache_path: str = HUB_CACHE_PATH
    quantization: QuantizationTable = TGI_QUANTIZATION
    # TGI_WIGGLE_ROOM (server/text_generation_server/models/globals.py): 10 % of free memory
    # stays back when the KV cache (max_batch_total_tokens) is sized at warm-up.
    memory: MemoryModel = TGI_MEMORY
    metrics: EngineMetrics = TGI_METRICS

    def validate(self, spec: ServingSpec) -> None:
        table = self.quantization
        if spec.quantize is not None and spec.quantize not in table.all_values:
            allowed = ", ".join(sorted(table.all_values))
            raise SpecError("quantize", f"TGI accepts {allowed} (got {spec.quantize!r})")
        if spec.dtype is not None and spec.dtype not in table.dtypes:
            raise SpecError("dtype", f"TGI accepts float16 or bfloat16 (got {spec.dtype!r})")
        if spec.kv_cache_dtype is not None and spec.kv_cache_dtype not in table.kv_cache_dtypes:
            raise SpecError(
                "kv_cache_dtype",
                f"TGI accepts fp8_e4m3fn or fp8_e5m2 (got {spec.kv_cache_dtype!r})",
            )
        if spec.quantize in table.no_tensor_parallel and spec.tier.gpus_per_replica > 1:
            raise SpecError("quantize", "exl2 does not support tensor parallelism (num_shard > 1)")

    def command(self) -> list[str] | None:
        return None  # the image's entrypoint is text-generation-launcher

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

    def weights_download(self, spec: ServingSpec) -> list[DownloadStep]:
        # server/text_generation_server/cli.py download_weights: the .safetensors files (a
        # .bin-only checkpoint converted to safetensors, which the read-only serving pods could
        # not do) into huggingface_hub's cache (HF_HUB_CACHE). It fetches no tokenizer, which
        # the router and the shards then read from the cache offline: huggingface_hub's CLI,
        # installed in the image with the server, fetches the whole snapshot.
        weights = DownloadStep(
            name="download-weights",
            command=[
                "text-generation-server",
                "download-weights",
                spec.model.repo_id,
                "--revision",
                spec.model.commit_sha,
            ],
            env=[{"name": "HF_HUB_CACHE", "value": self.hub_cache_path}],
        )
        # The snapshot first: huggingface_hub's snapshot_download, asked for a commit whose
        # snapshot folder exists, answers a failed Hub call (a 5xx, a timeout) with that local
        # folder and success. After download-weights had made the folder, one Hub hiccup left a
        # snapshot without tokenizer that the engine then could not start from. Before it, a
        # hiccup fails the step and the Job retries it; download-weights then finds the
        # safetensors in place (and converts a .bin-only checkpoint).
        return [hub_snapshot_step(spec, "huggingface-cli", self.hub_cache_path), weights]

    # --- the gateway's token count (router/src/server.rs tokenize, chat_tokenize) -----------

    def tokenize_text(self, prompt: str) -> HttpCall:
        return HttpCall("/tokenize", {"inputs": prompt})

    def tokenize_chat(self, body: Mapping[str, Any]) -> HttpCall | None:
        request = {k: v for k, v in body.items() if k not in ("stream", "stream_options")}
        return HttpCall("/chat_tokenize", request)

    def token_count(self, call: HttpCall, answer: Any) -> int | None:
        # /tokenize answers a list of tokens; /chat_tokenize {"tokenize_response": [...], ...}.
        if call.path == "/chat_tokenize" and isinstance(answer, dict):
            answer = answer.get("tokenize_response")
        return len(answer) if isinstance(answer, list) else None

    # --- the pre-promotion check ------------------------------------------------------------

    def info_checks(self, spec: ServingSpec) -> Sequence[InfoCheck]:
        return [
            InfoCheck(
                "/info",
                {
                    "model_id": spec.model.repo_id,
                    "max_total_tokens": spec.max_total_tokens,
                    "max_input_tokens": spec.max_input_tokens,
                },
            )
        ]

    def smoke_request(self, spec: ServingSpec) -> HttpCall:
        if getattr(spec.model, "has_chat_template", True):
            return HttpCall(
                "/v1/chat/completions",
                {
                    "model": "tgi",
                    "messages": [{"role": "user", "content": "ping"}],
                    "max_tokens": 4,
                },
            )
        # A base model without a chat template: TGI answers the chat route 422 "Template
        # error: template not found"; its native route works.
        return HttpCall("/generate", {"inputs": "ping", "parameters": {"max_new_tokens": 4}})

    def smoke_answered(self, call: HttpCall, answer: Any) -> bool:
        if call.path == "/generate":
            return isinstance(answer, dict) and "generated_text" in answer
        return isinstance(answer, dict) and bool(answer.get("choices"))

    # --- failures (launcher/src/main.rs: the launcher exits 1 whatever the shard's error) ---

    def classify_failure(self, exit_code: int | None, log_tail: Sequence[str]) -> Failure | None:
        line = first_match(
            log_tail,
            "CUDA out of memory",
            "OutOfMemoryError",
            "out of memory",
            "Not enough memory to handle",
        )
        if line is not None:
            return Failure(
                f"TGI ran out of GPU memory while loading or warming up: {line}", REMEDY_OOM
            )
        # Offline, download-weights only reads the cache (server/text_generation_server/cli.py,
        # utils/hub.py): no safetensors, then no .bin either; the launcher ends DownloadError.
        line = first_match(
            log_tail, *MISSING_WEIGHTS_NEEDLES, "EntryNotFoundError", "Error: DownloadError"
        )
        if line is not None:
            return Failure(f"TGI found no cached weights: {line}", MISSING_WEIGHTS_REMEDY)
        line = first_match(log_tail, "error: invalid value", "error: unexpected argument")
        if line is not None or exit_code == 2:
            return Failure(
                f"TGI's launcher refused its arguments: {line or f'exit code {exit_code}'}",
                "a setting this TGI version does not accept: change the spec or the tier's image",
            )
        line = first_match(log_tail, "trust_remote_code", "is not supported")
        if line is not None:
            return Failure(
                f"TGI cannot load this model: {line}",
                "the model's architecture needs trust_remote_code or another engine",
            )
        return None


TGI_ENGINE = TGIEngine()

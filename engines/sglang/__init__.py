"""SGLang's server (``python3 -m sglang.launch_server``, image lmsysorg/sglang, v0.5)."""

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
from engines.sglang.metrics import SGLANG_METRICS

if TYPE_CHECKING:
    from deployments.rendering.specs import ServingSpec

# python/sglang/srt/server_args.py (QUANTIZATION_CHOICES, --kv-cache-dtype choices).
SGLANG_QUANTIZATION = QuantizationTable(
    on_the_fly={"fp8": 0.5},
    pre_quantized={
        "awq": ("awq", "awq_marlin"),
        "gptq": ("gptq", "gptq_marlin", "marlin"),
        "fp8": ("fp8",),
        "bitsandbytes": ("bitsandbytes",),
        # Detected from the checkpoint's config; there is no --quantization value for it.
        "compressed-tensors": (),
    },
    float16_only=frozenset({"awq", "gptq"}),
    dtypes=frozenset({"float16", "bfloat16"}),
    kv_cache_dtypes=frozenset({"fp8_e4m3", "fp8_e5m2"}),
)

REMEDY_OOM = (
    "lower max total tokens (--context-length) or max batch prefill tokens "
    "(--chunked-prefill-size), or quantize the model, or choose a tier with more GPU memory"
)

SGLANG_PROBES = Probes(startup="/health", readiness="/health_generate", liveness="/health")
SGLANG_MEMORY = MemoryModel(
    fraction_for_kv=1.0,
    runtime_overhead_bytes=1_000_000_000,
    explanation="SGLang gives weights and KV cache about 88% of the GPU (--mem-fraction-static)",
    reserved_fraction_of_total=0.12,
)


@dataclass(frozen=True)
class SGLangEngine:
    name: str = "sglang"
    label: str = "SGLang"
    default_image: str = "lmsysorg/sglang:v0.5.5"
    app_name: str = "sglang"
    container_name: str = "sglang"
    port: int = 30000
    health_path: str = "/health"
    # python/sglang/srt/entrypoints/http_server.py: /health_generate sends a one-token
    # generation through the scheduler (it returns at once when requests were answered
    # lately), so readiness proves the server can serve; /health for the rest.
    probes: Probes = SGLANG_PROBES
    metrics_path: str = "/metrics"
    queue_size_metric: str = "sglang:num_queue_reqs"
    graceful_shutdown_seconds: int = 30
    hub_cache_path: str = HUB_CACHE_PATH
    quantization: QuantizationTable = SGLANG_QUANTIZATION
    # --mem-fraction-static (~0.88 on 80 GB GPUs) is the share of the whole GPU for weights
    # and the KV pool; activations and CUDA graphs live in the rest.
    memory: MemoryModel = SGLANG_MEMORY
    metrics: EngineMetrics = SGLANG_METRICS

    def validate(self, spec: ServingSpec) -> None:
        table = self.quantization
        if spec.quantize is not None and spec.quantize not in table.all_values:
            allowed = ", ".join(sorted(table.all_values))
            raise SpecError("quantize", f"SGLang accepts {allowed} (got {spec.quantize!r})")
        if spec.dtype is not None and spec.dtype not in table.dtypes:
            raise SpecError("dtype", f"SGLang accepts float16 or bfloat16 (got {spec.dtype!r})")
        if spec.kv_cache_dtype is not None and spec.kv_cache_dtype not in table.kv_cache_dtypes:
            allowed = ", ".join(sorted(table.kv_cache_dtypes))
            raise SpecError(
                "kv_cache_dtype", f"SGLang accepts {allowed} (got {spec.kv_cache_dtype!r})"
            )

    def command(self) -> list[str] | None:
        return ["python3", "-m", "sglang.launch_server"]

    def args(self, spec: ServingSpec) -> list[str]:
        self.validate(spec)
        # Not --max-total-tokens: in SGLang that is the KV *pool* size, which SGLang sizes from
        # memory; the spec's max total tokens is the per-request context length.
        args = [
            "--model-path",
            spec.model.repo_id,
            "--revision",
            spec.model.commit_sha,
            "--context-length",
            str(spec.max_total_tokens),
            "--chunked-prefill-size",
            str(spec.max_batch_prefill_tokens),
            "--max-running-requests",
            str(spec.max_concurrent_requests),
            "--tp",
            str(spec.tier.gpus_per_replica),
        ]
        if spec.quantize is not None:
            args += ["--quantization", spec.quantize]
        if spec.dtype is not None:
            args += ["--dtype", spec.dtype]
        if spec.kv_cache_dtype is not None:
            args += ["--kv-cache-dtype", spec.kv_cache_dtype]
        args += [
            "--download-dir",
            self.hub_cache_path,
            "--enable-metrics",
            "--host",
            "0.0.0.0",
            "--port",
            str(self.port),
        ]
        if spec.model.trust_remote_code:
            args.append("--trust-remote-code")
        return args

    def env(self, spec: ServingSpec) -> list[dict[str, Any]]:
        return [
            *hf_token_env(spec.hf_token_secret_name),
            {"name": "HF_HUB_OFFLINE", "value": "1"},
            {"name": "HF_HOME", "value": self.hub_cache_path},
            {"name": "HF_HUB_CACHE", "value": self.hub_cache_path},
        ]

    def weights_download(self, spec: ServingSpec) -> list[DownloadStep]:
        # The image has huggingface_hub ≥ 0.34 (a dependency of the transformers it pins), whose
        # `hf download` writes the cache layout SGLang reads offline (--download-dir, HF_HUB_CACHE).
        return [hub_snapshot_step(spec, "hf", self.hub_cache_path)]

    # --- the gateway's token count ----------------------------------------------------------
    # python/sglang/srt/entrypoints/openai/serving_tokenize.py: /v1/tokenize takes a prompt
    # (text) only, there is no chat variant. Chat requests are therefore counted from the
    # answer's usage.prompt_tokens (exact, after the fact); before forwarding, the gateway
    # counts the messages' text as a lower bound (see gateway/app.py).

    def tokenize_text(self, prompt: str) -> HttpCall:
        return HttpCall("/v1/tokenize", {"prompt": prompt, "add_special_tokens": True})

    def tokenize_chat(self, body: Mapping[str, Any]) -> HttpCall | None:
        return None

    def token_count(self, call: HttpCall, answer: Any) -> int | None:
        if isinstance(answer, dict) and isinstance(answer.get("count"), int):
            return int(answer["count"])
        return None

    # --- the pre-promotion check ------------------------------------------------------------

    def info_checks(self, spec: ServingSpec) -> Sequence[InfoCheck]:
        return [
            InfoCheck("/get_model_info", {"model_path": spec.model.repo_id}),
            InfoCheck(
                "/get_server_info",
                {
                    "context_length": spec.max_total_tokens,
                    "chunked_prefill_size": spec.max_batch_prefill_tokens,
                },
            ),
        ]

    def smoke_request(self, spec: ServingSpec) -> HttpCall:
        if getattr(spec.model, "has_chat_template", True):
            return HttpCall(
                "/v1/chat/completions",
                {
                    "model": spec.model.repo_id,
                    "messages": [{"role": "user", "content": "ping"}],
                    "max_tokens": 4,
                },
            )
        return HttpCall("/generate", {"text": "ping", "sampling_params": {"max_new_tokens": 4}})

    def smoke_answered(self, call: HttpCall, answer: Any) -> bool:
        if call.path == "/generate":
            return isinstance(answer, dict) and "text" in answer
        return isinstance(answer, dict) and bool(answer.get("choices"))

    # --- failures ---------------------------------------------------------------------------
    # A failing scheduler process SIGQUITs the launcher, which kills its own process tree:
    # the container ends with 137 without being OOMKilled (python/sglang/srt/utils.py
    # kill_process_tree; entrypoints/engine.py sigquit_handler). Only the log tells why.

    def classify_failure(self, exit_code: int | None, log_tail: Sequence[str]) -> Failure | None:
        line = first_match(
            log_tail,
            "Not enough memory",
            "CUDA out of memory",
            "OutOfMemoryError",
        )
        if line is not None:
            return Failure(f"SGLang ran out of GPU memory while starting: {line}", REMEDY_OOM)
        line = first_match(log_tail, *MISSING_WEIGHTS_NEEDLES)
        if line is not None:
            return Failure(f"SGLang found no cached weights: {line}", MISSING_WEIGHTS_REMEDY)
        line = first_match(log_tail, "error: argument", "error: unrecognized arguments")
        if line is not None or exit_code == 2:
            return Failure(
                f"SGLang refused its arguments: {line or f'exit code {exit_code}'}",
                "a setting this SGLang version does not accept: change the spec or the tier's "
                "image",
            )
        line = first_match(log_tail, "User-specified context_length")
        if line is not None:
            return Failure(
                f"SGLang refused the context length: {line}",
                "lower max total tokens to at most the model's context length",
            )
        line = first_match(
            log_tail,
            "Scheduler hit an exception",
            "scheduler is dead",
            "Received sigquit from a child process",
        )
        if line is not None:
            return Failure(
                f"SGLang's scheduler failed: {line}",
                "read the pod's previous log above this line for the scheduler's exception",
            )
        return None


SGLANG_ENGINE = SGLangEngine()

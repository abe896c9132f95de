"""vLLM's OpenAI-compatible server (``vllm serve``, image vllm/vllm-openai, v0.11)."""

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
from engines.vllm.metrics import VLLM_METRICS

if TYPE_CHECKING:
    from deployments.rendering.specs import ServingSpec

# vllm/model_executor/layers/quantization/__init__.py (QuantizationMethods) and each method's
# get_supported_act_dtypes(); vllm/config/cache.py (CacheDType).
VLLM_QUANTIZATION = QuantizationTable(
    # fp8 quantizes 16-bit weights while loading; bitsandbytes in-flight is 4-bit (nf4).
    on_the_fly={"fp8": 0.5, "bitsandbytes": 0.25},
    pre_quantized={
        "awq": ("awq", "awq_marlin"),
        "gptq": ("gptq", "gptq_marlin"),
        "compressed-tensors": ("compressed-tensors",),
        "fp8": ("fp8",),
        "bitsandbytes": ("bitsandbytes",),
    },
    # AWQConfig / GPTQConfig support torch.half only; their Marlin kernels take bfloat16 too.
    float16_only=frozenset({"awq", "gptq"}),
    dtypes=frozenset({"float16", "bfloat16"}),
    kv_cache_dtypes=frozenset({"fp8", "fp8_e4m3", "fp8_e5m2"}),
)

REMEDY_OOM = (
    "lower max total tokens (--max-model-len) or max batch prefill tokens, or quantize the model "
    "(fp8, or an AWQ/GPTQ checkpoint), or choose a tier with more GPU memory"
)

VLLM_PROBES = Probes(startup="/health", readiness="/v1/models", liveness="/health")
VLLM_MEMORY = MemoryModel(
    fraction_for_kv=1.0,
    runtime_overhead_bytes=2_000_000_000,
    explanation="vLLM uses at most 90% of the GPU (--gpu-memory-utilization 0.9)",
    reserved_fraction_of_total=0.10,
)


@dataclass(frozen=True)
class VLLMEngine:
    name: str = "vllm"
    label: str = "vLLM"
    default_image: str = "vllm/vllm-openai:v0.11.0"
    app_name: str = "vllm"
    container_name: str = "vllm"
    port: int = 8000
    health_path: str = "/health"
    # vllm/entrypoints/openai/api_server.py: the port binds once the engine is built, and
    # /health only asks the engine client whether its process is alive (vllm#36960: still 200
    # after some GPU faults). /v1/models goes through the API server to the loaded model's
    # config; the pre-promotion check then runs a real completion.
    probes: Probes = VLLM_PROBES
    metrics_path: str = "/metrics"
    queue_size_metric: str = "vllm:num_requests_waiting"
    # SIGTERM: uvicorn stops accepting and drains in-flight requests (no configurable timeout).
    graceful_shutdown_seconds: int = 30
    hub_cache_path: str = HUB_CACHE_PATH
    quantization: QuantizationTable = VLLM_QUANTIZATION
    # --gpu-memory-utilization 0.9 is a share of the *whole* GPU for weights, activations and
    # KV cache (vllm/worker/gpu_worker.py determine_available_memory); CUDA graphs on top.
    memory: MemoryModel = VLLM_MEMORY
    metrics: EngineMetrics = VLLM_METRICS

    def validate(self, spec: ServingSpec) -> None:
        table = self.quantization
        if spec.quantize is not None and spec.quantize not in table.all_values:
            allowed = ", ".join(sorted(table.all_values))
            raise SpecError("quantize", f"vLLM accepts {allowed} (got {spec.quantize!r})")
        if spec.dtype is not None and spec.dtype not in table.dtypes:
            raise SpecError("dtype", f"vLLM accepts float16 or bfloat16 (got {spec.dtype!r})")
        if spec.kv_cache_dtype is not None and spec.kv_cache_dtype not in table.kv_cache_dtypes:
            allowed = ", ".join(sorted(table.kv_cache_dtypes))
            raise SpecError(
                "kv_cache_dtype", f"vLLM accepts {allowed} (got {spec.kv_cache_dtype!r})"
            )
        if spec.quantize in table.float16_only and spec.dtype == "bfloat16":
            raise SpecError("dtype", f"vLLM runs {spec.quantize} in float16 only")

    def command(self) -> list[str] | None:
        return None  # the image's entrypoint is `vllm serve`; args start with the model

    def args(self, spec: ServingSpec) -> list[str]:
        self.validate(spec)
        # vLLM has no separate input limit: --max-model-len bounds prompt + output; the
        # gateway enforces max input tokens.
        args = [
            spec.model.repo_id,
            "--revision",
            spec.model.commit_sha,
            "--max-model-len",
            str(spec.max_total_tokens),
            "--max-num-batched-tokens",
            str(spec.max_batch_prefill_tokens),
            "--max-num-seqs",
            str(spec.max_concurrent_requests),
            "--tensor-parallel-size",
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
            # Config and tokenizer are read through transformers' cache, not --download-dir.
            {"name": "HF_HUB_CACHE", "value": self.hub_cache_path},
            # vllm/usage/usage_lib.py otherwise reports usage statistics.
            {"name": "VLLM_NO_USAGE_STATS", "value": "1"},
            {"name": "DO_NOT_TRACK", "value": "1"},
        ]

    def weights_download(self, spec: ServingSpec) -> list[DownloadStep]:
        # The image has huggingface_hub ≥ 0.34 (a dependency of the transformers it pins), whose
        # `hf download` writes the cache layout vLLM reads offline (--download-dir, HF_HUB_CACHE).
        return [hub_snapshot_step(spec, "hf", self.hub_cache_path)]

    # --- the gateway's token count (vllm/entrypoints/openai/serving_tokenization.py) --------

    def tokenize_text(self, prompt: str) -> HttpCall:
        return HttpCall("/tokenize", {"prompt": prompt})

    def tokenize_chat(self, body: Mapping[str, Any]) -> HttpCall | None:
        request: dict[str, Any] = {"messages": body.get("messages"), "add_generation_prompt": True}
        if body.get("tools"):
            request["tools"] = body["tools"]
        return HttpCall("/tokenize", request)

    def token_count(self, call: HttpCall, answer: Any) -> int | None:
        # {"count": n, "max_model_len": m, "tokens": [...]}
        if isinstance(answer, dict) and isinstance(answer.get("count"), int):
            return int(answer["count"])
        return None

    # --- the pre-promotion check ------------------------------------------------------------

    def info_checks(self, spec: ServingSpec) -> Sequence[InfoCheck]:
        return [
            # The served model name defaults to the model argument.
            InfoCheck(
                "/v1/models",
                {"data.0.id": spec.model.repo_id, "data.0.max_model_len": spec.max_total_tokens},
            ),
            InfoCheck("/version"),
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
        # Without a chat template vLLM refuses the chat route (400); completions work.
        return HttpCall(
            "/v1/completions", {"model": spec.model.repo_id, "prompt": "ping", "max_tokens": 4}
        )

    def smoke_answered(self, call: HttpCall, answer: Any) -> bool:
        return isinstance(answer, dict) and bool(answer.get("choices"))

    # --- failures: the API server exits 1 when the engine core fails to start; argparse 2 ----

    def classify_failure(self, exit_code: int | None, log_tail: Sequence[str]) -> Failure | None:
        line = first_match(
            log_tail,
            "CUDA out of memory",
            "OutOfMemoryError",
            "No available memory for the cache blocks",
            "larger than the available KV cache memory",
        )
        if line is not None:
            return Failure(f"vLLM ran out of GPU memory while starting: {line}", REMEDY_OOM)
        line = first_match(log_tail, *MISSING_WEIGHTS_NEEDLES)
        if line is not None:
            return Failure(f"vLLM found no cached weights: {line}", MISSING_WEIGHTS_REMEDY)
        line = first_match(log_tail, "error: argument", "error: unrecognized arguments")
        if line is not None or exit_code == 2:
            return Failure(
                f"vLLM refused its arguments: {line or f'exit code {exit_code}'}",
                "a setting this vLLM version does not accept: change the spec or the tier's image",
            )
        line = first_match(log_tail, "User-specified max_model_len")
        if line is not None:
            return Failure(
                f"vLLM refused the context length: {line}",
                "lower max total tokens to at most the model's context length",
            )
        line = first_match(log_tail, "pydantic_core._pydantic_core.ValidationError", "ValueError:")
        if line is not None:
            return Failure(
                f"vLLM refused the configuration: {line}",
                "read the message: a token limit beyond the model's context, or a quantization "
                "the checkpoint does not support",
            )
        return None


VLLM_ENGINE = VLLMEngine()

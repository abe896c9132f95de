"""Will a model fit a GPU tier? Memory per GPU for weights, KV cache and runtime (pure).

weights  = Σ parameters(dtype) × bytes(dtype) as served (16-bit for plain checkpoints,
           scaled for on-the-fly quantization, as stored for pre-quantized ones) / shards
kv/token = 2 × layers × ceil(kv_heads / shards) × head_dim × bytes(kv dtype)   (per GPU)
kv       = kv/token × max_total_tokens × concurrent sequences
usable   = (gpu_memory × (1 − engine reserve) − weights − engine overhead) × engine KV share
fits     ⇔ kv ≤ usable

The engine decides which quantizations a checkpoint allows and its memory numbers
(``engines/<name>``: ``quantization`` and ``memory``): TGI keeps 10 % of what is left after
weights (TGI_WIGGLE_ROOM), vLLM and SGLang use a fixed share of the whole GPU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from engines import DEFAULT_ENGINE, InferenceEngine, get_engine
from models_registry.constants import DTYPE_BYTES

GB = 1_000_000_000
KIB = 1024


@dataclass(frozen=True)
class ModelShape:
    """The numbers of a model revision that memory depends on."""

    parameters_by_dtype: dict[str, int]
    num_hidden_layers: int
    num_key_value_heads: int
    head_dim: int
    context_length: int | None
    quantization_method: str = ""

    @classmethod
    def of(cls, revision: Any) -> ModelShape:
        missing = [
            name
            for name in ("num_hidden_layers", "num_key_value_heads", "head_dim")
            if not getattr(revision, name)
        ]
        if missing or not revision.parameters_by_dtype:
            what = ", ".join(
                missing + ([] if revision.parameters_by_dtype else ["parameter counts"])
            )
            raise ValueError(f"the model's config does not give {what}; memory cannot be estimated")
        return cls(
            parameters_by_dtype=dict(revision.parameters_by_dtype),
            num_hidden_layers=revision.num_hidden_layers,
            num_key_value_heads=revision.num_key_value_heads,
            head_dim=revision.head_dim,
            context_length=revision.context_length,
            quantization_method=revision.quantization_method,
        )


@dataclass(frozen=True)
class ServingChoice:
    """How the model would be served: the knobs that change memory."""

    quantize: str | None = None
    dtype: str | None = None
    kv_cache_dtype: str | None = None
    num_shard: int = 1
    max_total_tokens: int = 4096
    concurrent_sequences: int = 8
    engine: str = DEFAULT_ENGINE

    @property
    def serving_engine(self) -> InferenceEngine:
        return get_engine(self.engine)


@dataclass(frozen=True)
class TierCapacity:
    slug: str
    name: str
    gpu_memory_gb: Decimal
    gpus_per_replica: int
    price_per_gpu_hour: Decimal = Decimal("0")


@dataclass(frozen=True)
class Estimate:
    """Memory of one GPU of one replica, in bytes, with the reasoning spelled out."""

    weights_bytes_total: int
    weights_bytes_per_gpu: int
    kv_bytes_per_token_total: int
    kv_bytes_per_token_per_gpu: int
    kv_bytes_per_gpu: int
    runtime_overhead_bytes: int
    required_bytes_per_gpu: int
    explanation: list[str]


@dataclass(frozen=True)
class TierFit:
    tier: TierCapacity
    estimate: Estimate | None
    fits: bool
    reason: str
    max_concurrent_sequences: int
    headroom_bytes: int


def valid_quantizations(quantization_method: str, engine: str = DEFAULT_ENGINE) -> list[str | None]:
    """Quantize options the engine accepts for this checkpoint (None: as the checkpoint is)."""
    return get_engine(engine).quantization.valid_for(quantization_method)


def quantization_problem(shape: ModelShape, choice: ServingChoice) -> str:
    """Why the engine would refuse this combination, or ""."""
    engine = choice.serving_engine
    table = engine.quantization
    allowed = table.valid_for(shape.quantization_method)
    method = shape.quantization_method
    if method and method not in table.pre_quantized:
        return f"{engine.label} cannot serve {method}-quantized checkpoints"
    if choice.quantize not in allowed:
        if method:
            return (
                f"the checkpoint is {shape.quantization_method}-quantized; quantize must be "
                "one of: " + ", ".join(q or "none (as stored)" for q in allowed)
            )
        return (
            f"'{choice.quantize}' needs a checkpoint quantized that way; this one is not "
            f"({engine.label} quantizes on the fly: " + ", ".join(table.on_the_fly) + ")"
        )
    effective = choice.quantize or shape.quantization_method
    if effective in table.no_tensor_parallel and choice.num_shard > 1:
        return f"{effective} checkpoints cannot be sharded across GPUs (num_shard must be 1)"
    if effective in table.float16_only and choice.dtype == "bfloat16":
        return f"{effective} runs in float16 only; dtype bfloat16 is not possible"
    return ""


def _weights_bytes(shape: ModelShape, choice: ServingChoice) -> tuple[int, str]:
    params = shape.parameters_by_dtype
    if shape.quantization_method:
        stored = sum(count * DTYPE_BYTES.get(dtype, 2) for dtype, count in params.items())
        return int(stored), f"{shape.quantization_method} checkpoint as stored: " + ", ".join(
            f"{count:,} {dtype} × {DTYPE_BYTES.get(dtype, 2):g} B"
            for dtype, count in params.items()
        )
    # Plain checkpoints load in 16-bit (float32 checkpoints are halved); 8-bit ones stay 8-bit.
    sixteen_bit = sum(count * min(DTYPE_BYTES.get(dtype, 2), 2) for dtype, count in params.items())
    total = sum(params.values())
    on_the_fly = choice.serving_engine.quantization.on_the_fly
    if choice.quantize is not None and choice.quantize in on_the_fly:
        factor = on_the_fly[choice.quantize]
        return int(sixteen_bit * factor), (
            f"{total:,} parameters × 2 B (16-bit) × {factor:g} for {choice.quantize}"
        )
    return int(
        sixteen_bit
    ), f"{total:,} parameters × 2 B ({choice.dtype or 'checkpoint 16-bit dtype'})"


def estimate(shape: ModelShape, choice: ServingChoice) -> Estimate:
    shards = max(1, choice.num_shard)
    weights_total, weights_why = _weights_bytes(shape, choice)
    weights_per_gpu = math.ceil(weights_total / shards)
    kv_bytes = 1 if (choice.kv_cache_dtype or "").startswith("fp8") else 2
    kv_heads_per_gpu = max(1, math.ceil(shape.num_key_value_heads / shards))
    per_token_total = (
        2 * shape.num_hidden_layers * shape.num_key_value_heads * shape.head_dim * kv_bytes
    )
    per_token_gpu = 2 * shape.num_hidden_layers * kv_heads_per_gpu * shape.head_dim * kv_bytes
    kv_per_gpu = per_token_gpu * choice.max_total_tokens * choice.concurrent_sequences
    memory = choice.serving_engine.memory
    required = weights_per_gpu + kv_per_gpu + memory.runtime_overhead_bytes
    explanation = [
        f"Weights: {weights_why} = {weights_total / GB:.2f} GB"
        + (f", {weights_per_gpu / GB:.2f} GB per GPU across {shards} shards" if shards > 1 else ""),
        f"KV cache per token: 2 × {shape.num_hidden_layers} layers × "
        f"{shape.num_key_value_heads} KV heads × {shape.head_dim} head dim × {kv_bytes} B = "
        f"{per_token_total / KIB:g} KiB"
        + (
            f" ({kv_heads_per_gpu} KV heads per GPU → {per_token_gpu / KIB:g} KiB per GPU)"
            if shards > 1
            else ""
        ),
        f"KV cache for {choice.concurrent_sequences} sequences × "
        f"{choice.max_total_tokens:,} tokens: {kv_per_gpu / GB:.2f} GB per GPU",
        f"Runtime overhead (CUDA context, activations): "
        f"{memory.runtime_overhead_bytes / GB:.1f} GB per GPU; {memory.explanation}",
    ]
    return Estimate(
        weights_bytes_total=weights_total,
        weights_bytes_per_gpu=weights_per_gpu,
        kv_bytes_per_token_total=per_token_total,
        kv_bytes_per_token_per_gpu=per_token_gpu,
        kv_bytes_per_gpu=kv_per_gpu,
        runtime_overhead_bytes=memory.runtime_overhead_bytes,
        required_bytes_per_gpu=required,
        explanation=explanation,
    )


def fit_tier(shape: ModelShape, choice: ServingChoice, tier: TierCapacity) -> TierFit:
    """Whether the model fits a replica of this tier (sharded over all of the tier's GPUs)."""
    on_tier = ServingChoice(
        quantize=choice.quantize,
        dtype=choice.dtype,
        kv_cache_dtype=choice.kv_cache_dtype,
        num_shard=tier.gpus_per_replica,
        max_total_tokens=choice.max_total_tokens,
        concurrent_sequences=choice.concurrent_sequences,
        engine=choice.engine,
    )
    problem = quantization_problem(shape, on_tier)
    if problem:
        return TierFit(tier, None, False, problem, 0, 0)
    result = estimate(shape, on_tier)
    memory = choice.serving_engine.memory
    gpu_bytes = int(tier.gpu_memory_gb * GB * Decimal(str(1 - memory.reserved_fraction_of_total)))
    after_weights = gpu_bytes - result.weights_bytes_per_gpu - result.runtime_overhead_bytes
    usable_for_kv = max(0, int(after_weights * memory.fraction_for_kv))
    per_sequence = result.kv_bytes_per_token_per_gpu * choice.max_total_tokens
    max_sequences = usable_for_kv // per_sequence if per_sequence else 0
    headroom = usable_for_kv - result.kv_bytes_per_gpu
    if after_weights <= 0:
        reason = (
            f"weights alone need {result.weights_bytes_per_gpu / GB:.1f} GB per GPU "
            f"(+{result.runtime_overhead_bytes / GB:.1f} GB runtime) of {tier.gpu_memory_gb} GB"
        )
        return TierFit(tier, result, False, reason, 0, headroom)
    if headroom < 0:
        reason = (
            f"KV cache needs {result.kv_bytes_per_gpu / GB:.1f} GB per GPU but only "
            f"{usable_for_kv / GB:.1f} GB is left after weights: at most {max_sequences} "
            f"sequences of {choice.max_total_tokens:,} tokens"
        )
        return TierFit(tier, result, False, reason, int(max_sequences), headroom)
    reason = (
        f"fits with {headroom / GB:.1f} GB spare per GPU; up to {max_sequences} sequences of "
        f"{choice.max_total_tokens:,} tokens"
    )
    return TierFit(tier, result, True, reason, int(max_sequences), headroom)


def fit_table(
    shape: ModelShape, choice: ServingChoice, tiers: list[TierCapacity]
) -> tuple[list[TierFit], TierFit | None]:
    """Every tier's fit and the recommendation: the smallest tier (total GPU memory) that fits."""
    rows = [fit_tier(shape, choice, tier) for tier in tiers]
    fitting = [row for row in rows if row.fits]
    best = min(
        fitting,
        key=lambda row: (
            row.tier.gpu_memory_gb * row.tier.gpus_per_replica,
            row.tier.price_per_gpu_hour * row.tier.gpus_per_replica,
        ),
        default=None,
    )
    return rows, best

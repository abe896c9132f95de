"""Fit figures for the local Hub's fixtures match numbers computed by hand."""

from __future__ import annotations

from decimal import Decimal

import pytest

from models_registry.fit import (
    ModelShape,
    ServingChoice,
    TierCapacity,
    estimate,
    fit_table,
    fit_tier,
    quantization_problem,
    valid_quantizations,
)

LLAMA_8B = ModelShape(
    parameters_by_dtype={"BF16": 8_030_261_248},
    num_hidden_layers=32,
    num_key_value_heads=8,
    head_dim=128,
    context_length=131072,
)
LLAMA_70B = ModelShape(
    parameters_by_dtype={"BF16": 70_553_706_496},
    num_hidden_layers=80,
    num_key_value_heads=8,
    head_dim=128,
    context_length=131072,
)
LLAMA_8B_AWQ = ModelShape(
    parameters_by_dtype={"I32": 879_230_976, "F16": 1_105_465_344},
    num_hidden_layers=32,
    num_key_value_heads=8,
    head_dim=128,
    context_length=131072,
    quantization_method="awq",
)
TIERS = [
    TierCapacity("l4", "L4", Decimal("24"), 1, Decimal("0.8")),
    TierCapacity("a100-80g", "A100", Decimal("80"), 1, Decimal("3.4")),
    TierCapacity("a100-80g-x2", "2xA100", Decimal("80"), 2, Decimal("3.4")),
    TierCapacity("h100-80g-x4", "4xH100", Decimal("80"), 4, Decimal("6.5")),
]


def test_llama_8b_bf16_weights_and_kv_cache_per_token() -> None:
    result = estimate(LLAMA_8B, ServingChoice(max_total_tokens=4096, concurrent_sequences=8))
    # 8,030,261,248 parameters × 2 bytes
    assert result.weights_bytes_total == 16_060_522_496
    assert round(result.weights_bytes_total / 1e9, 2) == 16.06
    # 2 × 32 layers × 8 KV heads × 128 × 2 bytes = 131,072 B = 128 KiB
    assert result.kv_bytes_per_token_total == 128 * 1024
    assert result.kv_bytes_per_gpu == 131_072 * 4096 * 8
    assert "16.06 GB" in result.explanation[0]
    assert "= 128 KiB" in result.explanation[1]


def test_sharding_splits_weights_and_kv_heads() -> None:
    result = estimate(
        LLAMA_70B, ServingChoice(num_shard=4, max_total_tokens=8192, concurrent_sequences=4)
    )
    assert result.weights_bytes_total == 141_107_412_992
    assert result.weights_bytes_per_gpu == 141_107_412_992 // 4
    # 8 KV heads over 4 shards = 2 per GPU: 2 × 80 × 2 × 128 × 2 = 81,920 B per token per GPU
    assert result.kv_bytes_per_token_per_gpu == 81_920
    assert result.kv_bytes_per_gpu == 81_920 * 8192 * 4


def test_kv_heads_are_replicated_when_fewer_than_shards() -> None:
    shape = ModelShape(
        {"BF16": 10**9},
        num_hidden_layers=10,
        num_key_value_heads=2,
        head_dim=64,
        context_length=None,
    )
    result = estimate(shape, ServingChoice(num_shard=4))
    assert result.kv_bytes_per_token_per_gpu == 2 * 10 * 1 * 64 * 2


@pytest.mark.parametrize(
    ("quantize", "weights"),
    [
        ("bitsandbytes", 8_030_261_248),
        ("bitsandbytes-nf4", 4_015_130_624),
        ("eetq", 8_030_261_248),
        ("fp8", 8_030_261_248),
    ],
)
def test_on_the_fly_quantization_shrinks_16_bit_weights(quantize: str, weights: int) -> None:
    assert estimate(LLAMA_8B, ServingChoice(quantize=quantize)).weights_bytes_total == weights


def test_awq_checkpoint_counts_stored_elements() -> None:
    # 879,230,976 × 4 B (packed I32) + 1,105,465,344 × 2 B (F16)
    result = estimate(LLAMA_8B_AWQ, ServingChoice(quantize="awq"))
    assert result.weights_bytes_total == 879_230_976 * 4 + 1_105_465_344 * 2


def test_fp8_kv_cache_halves_kv_memory() -> None:
    result = estimate(LLAMA_8B, ServingChoice(kv_cache_dtype="fp8_e4m3fn"))
    assert result.kv_bytes_per_token_total == 64 * 1024


def test_only_valid_quantizations_are_offered() -> None:
    assert valid_quantizations("") == [
        None,
        "bitsandbytes",
        "bitsandbytes-nf4",
        "bitsandbytes-fp4",
        "eetq",
        "fp8",
    ]
    assert valid_quantizations("awq") == [None, "awq"]
    assert valid_quantizations("gptq") == [None, "gptq", "marlin"]
    assert "needs a checkpoint quantized that way" in quantization_problem(
        LLAMA_8B, ServingChoice(quantize="awq")
    )
    assert "must be one of" in quantization_problem(
        LLAMA_8B_AWQ, ServingChoice(quantize="bitsandbytes")
    )
    assert "float16 only" in quantization_problem(
        LLAMA_8B_AWQ, ServingChoice(quantize="awq", dtype="bfloat16")
    )
    exl2 = ModelShape({"I16": 1}, 1, 1, 1, None, quantization_method="exl2")
    assert "cannot be sharded" in quantization_problem(exl2, ServingChoice(num_shard=2))


def test_recommends_the_smallest_tier_that_fits() -> None:
    rows, best = fit_table(
        LLAMA_8B, ServingChoice(max_total_tokens=4096, concurrent_sequences=8), TIERS
    )
    by_tier = {row.tier.slug: row for row in rows}
    # L4: 24 GB − 16.06 weights − 1.5 runtime = 6.44 GB × 0.9 = 5.80 GB for KV;
    # 8 sequences × 4096 tokens × 128 KiB = 4.29 GB
    assert by_tier["l4"].fits
    assert by_tier["l4"].max_concurrent_sequences == int(
        ((24e9 - 16_060_522_496 - 1.5e9) * 0.9) // (131_072 * 4096)
    )
    assert best is not None and best.tier.slug == "l4"


def test_70b_needs_several_large_gpus() -> None:
    rows, best = fit_table(
        LLAMA_70B, ServingChoice(max_total_tokens=4096, concurrent_sequences=8), TIERS
    )
    by_tier = {row.tier.slug: row for row in rows}
    assert not by_tier["l4"].fits and "weights alone need 141.1 GB" in by_tier["l4"].reason
    assert not by_tier["a100-80g"].fits
    # 2 shards: 70.55 GB weights + 1.5 GB per GPU leaves (80 − 72.05) × 0.9 = 7.15 GB for KV;
    # 4 KV heads per GPU → 160 KiB/token; 8 × 4096 tokens → 5.37 GB: fits.
    assert by_tier["a100-80g-x2"].fits
    assert best is not None and best.tier.slug == "a100-80g-x2"


def test_70b_with_longer_sequences_moves_to_the_next_tier() -> None:
    rows, best = fit_table(
        LLAMA_70B, ServingChoice(max_total_tokens=8192, concurrent_sequences=8), TIERS
    )
    by_tier = {row.tier.slug: row for row in rows}
    # 8 × 8192 tokens × 160 KiB = 10.7 GB > 7.15 GB: 2 GPUs hold only 5 such sequences.
    assert not by_tier["a100-80g-x2"].fits
    assert by_tier["a100-80g-x2"].max_concurrent_sequences == 5
    assert best is not None and best.tier.slug == "h100-80g-x4"


def test_long_contexts_run_out_of_kv_cache_with_the_reason() -> None:
    row = fit_tier(
        LLAMA_8B, ServingChoice(max_total_tokens=131072, concurrent_sequences=4), TIERS[0]
    )
    assert not row.fits
    assert "KV cache needs" in row.reason and "at most 0 sequences" in row.reason


def test_gb_filter_uses_decimal_gigabytes() -> None:
    from portal.templatetags.portal_format import gb

    assert gb(16_060_522_496) == "16.06 GB"
    assert gb(137_438_953_472, 1) == "137.4 GB"
    assert gb(None) == ""

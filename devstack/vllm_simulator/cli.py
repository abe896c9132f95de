"""``vllm serve`` arguments (vllm/engine/arg_utils.py EngineArgs.add_cli_args and
vllm/entrypoints/openai/cli_args.py make_arg_parser), refused the way argparse refuses them:
usage plus ``vllm serve: error: ...`` on stderr, exit code 2.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence

# vllm/model_executor/layers/quantization/__init__.py QuantizationMethods (v0.11).
QUANTIZATION_METHODS = (
    "awq",
    "deepspeedfp",
    "tpu_int8",
    "fp8",
    "ptpc_fp8",
    "fbgemm_fp8",
    "modelopt",
    "modelopt_fp4",
    "bitblas",
    "gguf",
    "gptq_marlin_24",
    "gptq_marlin",
    "gptq_bitblas",
    "awq_marlin",
    "gptq",
    "compressed-tensors",
    "bitsandbytes",
    "hqq",
    "experts_int8",
    "ipex",
    "quark",
    "moe_wna16",
    "torchao",
    "auto-round",
    "rtn",
    "inc",
    "mxfp4",
    "petit_nvfp4",
)
DTYPES = ("auto", "half", "float16", "bfloat16", "float", "float32")  # vllm/config/model.py
KV_CACHE_DTYPES = ("auto", "fp8", "fp8_e4m3", "fp8_e5m2", "fp8_inc")  # vllm/config/cache.py


def human_readable_int(value: str) -> int:
    """arg_utils.py human_readable_int: ``32k`` = 32000, ``32K`` = 32768, ``1m`` = 10**6."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)([kKmMgG])", value.strip())
    if not m:
        return int(value)
    number, suffix = m.groups()
    decimal = {"k": 10**3, "m": 10**6, "g": 10**9}
    binary = {"K": 2**10, "M": 2**20, "G": 2**30}
    if suffix in decimal:
        return int(float(number) * decimal[suffix])
    if "." in number:
        raise argparse.ArgumentTypeError(f"Decimals are not allowed with binary suffixes: {value}")
    return int(number) * binary[suffix]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="vllm serve",
        usage="vllm serve [model_tag] [options]",
        description=(
            "Launch a local OpenAI-compatible API server to serve LLM completions via HTTP."
        ),
    )
    p.add_argument(
        "model_tag", nargs="?", help="The model tag to serve (optional if specified in config)"
    )
    p.add_argument("--model", default=None)
    p.add_argument("--host", default=None)
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--served-model-name", nargs="+", default=None)
    p.add_argument("--api-key", default=None)
    p.add_argument("--revision", default=None)
    p.add_argument("--code-revision", default=None)
    p.add_argument("--tokenizer", default=None)
    p.add_argument("--tokenizer-revision", default=None)
    p.add_argument("--download-dir", default=None)
    p.add_argument("--load-format", default="auto")
    p.add_argument("--trust-remote-code", action=argparse.BooleanOptionalAction, default=False)
    p.add_argument("--dtype", choices=DTYPES, default="auto")
    p.add_argument("--kv-cache-dtype", choices=KV_CACHE_DTYPES, default="auto")
    p.add_argument("--max-model-len", type=human_readable_int, default=None)
    p.add_argument("--max-num-batched-tokens", type=human_readable_int, default=None)
    p.add_argument("--max-num-seqs", type=int, default=None)
    p.add_argument("--quantization", "-q", choices=QUANTIZATION_METHODS, default=None)
    p.add_argument("--tensor-parallel-size", "-tp", type=int, default=1)
    p.add_argument("--pipeline-parallel-size", "-pp", type=int, default=1)
    p.add_argument("--data-parallel-size", "-dp", type=int, default=1)
    p.add_argument("--gpu-memory-utilization", type=float, default=0.9)
    p.add_argument("--block-size", type=int, choices=(1, 8, 16, 32, 64, 128), default=None)
    p.add_argument("--swap-space", type=float, default=4)
    p.add_argument("--enable-chunked-prefill", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--enable-prefix-caching", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--enforce-eager", action=argparse.BooleanOptionalAction, default=False)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--max-logprobs", type=int, default=20)
    p.add_argument("--chat-template", default=None)
    p.add_argument("--generation-config", default="auto")
    p.add_argument("--disable-log-stats", action="store_true")
    p.add_argument("--enable-log-requests", action=argparse.BooleanOptionalAction, default=False)
    p.add_argument("--disable-log-requests", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--disable-fastapi-docs", action="store_true")
    p.add_argument("--uvicorn-log-level", default="info")
    p.add_argument("--show-hidden-metrics-for-version", default=None)
    p.add_argument("--max-seq-len-to-capture", type=int, default=None)
    p.add_argument("--hf-overrides", default=None)
    return p


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """Parse like vllm/entrypoints/cli/serve.py: the positional tag wins over --model."""
    args = build_parser().parse_args(list(argv))
    args.model = args.model_tag or args.model or "Qwen/Qwen3-0.6B"
    return args


def non_default_args(args: argparse.Namespace) -> dict[str, object]:
    """What vLLM logs as ``non-default args: {...}`` (arg_utils.py get_non_default_args)."""
    defaults = vars(build_parser().parse_args([]))
    out: dict[str, object] = {}
    for key, value in vars(args).items():
        if key == "model_tag" or key not in defaults:
            continue
        if value != defaults[key]:
            out[key] = value
    return out

"""``python -m sglang.launch_server`` arguments (sglang/srt/server_args.py ServerArgs.add_cli_args),
refused by argparse: usage plus ``launch_server.py: error: ...`` on stderr, exit 2."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

# sglang/srt/server_args.py QUANTIZATION_CHOICES (v0.5).
QUANTIZATION_CHOICES = (
    "awq",
    "fp8",
    "gptq",
    "marlin",
    "gptq_marlin",
    "awq_marlin",
    "bitsandbytes",
    "gguf",
    "modelopt",
    "modelopt_fp8",
    "modelopt_fp4",
    "petit_nvfp4",
    "w8a8_int8",
    "w8a8_fp8",
    "moe_wna16",
    "qoq",
    "w4afp8",
    "mxfp4",
    "compressed-tensors",
    "auto-round",
)
DTYPES = ("auto", "half", "float16", "bfloat16", "float", "float32")
KV_CACHE_DTYPES = ("auto", "fp8_e5m2", "fp8_e4m3", "bf16", "bfloat16")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="launch_server.py")
    p.add_argument("--model-path", "--model", dest="model_path", required=True)
    p.add_argument("--tokenizer-path", default=None)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=30000)
    p.add_argument("--revision", default=None)
    p.add_argument("--download-dir", default=None)
    p.add_argument("--load-format", default="auto")
    p.add_argument("--trust-remote-code", action="store_true")
    p.add_argument("--dtype", choices=DTYPES, default="auto")
    p.add_argument("--kv-cache-dtype", choices=KV_CACHE_DTYPES, default="auto")
    p.add_argument("--quantization", choices=QUANTIZATION_CHOICES, default=None)
    p.add_argument("--context-length", type=int, default=None)
    p.add_argument("--served-model-name", default=None)
    p.add_argument("--chat-template", default=None)
    p.add_argument("--mem-fraction-static", type=float, default=None)
    p.add_argument("--max-running-requests", type=int, default=None)
    p.add_argument("--max-queued-requests", type=int, default=None)
    p.add_argument("--max-total-tokens", type=int, default=None)
    p.add_argument("--chunked-prefill-size", type=int, default=None)
    p.add_argument("--max-prefill-tokens", type=int, default=16384)
    p.add_argument("--schedule-policy", default="fcfs")
    p.add_argument(
        "--tensor-parallel-size", "--tp-size", "--tp", dest="tp_size", type=int, default=1
    )
    p.add_argument("--data-parallel-size", "--dp-size", dest="dp_size", type=int, default=1)
    p.add_argument("--random-seed", type=int, default=None)
    p.add_argument("--log-level", default="info")
    p.add_argument("--log-requests", action="store_true")
    p.add_argument("--enable-metrics", action="store_true")
    p.add_argument("--collect-tokens-histogram", action="store_true")
    p.add_argument("--api-key", default=None)
    p.add_argument("--skip-server-warmup", action="store_true")
    p.add_argument("--disable-cuda-graph", action="store_true")
    p.add_argument("--cuda-graph-max-bs", type=int, default=None)
    p.add_argument("--disable-radix-cache", action="store_true")
    p.add_argument("--enable-torch-compile", action="store_true")
    p.add_argument("--attention-backend", default=None)
    p.add_argument("--stream-interval", type=int, default=1)
    p.add_argument("--enable-cache-report", action="store_true")
    return p


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    return build_parser().parse_args(list(argv))

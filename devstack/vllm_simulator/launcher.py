"""``vllm serve`` start-up, as vllm/entrypoints/openai/api_server.py run_server orders it: parse
and check the arguments, build the engine (EngineCore: load weights, profile memory, allocate
the KV cache, capture CUDA graphs), and only then bind the port. A failure on the way is logged
with vLLM's text and the process exits 1 (the kubelet shows Error/CrashLoopBackOff; the cause is
only in the log).

Simulation knobs (env): SIM_STARTUP_SECONDS (default 1.0), SIM_TOKENS_PER_SECOND (per sequence,
default 200; 0 = instant), SIM_PREFILL_TOKENS_PER_SECOND (default 20000), SIM_OUTPUT_TOKENS (the
answer's length before EOS, default 128; 0 = never stops), SIM_GPU_MEMORY_GIB (per GPU, default
80), SIM_FAULTS (devstack/tgi_simulator/faults.py keys).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from devstack.tgi_simulator.faults import FAULTS_ENV, Faults, parse_faults

from . import cli
from .weights import (
    ModelConfig,
    WeightsError,
    find_snapshot,
    hub_cache_dir,
    load_tokenizer,
    weights_bytes,
)

VERSION = "0.11.0"
GIB = 1024**3
BLOCK_SIZE = 16
OOM_TEXT = (
    "CUDA out of memory. Tried to allocate 1.96 GiB. GPU 0 has a total capacity of 79.19 GiB of "
    "which 1.02 GiB is free. Including non-PyTorch memory, this process has 78.16 GiB memory in "
    "use. Of the allocated memory 76.85 GiB is allocated by PyTorch, and 512.40 MiB is reserved "
    "by PyTorch but unallocated."
)


class StartupError(Exception):
    """A start-up failure: ``lines`` are logged (the traceback's tail), then exit 1."""

    def __init__(self, *lines: str) -> None:
        super().__init__(lines[-1])
        self.lines = lines


class Log:
    """vLLM's logger format: ``INFO 12-05 17:01:25 [file.py:123] message``, with the prefix
    vLLM adds to multi-process output (``(APIServer pid=1)``, ``(EngineCore_DP0 pid=..)``)."""

    def __init__(self) -> None:
        self.pid = os.getpid()

    def emit(self, level: str, where: str, message: str, proc: str = "APIServer") -> None:
        stamp = time.strftime("%m-%d %H:%M:%S")
        prefix = f"({proc} pid={self.pid}) "
        for i, line in enumerate(message.splitlines() or [""]):
            head = f"{prefix}{level} {stamp} [{where}] " if i == 0 else prefix
            print(head + line, flush=True)

    def info(self, where: str, message: str, proc: str = "APIServer") -> None:
        self.emit("INFO", where, message, proc)

    def warning(self, where: str, message: str, proc: str = "APIServer") -> None:
        self.emit("WARNING", where, message, proc)

    def error(self, where: str, message: str, proc: str = "APIServer") -> None:
        self.emit("ERROR", where, message, proc)

    def raw(self, text: str, proc: str = "APIServer") -> None:
        for line in text.splitlines():
            print(f"({proc} pid={self.pid}) {line}", file=sys.stderr, flush=True)


def estimate_weight_bytes(
    cfg: ModelConfig, snapshot: Path, quantization: str | None, raw: dict
) -> int:
    """Parameter count from config.json (the snapshot's files may be placeholders) at the
    checkpoint's precision: 2 bytes (16-bit), 1 (fp8), 0.5 (4-bit awq/gptq)."""
    h, layers = cfg.hidden_size, cfg.num_hidden_layers
    inter = int(raw.get("intermediate_size") or 4 * h)
    vocab = int(raw.get("vocab_size") or 32000)
    kv = h * cfg.num_key_value_heads // max(1, cfg.num_attention_heads)
    params = layers * (2 * h * h + 2 * h * kv + 3 * h * inter) + 2 * vocab * h
    method = quantization or cfg.quantization_method
    per_param = {"awq": 0.5, "gptq": 0.5, "awq_marlin": 0.5, "gptq_marlin": 0.5, "fp8": 1.0}.get(
        method or "", 2.0
    )
    return max(int(params * per_param), weights_bytes(snapshot))


@dataclass
class Plan:
    args: argparse.Namespace
    snapshot: Path
    config: ModelConfig
    max_model_len: int
    max_num_seqs: int
    max_num_batched_tokens: int
    kv_tokens: int
    served_names: list[str]


def _validate(args: argparse.Namespace, env: Mapping[str, str], log: Log) -> Plan:
    """vllm/config/*.py checks run while building VllmConfig (before any GPU work)."""
    if not 0 < args.gpu_memory_utilization <= 1:
        raise StartupError(
            "pydantic_core._pydantic_core.ValidationError: 1 validation error for CacheConfig",
            "gpu_memory_utilization",
            f"  Input should be less than or equal to 1 [type=less_than_equal, "
            f"input_value={args.gpu_memory_utilization}, input_type=float]",
        )
    cache = hub_cache_dir(args.download_dir, env)
    try:
        snapshot = find_snapshot(args.model, args.revision, cache)
    except WeightsError as exc:
        # transformers' AutoConfig under HF_HUB_OFFLINE=1 (vllm/transformers_utils/config.py).
        raise StartupError(
            "Traceback (most recent call last):",
            '  File "/usr/local/lib/python3.12/dist-packages/vllm/transformers_utils/config.py", '
            "line 477, in get_config",
            f"OSError: {exc}",
            f"OSError: We couldn't connect to 'https://huggingface.co' to load the files, and "
            f"couldn't find them in the cached files. Check your internet connection or see how "
            f"to run the library in offline mode at "
            f"'https://huggingface.co/docs/transformers/installation#offline-mode'. "
            f"(model={args.model!r}, revision={args.revision!r}, cache_dir='{cache}')",
        ) from None
    cfg = ModelConfig.read(snapshot)
    log.info("model.py:547", f"Resolved architecture: {cfg.architectures[0]}")
    derived = cfg.max_position_embeddings
    max_model_len = args.max_model_len or derived
    if max_model_len > derived and env.get("VLLM_ALLOW_LONG_MAX_MODEL_LEN") != "1":
        raise StartupError(
            "pydantic_core._pydantic_core.ValidationError: 1 validation error for ModelConfig",
            f"  Value error, User-specified max_model_len ({max_model_len}) is greater than the "
            f"derived max_model_len (max_position_embeddings={derived} or model_max_length=None "
            f"in model's config.json). To allow overriding this maximum, set the env var "
            f"VLLM_ALLOW_LONG_MAX_MODEL_LEN=1. VLLM_ALLOW_LONG_MAX_MODEL_LEN must be used with "
            f"extreme caution. If the model uses relative position encoding (RoPE), positions "
            f"exceeding derived_max_model_len lead to nan. If the model uses absolute position "
            f"encoding, positions exceeding derived_max_model_len will cause a CUDA array "
            f"out-of-bounds error. [type=value_error, input_value=ArgsKwargs((), {{...}}), "
            f"input_type=ArgsKwargs]",
        )
    log.info("model.py:1510", f"Using max model len {max_model_len}")
    declared = cfg.quantization_method
    if args.quantization and declared and not args.quantization.startswith(declared):
        raise StartupError(
            f"ValueError: Quantization method specified in the model config ({declared}) does "
            f"not match the quantization method specified in the `quantization` argument "
            f"({args.quantization})."
        )
    tp = args.tensor_parallel_size
    if tp < 1 or cfg.num_attention_heads % tp:
        raise StartupError(
            f"ValueError: Total number of attention heads ({cfg.num_attention_heads}) must be "
            f"divisible by tensor parallel size ({tp})."
        )
    max_num_seqs = args.max_num_seqs or 256
    batched = args.max_num_batched_tokens or 8192
    if args.enable_chunked_prefill is False and batched < max_model_len:
        raise StartupError(
            f"ValueError: max_num_batched_tokens ({batched}) is smaller than max_model_len "
            f"({max_model_len}). This effectively limits the maximum sequence length to "
            f"max_num_batched_tokens and makes vLLM reject longer sequences. Please increase "
            f"max_num_batched_tokens or decrease max_model_len."
        )
    if batched < max_num_seqs:
        raise StartupError(
            f"ValueError: max_num_batched_tokens ({batched}) must be greater than or equal to "
            f"max_num_seqs ({max_num_seqs})."
        )
    if args.enable_chunked_prefill is not False:
        log.info(
            "scheduler.py:205", f"Chunked prefill is enabled with max_num_batched_tokens={batched}."
        )
    served = args.served_model_name or [args.model]
    return Plan(args, snapshot, cfg, max_model_len, max_num_seqs, batched, 0, served)


def _memory(plan: Plan, env: Mapping[str, str], faults: Faults, log: Log) -> int:
    """gpu_worker.py determine_available_memory + kv_cache_utils.py check_enough_kv_cache_memory."""
    import json

    a = plan.args
    tp = a.tensor_parallel_size
    gpu = float(env.get("SIM_GPU_MEMORY_GIB") or 80) * GIB
    raw = json.loads((plan.snapshot / "config.json").read_text())
    weights = estimate_weight_bytes(plan.config, plan.snapshot, a.quantization, raw) / tp
    core = "EngineCore_DP0"
    if getattr(faults, "oom_load", False) or weights > gpu * a.gpu_memory_utilization:
        raise StartupError(
            "Traceback (most recent call last):",
            '  File "/usr/local/lib/python3.12/dist-packages/vllm/v1/worker/gpu_model_runner.py", '
            "line 2606, in load_model",
            f"torch.OutOfMemoryError: {OOM_TEXT}",
        )
    log.info("default_loader.py:267", "Loading weights took 1.02 seconds", core)
    log.info(
        "gpu_model_runner.py:2653",
        f"Model loading took {weights / GIB:.4f} GiB and 1.24 seconds",
        core,
    )
    available = gpu * a.gpu_memory_utilization - weights - 1.5 * GIB
    kv_bytes = 1 if a.kv_cache_dtype.startswith("fp8") else 2
    per_token = plan.config.kv_bytes_per_token(kv_bytes) / tp
    if available <= 0:
        raise StartupError(
            "ValueError: No available memory for the cache blocks. Try increasing "
            "`gpu_memory_utilization` when initializing the engine."
        )
    tokens = int(available // per_token) // BLOCK_SIZE * BLOCK_SIZE
    if tokens < plan.max_model_len:
        raise StartupError(
            f"ValueError: To serve at least one request with the models's max seq len "
            f"({plan.max_model_len}), ({plan.max_model_len * per_token / GIB:.2f} GiB KV cache is "
            f"needed, which is larger than the available KV cache memory ({available / GIB:.2f} "
            f"GiB). Based on the available memory, the estimated maximum model length is {tokens}. "
            f"Try increasing `gpu_memory_utilization` or decreasing `max_model_len` when "
            f"initializing the engine."
        )
    if faults.oom:
        # The profiling forward pass at max_num_batched_tokens (gpu_worker.py
        # determine_available_memory -> gpu_model_runner.py profile_run) runs out of memory.
        raise StartupError(
            "Traceback (most recent call last):",
            '  File "/usr/local/lib/python3.12/dist-packages/vllm/v1/worker/gpu_worker.py", '
            "line 263, in determine_available_memory",
            "    self.model_runner.profile_run()",
            f"torch.OutOfMemoryError: {OOM_TEXT}",
        )
    log.info("gpu_worker.py:298", f"Available KV cache memory: {available / GIB:.2f} GiB", core)
    log.info("kv_cache_utils.py:1087", f"GPU KV cache size: {tokens:,} tokens", core)
    log.info(
        "kv_cache_utils.py:1091",
        f"Maximum concurrency for {plan.max_model_len:,} tokens per request: "
        f"{tokens / plan.max_model_len:.2f}x",
        core,
    )
    return tokens


class Launcher:
    def __init__(self, argv: Sequence[str], env: Mapping[str, str]) -> None:
        self.argv = list(argv)
        self.env = env
        self.log = Log()

    def _sleep(self, seconds: float) -> None:
        time.sleep(max(0.0, seconds))

    def _fail(self, exc: StartupError, *, in_engine: bool) -> int:
        log = self.log
        if in_engine:
            log.error("core.py:708", "EngineCore failed to start.", "EngineCore_DP0")
            log.raw("\n".join(exc.lines), "EngineCore_DP0")
            log.raw(
                "Traceback (most recent call last):\n"
                '  File "/usr/local/bin/vllm", line 10, in <module>\n'
                "    sys.exit(main())\n"
                "RuntimeError: Engine core initialization failed. See root cause above. "
                "Failed core proc(s): {'EngineCore_DP0': 1}"
            )
        else:
            log.raw(
                "Traceback (most recent call last):\n"
                '  File "/usr/local/bin/vllm", line 10, in <module>\n'
                "    sys.exit(main())\n" + "\n".join(exc.lines)
            )
        return 1

    def run(self) -> int:
        args = cli.parse_args(self.argv)  # argparse: usage + error, SystemExit(2)
        log, env = self.log, self.env
        try:
            faults = parse_faults(env.get(FAULTS_ENV))
        except ValueError as exc:
            return self._fail(
                StartupError(f"ValueError: Invalid {FAULTS_ENV}: {exc}"), in_engine=False
            )
        log.info("api_server.py:1839", f"vLLM API server version {VERSION}")
        log.info("utils.py:233", f"non-default args: {cli.non_default_args(args)}")
        if faults.any:
            log.warning("launcher.py:1", f"Simulator faults active: {faults}")
        try:
            plan = _validate(args, env, log)
        except StartupError as exc:
            return self._fail(exc, in_engine=False)
        total = float(env.get("SIM_STARTUP_SECONDS") or 1.0)
        core = "EngineCore_DP0"
        dtype = plan.config.torch_dtype if args.dtype == "auto" else args.dtype
        log.info(
            "core.py:77",
            f"Initializing a V1 LLM engine (v{VERSION}) with config: model='{args.model}', "
            f"speculative_config=None, tokenizer='{args.model}', revision={args.revision}, "
            f"trust_remote_code={args.trust_remote_code}, dtype={dtype}, "
            f"max_seq_len={plan.max_model_len}, download_dir={args.download_dir!r}, "
            f"tensor_parallel_size={args.tensor_parallel_size}, quantization={args.quantization}, "
            f"kv_cache_dtype={args.kv_cache_dtype}, served_model_name={plan.served_names[0]}",
            core,
        )
        log.info("gpu_model_runner.py:2602", f"Starting to load model {args.model}...", core)
        self._sleep(0.5 * total + faults.slow_start)
        try:
            if faults.crash:
                raise StartupError(
                    "RuntimeError: simulated engine core failure (sim fault `crash`)"
                )
            plan.kv_tokens = _memory(plan, env, faults, log)
        except StartupError as exc:
            return self._fail(exc, in_engine=True)
        self._sleep(0.3 * total)
        log.info(
            "gpu_model_runner.py:3480", "Graph capturing finished in 2 secs, took 0.52 GiB", core
        )
        log.info(
            "core.py:210",
            f"init engine (profile, create kv cache, warmup model) took {0.8 * total:.2f} seconds",
            core,
        )
        return self._serve(plan, faults)

    def _serve(self, plan: Plan, faults: Faults) -> int:
        import uvicorn

        from .generation import Answerer, Scheduler
        from .metrics import VllmMetrics
        from .server import VllmServer

        args, env, log = plan.args, self.env, self.log
        tokenizer = load_tokenizer(plan.snapshot)
        tps = float(env.get("SIM_TOKENS_PER_SECOND") or 200)
        latency = 0.0 if tps <= 0 else 1.0 / tps
        if faults.token_latency_ms is not None:
            latency = faults.token_latency_ms / 1000.0
        host = args.host or "0.0.0.0"
        log.info("api_server.py:1634", "Supported_tasks: ['generate']")
        log.info("api_server.py:1912", f"Starting vLLM API server 0 on http://{host}:{args.port}")
        log.info("launcher.py:34", "Available routes are:")
        for path, methods in (
            ("/health", "GET"), ("/ping", "GET, POST"), ("/tokenize", "POST"),
            ("/detokenize", "POST"),
            ("/v1/models", "GET"), ("/version", "GET"), ("/v1/chat/completions", "POST"),
            ("/v1/completions", "POST"), ("/metrics", "GET"),
        ):  # fmt: skip
            log.info("launcher.py:42", f"Route: {path}, Methods: {methods}")
        exit_code = 0

        async def main() -> None:
            nonlocal exit_code
            metrics = VllmMetrics(
                plan.served_names[0], plan.max_model_len, args.show_hidden_metrics_for_version
            )
            scheduler = Scheduler(
                max_running=plan.max_num_seqs,
                kv_pool_tokens=plan.kv_tokens,
                token_latency=latency,
                prefill_tokens_per_second=float(env.get("SIM_PREFILL_TOKENS_PER_SECOND") or 20000),
                error_rate=faults.error_rate,
            )
            scheduler.start()
            server_app = VllmServer(
                metrics=metrics,
                tokenizer=tokenizer,
                answerer=Answerer(tokenizer, int(float(env.get("SIM_OUTPUT_TOKENS") or 128))),
                scheduler=scheduler,
                served_names=plan.served_names,
                model_root=args.model,
                max_model_len=plan.max_model_len,
                unhealthy=faults.unhealthy,
            )
            config = uvicorn.Config(
                server_app.app(),
                host=host,
                port=args.port,
                log_level=args.uvicorn_log_level,
                access_log=False,
                timeout_keep_alive=5,
            )
            server = uvicorn.Server(config)

            async def die_later(after: float) -> None:
                # core.py run_engine_core: the busy loop raises, the core process exits; the API
                # server sees EngineDeadError, /health turns 503 and the server shuts down.
                await asyncio.sleep(after)
                nonlocal exit_code
                log.error("core.py:720", "EngineCore encountered a fatal error.", "EngineCore_DP0")
                log.raw(
                    "RuntimeError: simulated engine core failure (sim fault `crash_after`)",
                    "EngineCore_DP0",
                )
                log.error("async_llm.py:480", "AsyncLLM output_handler failed.")
                log.raw(
                    "vllm.v1.engine.exceptions.EngineDeadError: EngineCore encountered an issue. "
                    "See stack trace (above) for the root cause."
                )
                server_app.engine_dead = True
                exit_code = 1
                server.should_exit = True

            if faults.crash_after is not None:
                asyncio.get_running_loop().create_task(die_later(faults.crash_after))
            await server.serve()

        asyncio.run(main())
        return exit_code


def main(argv: Sequence[str] | None = None) -> int:
    return Launcher(sys.argv[1:] if argv is None else argv, os.environ).run()

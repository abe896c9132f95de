"""``python -m sglang.launch_server`` start-up, as sglang/srt/entrypoints/engine.py and
http_server.py launch_server order it: the scheduler process loads the weights, allocates the KV
pool (``--max-total-tokens`` caps it; it is the pool size in tokens, not a per-request limit) and
captures CUDA graphs; then uvicorn binds the port, and a warm-up request runs while /health still
answers 503; ``The server is fired up and ready to roll!`` ends it.

A scheduler failure is logged as ``Scheduler hit an exception: <traceback>``; the scheduler sends
SIGQUIT to the launcher, whose launch_phase_sigquit_handler logs ``Received sigquit from a child
process. It usually means the child failed.`` and kill_process_tree(os.getpid()) SIGKILLs itself:
the process ends by signal 9 (exit status 137) — no cgroup OOM, so a real kubelet reports reason
``Error``, not ``OOMKilled``.

Knobs (env): as devstack/vllm_simulator/launcher.py (SIM_STARTUP_SECONDS, SIM_TOKENS_PER_SECOND,
SIM_PREFILL_TOKENS_PER_SECOND, SIM_OUTPUT_TOKENS, SIM_GPU_MEMORY_GIB, SIM_FAULTS).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

from devstack.tgi_simulator.faults import FAULTS_ENV, Faults, parse_faults
from devstack.vllm_simulator.launcher import estimate_weight_bytes
from devstack.vllm_simulator.weights import (
    ModelConfig,
    WeightsError,
    find_snapshot,
    hub_cache_dir,
    load_tokenizer,
)

from . import cli

GIB = 1024**3
OOM_TEXT = (
    "CUDA out of memory. Tried to allocate 1.50 GiB. GPU 0 has a total capacity of 79.19 GiB of "
    "which 1.02 GiB is free. Including non-PyTorch memory, this process has 78.16 GiB memory in "
    "use. Of the allocated memory 76.85 GiB is allocated by PyTorch, and 512.40 MiB is reserved "
    "by PyTorch but unallocated."
)
GRAPH_OOM_HINT = (
    "Possible solutions:\n"
    "1. set --mem-fraction-static to a smaller value (e.g., 0.8 or 0.7)\n"
    "2. set --cuda-graph-max-bs to a smaller value (e.g., 16)\n"
    "3. disable torch compile by not using --enable-torch-compile\n"
    "4. disable CUDA graph by --disable-cuda-graph. (Not recommended. Huge performance loss)"
)


class SchedulerError(Exception):
    """The scheduler process failed; ``traceback`` is what it logs."""

    def __init__(self, traceback: str) -> None:
        super().__init__(traceback)
        self.traceback = traceback


def log(message: str, rank: str = "") -> None:
    """sglang/srt/utils.py configure_logger: ``[%(asctime)s%(prefix)s] %(message)s``."""
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    print(f"[{stamp}{' ' + rank if rank else ''}] {message}", flush=True)


def die_by_sigquit(traceback: str) -> NoReturn:
    log(f"Scheduler hit an exception: {traceback}", "TP0")
    log("Received sigquit from a child process. It usually means the child failed.")
    sys.stdout.flush()
    sys.stderr.flush()
    os.kill(os.getpid(), signal.SIGKILL)  # kill_process_tree(os.getpid()): itself.kill()
    raise SystemExit(0)  # unreachable unless SIGKILL is ignored (PID 1): kill_process_tree exits 0


def _traceback(where: str, exc_line: str) -> str:
    return (
        "Traceback (most recent call last):\n"
        '  File "/sgl-workspace/sglang/python/sglang/srt/managers/scheduler.py", line 2935, in '
        "run_scheduler_process\n"
        "    scheduler = Scheduler(server_args, port_args, gpu_id, tp_rank, moe_ep_rank, pp_rank, "
        "dp_rank)\n"
        f'  File "/sgl-workspace/sglang/python/sglang/srt/{where}\n'
        f"{exc_line}\n"
    )


def _context_length(args: argparse.Namespace, cfg: ModelConfig, env: Mapping[str, str]) -> int:
    derived = cfg.max_position_embeddings
    if args.context_length is None:
        return derived
    if (
        args.context_length > derived
        and env.get("SGLANG_ALLOW_OVERWRITE_LONGER_CONTEXT_LEN") != "1"
    ):
        # configs/model_config.py ModelConfig.__init__
        raise SchedulerError(
            _traceback(
                'configs/model_config.py", line 215, in __init__',
                f"ValueError: User-specified context_length ({args.context_length}) is greater "
                f"than "
                f"the derived context_length ({derived}). This may lead to incorrect model outputs "
                f"or CUDA errors. Note that the derived context_length may differ from "
                f"max_position_embeddings in the model's config. To allow overriding this maximum, "
                f"set the env var SGLANG_ALLOW_OVERWRITE_LONGER_CONTEXT_LEN=1",
            )
        )
    return int(args.context_length)


def _kv_pool(
    args: argparse.Namespace,
    snapshot: Path,
    cfg: ModelConfig,
    env: Mapping[str, str],
    faults: Faults,
) -> int:
    """model_executor/model_runner.py profile_max_num_token / init_memory_pool."""
    tp = args.tp_size
    gpu = float(env.get("SIM_GPU_MEMORY_GIB") or 80) * GIB
    raw = json.loads((snapshot / "config.json").read_text())
    weights = estimate_weight_bytes(cfg, snapshot, args.quantization, raw) / tp
    log(f"Load weight begin. avail mem={gpu / GIB:.2f} GB", "TP0")
    if getattr(faults, "oom_load", False) or weights > gpu * 0.95:
        raise SchedulerError(
            _traceback(
                'model_executor/model_runner.py", line 712, in load_model',
                f"torch.OutOfMemoryError: {OOM_TEXT}",
            )
        )
    arch = cfg.architectures[0]
    log(
        f"Load weight end. type={arch}, dtype=torch.{cfg.torch_dtype}, "
        f"avail mem={(gpu - weights) / GIB:.2f} GB, mem usage={weights / GIB:.2f} GB.",
        "TP0",
    )
    fraction = args.mem_fraction_static or 0.88
    rest = gpu * fraction - weights
    kv_bytes = 1 if args.kv_cache_dtype.startswith("fp8") else 2
    per_token = cfg.kv_bytes_per_token(kv_bytes) / tp
    tokens = int(rest // per_token) if rest > 0 else 0
    if args.max_total_tokens is not None:
        if args.max_total_tokens > tokens:
            log(
                f"max_total_tokens={args.max_total_tokens} is larger than the profiled value "
                f"{tokens}. Use the profiled value instead.",
                "TP0",
            )
        tokens = min(tokens, args.max_total_tokens)
    if tokens <= 0:
        raise SchedulerError(
            _traceback(
                'model_executor/model_runner.py", line 1502, in init_memory_pool',
                "RuntimeError: Not enough memory. Please try to increase --mem-fraction-static.",
            )
        )
    size = tokens * per_token / 2 / GIB
    log(
        f"KV Cache is allocated. #tokens: {tokens}, K size: {size:.2f} GB, V size: {size:.2f} GB",
        "TP0",
    )
    if faults.oom:
        raise SchedulerError(
            _traceback(
                'model_executor/cuda_graph_runner.py", line 389, in __init__',
                f"Exception: Capture cuda graph failed: {OOM_TEXT}\n{GRAPH_OOM_HINT}",
            )
        )
    log("Capture cuda graph begin. This can take up to several minutes.", "TP0")
    return tokens


def run(argv: Sequence[str], env: Mapping[str, str]) -> int:
    args = cli.parse_args(argv)
    faults = parse_faults(env.get(FAULTS_ENV))
    served = args.served_model_name or args.model_path
    log(f"server_args=ServerArgs({', '.join(f'{k}={v!r}' for k, v in vars(args).items())})")
    if faults.any:
        log(f"Simulator faults active: {faults}")
    total = float(env.get("SIM_STARTUP_SECONDS") or 1.0)
    try:
        if faults.crash:
            raise SchedulerError(
                _traceback(
                    'managers/scheduler.py", line 300, in __init__',
                    "RuntimeError: simulated scheduler failure (sim fault `crash`)",
                )
            )
        cache = hub_cache_dir(args.download_dir, env)
        try:
            snapshot = find_snapshot(args.model_path, args.revision, cache)
        except WeightsError as exc:
            raise SchedulerError(
                _traceback(
                    'model_loader/weight_utils.py", line 445, in download_weights_from_hf',
                    f"huggingface_hub.errors.LocalEntryNotFoundError: {exc}",
                )
            ) from None
        cfg = ModelConfig.read(snapshot)
        tp = args.tp_size
        if tp < 1 or cfg.num_attention_heads % tp:
            raise SchedulerError(
                _traceback(
                    'configs/model_config.py", line 650, in verify_tensor_parallel_size',
                    f"ValueError: Total number of attention heads ({cfg.num_attention_heads}) "
                    f"must be "
                    f"divisible by tensor parallel size ({tp}).",
                )
            )
        context_len = _context_length(args, cfg, env)
        time.sleep(0.5 * total + faults.slow_start)
        kv_tokens = _kv_pool(args, snapshot, cfg, env, faults)
    except SchedulerError as exc:
        die_by_sigquit(exc.traceback)
    time.sleep(0.3 * total)
    chunked = args.chunked_prefill_size or 8192
    max_running = args.max_running_requests or min(kv_tokens // 2, 4096)
    log(
        "Capture cuda graph end. Time elapsed: 2.41 s. mem usage=0.52 GB. avail mem=8.45 GB.", "TP0"
    )
    log(
        f"max_total_num_tokens={kv_tokens}, chunked_prefill_size={chunked}, "
        f"max_prefill_tokens={args.max_prefill_tokens}, max_running_requests={max_running}, "
        f"context_len={context_len}, available_gpu_mem=8.45 GB",
        "TP0",
    )
    return _serve(args, env, faults, snapshot, served, context_len, kv_tokens, max_running, total)


def _serve(
    args: argparse.Namespace,
    env: Mapping[str, str],
    faults: Faults,
    snapshot: Path,
    served: str,
    context_len: int,
    kv_tokens: int,
    max_running: int,
    total: float,
) -> int:
    import httpx
    import uvicorn

    from devstack.vllm_simulator.generation import Answerer, Scheduler

    from .metrics import SglangMetrics
    from .server import SglangServer

    tokenizer = load_tokenizer(snapshot)
    tps = float(env.get("SIM_TOKENS_PER_SECOND") or 200)
    latency = 0.0 if tps <= 0 else 1.0 / tps
    if faults.token_latency_ms is not None:
        latency = faults.token_latency_ms / 1000.0
    cfg = ModelConfig.read(snapshot)

    async def main() -> None:
        scheduler = Scheduler(
            max_running=max_running,
            kv_pool_tokens=kv_tokens,
            token_latency=latency,
            prefill_tokens_per_second=float(env.get("SIM_PREFILL_TOKENS_PER_SECOND") or 20000),
            error_rate=faults.error_rate,
        )
        scheduler.start()
        server_args: dict[str, Any] = dict(vars(args))
        server_args.update(
            served_model_name=served,
            context_length=args.context_length,
            max_total_tokens=args.max_total_tokens,
            tp_size=args.tp_size,
        )
        app = SglangServer(
            metrics=SglangMetrics(served, args.collect_tokens_histogram)
            if args.enable_metrics
            else None,
            server_info=server_args,
            model_info={
                "model_path": args.model_path,
                "tokenizer_path": args.tokenizer_path or args.model_path,
                "is_generation": True,
                "preferred_sampling_params": None,
                "weight_version": "default",
                "has_image_understanding": False,
                "has_audio_understanding": False,
                "model_type": None,
                "architectures": list(cfg.architectures),
            },
            tokenizer=tokenizer,
            answerer=Answerer(tokenizer, int(float(env.get("SIM_OUTPUT_TOKENS") or 128))),
            scheduler=scheduler,
            served_names=[served],
            model_root=args.model_path,
            max_model_len=context_len,
            unhealthy=faults.unhealthy,
        )
        config = uvicorn.Config(
            app.app(),
            host=args.host,
            port=args.port,
            log_level=args.log_level,
            access_log=False,
            timeout_keep_alive=5,
        )
        server = uvicorn.Server(config)

        async def warmup() -> None:
            # http_server.py _wait_and_warmup: GET /get_model_info, then one /generate.
            while not server.started:
                await asyncio.sleep(0.05)
            if not args.skip_server_warmup:
                host = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
                async with httpx.AsyncClient(base_url=f"http://{host}:{args.port}") as client:
                    await client.get("/get_model_info", timeout=600)
                    await client.post(
                        "/generate",
                        json={
                            "text": "The capital city of France is",
                            "sampling_params": {"temperature": 0, "max_new_tokens": 8},
                        },
                        timeout=600,
                    )
                await asyncio.sleep(0.2 * total)
            app.ready = True
            log("The server is fired up and ready to roll!")

        async def crash_later(after: float) -> None:
            await asyncio.sleep(after)
            log(
                "Scheduler hit an exception: RuntimeError: simulated scheduler failure "
                "(sim fault `crash_after`)",
                "TP0",
            )
            # tokenizer_manager.py running_phase_sigquit_handler
            log("SIGQUIT received. signum=None, frame=None. It usually means one child failed.")
            sys.stdout.flush()
            os.kill(os.getpid(), signal.SIGKILL)

        loop = asyncio.get_running_loop()
        tasks = [loop.create_task(warmup())]
        if faults.crash_after is not None:
            tasks.append(loop.create_task(crash_later(faults.crash_after)))
        await server.serve()
        for t in tasks:
            t.cancel()

    asyncio.run(main())
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    return run(sys.argv[1:] if argv is None else argv, os.environ)

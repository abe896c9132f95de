"""``text-generation-launcher`` stand-in: startup phases, faults, then the HTTP server.

Phases mirror TGI's: argument checks, weight download, shard start, router start with warmup,
and only then is the port bound (``Connected``). While any of that runs the port refuses
connections, exactly what a startup probe sees with the real image.

Simulation knobs (env): ``SIM_STARTUP_SECONDS`` (default 1.0, split 30% download / 50% shard
load / 20% warmup), ``SIM_TOKENS_PER_SECOND`` (per sequence, default 200; ``0`` = instant),
``SIM_PREFILL_TOKENS_PER_SECOND`` (default 20000), ``SIM_OUTPUT_TOKENS`` (the simulated model's
natural answer length before EOS, default 128; ``0`` = never stops early),
``SIM_MAX_BATCH_TOTAL_TOKENS`` (simulated KV
cache; default 16 x max_total_tokens), ``SIM_CHUNKED_PREFILL`` (``1`` = chunked prefill
supported), ``SIM_FAULTS`` (see :mod:`.faults`), ``SIM_PIPELINE_TAG`` (the Hub's pipeline_tag,
reported online only).

The model is real: its snapshot is found in the Hugging Face cache like TGI finds it (see
:mod:`.model`), config.json sets the context length, and the tokenizer and chat template come
from the snapshot (see :mod:`.tokens`). Offline without the snapshot the start fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import signal
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from .config import (
    CliError,
    LauncherError,
    Settings,
    args_debug,
    from_environ,
    resolve_launcher,
    resolve_router,
    shard_error,
)
from .faults import FAULTS_ENV, Faults, parse_faults
from .log import Log, fmt_duration
from .model import ModelConfig, hub_cache_dir, locate_snapshot

VERSION = os.environ.get("SIM_TGI_VERSION", "3.3.6")
GIT_SHA = "9f38d9305e6a6b0f8c4ef3b4f5d6a1c2b3e4d5f6"
DOCKER_LABEL = f"sha-{GIT_SHA[:7]}"


class _Stop(Exception):
    """SIGTERM/SIGINT during startup: the launcher stops cleanly (exit 0)."""


class Launcher:
    def __init__(self, argv: Sequence[str]) -> None:
        self.argv = list(argv)
        self.stop_requested = False
        self.log = Log()
        self.model_id = ""
        self.hub_cache = Path()
        self.snapshot: Path | None = None
        self.missing: BaseException | None = None

    def _find_snapshot(self, values: dict[str, Any]) -> None:
        from devstack.model_files import MissingWeights

        try:
            self.snapshot = locate_snapshot(values["model_id"], values["revision"], self.hub_cache)
        except MissingWeights as exc:
            self.missing = exc

    # --- helpers ----------------------------------------------------------------------------

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.stop_requested = True

    def _sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while True:
            if self.stop_requested:
                raise _Stop
            left = end - time.monotonic()
            if left <= 0:
                return
            time.sleep(min(left, 0.05))

    def _fail(self, code: int, error: str) -> int:
        self.log.flush()
        print(f"Error: {error}", file=sys.stderr, flush=True)
        return code

    @staticmethod
    def _env_float(name: str, default: float) -> float:
        raw = os.environ.get(name)
        return float(raw) if raw else default

    # --- phases -------------------------------------------------------------------------------

    def run(self) -> int:
        try:
            values, env = from_environ(self.argv)
        except CliError as exc:
            print(str(exc), file=sys.stderr, flush=True)
            return 2
        self.log = log = Log(values["json_output"], env.get("LOG_LEVEL", "info"))
        try:
            faults = parse_faults(env.get(FAULTS_ENV))
        except ValueError as exc:
            log.error(f"Invalid {FAULTS_ENV}: {exc}")
            return self._fail(1, f'ArgumentValidation("{exc}")')
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)

        if values["env"]:
            log.info(
                "Runtime environment:\nTarget: x86_64-unknown-linux-gnu\nCargo version: 1.85.1\n"
                f"Commit sha: {GIT_SHA}\nDocker label: {DOCKER_LABEL}\nnvidia-smi:\nN/A (simulated)"
            )
        log.info(args_debug(values))
        if faults.any:
            log.warn(f"Simulator faults active: {faults}")
        log.info("Using attention flashinfer - Prefix caching true")
        self.model_id = values["model_id"]
        self.hub_cache = hub_cache_dir(values["huggingface_hub_cache"], env)
        self._find_snapshot(values)
        # launcher/src/main.rs reads config.json before anything else (`get_config(..).ok()`).
        config = ModelConfig.read(self.snapshot) if self.snapshot is not None else None
        try:
            settings = resolve_launcher(
                values,
                env,
                config.max_position_embeddings if config else None,
                config.quantize if config else None,
            )
        except LauncherError as exc:
            return self._fail(1, exc.debug())
        for msg in settings.warnings:
            log.warn(msg)
        for msg in settings.infos:
            log.info(msg)
        try:
            return self._start(settings, faults, env)
        except _Stop:
            log.info("Shutting down shards")
            return 0

    def _start(self, settings: Settings, faults: Faults, env: dict[str, str]) -> int:
        log = self.log
        a = settings.args
        model = a["model_id"]
        total = self._env_float("SIM_STARTUP_SECONDS", 1.0)
        t_download, t_shard, t_warmup = 0.3 * total, 0.5 * total, 0.2 * total

        # Download (launcher/src/main.rs download_convert_model -> `text-generation-server
        # download-weights`, server/text_generation_server/cli.py).
        log.info(f"Starting check and download process for {model}", span="download")
        self._sleep(t_download)
        cached = self.snapshot is not None
        if not cached:
            offline = env.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
            self.snapshot = None if offline else self._download(a, env)
        if self.snapshot is None:
            if self.missing is None or type(self.missing).__name__ == "MissingWeights":
                log.warn(
                    f"No safetensors weights found for model {model} at revision "
                    f"{a['revision']}. Downloading PyTorch weights.",
                    span="download",
                )
            log.error(
                "Download encountered an error: \n"
                + _download_traceback(self.missing, model, a["revision"]),
                span="download",
            )
            return self._fail(1, "DownloadError")
        if cached:
            log.info("Files are already present on the host. Skipping download.", span="download")
        log.info(f"Successfully downloaded weights for {model}", span="download")

        # Shards
        shard_start = time.monotonic()
        for rank in range(settings.num_shard):
            log.info("Starting shard", span="shard-manager", fields=f"rank={rank}")
        err = shard_error(settings)
        if faults.oom_load:
            # Weights larger than the GPU: torch's allocator fails inside the model's
            # constructor and the shard process dies (launcher/src/main.rs shard_manager).
            err = (
                '  File "/usr/src/server/text_generation_server/models/flash_causal_lm.py", '
                "line 1240, in __init__\n    model = model_class(prefix, config, weights)\n"
                "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 1.96 GiB. GPU 0 "
                "has a total capacity of 22.05 GiB of which 1.03 GiB is free. Including "
                "non-PyTorch memory, this process has 21.01 GiB memory in use."
            )
        if faults.crash or err is not None:
            self._sleep(t_shard / 2)
            trace = err or "RuntimeError: simulated shard failure (sim fault `crash`)"
            log.error(
                "Error when initializing model\nTraceback (most recent call last):\n"
                '  File "/opt/conda/bin/text-generation-server", line 8, in <module>\n'
                "    sys.exit(app())\n"
                '  File "/usr/src/server/text_generation_server/server.py", line 268, in '
                "serve_inner\n    model = get_model_with_lora_adapters(\n" + trace,
            )
            log.error(
                f"Shard complete standard error output:\n\n{trace}",
                span="shard-manager",
                fields="rank=0",
            )
            log.error("Shard 0 failed to start")
            log.info("Shutting down shards")
            return self._fail(1, "ShardCannotStart")
        load = t_shard + faults.slow_start
        waited = 0.0
        while waited + 10 < load:
            self._sleep(10)
            waited += 10
            log.info("Waiting for shard to be ready...", span="shard-manager", fields="rank=0")
        self._sleep(load - waited)
        log.info(f"Server started at unix://{a['shard_uds_path']}-0")
        for rank in range(settings.num_shard):
            log.info(
                f"Shard ready in {fmt_duration(time.monotonic() - shard_start)}",
                span="shard-manager",
                fields=f"rank={rank}",
            )

        # Router
        log.info("Starting Webserver")
        try:
            resolve_router(settings, env)
        except LauncherError as exc:
            print(f"Error: {exc.debug()}", file=sys.stderr, flush=True)
            log.error("Webserver Crashed")
            log.info("Shutting down shards")
            return self._fail(1, "WebserverFailed")
        log.router(
            "INFO", "text_generation_router_v3 backends/v3/src/lib.rs:125", "Warming up model"
        )
        self._sleep(t_warmup / 2)
        if faults.oom:
            return self._warmup_out_of_memory(settings)
        self._sleep(t_warmup / 2)
        if settings.cuda_graphs:
            graphs = ", ".join(str(g) for g in sorted(settings.cuda_graphs, reverse=True))
            log.info(f"Cuda Graphs are enabled for sizes [{graphs}]")
        log.router(
            "INFO",
            "text_generation_router_v3 backends/v3/src/lib.rs:137",
            f"Setting max batch total tokens to {settings.max_batch_total_tokens}",
        )
        log.router(
            "INFO", "text_generation_router_v3 backends/v3/src/lib.rs:166", "Using backend V3"
        )
        return self._serve(settings, faults, env)

    def _warmup_out_of_memory(self, settings: Settings) -> int:
        """CUDA OOM in the warm-up prefill. The shard turns torch's error into a RuntimeError
        with a hint (server/text_generation_server/models/flash_causal_lm.py ``warmup``), the
        router exits on the failed Warmup RPC (backends/v3/src/client/mod.rs, lib.rs), and the
        launcher sees the webserver die: "Webserver Crashed", `Error: WebserverFailed`, exit 1
        (launcher/src/main.rs ``main``). Not a kernel OOM kill: the process exits 1."""
        log = self.log
        prefill = settings.max_batch_prefill_tokens
        cuda = (
            "CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of "
            "79.25 GiB of which 1.12 GiB is free. Including non-PyTorch memory, this process "
            "has 78.12 GiB memory in use. Of the allocated memory 76.40 GiB is allocated by "
            "PyTorch, and 1.20 GiB is reserved by PyTorch but unallocated."
        )
        hint = (
            f"Not enough memory to handle {prefill} prefill tokens. "
            "You need to decrease `--max-batch-prefill-tokens`"
        )
        log.error(
            "Method Warmup encountered an error.\n"
            "Traceback (most recent call last):\n"
            '  File "/usr/src/server/text_generation_server/models/flash_causal_lm.py", '
            "line 1590, in warmup\n    _, _batch, _ = self.generate_token(batch)\n"
            f"torch.OutOfMemoryError: {cuda}\n\n"
            "The above exception was the direct cause of the following exception:\n\n"
            "Traceback (most recent call last):\n"
            '  File "/usr/src/server/text_generation_server/server.py", line 127, in Warmup\n'
            "    self.model.warmup(batch, max_input_tokens, max_total_tokens)\n"
            f"RuntimeError: {hint}"
        )
        log.router(
            "ERROR",
            "text_generation_router_v3::client backends/v3/src/client/mod.rs:45",
            f"Server error: {hint}",
            span="warmup",
        )
        log.flush()
        print(f'Error: Backend(Warmup(Generation("{hint}")))', file=sys.stderr, flush=True)
        log.error("Webserver Crashed")
        log.info("Shutting down shards")
        for rank in range(settings.num_shard):
            where = {"span": "shard-manager", "fields": f"rank={rank}"}
            log.info("Terminating shard", **where)
            log.info("Waiting for shard to gracefully shutdown", **where)
            log.info("shard terminated", **where)
        return self._fail(1, "WebserverFailed")

    def _download(self, a: dict[str, Any], env: dict[str, str]) -> Path | None:
        """Online and not cached: fetch the snapshot from the Hub (HF_ENDPOINT) like
        download-weights does; any failure is a DownloadError."""
        try:
            from huggingface_hub import snapshot_download

            path = snapshot_download(
                a["model_id"],
                revision=a["revision"],
                cache_dir=str(self.hub_cache),
                token=env.get("HF_TOKEN") or None,
            )
        except Exception as exc:
            self.missing = exc
            return None
        for name in sorted(p.name for p in Path(path).glob("*.safetensors")):
            self.log.info(f"Download file: {name}", span="download")
        return Path(path)

    def _hub_model_info(self, env: dict[str, str]) -> tuple[str | None, str | None]:
        """(model_sha, pipeline_tag) for /info. With HF_HUB_OFFLINE=1 the router reads the
        cache only and has no Hub model info, so both are null (router/src/server.rs ``run``:
        ``Type::Cache`` yields ``model_info = None``); a local directory has none either."""
        offline = env.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
        snapshot = self.snapshot
        if offline or snapshot is None or Path(self.model_id).is_dir():
            return None, None
        return snapshot.name, env.get("SIM_PIPELINE_TAG", "text-generation") or None

    def _serve(self, settings: Settings, faults: Faults, env: dict[str, str]) -> int:
        import uvicorn

        from .engine import Engine
        from .metrics import TgiMetrics
        from .server import Simulator

        log = self.log
        a = settings.args
        hostname = a["hostname"]
        try:
            ipaddress.ip_address(hostname)
            host = hostname
        except ValueError:
            # The router parses --hostname as an IP; HOSTNAME=<pod name> ends up here.
            log.router(
                "WARN",
                "text_generation_router::server router/src/server.rs:2310",
                "Invalid hostname, defaulting to 0.0.0.0",
            )
            host = "0.0.0.0"
        port = a["port"]

        from devstack.model_files import ModelTokenizer

        from .tokens import TokenModel

        assert self.snapshot is not None
        token_model = TokenModel(ModelTokenizer.from_dir(self.snapshot))
        tps = self._env_float("SIM_TOKENS_PER_SECOND", 200.0)
        latency = 0.0 if tps <= 0 else 1.0 / tps
        if faults.token_latency_ms is not None:
            latency = faults.token_latency_ms / 1000.0
        metrics = TgiMetrics(settings.max_input_tokens, settings.max_total_tokens)
        natural = int(self._env_float("SIM_OUTPUT_TOKENS", 128))
        model_sha, pipeline_tag = self._hub_model_info(env)
        if pipeline_tag is None:
            # router/src/server.rs: without a pipeline tag `/` returns the full text.
            log.router(
                "WARN",
                "text_generation_router::server router/src/server.rs:1684",
                f"no pipeline tag found for model {a['model_id']}",
            )

        config = uvicorn.Config(
            app=None,  # type: ignore[arg-type]  # set below once the loop exists
            host=host,
            port=port,
            loop="auto",
            http="auto",
            lifespan="off",
            access_log=False,
            log_config=None,
            log_level="warning",
            server_header=False,
            date_header=True,
            backlog=2048,
            timeout_keep_alive=600,
            timeout_graceful_shutdown=a["graceful_termination_timeout"],
        )

        async def main() -> int:
            engine = Engine(
                metrics,
                token_latency=latency,
                prefill_tokens_per_second=self._env_float("SIM_PREFILL_TOKENS_PER_SECOND", 20000),
                max_batch_total_tokens=settings.max_batch_total_tokens,
                max_batch_prefill_tokens=settings.max_batch_prefill_tokens,
                max_batch_size=a["max_batch_size"],
                waiting_served_ratio=a["waiting_served_ratio"],
                max_waiting_tokens=a["max_waiting_tokens"],
                supports_chunking=settings.supports_chunking,
                error_rate=faults.error_rate,
            )
            engine.start()
            app = Simulator(
                settings,
                engine,
                metrics,
                token_model,
                faults,
                log,
                version=VERSION,
                git_sha=GIT_SHA,
                docker_label=DOCKER_LABEL,
                model_sha=model_sha,
                pipeline_tag=pipeline_tag,
                natural_tokens=natural,
                compute_type=env.get("COMPUTE_TYPE", "gpu+optimized"),
            )
            config.app = app
            server = _make_server(config, self)
            crashed: list[bool] = []

            async def flusher() -> None:
                while True:
                    await asyncio.sleep(0.25)
                    log.flush()

            async def crash_later(after: float) -> None:
                await asyncio.sleep(after)
                log.error(
                    "Shard complete standard error output:\n\nRuntimeError: simulated crash",
                    span="shard-manager",
                    fields="rank=0",
                )
                log.error("Shard 0 crashed")
                crashed.append(True)
                server.should_exit = True
                server.force_exit = True

            loop = asyncio.get_running_loop()
            tasks = [loop.create_task(flusher())]
            if faults.crash_after is not None:
                tasks.append(loop.create_task(crash_later(faults.crash_after)))
            log.router(
                "INFO", "text_generation_router::server router/src/server.rs:2418", "Connected"
            )
            await server.serve()
            for t in tasks:
                t.cancel()
            if crashed:
                log.info("Terminating webserver")
                log.info("Shutting down shards")
                return self._fail(1, "ShardFailed")
            return 0

        if self.stop_requested:
            raise _Stop
        loop_factory = config.get_loop_factory()
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            code = runner.run(main())
        if code == 0:
            log.info("webserver terminated")
            log.info("Shutting down shards")
            for rank in range(settings.num_shard):
                log.info("Terminating shard", span="shard-manager", fields=f"rank={rank}")
                log.info("shard terminated", span="shard-manager", fields=f"rank={rank}")
        log.flush()
        return code


def _download_traceback(exc: BaseException | None, model_id: str, revision: str | None) -> str:
    """What ``download-weights`` prints to stderr when it fails; the launcher relays it.

    Offline with nothing cached, server/text_generation_server/cli.py finds no .safetensors,
    falls back to PyTorch weights, and utils/hub.py ``weight_hub_files`` (offline: cached files
    only) raises EntryNotFoundError "No .bin weights found ..."."""
    from devstack.model_files import MissingWeights

    head = (
        "Traceback (most recent call last):\n"
        '  File "/opt/conda/bin/text-generation-server", line 8, in <module>\n'
        "    sys.exit(app())\n"
    )
    if isinstance(exc, MissingWeights) or exc is None:
        return (
            head + '  File "/usr/src/server/text_generation_server/cli.py", line 281, in '
            "download_weights\n"
            '    pt_filenames = utils.weight_hub_files(model_id, revision, ".bin")\n'
            '  File "/usr/src/server/text_generation_server/utils/hub.py", line 83, in '
            "weight_hub_files\n"
            "    raise EntryNotFoundError(\n"
            "huggingface_hub.errors.EntryNotFoundError: "
            f"No .bin weights found for model {model_id} and revision {revision}."
        )
    # Online: the Hub lookup itself failed (unreachable, gated, unknown revision...).
    return (
        head + '  File "/usr/src/server/text_generation_server/cli.py", line 252, in '
        "download_weights\n"
        "    filenames = utils.weight_hub_files(model_id, revision, extension)\n"
        '  File "/usr/src/server/text_generation_server/utils/hub.py", line 77, in '
        "weight_hub_files\n"
        "    info = api.model_info(model_id, revision=revision)\n"
        f"{type(exc).__module__}.{type(exc).__qualname__}: {exc}"
    )


def _make_server(config: Any, launcher: Launcher) -> Any:
    """uvicorn.Server that does not re-raise the signal after a graceful stop (TGI exits 0)."""
    import uvicorn

    class Server(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            def handler(signum: int, frame: FrameType | None) -> None:
                if not self.should_exit:
                    launcher.log.router(
                        "INFO",
                        "text_generation_router::server router/src/server.rs:2500",
                        "signal received, starting graceful shutdown",
                    )
                    launcher.log.info("Terminating webserver")
                    launcher.log.info("Waiting for webserver to gracefully shutdown")
                self.handle_exit(signum, frame)

            originals = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
            try:
                yield
            finally:
                for s, h in originals.items():
                    signal.signal(s, h)

    if launcher.stop_requested:
        raise _Stop
    return Server(config)


def main(argv: Sequence[str] | None = None) -> int:
    launcher = Launcher(sys.argv[1:] if argv is None else argv)
    try:
        return launcher.run()
    except SystemExit as exc:
        # --help / --version print and exit 0.
        if isinstance(exc.code, str):
            print(exc.code)
            return 0
        raise

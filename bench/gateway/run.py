"""Benchmark: the portal's OpenAI gateway against a direct connection and LiteLLM's proxy.

One run measures, per inference engine (``--engine``, repeatable; default every engine of
``engines.ENGINES``, one after the other), on this machine and against that engine's simulator:

* ``direct``  — the simulator's own OpenAI route (``/v1/chat/completions``), no proxy;
* ``litellm`` — LiteLLM's proxy (PyPI, own virtualenv) with one model entry pointing at the
  backend, one key (the master key) and a model-level rpm limit;
* ``gateway`` — ``python -m gateway`` with one gateway key limited to the same rpm, routing to
  the portal deployment's pod that it discovers through EndpointSlices.

Measurements: sequential latency (p50/p95/p99, the targets interleaved request by request, so
all see the same machine), added latency = p50(proxy) − p50(direct), and throughput (requests/s
with C concurrent clients for T seconds, one target after the other); each non-streaming and
streaming. Results go to ``bench/results/gateway-vs-litellm.json``, one section per engine
under ``engines`` (each with its own verdict), and a table is printed.

Backends (``--backend``):

* ``portal`` — one bench database (``portal_bench_gateway``); per engine a bench tenant, model
  and deployment created through the portal's services, rolled out on the local cluster by a
  Celery worker, with the simulator's per-token latency set to 0 through the
  ``sim.inference.portal/faults`` pod annotation; the direct path and LiteLLM use the pod IP
  read from the deployment's EndpointSlice. The engine's namespace is deleted before the next
  engine starts. Needed for the gateway.
* ``local`` — the engine's simulator started here on a loopback port (direct and LiteLLM only),
  with the container command the portal renders for the engine. Like a serving pod it runs
  offline (``HF_HUB_OFFLINE=1``) from a Hub cache filled beforehand from the local Hub
  (``devstack.hub``) by the weight-download Job's own code (``models_registry.download_weights``),
  under ``var/bench/gateway/hub-cache`` (kept between runs).
* ``auto`` (default) — ``portal`` when ``gateway/__main__.py`` exists, else ``local``.

Run: .venv/bin/python -m bench.gateway.run   (first: bash bench/gateway/setup_litellm.sh)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bench.gateway.load import Target, measure_latency, measure_throughput
from engines import ENGINES

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "bench" / "results" / "gateway-vs-litellm.json"
WORKDIR = ROOT / "var" / "bench" / "gateway"
LITELLM_VENV = Path(os.environ.get("LITELLM_VENV", ROOT / "var" / "bench" / "litellm-venv"))
SETUP_LITELLM = ROOT / "bench" / "gateway" / "setup_litellm.sh"
GATEWAY_MAIN = ROOT / "gateway" / "__main__.py"
BENCH_DB = "portal_bench_gateway"
HUB_CACHE = WORKDIR / "hub-cache"  # the local backend's weights volume, kept between runs

MODEL_ID = "mistralai/Mistral-7B-Instruct-v0.3"
DEPLOYMENT_NAME = "chat"
# The limiters are on (every request is counted) but never refuse during a run.
RPM_LIMIT = 1_000_000
TPM_LIMIT = 1_000_000_000
LITELLM_MASTER_KEY = "sk-bench-litellm-master"
SIM_FAST_FAULTS = "token_latency_ms=0"  # the simulator answers at once: proxies dominate
WORKERS = 1  # server processes per proxy: 2 cores here are shared by backend, proxy and load

Runner = Callable[[], Any]


@dataclass
class Backend:
    """The engine's simulator every target ends up at."""

    url: str  # http://host:port, no path
    model: str  # the model id the engine serves
    kind: str
    portal: PortalBench | None = None


# Per engine name, a context manager yielding that engine's backend.
BackendFactory = Callable[[str], AbstractContextManager[Backend]]


@dataclass
class PortalBench:
    """What the gateway target needs from the portal side."""

    tenant: Any
    actor: Any
    deployment: Any
    env: dict[str, str]


@dataclass
class Run:
    targets: list[Target] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)


# --- processes ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def http_ok(url: str, headers: dict[str, str] | None = None, body: bytes | None = None) -> bool:
    request = urllib.request.Request(url, data=body, headers=headers or {})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=5) as response:  # noqa: S310
            return 200 <= response.status < 300
    except (urllib.error.URLError, OSError):
        return False


@contextlib.contextmanager
def process(
    name: str,
    argv: list[str],
    *,
    ready: Callable[[], bool],
    env: dict[str, str] | None = None,
    unset: tuple[str, ...] = (),
    timeout: float = 120,
    cwd: Path = ROOT,
) -> Iterator[subprocess.Popen[bytes]]:
    """Start ``argv`` in its own session, logging to var/bench/gateway/<name>.log, with this
    environment plus ``env`` less ``unset``; wait until ``ready()``; on exit SIGTERM its
    process group (SIGKILL after 10 s)."""
    environ = {k: v for k, v in {**os.environ, **(env or {})}.items() if k not in unset}
    WORKDIR.mkdir(parents=True, exist_ok=True)
    log_path = WORKDIR / f"{name}.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=environ,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            started = time.monotonic()
            while not ready():
                if proc.poll() is not None:
                    tail = log_path.read_text(errors="replace")[-3000:]
                    raise SystemExit(f"{name} exited with {proc.returncode}:\n{tail}")
                if time.monotonic() - started > timeout:
                    raise SystemExit(f"{name} not ready after {timeout:.0f} s; see {log_path}")
                time.sleep(0.25)
            print(f"{name} ready after {time.monotonic() - started:.1f} s", flush=True)
            yield proc
        finally:
            _stop(proc)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


def chat_ok(target: Target) -> bool:
    body = json.dumps(
        {"model": target.model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}
    ).encode()
    return http_ok(target.chat_url, target.headers, body)


# --- backends -------------------------------------------------------------------------------


def _fill_hub_cache(hub_url: str, cache: Path) -> str:
    """Download the bench model's current commit from the local Hub into ``cache`` the way the
    weight-download Job does (same module, same layout; a no-op once complete). Its sha."""
    from huggingface_hub import HfApi

    sha = HfApi(endpoint=hub_url, token=False).model_info(MODEL_ID).sha
    assert sha is not None, MODEL_ID
    argv = [sys.executable, "-m", "models_registry.download_weights"]
    argv += ["--repo-id", MODEL_ID, "--revision", sha, "--dest", str(cache)]
    WORKDIR.mkdir(parents=True, exist_ok=True)
    with (WORKDIR / "weights-download.log").open("ab") as log:
        subprocess.run(
            argv,
            cwd=ROOT,
            env={**os.environ, "HF_ENDPOINT": hub_url},
            stdout=log,
            stderr=subprocess.STDOUT,
            check=True,
        )
    return sha


def _set_flag(args: list[str], flag: str, value: str) -> list[str]:
    """``args`` with ``flag``'s value(s) replaced by ``value`` (appended when absent)."""
    out: list[str] = []
    skip = False
    for arg in args:
        if skip:
            skip = False
        elif arg == flag:
            skip = True
        elif not arg.startswith(flag + "="):
            out.append(arg)
    return [*out, flag, value]


def simulator_command(
    engine_name: str, sha: str, cache: Path, port: int
) -> tuple[list[str], dict[str, str]]:
    """argv and environment of ``engine_name``'s simulator serving the bench model on loopback:
    the container the portal renders for the engine, run as the simulated kubelet runs it, with
    the weights volume's mount point (``/data``) mapped to ``cache`` and the port moved."""
    from deployments.rendering import render_colour_deployment
    from deployments.rendering.specs import (
        ModelRevisionSpec,
        OwnerRef,
        ServingSpec,
        TenantSpec,
        TierSpec,
    )
    from devstack.kubelet import runtime
    from engines.base import HUB_CACHE_PATH

    engine = ENGINES[engine_name]
    tier = TierSpec(
        name="a100-80g",
        node_selector={"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"},
        tolerations=[],
        gpu_product="NVIDIA-A100-SXM4-80GB",
        gpu_memory_gib=80,
        gpus_per_replica=1,
        cpu_request="8",
        memory_request="64Gi",
        image=engine.default_image,
    )
    spec = ServingSpec(
        tenant=TenantSpec(slug="bench", namespace="bench", max_gpus=1, max_pods=1),
        deployment_name=DEPLOYMENT_NAME,
        revision_number=1,
        tier=tier,
        model=ModelRevisionSpec(
            repo_id=MODEL_ID, commit_sha=sha, weights_pvc_name="weights", weights_size_bytes=1
        ),
        max_input_tokens=1024,
        max_total_tokens=2048,
        max_batch_prefill_tokens=1074,
        engine=engine,
        owner=OwnerRef("v1", "ConfigMap", "bench", "00000000-0000-0000-0000-000000000000"),
    )
    manifest = render_colour_deployment(spec, "blue")
    container = manifest["spec"]["template"]["spec"]["containers"][0]
    kind = runtime.kind_of(container)
    assert kind is not None, container["image"]

    def mounted(value: str) -> str:  # the weights volume is mounted at HUB_CACHE_PATH
        if value == HUB_CACHE_PATH or value.startswith(HUB_CACHE_PATH + "/"):
            return str(cache) + value[len(HUB_CACHE_PATH) :]
        return value

    env = {
        var["name"]: mounted(var["value"]) for var in container.get("env") or [] if "value" in var
    }
    container = {**container, "args": [mounted(str(a)) for a in container.get("args") or []]}
    argv = runtime.engine_argv(kind, container, env, "127.0.0.1")
    return _set_flag(argv, "--port", str(port)), env


@contextlib.contextmanager
def local_backends() -> Iterator[BackendFactory]:
    """The local Hub running and the bench model in the Hub cache; then per engine a simulator."""
    from devstack.hub.server import running_hub

    with running_hub() as hub_url:
        sha = _fill_hub_cache(hub_url, HUB_CACHE)
        print(f"hub cache: {MODEL_ID}@{sha[:12]} in {HUB_CACHE}", flush=True)

        @contextlib.contextmanager
        def local_backend(engine_name: str) -> Iterator[Backend]:
            port = free_port()
            argv, env = simulator_command(engine_name, sha, HUB_CACHE, port)
            # Offline from the cache (HF_HUB_OFFLINE=1 is in the engine's env), answering at once.
            env |= {"SIM_STARTUP_SECONDS": "0", "SIM_FAULTS": SIM_FAST_FAULTS}
            url = f"http://127.0.0.1:{port}"
            with process(
                f"simulator-{engine_name}",
                argv,
                env=env,
                unset=("HF_ENDPOINT", "HF_TOKEN"),
                ready=lambda: http_ok(url + "/health"),
            ):
                yield Backend(url=url, model=MODEL_ID, kind="local simulator on loopback")

        yield local_backend


def _ready_endpoint(namespace: str, service: str) -> tuple[str, int] | None:
    """The first ready (IP, port) of the Service's EndpointSlices, if any."""
    from kubernetes import client

    from portal import kube

    discovery = client.DiscoveryV1Api(kube.api_client())
    slices = discovery.list_namespaced_endpoint_slice(
        namespace, label_selector=f"kubernetes.io/service-name={service}"
    ).items
    for endpoint_slice in slices:
        port = next((p.port for p in endpoint_slice.ports or [] if p.port), None)
        for endpoint in endpoint_slice.endpoints or []:
            if port and endpoint.conditions and endpoint.conditions.ready:
                return endpoint.addresses[0], port
    return None


@contextlib.contextmanager
def portal_backends() -> Iterator[BackendFactory]:
    """One bench database for the run; per engine a tenant whose deployment runs that engine."""
    from bench.rollouts.common import bench_environment

    with bench_environment(queue="bench-gateway", database=BENCH_DB) as env:
        yield lambda engine_name: portal_backend(env, engine_name)


@contextlib.contextmanager
def portal_backend(env: dict[str, str], engine_name: str) -> Iterator[Backend]:
    from bench.rollouts.common import bench_tenant, worker
    from deployments.admission import ServingRequest
    from deployments.choices import TERMINAL_STATES
    from deployments.models import Rollout, Tier
    from deployments.rendering.serving import active_service_name
    from deployments.services import Promotion, create_deployment
    from deployments.specs import serving_spec
    from devstack.hub import fixtures as hub
    from models_registry import services as registry
    from portal import kube

    namespace = f"bench-gw-{os.getpid()}-{engine_name}"
    tenant, actor = bench_tenant(
        f"bench-gateway-{engine_name}",
        namespace,
        requests_per_minute=RPM_LIMIT,
        tokens_per_minute=TPM_LIMIT,
    )
    model = registry.register_model(actor, tenant, repo_id=hub.MISTRAL_7B_ID)
    request = ServingRequest(
        model=model,
        tier=Tier.objects.get(slug="a100-80g"),
        engine=engine_name,
        max_total_tokens=2048,
        max_input_tokens=1024,
    )
    try:
        # The worker only rolls out: it is stopped before the measurements start.
        with worker(env, WORKDIR / f"celery-worker-{engine_name}.log"):
            deployment, rollout, _ = create_deployment(
                actor,
                tenant,
                name=DEPLOYMENT_NAME,
                request=request,
                promotion=Promotion(scale_down_delay_seconds=0),
                pod_annotations={"sim.inference.portal/faults": SIM_FAST_FAULTS},
            )
            started = time.monotonic()
            while True:
                rollout = Rollout.objects.get(pk=rollout.pk)
                if rollout.state == "completed":
                    break
                if rollout.state in TERMINAL_STATES or time.monotonic() - started > 300:
                    raise SystemExit(f"rollout {rollout.state}: {rollout.failure_reason}")
                time.sleep(0.5)
            print(
                f"{engine_name}: deployment rolled out in {time.monotonic() - started:.1f} s",
                flush=True,
            )
        service = active_service_name(serving_spec(rollout.revision))
        endpoint = None
        while endpoint is None:
            endpoint = _ready_endpoint(namespace, service)
            if endpoint is None:
                time.sleep(0.5)
        ip, port = endpoint
        yield Backend(
            url=f"http://{ip}:{port}",
            model=model.repo_id,
            kind="portal deployment pod on the local cluster (simulated kubelet)",
            portal=PortalBench(tenant=tenant, actor=actor, deployment=deployment, env=env),
        )
    finally:
        kube.delete("v1", "Namespace", namespace)


# --- targets --------------------------------------------------------------------------------


def litellm_version() -> str:
    out = subprocess.run(
        [
            str(LITELLM_VENV / "bin" / "python"),
            "-c",
            "import importlib.metadata as m;print(m.version('litellm'))",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


def litellm_config(backend: Backend) -> dict[str, Any]:
    """One model entry named like the portal deployment, the OpenAI-compatible provider at the
    simulator's /v1, the master key as the only key, an rpm limit enforced per minute by the
    usage-based-routing-v2 strategy (in-memory counter: one worker, no Redis), nothing logged."""
    return {
        "model_list": [
            {
                "model_name": DEPLOYMENT_NAME,
                "litellm_params": {
                    "model": f"openai/{backend.model}",
                    "api_base": f"{backend.url}/v1",
                    "api_key": "dummy",
                    "rpm": RPM_LIMIT,
                },
            }
        ],
        "router_settings": {"routing_strategy": "usage-based-routing-v2"},
        # Do not set `callbacks: []` here: it also unregisters the router's rpm limiter.
        "litellm_settings": {"telemetry": False, "set_verbose": False, "drop_params": True},
        "general_settings": {
            "master_key": LITELLM_MASTER_KEY,
            "disable_spend_logs": True,
            "disable_error_logs": True,
        },
    }


LITELLM_ENV = {
    "LITELLM_LOG": "ERROR",
    "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # no network: do not fetch the price list
    "NO_DOCS": "True",
    "NO_REDOC": "True",
    "DISABLE_ADMIN_UI": "True",
}


@contextlib.contextmanager
def litellm_target(backend: Backend, run: Run) -> Iterator[Target | None]:
    litellm = LITELLM_VENV / "bin" / "litellm"
    if not litellm.exists():
        subprocess.run(["bash", str(SETUP_LITELLM)], check=True)
    WORKDIR.mkdir(parents=True, exist_ok=True)
    config = litellm_config(backend)
    config_path = WORKDIR / "litellm.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    port = free_port()
    target = Target("litellm", f"http://127.0.0.1:{port}/v1", LITELLM_MASTER_KEY, DEPLOYMENT_NAME)
    argv = [str(litellm), "--config", str(config_path), "--host", "127.0.0.1"]
    argv += ["--port", str(port), "--num_workers", str(WORKERS)]
    run.settings["litellm"] = {
        "version": litellm_version(),
        "command": " ".join(argv[1:]).replace(str(ROOT) + "/", ""),
        "env": LITELLM_ENV,
        "config": config,
        "server": f"uvicorn (LiteLLM's default), {WORKERS} worker",
    }
    with process(
        "litellm",
        argv,
        env=LITELLM_ENV,
        # LiteLLM reads these too: it would want Prisma for the portal's database and use Redis.
        unset=("DATABASE_URL", "REDIS_URL", "CACHE_URL", "REDIS_HOST", "REDIS_PORT"),
        ready=lambda: chat_ok(target),
        cwd=WORKDIR,
    ):
        yield target


@contextlib.contextmanager
def gateway_target(backend: Backend, run: Run) -> Iterator[Target | None]:
    """The portal gateway: a key for the bench deployment, ``python -m gateway`` on a free port.

    Adjust here when the gateway's interface changes (key creation, command line, readiness).
    """
    if not GATEWAY_MAIN.exists():
        run.skipped["gateway"] = "gateway/__main__.py does not exist yet"
        yield None
        return
    if backend.portal is None:
        run.skipped["gateway"] = "needs --backend portal (it routes to portal deployment pods)"
        yield None
        return
    from tenants import services as tenant_services

    bench = backend.portal
    secret = tenant_services.create_gateway_key(
        bench.actor,
        bench.tenant,
        name="bench",
        deployments=[bench.deployment.name],
        requests_per_minute=RPM_LIMIT,
    ).plaintext
    port = free_port()
    target = Target("gateway", f"http://127.0.0.1:{port}/v1", secret, DEPLOYMENT_NAME)
    argv = [sys.executable, "-m", "gateway", "--port", str(port), "--host", "127.0.0.1"]
    argv += ["--log-level", "warning"]  # as LiteLLM's LITELLM_LOG=ERROR: no per-request logs
    run.settings["gateway"] = {
        "command": "python -m gateway --port <port> --host 127.0.0.1 --log-level warning",
        "key": {"requests_per_minute": RPM_LIMIT, "deployments": [DEPLOYMENT_NAME]},
        "tenant_quota": {"requests_per_minute": RPM_LIMIT, "tokens_per_minute": TPM_LIMIT},
        "processes": WORKERS,
    }
    with process("gateway", argv, env=bench.env, ready=lambda: chat_ok(target), timeout=60):
        yield target


# --- the run --------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpu = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kib = 0
    with contextlib.suppress(OSError, ValueError, IndexError):
        mem_kib = int(Path("/proc/meminfo").read_text().split()[1])
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    import aiohttp

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "aiohttp": aiohttp.__version__,
        "commit": commit,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def measure(run: Run, args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for label, stream in (("non_streaming", False), ("streaming", True)):
        print(f"latency, {label}: {args.requests} sequential requests per target...", flush=True)
        latency = asyncio.run(measure_latency(run.targets, args.requests, stream=stream))
        summary = {name: result.summary() for name, result in latency.items()}
        direct = summary["direct"]["p50_ms"]
        for name, values in summary.items():
            if name != "direct":
                values["added_p50_ms"] = round(values["p50_ms"] - direct, 3)
                values["added_p95_ms"] = round(values["p95_ms"] - summary["direct"]["p95_ms"], 3)
        throughput = {}
        for target in run.targets:
            print(
                f"throughput, {label}: {target.name}, {args.concurrency} clients, "
                f"{args.seconds:.0f} s...",
                flush=True,
            )
            throughput[target.name] = asyncio.run(
                measure_throughput(
                    target, concurrency=args.concurrency, seconds=args.seconds, stream=stream
                )
            )
        results[label] = {"latency": summary, "throughput": throughput}
    return results


def verdict(results: dict[str, Any]) -> dict[str, Any]:
    """The issue's targets, on non-streaming requests."""
    numbers = results["non_streaming"]
    latency, throughput = numbers["latency"], numbers["throughput"]
    if "gateway" not in latency or "litellm" not in latency:
        return {}
    gw_rps = throughput["gateway"]["requests_per_second"]
    lt_rps = throughput["litellm"]["requests_per_second"]
    gw_added = latency["gateway"]["added_p50_ms"]
    lt_added = latency["litellm"]["added_p50_ms"]
    return {
        "throughput_ratio_vs_litellm": round(gw_rps / lt_rps, 2) if lt_rps else None,
        "throughput_target_3x_met": bool(lt_rps) and gw_rps >= 3 * lt_rps,
        "added_latency_ratio_vs_litellm": round(gw_added / lt_added, 3) if lt_added else None,
        "added_latency_target_third_met": gw_added <= lt_added / 3,
        "added_p50_under_2ms_met": gw_added < 2.0,
    }


def table(per_engine: dict[str, dict[str, Any]]) -> str:
    lines = [
        "| engine | variant | target | p50 ms | p95 ms | p99 ms | added p50 ms | req/s | errors |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for engine_name, section in per_engine.items():
        for label, numbers in section["results"].items():
            for name, lat in numbers["latency"].items():
                thr = numbers["throughput"][name]
                added = lat.get("added_p50_ms", "—")
                errors = lat["errors"] + thr["errors"]
                lines.append(
                    f"| {engine_name} | {label.replace('_', '-')} | {name} | {lat['p50_ms']:.2f} | "
                    f"{lat['p95_ms']:.2f} | {lat['p99_ms']:.2f} | {added} | "
                    f"{thr['requests_per_second']:.0f} | {errors} |"
                )
    return "\n".join(lines)


def run_engine(
    engine_name: str, backends: BackendFactory, args: argparse.Namespace
) -> dict[str, Any]:
    """Every target against ``engine_name``'s backend; that engine's section of the results."""
    run = Run()
    with contextlib.ExitStack() as stack:
        backend = stack.enter_context(backends(engine_name))
        print(f"{engine_name}: backend {backend.url} ({backend.kind})", flush=True)
        run.targets.append(Target("direct", f"{backend.url}/v1", "none", backend.model))
        if not args.no_litellm:
            target = stack.enter_context(litellm_target(backend, run))
            if target is not None:
                run.targets.append(target)
        target = stack.enter_context(gateway_target(backend, run))
        if target is not None:
            run.targets.append(target)
        for name, why in run.skipped.items():
            print(f"SKIPPED {name}: {why}", flush=True)
        results = measure(run, args)
    return {
        "backend": {
            "kind": backend.kind,
            "engine": engine_name,
            "image": ENGINES[engine_name].default_image,
            "model": backend.model,
            "faults": SIM_FAST_FAULTS,
        },
        "settings": {"server_processes_per_proxy": WORKERS, **run.settings},
        "skipped": run.skipped,
        "results": results,
        "targets": verdict(results),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=("auto", "portal", "local"), default="auto")
    parser.add_argument(
        "--engine",
        action="append",
        choices=list(ENGINES),
        help="engine to measure (repeatable); default: every engine, one after the other",
    )
    parser.add_argument("--requests", type=int, default=2000, help="sequential, per target")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10.0, help="throughput window")
    parser.add_argument("--no-litellm", action="store_true")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    engines = list(dict.fromkeys(args.engine or ENGINES))
    kind = args.backend
    if kind == "auto":
        kind = "portal" if GATEWAY_MAIN.exists() else "local"
    per_engine: dict[str, dict[str, Any]] = {}
    with portal_backends() if kind == "portal" else local_backends() as backends:
        for engine_name in engines:
            per_engine[engine_name] = run_engine(engine_name, backends, args)
    output = {
        "benchmark": "gateway added latency and throughput vs direct and LiteLLM proxy",
        "machine": machine(),
        "load": {
            "client": "bench/gateway/load.py (asyncio + aiohttp, keep-alive)",
            "prompt": "one short user message, max_tokens cycling 1..4",
            "latency_requests_per_target": args.requests,
            "latency_order": "interleaved: request i goes to every target before i + 1",
            "throughput_concurrency": args.concurrency,
            "throughput_seconds": args.seconds,
            "throughput_warmup_seconds": 2.0,
            "engine_order": "one engine after the other, in this order: " + ", ".join(engines),
        },
        # Per engine: backend, settings, skipped, results and targets (the verdict).
        "engines": per_engine,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(output, indent=2) + "\n")
    print(table(per_engine))
    verdicts = {name: section["targets"] for name, section in per_engine.items()}
    if any(verdicts.values()):
        print(json.dumps(verdicts, indent=2))
    shown = args.output.relative_to(ROOT) if args.output.is_relative_to(ROOT) else args.output
    print(f"written: {shown}")


if __name__ == "__main__":
    main()

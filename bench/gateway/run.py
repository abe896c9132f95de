"""Benchmark: the portal's OpenAI gateway against a direct connection and LiteLLM's proxy.

One run measures, on this machine and against the same TGI simulator backend:

* ``direct``  — the simulator's own OpenAI route (``/v1/chat/completions``), no proxy;
* ``litellm`` — LiteLLM's proxy (PyPI, own virtualenv) with one model entry pointing at the
  backend, one key (the master key) and a model-level rpm limit;
* ``gateway`` — ``python -m gateway`` with one gateway key limited to the same rpm, routing to
  the portal deployment's pod that it discovers through EndpointSlices.

Measurements: sequential latency (p50/p95/p99, the targets interleaved request by request, so
all see the same machine), added latency = p50(proxy) − p50(direct), and throughput (requests/s
with C concurrent clients for T seconds, one target after the other); each non-streaming and
streaming. Results go to ``bench/results/gateway-vs-litellm.json`` and a table is printed.

Backends (``--backend``):

* ``portal`` — a bench tenant, model and deployment are created through the portal's services in
  a separate bench database (``portal_bench_gateway``), rolled out on the local cluster by a
  Celery worker, with the simulator's per-token latency set to 0 through the
  ``sim.inference.portal/faults`` pod annotation; the direct path and LiteLLM use the pod IP read
  from the deployment's EndpointSlice. Needed for the gateway.
* ``local`` — a simulator started here on a loopback port (direct and LiteLLM only).
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from bench.gateway.load import Target, measure_latency, measure_throughput

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "bench" / "results" / "gateway-vs-litellm.json"
WORKDIR = ROOT / "var" / "bench" / "gateway"
LITELLM_VENV = Path(os.environ.get("LITELLM_VENV", ROOT / "var" / "bench" / "litellm-venv"))
SETUP_LITELLM = ROOT / "bench" / "gateway" / "setup_litellm.sh"
GATEWAY_MAIN = ROOT / "gateway" / "__main__.py"
BENCH_DB = "portal_bench_gateway"

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
    """The TGI simulator every target ends up at."""

    url: str  # http://host:port, no path
    model: str  # the model id TGI serves
    kind: str
    portal: PortalBench | None = None


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


@contextlib.contextmanager
def local_backend() -> Iterator[Backend]:
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "devstack.tgi_simulator",
        "--model-id",
        MODEL_ID,
        "--hostname",
        "127.0.0.1",
        "--port",
        str(port),
        "--max-input-tokens",
        "1024",
        "--max-total-tokens",
        "2048",
        "--max-batch-prefill-tokens",
        "1074",
    ]
    env = {
        "HF_HUB_OFFLINE": "1",
        "SIM_STARTUP_SECONDS": "0",
        "SIM_FAULTS": SIM_FAST_FAULTS,
        "PROMETHEUS_PORT": str(free_port()),
    }
    url = f"http://127.0.0.1:{port}"
    with process("simulator", argv, env=env, ready=lambda: http_ok(url + "/health")):
        yield Backend(url=url, model=MODEL_ID, kind="local simulator on loopback")


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
def portal_backend() -> Iterator[Backend]:
    from bench.rollouts.common import bench_environment, bench_tenant, worker

    with bench_environment(queue="bench-gateway", database=BENCH_DB) as env:
        from deployments.admission import ServingRequest
        from deployments.choices import TERMINAL_STATES
        from deployments.models import Rollout, Tier
        from deployments.services import Promotion, create_deployment
        from devstack.hub import fixtures as hub
        from models_registry import services as registry
        from portal import kube

        namespace = f"bench-gw-{os.getpid()}"
        tenant, actor = bench_tenant(
            "bench-gateway",
            namespace,
            requests_per_minute=RPM_LIMIT,
            tokens_per_minute=TPM_LIMIT,
        )
        model = registry.register_model(actor, tenant, repo_id=hub.MISTRAL_7B_ID)
        request = ServingRequest(
            model=model,
            tier=Tier.objects.get(slug="a100-80g"),
            max_total_tokens=2048,
            max_input_tokens=1024,
        )
        try:
            with worker(env, WORKDIR / "celery-worker.log"):
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
                print(f"deployment rolled out in {time.monotonic() - started:.1f} s", flush=True)
            endpoint = None
            while endpoint is None:
                endpoint = _ready_endpoint(namespace, f"tgi-{DEPLOYMENT_NAME}")
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


def table(results: dict[str, Any]) -> str:
    lines = [
        "| variant | target | p50 ms | p95 ms | p99 ms | added p50 ms | req/s | errors |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for label, numbers in results.items():
        for name, lat in numbers["latency"].items():
            thr = numbers["throughput"][name]
            added = lat.get("added_p50_ms", "—")
            errors = lat["errors"] + thr["errors"]
            lines.append(
                f"| {label.replace('_', '-')} | {name} | {lat['p50_ms']:.2f} | "
                f"{lat['p95_ms']:.2f} | {lat['p99_ms']:.2f} | {added} | "
                f"{thr['requests_per_second']:.0f} | {errors} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backend", choices=("auto", "portal", "local"), default="auto")
    parser.add_argument("--requests", type=int, default=2000, help="sequential, per target")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10.0, help="throughput window")
    parser.add_argument("--no-litellm", action="store_true")
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    kind = args.backend
    if kind == "auto":
        kind = "portal" if GATEWAY_MAIN.exists() else "local"
    run = Run()
    with contextlib.ExitStack() as stack:
        backend = stack.enter_context(portal_backend() if kind == "portal" else local_backend())
        print(f"backend: {backend.url} ({backend.kind})", flush=True)
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
    output = {
        "benchmark": "gateway added latency and throughput vs direct and LiteLLM proxy",
        "machine": machine(),
        "backend": {"kind": backend.kind, "model": backend.model, "faults": SIM_FAST_FAULTS},
        "load": {
            "client": "bench/gateway/load.py (asyncio + aiohttp, keep-alive)",
            "prompt": "one short user message, max_tokens cycling 1..4",
            "latency_requests_per_target": args.requests,
            "latency_order": "interleaved: request i goes to every target before i + 1",
            "throughput_concurrency": args.concurrency,
            "throughput_seconds": args.seconds,
            "throughput_warmup_seconds": 2.0,
        },
        "settings": {"server_processes_per_proxy": WORKERS, **run.settings},
        "skipped": run.skipped,
        "results": results,
        "targets": verdict(results),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(output, indent=2) + "\n")
    print(table(results))
    if output["targets"]:
        print(json.dumps(output["targets"], indent=2))
    shown = args.output.relative_to(ROOT) if args.output.is_relative_to(ROOT) else args.output
    print(f"written: {shown}")


if __name__ == "__main__":
    main()

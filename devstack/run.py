"""Run the portal's processes together in the foreground: `python -m devstack.run`.

Web server, Celery worker, Celery beat, and the local Hub when it exists. Output is prefixed with
each process's name; Ctrl-C (or any process exiting) stops them all.
"""

from __future__ import annotations

import importlib.util
import os
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

from devstack.cluster import config as cluster_config
from devstack.kubelet.provisioner import SHARED as SHARED_CLASS

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
# Where the devstack Prometheus scrapes them (devstack/cluster/prometheus.py): one setting.
HOST = cluster_config.HOST


def _runnable(package: str) -> bool:
    """True when `python -m package` would run (the package and its __main__ exist)."""
    try:
        return importlib.util.find_spec(f"{package}.__main__") is not None
    except ModuleNotFoundError:
        return False


def _commands() -> dict[str, list[str]]:
    commands = {
        "web": [
            PY,
            "manage.py",
            "runserver",
            f"{HOST}:{cluster_config.PORTAL_WEB_PORT}",
            "--noreload",
        ],
        "worker": [PY, "-m", "celery", "-A", "portal", "worker", "-l", "info", "-c", "2"],
        "beat": [
            PY,
            "-m",
            "celery",
            "-A",
            "portal",
            "beat",
            "-l",
            "info",
            "-s",
            str(ROOT / "var" / "celerybeat-schedule"),
        ],
    }
    if _runnable("devstack.hub"):
        commands["hub"] = [PY, "-m", "devstack.hub", "--port", "58080"]
    if _runnable("gateway"):  # once the gateway has a server
        commands["gateway"] = [PY, "-m", "gateway", "--port", str(cluster_config.GATEWAY_PORT)]
    return commands


def main() -> int:
    (ROOT / "var").mkdir(exist_ok=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    local_kubeconfig = str(cluster_config.default_layout().kubeconfig)
    if env.get("KUBECONFIG", local_kubeconfig) == local_kubeconfig:
        # The local cluster's pools span two zones: weights go on its ReadWriteMany class, as
        # an operator configures a real multi-zone cluster (README, real clusters).
        env.setdefault("WEIGHTS_STORAGE_CLASS", SHARED_CLASS.name)
    processes: dict[str, subprocess.Popen[bytes]] = {}
    selector = selectors.DefaultSelector()
    for name, command in _commands().items():
        process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        processes[name] = process
        assert process.stdout is not None
        selector.register(process.stdout, selectors.EVENT_READ, name)
    width = max(map(len, processes))
    stopping = False

    def stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    print(
        f"portal: http://{HOST}:{cluster_config.PORTAL_WEB_PORT}  (admin / portal-demo)", flush=True
    )
    while not stopping:
        for key, _ in selector.select(timeout=0.5):
            line = key.fileobj.readline()  # type: ignore[union-attr]
            if line:
                sys.stdout.write(f"{key.data:>{width}} | {line.decode(errors='replace')}")
                sys.stdout.flush()
        exited = [name for name, process in processes.items() if process.poll() is not None]
        if exited:
            print(f"{', '.join(exited)} exited; stopping the others", flush=True)
            break
    for process in processes.values():
        if process.poll() is None:
            process.terminate()
    deadline = time.monotonic() + 10
    for process in processes.values():
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

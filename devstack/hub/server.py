"""Run the local Hub: in this process (:func:`serve`) or as a subprocess (:func:`running_hub`).

:class:`HubControl` drives the ``/_sim/*`` knobs (grants, faults, refs, request log) of a running
server over HTTP, so tests in another process can change its behaviour.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import httpx

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 58080  # docs/PORTS.md
READY_PREFIX = "DEVSTACK_HUB_READY "
REPO_ROOT = Path(__file__).resolve().parents[2]


def serve(host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, log_level: str = "warning") -> None:
    """Serve the fixtures until interrupted. Prints ``DEVSTACK_HUB_READY <url>`` once listening.

    ``port=0`` picks a free port (the ready line tells which).
    """
    import uvicorn

    from devstack.hub.app import create_app

    app = create_app()
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.set_inheritable(True)
    bound_port = sock.getsockname()[1]
    url_host = f"[{host}]" if family == socket.AF_INET6 else host
    url = f"http://{url_host}:{bound_port}"

    config = uvicorn.Config(
        app,
        lifespan="off",
        log_level=log_level,
        access_log=log_level in {"debug", "trace", "info"},
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)

    def announce() -> None:
        while not server.started and not server.should_exit:
            time.sleep(0.01)
        if server.started:
            print(f"{READY_PREFIX}{url}", flush=True)

    threading.Thread(target=announce, daemon=True).start()
    server.run(sockets=[sock])


@contextlib.contextmanager
def running_hub(
    port: int = 0,
    host: str = DEFAULT_HOST,
    startup_timeout: float = 30.0,
    log_level: str = "warning",
) -> Iterator[str]:
    """Start ``python -m devstack.hub`` as a subprocess and yield its base URL.

    ``port=0`` (default) lets the server pick a free loopback port. The subprocess is terminated
    on exit. Its stderr goes to a temporary log file whose tail is reported if startup fails.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    command = [
        sys.executable,
        "-m",
        "devstack.hub",
        "--host",
        host,
        "--port",
        str(port),
        "--log-level",
        log_level,
    ]
    with tempfile.TemporaryFile(mode="w+b") as log:
        proc = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=log,
            stdin=subprocess.DEVNULL,
        )
        try:
            url = _wait_ready(proc, startup_timeout, log)
            yield url
        finally:
            _stop(proc)
            if proc.stdout is not None:
                proc.stdout.close()


def _wait_ready(proc: subprocess.Popen[bytes], timeout: float, log: Any) -> str:
    assert proc.stdout is not None
    found: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            line = raw.decode(errors="replace").strip()
            if line.startswith(READY_PREFIX):
                found.append(line.removeprefix(READY_PREFIX))
                break
        # keep draining so the child never blocks on a full pipe
        for _ in proc.stdout:
            pass

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found:
            url = found[0]
            HubControl(url).health()
            return url
        if proc.poll() is not None:
            break
        time.sleep(0.02)
    _stop(proc)
    log.seek(0)
    tail = log.read()[-4000:].decode(errors="replace")
    raise RuntimeError(f"local Hub did not start (exit code {proc.returncode}):\n{tail}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


class HubControl:
    """Client for the ``/_sim`` endpoints of a running local Hub."""

    def __init__(self, base_url: str, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._timeout = timeout

    def _call(self, method: str, path: str, json: Any = None) -> Any:
        response = httpx.request(method, f"{self.base_url}{path}", json=json, timeout=self._timeout)
        response.raise_for_status()
        return response.json()

    def health(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "/_sim/health")
        return result

    def state(self) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", "/_sim/state")
        return result

    def reset(self) -> None:
        """Back to the fixture defaults: tokens, grants, refs, faults, options, request log."""
        self._call("POST", "/_sim/reset")

    # ---- grants and tokens -----------------------------------------------------------------

    def grant(self, token: str, repo_id: str) -> None:
        self._call("POST", "/_sim/grants", {"token": token, "repo_id": repo_id, "access": True})

    def revoke(self, token: str, repo_id: str) -> None:
        """Take ``repo_id`` away from ``token`` (even if the token was granted "*")."""
        self._call("POST", "/_sim/grants", {"token": token, "repo_id": repo_id, "access": False})

    def add_token(
        self,
        token: str,
        user: str,
        role: str = "read",
        grants: Iterable[str] = (),
        **extra: Any,
    ) -> None:
        payload = {"token": token, "user": user, "role": role, "grants": list(grants), **extra}
        self._call("POST", "/_sim/tokens", payload)

    def delete_token(self, token: str) -> None:
        """Make ``token`` invalid from now on (as if the user deleted it)."""
        self._call("DELETE", f"/_sim/tokens/{token}")

    # ---- faults ----------------------------------------------------------------------------

    def set_faults(
        self,
        *,
        delay_seconds: float = 0.0,
        status: int | None = None,
        path_regex: str | None = None,
        methods: Iterable[str] | None = None,
        times: int | None = None,
        message: str | None = None,
    ) -> dict[str, Any]:
        payload = {
            "delay_seconds": delay_seconds,
            "status": status,
            "path_regex": path_regex,
            "methods": list(methods) if methods is not None else None,
            "times": times,
            "message": message,
        }
        result: dict[str, Any] = self._call("POST", "/_sim/faults", payload)
        return result

    def clear_faults(self) -> None:
        self._call("DELETE", "/_sim/faults")

    # ---- refs, options, request log --------------------------------------------------------

    def move_branch(self, repo_id: str, branch: str, target: str | None) -> None:
        """Point ``branch`` at ``target`` (a sha or any revision); None deletes the branch."""
        self._call("POST", "/_sim/refs", {"repo_id": repo_id, "branch": branch, "target": target})

    def move_tag(self, repo_id: str, tag: str, target: str | None) -> None:
        self._call("POST", "/_sim/refs", {"repo_id": repo_id, "tag": tag, "target": target})

    def set_lfs_redirect(self, enabled: bool) -> None:
        """LFS files answer 302 to a CDN-like URL on the other loopback name, like the Hub."""
        self._call("POST", "/_sim/options", {"lfs_redirect": enabled})

    def requests(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("GET", "/_sim/requests")
        return result

    def clear_requests(self) -> None:
        self._call("DELETE", "/_sim/requests")

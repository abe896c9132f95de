"""Container probes (httpGet, tcpSocket, exec) executed for real against the pod's address."""

from __future__ import annotations

import socket
import subprocess
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass
class ProbeState:
    """Consecutive results and the next due time (monotonic seconds) of one probe."""

    spec: dict[str, Any]
    next_at: float
    successes: int = 0
    failures: int = 0

    @property
    def period(self) -> float:
        return float(self.spec.get("periodSeconds", 10))

    @property
    def timeout(self) -> float:
        return float(self.spec.get("timeoutSeconds", 1))

    @property
    def failure_threshold(self) -> int:
        return int(self.spec.get("failureThreshold", 3))

    @property
    def success_threshold(self) -> int:
        return int(self.spec.get("successThreshold", 1))

    def record(self, ok: bool, now: float) -> None:
        if ok:
            self.successes += 1
            self.failures = 0
        else:
            self.failures += 1
            self.successes = 0
        self.next_at = now + self.period


def resolve_port(port: int | str, container: dict[str, Any]) -> int:
    if isinstance(port, int) or str(port).isdigit():
        return int(port)
    for declared in container.get("ports") or []:
        if declared.get("name") == port:
            return int(declared["containerPort"])
    raise ValueError(f"named port {port} not declared by the container")


def run_probe(
    spec: dict[str, Any], container: dict[str, Any], host: str, pid: int | None
) -> tuple[bool, str]:
    """(success, failure detail worded like the kubelet's Unhealthy events)."""
    timeout = float(spec.get("timeoutSeconds", 1))
    try:
        if "httpGet" in spec:
            action = spec["httpGet"]
            scheme = str(action.get("scheme", "HTTP")).lower()
            target = action.get("host") or host
            port = resolve_port(action["port"], container)
            url = f"{scheme}://{target}:{port}{action.get('path', '/')}"
            headers = {h["name"]: h["value"] for h in action.get("httpHeaders") or []}
            response = httpx.get(
                url,
                headers=headers,
                timeout=timeout,
                verify=False,  # noqa: S501 - kubelet does not verify probe certificates either
                follow_redirects=False,
            )
            if 200 <= response.status_code < 400:
                return True, ""
            return False, f"HTTP probe failed with statuscode: {response.status_code}"
        if "tcpSocket" in spec:
            action = spec["tcpSocket"]
            port = resolve_port(action["port"], container)
            with socket.create_connection((action.get("host") or host, port), timeout=timeout):
                return True, ""
        if "exec" in spec and pid is not None:
            # Inside the container's own mount and network namespaces.
            command = ["nsenter", "-t", str(pid), "-m", "-n", "--", *spec["exec"]["command"]]
            result = subprocess.run(command, capture_output=True, timeout=timeout, check=False)
            return result.returncode == 0, result.stdout.decode(errors="replace")[-200:]
    except httpx.TimeoutException:
        return False, "context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
    except httpx.ConnectError as exc:
        # The kubelet's wording, e.g. while TGI is still loading and the port is unbound.
        target_url = exc.request.url
        default_port = 443 if target_url.scheme == "https" else 80
        where = f"{target_url.host}:{target_url.port or default_port}"
        shown = f"{target_url.scheme}://{where}{target_url.raw_path.decode()}"
        return False, f'Get "{shown}": dial tcp {where}: connect: connection refused'

    except (httpx.HTTPError, OSError, ValueError, subprocess.TimeoutExpired) as exc:
        return False, str(exc) or type(exc).__name__
    return True, ""  # grpc and unknown handlers are not simulated: treated as passing

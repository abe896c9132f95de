"""Container logs: per-instance CRI log files and the kubelet's `/containerLogs` HTTPS endpoint.

The apiserver answers `pods/log` by proxying to
`https://<node address>:<daemonEndpoints.kubeletEndpoint.Port>/containerLogs/<ns>/<pod>/<ctr>`
(pkg/registry/core/pod/strategy.go LogLocation). This server plays the kubelet's side:
pkg/kubelet/server/server.go getContainerLogs picks the pod, kubelet_pods.go
validateContainerLogStatus picks the container instance from the pod status (or refuses with a
400 whose text the apiserver hands to the client), and pkg/kubelet/kuberuntime/logs/logs.go
reads the CRI log file applying tailLines, sinceSeconds/sinceTime, timestamps and limitBytes.
"""

from __future__ import annotations

import contextlib
import logging
import re
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

log = logging.getLogger(__name__)

CONTAINER_ID_PREFIX = "sim://"
FOLLOW_POLL_SECONDS = 0.2
HANDSHAKE_TIMEOUT_SECONDS = 10.0
_RECORD = re.compile(rb"^(\S+) (stdout|stderr) ([PF]) (.*)$", re.DOTALL)


def instance_log(container_dir: Path, instance: int) -> Path:
    """The log of one container instance: <container dir>/<restart count>.log."""
    return container_dir / f"{instance}.log"


def prune_instances(container_dir: Path, keep_from: int) -> None:
    """Keep the current and the previous instance only, as the kubelet's container GC does."""
    for path in container_dir.glob("*.log"):
        number = path.name.split(".", 1)[0]
        if number.isdigit() and int(number) < keep_from:
            path.unlink(missing_ok=True)


class LogRequestError(Exception):
    """Refused with an HTTP status and the kubelet's message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def instance_of(container_id: str | None) -> int | None:
    """The instance number inside our container IDs (sim://<uid>/<container>/<n>)."""
    if not container_id or not container_id.startswith(CONTAINER_ID_PREFIX):
        return None
    tail = container_id.rsplit("/", 1)[-1]
    return int(tail) if tail.isdigit() else None


def select_instance(
    pod_name: str, status: dict[str, Any], container: str, previous: bool
) -> tuple[int | None, bool]:
    """(instance number, running) to read, following validateContainerLogStatus.

    The instance is None for a container this kubelet did not run (KWOK's pods): it has no log.
    """
    statuses = [
        *(status.get("containerStatuses") or []),
        *(status.get("initContainerStatuses") or []),
    ]
    found = next((s for s in statuses if s.get("name") == container), None)
    if found is None:
        raise LogRequestError(400, f'container "{container}" in pod "{pod_name}" is not available')
    state = found.get("state") or {}
    last = (found.get("lastState") or {}).get("terminated")
    waiting, running, terminated = (
        state.get("waiting"),
        state.get("running"),
        state.get("terminated"),
    )
    container_id: str | None
    if previous:
        if not last or not last.get("containerID"):
            raise LogRequestError(
                400, f'previous terminated container "{container}" in pod "{pod_name}" not found'
            )
        container_id = last["containerID"]
    elif running is not None:
        container_id = found.get("containerID")
    elif terminated is not None:
        container_id = terminated.get("containerID") or (last or {}).get("containerID")
        if not container_id:
            raise LogRequestError(400, f'container "{container}" in pod "{pod_name}" is terminated')
    elif last is not None:
        container_id = last.get("containerID")
        if not container_id:
            raise LogRequestError(400, f'container "{container}" in pod "{pod_name}" is terminated')
    elif waiting is not None:
        reason = waiting.get("reason", "")
        raise LogRequestError(
            400, f'container "{container}" in pod "{pod_name}" is waiting to start: {reason}'
        )
    else:
        raise LogRequestError(
            400, f'container "{container}" in pod "{pod_name}" is in an unknown state'
        )
    is_current = not previous and running is not None
    return instance_of(container_id), is_current


# --- reading CRI log files -----------------------------------------------------------------


@dataclass(frozen=True)
class LogOptions:
    """The query of /containerLogs (v1.PodLogOptions as the kubelet receives it)."""

    follow: bool = False
    previous: bool = False
    timestamps: bool = False
    tail_lines: int | None = None
    since: datetime | None = None
    limit_bytes: int | None = None


def _parse_time(value: str) -> datetime | None:
    """CRI/RFC 3339 time with up to nanoseconds (Python keeps microseconds)."""
    match = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)", value)
    if not match:
        return None
    base, fraction, zone = match.groups()
    micro = (fraction or "0")[:6].ljust(6, "0")
    text = f"{base}.{micro}{'+00:00' if zone == 'Z' else zone}"
    return datetime.fromisoformat(text).astimezone(UTC)


def _rfc3339nano(raw: str) -> str:
    """Go's time.RFC3339Nano, which the kubelet prints: trailing zeros of the fraction dropped."""
    match = re.fullmatch(r"(.*T\d\d:\d\d:\d\d)(?:\.(\d+))?Z", raw)
    if not match:
        return raw
    head, fraction = match.groups()
    fraction = (fraction or "").rstrip("0")
    return f"{head}.{fraction}Z" if fraction else f"{head}Z"


def parse_options(query: str) -> LogOptions:
    params = {k: v[-1] for k, v in parse_qs(query, keep_blank_values=True).items()}

    def flag(name: str) -> bool:
        return params.get(name, "false").lower() in ("1", "true")

    def number(name: str) -> int | None:
        raw = params.get(name)
        if not raw:
            return None
        if not raw.lstrip("-").isdigit():
            raise LogRequestError(400, '{"message": "Unable to decode query."}')
        return int(raw)

    tail, since_seconds, limit = number("tailLines"), number("sinceSeconds"), number("limitBytes")
    # pkg/apis/core/validation ValidatePodLogOptions, which the kubelet runs on its query too.
    if tail is not None and tail < 0:
        raise LogRequestError(400, "tailLines: Invalid value: must be greater than or equal to 0")
    if since_seconds is not None and since_seconds < 1:
        raise LogRequestError(400, "sinceSeconds: Invalid value: must be greater than 0")
    if limit is not None and limit < 1:
        raise LogRequestError(400, "limitBytes: Invalid value: must be greater than 0")
    since = None
    if since_seconds is not None:
        since = datetime.fromtimestamp(time.time() - since_seconds, UTC)
    elif params.get("sinceTime"):
        since = _parse_time(params["sinceTime"])
    return LogOptions(
        follow=flag("follow"),
        previous=flag("previous"),
        timestamps=flag("timestamps"),
        tail_lines=tail,
        since=since,
        limit_bytes=limit,
    )


def _render(line: bytes, options: LogOptions) -> bytes | None:
    """One CRI record as the client sees it, or None when filtered out (or not a record)."""
    match = _RECORD.match(line.rstrip(b"\n"))
    if not match:
        return None
    stamp, _stream, tag, content = match.groups()
    if options.since is not None:
        when = _parse_time(stamp.decode())
        if when is not None and when < options.since:
            return None
    prefix = _rfc3339nano(stamp.decode()).encode() + b" " if options.timestamps else b""
    return prefix + content + (b"\n" if tag == b"F" else b"")


def _tail_start(lines: list[bytes], tail: int | None) -> int:
    """Index of the first record of the last `tail` full lines (partials belong to the next)."""
    if tail is None:
        return 0
    if tail == 0:
        return len(lines)
    full = 0
    for index in range(len(lines) - 1, -1, -1):
        match = _RECORD.match(lines[index].rstrip(b"\n"))
        if match and match.group(3) == b"F":
            full += 1
            if full > tail:
                return index + 1
    return 0


def read_log(
    path: Path,
    options: LogOptions,
    write: Callable[[bytes], None],
    still_running: Callable[[], bool] = lambda: False,
) -> None:
    """Write the log's records to `write`; with follow, keep going while the instance runs."""
    budget = options.limit_bytes

    def emit(lines: Iterator[bytes] | list[bytes]) -> bool:
        nonlocal budget
        for line in lines:
            rendered = _render(line, options)
            if rendered is None:
                continue
            if budget is not None:
                rendered = rendered[:budget]
                budget -= len(rendered)
            write(rendered)
            if budget is not None and budget <= 0:
                return False
        return True

    try:
        handle = path.open("rb")
    except FileNotFoundError:
        return  # the instance wrote nothing yet: an empty log, as for a silent container
    with handle:
        lines = handle.readlines()
        pending = b""
        if lines and not lines[-1].endswith(b"\n"):
            pending = lines.pop()  # a record being written right now
        if not emit(lines[_tail_start(lines, options.tail_lines) :]) or not options.follow:
            return
        while True:
            running = still_running()
            chunk = handle.read()
            if chunk:
                data = pending + chunk
                complete, _, pending = data.rpartition(b"\n")
                if complete and not emit(line + b"\n" for line in complete.split(b"\n")):
                    return
            elif not running:
                return
            else:
                time.sleep(FOLLOW_POLL_SECONDS)


# --- the HTTPS endpoint --------------------------------------------------------------------


@dataclass(frozen=True)
class LogTarget:
    """What the server needs to know about one pod: its status and its log folder."""

    pod_name: str
    status: dict[str, Any]
    directory: Path
    is_running: Callable[[str, int], bool]


Lookup = Callable[[str, str], LogTarget | None]


class _Handler(BaseHTTPRequestHandler):
    server: LogServer
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        # The TLS handshake runs here, in the request's thread, with a deadline: a client that
        # connects and stalls must not hold up the accept loop (and every other pods/log).
        self.request.settimeout(HANDSHAKE_TIMEOUT_SECONDS)
        self.request.do_handshake()
        self.request.settimeout(None)
        super().setup()

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("containerLogs %s: " + format, self.client_address[0], *args)

    def _refuse(self, status: int, message: str) -> None:
        body = message.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        parts = [unquote(p) for p in url.path.split("/") if p]
        if len(parts) != 4 or parts[0] != "containerLogs":
            self._refuse(404, "404 page not found")
            return
        _, namespace, pod_name, container = parts
        try:
            options = parse_options(url.query)
            target = self.server.lookup(namespace, pod_name)
            if target is None:
                raise LogRequestError(404, f'pod "{namespace}/{pod_name}" does not exist\n')
            instance, running = select_instance(
                target.pod_name, target.status, container, options.previous
            )
        except LogRequestError as exc:
            self._refuse(exc.status, str(exc))
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

        def write(data: bytes) -> None:
            if data:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.flush()

        with contextlib.suppress(BrokenPipeError, ConnectionResetError, ssl.SSLError):
            if instance is not None:
                read_log(
                    instance_log(target.directory / container, instance),
                    options,
                    write,
                    still_running=lambda: running and target.is_running(container, instance),
                )
            self.wfile.write(b"0\r\n\r\n")


class LogServer(ThreadingHTTPServer):
    """The kubelet's HTTPS port, serving /containerLogs to clients with a CA-signed cert."""

    daemon_threads = True

    def __init__(
        self,
        address: tuple[str, int],
        lookup: Lookup,
        *,
        cert_file: Path,
        key_file: Path,
        client_ca_file: Path | None,
    ) -> None:
        self.lookup = lookup
        super().__init__(address, _Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(cert_file), str(key_file))
        if client_ca_file is not None:
            # As the kubelet with --client-ca-file: x509 client certificates authenticate.
            context.load_verify_locations(str(client_ca_file))
            context.verify_mode = ssl.CERT_REQUIRED
        self.socket = context.wrap_socket(
            self.socket, server_side=True, do_handshake_on_connect=False
        )

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Failed handshakes (no or a foreign client certificate) are the client's problem.
        log.debug("containerLogs: request from %s failed", client_address, exc_info=True)

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.serve_forever, name="containerLogs", daemon=True)
        thread.start()
        return thread

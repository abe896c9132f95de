"""Background process supervision: pid files, health probes and process-group shutdown.

Each component runs in its own session (start_new_session=True) so it survives the CLI that
started it and so `down` can signal the whole process group, children included.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import signal
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from devstack.ports import PortOwner, port_owner

# Popen handles of processes started by this interpreter, so exited children can be reaped
# (otherwise they linger as zombies and would look alive to a /proc check).
_children: dict[int, subprocess.Popen[bytes]] = {}


@dataclass(frozen=True)
class HealthProbe:
    """An HTTP(S) GET that must answer 200 (and optionally contain a marker) to count as healthy."""

    url: str
    ssl_context: ssl.SSLContext | None = None
    expect_in_body: str | None = None

    def check(self, timeout: float = 2.0) -> tuple[bool, str]:
        try:
            # Only our own http(s) loopback URLs are ever probed.
            request = urllib.request.Request(self.url)  # noqa: S310
            with urllib.request.urlopen(request, timeout=timeout, context=self.ssl_context) as r:  # noqa: S310
                body = r.read(4096).decode(errors="replace")
                ok = r.status == 200 and (
                    self.expect_in_body is None or self.expect_in_body in body
                )
                return ok, f"{r.status} {body[:200].strip()}"
        except urllib.error.HTTPError as exc:
            return False, f"{exc.code} {exc.read(300).decode(errors='replace').strip()}"
        except (OSError, ValueError) as exc:
            return False, str(exc)


@dataclass
class ProcessSpec:
    """How to run one long-lived component and how to tell it is healthy."""

    name: str
    argv: Sequence[str]
    log_file: Path
    pid_file: Path
    probes: Sequence[HealthProbe] = ()
    cwd: Path | None = None
    env: dict[str, str] | None = None
    ready_timeout: float = 60.0
    # Substring of /proc/<pid>/cmdline identifying our process (guards against pid reuse).
    identity: str = ""
    extra_ready_check: Callable[[], tuple[bool, str]] | None = field(default=None, repr=False)
    # Without probes, "healthy" means still alive after this many seconds.
    min_uptime: float = 0.0
    # Optional components (the simulated kubelet) only warn when they fail to start.
    required: bool = True
    # Loopback ports it listens on: held while we run nothing means someone else holds them.
    ports: Sequence[int] = ()
    # Files read once at start (e.g. kwok's stages): a change means the process must restart.
    config_files: Sequence[Path] = ()

    def __post_init__(self) -> None:
        if not self.identity:
            self.identity = str(self.argv[0])


def read_cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def is_alive(pid: int) -> bool:
    """True for an existing, non-zombie process."""
    child = _children.get(pid)
    if child is not None and child.poll() is not None:
        _children.pop(pid, None)
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # Field 3 (after the parenthesised command name) is the state; Z = zombie, X = dead.
    state = stat.rsplit(")", 1)[1].split()[0]
    return state not in ("Z", "X")


def running_pid(spec: ProcessSpec) -> int | None:
    """The live pid of this component, or None; clears stale pid files.

    Trusts the pid file only if that process is alive and really ours (pid reuse). Without a
    valid pid file, a process running exactly our command line is adopted, so a lost pid file
    never leads to a second instance fighting over the port.
    """
    try:
        pid: int | None = int(spec.pid_file.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        pid = None
    if pid is not None and is_alive(pid) and spec.identity in " ".join(read_cmdline(pid)):
        return pid
    spec.pid_file.unlink(missing_ok=True)
    wanted = list(spec.argv)
    adopted = find_processes(lambda argv: argv == wanted)
    if adopted:
        # What it read at start is unknown: an unreadable fingerprint restarts it if it has any.
        spec.pid_file.parent.mkdir(parents=True, exist_ok=True)
        spec.pid_file.write_text(
            f"{adopted[0]} unknown\n" if spec.config_files else f"{adopted[0]}\n"
        )
        return adopted[0]
    return None


def config_fingerprint(spec: ProcessSpec) -> str:
    """Digest of the files the process read at start ("-" when it reads none)."""
    if not spec.config_files:
        return "-"
    digest = hashlib.sha256()
    for path in spec.config_files:
        digest.update(str(path).encode() + b"\0")
        with contextlib.suppress(OSError):
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _same_command(running: list[str], wanted: Sequence[str]) -> bool:
    """Same flags; the executable compared by real path (python vs python3 of one venv)."""
    if not running or len(running) != len(wanted):
        return False
    same_binary = os.path.realpath(running[0]) == os.path.realpath(wanted[0])
    return same_binary and running[1:] == list(wanted[1:])


def stale_reason(spec: ProcessSpec, pid: int) -> str | None:
    """Why the running process no longer matches its spec (flags or config changed), or None.

    A cluster started by an older checkout keeps running across `up`s; without this check a
    new flag (or a changed kwok stage) would never take effect until someone ran `down`.
    """
    if not _same_command(read_cmdline(pid), spec.argv):
        return "command line changed"
    try:
        recorded = spec.pid_file.read_text().split()[1:2]
    except OSError:
        recorded = []
    if (recorded[0] if recorded else "-") != config_fingerprint(spec):
        return "configuration changed"
    return None


def _write_pid_file(spec: ProcessSpec, pid: int) -> None:
    spec.pid_file.parent.mkdir(parents=True, exist_ok=True)
    spec.pid_file.write_text(f"{pid} {config_fingerprint(spec)}\n")


def foreign_owner(spec: ProcessSpec) -> PortOwner | None:
    """Whoever holds one of the component's ports while no process of ours runs, else None.

    Call only when running_pid(spec) is None: then any listener is not ours (another checkout's
    cluster, a stray process), and probing it would take it for our component.
    """
    for port in spec.ports:
        owner = port_owner(port)
        if owner is not None:
            return owner
    return None


def foreign_port_error(spec: ProcessSpec, owner: PortOwner) -> RuntimeError:
    return RuntimeError(
        f"{spec.name}: {owner.describe()}. That is not this checkout's {spec.name} "
        f"(pid file {spec.pid_file}), so it is not used. Stop it (in its own checkout: "
        "./dev cluster down) or free the port, then retry."
    )


def check_health(spec: ProcessSpec) -> tuple[bool, str]:
    for probe in spec.probes:
        ok, detail = probe.check()
        if not ok:
            return False, f"{probe.url}: {detail}"
    if spec.extra_ready_check is not None:
        return spec.extra_ready_check()
    return True, "ok"


def start(spec: ProcessSpec) -> int:
    spec.log_file.parent.mkdir(parents=True, exist_ok=True)
    spec.pid_file.parent.mkdir(parents=True, exist_ok=True)
    with spec.log_file.open("ab") as log:
        stamp = datetime.now(UTC).isoformat(timespec="seconds")
        log.write(f"\n===== {stamp} starting: {' '.join(spec.argv)}\n".encode())
        log.flush()
        process = subprocess.Popen(
            list(spec.argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=spec.cwd,
            env=spec.env,
            start_new_session=True,
        )
    _children[process.pid] = process
    _write_pid_file(spec, process.pid)
    return process.pid


def log_tail(path: Path, lines: int = 25) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def wait_healthy(spec: ProcessSpec, pid: int, *, just_started: bool = True) -> None:
    """Poll the probes until healthy; fail early (with the log tail) if the process exits."""
    deadline = time.monotonic() + spec.ready_timeout
    detail = "not probed yet"
    alive_until = time.monotonic() + (spec.min_uptime if just_started else 0.0)
    while time.monotonic() < deadline:
        if not is_alive(pid):
            raise RuntimeError(
                f"{spec.name} exited during startup; last log lines of {spec.log_file}:\n"
                + log_tail(spec.log_file)
            )
        ok, detail = check_health(spec)
        if ok and time.monotonic() >= alive_until:
            return
        time.sleep(0.2)
    raise RuntimeError(
        f"{spec.name} not healthy after {spec.ready_timeout:.0f}s ({detail}); "
        f"last log lines of {spec.log_file}:\n{log_tail(spec.log_file)}"
    )


def ensure_running(spec: ProcessSpec) -> tuple[int, bool]:
    """Start the component unless a healthy instance is running; returns (pid, started_now).

    A running instance whose command line or configuration differs from the spec is restarted.
    """
    pid = running_pid(spec)
    if pid is not None and stale_reason(spec, pid) is not None:
        terminate(pid, grace=15.0)  # the kubelet stops its pods within its grace cap
        spec.pid_file.unlink(missing_ok=True)
        pid = None
    if pid is not None:
        # Possibly still starting (e.g. a concurrent `up`): give it the normal startup window.
        wait_healthy(spec, pid, just_started=False)
        return pid, False
    owner = foreign_owner(spec)
    if owner is not None:
        raise foreign_port_error(spec, owner)
    pid = start(spec)
    wait_healthy(spec, pid)
    return pid, True


def _signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def terminate(pid: int, grace: float = 10.0) -> bool:
    """SIGTERM the process group, SIGKILL after `grace` seconds; True if it had been running."""
    if not is_alive(pid):
        return False
    _signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not is_alive(pid):
            break
        time.sleep(0.1)
    else:
        _signal_group(pid, signal.SIGKILL)
        kill_deadline = time.monotonic() + 5
        while is_alive(pid) and time.monotonic() < kill_deadline:
            time.sleep(0.05)
    child = _children.pop(pid, None)
    if child is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=1)
    return True


def stop(spec: ProcessSpec, grace: float = 10.0) -> bool:
    pid = running_pid(spec)
    stopped = terminate(pid, grace) if pid is not None else False
    spec.pid_file.unlink(missing_ok=True)
    return stopped


def find_processes(matches: Callable[[list[str]], bool]) -> list[int]:
    """Pids of live processes whose argv satisfies `matches` (used to catch strays in `down`)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        if pid == os.getpid():
            continue
        argv = read_cmdline(pid)
        if argv and matches(argv) and is_alive(pid):
            found.append(pid)
    return found


def insecure_tls() -> ssl.SSLContext:
    """For controller-manager/scheduler health endpoints, served with self-signed certs."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def client_tls(ca_file: Path, cert_file: Path, key_file: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca_file))
    context.load_cert_chain(str(cert_file), str(key_file))
    return context


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Exclusive advisory lock, so concurrent `up`s (pytest workers, ./dev) do not race."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)

"""Who holds a loopback port: our own server, or something else (another checkout, a stray process).

Two checkouts on one machine share the same default ports. A port that merely answers proves
nothing about whose server it is, so every port check of the local stack asks which process
listens on it (``/proc/net/tcp`` inode → ``/proc/<pid>/fd``, with ``ss -ltnp`` as a fallback)
and compares that with our own pid files.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

_LISTEN = "0A"  # TCP_LISTEN in /proc/net/tcp's `st` column


def env_port(variable: str, default: int) -> int:
    """A port from the environment (for isolated runs and tests); fails loudly on a bad value."""
    raw = os.environ.get(variable, "").strip()
    if not raw:
        return default
    try:
        port = int(raw)
    except ValueError:
        raise SystemExit(f"{variable}={raw!r} is not a port number") from None
    if not 1 <= port <= 65535:
        raise SystemExit(f"{variable}={port} is outside 1-65535")
    return port


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.3)
        return sock.connect_ex((host, port)) == 0


def _listening_inodes(port: int) -> set[str]:
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state == _LISTEN and int(local.rsplit(":", 1)[1], 16) == port:
                inodes.add(inode)
    return inodes


def _pids_by_proc(inodes: set[str]) -> list[int]:
    wanted = {f"socket:[{inode}]" for inode in inodes}
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fds = list((entry / "fd").iterdir())
        except OSError:
            continue  # gone, or another user's process we may not inspect
        for fd in fds:
            try:
                if os.readlink(fd) in wanted:
                    pids.append(int(entry.name))
                    break
            except OSError:
                continue
    return sorted(pids)


def _pids_by_ss(port: int) -> list[int]:
    if shutil.which("ss") is None:
        return []
    result = subprocess.run(
        ["ss", "-Hltnp", f"sport = :{port}"], capture_output=True, text=True, check=False
    )
    return sorted({int(pid) for pid in re.findall(r"pid=(\d+)", result.stdout)})


def listening_pids(port: int) -> list[int]:
    """Pids holding a listening socket on `port` (empty when free or when we may not look)."""
    inodes = _listening_inodes(port)
    if not inodes:
        return []
    return _pids_by_proc(inodes) or _pids_by_ss(port)


def _argv(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _one_line(argv: list[str]) -> str:
    """The command line on one line (arguments may hold newlines), cut to a readable length."""
    text = " ".join(" ".join(argv).split())
    return text if len(text) <= 240 else text[:239] + "…"


def _cwd(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return ""


def checkout_of(path: str) -> Path | None:
    """The portal checkout holding a path (nearest ancestor with devstack/localservices.py)."""
    if not path.startswith("/"):
        return None
    for candidate in (Path(path), *Path(path).parents):
        if (candidate / "devstack" / "localservices.py").is_file():
            return candidate
    return None


@dataclass(frozen=True)
class PortOwner:
    """The process(es) listening on a port, as far as /proc lets us tell."""

    port: int
    pids: tuple[int, ...]
    cmdline: str
    cwd: str
    checkout: Path | None

    @property
    def pid(self) -> int | None:
        # Forked workers may share the socket; the lowest pid is normally the parent that bound it.
        return self.pids[0] if self.pids else None

    def describe(self) -> str:
        if self.pid is None:
            return (
                f"127.0.0.1:{self.port} is held by a process this user cannot inspect "
                f"(try: sudo ss -ltnp 'sport = :{self.port}')"
            )
        text = f"127.0.0.1:{self.port} is held by pid {self.pid} ({self.cmdline or '?'})"
        if self.cwd:
            text += f", cwd {self.cwd}"
        if self.checkout is not None:
            text += f", checkout {self.checkout}"
        return text


def port_owner(port: int) -> PortOwner | None:
    """Who listens on 127.0.0.1:`port`, or None when nothing does."""
    pids = tuple(listening_pids(port))
    if not pids:
        if not port_open(port):
            return None
        return PortOwner(port, (), "", "", None)
    argv, cwd = _argv(pids[0]), _cwd(pids[0])
    checkout = None
    # Servers name their data folder either as cwd (postgres, redis) or in an argument.
    for path in (cwd, *" ".join(argv).replace("=", " ").split()):
        checkout = checkout_of(path)
        if checkout is not None:
            break
    return PortOwner(port, pids, _one_line(argv), cwd, checkout)

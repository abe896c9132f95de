"""PostgreSQL and Redis for the local stack, in the checkout's var/ folder on loopback ports.

`python -m devstack.localservices up | down [NAME...] | status | running` — idempotent: our own
running server is left alone, a stale pid file is cleaned up, and `down` leaves no process behind.

A port that answers is no proof that the server is ours: another checkout on the same machine
uses the same ports. So every check asks which process listens (devstack/ports.py) and compares it
with our pid file; a port held by anything else is reported naming its owner, `up` refuses it
(exit 1), `status` exits 3, and `down` leaves it alone. `running` prints the names of our own
running servers, so `./dev test` knows what to leave running when it ends.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from devstack.ports import PortOwner, env_port, port_open, port_owner

ROOT = Path(__file__).resolve().parent.parent
VAR = ROOT / "var"
LOG_DIR = VAR / "log"
PG_BIN = Path("/usr/lib/postgresql/15/bin")
PG_DIR = VAR / "postgres"
PG_DATA = PG_DIR / "data"
PG_SOCKET_DIR = PG_DIR / "run"
# Overridable only for isolated runs (e.g. tests of a second checkout); the portal's settings
# (DATABASE_URL, REDIS_URL) keep their own defaults and must then be pointed at the same ports.
PG_PORT = env_port("PORTAL_POSTGRES_PORT", 55432)
REDIS_DIR = VAR / "redis"
REDIS_PID_FILE = REDIS_DIR / "redis.pid"
REDIS_PORT = env_port("PORTAL_REDIS_PORT", 56379)
SERVICES = ("postgres", "redis")
DB_NAME = DB_USER = DB_PASSWORD = "portal"  # noqa: S105 - loopback-only development database


def _pid_from(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


@dataclass(frozen=True)
class PortState:
    """`free`, `ours` (our own server listens) or `foreign` (anything else; `owner` says what)."""

    kind: str
    owner: PortOwner | None = None


def _port_state(port: int, our_pid: int | None, server_is_ours: Callable[[], bool]) -> PortState:
    owner = port_owner(port)
    if owner is None:
        return PortState("free")
    if owner.pids:
        return PortState("ours" if our_pid in owner.pids else "foreign", owner)
    # The listener's pid is hidden from us (another user's process): ask the server itself.
    return PortState("ours" if server_is_ours() else "foreign", owner)


def _foreign_error(name: str, state: PortState, ours: str) -> SystemExit:
    owner = state.owner.describe() if state.owner else "the port is held by another process"
    return SystemExit(
        f"{name}: {owner}. That is not this checkout's server ({ours}), so it is not used. "
        "Stop it (in its own checkout: ./dev down) or free the port, then retry."
    )


def _wait_ours(name: str, port: int, state: Callable[[], PortState], ours: str) -> None:
    deadline = time.monotonic() + 30
    current = state()
    while current.kind != "ours" and time.monotonic() < deadline:
        time.sleep(0.2)
        current = state()
    if current.kind == "foreign":
        raise _foreign_error(name, current, ours)
    if current.kind != "ours":
        raise SystemExit(f"{name} did not open 127.0.0.1:{port} within 30s; see {LOG_DIR}")


def _as_postgres(
    *command: str | os.PathLike[str], check: bool = True
) -> subprocess.CompletedProcess[str]:
    # PostgreSQL refuses to run as root, so the server runs as Debian's `postgres` user.
    prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    return subprocess.run(
        [*prefix, *map(str, command)], check=check, text=True, capture_output=True
    )


@dataclass
class Status:
    name: str
    state: str  # running | stopped | foreign
    detail: str

    @property
    def running(self) -> bool:
        return self.state == "running"


def _postgres_reports_our_data() -> bool:
    result = _as_postgres(
        "psql", "-h", "127.0.0.1", "-p", str(PG_PORT), "-U", "postgres", "-d", "postgres",
        "-tAc", "SHOW data_directory", check=False,
    )  # fmt: skip
    reported = result.stdout.strip()
    return result.returncode == 0 and bool(reported) and Path(reported).resolve() == PG_DATA


def postgres_state() -> PortState:
    return _port_state(PG_PORT, _pid_from(PG_DATA / "postmaster.pid"), _postgres_reports_our_data)


def postgres_up() -> None:
    # Checked before anything is written: never initialise roles in another checkout's server.
    state = postgres_state()
    if state.kind == "foreign":
        raise _foreign_error("postgres", state, f"data={PG_DATA}")
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    PG_SOCKET_DIR.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        shutil.chown(PG_DIR, "postgres", "postgres")
        shutil.chown(PG_SOCKET_DIR, "postgres", "postgres")
        os.chmod(LOG_DIR, 0o777)  # noqa: S103 - the postgres user writes its log here
    if not (PG_DATA / "PG_VERSION").exists():
        print("postgres: initialising a new cluster in var/postgres/data", flush=True)
        _as_postgres(
            PG_BIN / "initdb", "-D", PG_DATA, "-U", "postgres", "--auth=trust", "-E", "UTF8"
        )
    if state.kind == "free":
        pid_file = PG_DATA / "postmaster.pid"
        if (
            pid_file.exists()
            and _as_postgres(PG_BIN / "pg_ctl", "status", "-D", PG_DATA, check=False).returncode
            != 0
        ):
            pid_file.unlink()  # left by a killed server; pg_ctl would refuse to start
        options = f"-c listen_addresses=127.0.0.1 -p {PG_PORT} -k {PG_SOCKET_DIR} -c fsync=off"
        _as_postgres(
            PG_BIN / "pg_ctl",
            "start",
            "-D",
            PG_DATA,
            "-w",
            "-l",
            LOG_DIR / "postgres.log",
            "-o",
            options,
        )
    _wait_ours("postgres", PG_PORT, postgres_state, f"data={PG_DATA}")
    _ensure_database()


def _psql(sql: str, database: str = "postgres") -> str:
    # Only ever called with this module's own constants, never with outside input.
    result = _as_postgres(
        "psql",
        "-h",
        "127.0.0.1",
        "-p",
        str(PG_PORT),
        "-U",
        "postgres",
        "-d",
        database,
        "-tAc",
        sql,
    )
    return result.stdout.strip()


def _ensure_database() -> None:
    if _psql(f"SELECT 1 FROM pg_roles WHERE rolname='{DB_USER}'") != "1":  # noqa: S608
        # CREATEDB lets pytest-django create and drop its test database.
        _psql(f"CREATE ROLE {DB_USER} LOGIN CREATEDB PASSWORD '{DB_PASSWORD}'")
    if _psql(f"SELECT 1 FROM pg_database WHERE datname='{DB_NAME}'") != "1":  # noqa: S608
        _psql(f"CREATE DATABASE {DB_NAME} OWNER {DB_USER}")


def postgres_down() -> None:
    # pg_ctl addresses the server by our data directory, so it never stops another checkout's.
    if (PG_DATA / "postmaster.pid").exists():
        _as_postgres(PG_BIN / "pg_ctl", "stop", "-D", PG_DATA, "-m", "fast", "-w", check=False)


def _redis_reports_our_dir() -> bool:
    result = subprocess.run(
        ["redis-cli", "-p", str(REDIS_PORT), "CONFIG", "GET", "dir"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    lines = result.stdout.split()
    return len(lines) == 2 and Path(lines[1]).resolve() == REDIS_DIR.resolve()


def redis_state() -> PortState:
    return _port_state(REDIS_PORT, _pid_from(REDIS_PID_FILE), _redis_reports_our_dir)


def redis_up() -> None:
    state = redis_state()
    if state.kind == "foreign":
        raise _foreign_error("redis", state, f"dir={REDIS_DIR}")
    if state.kind == "ours":
        return
    REDIS_DIR.mkdir(parents=True, exist_ok=True)
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            "redis-server",
            "--bind",
            "127.0.0.1",
            "--port",
            str(REDIS_PORT),
            "--daemonize",
            "yes",
            "--dir",
            str(REDIS_DIR),
            "--pidfile",
            str(REDIS_PID_FILE),
            "--logfile",
            str(LOG_DIR / "redis.log"),
            # The broker is not a database here: state lives in PostgreSQL, so no persistence.
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        check=True,
    )
    _wait_ours("redis", REDIS_PORT, redis_state, f"dir={REDIS_DIR}")


def redis_down() -> None:
    state = redis_state()
    if state.kind == "foreign" and state.owner is not None:
        # Never shut down a server this checkout did not start.
        print(f"redis: left alone: {state.owner.describe()}", flush=True)
    elif state.kind == "ours":
        subprocess.run(
            ["redis-cli", "-p", str(REDIS_PORT), "shutdown", "nosave"],
            check=False,
            capture_output=True,
        )
        deadline = time.monotonic() + 10
        while port_open(REDIS_PORT) and time.monotonic() < deadline:
            time.sleep(0.1)
    REDIS_PID_FILE.unlink(missing_ok=True)


def _status(name: str, state: PortState, port: int, ours: str) -> Status:
    if state.kind == "foreign":
        owner = state.owner.describe() if state.owner else f"127.0.0.1:{port} is held"
        return Status(name, "foreign", f"{owner}; not this checkout's server ({ours})")
    if state.kind == "ours":
        pid = state.owner.pid if state.owner else None
        return Status(name, "running", f"127.0.0.1:{port} pid {pid or '?'} {ours}")
    return Status(name, "stopped", f"127.0.0.1:{port} {ours}")


def status() -> list[Status]:
    return [
        _status("postgres", postgres_state(), PG_PORT, f"data={PG_DATA}"),
        _status("redis", redis_state(), REDIS_PORT, f"dir={REDIS_DIR}"),
    ]


def up() -> None:
    postgres_up()
    redis_up()


def down(names: tuple[str, ...] = SERVICES) -> None:
    if "redis" in names:
        redis_down()
    if "postgres" in names:
        postgres_down()


USAGE = "usage: python -m devstack.localservices up | down [postgres] [redis] | status | running"


def main(argv: list[str]) -> int:
    command, names = (argv[0], tuple(argv[1:])) if argv else ("status", ())
    if command == "running":
        print("\n".join(item.name for item in status() if item.running))
        return 0
    try:
        if command == "up" and not names:
            up()
        elif command == "down" and set(names) <= set(SERVICES):
            down(names or SERVICES)
        elif command != "status" or names:
            print(USAGE, file=sys.stderr)
            return 2
    except SystemExit as exc:
        if isinstance(exc.code, str):
            print(f"error: {exc.code}", file=sys.stderr)
            return 1
        raise
    rows = status()
    for item in rows:
        print(f"{item.name:10} {item.state:8} {item.detail}")
    # 3 as for `python -m devstack.cluster status`: a port is held by someone else.
    return 3 if any(item.state == "foreign" for item in rows) else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

"""PostgreSQL and Redis for the local stack, in the checkout's var/ folder on loopback ports.

`python -m devstack.localservices up|down|status` — idempotent: a healthy running server is left
alone, a stale pid file is cleaned up, and `down` leaves no process behind.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VAR = ROOT / "var"
LOG_DIR = VAR / "log"
PG_BIN = Path("/usr/lib/postgresql/15/bin")
PG_DIR = VAR / "postgres"
PG_DATA = PG_DIR / "data"
PG_SOCKET_DIR = PG_DIR / "run"
PG_PORT = 55432
REDIS_DIR = VAR / "redis"
REDIS_PORT = 56379
DB_NAME = DB_USER = DB_PASSWORD = "portal"  # noqa: S105 - loopback-only development database


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.3)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _wait_port(port: int, name: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _port_open(port):
            return
        time.sleep(0.2)
    raise SystemExit(f"{name} did not open 127.0.0.1:{port} within {timeout:.0f}s; see {LOG_DIR}")


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
    running: bool
    detail: str


def postgres_up() -> None:
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
    if not _port_open(PG_PORT):
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
    _wait_port(PG_PORT, "postgres")
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
    if (PG_DATA / "postmaster.pid").exists():
        _as_postgres(PG_BIN / "pg_ctl", "stop", "-D", PG_DATA, "-m", "fast", "-w", check=False)


def redis_up() -> None:
    REDIS_DIR.mkdir(parents=True, exist_ok=True)
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    if _port_open(REDIS_PORT):
        return
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
            str(REDIS_DIR / "redis.pid"),
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
    _wait_port(REDIS_PORT, "redis")


def redis_down() -> None:
    pid_file = REDIS_DIR / "redis.pid"
    if _port_open(REDIS_PORT):
        subprocess.run(
            ["redis-cli", "-p", str(REDIS_PORT), "shutdown", "nosave"],
            check=False,
            capture_output=True,
        )
    deadline = time.monotonic() + 10
    while _port_open(REDIS_PORT) and time.monotonic() < deadline:
        time.sleep(0.1)
    pid_file.unlink(missing_ok=True)


def status() -> list[Status]:
    return [
        Status("postgres", _port_open(PG_PORT), f"127.0.0.1:{PG_PORT} data={PG_DATA}"),
        Status("redis", _port_open(REDIS_PORT), f"127.0.0.1:{REDIS_PORT}"),
    ]


def up() -> None:
    postgres_up()
    redis_up()


def down() -> None:
    redis_down()
    postgres_down()


def main(argv: list[str]) -> int:
    command = argv[0] if argv else "status"
    if command == "up":
        up()
    elif command == "down":
        down()
    elif command != "status":
        print("usage: python -m devstack.localservices up|down|status", file=sys.stderr)
        return 2
    for item in status():
        print(f"{item.name:10} {'running' if item.running else 'stopped':8} {item.detail}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

"""Two checkouts on one machine: a port held by another process is reported, never used.

A second checkout is made by copying `devstack/` into a temporary folder; its CLIs run as
subprocesses exactly as `./dev services|cluster` would run them. The "other checkout's server" is a
throwaway listener started here on a free port (the ports are pointed at it through the
PORTAL_*_PORT variables), so nothing of the shared local stack is touched.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from devstack import localservices, ports
from devstack.cluster import config, control
from devstack.cluster.processes import ProcessSpec, ensure_running

REPO = Path(__file__).resolve().parents[2]
CLUSTER_PORT_VARIABLES = (
    "PORTAL_ETCD_CLIENT_PORT",
    "PORTAL_ETCD_PEER_PORT",
    "PORTAL_APISERVER_PORT",
    "PORTAL_CONTROLLER_MANAGER_PORT",
    "PORTAL_SCHEDULER_PORT",
    "PORTAL_KWOK_PORT",
    "PORTAL_KARPENTER_METRICS_PORT",
    "PORTAL_KARPENTER_HEALTH_PORT",
    "PORTAL_PROMETHEUS_PORT",
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _make_checkout(path: Path) -> Path:
    # devstack, and the product packages it renders shipped config from (the local
    # Prometheus loads deploy/prometheus' scrape config through deployments.rendering).
    for package in ("devstack", "deployments", "engines", "deploy"):
        shutil.copytree(
            REPO / package, path / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    return path


@dataclass
class Listener:
    port: int
    pid: int
    checkout: Path


@pytest.fixture
def other_checkout_listener(tmp_path: Path) -> Iterator[Listener]:
    """A process listening on a free port, running from another checkout's folder."""
    other = _make_checkout(tmp_path / "other-checkout")
    code = (
        "import socket, sys, time\n"
        "s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen()\n"
        "print(s.getsockname()[1], flush=True); time.sleep(300)\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code], cwd=other, stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        port = int(process.stdout.readline())
        yield Listener(port, process.pid, other)
    finally:
        process.kill()
        process.wait(timeout=10)


@pytest.fixture
def second_checkout(tmp_path: Path) -> Path:
    return _make_checkout(tmp_path / "second-checkout")


def _run(checkout: Path, module: str, *args: str, **ports_env: int) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PORTAL_CLUSTER_DIR", "PYTHONPATH")}
    env.update({name: str(port) for name, port in ports_env.items()})
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=checkout,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _line(output: str, name: str) -> str:
    return next(line for line in output.splitlines() if line.split()[:1] == [name])


def test_services_status_in_second_checkout_names_the_other_owner(
    second_checkout: Path, other_checkout_listener: Listener
) -> None:
    result = _run(
        second_checkout,
        "devstack.localservices",
        "status",
        PORTAL_POSTGRES_PORT=other_checkout_listener.port,
        PORTAL_REDIS_PORT=_free_port(),
    )

    assert result.returncode == 3, result.stderr
    postgres = _line(result.stdout, "postgres")
    assert postgres.split()[1] == "foreign"
    assert f"pid {other_checkout_listener.pid}" in postgres
    assert f"checkout {other_checkout_listener.checkout}" in postgres
    assert f"data={second_checkout}/var/postgres/data" in postgres
    assert _line(result.stdout, "redis").split()[1] == "stopped"


def test_services_up_refuses_a_port_held_by_another_process(
    second_checkout: Path, other_checkout_listener: Listener
) -> None:
    result = _run(
        second_checkout,
        "devstack.localservices",
        "up",
        PORTAL_POSTGRES_PORT=other_checkout_listener.port,
        PORTAL_REDIS_PORT=_free_port(),
    )

    assert result.returncode == 1
    assert f"pid {other_checkout_listener.pid}" in result.stderr
    assert str(other_checkout_listener.checkout) in result.stderr
    assert "not this checkout's server" in result.stderr
    # Refused before anything was initialised in the second checkout.
    assert not (second_checkout / "var" / "postgres" / "data").exists()


def test_services_running_and_down_leave_a_foreign_redis_alone(
    second_checkout: Path, other_checkout_listener: Listener
) -> None:
    held = {
        "PORTAL_POSTGRES_PORT": _free_port(),
        "PORTAL_REDIS_PORT": other_checkout_listener.port,
    }

    running = _run(second_checkout, "devstack.localservices", "running", **held)
    down = _run(second_checkout, "devstack.localservices", "down", "redis", **held)

    assert running.returncode == 0 and running.stdout.strip() == ""
    assert "redis: left alone" in down.stdout
    assert f"pid {other_checkout_listener.pid}" in down.stdout
    assert ports.port_open(other_checkout_listener.port)


def test_cluster_status_in_second_checkout_names_the_other_owner(
    second_checkout: Path, other_checkout_listener: Listener
) -> None:
    cluster_ports = {name: _free_port() for name in CLUSTER_PORT_VARIABLES}
    cluster_ports["PORTAL_APISERVER_PORT"] = other_checkout_listener.port

    result = _run(second_checkout, "devstack.cluster", "status", **cluster_ports)

    assert result.returncode == 3, result.stderr
    apiserver = _line(result.stdout, "kube-apiserver")
    assert apiserver.split()[1] == "foreign"
    assert f"pid {other_checkout_listener.pid}" in apiserver
    assert f"checkout {other_checkout_listener.checkout}" in apiserver
    assert _line(result.stdout, "etcd").split()[1] == "stopped"


def test_starting_a_component_on_a_held_port_fails_naming_the_owner(
    tmp_path: Path, other_checkout_listener: Listener
) -> None:
    spec = ProcessSpec(
        name="kube-apiserver",
        argv=["sleep", "60"],
        log_file=tmp_path / "apiserver.log",
        pid_file=tmp_path / "apiserver.pid",
        ports=(other_checkout_listener.port,),
    )

    with pytest.raises(RuntimeError, match=f"pid {other_checkout_listener.pid}"):
        ensure_running(spec)

    assert not spec.pid_file.exists()


def test_shared_binaries_of_another_layout_are_not_our_strays(tmp_path: Path) -> None:
    ours = config.Layout(tmp_path / "ours" / "var" / "cluster")
    theirs = config.Layout(tmp_path / "theirs" / "var" / "cluster")
    etcd = control.component_specs(ours)["etcd"].argv[0]

    assert control._is_our_process(ours, [etcd, f"--data-dir={ours.etcd_data}"])
    assert not control._is_our_process(ours, [etcd, f"--data-dir={theirs.etcd_data}"])


@pytest.mark.skipif(
    ports.port_owner(localservices.PG_PORT) is None, reason="no PostgreSQL on the default port"
)
def test_second_checkout_names_the_server_on_the_default_postgres_port(
    second_checkout: Path,
) -> None:
    # The real case: whoever holds 55432 here (normally this checkout's server) is not the
    # second checkout's, and its status says whose it is.
    owner = ports.port_owner(localservices.PG_PORT)
    assert owner is not None

    result = _run(second_checkout, "devstack.localservices", "status")

    postgres = _line(result.stdout, "postgres")
    assert postgres.split()[1] == "foreign"
    if owner.pid is not None:
        assert f"pid {owner.pid}" in postgres


def test_port_owner_of_a_free_port_is_none() -> None:
    assert ports.port_owner(_free_port()) is None


@pytest.mark.parametrize("raw", ["abc", "0", "70000"])
def test_env_port_fails_loudly_on_a_bad_value(monkeypatch: pytest.MonkeyPatch, raw: str) -> None:
    monkeypatch.setenv("PORTAL_TEST_PORT", raw)

    with pytest.raises(SystemExit, match="PORTAL_TEST_PORT"):
        ports.env_port("PORTAL_TEST_PORT", 1234)


def test_env_port_defaults_when_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PORTAL_TEST_PORT", raising=False)

    assert ports.env_port("PORTAL_TEST_PORT", 1234) == 1234

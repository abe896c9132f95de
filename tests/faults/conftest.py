"""Fault injection for the fault suite (docs/faults.md): a private Redis that can be SIGKILLed,
an in-place restart of the shared cluster's kube-apiserver, and the check that nothing the portal
created is left in a tenant's namespace."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from deployments.choices import STEP_ORDER
from deployments.choices import RolloutState as S
from deployments.models import Rollout
from deployments.rendering.constants import LABEL_MANAGED_BY, MANAGED_BY
from tests.fixtures.cluster import wait_for
from tests.fixtures.fleet import Fleet
from tests.gateway import conftest as gateway_fixtures

# The gateway suite's fixture, used here too.
gateways = gateway_fixtures.gateways

PORTAL_OBJECTS = f"{LABEL_MANAGED_BY}={MANAGED_BY}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


# --- Redis ------------------------------------------------------------------------------------


@dataclass
class PrivateRedis:
    """A redis-server of this test only (the shared one on 56379 serves other test runs).

    Started like devstack/localservices.py starts the shared one: loopback, no persistence, so a
    restart comes back empty, as a restarted broker without persistence does in production.
    """

    directory: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--dir",
                str(self.directory),
                "--logfile",
                str(self.directory / "redis.log"),
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        wait_for(lambda: _port_open(self.port), 10, describe=f"redis-server on :{self.port}")

    def kill(self) -> None:
        """SIGKILL: no shutdown, no save; queued and unacknowledged messages are gone."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
        self.process = None


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    redis = PrivateRedis(tmp_path / "redis")
    redis.start()
    try:
        yield redis
    finally:
        redis.kill()


@contextlib.contextmanager
def celery_broker(url: str) -> Iterator[None]:
    """Make this process publish (and ping) through `url`, then go back to the shared broker."""
    from kombu import pools

    from portal.celery import app

    def drop_pools() -> None:  # private attributes: Celery has no public way to re-pool
        # kombu keeps one global pool per broker URL: closing only the app's would hand the
        # same closed pool back when the app returns to the shared broker (every later
        # test's worker ping then failed with "Acquire on closed pool"). Reset them all.
        pools.reset()
        vars(app)["_pool"] = None
        vars(app.amqp)["_producer_pool"] = None

    previous = app.conf.broker_url
    app.conf.update(broker_url=url)
    drop_pools()
    try:
        yield
    finally:
        app.conf.update(broker_url=previous)
        drop_pools()


# --- kube-apiserver -----------------------------------------------------------------------------


@contextlib.contextmanager
def apiserver_stopped() -> Iterator[None]:
    """Stop ONLY the shared cluster's kube-apiserver, restart it in place on leaving.

    Same ProcessSpec (binary, flags, log and pid file) as `devstack.cluster up` uses. The `up`
    lock is held throughout, so a concurrent `ensure_up()` of another test run waits for the
    restart instead of racing it for the port.
    """
    from devstack.cluster import config, control
    from devstack.cluster.processes import ensure_running, file_lock, stop

    layout = config.default_layout()
    spec = control.component_specs(layout)["kube-apiserver"]
    with file_lock(layout.run / "up.lock"):
        # SIGTERM, then SIGKILL after 2 s: a graceful apiserver shutdown can take over 10 s,
        # and other test runs share this cluster. etcd keeps the state either way.
        stop(spec, grace=2.0)
        try:
            yield
        finally:
            ensure_running(spec)


# --- what must hold after every fault -----------------------------------------------------------


def portal_objects(k8s: Any, namespace: str) -> dict[str, list[str]]:
    """Every object of the kinds the portal creates per deployment, labelled as the portal's."""
    listings = {
        "deployments": k8s.apps.list_namespaced_deployment,
        "services": k8s.core.list_namespaced_service,
        "configmaps": k8s.core.list_namespaced_config_map,
        "jobs": k8s.batch.list_namespaced_job,
        "pvcs": k8s.core.list_namespaced_persistent_volume_claim,
        "hpas": k8s.autoscaling.list_namespaced_horizontal_pod_autoscaler,
    }
    found = {}
    for kind, listing in listings.items():
        items = listing(namespace, label_selector=PORTAL_OBJECTS).items
        names = sorted(x.metadata.name for x in items)
        if names:
            found[kind] = names
    return found


def assert_nothing_left(fleet: Fleet, timeout: float = 60) -> None:
    """After the deployments are deleted, the garbage collector leaves no portal object."""
    wait_for(
        lambda: portal_objects(fleet.k8s, fleet.tenant.namespace) == {},
        timeout,
        describe=lambda: (
            f"portal objects left: {portal_objects(fleet.k8s, fleet.tenant.namespace)}"
        ),
    )


def assert_events_consistent(rollout: Rollout) -> None:
    """States only move forward and the rollout completed exactly once."""
    events = list(rollout.events.all())
    order = [STEP_ORDER.index(S(e.state)) for e in events]
    assert order == sorted(order), f"states went backwards: {[e.state for e in events]}"
    assert [e.state for e in events].count(S.COMPLETED) == 1, events


def restart_worker(fleet: Fleet, **env: str) -> None:
    """Replace the fixture's worker (and its beat) by one started with `env` added."""
    for worker in fleet.pool.workers:
        worker.stop()
    fleet.pool.env.update(env)
    fleet.pool.start(beat=True)


def second_rollout_in_progress(fleet: Fleet, deployment: Any, promotion: Any) -> Rollout:
    """Roll out a changed revision of ``deployment`` and return once it is creating its pods
    (the window the fault tests break things in)."""
    from deployments import services
    from deployments.choices import RolloutState

    deployment.refresh_from_db()
    _, rollout, _ = services.change_deployment(
        fleet.actor, deployment, fleet.request(max_total_tokens=3072), promotion=promotion
    )

    def mid_rollout() -> bool:
        rollout.refresh_from_db()
        return rollout.state in (RolloutState.CREATING, RolloutState.WAITING_READY)

    wait_for(mid_rollout, 60, describe=lambda: rollout.state)
    return rollout


def chat(gateway_url: str, key: str) -> httpx.Response:
    """One one-token chat completion through a gateway."""
    return httpx.post(
        f"{gateway_url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {key}"},
        json={"model": "chat", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1},
        timeout=30,
    )

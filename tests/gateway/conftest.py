"""Real gateway processes in front of a deployment rolled out on the local cluster."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from django.conf import settings

from deployments.models import Deployment
from deployments.rendering.constants import LABEL_DEPLOYMENT
from engines import InferenceEngine, get_engine
from tenants import services as tenant_services
from tenants.audit import Actor
from tests.fixtures.fleet import Fleet
from tests.fixtures.worker import _test_database_url

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS_TARGETS = ROOT / "var" / "cluster" / "prometheus" / "gateway-targets"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class GatewayProcess:
    port: int
    process: subprocess.Popen[str]
    log_path: Path
    target_file: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.target_file is not None:
            self.target_file.unlink(missing_ok=True)
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)


@dataclass
class Gateways:
    """Starts gateway processes sharing one rate-limit prefix (so they share limits)."""

    tmp_path: Path
    prefix: str = field(default_factory=lambda: f"rl-test-{uuid.uuid4().hex[:8]}")
    started: list[GatewayProcess] = field(default_factory=list)

    def start(self, *, scraped: bool = False) -> GatewayProcess:
        port = free_port()
        log_path = self.tmp_path / f"gateway-{port}.log"
        env = {
            **os.environ,
            "DATABASE_URL": _test_database_url(),
            "KUBECONFIG": str(settings.KUBECONFIG),
            "REDIS_URL": settings.REDIS_URL,
            "GATEWAY_RATELIMIT_PREFIX": self.prefix,
            "PYTHONUNBUFFERED": "1",
        }
        process = subprocess.Popen(
            [sys.executable, "-m", "gateway", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=log_path.open("w"),
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        gateway = GatewayProcess(port, process, log_path)
        self.started.append(gateway)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise AssertionError(f"gateway exited:\n{gateway.log()}")
            try:
                if httpx.get(f"{gateway.url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        else:
            raise AssertionError(f"gateway not ready:\n{gateway.log()}")
        if scraped:
            PROMETHEUS_TARGETS.mkdir(parents=True, exist_ok=True)
            gateway.target_file = PROMETHEUS_TARGETS / f"test-{port}.json"
            gateway.target_file.write_text(
                json.dumps(
                    [{"targets": [f"127.0.0.1:{port}"], "labels": {"instance_kind": "test"}}]
                )
            )
        return gateway

    def stop_all(self) -> None:
        for gateway in self.started:
            gateway.stop()


@pytest.fixture
def gateways(tmp_path: Path) -> Iterator[Gateways]:
    pool = Gateways(tmp_path)
    try:
        yield pool
    finally:
        pool.stop_all()
        for gateway in pool.started:  # shown by pytest only when the test failed
            print(f"--- gateway :{gateway.port}\n{gateway.log()[-5000:]}")


@dataclass
class Served:
    """A deployment serving on the cluster and a key that may call it."""

    fleet: Fleet
    deployment: Deployment
    key: str
    key_id: int

    @property
    def owner(self) -> Actor:
        return Actor(self.fleet.world.users["owner_a"], "api")

    def new_key(self, **options: Any) -> str:
        options.setdefault("name", f"key-{uuid.uuid4().hex[:6]}")
        return tenant_services.create_gateway_key(
            self.owner, self.fleet.tenant, **options
        ).plaintext

    def set_quota(self, **changes: Any) -> None:
        admin = Actor(self.fleet.world.users["admin"], "cli")
        tenant_services.update_quota(admin, self.fleet.tenant, changes)

    @property
    def engine(self) -> InferenceEngine:
        """The engine serving the deployment's active revision (its metric names, port…)."""
        revision = self.deployment.active_revision
        assert revision is not None
        return get_engine(revision.engine)

    def pod_addresses(self) -> list[str]:
        """``ip:port`` of the deployment's running pods, in a stable order."""
        pods = self.fleet.k8s.core.list_namespaced_pod(
            self.fleet.tenant.namespace,
            label_selector=f"{LABEL_DEPLOYMENT}={self.deployment.name}",
        ).items
        return sorted(f"{p.status.pod_ip}:{self.engine.port}" for p in pods if p.status.pod_ip)

    def pod_counters(self, name: str) -> list[float]:
        """Each pod's own value of the engine's series ``name`` (summed over its labels)."""
        return [
            exposition_sum(httpx.get(f"http://{address}{self.engine.metrics_path}").text, name)
            for address in self.pod_addresses()
        ]


def exposition_sum(exposition: str, name: str) -> float:
    """The sum of the samples of ``name`` in a Prometheus text exposition."""
    total = 0.0
    for line in exposition.splitlines():
        if line.startswith(name) and line[len(name) : len(name) + 1] in (" ", "{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


@pytest.fixture
def served(fleet: Fleet) -> Served:
    deployment, rollout = fleet.deploy(
        "chat", max_total_tokens=2048, max_input_tokens=1024, replicas=2
    )
    fleet.wait_state(rollout, "completed", timeout=180)
    deployment.refresh_from_db()
    owner = Actor(fleet.world.users["owner_a"], "api")
    issued = tenant_services.create_gateway_key(owner, fleet.tenant, name="default")
    return Served(fleet=fleet, deployment=deployment, key=issued.plaintext, key_id=issued.key.id)


@pytest.fixture
def prefix() -> Iterator[str]:
    """A fresh rate-limiter key prefix; its Redis keys are deleted afterwards."""
    name = f"rltest-{uuid.uuid4().hex}"
    yield name
    client = redis.Redis.from_url(settings.REDIS_URL)
    keys = list(client.scan_iter(f"{name}:*"))
    if keys:
        client.delete(*keys)
    client.close()

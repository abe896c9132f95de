"""A portal outside the cluster: pre-promotion checks reach pods through the API server.

From a laptop with a cloud cluster's KUBECONFIG, pod IPs are not routable; the worker's checks
then go through the API server's pod proxy (PORTAL_POD_NETWORK=apiserver-proxy, or "auto"
with an API server that is not on this machine).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from deployments.choices import RolloutState as S
from portal import kube
from tests.fixtures.fleet import Fleet
from tests.fixtures.worker import WorkerPool


def _kubeconfig(path: Path, server: str) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": server}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    return path


@pytest.fixture
def fresh_kube_client(settings: Any) -> Iterator[None]:
    """The client and the route decision are cached per process: start and end clean."""
    kube.api_client.cache_clear()
    kube._apiserver_is_local.cache_clear()
    yield
    kube.api_client.cache_clear()
    kube._apiserver_is_local.cache_clear()


@pytest.mark.parametrize(
    ("server", "reachable"),
    [
        ("https://127.0.0.1:56443", True),  # the local cluster
        ("https://localhost:6443", True),  # kind on Linux
        ("https://34.118.10.7", False),  # a GKE control plane
        ("https://ABCD.gr7.eu-west-1.eks.amazonaws.com", False),
    ],
)
def test_auto_reaches_pods_directly_only_beside_a_local_api_server(
    settings: Any, tmp_path: Path, fresh_kube_client: None, server: str, reachable: bool
) -> None:
    settings.POD_NETWORK = "auto"
    settings.KUBECONFIG = str(_kubeconfig(tmp_path / "config", server))
    assert kube.pods_reachable() is reachable


def test_in_cluster_credentials_mean_the_pod_network_is_ours(
    settings: Any, tmp_path: Path, fresh_kube_client: None
) -> None:
    settings.POD_NETWORK = "auto"
    settings.KUBECONFIG = str(tmp_path / "absent")
    assert kube.pods_reachable() is True


@pytest.mark.parametrize(("mode", "reachable"), [("direct", True), ("apiserver-proxy", False)])
def test_the_setting_overrides_the_guess(
    settings: Any, tmp_path: Path, fresh_kube_client: None, mode: str, reachable: bool
) -> None:
    settings.POD_NETWORK = mode
    settings.KUBECONFIG = str(_kubeconfig(tmp_path / "config", "https://34.118.10.7"))
    assert kube.pods_reachable() is reachable


def test_the_proxy_client_addresses_the_pod_as_the_kubeconfig_user(
    settings: Any, tmp_path: Path, fresh_kube_client: None
) -> None:
    settings.KUBECONFIG = str(_kubeconfig(tmp_path / "config", "https://34.118.10.7"))
    with kube.pod_proxy_client("tenant-a", "chat-blue-7d9f", 80, timeout=5) as http:
        request = http.build_request("POST", "/v1/chat/completions")
    assert str(request.url) == (
        "https://34.118.10.7/api/v1/namespaces/tenant-a/pods/chat-blue-7d9f:80/proxy"
        "/v1/chat/completions"
    )
    assert request.headers["authorization"] == "Bearer t"


def _pod_proxy_requests(k8s: Any) -> float:
    """Requests the API server has served on pods/proxy, from its own /metrics."""
    response = k8s.api_client.call_api("GET", k8s.api_client.configuration.host + "/metrics")
    response.read()
    total = 0.0
    for line in response.data.decode().splitlines():
        if (
            line.startswith("apiserver_request_total{")
            and 'resource="pods"' in line
            and 'subresource="proxy"' in line
        ):
            total += float(line.rsplit(" ", 1)[1])
    return total


@pytest.fixture
def worker_outside_pod_network(worker_pool: WorkerPool) -> None:
    worker_pool.env["PORTAL_POD_NETWORK"] = "apiserver-proxy"


@pytest.mark.cluster
@pytest.mark.worker
def test_a_worker_that_cannot_route_to_pods_checks_through_the_api_server(
    worker_outside_pod_network: None, fleet: Fleet, k8s: Any
) -> None:
    before = _pod_proxy_requests(k8s)
    _, rollout = fleet.deploy(name="outside")
    rollout = fleet.wait_state(rollout, S.COMPLETED)
    checked = rollout.events.get(message__startswith="pre-promotion checks passed").message
    assert "through the API server's pod proxy" in checked, checked
    # The checks really went through the API server: /info (or /v1/models) and a generation.
    assert _pod_proxy_requests(k8s) - before >= 2

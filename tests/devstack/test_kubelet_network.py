"""Simulated pod network (devstack.kubelet.network): needs root and iproute2, not the cluster."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import httpx
import pytest

from devstack.kubelet import network

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None, reason="needs root and iproute2"
)

# A node name/index far away from the cluster's nodes (indices 1..n) so a running cluster is
# never disturbed; teardown_node (not teardown_all) keeps the cluster's namespaces alone.
NODE = "kltest-node"
INDEX = 250
CIDR = "10.244.250.0/24"
POD_IP = "10.244.250.7"


@pytest.fixture
def node_network():
    network.teardown_node(NODE)
    network.ensure_node_network(NODE, INDEX, CIDR)
    yield network.netns_name(NODE)
    network.teardown_node(NODE)
    subprocess.run(
        ["ip", "link", "del", network.host_veth(INDEX)], capture_output=True, check=False
    )


def _serve(ns: str, ip: str, port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        ["ip", "netns", "exec", ns, sys.executable, "-m", "http.server", "--bind", ip, str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _get(url: str, timeout: float = 10.0) -> int:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return httpx.get(url, timeout=1.0).status_code
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_index_and_transit_addresses() -> None:
    assert network.index_for_cidr("10.244.3.0/24") == 3
    assert network.transit_addresses(3) == ("10.243.3.1", "10.243.3.2")
    with pytest.raises(network.NetworkError):
        network.index_for_cidr("192.168.0.0/24")


@pytest.mark.parametrize(
    ("cidr", "served"),
    [("10.244.0.0/24", True), ("10.244.9.0/24", True), ("10.255.0.0/24", False), ("bad", False)],
)
def test_only_nodes_with_a_pod_network_cidr_get_a_node_network(cidr: str, served: bool) -> None:
    # The node IPAM hands out any free /24 of the pod network (index 0 included); a CIDR
    # outside it could not be routed from the host.
    assert network.in_pod_network(cidr) is served


def test_pod_ip_reachable_from_host_and_teardown(node_network: str) -> None:
    # Idempotent: a second call (e.g. after a kubelet restart) changes nothing.
    network.ensure_node_network(NODE, INDEX, CIDR)
    network.add_pod_ip(NODE, POD_IP)
    network.add_pod_ip(NODE, POD_IP)
    assert network.list_pod_ips(NODE) == {POD_IP}
    server = _serve(node_network, POD_IP, 8080)
    try:
        assert _get(f"http://{POD_IP}:8080/") == 200
    finally:
        server.terminate()
        server.wait(5)
    network.remove_pod_ip(NODE, POD_IP)
    network.remove_pod_ip(NODE, POD_IP)  # already gone: no error
    assert network.list_pod_ips(NODE) == set()
    # The process in the namespace is stopped by teardown as a safety net.
    leftover = _serve(node_network, "10.243.250.2", 8081)
    time.sleep(0.3)
    network.teardown_node(NODE)
    assert leftover.wait(10) is not None
    assert not network.netns_exists(node_network)
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert network.host_veth(INDEX) not in links
    routes = subprocess.run(["ip", "route"], capture_output=True, text=True).stdout
    assert CIDR not in routes


def test_repairs_half_created_network(node_network: str) -> None:
    # Crash between steps: the host veth vanished; ensure_node_network rebuilds the pair.
    subprocess.run(["ip", "link", "del", network.host_veth(INDEX)], check=True)
    network.ensure_node_network(NODE, INDEX, CIDR)
    network.add_pod_ip(NODE, POD_IP)
    server = _serve(node_network, POD_IP, 8082)
    try:
        assert _get(f"http://{POD_IP}:8082/") == 200
    finally:
        server.terminate()
        server.wait(5)


def test_refuses_foreign_route() -> None:
    # A route to a pod CIDR through a device that is not the node's veth must be left alone.
    add = ["ip", "link", "add", "ipsim-xtest", "type", "veth", "peer", "name", "ipsim-xtestp"]
    subprocess.run(add, check=True)
    try:
        subprocess.run(["ip", "link", "set", "ipsim-xtest", "up"], check=True)
        subprocess.run(["ip", "route", "add", "10.244.249.0/24", "dev", "ipsim-xtest"], check=True)
        with pytest.raises(network.NetworkError, match="already routes"):
            network.ensure_node_network("kltest-foreign", 249, "10.244.249.0/24")
        routes = subprocess.run(["ip", "route"], capture_output=True, text=True).stdout
        assert "10.244.249.0/24 dev ipsim-xtest" in routes
    finally:
        subprocess.run(["ip", "link", "del", "ipsim-xtest"], check=False)
        network.teardown_node("kltest-foreign")

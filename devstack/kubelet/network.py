"""Simulated pod network: one network namespace per simulated node, routed from the host.

Layout for the node with pod CIDR 10.244.<i>.0/24 (i = index of the /24 inside 10.244.0.0/16):

* network namespace ``ipsim-<node-name>`` with ``lo`` up and an ``eth0`` veth end,
* host-side veth ``ipsim-h<i>``; the pair uses the transit /30 10.243.<i>.0/30
  (host 10.243.<i>.1, namespace 10.243.<i>.2),
* host route ``10.244.<i>.0/24 via 10.243.<i>.2 dev ipsim-h<i>``; namespace default route back
  via 10.243.<i>.1,
* every pod IP of that node is a /32 on the namespace's ``lo``, so a process bound to
  podIP:port inside the namespace answers ``curl http://<podIP>:<port>`` from the host.

Only objects whose name starts with ``ipsim-`` are ever created, changed or deleted, and the
only host route we add is the pod CIDR through our own veth, so the machine's real interfaces
and routes are never touched and no traffic leaves the host. Every function is idempotent.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

PREFIX = "ipsim-"
POD_NETWORK = ipaddress.ip_network("10.244.0.0/16")
TRANSIT_NETWORK = ipaddress.ip_network("10.243.0.0/16")
NETNS_DIR = Path("/run/netns")
NETNS_ETC = Path("/etc/netns")  # `ip netns exec` bind-mounts /etc/netns/<ns>/* over /etc/*
# Name resolution inside a node namespace would wait for the host's nameserver, which is not
# reachable from there (no forwarding): point it at the namespace's own loopback so lookups
# fail at once instead of stalling (http.server's getfqdn() took ~20s).
RESOLV_CONF = (
    "# simulated pod network: no DNS\nnameserver 127.0.0.1\noptions timeout:1 attempts:1\n"
)
NS_IFACE = "eth0"

log = logging.getLogger(__name__)


class NetworkError(RuntimeError):
    pass


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise NetworkError(f"ip {' '.join(args)}: {result.stderr.strip()}")
    return result


def _ip_json(*args: str) -> list[dict]:
    out = _ip("-j", *args).stdout.strip()
    return json.loads(out) if out else []


def netns_name(node_name: str) -> str:
    return f"{PREFIX}{node_name}"


def host_veth(index: int) -> str:
    return f"{PREFIX}h{index}"  # IFNAMSIZ is 16: keep it short, the index makes it unique


def in_pod_network(pod_cidr: str) -> bool:
    try:
        return ipaddress.ip_network(pod_cidr).subnet_of(POD_NETWORK)  # type: ignore[arg-type]
    except (ValueError, TypeError):
        return False


def index_for_cidr(pod_cidr: str) -> int:
    """Index of a node's /24 inside the pod network (10.244.3.0/24 -> 3)."""
    net = ipaddress.ip_network(pod_cidr)
    if not net.subnet_of(POD_NETWORK):  # type: ignore[arg-type]
        raise NetworkError(f"pod CIDR {pod_cidr} is outside {POD_NETWORK}")
    return (int(net.network_address) - int(POD_NETWORK.network_address)) // 256


def transit_addresses(index: int) -> tuple[str, str]:
    """(host side, namespace side) addresses of the node's transit /30."""
    if not 0 <= index < 256:
        raise NetworkError(f"node index {index} out of range 0..255")
    base = int(TRANSIT_NETWORK.network_address) + index * 256
    return str(ipaddress.ip_address(base + 1)), str(ipaddress.ip_address(base + 2))


def netns_exists(name: str) -> bool:
    return (NETNS_DIR / name).exists()


def list_namespaces() -> list[str]:
    if not NETNS_DIR.is_dir():
        return []
    return sorted(p.name for p in NETNS_DIR.iterdir() if p.name.startswith(PREFIX))


def _link_exists(name: str, netns: str | None = None) -> bool:
    args = ["-n", netns] if netns else []
    return _ip(*args, "link", "show", "dev", name, check=False).returncode == 0


def _check_route_free(pod_cidr: str, dev: str) -> None:
    """Refuse to take over a route to the pod CIDR that somebody else installed."""
    for route in _ip_json("route", "show", "exact", pod_cidr):
        if route.get("dev") != dev:
            raise NetworkError(
                f"host already routes {pod_cidr} via {route.get('dev')}; not touching it"
            )


def ensure_node_network(node_name: str, index: int, pod_cidr: str) -> str:
    """Create (or repair) the node's namespace, veth pair and routes; returns the netns name."""
    ns = netns_name(node_name)
    veth = host_veth(index)
    host_addr, ns_addr = transit_addresses(index)
    _check_route_free(pod_cidr, veth)
    if not netns_exists(ns):
        _ip("netns", "add", ns)
    etc = NETNS_ETC / ns
    etc.mkdir(parents=True, exist_ok=True)
    (etc / "resolv.conf").write_text(RESOLV_CONF)
    _ip("-n", ns, "link", "set", "lo", "up")
    if not (_link_exists(veth) and _link_exists(NS_IFACE, ns)):
        # Half-present pair after a crash: start the pair from scratch.
        if _link_exists(veth):
            _ip("link", "del", veth)
        if _link_exists(NS_IFACE, ns):
            _ip("-n", ns, "link", "del", NS_IFACE)
        peer = f"{PREFIX}n{index}"
        _ip("link", "add", veth, "type", "veth", "peer", "name", peer)
        _ip("link", "set", peer, "netns", ns)
        _ip("-n", ns, "link", "set", peer, "name", NS_IFACE)
    _ip("addr", "replace", f"{host_addr}/30", "dev", veth)
    _ip("link", "set", veth, "up")
    _ip("-n", ns, "addr", "replace", f"{ns_addr}/30", "dev", NS_IFACE)
    _ip("-n", ns, "link", "set", NS_IFACE, "up")
    _ip("route", "replace", pod_cidr, "via", ns_addr, "dev", veth)
    _ip("-n", ns, "route", "replace", "default", "via", host_addr, "dev", NS_IFACE)
    return ns


def add_pod_ip(node_name: str, ip: str) -> None:
    _ip("-n", netns_name(node_name), "addr", "replace", f"{ip}/32", "dev", "lo")


def remove_pod_ip(node_name: str, ip: str) -> None:
    ns = netns_name(node_name)
    if not netns_exists(ns):
        return
    result = _ip("-n", ns, "addr", "del", f"{ip}/32", "dev", "lo", check=False)
    if result.returncode != 0 and not any(
        gone in result.stderr for gone in ("Cannot assign", "Address not found")
    ):
        raise NetworkError(f"removing {ip} from {ns}: {result.stderr.strip()}")


def list_pod_ips(node_name: str) -> set[str]:
    ns = netns_name(node_name)
    if not netns_exists(ns):
        return set()
    ips = set()
    for link in _ip_json("-n", ns, "addr", "show", "dev", "lo"):
        for addr in link.get("addr_info", []):
            if addr.get("family") == "inet" and not addr["local"].startswith("127."):
                ips.add(addr["local"])
    return ips


def exec_prefix(node_name: str) -> list[str]:
    """argv prefix running a command inside the node's namespace."""
    return ["ip", "netns", "exec", netns_name(node_name)]


def namespace_pids(ns: str) -> list[int]:
    result = _ip("netns", "pids", ns, check=False)
    return [int(p) for p in result.stdout.split() if p.isdigit()]


def _kill_namespace_processes(ns: str, grace: float = 3.0) -> None:
    """Safety net after a kubelet crash: nothing may keep running in a namespace we delete."""
    pids = namespace_pids(ns)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while pids and time.monotonic() < deadline:
        time.sleep(0.1)
        pids = namespace_pids(ns)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _remove_etc(ns: str) -> None:
    shutil.rmtree(NETNS_ETC / ns, ignore_errors=True)
    with contextlib.suppress(OSError):
        NETNS_ETC.rmdir()  # only if empty: somebody else may use /etc/netns too


def teardown_node(node_name: str) -> None:
    ns = netns_name(node_name)
    if netns_exists(ns):
        _kill_namespace_processes(ns)
        _ip("netns", "del", ns, check=False)
    _remove_etc(ns)


def teardown_all(state_dir: Path | None = None) -> list[str]:
    """Remove every namespace and host link named ipsim-*; returns what was removed.

    Also kills container processes a crashed kubelet left behind (pid files) and removes the
    empty mount points it created, so nothing of the simulated kubelet remains.
    """
    from .runtime import cleanup_state, default_state_dir

    removed = cleanup_state(state_dir or default_state_dir())
    for ns in list_namespaces():
        _kill_namespace_processes(ns)
        _ip("netns", "del", ns, check=False)  # also destroys the veth pair and its routes
        _remove_etc(ns)
        removed.append(f"netns {ns}")
    if NETNS_ETC.is_dir():
        for leftover in NETNS_ETC.glob(f"{PREFIX}*"):
            _remove_etc(leftover.name)
    for link in _ip_json("link", "show"):
        name = link.get("ifname", "")
        if name.startswith(PREFIX):
            _ip("link", "del", name, check=False)
            removed.append(f"link {name}")
    if removed:
        log.info("network teardown: %s", ", ".join(removed))
    return removed

"""`python -m devstack.kubelet --kubeconfig ...`: run the simulated kubelet until SIGTERM."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from pathlib import Path
from types import FrameType

from .agent import Kubelet, KubeletConfig


def _env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value else default


def parse_args(argv: list[str] | None = None) -> KubeletConfig:
    parser = argparse.ArgumentParser(prog="python -m devstack.kubelet", description=__doc__)
    parser.add_argument("--kubeconfig", type=Path, required=True)
    parser.add_argument(
        "--state-dir",
        type=Path,
        help="pid files, pod dirs, logs (default: <kubeconfig dir>/kubelet)",
    )
    parser.add_argument(
        "--volumes-dir", type=Path, help="PV root (default: <kubeconfig dir>/volumes)"
    )
    parser.add_argument(
        "--backoff-base",
        type=float,
        default=_env_float("DEVSTACK_KUBELET_BACKOFF_BASE", 10.0),
        help="first CrashLoopBackOff delay in seconds, doubled per crash (kubelet: 10)",
    )
    parser.add_argument(
        "--backoff-max",
        type=float,
        default=_env_float("DEVSTACK_KUBELET_BACKOFF_MAX", 300.0),
        help="back-off cap in seconds (kubelet: 300)",
    )
    parser.add_argument(
        "--grace-cap",
        type=float,
        default=_env_float("DEVSTACK_KUBELET_GRACE_CAP", 5.0),
        help="upper bound for terminationGracePeriodSeconds in the simulation",
    )
    parser.add_argument("--resync", type=float, default=30.0)
    # The kubelet's own flag names for its HTTPS server (pods/log reaches it through these).
    parser.add_argument("--address", default="127.0.0.1", help="serving address")
    parser.add_argument("--port", type=int, default=0, help="HTTPS port (0: no server)")
    parser.add_argument("--tls-cert-file", type=Path)
    parser.add_argument("--tls-private-key-file", type=Path)
    parser.add_argument(
        "--client-ca-file", type=Path, help="clients must present a certificate signed by it"
    )
    parser.add_argument("--no-provisioner", action="store_true")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(threadName)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per API call otherwise
    base = args.kubeconfig.resolve().parent
    return KubeletConfig(
        kubeconfig=args.kubeconfig,
        state_dir=(args.state_dir or base / "kubelet").resolve(),
        volumes_dir=(args.volumes_dir or base / "volumes").resolve(),
        backoff_base=args.backoff_base,
        backoff_max=args.backoff_max,
        grace_cap=args.grace_cap,
        resync=args.resync,
        provisioner=not args.no_provisioner,
        address=args.address,
        port=args.port,
        tls_cert_file=args.tls_cert_file,
        tls_private_key_file=args.tls_private_key_file,
        client_ca_file=args.client_ca_file,
    )


def main(argv: list[str] | None = None) -> None:
    if os.geteuid() != 0:
        sys.exit("devstack.kubelet needs root (network namespaces, mounts)")
    kubelet = Kubelet(parse_args(argv))

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        logging.getLogger(__name__).info("signal %d: stopping", signum)
        kubelet.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    kubelet.run()


if __name__ == "__main__":
    main()

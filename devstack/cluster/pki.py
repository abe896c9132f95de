"""Local PKI for the dev control plane, generated with the openssl CLI.

Why openssl and not a Python library: it is always present on the dev machine and keeps the venv
free of extra dependencies. Certificates are created once and reused across restarts, so clients
holding the kubeconfig keep working after `down`/`up`.
"""

from __future__ import annotations

import base64
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import yaml

from . import config

VALIDITY_DAYS = 3650


@dataclass(frozen=True)
class ClientIdentity:
    """A client certificate identity; the file stem doubles as the kubeconfig name."""

    name: str
    common_name: str
    organization: str | None = None


ADMIN = ClientIdentity("admin", "kubernetes-admin", "system:masters")
CONTROLLER_MANAGER = ClientIdentity("controller-manager", "system:kube-controller-manager")
SCHEDULER = ClientIdentity("scheduler", "system:kube-scheduler")
# The apiserver's identity towards aggregated API servers; also makes the requestheader CA
# configuration complete (controllers log errors every few seconds without it).
FRONT_PROXY = ClientIdentity("front-proxy-client", "front-proxy-client")
# The apiserver's identity towards kubelets (pods/log, exec), as kubeadm names it.
APISERVER_KUBELET_CLIENT = ClientIdentity(
    "apiserver-kubelet-client", "kube-apiserver-kubelet-client", "system:masters"
)
CLIENTS = (ADMIN, CONTROLLER_MANAGER, SCHEDULER, FRONT_PROXY, APISERVER_KUBELET_CLIENT)
# The simulated kubelet's serving certificate: valid for the address the nodes advertise.
KUBELET_SERVING_SANS = ("DNS:localhost", "IP:127.0.0.1")

APISERVER_SANS = (
    "IP:127.0.0.1",
    "IP:10.96.0.1",  # first address of the service range: the in-cluster `kubernetes` Service
    "DNS:localhost",
    "DNS:kubernetes",
    "DNS:kubernetes.default",
    "DNS:kubernetes.default.svc",
    "DNS:kubernetes.default.svc.cluster.local",
)


def _openssl(*args: str, cwd: Path) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError("openssl is required to generate the cluster certificates")
    result = subprocess.run([openssl, *args], cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"openssl {args[0]} failed: {result.stderr.strip()}")


def _sign(pki: Path, stem: str, subject: str, extensions: str) -> None:
    """Create <stem>.key and a CA-signed <stem>.crt with the given v3 extensions."""
    _openssl("genrsa", "-out", f"{stem}.key", "2048", cwd=pki)
    _openssl("req", "-new", "-key", f"{stem}.key", "-subj", subject, "-out", f"{stem}.csr", cwd=pki)
    (pki / f"{stem}.ext").write_text(extensions)
    _openssl(
        "x509", "-req", "-in", f"{stem}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", str(VALIDITY_DAYS), "-sha256",
        "-extfile", f"{stem}.ext", "-out", f"{stem}.crt",
        cwd=pki,
    )  # fmt: skip
    (pki / f"{stem}.csr").unlink()
    (pki / f"{stem}.ext").unlink()


def ensure_pki(layout: config.Layout) -> None:
    """Create any missing key material (idempotent: existing files are kept)."""
    pki = layout.pki
    pki.mkdir(parents=True, exist_ok=True)
    if not (pki / "ca.crt").exists():
        _openssl(
            "req", "-x509", "-new", "-nodes", "-newkey", "rsa:2048", "-sha256",
            "-keyout", "ca.key", "-out", "ca.crt", "-days", str(VALIDITY_DAYS),
            "-subj", "/CN=inference-portal-dev-ca",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
            cwd=pki,
        )  # fmt: skip
    if not (pki / "apiserver.crt").exists():
        _sign(
            pki,
            "apiserver",
            "/CN=kube-apiserver",
            "basicConstraints=critical,CA:FALSE\n"
            "keyUsage=critical,digitalSignature,keyEncipherment\n"
            "extendedKeyUsage=serverAuth\n"
            f"subjectAltName={','.join(APISERVER_SANS)}\n",
        )
    if not (pki / "kubelet.crt").exists():
        _sign(
            pki,
            "kubelet",
            "/CN=kubelet",
            "basicConstraints=critical,CA:FALSE\n"
            "keyUsage=critical,digitalSignature,keyEncipherment\n"
            "extendedKeyUsage=serverAuth\n"
            f"subjectAltName={','.join(KUBELET_SERVING_SANS)}\n",
        )
    if not (pki / "sa.key").exists():
        # Service-account token signing key pair (private for signing, public for verifying).
        _openssl("genrsa", "-out", "sa.key", "2048", cwd=pki)
        _openssl("rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=pki)
    for client in CLIENTS:
        if not (pki / f"{client.name}.crt").exists():
            subject = f"/CN={client.common_name}"
            if client.organization:
                subject = f"/O={client.organization}{subject}"
            _sign(
                pki,
                client.name,
                subject,
                "basicConstraints=critical,CA:FALSE\n"
                "keyUsage=critical,digitalSignature,keyEncipherment\n"
                "extendedKeyUsage=clientAuth\n",
            )
    for path in pki.glob("*.key"):
        path.chmod(0o600)


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def write_kubeconfig(layout: config.Layout, client: ClientIdentity, target: Path) -> None:
    """Self-contained kubeconfig (certificates embedded) for one client identity."""
    pki = layout.pki
    context = "inference-portal-dev"
    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": context,
                "cluster": {
                    "server": f"https://{config.HOST}:{config.APISERVER_PORT}",
                    "certificate-authority-data": _b64(pki / "ca.crt"),
                },
            }
        ],
        "users": [
            {
                "name": client.name,
                "user": {
                    "client-certificate-data": _b64(pki / f"{client.name}.crt"),
                    "client-key-data": _b64(pki / f"{client.name}.key"),
                },
            }
        ],
        "contexts": [{"name": context, "context": {"cluster": context, "user": client.name}}],
        "current-context": context,
    }
    # Written beside and renamed into place: readers (tests, the kubelet, the portal) polling
    # this file while `up` re-runs must never see it empty or half-written.
    partial = target.with_name(f".{target.name}.partial")
    partial.write_text(yaml.safe_dump(document, sort_keys=False))
    partial.chmod(0o600)
    partial.replace(target)


def write_kubeconfigs(layout: config.Layout) -> None:
    write_kubeconfig(layout, ADMIN, layout.kubeconfig)
    for client in (CONTROLLER_MANAGER, SCHEDULER):
        write_kubeconfig(layout, client, layout.component_kubeconfig(client.name))

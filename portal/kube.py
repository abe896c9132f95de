"""Kubernetes access for every app: one client, one field manager, server-side apply.

The kubeconfig comes from settings.KUBECONFIG (the local cluster by default); inside a cluster
without that file, the pod's service account is used. Transport only: object names, labels and
manifests come from ``deployments.rendering``.
"""

from __future__ import annotations

import base64
import ipaddress
import os
import ssl
import threading
from functools import cache
from typing import Any
from urllib.parse import urlsplit

import httpx
from django.conf import settings
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from kubernetes.dynamic import DynamicClient
from prometheus_client import Counter
from urllib3.exceptions import HTTPError as Urllib3HTTPError

from portal.errors import DomainError

FIELD_MANAGER = "inference-portal"
_dynamic_lock = threading.Lock()

# Every failure that reaches a caller as ClusterUnavailable, by the API's HTTP status or
# "unreachable" (no answer) / "no_config" (no usable kubeconfig). A 404 the caller expects
# (get, delete) is an answer, not an error, and is not counted.
API_ERRORS = Counter(
    "portal_kubernetes_api_errors_total",
    "Kubernetes API calls of this process that failed, by HTTP status or failure kind.",
    ("status",),
)


class ClusterUnavailable(DomainError):
    status_code = 503
    code = "cluster_unavailable"


@cache
def api_client() -> client.ApiClient:
    try:
        if os.path.exists(settings.KUBECONFIG):
            return config.new_client_from_config(config_file=settings.KUBECONFIG)
        config.load_incluster_config()
    except config.ConfigException as error:
        API_ERRORS.labels(status="no_config").inc()
        raise ClusterUnavailable(f"no usable Kubernetes configuration: {error}") from None
    return client.ApiClient()


@cache
def _dynamic() -> DynamicClient:
    with _dynamic_lock:
        return DynamicClient(api_client())


def core() -> client.CoreV1Api:
    return client.CoreV1Api(api_client())


def _unavailable(error: Exception) -> ClusterUnavailable:
    API_ERRORS.labels(
        status=str(error.status) if isinstance(error, ApiException) else "unreachable"
    ).inc()
    if isinstance(error, ApiException):
        return ClusterUnavailable(f"the Kubernetes API answered {error.status}: {error.reason}")
    return ClusterUnavailable("cannot reach the Kubernetes API server; try again later")


def apply(manifest: dict[str, Any]) -> dict[str, Any]:
    """Server-side apply under the portal's field manager; returns the object as stored."""
    try:
        resource = _dynamic().resources.get(
            api_version=manifest["apiVersion"], kind=manifest["kind"]
        )
        applied = resource.server_side_apply(
            body=manifest, field_manager=FIELD_MANAGER, force_conflicts=True
        )
    except (ApiException, Urllib3HTTPError) as error:
        raise _unavailable(error) from None
    return dict(applied.to_dict())


def get(
    api_version: str, kind: str, name: str, namespace: str | None = None
) -> dict[str, Any] | None:
    try:
        resource = _dynamic().resources.get(api_version=api_version, kind=kind)
        return dict(resource.get(name=name, namespace=namespace).to_dict())
    except ApiException as error:
        if error.status == 404:
            return None
        raise _unavailable(error) from None
    except Urllib3HTTPError as error:
        raise _unavailable(error) from None


def delete(api_version: str, kind: str, name: str, namespace: str | None = None) -> bool:
    """Delete with background propagation (owned objects go too); False if it was not there."""
    try:
        resource = _dynamic().resources.get(api_version=api_version, kind=kind)
        resource.delete(
            name=name,
            namespace=namespace,
            body={"propagationPolicy": "Background"},
        )
    except ApiException as error:
        if error.status == 404:
            return False
        raise _unavailable(error) from None
    except Urllib3HTTPError as error:
        raise _unavailable(error) from None
    return True


def read_secret_value(namespace: str, name: str, key: str) -> str | None:
    try:
        secret = core().read_namespaced_secret(name, namespace)
    except ApiException as error:
        if error.status == 404:
            return None
        raise _unavailable(error) from None
    except Urllib3HTTPError as error:
        raise _unavailable(error) from None
    encoded = (secret.data or {}).get(key)
    return base64.b64decode(encoded).decode() if encoded else None


def pods_reachable() -> bool:
    """Whether this process opens connections to pod IPs itself.

    Inside the cluster (and beside the local one) it does. From a laptop with the KUBECONFIG
    of a cloud cluster pod IPs are not routable; requests to pods then go through the API
    server's pod proxy. PORTAL_POD_NETWORK says which; "auto" takes a loopback API server
    (the local cluster, kind on Linux) or in-cluster credentials as "direct".
    """
    if settings.POD_NETWORK != "auto":
        return bool(settings.POD_NETWORK == "direct")
    return _apiserver_is_local()


@cache
def _apiserver_is_local() -> bool:
    if not os.path.exists(settings.KUBECONFIG):
        return True  # in-cluster credentials: this process runs on the pod network
    host = urlsplit(api_client().configuration.host).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@cache
def _apiserver_tls() -> ssl.SSLContext:
    """The kubeconfig's CA and client certificate, loaded once per process."""
    configuration = api_client().configuration
    context = ssl.create_default_context(cafile=configuration.ssl_ca_cert or None)
    if not configuration.verify_ssl:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if configuration.cert_file:
        context.load_cert_chain(configuration.cert_file, configuration.key_file)
    return context


def pod_proxy_client(namespace: str, pod: str, port: int, timeout: float) -> httpx.Client:
    """An HTTP client whose relative paths reach ``pod:port`` through the API server's pod
    proxy (GET/POST /api/v1/namespaces/{ns}/pods/{name}:{port}/proxy/{path}), authenticated
    as the portal. Needs the ``pods/proxy`` permission."""
    configuration = api_client().configuration
    if configuration.refresh_api_key_hook is not None:
        configuration.refresh_api_key_hook(configuration)  # exec plugins' short-lived tokens
    # The same credentials the generated client sends (a bearer token; certificates are in TLS).
    headers = {
        auth["key"]: auth["value"]
        for auth in configuration.auth_settings().values()
        if auth.get("in") == "header" and auth.get("value")
    }
    return httpx.Client(
        base_url=f"{configuration.host}/api/v1/namespaces/{namespace}/pods/{pod}:{port}/proxy",
        verify=_apiserver_tls(),
        headers=headers,
        timeout=timeout,
    )

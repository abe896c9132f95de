"""A thin Kubernetes REST client on httpx: dicts in, dicts out.

The simulated kubelet needs explicit patch content types, raw JSON objects and long-running
watches; a small client keeps that obvious (the generated client re-validates every object).
"""

from __future__ import annotations

import base64
import json
import logging
import os
import ssl
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import yaml

log = logging.getLogger(__name__)

STRATEGIC = "application/strategic-merge-patch+json"
MERGE = "application/merge-patch+json"


class ApiError(RuntimeError):
    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"{status}: {body[:500]}")
        self.status = status
        self.body = body


def _material(entry: dict[str, Any], key: str, tmpdir: Path) -> str | None:
    """Path of a kubeconfig credential given either as a file or as base64 *-data."""
    if entry.get(key):
        return str(entry[key])
    data = entry.get(f"{key}-data")
    if not data:
        return None
    target = tmpdir / key
    target.write_bytes(base64.b64decode(data))
    target.chmod(0o600)
    return str(target)


class KubeClient:
    def __init__(self, kubeconfig: Path) -> None:
        doc = yaml.safe_load(kubeconfig.read_text())
        current = doc.get("current-context")
        ctx = next(c["context"] for c in doc["contexts"] if c["name"] == current)
        cluster = next(c["cluster"] for c in doc["clusters"] if c["name"] == ctx["cluster"])
        user = next(u["user"] for u in doc["users"] if u["name"] == ctx["user"])
        self.server = cluster["server"].rstrip("/")
        # Private copies of embedded credentials (ssl needs files for the client certificate).
        self._tmp = tempfile.TemporaryDirectory(prefix="sim-kubelet-tls-")
        tmp = Path(self._tmp.name)
        os.chmod(tmp, 0o700)
        context = ssl.create_default_context(
            cafile=_material(cluster, "certificate-authority", tmp)
        )
        cert = _material(user, "client-certificate", tmp)
        if cert:
            context.load_cert_chain(cert, _material(user, "client-key", tmp))
        self._ssl = context
        self._headers = {"Accept": "application/json", "User-Agent": "devstack-sim-kubelet/1.0"}
        if user.get("token"):
            self._headers["Authorization"] = f"Bearer {user['token']}"
        self._local = threading.local()

    def _client(self) -> httpx.Client:
        # One connection pool per thread: watches hold connections for minutes.
        client = getattr(self._local, "client", None)
        if client is None:
            client = httpx.Client(
                base_url=self.server,
                verify=self._ssl,
                headers=self._headers,
                timeout=httpx.Timeout(30.0),
            )
            self._local.client = client
        return client

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: dict[str, Any] | None = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        content = json.dumps(body) if body is not None else None
        headers = {"Content-Type": content_type} if content is not None else {}
        response = self._client().request(
            method, path, content=content, params=params, headers=headers
        )
        if response.status_code >= 400:
            raise ApiError(response.status_code, response.text)
        return response.json() if response.content else {}

    def get(self, path: str, **params: Any) -> dict[str, Any] | None:
        try:
            return self.request("GET", path, params=params or None)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    def create(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return self.request("POST", path, body=body)

    def patch(
        self,
        path: str,
        body: Any,
        content_type: str = STRATEGIC,
        field_manager: str | None = None,
    ) -> dict[str, Any]:
        params = {"fieldManager": field_manager} if field_manager else None
        return self.request("PATCH", path, body=body, params=params, content_type=content_type)

    def delete(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any] | None:
        try:
            return self.request("DELETE", path, body=body)
        except ApiError as exc:
            if exc.status in (404, 409):  # gone already / precondition (uid) no longer matches
                return None
            raise

    def watch(
        self, path: str, resource_version: str, timeout: int = 290, **params: Any
    ) -> Iterator[dict[str, Any]]:
        """Events of one watch request (the server ends it after `timeout` seconds)."""
        query = {
            **params,
            "watch": "1",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(timeout),
        }
        with self._client().stream(
            "GET", path, params=query, timeout=httpx.Timeout(30.0, read=timeout + 30.0)
        ) as response:
            if response.status_code >= 400:
                raise ApiError(response.status_code, response.read().decode(errors="replace"))
            for line in response.iter_lines():
                if line.strip():
                    yield json.loads(line)


Handler = Callable[[str, dict[str, Any]], None]


def key_of(obj: dict[str, Any]) -> str:
    meta = obj["metadata"]
    return f"{meta.get('namespace', '')}/{meta['name']}"


class Reflector(threading.Thread):
    """List+watch one collection into a cache and call `handler(event, obj)` for each change.

    Events: ADDED, MODIFIED, DELETED, and SYNC (every cached object, each `resync` seconds, so
    work lost to an error is retried without polling the API in a loop).
    """

    def __init__(
        self,
        kube: KubeClient,
        path: str,
        handler: Handler,
        *,
        resync: float = 30.0,
        params: dict[str, Any] | None = None,
        stop: threading.Event,
    ) -> None:
        super().__init__(name=f"reflector{path}", daemon=True)
        self.kube = kube
        self.path = path
        self.handler = handler
        self.resync = resync
        self.params = params or {}
        self.stop_event = stop
        self.cache: dict[str, dict[str, Any]] = {}
        self.synced = threading.Event()
        self._lock = threading.Lock()

    def items(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self.cache.values())

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            return self.cache.get(key)

    def _dispatch(self, event: str, obj: dict[str, Any]) -> None:
        try:
            self.handler(event, obj)
        except Exception:
            log.exception("handler failed for %s %s", event, key_of(obj))

    def _relist(self) -> str:
        listing = self.kube.request("GET", self.path, params=self.params or None)
        fresh = {key_of(o): o for o in listing.get("items", [])}
        with self._lock:
            gone = [o for k, o in self.cache.items() if k not in fresh]
            self.cache = fresh
        for obj in gone:
            self._dispatch("DELETED", obj)
        for obj in fresh.values():
            self._dispatch("SYNC", obj)
        self.synced.set()
        return listing["metadata"]["resourceVersion"]

    def run(self) -> None:
        rv = ""
        next_resync = 0.0
        while not self.stop_event.is_set():
            try:
                if not rv:
                    rv = self._relist()
                    next_resync = time.monotonic() + self.resync
                remaining = max(1, int(next_resync - time.monotonic()))
                for event in self.kube.watch(self.path, rv, timeout=remaining, **self.params):
                    if self.stop_event.is_set():
                        return
                    kind, obj = event["type"], event["object"]
                    if kind == "ERROR":
                        if obj.get("code") == 410:  # resourceVersion too old: start over
                            rv = ""
                        break
                    rv = obj["metadata"]["resourceVersion"]
                    if kind == "BOOKMARK":
                        continue
                    with self._lock:
                        if kind == "DELETED":
                            self.cache.pop(key_of(obj), None)
                        else:
                            self.cache[key_of(obj)] = obj
                    self._dispatch(kind, obj)
                if time.monotonic() >= next_resync:
                    for obj in self.items():
                        self._dispatch("SYNC", obj)
                    next_resync = time.monotonic() + self.resync
            except (httpx.HTTPError, ApiError, OSError, ValueError) as exc:
                if isinstance(exc, ApiError) and exc.status == 410:
                    rv = ""
                log.warning("watch %s failed (%s); retrying", self.path, exc)
                self.stop_event.wait(2.0)

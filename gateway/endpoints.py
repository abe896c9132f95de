"""Ready upstream addresses per Service, kept current by watching EndpointSlices.

The gateway sends each request straight to a ready pod of the active colour: it watches the
EndpointSlices of every portal-managed Service (they carry the Service's labels) and keeps, per
``(namespace, service)``, the ``ip:port`` of endpoints whose ``ready`` condition holds. When a
promotion flips the active Service's selector, the EndpointSlice controller rewrites the slices
and the gateway follows within moments, without the extra hop (and connection pinning) of a
ClusterIP.

The watch runs in a thread with the official ``kubernetes`` client; each change is handed to
the event loop as a whole new tuple, so request handlers only ever read immutable values.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from deployments.rendering.constants import ENDPOINTSLICE_SERVICE_LABEL, MANAGED_BY_SELECTOR
from deployments.rendering.endpointslices import ready_ips, service_port
from portal import kube

logger = logging.getLogger(__name__)

WATCH_TIMEOUT_SECONDS = 300
_RETRY_SECONDS = 1.0

ServiceKey = tuple[str, str]


def ready_addresses(endpoint_slice: dict[str, Any]) -> list[str]:
    """``ip:port`` of the slice's ready endpoints on the Service's port."""
    port = service_port(endpoint_slice)
    if port is None:
        return []
    return [f"{address}:{port}" for address in ready_ips(endpoint_slice)]


class Upstreams:
    """Ready addresses per Service, with round-robin picking; fed by ``EndpointWatcher``."""

    def __init__(self) -> None:
        self._slices: dict[ServiceKey, dict[str, list[str]]] = {}
        self._ready: dict[ServiceKey, tuple[str, ...]] = {}
        self._cursor: dict[ServiceKey, itertools.count[int]] = {}
        self.synced = asyncio.Event()

    def addresses(self, namespace: str, service: str) -> tuple[str, ...]:
        return self._ready.get((namespace, service), ())

    def pick(
        self, namespace: str, service: str, exclude: frozenset[str] = frozenset()
    ) -> str | None:
        """The next ready address in turn (skipping ``exclude``, e.g. one that just failed)."""
        key = (namespace, service)
        candidates = [a for a in self._ready.get(key, ()) if a not in exclude]
        if not candidates:
            return None
        cursor = self._cursor.setdefault(key, itertools.count())
        return candidates[next(cursor) % len(candidates)]

    def replace_all(self, slices: list[dict[str, Any]]) -> None:
        self._slices = {}
        for endpoint_slice in slices:
            self._store(endpoint_slice)
        self._ready = {key: self._merge(key) for key in self._slices}
        self.synced.set()

    def apply_event(self, kind: str, endpoint_slice: dict[str, Any]) -> None:
        key = self._store(endpoint_slice, deleted=kind == "DELETED")
        if key is not None:
            self._ready = {**self._ready, key: self._merge(key)}

    def _store(self, endpoint_slice: dict[str, Any], deleted: bool = False) -> ServiceKey | None:
        meta = endpoint_slice.get("metadata") or {}
        service = (meta.get("labels") or {}).get(ENDPOINTSLICE_SERVICE_LABEL)
        if not service:
            return None
        key = (meta.get("namespace", ""), service)
        per_slice = self._slices.setdefault(key, {})
        if deleted:
            per_slice.pop(meta.get("name", ""), None)
        else:
            per_slice[meta.get("name", "")] = ready_addresses(endpoint_slice)
        return key

    def _merge(self, key: ServiceKey) -> tuple[str, ...]:
        merged: set[str] = set()
        for addresses in self._slices.get(key, {}).values():
            merged.update(addresses)
        return tuple(sorted(merged))


class EndpointWatcher:
    """Lists, then watches, portal-managed EndpointSlices in all namespaces (a thread)."""

    def __init__(self, upstreams: Upstreams, loop: asyncio.AbstractEventLoop) -> None:
        self._upstreams = upstreams
        self._loop = loop
        self._stop = threading.Event()
        self._watch: watch.Watch | None = None
        self._thread = threading.Thread(target=self._run, name="endpointslice-watch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._watch is not None:
            self._watch.stop()

    def _call(self, fn: Callable[..., None], *args: Any) -> None:
        self._loop.call_soon_threadsafe(fn, *args)

    def _run(self) -> None:
        selector = MANAGED_BY_SELECTOR
        while not self._stop.is_set():
            try:
                api = client.DiscoveryV1Api(kube.api_client())
                listing = api.list_endpoint_slice_for_all_namespaces(
                    label_selector=selector, _request_timeout=10
                )
                raw = api.api_client.sanitize_for_serialization(listing)
                self._call(self._upstreams.replace_all, raw.get("items") or [])
                version = listing.metadata.resource_version if listing.metadata else None
                self._watch = watch.Watch()
                for event in self._watch.stream(
                    api.list_endpoint_slice_for_all_namespaces,
                    label_selector=selector,
                    resource_version=version,
                    timeout_seconds=WATCH_TIMEOUT_SECONDS,
                    allow_watch_bookmarks=True,
                    _request_timeout=WATCH_TIMEOUT_SECONDS + 10,
                ):
                    if self._stop.is_set():
                        return
                    kind = event["type"]
                    if kind in ("ADDED", "MODIFIED", "DELETED"):
                        body = api.api_client.sanitize_for_serialization(event["object"])
                        self._call(self._upstreams.apply_event, kind, body)
                # A watch ends after its timeout; list again so nothing is missed in between.
            except ApiException as exc:
                if exc.status != 410:  # 410 Gone: the version expired, list again at once
                    logger.warning("EndpointSlice watch failed: %s %s", exc.status, exc.reason)
                    time.sleep(_RETRY_SECONDS)
            except (HTTPError, OSError, kube.ClusterUnavailable) as exc:
                # Keep routing to the last known endpoints while the API server is away.
                logger.warning("EndpointSlice watch: API server unreachable: %r", exc)
                time.sleep(_RETRY_SECONDS)
            except Exception:
                logger.exception("EndpointSlice watch crashed; restarting")
                time.sleep(_RETRY_SECONDS)

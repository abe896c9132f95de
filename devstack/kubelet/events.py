"""Pod events as the kubelet reports them (Pulled, Created, Started, Unhealthy, BackOff...).

Repeats of the same (reason, container, message) bump `count`/`lastTimestamp` of the existing
Event, as client-go's event correlator does, instead of flooding the namespace.
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime
from typing import Any

import httpx

from .kube import MERGE, ApiError, KubeClient

log = logging.getLogger(__name__)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class PodEvents:
    def __init__(self, kube: KubeClient, pod: dict[str, Any], node: str) -> None:
        meta = pod["metadata"]
        self.kube = kube
        self.node = node
        self.namespace = meta["namespace"]
        self.involved = {
            "apiVersion": "v1",
            "kind": "Pod",
            "namespace": meta["namespace"],
            "name": meta["name"],
            "uid": meta["uid"],
        }
        self._seen: dict[tuple[str, str, str], tuple[str, int]] = {}
        self._lock = threading.Lock()

    def emit(
        self,
        etype: str,
        reason: str,
        message: str,
        container: str | None = None,
        component: str = "kubelet",
    ) -> None:
        """`component`: the reporter, e.g. attachdetach-controller for FailedAttachVolume."""
        key = (reason, container or "", message)
        now = _now()
        path = f"/api/v1/namespaces/{self.namespace}/events"
        try:
            with self._lock:
                seen = self._seen.get(key)
                if seen is not None:
                    name, count = seen
                    self.kube.patch(
                        f"{path}/{name}", {"count": count + 1, "lastTimestamp": now}, MERGE
                    )
                    self._seen[key] = (name, count + 1)
                    return
                involved = dict(self.involved)
                if container:
                    involved["fieldPath"] = f"spec.containers{{{container}}}"
                created = self.kube.create(
                    path,
                    {
                        "metadata": {"generateName": f"{self.involved['name']}."},
                        "involvedObject": involved,
                        "reason": reason,
                        "message": message,
                        "type": etype,
                        "source": {"component": component, "host": self.node},
                        "reportingComponent": component,
                        "reportingInstance": self.node,
                        "firstTimestamp": now,
                        "lastTimestamp": now,
                        "count": 1,
                    },
                )
                self._seen[key] = (created["metadata"]["name"], 1)
        except (ApiError, httpx.HTTPError) as exc:  # events are best effort, like upstream
            log.debug("event %s for %s not recorded: %s", reason, self.involved["name"], exc)

"""A tiny dynamic provisioner: hostPath PersistentVolumes for `local-path` claims.

The PV controller in kube-controller-manager does the binding. For a claim whose class names an
external provisioner it waits (annotating the claim with volume.kubernetes.io/storage-provisioner)
for a PV to appear; we create one pre-bound through spec.claimRef (namespace, name, uid), which
the controller then completes by setting the claim's volumeName and both phases to Bound. With
reclaimPolicy Delete the controller marks the PV Released when the claim goes away and leaves
deletion to the provisioner named in pv.kubernetes.io/provisioned-by: we remove the directory and
the PV.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import threading
from pathlib import Path
from typing import Any

from .kube import ApiError, KubeClient, Reflector

log = logging.getLogger(__name__)

STORAGE_CLASS = "local-path"
PROVISIONER = "devstack.inference.portal/local-path"
PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"
DEFAULT_CLASS_ANNOTATION = "storageclass.kubernetes.io/is-default-class"


def storage_class_manifest() -> dict[str, Any]:
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {
            "name": STORAGE_CLASS,
            "annotations": {DEFAULT_CLASS_ANNOTATION: "true"},
        },
        "provisioner": PROVISIONER,
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "Immediate",
    }


def volume_dir(root: Path, pvc: dict[str, Any]) -> Path:
    meta = pvc["metadata"]
    return root / f"{meta['namespace']}-{meta['name']}-{meta['uid']}"


def pv_manifest(root: Path, pvc: dict[str, Any]) -> dict[str, Any]:
    meta = pvc["metadata"]
    spec = pvc["spec"]
    storage = ((spec.get("resources") or {}).get("requests") or {}).get("storage", "1Gi")
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {
            "name": f"pvc-{meta['uid']}",
            "annotations": {PROVISIONED_BY: PROVISIONER},
            "labels": {"devstack.inference.portal/provisioner": "local-path"},
        },
        "spec": {
            "capacity": {"storage": storage},
            "accessModes": spec.get("accessModes") or ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Delete",
            "storageClassName": STORAGE_CLASS,
            "volumeMode": spec.get("volumeMode", "Filesystem"),
            "hostPath": {"path": str(volume_dir(root, pvc)), "type": "DirectoryOrCreate"},
            "claimRef": {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "namespace": meta["namespace"],
                "name": meta["name"],
                "uid": meta["uid"],
            },
        },
    }


class LocalPathProvisioner:
    def __init__(self, kube: KubeClient, root: Path, stop: threading.Event) -> None:
        self.kube = kube
        self.root = root.resolve()
        self.claims = Reflector(kube, "/api/v1/persistentvolumeclaims", self._on_claim, stop=stop)
        self.volumes = Reflector(kube, "/api/v1/persistentvolumes", self._on_volume, stop=stop)

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.ensure_storage_class()
        self.volumes.start()
        self.volumes.synced.wait(30)
        self.claims.start()

    def ensure_storage_class(self) -> None:
        try:
            self.kube.create("/apis/storage.k8s.io/v1/storageclasses", storage_class_manifest())
        except ApiError as exc:
            if exc.status != 409:
                raise

    def _wants_us(self, pvc: dict[str, Any]) -> bool:
        spec = pvc["spec"]
        if spec.get("volumeName") or (pvc.get("status") or {}).get("phase") == "Bound":
            return False
        if pvc["metadata"].get("deletionTimestamp"):
            return False
        # No class at all only happens without a default class; claim it then as well.
        return spec.get("storageClassName") in (STORAGE_CLASS, None)

    def _on_claim(self, event: str, pvc: dict[str, Any]) -> None:
        if event == "DELETED" or not self._wants_us(pvc):
            return
        manifest = pv_manifest(self.root, pvc)
        if self.volumes.get(f"/{manifest['metadata']['name']}") is not None:
            return
        Path(manifest["spec"]["hostPath"]["path"]).mkdir(parents=True, exist_ok=True)
        try:
            self.kube.create("/api/v1/persistentvolumes", manifest)
            log.info("provisioned %s for %s", manifest["metadata"]["name"], pvc["metadata"]["name"])
        except ApiError as exc:
            if exc.status != 409:
                raise

    def _ours(self, pv: dict[str, Any]) -> Path | None:
        if (pv["metadata"].get("annotations") or {}).get(PROVISIONED_BY) != PROVISIONER:
            return None
        path = Path((pv["spec"].get("hostPath") or {}).get("path", "")).resolve()
        # Never delete anything outside the volumes root.
        return path if path.parent == self.root else None

    def _on_volume(self, event: str, pv: dict[str, Any]) -> None:
        path = self._ours(pv)
        if path is None:
            return
        phase = (pv.get("status") or {}).get("phase")
        if event == "DELETED":
            shutil.rmtree(path, ignore_errors=True)
            return
        if phase == "Released" and pv["spec"].get("persistentVolumeReclaimPolicy") == "Delete":
            shutil.rmtree(path, ignore_errors=True)
            with contextlib.suppress(ApiError):
                self.kube.delete(f"/api/v1/persistentvolumes/{pv['metadata']['name']}")
            log.info("deleted %s and %s", pv["metadata"]["name"], path)

"""A tiny dynamic provisioner: hostPath PersistentVolumes that behave like cloud volumes.

Two StorageClasses, as a GKE/EKS/AKS cluster offers them:

* `local-path` (the default; the name is kept from earlier checkouts) acts like a zonal block
  disk (GKE `standard-rwo` / PD CSI, EKS `gp3` / EBS CSI): ReadWriteOnce only,
  `volumeBindingMode: WaitForFirstConsumer`, and the PV carries `spec.nodeAffinity` on
  `topology.kubernetes.io/zone` = the zone of the node the scheduler picked, so the real
  kube-scheduler's VolumeBinding plugin refuses other zones ("node(s) didn't match
  PersistentVolume's node affinity" in current releases, "had volume node affinity
  conflict" in older ones).
* `shared-files` acts like a network filesystem (Filestore, EFS, Azure Files): ReadWriteMany /
  ReadOnlyMany / ReadWriteOnce, Immediate binding, no node affinity.

The PV controller in kube-controller-manager does the binding (pkg/controller/volume/
persistentvolume, syncUnboundClaim). For a delayed-binding claim it only emits
WaitForFirstConsumer until the scheduler's VolumeBinding PreBind annotates the claim with
volume.kubernetes.io/selected-node; then (and for Immediate claims at once) it annotates the claim
with volume.kubernetes.io/storage-provisioner and waits for a PV, as for any external
provisioner. We create one pre-bound through spec.claimRef (namespace, name, uid), which the
controller completes by setting the claim's volumeName and both phases to Bound; the scheduler
then binds the pod once the PV's node affinity matches its node. With reclaimPolicy Delete the
controller marks the PV Released when the claim goes away and leaves deletion to the
provisioner named in pv.kubernetes.io/provisioned-by: we remove the directory and the PV.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from .kube import ApiError, KubeClient, Reflector

log = logging.getLogger(__name__)

PROVISIONED_BY = "pv.kubernetes.io/provisioned-by"
DEFAULT_CLASS_ANNOTATION = "storageclass.kubernetes.io/is-default-class"
# Set by kube-scheduler's VolumeBinding plugin on a WaitForFirstConsumer claim (PreBind).
SELECTED_NODE_ANNOTATION = "volume.kubernetes.io/selected-node"
ZONE_LABEL = "topology.kubernetes.io/zone"
HOSTNAME_LABEL = "kubernetes.io/hostname"
RWO, RWOP, RWX, ROX = "ReadWriteOnce", "ReadWriteOncePod", "ReadWriteMany", "ReadOnlyMany"


@dataclass(frozen=True)
class VolumeClass:
    name: str
    provisioner: str
    binding_mode: str  # Immediate | WaitForFirstConsumer
    access_modes: frozenset[str]  # what the simulated backend can do
    zonal: bool
    default: bool = False


ZONAL = VolumeClass(
    name="local-path",
    provisioner="devstack.inference.portal/local-path",
    binding_mode="WaitForFirstConsumer",
    # A block disk attaches read-write to one node (PD CSI and EBS CSI refuse multi-writer
    # filesystem volumes).
    access_modes=frozenset({RWO, RWOP}),
    zonal=True,
    default=True,
)
SHARED = VolumeClass(
    name="shared-files",
    provisioner="devstack.inference.portal/shared-files",
    binding_mode="Immediate",
    access_modes=frozenset({RWO, RWX, ROX}),
    zonal=False,
)
CLASSES = (ZONAL, SHARED)
STORAGE_CLASS = ZONAL.name  # the default class
PROVISIONER = ZONAL.provisioner


def storage_class_manifest(volume_class: VolumeClass = ZONAL) -> dict[str, Any]:
    annotations = {DEFAULT_CLASS_ANNOTATION: "true"} if volume_class.default else {}
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": volume_class.name, "annotations": annotations},
        "provisioner": volume_class.provisioner,
        "reclaimPolicy": "Delete",
        "volumeBindingMode": volume_class.binding_mode,
    }


def class_of(pvc: dict[str, Any]) -> VolumeClass | None:
    # No class at all only happens without a default class; the default serves it then.
    name = pvc["spec"].get("storageClassName") or ZONAL.name
    return next((c for c in CLASSES if c.name == name), None)


def unsupported_modes(volume_class: VolumeClass, pvc: dict[str, Any]) -> list[str]:
    modes = pvc["spec"].get("accessModes") or [RWO]
    return [mode for mode in modes if mode not in volume_class.access_modes]


def volume_dir(root: Path, pvc: dict[str, Any]) -> Path:
    meta = pvc["metadata"]
    return root / f"{meta['namespace']}-{meta['name']}-{meta['uid']}"


def zone_affinity(node: dict[str, Any]) -> dict[str, Any]:
    """PV node affinity for a disk created in the selected node's zone, as the PD and EBS CSI
    drivers report a volume's accessible topology. A node without a zone label (not one of
    nodepools.yaml's) pins the volume to the node itself, as a node-local volume would be."""
    labels = node["metadata"].get("labels") or {}
    zone = labels.get(ZONE_LABEL)
    key, value = (ZONE_LABEL, zone) if zone else (HOSTNAME_LABEL, node["metadata"]["name"])
    term = {"matchExpressions": [{"key": key, "operator": "In", "values": [value]}]}
    return {"required": {"nodeSelectorTerms": [term]}}


def pv_manifest(
    root: Path,
    pvc: dict[str, Any],
    volume_class: VolumeClass = ZONAL,
    node: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The PV for a claim; `node` is the scheduler's selected node for a zonal class."""
    meta = pvc["metadata"]
    spec = pvc["spec"]
    storage = ((spec.get("resources") or {}).get("requests") or {}).get("storage", "1Gi")
    pv_spec: dict[str, Any] = {
        "capacity": {"storage": storage},
        "accessModes": spec.get("accessModes") or [RWO],
        "persistentVolumeReclaimPolicy": "Delete",
        "storageClassName": volume_class.name,
        "volumeMode": spec.get("volumeMode", "Filesystem"),
        "hostPath": {"path": str(volume_dir(root, pvc)), "type": "DirectoryOrCreate"},
        "claimRef": {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "namespace": meta["namespace"],
            "name": meta["name"],
            "uid": meta["uid"],
        },
    }
    if volume_class.zonal and node is not None:
        pv_spec["nodeAffinity"] = zone_affinity(node)
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {
            "name": f"pvc-{meta['uid']}",
            "annotations": {PROVISIONED_BY: volume_class.provisioner},
            "labels": {"devstack.inference.portal/provisioner": volume_class.name},
        },
        "spec": pv_spec,
    }


class LocalPathProvisioner:
    def __init__(self, kube: KubeClient, root: Path, stop: threading.Event) -> None:
        self.kube = kube
        self.root = root.resolve()
        self.claims = Reflector(kube, "/api/v1/persistentvolumeclaims", self._on_claim, stop=stop)
        self.volumes = Reflector(kube, "/api/v1/persistentvolumes", self._on_volume, stop=stop)
        self._reported: set[tuple[str, str]] = set()

    def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.ensure_storage_class()
        self.volumes.start()
        self.volumes.synced.wait(30)
        self.claims.start()

    def ensure_storage_class(self) -> None:
        """Create both classes; replace one an older checkout made differently (a class's
        provisioner and binding mode are immutable; claims and PVs only name the class)."""
        path = "/apis/storage.k8s.io/v1/storageclasses"
        for volume_class in CLASSES:
            manifest = storage_class_manifest(volume_class)
            current = self.kube.get(f"{path}/{volume_class.name}")
            if current is not None and (
                current.get("volumeBindingMode") == volume_class.binding_mode
                and current.get("provisioner") == volume_class.provisioner
            ):
                continue
            if current is not None:
                log.info("replacing StorageClass %s (binding mode changed)", volume_class.name)
                with contextlib.suppress(ApiError):
                    self.kube.delete(f"{path}/{volume_class.name}")
            try:
                self.kube.create(path, manifest)
            except ApiError as exc:
                if exc.status != 409:
                    raise

    def _wants_us(self, pvc: dict[str, Any]) -> VolumeClass | None:
        spec = pvc["spec"]
        if spec.get("volumeName") or (pvc.get("status") or {}).get("phase") == "Bound":
            return None
        if pvc["metadata"].get("deletionTimestamp"):
            return None
        return class_of(pvc)

    def _on_claim(self, event: str, pvc: dict[str, Any]) -> None:
        volume_class = None if event == "DELETED" else self._wants_us(pvc)
        if volume_class is None:
            return
        name = f"pvc-{pvc['metadata']['uid']}"
        if self.volumes.get(f"/{name}") is not None:
            return
        node = None
        if volume_class.binding_mode == "WaitForFirstConsumer":
            selected = (pvc["metadata"].get("annotations") or {}).get(SELECTED_NODE_ANNOTATION)
            if not selected:
                return  # no consumer scheduled yet: the PV controller says WaitForFirstConsumer
            node = self.kube.get(f"/api/v1/nodes/{selected}")
            if node is None:
                log.warning("claim %s: selected node %s is gone", pvc["metadata"]["name"], selected)
                return
        unsupported = unsupported_modes(volume_class, pvc)
        if unsupported:
            # What the CSI external-provisioner reports when the driver refuses the request
            # (for a delayed-binding claim only once a consumer was scheduled, as here).
            self._claim_event(
                pvc,
                "ProvisioningFailed",
                f'failed to provision volume with StorageClass "{volume_class.name}": '
                f"access mode {', '.join(unsupported)} is not supported by this class "
                f"(supported: {', '.join(sorted(volume_class.access_modes))})",
            )
            return
        manifest = pv_manifest(self.root, pvc, volume_class, node)
        Path(manifest["spec"]["hostPath"]["path"]).mkdir(parents=True, exist_ok=True)
        try:
            self.kube.create("/api/v1/persistentvolumes", manifest)
            log.info("provisioned %s for %s", name, pvc["metadata"]["name"])
        except ApiError as exc:
            if exc.status != 409:
                raise

    def _claim_event(self, pvc: dict[str, Any], reason: str, message: str) -> None:
        meta = pvc["metadata"]
        key = (meta["uid"], reason)
        if key in self._reported:
            return
        self._reported.add(key)
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        with contextlib.suppress(ApiError, httpx.HTTPError):  # best effort, like upstream
            self.kube.create(
                f"/api/v1/namespaces/{meta['namespace']}/events",
                {
                    "metadata": {"generateName": f"{meta['name']}."},
                    "involvedObject": {
                        "apiVersion": "v1",
                        "kind": "PersistentVolumeClaim",
                        "namespace": meta["namespace"],
                        "name": meta["name"],
                        "uid": meta["uid"],
                    },
                    "reason": reason,
                    "message": message,
                    "type": "Warning",
                    "source": {"component": PROVISIONER},
                    "reportingComponent": PROVISIONER,
                    "firstTimestamp": now,
                    "lastTimestamp": now,
                    "count": 1,
                },
            )

    def _ours(self, pv: dict[str, Any]) -> Path | None:
        provisioned_by = (pv["metadata"].get("annotations") or {}).get(PROVISIONED_BY)
        if provisioned_by not in {c.provisioner for c in CLASSES}:
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

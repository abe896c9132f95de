"""Pod spec -> process translation of the simulated kubelet (no cluster needed)."""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from devstack.kubelet import runtime


class FakeKube:
    def __init__(self, objects: dict[str, dict[str, Any]]) -> None:
        self.objects = objects

    def get(self, path: str) -> dict[str, Any] | None:
        return self.objects.get(path)


POD: dict[str, Any] = {
    "metadata": {"name": "p", "namespace": "ns", "uid": "u-1", "labels": {"app": "x"}},
    "spec": {"nodeName": "l4-1", "containers": []},
}


def objects(**items: dict[str, Any]) -> runtime.ObjectCache:
    return runtime.ObjectCache(FakeKube(items), "ns")  # type: ignore[arg-type]


def test_env_resolution_like_the_kubelet() -> None:
    secret = {"data": {"token": base64.b64encode(b"hf_secret").decode()}}
    cache = objects(
        **{
            "/api/v1/namespaces/ns/secrets/hf": secret,
            "/api/v1/namespaces/ns/configmaps/cfg": {"data": {"A": "1", "B": "2"}},
        }
    )
    container = {
        "envFrom": [{"configMapRef": {"name": "cfg"}, "prefix": "CFG_"}],
        "env": [
            {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}}},
            {"name": "ME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
            {"name": "URL", "value": "http://$(IP):80/$(UNKNOWN)$$"},
            {
                "name": "OPT",
                "valueFrom": {"secretKeyRef": {"name": "nope", "key": "k", "optional": True}},
            },
        ],
    }
    env = runtime.container_env(POD, container, cache, "10.244.1.254", "10.243.1.2", {"X": "y"})
    assert env["HF_TOKEN"] == "hf_secret"
    assert env["CFG_A"] == "1" and env["CFG_B"] == "2"
    assert env["ME"] == "p" and env["APP"] == "x" and env["X"] == "y"
    assert env["URL"] == "http://10.244.1.254:80/$(UNKNOWN)$"
    assert "OPT" not in env


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ({"name": "missing", "key": "token"}, 'secret "missing" not found'),
        ({"name": "hf", "key": "other"}, "couldn't find key other in Secret ns/hf"),
    ],
)
def test_missing_secret_is_a_config_error(ref: dict[str, str], message: str) -> None:
    cache = objects(**{"/api/v1/namespaces/ns/secrets/hf": {"data": {}}})
    container = {"env": [{"name": "T", "valueFrom": {"secretKeyRef": ref}}]}
    with pytest.raises(runtime.ConfigError, match=message):
        runtime.container_env(POD, container, cache, "10.244.1.2", "h", {})


def test_tgi_argv_binds_the_pod_ip_only() -> None:
    container = {
        "image": "ghcr.io/huggingface/text-generation-inference:3.3.6",
        "command": ["text-generation-launcher"],
        "args": ["--model-id", "m", "--hostname", "0.0.0.0", "--port=8080"],
    }
    argv = runtime.tgi_argv(container, {}, "10.244.1.9")
    assert argv[:3] == [sys.executable, "-m", "devstack.tgi_simulator"]
    assert argv[3:] == ["--model-id", "m", "--port=8080", "--hostname", "10.244.1.9"]
    assert runtime.container_port(container, {"PORT": "80"}) == 8080
    assert runtime.container_port({"ports": [{"containerPort": 81}]}, {}) == 81
    assert runtime.container_port({}, {"PORT": "80"}) == 80


def test_portal_argv_maps_python_to_the_venv() -> None:
    assert runtime.portal_argv({"args": ["-m", "x"]}, {}) == [sys.executable, "-m", "x"]
    cmd = {"command": ["python3", "manage.py"], "args": ["run", "$(WHAT)"]}
    assert runtime.portal_argv(cmd, {"WHAT": "it"}) == [sys.executable, "manage.py", "run", "it"]
    assert runtime.portal_argv({"command": ["sh", "-c", "true"]}, {}) == ["sh", "-c", "true"]


def test_kinds_and_networks() -> None:
    tgi = {"image": "ghcr.io/huggingface/text-generation-inference:3.3.6"}
    portal = {"image": "registry.local/inference-portal:1.0"}
    assert runtime.kind_of(tgi) == "tgi"
    assert runtime.kind_of(portal) == "portal"
    assert runtime.kind_of({"image": "registry.k8s.io/pause:3.10"}) is None
    pod: dict[str, Any] = {"metadata": {}, "spec": {}}
    assert runtime.uses_pod_network(pod, tgi)
    assert not runtime.uses_pod_network(pod, portal)
    pod_net = {"metadata": {"annotations": {runtime.NETWORK_ANNOTATION: "pod"}}, "spec": {}}
    assert runtime.uses_pod_network(pod_net, portal)


def test_exit_codes() -> None:
    assert runtime.exit_code(-9) == 137
    assert runtime.exit_code(-15) == 143
    assert runtime.exit_code(3) == 3


def test_mounts_from_volumes(tmp_path: Path) -> None:
    pv_path = tmp_path / "pv"
    kube = FakeKube(
        {
            "/api/v1/namespaces/ns/persistentvolumeclaims/w": {
                "spec": {"volumeName": "pv1"},
                "status": {"phase": "Bound"},
            },
            "/api/v1/persistentvolumes/pv1": {"spec": {"hostPath": {"path": str(pv_path)}}},
        }
    )
    pod = {
        "metadata": {"namespace": "ns"},
        "spec": {
            "volumes": [
                {"name": "w", "persistentVolumeClaim": {"claimName": "w"}},
                {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "1Gi"}},
                {"name": "scratch", "emptyDir": {}},
            ]
        },
    }
    cache = runtime.ObjectCache(kube, "ns")  # type: ignore[arg-type]
    sources = runtime.volume_sources(pod, kube, cache, tmp_path / "pod")  # type: ignore[arg-type]
    container = {
        "volumeMounts": [
            {"name": "w", "mountPath": "/data"},
            {"name": "shm", "mountPath": "/dev/shm"},
            {"name": "scratch", "mountPath": "/tmp/x", "subPath": "a"},
        ]
    }
    mounts = {m.target: m for m in runtime.container_mounts(container, sources, app_root=True)}
    assert mounts["/app"].source == str(runtime.REPO_ROOT)
    assert mounts["/data"].source == str(pv_path)
    assert mounts["/dev/shm"].type == "tmpfs" and mounts["/dev/shm"].size == "1g"
    assert mounts["/tmp/x"].source == str(tmp_path / "pod" / "volumes" / "scratch" / "a")

    unbound = FakeKube({"/api/v1/namespaces/ns/persistentvolumeclaims/w": {"spec": {}}})
    with pytest.raises(runtime.NotReadyError):
        runtime.volume_sources(pod, unbound, cache, tmp_path / "pod")  # type: ignore[arg-type]


def test_cleanup_state_kills_recorded_processes_and_empty_mountpoints(tmp_path: Path) -> None:
    proc = runtime.spawn(["sleep", "60"], tmp_path / "log")
    other = tmp_path / "not-ours"  # a pid file whose start time does not match: left alone
    other_proc = runtime.spawn(["sleep", "60"], other / "log")
    pids = tmp_path / "state" / "pids"
    pids.mkdir(parents=True)
    (pids / "u--c.json").write_text(
        json.dumps({"pid": proc.pid, "start": runtime.proc_start_time(proc.pid)})
    )
    (pids / "u--d.json").write_text(json.dumps({"pid": other_proc.pid, "start": "1"}))
    empty, full = tmp_path / "mnt" / "empty", tmp_path / "mnt2"
    empty.mkdir(parents=True)
    (full / "data").mkdir(parents=True)
    runtime.created_mountpoints_file(tmp_path / "state").write_text(f"{empty}\n{full}\n")
    try:
        done = runtime.cleanup_state(tmp_path / "state")
        assert proc.wait(5) == -9
        assert other_proc.poll() is None
        assert f"process {proc.pid}" in done
        assert not empty.exists() and (full / "data").exists()  # never deletes content
        assert not list(pids.iterdir())
    finally:
        other_proc.kill()
        other_proc.wait()

"""Pod spec -> process translation of the simulated kubelet (no cluster needed)."""

from __future__ import annotations

import base64
import json
import ssl
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from devstack.kubelet import logs, runtime


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


VLLM_IMAGE = "vllm/vllm-openai:v0.11.0"
SGLANG_IMAGE = "lmsysorg/sglang:v0.5.5"


@pytest.mark.parametrize(
    ("container", "server_args"),
    [
        # The image's ENTRYPOINT is `vllm serve`: args start with the model.
        ({"args": ["acme/m", "--max-model-len", "4096"]}, ["acme/m", "--max-model-len", "4096"]),
        ({"command": ["vllm", "serve"], "args": ["acme/m"]}, ["acme/m"]),
        ({"command": ["vllm"], "args": ["serve", "acme/m"]}, ["acme/m"]),
        (
            {
                "command": ["python3", "-m", "vllm.entrypoints.openai.api_server"],
                "args": ["--model", "acme/m"],
            },
            ["--model", "acme/m"],
        ),
    ],
)
def test_vllm_pods_run_the_vllm_simulator_with_the_serve_arguments(
    container: dict[str, Any], server_args: list[str]
) -> None:
    container = {"image": VLLM_IMAGE, **container}
    argv = runtime.engine_argv("vllm", container, {}, "10.244.1.9")
    assert runtime.kind_of(container) == "vllm"
    assert argv == [
        sys.executable,
        "-m",
        "devstack.vllm_simulator",
        *server_args,
        "--host",
        "10.244.1.9",
    ]


def test_sglang_pods_run_the_sglang_simulator_with_the_launch_server_arguments() -> None:
    container = {
        "image": SGLANG_IMAGE,
        "command": ["python3", "-m", "sglang.launch_server"],
        "args": ["--model-path", "acme/m", "--host", "0.0.0.0", "--port", "30001"],
    }
    argv = runtime.engine_argv("sglang", container, {}, "10.244.2.7")
    assert runtime.kind_of(container) == "sglang"
    assert argv == [
        sys.executable, "-m", "devstack.sglang_simulator",
        "--model-path", "acme/m", "--port", "30001", "--host", "10.244.2.7",
    ]  # fmt: skip


def test_an_engine_image_running_something_else_is_a_config_error() -> None:
    # The SGLang image has no entrypoint, so args alone name no server.
    with pytest.raises(runtime.ConfigError, match="not a sglang server command"):
        runtime.engine_argv(
            "sglang", {"image": SGLANG_IMAGE, "args": ["--model-path", "m"]}, {}, "ip"
        )
    with pytest.raises(runtime.ConfigError, match="not a vllm server command"):
        runtime.engine_argv("vllm", {"command": ["bash", "-c", "sleep 1"]}, {}, "ip")


def test_variables_expand_before_the_arguments_reach_the_simulator() -> None:
    container = {"image": VLLM_IMAGE, "args": ["$(MODEL)", "--served-model-name", "$(NAME)"]}
    argv = runtime.engine_argv("vllm", container, {"MODEL": "acme/m", "NAME": "m"}, "10.0.0.1")
    assert argv[3:6] == ["acme/m", "--served-model-name", "m"]


@pytest.mark.parametrize(
    ("kind", "args", "env", "port"),
    [
        ("tgi", [], {"PORT": "80"}, 80),  # the TGI image sets PORT=80
        ("tgi", ["--port", "8080"], {"PORT": "80"}, 8080),
        ("vllm", [], {"PORT": "9999"}, 8000),  # vLLM ignores PORT
        ("vllm", ["m", "--port=8001"], {}, 8001),
        ("sglang", ["--model-path", "m"], {}, 30000),
        ("sglang", ["--port", "30001"], {}, 30001),
    ],
)
def test_engine_ports_follow_each_servers_flags_and_defaults(
    kind: str, args: list[str], env: dict[str, str], port: int
) -> None:
    assert runtime.engine_port(kind, args, env) == port


# --- container logs ------------------------------------------------------------------------


def run_launcher(tmp_path: Path, code: str) -> tuple[int, Path]:
    """Run a container process through the launcher (no mounts: no root needed)."""
    log_file = tmp_path / "0.log"
    spec = tmp_path / "launch.json"
    spec.write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-c", code],
                "env": {"PATH": "/usr/bin:/bin"},
                "cwd": str(tmp_path),
                "mounts": [],
                "log_file": str(log_file),
            }
        )
    )
    rc = subprocess.run([sys.executable, "-S", str(runtime.LAUNCHER), str(spec)]).returncode
    # The log writer drains the pipes after the container exits.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and b"last words" not in log_file.read_bytes():
        time.sleep(0.05)
    return rc, log_file


def read(path: Path, query: str = "") -> str:
    out: list[bytes] = []
    logs.read_log(path, logs.parse_options(query), out.append)
    return b"".join(out).decode()


def test_the_launcher_writes_stdout_and_stderr_as_a_cri_log_and_keeps_the_exit_code(
    tmp_path: Path,
) -> None:
    code = (
        "import sys\n"
        "print('loading shard', flush=True)\n"
        "print('CUDA out of memory', file=sys.stderr, flush=True)\n"
        "sys.stdout.write('last words')\n"  # no newline: the record is still written
        "sys.exit(1)\n"
    )
    rc, log_file = run_launcher(tmp_path, code)
    assert rc == 1
    records = log_file.read_text().splitlines()
    assert [r.split(" ", 1)[1] for r in records] == [
        "stdout F loading shard",
        "stderr F CUDA out of memory",
        "stdout F last words",
    ]
    assert read(log_file) == "loading shard\nCUDA out of memory\nlast words\n"
    assert read(log_file, "tailLines=1") == "last words\n"
    stamped = read(log_file, "timestamps=true&tailLines=1")
    stamp, text = stamped.split(" ", 1)
    assert text == "last words\n"
    assert datetime.fromisoformat(stamp.replace("Z", "+00:00")).year >= 2025


def cri(stamp: str, text: str, stream: str = "stdout", tag: str = "F") -> str:
    return f"{stamp} {stream} {tag} {text}\n"


def test_log_options_tail_since_limit_and_timestamps(tmp_path: Path) -> None:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    path = tmp_path / "3.log"
    path.write_text(
        cri("2020-01-01T00:00:00.100000000Z", "old line")
        + cri(f"{now}.500000000Z", "part one, ", tag="P")
        + cri(f"{now}.600000000Z", "part two")
        + cri(f"{now}.700000000Z", "err", stream="stderr")
    )
    assert read(path) == "old line\npart one, part two\nerr\n"
    assert read(path, "tailLines=2") == "part one, part two\nerr\n"
    assert read(path, "tailLines=0") == ""
    assert read(path, "sinceSeconds=60") == "part one, part two\nerr\n"
    assert read(path, "limitBytes=5") == "old l"
    # Go's RFC3339Nano: trailing zeros of the fraction are dropped.
    assert read(path, "timestamps=true&tailLines=1") == f"{now}.7Z err\n"
    assert read(tmp_path / "missing.log") == ""
    with pytest.raises(logs.LogRequestError, match="tailLines"):
        logs.parse_options("tailLines=-1")


def test_follow_streams_until_the_instance_stops(tmp_path: Path) -> None:
    path = tmp_path / "0.log"
    path.write_text(cri("2026-01-01T00:00:00.1Z", "first"))
    running = threading.Event()
    running.set()
    out: list[bytes] = []

    def writer() -> None:
        time.sleep(0.3)
        with path.open("a") as handle:
            handle.write(cri("2026-01-01T00:00:01.1Z", "second"))
        time.sleep(0.3)
        running.clear()

    thread = threading.Thread(target=writer)
    thread.start()
    logs.read_log(path, logs.parse_options("follow=true"), out.append, running.is_set)
    thread.join()
    assert b"".join(out) == b"first\nsecond\n"


def status_of(state: dict[str, Any], last: dict[str, Any] | None = None) -> dict[str, Any]:
    entry = {"name": "tgi", "state": state, "lastState": {"terminated": last} if last else {}}
    if "running" in state:
        entry["containerID"] = "sim://u/tgi/2"
    return {"containerStatuses": [entry]}


def test_instance_selection_and_refusals_follow_the_kubelet() -> None:
    crashed = {"exitCode": 1, "reason": "Error", "containerID": "sim://u/tgi/1"}
    running = status_of({"running": {}}, crashed)
    assert logs.select_instance("p", running, "tgi", previous=False) == (2, True)
    assert logs.select_instance("p", running, "tgi", previous=True) == (1, False)
    # Back-off after a crash: the current log is the crashed instance's.
    backoff = status_of({"waiting": {"reason": "CrashLoopBackOff"}}, crashed)
    assert logs.select_instance("p", backoff, "tgi", previous=False) == (1, False)

    first = status_of({"running": {}})
    with pytest.raises(logs.LogRequestError) as refused:
        logs.select_instance("p", first, "tgi", previous=True)
    assert refused.value.status == 400
    assert str(refused.value) == 'previous terminated container "tgi" in pod "p" not found'
    creating = status_of({"waiting": {"reason": "ContainerCreating"}})
    with pytest.raises(logs.LogRequestError, match="is waiting to start: ContainerCreating"):
        logs.select_instance("p", creating, "tgi", previous=False)
    with pytest.raises(logs.LogRequestError, match='container "nope" in pod "p" is not available'):
        logs.select_instance("p", first, "nope", previous=False)


@pytest.fixture(scope="module")
def cluster_pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from devstack.cluster import config as cluster_config
    from devstack.cluster import pki

    layout = cluster_config.Layout(tmp_path_factory.mktemp("cluster"))
    pki.ensure_pki(layout)
    return layout.pki


def test_the_log_endpoint_wants_a_client_certificate_and_serves_by_path(
    cluster_pki: Path, tmp_path: Path
) -> None:
    pod_dir = tmp_path / "ns_p_u"
    (pod_dir / "tgi").mkdir(parents=True)
    (pod_dir / "tgi" / "2.log").write_text(cri("2026-01-01T00:00:00.5Z", "serving"))
    target = logs.LogTarget(
        pod_name="p",
        status=status_of({"running": {}}),
        directory=pod_dir,
        is_running=lambda _c, _i: False,
    )
    server = logs.LogServer(
        ("127.0.0.1", 0),
        lambda ns, name: target if (ns, name) == ("ns", "p") else None,
        cert_file=cluster_pki / "kubelet.crt",
        key_file=cluster_pki / "kubelet.key",
        client_ca_file=cluster_pki / "ca.crt",
    )
    server.start()
    base = f"https://localhost:{server.server_address[1]}/containerLogs"
    anonymous_tls = ssl.create_default_context(cafile=str(cluster_pki / "ca.crt"))
    apiserver_tls = ssl.create_default_context(cafile=str(cluster_pki / "ca.crt"))
    apiserver_tls.load_cert_chain(
        cluster_pki / "apiserver-kubelet-client.crt", cluster_pki / "apiserver-kubelet-client.key"
    )
    try:
        with httpx.Client(verify=apiserver_tls, timeout=5) as apiserver:
            response = apiserver.get(f"{base}/ns/p/tgi", params={"timestamps": "true"})
            assert (response.status_code, response.text) == (
                200,
                "2026-01-01T00:00:00.5Z serving\n",
            )
            previous = apiserver.get(f"{base}/ns/p/tgi", params={"previous": "true"})
            assert previous.status_code == 400
            assert previous.text == 'previous terminated container "tgi" in pod "p" not found'
            assert apiserver.get(f"{base}/ns/gone/tgi").status_code == 404
        # Without a client certificate the TLS handshake itself is refused.
        with (
            pytest.raises(httpx.HTTPError),
            httpx.Client(verify=anonymous_tls, timeout=5) as anonymous,
        ):
            anonymous.get(f"{base}/ns/p/tgi")
    finally:
        server.shutdown()
        server.server_close()

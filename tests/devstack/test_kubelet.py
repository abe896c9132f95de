"""The simulated kubelet runs TGI and portal pods of the local cluster as real processes.

Needs the local cluster (started on demand) with `devstack.kubelet` running in it. The
kubelet's default back-off (10s base) applies, so CrashLoopBackOff tests take ~15s.
"""

from __future__ import annotations

import json
import os
import signal
import tempfile
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from kubernetes.client.exceptions import ApiException

from devstack.cluster import ClusterInfo, ensure_up
from devstack.hub import fixtures as hub
from devstack.kubelet import network
from devstack.kubelet.kube import KubeClient
from devstack.kubelet.runtime import proc_start_time
from tests.fixtures.cluster import K8sClients, wait_for

pytestmark = pytest.mark.cluster

TGI_IMAGE = "ghcr.io/huggingface/text-generation-inference:3.3.6"
PORTAL_IMAGE = "ghcr.io/acme/inference-portal:dev"
# TGI refuses to start without weights; a local snapshot directory as --model-id needs no Hub
# (the pod's process sees the host's files, its network namespace reaches no Hub).
MODEL_DIR = Path(tempfile.gettempdir()) / "devstack-kubelet-tests" / "llama-snapshot"
MODEL_ID = str(MODEL_DIR)
GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}


@pytest.fixture(scope="module", autouse=True)
def model_weights() -> Path:
    """The fixture Hub's Llama files (config, tokenizer, weights) at MODEL_DIR."""
    for name, file in hub.repo(hub.LLAMA_8B_ID).main.files.items():
        target = MODEL_DIR / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists() or target.read_bytes() != file.content:
            target.write_bytes(file.content)
    return MODEL_DIR


@pytest.fixture(scope="module")
def kube(cluster: ClusterInfo) -> KubeClient:
    return KubeClient(cluster.kubeconfig)


@pytest.fixture(scope="module")
def kubelet_state(cluster: ClusterInfo) -> Path:
    return cluster.kubeconfig.parent / "kubelet"


def tgi_pod(
    name: str,
    *,
    faults: str | None = None,
    startup_seconds: float = 1.0,
    labels: dict[str, str] | None = None,
    env: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    annotations = {"sim.inference.portal/faults": faults} if faults else {}
    return {
        "metadata": {"name": name, "labels": labels or {"app": name}, "annotations": annotations},
        "spec": {
            "nodeSelector": {"inference.portal/pool": "l4"},
            "tolerations": [GPU_TOLERATION],
            "terminationGracePeriodSeconds": 120,
            "containers": [
                {
                    "name": "tgi",
                    "image": TGI_IMAGE,
                    "args": [
                        "--model-id",
                        MODEL_ID,
                        "--max-input-tokens",
                        "512",
                        "--max-total-tokens",
                        "1024",
                    ],
                    "env": [
                        {"name": "SIM_STARTUP_SECONDS", "value": str(startup_seconds)},
                        *(env or []),
                    ],
                    "ports": [{"name": "http", "containerPort": 80}],
                    "resources": {"limits": {"nvidia.com/gpu": "1"}},
                    "readinessProbe": {
                        "httpGet": {"path": "/health", "port": "http"},
                        "periodSeconds": 1,
                        "failureThreshold": 3,
                    },
                }
            ],
        },
    }


def pods_path(namespace: str, name: str = "") -> str:
    return f"/api/v1/namespaces/{namespace}/pods" + (f"/{name}" if name else "")


def get_pod(kube: KubeClient, namespace: str, name: str) -> dict[str, Any]:
    pod = kube.get(pods_path(namespace, name))
    assert pod is not None, f"pod {namespace}/{name} is gone"
    return pod


def condition(pod: dict[str, Any], ctype: str) -> str | None:
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond["type"] == ctype:
            return str(cond["status"])
    return None


def container_status(pod: dict[str, Any]) -> dict[str, Any]:
    statuses = (pod.get("status") or {}).get("containerStatuses") or [{}]
    return dict(statuses[0])


def describe(kube: KubeClient, namespace: str, name: str) -> Any:
    return lambda: json.dumps((kube.get(pods_path(namespace, name)) or {}).get("status"), indent=1)


def until(
    check: Callable[[], dict[str, Any] | None], timeout: float, describe: Any
) -> dict[str, Any]:
    """wait_for() for checks returning an object or None (keeps the result typed)."""
    result = wait_for(check, timeout, describe=describe)
    assert result is not None
    return result


def pod_when(
    kube: KubeClient,
    namespace: str,
    name: str,
    predicate: Callable[[dict[str, Any]], bool],
    timeout: float = 30,
) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        pod = get_pod(kube, namespace, name)
        return pod if predicate(pod) else None

    return until(check, timeout, describe(kube, namespace, name))


def refusal_message(error: ApiException) -> str:
    """The message of the Status the apiserver answers with (the kubelet's text)."""
    return str(json.loads(error.body or "{}").get("message", "")).strip()


def ready_endpoint_ips(kube: KubeClient, namespace: str, service: str) -> set[str]:
    slices = kube.request(
        "GET",
        f"/apis/discovery.k8s.io/v1/namespaces/{namespace}/endpointslices",
        params={"labelSelector": f"kubernetes.io/service-name={service}"},
    )["items"]
    return {
        address
        for s in slices
        for ep in s.get("endpoints") or []
        if (ep.get("conditions") or {}).get("ready")
        for address in ep["addresses"]
    }


def test_tgi_pod_ready_after_startup_and_serves_its_args(kube: KubeClient, namespace: str) -> None:
    kube.create(
        f"/api/v1/namespaces/{namespace}/services",
        {
            "metadata": {"name": "tgi"},
            "spec": {"selector": {"app": "tgi"}, "ports": [{"port": 80, "targetPort": "http"}]},
        },
    )
    kube.create(pods_path(namespace), tgi_pod("tgi", startup_seconds=4))

    running = pod_when(kube, namespace, "tgi", lambda p: p["status"].get("phase") == "Running", 30)
    pod_ip = running["status"]["podIP"]
    assert pod_ip.startswith("10.244.")
    assert running["status"]["hostIP"]
    # Still loading: the port is not bound, so the pod is not Ready and has no ready endpoint.
    assert condition(running, "Ready") == "False"
    assert pod_ip not in ready_endpoint_ips(kube, namespace, "tgi")

    ready = pod_when(kube, namespace, "tgi", lambda p: condition(p, "Ready") == "True", 30)
    status = container_status(ready)
    started = time.mktime(
        time.strptime(status["state"]["running"]["startedAt"], "%Y-%m-%dT%H:%M:%SZ")
    )
    became_ready = next(
        c["lastTransitionTime"] for c in ready["status"]["conditions"] if c["type"] == "Ready"
    )
    ready_at = time.mktime(time.strptime(became_ready, "%Y-%m-%dT%H:%M:%SZ"))
    assert ready_at - started >= 3, "Ready before the simulator's startup delay elapsed"
    assert status["ready"] is True and status["started"] is True
    assert status["restartCount"] == 0

    info = httpx.get(f"http://{pod_ip}:80/info", timeout=5).json()
    assert info["model_id"] == MODEL_ID
    assert info["max_input_tokens"] == 512
    assert info["max_total_tokens"] == 1024
    wait_for(
        lambda: pod_ip in ready_endpoint_ips(kube, namespace, "tgi"),
        30,
        describe="ready EndpointSlice endpoint with the pod IP",
    )


@pytest.mark.parametrize(
    ("image", "command", "args", "port"),
    [
        # The vLLM image's entrypoint is `vllm serve`: args start with the model.
        ("vllm/vllm-openai:v0.11.0", None, [MODEL_ID, "--max-model-len", "2048"], 8000),
        (
            "lmsysorg/sglang:v0.5.5",
            ["python3", "-m", "sglang.launch_server"],
            ["--model-path", MODEL_ID, "--context-length", "2048"],
            30000,
        ),
    ],
    ids=["vllm", "sglang"],
)
def test_engine_images_run_their_simulator_on_the_pod_ip_and_default_port(
    kube: KubeClient,
    k8s: K8sClients,
    namespace: str,
    image: str,
    command: list[str] | None,
    args: list[str],
    port: int,
) -> None:
    pod = tgi_pod("engine")
    container = pod["spec"]["containers"][0]
    container.update(name="engine", image=image, args=args, env=[], ports=[])
    container.pop("readinessProbe")
    if command:
        container["command"] = command
    kube.create(pods_path(namespace), pod)
    running = pod_when(
        kube, namespace, "engine", lambda p: "running" in container_status(p).get("state", {}), 30
    )
    pod_ip = running["status"]["podIP"]
    # The server answers on the pod IP at the port the real server would pick.
    wait_for(
        lambda: _answers(f"http://{pod_ip}:{port}/health"),
        30,
        describe=lambda: k8s.core.read_namespaced_pod_log("engine", namespace, tail_lines=20),
    )
    log = k8s.core.read_namespaced_pod_log("engine", namespace, container="engine")
    assert f"http://{pod_ip}:{port}" in log


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_missing_secret_is_create_container_config_error(
    kube: KubeClient, k8s: K8sClients, namespace: str
) -> None:
    secret_env = {
        "name": "HF_TOKEN",
        "valueFrom": {"secretKeyRef": {"name": "hf-token", "key": "token"}},
    }
    kube.create(pods_path(namespace), tgi_pod("tgi-nosecret", env=[secret_env]))
    waiting = wait_for(
        lambda: (
            container_status(get_pod(kube, namespace, "tgi-nosecret"))
            .get("state", {})
            .get("waiting")
        ),
        30,
        describe=describe(kube, namespace, "tgi-nosecret"),
    )
    wait_for(
        lambda: (
            container_status(get_pod(kube, namespace, "tgi-nosecret"))["state"]
            .get("waiting", {})
            .get("reason")
            == "CreateContainerConfigError"
        ),
        30,
        describe=describe(kube, namespace, "tgi-nosecret"),
    )
    assert waiting is not None
    # pods/log, through the apiserver to the kubelet, says why there is no log yet.
    with pytest.raises(ApiException) as refused:
        k8s.core.read_namespaced_pod_log("tgi-nosecret", namespace, container="tgi")
    assert refused.value.status == 400
    assert refusal_message(refused.value) == (
        'container "tgi" in pod "tgi-nosecret" is waiting to start: CreateContainerConfigError'
    )
    # Creating the secret lets the kubelet's retry start the container.
    kube.create(
        f"/api/v1/namespaces/{namespace}/secrets",
        {"metadata": {"name": "hf-token"}, "stringData": {"token": "hf_test"}},
    )
    wait_for(
        lambda: condition(get_pod(kube, namespace, "tgi-nosecret"), "Ready") == "True",
        40,
        describe=describe(kube, namespace, "tgi-nosecret"),
    )


def test_crash_fault_reaches_crash_loop_back_off(kube: KubeClient, namespace: str) -> None:
    kube.create(pods_path(namespace), tgi_pod("tgi-crash", faults="crash", startup_seconds=0.2))

    def crash_looping() -> dict[str, Any] | None:
        status = container_status(get_pod(kube, namespace, "tgi-crash"))
        waiting = (status.get("state") or {}).get("waiting") or {}
        if waiting.get("reason") == "CrashLoopBackOff" and status.get("restartCount", 0) > 0:
            return status
        return None

    status = until(crash_looping, 60, describe(kube, namespace, "tgi-crash"))
    last = status["lastState"]["terminated"]
    assert last["exitCode"] == 1
    assert last["reason"] == "Error"
    pod = get_pod(kube, namespace, "tgi-crash")
    assert pod["status"]["phase"] == "Running"  # restartPolicy Always: never terminal
    assert condition(pod, "Ready") == "False"
    events = kube.request(
        "GET",
        f"/api/v1/namespaces/{namespace}/events",
        params={"fieldSelector": "involvedObject.name=tgi-crash"},
    )["items"]
    reasons = {e["reason"]: e for e in events}
    assert {"Pulled", "Created", "Started", "BackOff"} <= set(reasons)
    assert reasons["Started"]["count"] >= 2
    assert reasons["BackOff"]["type"] == "Warning"


def _stamps(log: str) -> list[datetime]:
    return [datetime.fromisoformat(line.split(" ", 1)[0]) for line in log.splitlines()]


def test_pod_log_serves_the_running_instance_and_after_a_crash_the_previous_one(
    kube: KubeClient, k8s: K8sClients, namespace: str, kubelet_state: Path
) -> None:
    name = "tgi-logs"
    kube.create(pods_path(namespace), tgi_pod(name, faults="crash_after=4", startup_seconds=0.2))
    pod = pod_when(kube, namespace, name, lambda p: condition(p, "Ready") == "True", 30)
    core = k8s.core
    first = core.read_namespaced_pod_log(name, namespace, container="tgi")
    assert "Shard 0 crashed" not in first and first.strip(), first
    # No instance has terminated yet: the kubelet's 400, passed on by the apiserver.
    with pytest.raises(ApiException) as refused:
        core.read_namespaced_pod_log(name, namespace, container="tgi", previous=True)
    assert refused.value.status == 400
    assert refusal_message(refused.value) == (
        f'previous terminated container "tgi" in pod "{name}" not found'
    )

    def restarted_and_running() -> dict[str, Any] | None:
        status = container_status(get_pod(kube, namespace, name))
        running = "running" in (status.get("state") or {})
        return status if running and status.get("restartCount", 0) >= 1 else None

    status = until(restarted_and_running, 60, describe(kube, namespace, name))
    crashed = status["lastState"]["terminated"]
    assert crashed["exitCode"] == 1

    previous = core.read_namespaced_pod_log(
        name, namespace, container="tgi", previous=True, tail_lines=3
    )
    lines = previous.splitlines()
    assert len(lines) == 3, previous
    assert lines[-1] == "Error: ShardFailed"  # the crashed instance's last words
    assert "Shard 0 crashed" in core.read_namespaced_pod_log(
        name, namespace, container="tgi", previous=True
    )
    # The current log is the new instance's: every line written after the crash.
    current = wait_for(
        lambda: (
            core.read_namespaced_pod_log(name, namespace, container="tgi", timestamps=True) or None
        ),
        10,
        describe=lambda: "the new instance wrote no log line",
    )
    finished = datetime.fromisoformat(crashed["finishedAt"])
    assert current.strip() and min(_stamps(current)) >= finished, (current, crashed)
    assert "ShardFailed" not in current

    uid = pod["metadata"]["uid"]
    log_dir = kubelet_state / "pods" / f"{namespace}_{name}_{uid}"
    instance_logs = [p.name for p in (log_dir / "tgi").glob("*.log") if p.stem.isdigit()]
    assert sorted(instance_logs) == ["0.log", "1.log"]
    kube.delete(pods_path(namespace, name), {"gracePeriodSeconds": 0})
    wait_for(lambda: kube.get(pods_path(namespace, name)) is None, 30)
    wait_for(lambda: not log_dir.exists(), 10, describe=lambda: f"{log_dir} left behind")


def test_oom_at_warmup_is_an_error_exit_whose_cause_is_in_the_log(
    kube: KubeClient, k8s: K8sClients, namespace: str
) -> None:
    # Real TGI catches the CUDA OOM, logs it and exits 1: the kubelet reports a plain Error
    # (not OOMKilled), so the cause is only in the previous instance's log.
    kube.create(pods_path(namespace), tgi_pod("tgi-oom", faults="oom", startup_seconds=0.2))

    def crashed() -> dict[str, Any] | None:
        status = container_status(get_pod(kube, namespace, "tgi-oom"))
        last = (status.get("lastState") or {}).get("terminated") or {}
        return last or None

    last = until(crashed, 40, describe(kube, namespace, "tgi-oom"))
    assert (last["exitCode"], last["reason"]) == (1, "Error")
    log = k8s.core.read_namespaced_pod_log("tgi-oom", namespace, container="tgi", previous=True)
    assert "CUDA out of memory" in log


def test_deleting_pod_stops_its_process(
    kube: KubeClient, namespace: str, kubelet_state: Path
) -> None:
    kube.create(pods_path(namespace), tgi_pod("tgi-del"))
    pod = pod_when(kube, namespace, "tgi-del", lambda p: condition(p, "Ready") == "True", 30)
    uid, pod_ip, node = pod["metadata"]["uid"], pod["status"]["podIP"], pod["spec"]["nodeName"]
    record = json.loads((kubelet_state / "pids" / f"{uid}--tgi.json").read_text())
    pid = int(record["pid"])
    assert proc_start_time(pid) == record["start"]
    assert pod_ip in network.list_pod_ips(node)

    kube.delete(pods_path(namespace, "tgi-del"))  # default grace period (120s, capped)
    wait_for(
        lambda: kube.get(pods_path(namespace, "tgi-del")) is None,
        30,
        describe=describe(kube, namespace, "tgi-del"),
    )
    assert proc_start_time(pid) is None, "simulator process survived its pod"
    assert pod_ip not in network.list_pod_ips(node)
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://{pod_ip}:80/health", timeout=2)


def test_portal_job_writes_into_provisioned_volume(kube: KubeClient, namespace: str) -> None:
    kube.create(
        f"/api/v1/namespaces/{namespace}/persistentvolumeclaims",
        {
            "metadata": {"name": "weights"},
            # No storageClassName: the default class (local-path) applies.
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "1Gi"}},
            },
        },
    )
    script = (
        "import os, pathlib, sys; "
        "pathlib.Path('/data/weights/done.txt').parent.mkdir(parents=True, exist_ok=True); "
        "pathlib.Path('/data/weights/done.txt').write_text(os.environ['MODEL_ID'] + ' ' + "
        "os.getcwd()); sys.exit(0)"
    )
    kube.create(
        f"/apis/batch/v1/namespaces/{namespace}/jobs",
        {
            "metadata": {"name": "download"},
            "spec": {
                "backoffLimit": 0,
                "template": {
                    "spec": {
                        "restartPolicy": "Never",
                        "containers": [
                            {
                                "name": "download",
                                "image": PORTAL_IMAGE,
                                "args": ["-c", script],
                                "env": [{"name": "MODEL_ID", "value": MODEL_ID}],
                                "volumeMounts": [{"name": "weights", "mountPath": "/data"}],
                            }
                        ],
                        "volumes": [
                            {"name": "weights", "persistentVolumeClaim": {"claimName": "weights"}}
                        ],
                    }
                },
            },
        },
    )

    def job_done() -> str | None:
        job = kube.get(f"/apis/batch/v1/namespaces/{namespace}/jobs/download") or {}
        for cond in (job.get("status") or {}).get("conditions") or []:
            if cond["status"] == "True" and cond["type"] in ("Complete", "Failed"):
                return str(cond["type"])
        return None

    def job_state() -> str:
        pods = kube.request("GET", pods_path(namespace))["items"]
        return json.dumps([p.get("status") for p in pods], indent=1)

    assert wait_for(job_done, 60, describe=job_state) == "Complete"
    pvc = kube.get(f"/api/v1/namespaces/{namespace}/persistentvolumeclaims/weights")
    assert pvc is not None
    assert pvc["status"]["phase"] == "Bound"
    assert pvc["spec"]["storageClassName"] == "local-path"
    pv = kube.get(f"/api/v1/persistentvolumes/{pvc['spec']['volumeName']}")
    assert pv is not None
    host_dir = Path(pv["spec"]["hostPath"]["path"])
    assert host_dir.name == f"{namespace}-weights-{pvc['metadata']['uid']}"
    assert (host_dir / "weights" / "done.txt").read_text() == f"{MODEL_ID} /app"
    pods = kube.request("GET", pods_path(namespace), params={"labelSelector": "job-name=download"})
    status = container_status(pods["items"][0])
    assert pods["items"][0]["status"]["phase"] == "Succeeded"
    assert status["state"]["terminated"]["reason"] == "Completed"

    # Reclaim policy Delete: removing the claim removes the volume and its directory.
    kube.delete(
        f"/apis/batch/v1/namespaces/{namespace}/jobs/download", {"propagationPolicy": "Background"}
    )
    kube.delete(f"/api/v1/namespaces/{namespace}/persistentvolumeclaims/weights")
    wait_for(
        lambda: kube.get(f"/api/v1/persistentvolumes/{pv['metadata']['name']}") is None,
        60,
        describe=lambda: json.dumps(
            kube.get(f"/api/v1/persistentvolumes/{pv['metadata']['name']}")
        ),
    )
    assert not host_dir.exists()


def test_failing_job_pod_is_failed(kube: KubeClient, namespace: str) -> None:
    kube.create(
        pods_path(namespace),
        {
            "metadata": {"name": "fails"},
            "spec": {
                "restartPolicy": "Never",
                "containers": [
                    {"name": "main", "image": PORTAL_IMAGE, "args": ["-c", "raise SystemExit(3)"]}
                ],
            },
        },
    )
    pod = pod_when(kube, namespace, "fails", lambda p: p["status"].get("phase") == "Failed", 30)
    terminated = container_status(pod)["state"]["terminated"]
    assert terminated["exitCode"] == 3
    assert terminated["reason"] == "Error"


def test_liveness_failure_restarts_container(kube: KubeClient, namespace: str) -> None:
    pod = tgi_pod("tgi-unhealthy", faults="unhealthy", startup_seconds=0.2)
    container = pod["spec"]["containers"][0]
    container["livenessProbe"] = {
        "httpGet": {"path": "/health", "port": 80},
        "initialDelaySeconds": 1,
        "periodSeconds": 1,
        "failureThreshold": 2,
    }
    kube.create(pods_path(namespace), pod)

    def restarted() -> dict[str, Any] | None:
        status = container_status(get_pod(kube, namespace, "tgi-unhealthy"))
        return status if status.get("lastState", {}).get("terminated") else None

    status = until(restarted, 40, describe(kube, namespace, "tgi-unhealthy"))
    # Killed by the kubelet: TGI exits 0 on SIGTERM (reported Completed, as a runtime would);
    # a SIGKILL after the grace period would be Error/137, never OOMKilled.
    terminated = status["lastState"]["terminated"]
    assert (terminated["reason"], terminated["exitCode"]) in (("Completed", 0), ("Error", 137))
    assert status["state"].get("waiting", {}).get("reason") == "CrashLoopBackOff"
    assert condition(get_pod(kube, namespace, "tgi-unhealthy"), "Ready") == "False"


def _kill_kubelet_hard(cluster: ClusterInfo) -> None:
    """SIGKILL the running simulated kubelet (a crash: no chance to stop its containers)."""
    pid_file = cluster.kubeconfig.parent / "run" / "kubelet.pid"
    pid = int(pid_file.read_text().split()[0])
    assert "devstack.kubelet" in Path(f"/proc/{pid}/cmdline").read_text()
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: proc_start_time(pid) is None, 10, describe="kubelet gone")


@pytest.mark.slow
def test_kubelet_crash_adopts_and_reaps_processes(
    kube: KubeClient, namespace: str, kubelet_state: Path, cluster: ClusterInfo
) -> None:
    kube.create(pods_path(namespace), tgi_pod("keep"))
    kube.create(pods_path(namespace), tgi_pod("gone"))
    pids = {}
    for name in ("keep", "gone"):
        pod = pod_when(kube, namespace, name, lambda p: condition(p, "Ready") == "True")
        record = json.loads(
            (kubelet_state / "pids" / f"{pod['metadata']['uid']}--tgi.json").read_text()
        )
        pids[name] = int(record["pid"])
    gone_ip = get_pod(kube, namespace, "gone")["status"]["podIP"]

    _kill_kubelet_hard(cluster)
    # While the kubelet is down one pod is force-deleted: its process is now an orphan.
    kube.delete(pods_path(namespace, "gone"), {"gracePeriodSeconds": 0})
    assert proc_start_time(pids["gone"]) is not None
    ensure_up()

    wait_for(lambda: proc_start_time(pids["gone"]) is None, 30, describe="orphan reaped")
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://{gone_ip}:80/health", timeout=2)
    # The surviving pod's process was adopted, not restarted, and it stayed Ready.
    time.sleep(2)
    pod = get_pod(kube, namespace, "keep")
    assert proc_start_time(pids["keep"]) is not None
    assert container_status(pod)["restartCount"] == 0
    assert condition(pod, "Ready") == "True"
    assert httpx.get(f"http://{pod['status']['podIP']}:80/health", timeout=5).status_code == 200
    # ...and is still managed: deleting the pod stops the adopted process.
    kube.delete(pods_path(namespace, "keep"))
    wait_for(lambda: proc_start_time(pids["keep"]) is None, 30, describe="adopted process stopped")


def test_init_container_runs_first_and_shares_empty_dir(kube: KubeClient, namespace: str) -> None:
    mount = [{"name": "scratch", "mountPath": "/scratch"}]
    write = "import pathlib, time; time.sleep(1); pathlib.Path('/scratch/f').write_text('init')"
    check = "import pathlib, sys; sys.exit(pathlib.Path('/scratch/f').read_text() != 'init')"
    kube.create(
        pods_path(namespace),
        {
            "metadata": {"name": "with-init"},
            "spec": {
                "restartPolicy": "Never",
                "initContainers": [
                    {
                        "name": "prep",
                        "image": PORTAL_IMAGE,
                        "args": ["-c", write],
                        "volumeMounts": mount,
                    }
                ],
                "containers": [
                    {
                        "name": "main",
                        "image": PORTAL_IMAGE,
                        "args": ["-c", check],
                        "volumeMounts": mount,
                    }
                ],
                "volumes": [{"name": "scratch", "emptyDir": {}}],
            },
        },
    )
    initializing = pod_when(
        kube, namespace, "with-init", lambda p: bool(p["status"].get("initContainerStatuses"))
    )
    assert initializing["status"]["phase"] == "Pending"
    pod = pod_when(
        kube, namespace, "with-init", lambda p: p["status"].get("phase") in ("Succeeded", "Failed")
    )
    assert pod["status"]["phase"] == "Succeeded", json.dumps(pod["status"], indent=1)
    init = pod["status"]["initContainerStatuses"][0]["state"]["terminated"]
    main = container_status(pod)["state"]["terminated"]
    assert init["reason"] == "Completed" and main["reason"] == "Completed"
    assert condition(pod, "Initialized") == "True"

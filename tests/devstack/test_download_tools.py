"""Weight-download Jobs on the simulated kubelet: the engine images' own download tools, and the
kubelet's answer for an image the node cannot pull."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from deployments.rendering import ModelRevisionSpec, render_weights_download_job
from devstack.hub import fixtures as hub
from devstack.kubelet import runtime
from devstack.kubelet.pods import Container, PodWorker
from devstack.model_files import find_snapshot
from engines import ENGINES
from tests.deployments.test_rendering import make_spec, make_tier

IMAGES = {
    "tgi": "ghcr.io/huggingface/text-generation-inference:3.3.6",
    "vllm": "vllm/vllm-openai:v0.11.0",
    "sglang": "lmsysorg/sglang:v0.5.5",
}


def job_containers(engine: str, repo_id: str = "org/model", sha: str = "a" * 40) -> list[Any]:
    spec = dataclasses.replace(
        make_spec(),
        engine=ENGINES[engine],
        tier=make_tier(image=IMAGES[engine]),
        model=ModelRevisionSpec(
            repo_id=repo_id,
            commit_sha=sha,
            weights_pvc_name="weights-x",
            weights_size_bytes=1,
        ),
    )
    pod = render_weights_download_job(spec)["spec"]["template"]["spec"]
    return [*pod.get("initContainers", []), *pod["containers"]]


@pytest.mark.parametrize("engine", sorted(IMAGES))
def test_each_engine_images_download_tool_runs_here_on_the_host_network(engine: str) -> None:
    pod: dict[str, Any] = {"metadata": {}, "spec": {}}
    for container in job_containers(engine):
        kind = runtime.kind_of(container)
        assert kind == engine and runtime.image_present(container["image"], kind)
        argv = runtime.download_argv(engine, container, {})
        assert argv is not None
        if container["command"][0] == "text-generation-server":
            assert argv[1:3] == ["-m", runtime.TGI_DOWNLOAD_MODULE]
            assert argv[3:] == ["org/model", "--revision", "a" * 40]
        else:  # huggingface_hub's CLI, the real one
            assert Path(argv[0]).name == "hf" and Path(argv[0]).exists()
            assert argv[1:] == container["command"][1:]
        # The local Hub listens on loopback only: downloads stay out of the node's namespace.
        assert not runtime.uses_pod_network(pod, container)
    # The server itself still runs in the pod network.
    server = {"image": IMAGES[engine], "args": ["--port", "80"]}
    assert runtime.download_argv(engine, server, {}) is None
    assert runtime.uses_pod_network(pod, {"image": IMAGES[engine]})


@pytest.mark.parametrize(
    ("image", "kind", "present"),
    [
        ("ghcr.io/huggingface/text-generation-inference:3.3.6", "tgi", True),
        ("ghcr.io/huggingface/text-generation-inference@sha256:" + "0" * 64, "tgi", True),
        ("vllm/vllm-openai:v0.11.0", "vllm", True),
        ("docker.io/vllm/vllm-openai:latest", "vllm", True),
        ("index.docker.io/lmsysorg/sglang:v0.5.5", "sglang", True),
        ("registry.invalid/huggingface/text-generation-inference:3.3.6", "tgi", False),
        ("example.com/mirror/vllm/vllm-openai:v0.11.0", "vllm", False),
        ("inference-portal:0.1.0", "portal", True),
        ("busybox:1.36", None, False),
    ],
)
def test_the_node_has_the_engines_public_images_and_nothing_else(
    image: str, kind: str | None, present: bool
) -> None:
    assert runtime.kind_of({"image": image}) == kind
    assert runtime.image_present(image, kind) is present


def test_a_pull_error_names_the_fully_qualified_reference() -> None:
    error = runtime.pull_error("busybox:1.36")
    assert error.startswith("rpc error: code = NotFound")
    assert '"docker.io/library/busybox:1.36"' in error and error.endswith(": not found")
    assert "docker.io/acme/tgi:latest" in runtime.pull_error("acme/tgi")


def _run(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120, check=False)


def test_tgi_job_fills_the_cache_the_offline_server_reads(local_hub: str, tmp_path: Path) -> None:
    repo = hub.repo(hub.MISTRAL_7B_ID)
    sha = repo.branches["main"]
    env = {
        **{k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "HOME")},
        "PYTHONPATH": str(runtime.REPO_ROOT),
        "HF_ENDPOINT": local_hub,
        "HF_HOME": str(tmp_path / "home"),
        "HF_HUB_DISABLE_TELEMETRY": "1",
    }
    snapshot_step, weights = job_containers("tgi", hub.MISTRAL_7B_ID, sha)
    cache = tmp_path / "data"
    for container in (snapshot_step, weights):
        # The Job's own variables, with the volume where this test keeps it.
        step_env = env | {e["name"]: e["value"] for e in container["env"] if "value" in e}
        step_env["HF_HUB_CACHE"] = str(cache)
        argv = runtime.download_argv("tgi", container, step_env)
        assert argv is not None
        argv = [str(cache) if a == "/data" else a for a in argv]
        done = _run(argv, step_env)
        assert done.returncode == 0, done.stdout + done.stderr
        if container is snapshot_step:
            # The whole snapshot first, tokenizer and config included.
            snapshot = find_snapshot(cache, hub.MISTRAL_7B_ID, sha)
            assert (snapshot / "tokenizer.json").exists()
    snapshot = find_snapshot(cache, hub.MISTRAL_7B_ID, sha)
    assert (snapshot / "tokenizer.json").exists() and (snapshot / "config.json").exists()
    # download-weights, second, finds the safetensors in place and downloads nothing again.
    again = _run(
        list(runtime.download_argv("tgi", weights, {}) or []),
        env | {"HF_HUB_CACHE": str(cache), "HF_ENDPOINT": local_hub},
    )
    assert "Files are already present on the host. Skipping download." in again.stdout


class Events:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str, str]] = []

    def emit(self, etype: str, reason: str, message: str, container: str | None = None) -> None:
        self.seen.append((etype, reason, message))


def test_an_image_the_node_lacks_is_err_image_pull_then_image_pull_back_off() -> None:
    image = "registry.invalid/huggingface/text-generation-inference:3.3.6"
    worker = object.__new__(PodWorker)  # only the pull logic: no pod, no API
    worker.events = Events()  # type: ignore[assignment]
    ctr = Container(spec={"name": "download-weights", "image": image}, kind="tgi")

    assert not worker._image_ready(ctr)
    error = runtime.pull_error(image)
    assert ctr.waiting == ("ErrImagePull", error)
    assert worker.events.seen == [  # type: ignore[attr-defined]
        ("Normal", "Pulling", f'Pulling image "{image}"'),
        ("Warning", "Failed", f'Failed to pull image "{image}": {error}'),
        ("Warning", "Failed", "Error: ErrImagePull"),
    ]
    first_delay = ctr.pull_backoff_until - time.monotonic()
    assert 9 < first_delay <= 10

    assert not worker._image_ready(ctr)  # within the back-off: no pull, the back-off reason
    assert ctr.waiting == ("ImagePullBackOff", f'Back-off pulling image "{image}"')
    assert worker.events.seen[-2:] == [  # type: ignore[attr-defined]
        ("Normal", "BackOff", f'Back-off pulling image "{image}"'),
        ("Warning", "Failed", "Error: ImagePullBackOff"),
    ]

    ctr.pull_backoff_until = 0.0  # the back-off expired: pull again, and wait twice as long
    assert not worker._image_ready(ctr)
    assert ctr.waiting[0] == "ErrImagePull"
    assert 19 < ctr.pull_backoff_until - time.monotonic() <= 20

    present = Container(spec={"name": "tgi", "image": IMAGES["tgi"]}, kind="tgi")
    assert worker._image_ready(present)

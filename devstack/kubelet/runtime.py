"""Turning a pod's container spec into a local process: argv, environment, mounts, pid files."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import shlex
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .kube import KubeClient

REPO_ROOT = Path(__file__).resolve().parents[2]
LAUNCHER = Path(__file__).resolve().parent / "launch.py"

TGI_MARKER = "text-generation-inference"
VLLM_MARKER = "vllm/vllm-openai"
SGLANG_MARKER = "lmsysorg/sglang"
PORTAL_MARKER = "inference-portal"
# Engine kinds, the image marker that selects each, and the simulator module that imitates it.
ENGINE_MARKERS = {"tgi": TGI_MARKER, "vllm": VLLM_MARKER, "sglang": SGLANG_MARKER}
SIMULATOR_MODULES = {
    "tgi": "devstack.tgi_simulator",
    "vllm": "devstack.vllm_simulator",
    "sglang": "devstack.sglang_simulator",
}
TGI_DEFAULT_PORT = 80  # the TGI image sets ENV PORT=80 (launcher default 3000)
VLLM_DEFAULT_PORT = 8000  # vllm/entrypoints/openai/cli_args.py: --port default
SGLANG_DEFAULT_PORT = 30000  # sglang/srt/server_args.py: port = 30000
# Flag each engine binds its HTTP server with (rewritten to the pod IP).
BIND_FLAGS = {"tgi": "--hostname", "vllm": "--host", "sglang": "--host"}
APP_DIR = "/app"  # the portal image's WORKDIR, which is the repository root here
FAULTS_ANNOTATION = "sim.inference.portal/faults"
NETWORK_ANNOTATION = "devstack.inference.portal/network"  # "pod" or "host" to override
PYTHON_NAMES = {"python", "python3", "python3.11", "/usr/bin/python3", "/usr/local/bin/python"}
# Host variables every container gets (a real image has its own PATH/locale).
HOST_ENV_KEYS = ("PATH", "LANG", "LC_ALL", "TZ", "PORTAL_CACHE_DIR", "PORTAL_CLUSTER_DIR")


class ConfigError(Exception):
    """The container cannot be configured (CreateContainerConfigError), e.g. a missing Secret."""


class NotReadyError(Exception):
    """A dependency is not there yet (e.g. an unbound PVC): stay ContainerCreating, retry."""


def kind_of(container: dict[str, Any]) -> str | None:
    image = container.get("image") or ""
    for kind, marker in ENGINE_MARKERS.items():
        if marker in image:
            return kind
    if PORTAL_MARKER in image:
        return "portal"
    return None


# --- images the node has ---------------------------------------------------------------------

# The engines' public repositories (any tag), which the simulators stand in for. An image from
# another registry or repository is one this node cannot pull, whatever its name suggests.
ENGINE_REPOSITORIES = {
    "tgi": "ghcr.io/huggingface/text-generation-inference",
    "vllm": "docker.io/vllm/vllm-openai",
    "sglang": "docker.io/lmsysorg/sglang",
}


def image_reference(image: str) -> tuple[str, str]:
    """(repository, tag) fully qualified the way containerd resolves a short name
    (docker.io/library/<name> for one component, docker.io/<org>/<name> without a registry)."""
    name, _, digest = image.partition("@")
    tag = "latest"
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name, tag = name.rsplit(":", 1)
    first, _, rest = name.partition("/")
    if not rest:
        name = f"docker.io/library/{first}"
    elif first == "index.docker.io":
        name = f"docker.io/{rest}"
    elif "." not in first and ":" not in first and first != "localhost":
        name = f"docker.io/{name}"
    return name, (f"@{digest}" if digest else tag)


def image_present(image: str, kind: str | None) -> bool:
    """Whether the node can get `image`: the portal's image is the checkout itself, an opted-in
    pod's other images run as local commands, an engine image only from its real repository."""
    if kind in ("portal", "generic"):
        return True
    if kind in ENGINE_REPOSITORIES:
        return image_reference(image)[0] == ENGINE_REPOSITORIES[kind]
    return False


def pull_error(image: str) -> str:
    """containerd's answer for a reference no registry resolves (CRI PullImage NotFound)."""
    repository, tag = image_reference(image)
    ref = f"{repository}{tag if tag.startswith('@') else ':' + tag}"
    return (
        f'rpc error: code = NotFound desc = failed to pull and unpack image "{ref}": failed to '
        f'resolve reference "{ref}": {ref}: not found'
    )


def uses_pod_network(pod: dict[str, Any], container: dict[str, Any]) -> bool:
    """Engine servers live in the node's namespace; portal jobs and weight downloads default
    to the host network.

    Weight downloads (portal pods, or an engine image's download tool) must reach loopback-only
    services (local Hub, PostgreSQL, Redis) that are not reachable from inside a node namespace.
    """
    override = (pod["metadata"].get("annotations") or {}).get(NETWORK_ANNOTATION)
    if override in ("pod", "host"):
        return override == "pod"
    if pod["spec"].get("hostNetwork"):
        return False
    kind = kind_of(container)
    if kind in ENGINE_MARKERS and download_argv(kind, container, {}) is not None:
        return False
    return kind != "portal"


# --- environment -------------------------------------------------------------------------


_VAR_REF = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)|\$\$")


def expand(value: str, env: dict[str, str]) -> str:
    """Kubernetes $(VAR) expansion: unknown references stay as written, $$ escapes."""

    def repl(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group(1)
        return env.get(name, match.group(0))

    return _VAR_REF.sub(repl, value)


class ObjectCache:
    """Per-start cache of Secrets/ConfigMaps read from the API (like the kubelet's manager)."""

    def __init__(self, kube: KubeClient, namespace: str) -> None:
        self.kube = kube
        self.namespace = namespace
        self._cache: dict[tuple[str, str], dict[str, Any] | None] = {}

    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        key = (kind, name)
        if key not in self._cache:
            plural = "secrets" if kind == "Secret" else "configmaps"
            self._cache[key] = self.kube.get(f"/api/v1/namespaces/{self.namespace}/{plural}/{name}")
        return self._cache[key]

    def data(self, kind: str, name: str, optional: bool) -> dict[str, str] | None:
        obj = self.get(kind, name)
        if obj is None:
            if optional:
                return None
            raise ConfigError(f'{kind.lower()} "{name}" not found')
        if kind == "Secret":
            return {k: base64.b64decode(v).decode() for k, v in (obj.get("data") or {}).items()}
        return dict(obj.get("data") or {})

    def key(self, ref: dict[str, Any], kind: str) -> str | None:
        optional = bool(ref.get("optional"))
        data = self.data(kind, ref["name"], optional)
        if data is None:
            return None
        if ref["key"] not in data:
            if optional:
                return None
            raise ConfigError(
                f"couldn't find key {ref['key']} in {kind} {self.namespace}/{ref['name']}"
            )
        return data[ref["key"]]


def _field_ref(pod: dict[str, Any], path: str, pod_ip: str, host_ip: str) -> str:
    meta = pod["metadata"]
    simple = {
        "metadata.name": meta["name"],
        "metadata.namespace": meta["namespace"],
        "metadata.uid": meta["uid"],
        "spec.nodeName": pod["spec"].get("nodeName", ""),
        "spec.serviceAccountName": pod["spec"].get("serviceAccountName", ""),
        "status.podIP": pod_ip,
        "status.podIPs": pod_ip,
        "status.hostIP": host_ip,
        "status.hostIPs": host_ip,
    }
    if path in simple:
        return simple[path]
    match = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
    if match:
        return (meta.get(match.group(1)) or {}).get(match.group(2), "")
    raise ConfigError(f"unsupported fieldRef {path}")


def container_env(
    pod: dict[str, Any],
    container: dict[str, Any],
    objects: ObjectCache,
    pod_ip: str,
    host_ip: str,
    base: dict[str, str],
) -> dict[str, str]:
    """Environment as the kubelet computes it: base, envFrom, then env in order."""
    env = dict(base)
    for source in container.get("envFrom") or []:
        prefix = source.get("prefix", "")
        for kind, ref in (
            ("ConfigMap", source.get("configMapRef")),
            ("Secret", source.get("secretRef")),
        ):
            if ref:
                data = objects.data(kind, ref["name"], bool(ref.get("optional")))
                env.update({prefix + k: v for k, v in (data or {}).items()})
    for var in container.get("env") or []:
        if "valueFrom" not in var:
            env[var["name"]] = expand(var.get("value", ""), env)
            continue
        source = var["valueFrom"]
        value: str | None
        if "secretKeyRef" in source:
            value = objects.key(source["secretKeyRef"], "Secret")
        elif "configMapKeyRef" in source:
            value = objects.key(source["configMapKeyRef"], "ConfigMap")
        elif "fieldRef" in source:
            value = _field_ref(pod, source["fieldRef"]["fieldPath"], pod_ip, host_ip)
        elif "resourceFieldRef" in source:
            ref = source["resourceFieldRef"]
            section, _, resource = ref["resource"].partition(".")
            value = str(((container.get("resources") or {}).get(section) or {}).get(resource, ""))
        else:
            raise ConfigError(f"unsupported valueFrom for {var['name']}")
        if value is not None:
            env[var["name"]] = value
    return env


# --- argv ----------------------------------------------------------------------------------


def _flag_value(args: list[str], flag: str) -> str | None:
    for i, arg in enumerate(args):
        if arg == flag and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
    return None


def _set_flag(args: list[str], flag: str, value: str) -> list[str]:
    out: list[str] = []
    skip = False
    for i, arg in enumerate(args):
        if skip:
            skip = False
            continue
        if arg == flag and i + 1 < len(args):
            skip = True
            continue
        if arg.startswith(flag + "="):
            continue
        out.append(arg)
    return [*out, flag, value]


def container_port(container: dict[str, Any], env: dict[str, str]) -> int:
    """The port TGI listens on: --port, then PORT, then the first containerPort, then 80."""
    args = [str(a) for a in container.get("args") or []]
    for candidate in (_flag_value(args, "--port"), env.get("PORT")):
        if candidate and candidate.isdigit():
            return int(candidate)
    ports = container.get("ports") or []
    return int(ports[0]["containerPort"]) if ports else TGI_DEFAULT_PORT


def engine_port(kind: str, args: list[str], env: dict[str, str]) -> int:
    """The port the real server binds, from its own flags and defaults.

    TGI reads --port or the PORT variable (launcher/src/main.rs, `env` on the clap arg); vLLM
    and SGLang read only --port (vllm/entrypoints/openai/cli_args.py, sglang/srt/server_args.py).
    A containerPort never changes what a server binds.
    """
    flag = _flag_value(args, "--port")
    if flag and flag.isdigit():
        return int(flag)
    if kind == "tgi":
        from_env = env.get("PORT")
        return int(from_env) if from_env and from_env.isdigit() else TGI_DEFAULT_PORT
    return VLLM_DEFAULT_PORT if kind == "vllm" else SGLANG_DEFAULT_PORT


# What the image runs when the pod gives no command, and the command spellings that reach the
# same server (the part before the server's own arguments).
IMAGE_ENTRYPOINTS: dict[str, list[str]] = {
    "tgi": ["text-generation-launcher"],
    "vllm": ["vllm", "serve"],  # vllm/vllm-openai Dockerfile: ENTRYPOINT ["vllm", "serve"]
    "sglang": [],  # lmsysorg/sglang has no entrypoint: pods say python3 -m sglang.launch_server
}
_PYTHON_MODULE_LAUNCHERS = {
    # vllm/entrypoints/openai/api_server.py still runs as a module (takes --model, not a
    # positional model; `vllm serve` accepts --model as well, so the arguments pass as they are).
    "vllm": ("vllm.entrypoints.openai.api_server",),
    "sglang": ("sglang.launch_server",),
}


class UnknownEntrypoint(ConfigError):
    """The pod runs something in an engine image that is not the engine's server."""


def server_args(kind: str, command: list[str], args: list[str]) -> list[str]:
    """The engine's own arguments, with whatever spelling of its launcher stripped.

    Kubernetes semantics: `command` replaces the image ENTRYPOINT, `args` its CMD; without a
    command the entrypoint runs with `args`.
    """
    argv = [*command, *args] if command else [*IMAGE_ENTRYPOINTS[kind], *args]
    if kind == "tgi":
        if argv and Path(argv[0]).name == "text-generation-launcher":
            return argv[1:]
        return argv  # historically the launcher flags alone: keep accepting them
    if kind == "vllm" and len(argv) >= 2 and Path(argv[0]).name == "vllm" and argv[1] == "serve":
        return argv[2:]
    if argv and Path(argv[0]).name.startswith("python") and argv[1:2] == ["-m"]:
        module = argv[2] if len(argv) > 2 else ""
        if module in _PYTHON_MODULE_LAUNCHERS.get(kind, ()):
            return argv[3:]
    raise UnknownEntrypoint(
        f"{shlex.join(argv) or '(no command)'}: not a {kind} server command the simulated "
        "kubelet knows how to run"
    )


def engine_argv(
    kind: str, container: dict[str, Any], env: dict[str, str], pod_ip: str
) -> list[str]:
    """`python -m devstack.<engine>_simulator <server args>`, bound to the pod IP only."""
    command = [expand(str(c), env) for c in container.get("command") or []]
    args = [expand(str(a), env) for a in container.get("args") or []]
    # Several pods share the node namespace: bind only the pod's own IP, never 0.0.0.0.
    rewritten = _set_flag(server_args(kind, command, args), BIND_FLAGS[kind], pod_ip)
    return [sys.executable, "-m", SIMULATOR_MODULES[kind], *rewritten]


# The download tools the engine images ship, and what runs in their place here:
# `text-generation-server download-weights` (TGI's server/text_generation_server/cli.py) is
# imitated by devstack.tgi_simulator.download_weights; huggingface_hub's CLI is the real one,
# from this environment (`huggingface-cli` was renamed `hf` in huggingface_hub 0.34 and removed
# in 1.0; `download <repo> --revision --cache-dir` means the same to both).
TGI_DOWNLOAD_MODULE = "devstack.tgi_simulator.download_weights"
HUB_CLI_NAMES = ("hf", "huggingface-cli")


def download_argv(kind: str, container: dict[str, Any], env: dict[str, str]) -> list[str] | None:
    """The local command for a download tool run in an engine image; None for anything else."""
    command = [expand(str(c), env) for c in container.get("command") or []]
    args = [expand(str(a), env) for a in container.get("args") or []]
    argv = [*command, *args] if command else [*IMAGE_ENTRYPOINTS[kind], *args]
    if len(argv) < 2:
        return None
    tool, verb = Path(argv[0]).name, argv[1]
    if kind == "tgi" and tool == "text-generation-server" and verb == "download-weights":
        return [sys.executable, "-m", TGI_DOWNLOAD_MODULE, *argv[2:]]
    if tool in HUB_CLI_NAMES and verb == "download":
        return [str(Path(sys.executable).with_name("hf")), *argv[1:]]
    return None


def tgi_argv(container: dict[str, Any], env: dict[str, str], pod_ip: str) -> list[str]:
    return engine_argv("tgi", container, env, pod_ip)


def portal_argv(container: dict[str, Any], env: dict[str, str]) -> list[str]:
    command = [expand(str(c), env) for c in container.get("command") or []]
    args = [expand(str(a), env) for a in container.get("args") or []]
    argv = [*(command or ["python"]), *args]  # the portal image's ENTRYPOINT is python
    if argv[0] in PYTHON_NAMES:
        argv[0] = sys.executable
    return argv


# --- volumes -------------------------------------------------------------------------------


@dataclass
class Mount:
    target: str
    type: str = "bind"  # bind | tmpfs
    source: str | None = None
    readonly: bool = False
    size: str | None = None


def _quantity_bytes(value: str) -> str:
    """tmpfs size option from a Kubernetes quantity (1Gi -> 1g, 512Mi -> 512m)."""
    match = re.fullmatch(r"(\d+)([KMGT]i?)?", value)
    if not match:
        return "64m"
    number, unit = match.groups()
    return number + (unit[0].lower() if unit else "")


def _write_files(directory: Path, data: dict[str, str | bytes], items: list[dict] | None) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    selected = {i["key"]: i["path"] for i in items} if items else {k: k for k in data}
    for key, rel in selected.items():
        if key in data:
            target = directory / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            value = data[key]
            target.write_bytes(value if isinstance(value, bytes) else value.encode())


def volume_sources(
    pod: dict[str, Any], kube: KubeClient, objects: ObjectCache, pod_dir: Path
) -> dict[str, Mount]:
    """Host-side source per pod volume name (a Mount without target yet)."""
    sources: dict[str, Mount] = {}
    namespace = pod["metadata"]["namespace"]
    for volume in pod["spec"].get("volumes") or []:
        name = volume["name"]
        local = pod_dir / "volumes" / name
        if "persistentVolumeClaim" in volume:
            claim = volume["persistentVolumeClaim"]["claimName"]
            pvc = kube.get(f"/api/v1/namespaces/{namespace}/persistentvolumeclaims/{claim}")
            if pvc is None:
                raise NotReadyError(f'persistentvolumeclaim "{claim}" not found')
            pv_name = pvc["spec"].get("volumeName")
            pv = kube.get(f"/api/v1/persistentvolumes/{pv_name}") if pv_name else None
            if pv is None or (pvc.get("status") or {}).get("phase") != "Bound":
                raise NotReadyError(f'persistentvolumeclaim "{claim}" is not bound')
            path = (pv["spec"].get("hostPath") or pv["spec"].get("local") or {}).get("path")
            if not path:
                raise ConfigError(f"persistentvolume {pv_name} is neither hostPath nor local")
            sources[name] = Mount(target="", source=path)
        elif "emptyDir" in volume:
            spec = volume["emptyDir"] or {}
            if spec.get("medium") == "Memory":
                size = _quantity_bytes(str(spec.get("sizeLimit", "64Mi")))
                sources[name] = Mount(target="", type="tmpfs", size=size)
            else:
                local.mkdir(parents=True, exist_ok=True)
                sources[name] = Mount(target="", source=str(local))
        elif "hostPath" in volume:
            path = Path(volume["hostPath"]["path"])
            if volume["hostPath"].get("type") == "DirectoryOrCreate":
                path.mkdir(parents=True, exist_ok=True)
            sources[name] = Mount(target="", source=str(path))
        elif "configMap" in volume or "secret" in volume:
            kind = "ConfigMap" if "configMap" in volume else "Secret"
            ref = volume.get("configMap") or volume.get("secret") or {}
            ref_name = ref.get("name") or ref.get("secretName", "")
            data = objects.data(kind, ref_name, bool(ref.get("optional"))) or {}
            _write_files(local, dict(data), ref.get("items"))
            sources[name] = Mount(target="", source=str(local), readonly=True)
        # projected (service-account token), downwardAPI...: not simulated, skipped.
    return sources


def container_mounts(
    container: dict[str, Any], sources: dict[str, Mount], app_root: bool
) -> list[Mount]:
    mounts = [Mount(target=APP_DIR, source=str(REPO_ROOT))] if app_root else []
    for vm in container.get("volumeMounts") or []:
        source = sources.get(vm["name"])
        if source is None:
            continue
        host = source.source
        if vm.get("subPath") and host:
            sub = Path(host) / vm["subPath"]
            sub.mkdir(parents=True, exist_ok=True)
            host = str(sub)
        mounts.append(
            Mount(
                target=vm["mountPath"],
                type=source.type,
                source=host,
                readonly=bool(vm.get("readOnly")) or source.readonly,
                size=source.size,
            )
        )
    return mounts


# --- processes -----------------------------------------------------------------------------


@dataclass
class LaunchSpec:
    argv: list[str]
    env: dict[str, str]
    cwd: str
    mounts: list[Mount] = field(default_factory=list)
    netns_prefix: list[str] = field(default_factory=list)
    record_created: Path | None = None
    log_file: Path | None = None  # the container log (CRI format), written by the launcher

    def command(self, spec_file: Path) -> list[str]:
        spec_file.write_text(
            json.dumps(
                {
                    "argv": self.argv,
                    "env": self.env,
                    "cwd": self.cwd,
                    "mounts": [m.__dict__ for m in self.mounts],
                    "record_created": str(self.record_created) if self.record_created else None,
                    "log_file": str(self.log_file) if self.log_file else None,
                }
            )
        )
        spec_file.chmod(0o600)  # holds resolved secrets
        return [
            *self.netns_prefix,
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "--",
            sys.executable,
            "-S",
            str(LAUNCHER),
            str(spec_file),
        ]

    def describe(self) -> str:
        return shlex.join(self.argv)


def created_mountpoints_file(state_dir: Path) -> Path:
    return state_dir / "created-mountpoints.txt"


def default_state_dir() -> Path:
    """var/cluster/kubelet (PORTAL_CLUSTER_DIR moves var/cluster, as in devstack.cluster)."""
    configured = os.environ.get("PORTAL_CLUSTER_DIR")
    base = Path(configured) if configured else REPO_ROOT / "var" / "cluster"
    return base / "kubelet"


def cleanup_state(state_dir: Path) -> list[str]:
    """Kill processes recorded in pid files and remove empty mount points we created.

    Used by network.teardown_all() (cluster `down`) as the safety net after a kubelet crash;
    host-network pods are outside the namespaces and would otherwise survive.
    """
    done: list[str] = []
    for path in sorted((state_dir / "pids").glob("*.json")):
        with contextlib.suppress(OSError, ValueError, KeyError):
            record = json.loads(path.read_text())
            pid = int(record["pid"])
            if record.get("start") and proc_start_time(pid) == record["start"]:
                signal_group(pid, signal.SIGKILL)
                done.append(f"process {pid}")
        path.unlink(missing_ok=True)
    record_file = created_mountpoints_file(state_dir)
    with contextlib.suppress(OSError):
        created = set(record_file.read_text().split())
        for entry in sorted(created, key=lambda p: -len(Path(p).parts)):
            with contextlib.suppress(OSError):
                Path(entry).rmdir()  # only empty directories: never delete data
                done.append(f"mountpoint {entry}")
        record_file.unlink()
    return done


def proc_start_time(pid: int) -> str | None:
    """Start time (clock ticks since boot) of a live, non-zombie process: guards pid reuse."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] in ("Z", "X"):
        return None
    return fields[19]


def spawn(command: list[str], log_file: Path) -> subprocess.Popen[bytes]:
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as log:
        # Own session: the kubelet signals the container's whole process group.
        return subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=str(REPO_ROOT),
            start_new_session=True,
        )


def signal_group(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def exit_code(returncode: int) -> int:
    """Popen's -N for a signal becomes 128+N, as container runtimes report it."""
    return 128 - returncode if returncode < 0 else returncode

"""Build the control-plane binaries from Go modules into the per-user cache.

Why from source: there is no Docker and no release download here, only the Go module proxy. The
wrapper modules in gobuild/ pin every version (go.sum included), so a build is reproducible and a
second run finds the binaries in ``<cache>/bin/<component>-<version>/`` and builds nothing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from . import config
from .processes import file_lock

# kwok's stage definitions we run with, relative to the module's kustomize/stage/ directory.
KWOK_STAGE_FILES = (
    "node/fast/node-initialize.yaml",
    "node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
    "pod/fast/pod-ready.yaml",
    "pod/fast/pod-complete.yaml",
    "pod/fast/pod-delete.yaml",
)
# CustomResourceDefinitions Karpenter's kwok provider serves, relative to the karpenter module;
# applied at every `up` (Karpenter's Helm chart ships the same files in its crds/ folder).
KARPENTER_CRD_FILES = (
    "pkg/apis/crds/karpenter.sh_nodepools.yaml",
    "pkg/apis/crds/karpenter.sh_nodeclaims.yaml",
    "pkg/apis/crds/karpenter.sh_nodeoverlays.yaml",
    "pkg/apis/crds/autoscaling.x-k8s.io_capacitybuffers.yaml",
    "kwok/apis/crds/karpenter.kwok.sh_kwoknodeclasses.yaml",
)


@dataclass(frozen=True)
class GoTarget:
    """One `go build` invocation producing one or more binaries in a versioned directory."""

    component: str
    version: str
    module_dir: str  # sub-directory of gobuild/
    packages: tuple[str, ...]
    binaries: tuple[str, ...]
    tags: tuple[str, ...] = ()
    ldflags: tuple[str, ...] = field(default_factory=tuple)

    @property
    def out_dir(self) -> Path:
        return config.bin_dir(self.component, self.version)

    def binary(self, name: str) -> Path:
        return self.out_dir / name

    def is_built(self) -> bool:
        return all(self.binary(name).is_file() for name in self.binaries)


def _kubernetes_ldflags(version: str) -> tuple[str, ...]:
    # Same variables upstream's hack/lib/version.sh sets; without them binaries report v0.0.0
    # and the apiserver's /version would be useless to clients that check it.
    major, minor = version.lstrip("v").split(".")[:2]
    build_date = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    flags: list[str] = []
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [
            f"-X {pkg}.gitVersion={version}",
            f"-X {pkg}.gitMajor={major}",
            f"-X {pkg}.gitMinor={minor}",
            f"-X {pkg}.gitTreeState=clean",
            f"-X {pkg}.buildDate={build_date}",
        ]
    return tuple(flags)


ETCD = GoTarget(
    component="etcd",
    version=config.ETCD_VERSION,
    module_dir="etcd",
    packages=(".",),
    binaries=("etcd",),
)
KWOK = GoTarget(
    component="kwok",
    version=config.KWOK_VERSION,
    module_dir="kwok",
    packages=("sigs.k8s.io/kwok/cmd/kwok",),
    binaries=("kwok",),
    ldflags=(
        f"-X sigs.k8s.io/kwok/pkg/consts.Version={config.KWOK_VERSION}",
        f"-X sigs.k8s.io/kwok/pkg/consts.KubeVersion={config.KUBERNETES_VERSION}",
    ),
)
KUBERNETES = GoTarget(
    component="kubernetes",
    version=config.KUBERNETES_VERSION,
    module_dir="kubernetes",
    packages=(
        "k8s.io/kubernetes/cmd/kube-apiserver",
        "k8s.io/kubernetes/cmd/kube-controller-manager",
        "k8s.io/kubernetes/cmd/kube-scheduler",
    ),
    binaries=("kube-apiserver", "kube-controller-manager", "kube-scheduler"),
    tags=("selinux", "notest"),
    ldflags=_kubernetes_ldflags(config.KUBERNETES_VERSION),
)
PROMETHEUS = GoTarget(
    component="prometheus",
    version=config.PROMETHEUS_VERSION,
    module_dir="prometheus",
    packages=("github.com/prometheus/prometheus/cmd/prometheus",),
    binaries=("prometheus",),
    # No `builtinassets` tag: the web UI is not needed, the HTTP API and scraping are.
    ldflags=(
        f"-X github.com/prometheus/common/version.Version={config.PROMETHEUS_VERSION.lstrip('v')}",
        "-X github.com/prometheus/common/version.Branch=release",
    ),
)
KARPENTER = GoTarget(
    component="karpenter",
    version=config.KARPENTER_VERSION,
    module_dir="karpenter",
    packages=("sigs.k8s.io/karpenter/kwok",),
    binaries=("karpenter-kwok",),
    ldflags=(f"-X sigs.k8s.io/karpenter/pkg/operator.Version={config.KARPENTER_VERSION}",),
)
TARGETS = (ETCD, KWOK, KUBERNETES, PROMETHEUS, KARPENTER)


def kwok_stages_dir() -> Path:
    """Stage YAMLs copied from the pinned kwok module (generated, not committed)."""
    return KWOK.out_dir / "stages"


def karpenter_crds_dir() -> Path:
    """CRD YAMLs copied from the pinned karpenter module (generated, not committed)."""
    return KARPENTER.out_dir / "crds"


def karpenter_crd_files() -> list[Path]:
    return [karpenter_crds_dir() / Path(rel).name for rel in KARPENTER_CRD_FILES]


def binary_path(name: str) -> Path:
    for target in TARGETS:
        if name in target.binaries:
            return target.binary(name)
    raise KeyError(name)


def is_built() -> bool:
    return all(t.is_built() for t in TARGETS) and _stages_present() and _crds_present()


def _stages_present() -> bool:
    return all((kwok_stages_dir() / Path(rel).name).is_file() for rel in KWOK_STAGE_FILES)


def _crds_present() -> bool:
    return all(path.is_file() for path in karpenter_crd_files())


def _go_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        CGO_ENABLED="0",  # static binaries, as upstream releases them
        GOTOOLCHAIN="local",  # never download a toolchain; the installed Go is new enough
        GOFLAGS="-mod=readonly",  # go.sum in gobuild/ is authoritative
    )
    return env


def _go() -> str:
    go = shutil.which("go")
    if go is None:
        raise RuntimeError("the `go` toolchain is required to build the control plane (not found)")
    return go


def _log(message: str) -> None:
    print(f"[devstack.cluster build] {message}", file=sys.stderr, flush=True)


def _run_with_progress(cmd: list[str], cwd: Path, label: str) -> None:
    """Run a long command, printing elapsed time every 30 s so a cold build does not look hung."""
    started = time.monotonic()
    done = threading.Event()

    def ticker() -> None:
        while not done.wait(30):
            _log(f"{label}: still building ({time.monotonic() - started:.0f}s elapsed)")

    thread = threading.Thread(target=ticker, daemon=True)
    thread.start()
    try:
        result = subprocess.run(cmd, cwd=cwd, env=_go_env(), capture_output=True, text=True)
    finally:
        done.set()
        thread.join()
    if result.returncode != 0:
        raise RuntimeError(f"{label} failed (exit {result.returncode}):\n{result.stderr[-4000:]}")


def build_target(target: GoTarget) -> float:
    """Build one target into a temporary directory and rename it into place (atomic)."""
    started = time.monotonic()
    partial = target.out_dir.with_name(target.out_dir.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    ldflags = " ".join(("-s", "-w", *target.ldflags))
    cmd = [_go(), "build", "-p", "2", "-trimpath", "-ldflags", ldflags]
    if target.tags:
        cmd += ["-tags", ",".join(target.tags)]
    output = f"{partial}/" if len(target.binaries) > 1 else str(partial / target.binaries[0])
    cmd += ["-o", output, *target.packages]
    label = f"{target.component} {target.version}"
    _log(f"{label}: building {', '.join(target.binaries)} (go build -p 2)")
    _run_with_progress(cmd, config.GOBUILD_DIR / target.module_dir, label)
    if target.out_dir.exists():
        # A previous interrupted run may have left a partially filled directory.
        shutil.rmtree(target.out_dir)
    partial.rename(target.out_dir)
    elapsed = time.monotonic() - started
    _log(f"{label}: done in {elapsed:.0f}s")
    return elapsed


def _module_source(target: GoTarget, module: str) -> Path:
    """Where the Go module cache holds the pinned source of `module` (a dependency of target)."""
    result = subprocess.run(
        [_go(), "list", "-m", "-f", "{{.Dir}}", module],
        cwd=config.GOBUILD_DIR / target.module_dir,
        env=_go_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    module_dir = Path(result.stdout.strip())
    if result.returncode != 0 or not module_dir.is_dir():
        raise RuntimeError(f"cannot locate the {module} module source: {result.stderr.strip()}")
    return module_dir


def extract_kwok_stages() -> None:
    """Copy the stage YAMLs shipped in the pinned kwok module next to the kwok binary."""
    module_dir = _module_source(KWOK, "sigs.k8s.io/kwok")
    target = kwok_stages_dir()
    target.mkdir(parents=True, exist_ok=True)
    for rel in KWOK_STAGE_FILES:
        shutil.copyfile(module_dir / "kustomize" / "stage" / rel, target / Path(rel).name)


def extract_karpenter_crds() -> None:
    """Copy the CRDs shipped in the pinned karpenter module next to its binary."""
    module_dir = _module_source(KARPENTER, "sigs.k8s.io/karpenter")
    target = karpenter_crds_dir()
    target.mkdir(parents=True, exist_ok=True)
    for rel in KARPENTER_CRD_FILES:
        shutil.copyfile(module_dir / rel, target / Path(rel).name)


def ensure_built() -> dict[str, float]:
    """Build whatever is missing; returns seconds spent per component (empty when all cached)."""
    if is_built():
        return {}
    with file_lock(config.cache_dir() / "bin" / ".build.lock"):
        return _build_missing()


def _build_missing() -> dict[str, float]:
    timings: dict[str, float] = {}
    missing = [t for t in TARGETS if not t.is_built()]
    if missing:
        _log("cold build of: " + ", ".join(f"{t.component} {t.version}" for t in missing))
    total_started = time.monotonic()
    for target in missing:
        timings[target.component] = build_target(target)
    if not _stages_present():
        extract_kwok_stages()
    if not _crds_present():
        extract_karpenter_crds()
    if missing:
        _log(f"all binaries built in {time.monotonic() - total_started:.0f}s")
    return timings


if __name__ == "__main__":
    ensure_built()

"""Start-up benchmarks of the local control plane.

    python -m bench.cluster.startup [--runs 3] [--cold-build]

* warm start: `down` then `up` with cached binaries and existing etcd data (the everyday case);
* resident memory of every component after the cluster has settled;
* --cold-build: builds all binaries into a temporary cache with an empty Go build cache (the Go
  module cache is reused, so downloads are not included) and reports the wall time.
Prints a JSON summary.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from typing import Any

from devstack.cluster import control


def warm_start(runs: int) -> list[float]:
    control.up(verbose=False)  # make sure everything is built and initialised once
    timings = []
    for _ in range(runs):
        control.down()
        started = time.monotonic()
        control.up(verbose=False)
        timings.append(round(time.monotonic() - started, 1))
    return timings


def settled_rss(settle_seconds: float) -> dict[str, int]:
    time.sleep(settle_seconds)
    return {name: round(rss / 2**20) for name, rss in control.resident_memory().items()}


def cold_build() -> float:
    with tempfile.TemporaryDirectory(prefix="portal-cold-build-") as scratch:
        env = dict(os.environ, PORTAL_CACHE_DIR=scratch, GOCACHE=os.path.join(scratch, "gocache"))
        started = time.monotonic()
        subprocess.run([sys.executable, "-m", "devstack.cluster", "build"], env=env, check=True)
        return round(time.monotonic() - started, 1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cluster.startup", description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--settle", type=float, default=15.0, help="seconds before measuring RSS")
    parser.add_argument("--cold-build", action="store_true")
    args = parser.parse_args(argv)
    result: dict[str, Any] = {}
    if args.cold_build:
        result["cold_build_seconds"] = cold_build()
    result["warm_start_seconds"] = warm_start(args.runs)
    rss = settled_rss(args.settle)
    result["rss_mib"] = rss
    result["rss_mib_control_plane"] = sum(
        v for k, v in rss.items() if k not in ("prometheus", "kubelet")
    )
    result["rss_mib_total"] = sum(rss.values())
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

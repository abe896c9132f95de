"""In-container launcher: set up a pod's mounts, then exec the container's process.

Run as ``[ip netns exec <ns>] unshare --mount --propagation private -- python launch.py SPEC``.
The private mount namespace makes the bind mounts (volumes at their container paths) visible
to this process tree only. Stdlib only and executed by path, so it starts fast; after execve
the pid is the container process itself, which is what the kubelet signals and waits for.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path


def _mount(args: list[str]) -> None:
    subprocess.run(["mount", *args], check=True)


def _first_missing(path: Path) -> Path | None:
    missing = None
    for candidate in [path, *path.parents]:
        if candidate.exists():
            break
        missing = candidate
    return missing


def apply_mounts(mounts: list[dict], record: Path | None = None) -> None:
    # Parents before children (/app before /app/var/x), as a runtime orders mounts.
    for m in sorted(mounts, key=lambda m: len(Path(m["target"]).parts)):
        target = Path(m["target"])
        source = Path(m["source"]) if m.get("source") else None
        created = _first_missing(target)
        if created is not None and record is not None:
            # Mount points on the host's root filesystem (e.g. /data) are the only trace a
            # pod leaves outside var/; teardown removes them again when empty.
            with record.open("a") as handle:
                handle.write(f"{created}\n")
        if source is not None and source.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            target.touch(exist_ok=True)
        else:
            target.mkdir(parents=True, exist_ok=True)
        if m["type"] == "tmpfs":
            options = f"size={m['size']}" if m.get("size") else "size=64m"
            _mount(["-t", "tmpfs", "-o", options, "tmpfs", str(target)])
        else:
            _mount(["--bind", str(source), str(target)])
            if m.get("readonly"):
                _mount(["-o", "remount,bind,ro", str(target)])


def main() -> None:
    spec = json.loads(Path(sys.argv[1]).read_text())
    record = spec.get("record_created")
    apply_mounts(spec.get("mounts", []), Path(record) if record else None)
    os.chdir(spec["cwd"])
    argv = spec["argv"]
    os.execvpe(argv[0], argv, spec["env"])  # noqa: S606 - exec is the point


if __name__ == "__main__":
    main()

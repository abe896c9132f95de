"""In-container launcher: set up a pod's mounts, then exec the container's process.

Run as ``[ip netns exec <ns>] unshare --mount --propagation private -- python launch.py SPEC``.
The private mount namespace makes the bind mounts (volumes at their container paths) visible
to this process tree only. Stdlib only and executed by path, so it starts fast; after execve
the pid is the container process itself, which is what the kubelet signals and waits for.

Container logs: before exec, a forked writer takes the process's stdout and stderr through pipes
and appends them to the instance's log file in the CRI format the kubelet reads back
(`<RFC3339Nano> <stream> F <line>`, as containerd writes /var/log/pods/.../<restart>.log). The
writer lives in the container's process group, so it outlives a kubelet restart; it ignores
SIGTERM and ends when the container's pipes close, so the last lines of a crash are kept.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

MAX_LINE = 16 * 1024  # containerd splits longer lines into partial ("P") records


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


def cri_timestamp(now: float) -> str:
    seconds = int(now)
    nanos = int((now - seconds) * 1e9)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{nanos:09d}Z"


def cri_records(stream: str, data: bytes, final: bool, now: float) -> tuple[bytes, bytes]:
    """(records to append, unfinished rest) for bytes read from one stream."""
    out = []
    stamp = cri_timestamp(now).encode()
    while True:
        newline = data.find(b"\n")
        if newline == -1 or newline > MAX_LINE:
            if len(data) > MAX_LINE or (final and data):
                tag = b"F" if final and len(data) <= MAX_LINE else b"P"
                chunk, data = data[:MAX_LINE], data[MAX_LINE:]
                out.append(b"%s %s %s %s\n" % (stamp, stream.encode(), tag, chunk))
                continue
            return b"".join(out), data
        line, data = data[:newline], data[newline + 1 :]
        out.append(b"%s %s F %s\n" % (stamp, stream.encode(), line))


def write_logs(log_file: Path, sources: dict[int, str]) -> None:
    """Copy the pipes into the log file until every writer has closed them."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    pending = dict.fromkeys(sources, b"")
    with log_file.open("ab", buffering=0) as log:
        while pending:
            ready, _, _ = select.select(list(pending), [], [])
            for fd in ready:
                chunk = os.read(fd, 65536)
                records, pending[fd] = cri_records(
                    sources[fd], pending[fd] + chunk, final=not chunk, now=time.time()
                )
                if records:
                    log.write(records)
                if not chunk:
                    os.close(fd)
                    del pending[fd]


def redirect_to_log(log_file: Path) -> None:
    """Fork the log writer and point this process's stdout and stderr at it."""
    out_read, out_write = os.pipe()
    err_read, err_write = os.pipe()
    middle = os.fork()
    if middle == 0:
        # Double fork: the writer must not be the container process's child, or a process
        # that waits for all its children before exiting would wait for its own log writer.
        if os.fork() != 0:
            os._exit(0)
        os.close(out_write)
        os.close(err_write)
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        try:
            write_logs(log_file, {out_read: "stdout", err_read: "stderr"})
        finally:
            os._exit(0)
    os.waitpid(middle, 0)
    os.close(out_read)
    os.close(err_read)
    os.dup2(out_write, 1)
    os.dup2(err_write, 2)
    os.close(out_write)
    os.close(err_write)


def main() -> None:
    spec = json.loads(Path(sys.argv[1]).read_text())
    record = spec.get("record_created")
    apply_mounts(spec.get("mounts", []), Path(record) if record else None)
    if spec.get("log_file"):
        redirect_to_log(Path(spec["log_file"]))
    os.chdir(spec["cwd"])
    argv = spec["argv"]
    os.execvpe(argv[0], argv, spec["env"])  # noqa: S606 - exec is the point


if __name__ == "__main__":
    main()

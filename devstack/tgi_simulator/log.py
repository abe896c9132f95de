"""Log lines shaped like TGI's (Rust ``tracing`` compact format, or JSON with --json-output)."""

from __future__ import annotations

import contextlib
import json
import sys
import time
from typing import TextIO

_LEVELS = {"TRACE": 0, "DEBUG": 1, "INFO": 2, "WARN": 3, "ERROR": 4}


def _timestamp() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e6):06d}Z"


def fmt_duration(seconds: float) -> str:
    """Rust ``Duration`` Debug formatting (``1.5s``, ``12.3ms``, ``850µs``)."""
    if seconds >= 1:
        return f"{seconds:.9f}".rstrip("0").rstrip(".") + "s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.6f}".rstrip("0").rstrip(".") + "ms"
    if seconds >= 1e-6:
        return f"{seconds * 1e6:.3f}".rstrip("0").rstrip(".") + "µs"
    return f"{round(seconds * 1e9)}ns"


class Log:
    def __init__(self, json_output: bool = False, level: str = "info", out: TextIO | None = None):
        self.json = json_output
        lvl = level.strip().upper() if level else "INFO"
        # LOG_LEVEL may be a filter like "text_generation_router=debug"; keep the last level.
        lvl = lvl.rsplit("=", 1)[-1].split(",")[-1]
        self.threshold = _LEVELS.get("WARN" if lvl == "WARNING" else lvl, 2)
        self.out = out or sys.stdout

    def enabled(self, level: str) -> bool:
        return _LEVELS[level] >= self.threshold

    def emit(
        self,
        level: str,
        target: str,
        message: str,
        span: str | None = None,
        fields: str = "",
        flush: bool = True,
    ) -> None:
        if _LEVELS[level] < self.threshold:
            return
        if self.json:
            rec: dict[str, object] = {
                "timestamp": _timestamp(),
                "level": level,
                "fields": {"message": message},
                "target": target,
            }
            if span:
                rec["span"] = {"name": span}
            line = json.dumps(rec, ensure_ascii=False)
        else:
            prefix = f"{span}: " if span else ""
            suffix = f" {fields}" if fields else ""
            line = f"{_timestamp()} {level:>5} {prefix}{target}: {message}{suffix}"
        try:
            self.out.write(line + "\n")
            if flush:
                self.out.flush()
        except (BrokenPipeError, ValueError):
            pass

    def flush(self) -> None:
        with contextlib.suppress(BrokenPipeError, ValueError):
            self.out.flush()

    # Launcher-side shortcuts.
    def info(self, message: str, span: str | None = None, fields: str = "") -> None:
        self.emit("INFO", "text_generation_launcher", message, span, fields)

    def warn(self, message: str, span: str | None = None, fields: str = "") -> None:
        self.emit("WARN", "text_generation_launcher", message, span, fields)

    def error(self, message: str, span: str | None = None, fields: str = "") -> None:
        self.emit("ERROR", "text_generation_launcher", message, span, fields)

    def router(self, level: str, where: str, message: str, span: str | None = None) -> None:
        target, _, loc = where.partition(" ")
        self.emit(level, target, f"{loc}: {message}" if loc else message, span)

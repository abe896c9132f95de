"""Fault knobs for the TGI simulator.

The simulated kubelet copies the pod annotation ``sim.inference.portal/faults`` verbatim into
the container environment as ``SIM_FAULTS``; the simulator parses it with :func:`parse_faults`.

Accepted formats (same keys in both):

* JSON object: ``{"error_rate": 0.25, "error_health": true}``
* ``key=value`` list separated by commas, semicolons or whitespace:
  ``crash`` / ``oom=true, slow_start=20`` (a bare key means ``true``).

Keys:

``crash``            shard fails to start: TGI-like shard error, process exits 1.
``oom``              ``CUDA out of memory`` during warmup: TGI's log lines, process exits 1
                     (the launcher's WebserverFailed; never a kernel OOM kill).
``oom_load``         ``CUDA out of memory`` while the shard loads the weights (they do not fit):
                     "Shard 0 failed to start", ``Error: ShardCannotStart``, exit 1.
``slow_start``       extra seconds spent loading the shard (port stays unbound meanwhile).
``crash_after``      seconds after the server is up, the shard dies (``Shard 0 crashed``, exit 1).
``error_rate``       fraction 0..1 of generations failing with HTTP 424 (deterministic: exactly
                     every 1/rate-th request fails).
``error_health``     after a failed generation ``/health`` answers 503 until one succeeds
                     (TGI re-checks the model after a failure).
``unhealthy``        ``/health`` always answers 503.
``token_latency_ms`` per-token decode latency, overriding ``SIM_TOKENS_PER_SECOND``.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, fields
from typing import Any

FAULTS_ANNOTATION = "sim.inference.portal/faults"
FAULTS_ENV = "SIM_FAULTS"

_TRUE = {"1", "true", "yes", "on", "y", "t"}
_FALSE = {"0", "false", "no", "off", "n", "f", ""}


@dataclass(frozen=True)
class Faults:
    crash: bool = False
    oom: bool = False
    oom_load: bool = False
    slow_start: float = 0.0
    crash_after: float | None = None
    error_rate: float = 0.0
    error_health: bool = False
    unhealthy: bool = False
    token_latency_ms: float | None = None

    @property
    def any(self) -> bool:
        return self != Faults()


_KINDS: dict[str, str] = {
    "crash": "bool",
    "oom": "bool",
    "oom_load": "bool",
    "slow_start": "seconds",
    "crash_after": "seconds",
    "error_rate": "fraction",
    "error_health": "bool",
    "unhealthy": "bool",
    "token_latency_ms": "seconds",
}
assert set(_KINDS) == {f.name for f in fields(Faults)}


def _coerce(key: str, value: Any) -> Any:
    kind = _KINDS[key]
    if kind == "bool":
        if isinstance(value, bool):
            return value
        s = str(value).strip().lower()
        if s in _TRUE:
            return True
        if s in _FALSE:
            return False
        raise ValueError(f"fault {key!r}: expected a boolean, got {value!r}")
    if isinstance(value, bool):
        raise ValueError(f"fault {key!r}: expected a number, got {value!r}")
    try:
        num = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"fault {key!r}: expected a number, got {value!r}") from None
    if not math.isfinite(num) or num < 0:
        raise ValueError(f"fault {key!r}: must be a finite number >= 0, got {value!r}")
    if kind == "fraction" and num > 1:
        raise ValueError(f"fault {key!r}: must be between 0 and 1, got {value!r}")
    return num


def parse_faults(text: str | None) -> Faults:
    """Parse the annotation/env value; raises ``ValueError`` on unknown keys or bad values."""
    if text is None or not text.strip():
        return Faults()
    raw: dict[str, Any] = {}
    stripped = text.strip()
    if stripped.startswith("{"):
        try:
            data = json.loads(stripped)
        except json.JSONDecodeError as exc:
            raise ValueError(f"faults: invalid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ValueError("faults: JSON must be an object")
        raw = data
    else:
        for item in re.split(r"[,;\s]+", stripped):
            if not item:
                continue
            key, sep, value = item.partition("=")
            raw[key.strip()] = value.strip() if sep else True
    values: dict[str, Any] = {}
    for key, value in raw.items():
        norm = key.strip().replace("-", "_").lower()
        if norm not in _KINDS:
            raise ValueError(f"faults: unknown key {key!r} (known: {', '.join(sorted(_KINDS))})")
        if value is None:
            continue
        values[norm] = _coerce(norm, value)
    return Faults(**values)


def format_faults(faults: Faults) -> str:
    """Inverse of :func:`parse_faults` (``key=value`` form, non-default keys only)."""
    default = Faults()
    parts = []
    for f in fields(Faults):
        v = getattr(faults, f.name)
        if v != getattr(default, f.name):
            parts.append(f"{f.name}={str(v).lower() if isinstance(v, bool) else v}")
    return ",".join(parts)

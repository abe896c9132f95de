"""The benches' Celery worker can start on a fresh checkout (no var/bench/... folder yet)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench.rollouts import common


class _ExitedProcess:
    def poll(self) -> int:
        return 1


def test_worker_creates_its_log_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from portal.celery import app

    log = tmp_path / "var" / "bench" / "gateway" / "celery-worker.log"
    monkeypatch.setattr(common.subprocess, "Popen", lambda *a, **kw: _ExitedProcess())
    monkeypatch.setattr(app.control, "ping", lambda **kw: [])
    env: dict[str, Any] = {"CELERY_QUEUE": "bench-test"}
    previous_queue = app.conf.task_default_queue

    # The fake worker exits at once, so the bench gives up; the log file must exist by then.
    try:
        with pytest.raises(SystemExit, match="did not start"), common.worker(env, log):
            pass
    finally:
        app.conf.task_default_queue = previous_queue  # worker() points it at the bench queue

    assert log.exists()

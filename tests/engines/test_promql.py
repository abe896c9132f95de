"""Each engine's panel and guardrail PromQL, evaluated by promtool over series named and shaped
as the real engine exports them, through the checked-in recording rules."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from deployments import alerts, metrics
from engines import ENGINES

PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
RECORDING_RULES = (
    Path(__file__).parents[2] / "deploy" / "prometheus" / "inference-recording-rules.yml"
)
LABELS = (
    'namespace="tenant-acme", inference_portal_tenant="acme", inference_portal_deployment="chat",'
    ' inference_portal_colour="blue", inference_portal_tier="l4", inference_backend="{engine}"'
)
STEP = "15s"
# One request a second (15 per 15-second scrape), 3 waiting, and every first token (and, for
# TGI, every prefill) between 0.1 s and 0.5 s while queueing takes under 0.1 s.
PER_SCRAPE = "0+15x60"
NONE = "0+0x60"


def _histogram(name: str, extra: str, low: str, high: str) -> dict[str, str]:
    return {
        f'{name}_bucket{{{extra}le="0.1"}}': low,
        f'{name}_bucket{{{extra}le="0.5"}}': high,
        f'{name}_bucket{{{extra}le="+Inf"}}': high,
    }


# Metric names and labels as each engine exports them (counters: TGI without `_total`; vLLM
# and SGLang with it; see engines/<name>/metrics.py for the sources).
SAMPLES: dict[str, dict[str, str]] = {
    "tgi": {
        "tgi_request_success{}": PER_SCRAPE,
        'tgi_request_failure{err="validation", }': NONE,
        "tgi_queue_size{}": "3x60",
        **_histogram("tgi_request_queue_duration", "", PER_SCRAPE, PER_SCRAPE),
        **_histogram("tgi_batch_inference_duration", 'method="prefill", ', NONE, PER_SCRAPE),
    },
    "vllm": {
        'vllm:request_success_total{finished_reason="stop", }': PER_SCRAPE,
        'vllm:num_requests_waiting{model_name="m", }': "3x60",
        **_histogram("vllm:time_to_first_token_seconds", 'model_name="m", ', NONE, PER_SCRAPE),
    },
    "sglang": {
        'sglang:num_requests_total{model_name="m", }': PER_SCRAPE,
        'sglang:num_queue_reqs{model_name="m", }': "3x60",
        **_histogram("sglang:time_to_first_token_seconds", 'model_name="m", ', NONE, PER_SCRAPE),
    },
}
# Queue p95 under 0.1 s is 0.095; first token / prefill p95 is 0.1 + 0.95 × 0.4 = 0.48.
TTFT_P95 = {"tgi": 0.095 + 0.48, "vllm": 0.48, "sglang": 0.48}


def _series(engine: str) -> list[dict[str, str]]:
    labels = LABELS.format(engine=engine)
    out = []
    for selector, values in SAMPLES[engine].items():
        name, rest = selector.split("{", 1)
        own = rest.rstrip("}").strip().rstrip(",")
        joined = f"{own}, {labels}" if own else labels
        out.append({"series": f"{name}{{{joined}}}", "values": values})
    return out


def _promtool_test(tmp_path: Path, engine: str, tests: list[dict[str, Any]]) -> None:
    if not Path(PROMTOOL).exists():
        pytest.skip("promtool is not installed (Debian package `prometheus`)")
    spec = {
        "rule_files": [str(RECORDING_RULES)],
        "evaluation_interval": STEP,
        "tests": [{"interval": STEP, "input_series": _series(engine), "promql_expr_test": tests}],
    }
    path = tmp_path / f"{engine}.yml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    result = subprocess.run(
        [PROMTOOL, "test", "rules", str(path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _expect(query: str, value: float, **labels: str) -> dict[str, Any]:
    rendered = ", ".join(f'{k}="{v}"' for k, v in labels.items())
    return {
        "expr": query,
        "eval_time": "10m",
        "exp_samples": [{"labels": f"{{{rendered}}}", "value": value}],
    }


BY = {"inference_portal_deployment": "chat", "inference_portal_colour": "blue"}


@pytest.mark.parametrize("engine", list(ENGINES))
@pytest.mark.parametrize("window", ["1m", "5m"])  # recorded series, then raw ones
def test_panels_read_the_engines_own_series(tmp_path: Path, engine: str, window: str) -> None:
    panels = metrics.PANELS_BY_NAME
    _promtool_test(
        tmp_path,
        engine,
        [
            _expect(panels["request_rate"].query("tenant-acme", window), 1, **BY),
            _expect(panels["queue_size"].query("tenant-acme", window), 3, **BY),
            _expect(panels["ttft_p95"].query("tenant-acme", window), TTFT_P95[engine], **BY),
        ],
    )


@pytest.mark.parametrize("engine", list(ENGINES))
def test_guardrails_read_the_engines_own_series(tmp_path: Path, engine: str) -> None:
    labels = {
        "namespace": "tenant-acme",
        "inference_portal_tenant": "acme",
        **BY,
        "inference_portal_tier": "l4",
    }
    queue = alerts.GUARDRAILS_BY_ALERT["QueueDepthHigh"].query('namespace="tenant-acme"')
    ttft = alerts.GUARDRAILS_BY_ALERT["TimeToFirstTokenHigh"].query('namespace="tenant-acme"')
    _promtool_test(
        tmp_path,
        engine,
        [_expect(queue, 3, **labels), _expect(ttft, TTFT_P95[engine], **labels)],
    )


def test_panels_an_engine_cannot_fill_say_why() -> None:
    for name in ("success_ratio", "error_rate"):
        missing = metrics.PANELS_BY_NAME[name].not_reported
        assert set(missing) == {"vllm", "sglang"}
        assert all(why.startswith("not reported by") for why in missing.values())
    assert metrics.not_reported("input_length_buckets", "sglang").startswith(
        "not reported by SGLang"
    )
    assert metrics.not_reported("ttft_p95", "tgi") == ""
    # The error-ratio guardrail is TGI's alone; the others say why.
    error_ratio = alerts.GUARDRAILS_BY_ALERT["ErrorRatioHigh"]
    assert 'inference_backend="tgi"' in error_ratio.query("")
    assert "vllm" not in error_ratio.query("") and set(error_ratio.not_reported) == {
        "vLLM",
        "SGLang",
    }

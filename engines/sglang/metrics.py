"""SGLang's Prometheus series (python/sglang/srt/metrics/collector.py, v0.5) and the PromQL.

Served only with ``--enable-metrics`` (the portal always passes it). SGLang has a real
time-to-first-token histogram. It has no counter of failed requests and reports prompt-length
histograms only with ``--collect-tokens-histogram`` (not enabled: its buckets are per pod and
fixed), so those panels say so instead of staying empty.
"""

from __future__ import annotations

from engines.promql import Builder, EngineMetrics, NotReported, Recorded, RecordedQuantile

BACKEND = "sglang"
_COUNT = Recorded(BACKEND, "sglang:num_requests_total")
_GENERATED = Recorded(BACKEND, "sglang:generation_tokens_total")
_E2E = Recorded(BACKEND, "sglang:e2e_request_latency_seconds_bucket", keep=("le",))
_TTFT = Recorded(BACKEND, "sglang:time_to_first_token_seconds_bucket", keep=("le",))
_QUEUE = Recorded(BACKEND, "sglang:queue_time_seconds_bucket", keep=("le",))
# The time-to-first-token guardrail reads 5-minute rates.
_TTFT_5M = Recorded(BACKEND, "sglang:time_to_first_token_seconds_bucket", keep=("le",), window="5m")
RECORDED = (_COUNT, _GENERATED, _E2E, _TTFT, _QUEUE, _TTFT_5M)
QUANTILES = (
    RecordedQuantile("sglang:e2e_request_latency_seconds", 0.5, _E2E),
    RecordedQuantile("sglang:e2e_request_latency_seconds", 0.95, _E2E),
    RecordedQuantile("sglang:e2e_request_latency_seconds", 0.99, _E2E),
    RecordedQuantile("sglang:time_to_first_token_seconds", 0.95, _TTFT),
    RecordedQuantile("sglang:queue_time_seconds", 0.95, _QUEUE),
    RecordedQuantile("sglang:time_to_first_token_seconds", 0.95, _TTFT_5M),
)
_q = Builder(RECORDED, QUANTILES)
_NO_ERRORS = NotReported(
    "not reported by SGLang: it has no counter of failed requests (see the gateway's errors)"
)
_NO_INPUT_LENGTHS = NotReported(
    "not reported by SGLang: prompt-length histograms need --collect-tokens-histogram"
)

SGLANG_METRICS = EngineMetrics(
    backend=BACKEND,
    panels={
        "request_rate": _q.sum("sglang:num_requests_total"),
        "success_ratio": _NO_ERRORS,
        "error_rate": _NO_ERRORS,
        "queue_size": _q.gauge("sglang:num_queue_reqs"),
        "batch_size": _q.gauge("sglang:num_running_reqs", "avg"),
        "request_p50": _q.quantile(0.5, "sglang:e2e_request_latency_seconds"),
        "request_p95": _q.quantile(0.95, "sglang:e2e_request_latency_seconds"),
        "request_p99": _q.quantile(0.99, "sglang:e2e_request_latency_seconds"),
        "queue_p95": _q.quantile(0.95, "sglang:queue_time_seconds"),
        "prefill_p95": NotReported(
            "not reported by SGLang: it has no prefill-time histogram (time to first token "
            "covers queue and prefill)"
        ),
        "ttft_p95": _q.quantile(0.95, "sglang:time_to_first_token_seconds"),
        "generated_tokens_rate": _q.sum("sglang:generation_tokens_total"),
        "input_length_p50": _NO_INPUT_LENGTHS,
        "input_length_p95": _NO_INPUT_LENGTHS,
        "input_length_buckets": _NO_INPUT_LENGTHS,
    },
    alerts={
        "QueueDepthHigh": "avg by ({by}) (sglang:num_queue_reqs{{{sel}}})",
        "TimeToFirstTokenHigh": _q.quantile_5m(0.95, "sglang:time_to_first_token_seconds"),
        "ErrorRatioHigh": _NO_ERRORS,
    },
    queue_size_metric="sglang:num_queue_reqs",
    input_tokens_counter="sglang:prompt_tokens_total",
    output_tokens_counter="sglang:generation_tokens_total",
    activity="sglang:num_requests_total{{{sel}}}",
    recorded=RECORDED,
    quantiles=QUANTILES,
    notes=("Time to first token is SGLang's own histogram.",),
)

"""vLLM's Prometheus series (vllm/v1/metrics/loggers.py, v0.11) and the portal's PromQL.

Counters keep the ``_total`` suffix (prometheus_client). vLLM has a real time-to-first-token
histogram. It counts *finished* requests only (``vllm:request_success_total{finished_reason=
stop|length|abort}``): a request the API server refuses (400, 429, 500) leaves no series, so
there is no error counter to read; the gateway's error panel shows those.
"""

from __future__ import annotations

from engines.promql import Builder, EngineMetrics, NotReported, Recorded, RecordedQuantile

BACKEND = "vllm"
_COUNT = Recorded(BACKEND, "vllm:request_success_total")
_GENERATED = Recorded(BACKEND, "vllm:generation_tokens_total")
_E2E = Recorded(BACKEND, "vllm:e2e_request_latency_seconds_bucket", keep=("le",))
_TTFT = Recorded(BACKEND, "vllm:time_to_first_token_seconds_bucket", keep=("le",))
_QUEUE = Recorded(BACKEND, "vllm:request_queue_time_seconds_bucket", keep=("le",))
# The time-to-first-token guardrail reads 5-minute rates.
_TTFT_5M = Recorded(BACKEND, "vllm:time_to_first_token_seconds_bucket", keep=("le",), window="5m")
RECORDED = (_COUNT, _GENERATED, _E2E, _TTFT, _QUEUE, _TTFT_5M)
QUANTILES = (
    RecordedQuantile("vllm:e2e_request_latency_seconds", 0.5, _E2E),
    RecordedQuantile("vllm:e2e_request_latency_seconds", 0.95, _E2E),
    RecordedQuantile("vllm:e2e_request_latency_seconds", 0.99, _E2E),
    RecordedQuantile("vllm:time_to_first_token_seconds", 0.95, _TTFT),
    RecordedQuantile("vllm:request_queue_time_seconds", 0.95, _QUEUE),
    RecordedQuantile("vllm:time_to_first_token_seconds", 0.95, _TTFT_5M),
)
_q = Builder(RECORDED, QUANTILES)
_NO_ERRORS = NotReported(
    "not reported by vLLM: it counts finished requests only, not the ones it refuses "
    "(see the gateway's errors)"
)

VLLM_METRICS = EngineMetrics(
    backend=BACKEND,
    panels={
        "request_rate": _q.sum("vllm:request_success_total"),
        "success_ratio": _NO_ERRORS,
        "error_rate": _NO_ERRORS,
        "queue_size": _q.gauge("vllm:num_requests_waiting"),
        "batch_size": _q.gauge("vllm:num_requests_running", "avg"),
        "request_p50": _q.quantile(0.5, "vllm:e2e_request_latency_seconds"),
        "request_p95": _q.quantile(0.95, "vllm:e2e_request_latency_seconds"),
        "request_p99": _q.quantile(0.99, "vllm:e2e_request_latency_seconds"),
        "queue_p95": _q.quantile(0.95, "vllm:request_queue_time_seconds"),
        "prefill_p95": _q.quantile(0.95, "vllm:request_prefill_time_seconds"),
        "ttft_p95": _q.quantile(0.95, "vllm:time_to_first_token_seconds"),
        "generated_tokens_rate": _q.sum("vllm:generation_tokens_total"),
        "input_length_p50": _q.quantile(0.5, "vllm:request_prompt_tokens"),
        "input_length_p95": _q.quantile(0.95, "vllm:request_prompt_tokens"),
        "input_length_buckets": _q.increase_buckets("vllm:request_prompt_tokens"),
    },
    alerts={
        "QueueDepthHigh": "avg by ({by}) (vllm:num_requests_waiting{{{sel}}})",
        "TimeToFirstTokenHigh": _q.quantile_5m(0.95, "vllm:time_to_first_token_seconds"),
        "ErrorRatioHigh": _NO_ERRORS,
    },
    queue_size_metric="vllm:num_requests_waiting",
    input_tokens_counter="vllm:prompt_tokens_total",
    output_tokens_counter="vllm:generation_tokens_total",
    activity="vllm:request_success_total{{{sel}}}",
    recorded=RECORDED,
    quantiles=QUANTILES,
    notes=("Time to first token is vLLM's own histogram (vllm:time_to_first_token_seconds).",),
)

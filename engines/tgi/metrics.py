"""TGI's Prometheus series and the PromQL the portal reads them with.

From TGI's "Prometheus metrics" reference (router/src/server.rs, router/src/infer/mod.rs):

- Counters carry no ``_total`` suffix.
- ``tgi_request_count`` counts an OpenAI-route request twice (the route, then the inner
  generate), so request rates count *outcomes* instead: every request ends in exactly one
  ``tgi_request_success`` or ``tgi_request_failure{err}`` increment.
- TGI has no time-to-first-token metric. Like TGI's own Grafana dashboard the portal uses the
  queue time (``tgi_request_queue_duration``) plus the prefill batch time
  (``tgi_batch_inference_duration{method="prefill"}``); adding their two p95s bounds rather than
  equals the p95 of the sum.
"""

from __future__ import annotations

from engines.promql import (
    Builder,
    EngineMetrics,
    PanelQuery,
    Recorded,
    RecordedQuantile,
)

BACKEND = "tgi"
PREFILL = ', method="prefill"'

_SUCCESS = Recorded(BACKEND, "tgi_request_success")
_FAILURE = Recorded(BACKEND, "tgi_request_failure", keep=("err",))
_GENERATED = Recorded(BACKEND, "tgi_request_generated_tokens_sum")
_DURATION = Recorded(BACKEND, "tgi_request_duration_bucket", keep=("le",))
_QUEUE = Recorded(BACKEND, "tgi_request_queue_duration_bucket", keep=("le",))
_PREFILL = Recorded(
    BACKEND, "tgi_batch_inference_duration_bucket", keep=("method", "le"), match=PREFILL
)
# The time-to-first-token guardrail reads 5-minute rates.
_QUEUE_5M = Recorded(BACKEND, "tgi_request_queue_duration_bucket", keep=("le",), window="5m")
_PREFILL_5M = Recorded(
    BACKEND,
    "tgi_batch_inference_duration_bucket",
    keep=("method", "le"),
    match=PREFILL,
    window="5m",
)
# Not the input length buckets: 100 a pod (TGI divides max input tokens into 100), read only by
# the deployment page; recording them would cost more every evaluation than it saves.
RECORDED = (_SUCCESS, _FAILURE, _GENERATED, _DURATION, _QUEUE, _PREFILL, _QUEUE_5M, _PREFILL_5M)
QUANTILES = (
    RecordedQuantile("tgi_request_duration", 0.5, _DURATION),
    RecordedQuantile("tgi_request_duration", 0.95, _DURATION),
    RecordedQuantile("tgi_request_duration", 0.99, _DURATION),
    RecordedQuantile("tgi_request_queue_duration", 0.95, _QUEUE),
    RecordedQuantile("tgi_batch_inference_duration", 0.95, _PREFILL, PREFILL),
    RecordedQuantile("tgi_request_queue_duration", 0.95, _QUEUE_5M),
    RecordedQuantile("tgi_batch_inference_duration", 0.95, _PREFILL_5M, PREFILL),
)

_q = Builder(RECORDED, QUANTILES)
_OUTCOMES = _q.outcomes("tgi_request_success", "tgi_request_failure")
_QUEUE_P95 = _q.quantile(0.95, "tgi_request_queue_duration")
_PREFILL_P95 = _q.quantile(0.95, "tgi_batch_inference_duration", PREFILL)

TGI_METRICS = EngineMetrics(
    backend=BACKEND,
    panels={
        "request_rate": _OUTCOMES,
        "success_ratio": _q.ratio(_q.sum("tgi_request_success"), _OUTCOMES),
        "error_rate": _q.sum("tgi_request_failure"),
        "queue_size": _q.gauge("tgi_queue_size"),
        "batch_size": _q.gauge("tgi_batch_current_size", "avg"),
        "request_p50": _q.quantile(0.5, "tgi_request_duration"),
        "request_p95": _q.quantile(0.95, "tgi_request_duration"),
        "request_p99": _q.quantile(0.99, "tgi_request_duration"),
        "queue_p95": _QUEUE_P95,
        "prefill_p95": _PREFILL_P95,
        "ttft_p95": _q.plus(_QUEUE_P95, _PREFILL_P95),
        "generated_tokens_rate": _q.sum("tgi_request_generated_tokens_sum"),
        "input_length_p50": PanelQuery(_q.quantile(0.5, "tgi_request_input_length").raw),
        "input_length_p95": PanelQuery(_q.quantile(0.95, "tgi_request_input_length").raw),
        "input_length_buckets": _q.increase_buckets("tgi_request_input_length"),
    },
    alerts={
        "QueueDepthHigh": "avg by ({by}) (tgi_queue_size{{{sel}}})",
        "TimeToFirstTokenHigh": _q.quantile_5m(0.95, "tgi_request_queue_duration")
        + " + "
        + _q.quantile_5m(0.95, "tgi_batch_inference_duration", PREFILL),
        "ErrorRatioHigh": "sum by ({by}) (rate(tgi_request_failure{{{sel}}}[5m])) / sum by ({by}) "
        '(rate({{__name__=~"tgi_request_success|tgi_request_failure", {sel}}}[5m]))',
    },
    queue_size_metric="tgi_queue_size",
    input_tokens_counter="tgi_request_input_length_sum",
    output_tokens_counter="tgi_request_generated_tokens_sum",
    activity='{{__name__=~"tgi_request_success|tgi_request_failure", {sel}}}',
    recorded=RECORDED,
    quantiles=QUANTILES,
    notes=("Time to first token is p95 queue time plus p95 prefill time: TGI has no TTFT metric.",),
)

"""SGLang's Prometheus series (sglang/srt/metrics/collector.py SchedulerMetricsCollector and
TokenizerMetricsCollector), exported only with ``--enable-metrics``. SGLang runs prometheus_client
in multiprocess mode, which writes no ``_created`` samples; counters end in ``_total``."""

from __future__ import annotations

import time

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

TTFT_BUCKETS = [0.1, 0.2, 0.4, 0.6, 0.8, 1, 2, 4, 6, 8, 10, 20, 40, 60, 80, 100, 200, 400]
E2E_BUCKETS = [0.1, 0.2, 0.4, 0.6, 0.8, 1, 2, 4, 6, 8, 10, 20, 40, 60, 80, 100, 200, 400, 800]
ITL_BUCKETS = [
    0.002, 0.004, 0.006, 0.008, 0.010, 0.015, 0.020, 0.025, 0.030, 0.035, 0.040, 0.060, 0.080,
    0.100, 0.200, 0.400, 0.600, 0.800, 1.000, 2.000, 4.000, 6.000, 8.000,
]  # fmt: skip
PROMPT_TOKEN_BUCKETS = [
    100, 300, 500, 700, 1000, 1500, 2000, 3000, 4000, 5000, 6000, 7000, 8000, 9000, 10000, 12000,
    15000, 20000, 22000, 25000, 30000, 35000, 40000,
]  # fmt: skip
GENERATION_TOKEN_BUCKETS = [
    100, 300, 500, 1000, 1200, 1500, 1700, 2000, 2500, 3000, 3500, 4000, 4500, 5000, 6000, 7000,
    8000, 9000, 10000,
]  # fmt: skip


class SglangMetrics:
    def __init__(self, model_name: str, collect_tokens_histogram: bool) -> None:
        prometheus_client.disable_created_metrics()
        self.registry = r = CollectorRegistry()
        self.tok_labels = {"model_name": model_name}
        self.sched_labels = {
            **self.tok_labels,
            "engine_type": "unified",
            "tp_rank": "0",
            "pp_rank": "0",
        }
        sl, tl = list(self.sched_labels), list(self.tok_labels)

        def gauge(name: str, doc: str) -> Gauge:
            return Gauge(name, doc, sl, registry=r)

        self.num_running_reqs = gauge("sglang:num_running_reqs", "The number of running requests.")
        self.num_used_tokens = gauge("sglang:num_used_tokens", "The number of used tokens.")
        self.token_usage = gauge("sglang:token_usage", "The token usage.")
        self.gen_throughput = gauge("sglang:gen_throughput", "The generation throughput (token/s).")
        self.num_queue_reqs = gauge(
            "sglang:num_queue_reqs", "The number of requests in the waiting queue."
        )
        self.num_grammar_queue_reqs = gauge(
            "sglang:num_grammar_queue_reqs", "The number of requests in the grammar waiting queue."
        )
        self.cache_hit_rate = gauge("sglang:cache_hit_rate", "The prefix cache hit rate.")

        def counter(name: str, doc: str) -> Counter:
            return Counter(name, doc, tl, registry=r)

        self.prompt_tokens = counter("sglang:prompt_tokens", "Number of prefill tokens processed.")
        self.generation_tokens = counter(
            "sglang:generation_tokens", "Number of generation tokens processed."
        )
        self.cached_tokens = counter("sglang:cached_tokens", "Number of cached prompt tokens.")
        self.num_requests = counter("sglang:num_requests", "Number of requests processed.")
        self.num_so_requests = counter(
            "sglang:num_so_requests", "Number of structured output requests processed."
        )
        self.prompt_hist: Histogram | None = None
        self.generation_hist: Histogram | None = None
        if collect_tokens_histogram:
            self.prompt_hist = Histogram(
                "sglang:prompt_tokens_histogram", "Histogram of prompt token length.", tl,
                buckets=PROMPT_TOKEN_BUCKETS, registry=r,
            )  # fmt: skip
            self.generation_hist = Histogram(
                "sglang:generation_tokens_histogram", "Histogram of generation token length.", tl,
                buckets=GENERATION_TOKEN_BUCKETS, registry=r,
            )  # fmt: skip
        self.ttft = Histogram(
            "sglang:time_to_first_token_seconds",
            "Histogram of time to first token in seconds.", tl,
            buckets=TTFT_BUCKETS, registry=r,
        )  # fmt: skip
        self.itl = Histogram(
            "sglang:inter_token_latency_seconds",
            "Histogram of inter-token latency in seconds.", tl,
            buckets=ITL_BUCKETS, registry=r,
        )  # fmt: skip
        self.e2e = Histogram(
            "sglang:e2e_request_latency_seconds",
            "Histogram of End-to-end request latency in seconds",
            tl, buckets=E2E_BUCKETS, registry=r,
        )  # fmt: skip
        self._last_scrape = time.monotonic()

    def render(
        self, running: int, waiting: int, used_tokens: int, usage: float, generated: int
    ) -> bytes:
        sl = self.sched_labels
        now = time.monotonic()
        elapsed = max(now - self._last_scrape, 1e-6)
        self._last_scrape = now
        self.num_running_reqs.labels(**sl).set(running)
        self.num_queue_reqs.labels(**sl).set(waiting)
        self.num_used_tokens.labels(**sl).set(used_tokens)
        self.token_usage.labels(**sl).set(round(usage, 2))
        self.gen_throughput.labels(**sl).set(generated / elapsed)
        self.num_grammar_queue_reqs.labels(**sl).set(0)
        self.cache_hit_rate.labels(**sl).set(0.0)
        return generate_latest(self.registry)

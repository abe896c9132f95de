"""Prometheus exposition in the style of the Rust ``metrics-exporter-prometheus`` crate.

TGI records through the ``metrics`` facade and renders with that exporter, so (unlike
``prometheus_client``) counters carry no ``_total`` suffix, numbers are printed with Rust's
``Display`` (``41`` not ``41.0``, never an exponent), and a series only appears once it has been
touched (descriptions alone do not create it).
"""

from __future__ import annotations

from bisect import bisect_left
from decimal import Decimal

LabelKey = tuple[tuple[str, str], ...]


def fmt_number(x: float) -> str:
    """Rust ``f64`` Display: shortest round-trip digits, integral values without ``.0``."""
    if x != x:  # NaN
        return "NaN"
    if x in (float("inf"), float("-inf")):
        return "inf" if x > 0 else "-inf"
    if x == int(x) and abs(x) < 1e16:
        return str(int(x))
    r = repr(x)
    if "e" in r or "E" in r:
        return format(Decimal(r), "f")
    return r


def duration_buckets() -> list[float]:
    # Built by repeated multiplication, exactly like TGI, so the f64 values match bit for bit.
    out, value = [], 0.0001
    for _ in range(35):
        value *= 1.5
        out.append(value)
    return out


def linear_buckets(top: int, n: int = 100) -> list[float]:
    step = top / 100.0 if n == 100 else top / float(n)
    return [step * (x + 1) for x in range(n)]


def _labels(key: LabelKey, extra: tuple[str, str] | None = None) -> str:
    items = [f'{k}="{v}"' for k, v in key]
    if extra is not None:
        items.append(f'{extra[0]}="{extra[1]}"')
    return "{" + ",".join(items) + "}" if items else ""


class Counter:
    kind = "counter"

    def __init__(self, name: str, help_text: str | None = None) -> None:
        self.name = name
        self.help = help_text
        self.values: dict[LabelKey, int] = {}

    def inc(self, n: int = 1, **labels: str) -> None:
        key = tuple(labels.items())
        self.values[key] = self.values.get(key, 0) + n

    def get(self, **labels: str) -> int:
        return self.values.get(tuple(labels.items()), 0)

    def render(self, out: list[str]) -> None:
        for key, v in self.values.items():
            out.append(f"{self.name}{_labels(key)} {v}")


class Gauge:
    kind = "gauge"

    def __init__(self, name: str, help_text: str | None = None) -> None:
        self.name = name
        self.help = help_text
        self.values: dict[LabelKey, float] = {}

    def set(self, value: float, **labels: str) -> None:
        self.values[tuple(labels.items())] = float(value)

    def inc(self, value: float = 1.0, **labels: str) -> None:
        key = tuple(labels.items())
        self.values[key] = self.values.get(key, 0.0) + value

    def get(self, **labels: str) -> float:
        return self.values.get(tuple(labels.items()), 0.0)

    def render(self, out: list[str]) -> None:
        for key, v in self.values.items():
            out.append(f"{self.name}{_labels(key)} {fmt_number(v)}")


class Histogram:
    kind = "histogram"

    def __init__(self, name: str, buckets: list[float], help_text: str | None = None) -> None:
        self.name = name
        self.help = help_text
        self.buckets = buckets
        self._le = [fmt_number(b) for b in buckets]
        # per label set: [per-bucket counts (+1 overflow), sum, count]
        self.series: dict[LabelKey, list] = {}

    def observe(self, value: float, n: int = 1, **labels: str) -> None:
        key = tuple(labels.items())
        s = self.series.get(key)
        if s is None:
            s = self.series[key] = [[0] * (len(self.buckets) + 1), 0.0, 0]
        s[0][bisect_left(self.buckets, value)] += n
        s[1] += value * n
        s[2] += n

    def count(self, **labels: str) -> int:
        s = self.series.get(tuple(labels.items()))
        return s[2] if s else 0

    def render(self, out: list[str]) -> None:
        for key, (counts, total, n) in self.series.items():
            cum = 0
            for le, c in zip(self._le, counts, strict=False):
                cum += c
                out.append(f"{self.name}_bucket{_labels(key, ('le', le))} {cum}")
            out.append(f"{self.name}_bucket{_labels(key, ('le', '+Inf'))} {n}")
            out.append(f"{self.name}_sum{_labels(key)} {fmt_number(total)}")
            out.append(f"{self.name}_count{_labels(key)} {n}")


Metric = Counter | Gauge | Histogram


class Registry:
    def __init__(self) -> None:
        self.metrics: dict[str, Metric] = {}

    def add(self, metric: Metric) -> Metric:
        self.metrics[metric.name] = metric
        return metric

    def render(self) -> str:
        out: list[str] = []
        for kind in ("counter", "gauge", "histogram"):
            for name in sorted(self.metrics):
                m = self.metrics[name]
                if m.kind != kind:
                    continue
                body: list[str] = []
                m.render(body)
                if not body:
                    continue  # untouched series are not exported, as in the Rust exporter
                if m.help:
                    out.append(f"# HELP {name} {m.help}")
                out.append(f"# TYPE {name} {kind}")
                out.extend(body)
                out.append("")
        return "\n".join(out) + ("\n" if out else "")


class TgiMetrics:
    """The series TGI 3.x exports, with its bucket layouts and descriptions."""

    def __init__(self, max_input_tokens: int, max_total_tokens: int) -> None:
        r = self.registry = Registry()
        d = duration_buckets()
        gen = linear_buckets(max_total_tokens)

        def hist(name: str, buckets: list[float], help_text: str | None) -> Histogram:
            h = Histogram(name, buckets, help_text)
            r.add(h)
            return h

        def counter(name: str, help_text: str | None = None) -> Counter:
            c = Counter(name, help_text)
            r.add(c)
            return c

        def gauge(name: str, help_text: str | None = None) -> Gauge:
            g = Gauge(name, help_text)
            r.add(g)
            return g

        self.request_count = counter("tgi_request_count", "Total number of requests")
        self.request_success = counter("tgi_request_success", "Number of successful requests")
        self.request_failure = counter("tgi_request_failure")
        self.batch_inference_count = counter(
            "tgi_batch_inference_count", "Inference calls per method (prefill or decode)"
        )
        self.batch_inference_success = counter(
            "tgi_batch_inference_success",
            "Number of successful inference calls per method (prefill or decode)",
        )
        self.batch_inference_failure = counter("tgi_batch_inference_failure")
        self.batch_concat = counter("tgi_batch_concat")

        self.queue_size = gauge("tgi_queue_size", "Current queue size")
        self.batch_current_size = gauge("tgi_batch_current_size", "Current batch size")
        self.batch_current_max_tokens = gauge(
            "tgi_batch_current_max_tokens", "Maximum tokens for the current batch"
        )
        self.batch_max_total_tokens = gauge("tgi_batch_max_total_tokens")

        self.request_duration = hist(
            "tgi_request_duration", d, "Total time spent processing the request"
        )
        self.request_validation_duration = hist(
            "tgi_request_validation_duration", d, "Time spent validating the request"
        )
        self.request_queue_duration = hist(
            "tgi_request_queue_duration", d, "Time spent in the queue per request"
        )
        self.request_inference_duration = hist(
            "tgi_request_inference_duration", d, "Request inference duration"
        )
        self.request_mean_time_per_token_duration = hist(
            "tgi_request_mean_time_per_token_duration", d, "Mean time per token per request"
        )
        self.batch_inference_duration = hist(
            "tgi_batch_inference_duration", d, "Batch inference duration"
        )
        self.batch_forward_duration = hist(
            "tgi_batch_forward_duration", d, "Batch forward duration per method (prefill or decode)"
        )
        self.batch_decode_duration = hist(
            "tgi_batch_decode_duration",
            d,
            "Time spent decoding a batch per method (prefill or decode)",
        )
        self.batch_filter_duration = hist(
            "tgi_batch_filter_duration",
            d,
            "Time spent filtering batches and sending generated tokens per method "
            "(prefill or decode)",
        )
        self.request_input_length = hist(
            "tgi_request_input_length",
            linear_buckets(max_input_tokens),
            "Input token length per request",
        )
        self.request_generated_tokens = hist(
            "tgi_request_generated_tokens", gen, "Generated tokens per request"
        )
        self.request_max_new_tokens = hist(
            "tgi_request_max_new_tokens", gen, "Maximum new tokens per request"
        )
        self.batch_next_size = hist(
            "tgi_batch_next_size",
            [float(x + 1) for x in range(1024)],
            "Batch size of the next batch",
        )

    def render(self) -> str:
        return self.registry.render()

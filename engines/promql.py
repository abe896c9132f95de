"""PromQL building blocks the engines describe their metrics with (pure; no Prometheus client).

Templates hold ``{sel}`` (the selected series: namespace or tier matchers plus the engine's own
``inference_backend`` matcher, filled in by deployments.metrics / alerts), ``{by}`` (the labels a
panel groups by), ``{window}`` and ``{ns}``. Literal braces are doubled (str.format).

Recording rules pre-aggregate rates per deployment and colour (``RECORDED_BY``), so a quantile
panel over N deployments reads one series per deployment instead of every raw bucket sample.
Names follow Prometheus' convention level:metric:operations.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

RECORDED_WINDOW = "1m"
"""The panels' rate window in the rules; panels asked for another window read raw series."""
DEPLOYMENT_LABEL = "inference_portal_deployment"
COLOUR_LABEL = "inference_portal_colour"
BACKEND_LABEL = "inference_backend"
RECORDED_BY = (
    "namespace",
    BACKEND_LABEL,
    "inference_portal_tenant",
    DEPLOYMENT_LABEL,
    COLOUR_LABEL,
    "inference_portal_tier",
)


@dataclass(frozen=True)
class Recorded:
    """``rate(<metric>[window])`` of one engine's series summed by RECORDED_BY (+ ``keep``)."""

    backend: str
    metric: str
    keep: tuple[str, ...] = ()
    match: str = ""
    """Extra label matchers (``, method="prefill"``): only what the queries read is recorded."""
    window: str = RECORDED_WINDOW

    @property
    def record(self) -> str:
        # level:metric:operations; an engine's own colons (vllm:…) would blur the levels.
        return f"deployment:{self.metric.replace(':', '_')}:rate{self.window}"

    @property
    def expr(self) -> str:
        by = ", ".join((*RECORDED_BY, *self.keep))
        return (
            f'sum by ({by}) (rate({self.metric}{{{BACKEND_LABEL}="{self.backend}"{self.match}}}'
            f"[{self.window}]))"
        )


@dataclass(frozen=True)
class RecordedQuantile:
    """A quantile of a recorded bucket rate, per deployment and colour, labelled ``quantile``."""

    histogram: str
    quantile: float
    bucket_rule: Recorded
    match: str = ""

    @property
    def window(self) -> str:
        return self.bucket_rule.window

    @property
    def record(self) -> str:
        metric = self.histogram.replace(":", "_")
        return f"deployment_quantile:{metric}:histogram_quantile_rate{self.window}"

    @property
    def expr(self) -> str:
        return f"histogram_quantile({self.quantile}, {self.bucket_rule.record})"

    @property
    def labels(self) -> dict[str, str]:
        return {"quantile": str(self.quantile)}


@dataclass(frozen=True)
class PanelQuery:
    """A panel's query over one engine's series: raw, and over the recording rules."""

    raw: str
    recorded: str = ""

    def template(self, window: str) -> str:
        return self.recorded if self.recorded and window == RECORDED_WINDOW else self.raw


@dataclass(frozen=True)
class NotReported:
    """A panel or alert the engine cannot fill, and why (shown instead of an empty chart)."""

    why: str


@dataclass(frozen=True)
class EngineMetrics:
    """Everything the portal reads from one engine's /metrics."""

    backend: str
    panels: Mapping[str, PanelQuery | NotReported]
    alerts: Mapping[str, str | NotReported]
    """Alert name (see deployments/alerts.py) -> expression template with ``{sel}``/``{by}``."""
    queue_size_metric: str
    """Per-pod gauge of waiting requests: the autoscaling signal and the queue alert."""
    input_tokens_counter: str
    """Counter (or histogram ``_sum``) of prompt tokens processed, for cost per token."""
    output_tokens_counter: str
    activity: str
    """Template of a per-pod series that is non-zero while requests are served."""
    recorded: tuple[Recorded, ...] = ()
    quantiles: tuple[RecordedQuantile, ...] = ()
    notes: tuple[str, ...] = field(default_factory=tuple)

    def selector(self, extra: str = "") -> str:
        """Label matchers of this engine's series, after ``extra`` (e.g. the namespace)."""
        own = f'{BACKEND_LABEL}="{self.backend}"'
        return f"{extra}, {own}" if extra else own


class Builder:
    """Query templates over one engine's series, using its recording rules where they exist."""

    def __init__(self, recorded: tuple[Recorded, ...], quantiles: tuple[RecordedQuantile, ...]):
        self._recorded = {(r.metric, r.window): r for r in recorded}
        self._quantiles = {(q.histogram, q.quantile, q.window): q for q in quantiles}

    def _recorded_rate(self, metric: str, match: str) -> str:
        rule = self._recorded.get((metric, RECORDED_WINDOW))
        if rule is None:
            return ""
        if match != rule.match:
            raise ValueError(f"{rule.record} records {rule.match!r}, not {match!r}")
        return rule.record + "{{{sel}" + match + "}}"

    def rate(self, metric: str, match: str = "") -> PanelQuery:
        return PanelQuery(
            "rate(" + metric + "{{{sel}" + match + "}}[{window}])",
            self._recorded_rate(metric, match),
        )

    def sum(self, metric: str, match: str = "") -> PanelQuery:
        rate = self.rate(metric, match)
        recorded = f"sum by ({{by}}) ({rate.recorded})" if rate.recorded else ""
        return PanelQuery(f"sum by ({{by}}) ({rate.raw})", recorded)

    def gauge(self, metric: str, aggregate: str = "sum") -> PanelQuery:
        return PanelQuery(f"{aggregate} by ({{by}}) ({metric}{{{{{{sel}}}}}})")

    def outcomes(self, *names: str) -> PanelQuery:
        """Rate of requests ended, over one name regex of the counters."""
        raw = '{{__name__=~"' + "|".join(names) + '", {sel}}}'
        rules = [self._recorded.get((n, RECORDED_WINDOW)) for n in names]
        recorded = ""
        if all(rules):
            recorded = (
                'sum by ({by}) ({{__name__=~"'
                + "|".join(r.record for r in rules if r)
                + '", {sel}}})'
            )
        return PanelQuery(f"sum by ({{by}}) (rate({raw}[{{window}}]))", recorded)

    def quantile(self, q: float, histogram: str, match: str = "") -> PanelQuery:
        raw = self.rate(f"{histogram}_bucket", match).raw
        rule = self._quantiles.get((histogram, q, RECORDED_WINDOW))
        recorded = ""
        if rule is not None:
            if match != rule.match:
                raise ValueError(f"{rule.record} records {rule.match!r}, not {match!r}")
            selector = "{{{sel}" + match + f', quantile="{q}"' + "}}"
            recorded = f"max by ({{by}}) ({rule.record}{selector})"
        return PanelQuery(f"histogram_quantile({q}, sum by ({{by}}, le) ({raw}))", recorded)

    def quantile_5m(self, q: float, histogram: str, match: str = "") -> str:
        """For alerts: the 5-minute quantile, from its recording rule when there is one."""
        rule = self._quantiles.get((histogram, q, "5m"))
        if rule is not None:
            selector = "{{{sel}" + match + f', quantile="{q}"' + "}}"
            return f"max by ({{by}}) ({rule.record}{selector})"
        rate = "rate(" + histogram + "_bucket{{{sel}" + match + "}}[5m])"
        return f"histogram_quantile({q}, sum by ({{by}}, le) ({rate}))"

    @staticmethod
    def plus(*parts: PanelQuery) -> PanelQuery:
        recorded = " + ".join(p.recorded for p in parts) if all(p.recorded for p in parts) else ""
        return PanelQuery(" + ".join(p.raw for p in parts), recorded)

    @staticmethod
    def ratio(top: PanelQuery, bottom: PanelQuery) -> PanelQuery:
        recorded = f"{top.recorded} / {bottom.recorded}" if top.recorded and bottom.recorded else ""
        return PanelQuery(f"{top.raw} / {bottom.raw}", recorded)

    def increase_buckets(self, histogram: str) -> PanelQuery:
        return PanelQuery("sum by ({by}) (increase(" + histogram + "_bucket{{{sel}}}[{window}]))")

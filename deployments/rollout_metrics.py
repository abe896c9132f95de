"""Rollout step durations for the portal's ``/metrics``, computed from PostgreSQL at scrape time.

Steps run in Celery workers, often in other pods than the web process that is scraped, and a
worker may be killed mid-step; a histogram kept in worker memory would need a shared
multiprocess directory and would lose what a killed worker observed. The rollout's events are
already durable, so the durations are derived from them: a state lasts from the first event
recorded in it to the first event of the rollout's next state. One aggregate query per scrape
(a window over the events table) returns a row per state; the buckets are cumulative over all
events, so the series behave as Prometheus counters (deleting a deployment deletes its events,
which rate() treats as a counter reset).
"""

from __future__ import annotations

from collections.abc import Iterable

from django.db import DatabaseError, connection
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector

from deployments.models import RolloutEvent

BUCKETS_SECONDS = (1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)


def _query() -> str:
    table = connection.ops.quote_name(RolloutEvent._meta.db_table)
    bucket_counts = ", ".join(
        f"count(*) FILTER (WHERE seconds <= {le!r})" for le in BUCKETS_SECONDS
    )
    # WHERE runs before the window functions: LEAD sees only the rows where the state changed.
    return f"""
        WITH marked AS (
            SELECT rollout_id, state, at, id,
                   LAG(state) OVER (PARTITION BY rollout_id ORDER BY at, id) AS previous
            FROM {table}
        ), entered AS (
            SELECT state,
                   EXTRACT(EPOCH FROM
                       LEAD(at) OVER (PARTITION BY rollout_id ORDER BY at, id) - at
                   ) AS seconds
            FROM marked
            WHERE previous IS DISTINCT FROM state
        )
        SELECT state, count(*), coalesce(sum(seconds), 0), {bucket_counts}
        FROM entered
        WHERE seconds IS NOT NULL
        GROUP BY state
        ORDER BY state
    """  # noqa: S608 - the table name comes from the model, the bounds are constants


class RolloutStepCollector(Collector):
    def _family(self) -> HistogramMetricFamily:
        return HistogramMetricFamily(
            "portal_rollout_step_duration_seconds",
            "Time rollouts spent in each state before moving to the next (from rollout events).",
            labels=("state",),
        )

    def describe(self) -> Iterable[HistogramMetricFamily]:
        # Without it, registering would call collect() and query the database at start-up.
        yield self._family()

    def collect(self) -> Iterable[HistogramMetricFamily]:
        try:
            with connection.cursor() as cursor:
                cursor.execute(_query())
                rows = cursor.fetchall()
        except DatabaseError:
            return  # no series rather than a wrong one; the scrape itself still answers
        family = self._family()
        for state, count, total, *cumulative in rows:
            buckets = [(repr(le), n) for le, n in zip(BUCKETS_SECONDS, cumulative, strict=True)]
            family.add_metric((state,), [*buckets, ("+Inf", count)], float(total))
        yield family

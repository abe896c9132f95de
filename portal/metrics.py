"""The portal web process' own Prometheus metrics, served on ``/metrics``.

What is here: request latency by route name and status class, and the Celery queue's length
(read from the broker at scrape time). Other apps add theirs to the same default registry:
``portal.kube`` (Kubernetes API errors), ``models_registry.hub`` (Hub errors) and
``deployments.rollout_metrics`` (rollout step durations, from PostgreSQL at scrape time).

No series carries a tenant, deployment or user: labels are route names, HTTP methods, status
classes, rollout states and error kinds, so ``/metrics`` needs no login and reveals no tenant
data. It should still be reachable only by Prometheus (docs/operations.md: keep it off the
ingress). It is answered before Django's host check: Prometheus scrapes a pod by its IP, which
no ALLOWED_HOSTS lists, and this response builds no URL from the Host header.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

import redis
from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseBase, HttpResponseNotAllowed
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

METRICS_PATH = "/metrics"
# Requests no route matched are one series, not one per URL a scanner tries.
UNMATCHED_ROUTE = "<unmatched>"
# kombu's Redis transport keeps a queue's messages in a list named after the queue, and one
# list per extra priority step: the queue name + "\x06\x16" + the step (kombu/transport/redis.py,
# Channel._q_for_pri; steps 0, 3, 6, 9 by default; 0 is the bare name).
PRIORITY_SEPARATOR = "\x06\x16"
PRIORITY_STEPS = (0, 3, 6, 9)
BROKER_TIMEOUT_SECONDS = 0.5
# Any other method string a client sends is one series, not one per string.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

REQUEST_DURATION = Histogram(
    "portal_http_request_duration_seconds",
    "Time the portal web process took to answer a request, by route name and status class.",
    ("view", "method", "status"),
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)


def _route_name(request: HttpRequest) -> str:
    match = getattr(request, "resolver_match", None)
    if match is None:
        return UNMATCHED_ROUTE
    return match.view_name or match.route or UNMATCHED_ROUTE


def _queue_keys(queue: str) -> list[str]:
    return [queue if step == 0 else f"{queue}{PRIORITY_SEPARATOR}{step}" for step in PRIORITY_STEPS]


class CeleryQueueCollector(Collector):
    """Messages waiting in the Celery queue, counted in Redis at scrape time (a few LLENs).

    A broker that does not answer leaves the series out rather than reporting 0, so an alert on
    a long queue is not silenced by an outage.
    """

    def __init__(self, broker_url: str, queue: str) -> None:
        self.broker_url = broker_url
        self.queue = queue

    def _family(self) -> GaugeMetricFamily:
        return GaugeMetricFamily(
            "portal_celery_queue_length",
            "Messages waiting in the Celery broker's queue (not yet taken by a worker).",
            labels=("queue",),
        )

    def describe(self) -> Iterable[GaugeMetricFamily]:
        # Without it, registering would call collect() and reach Redis at start-up.
        yield self._family()

    def collect(self) -> Iterable[GaugeMetricFamily]:
        family = self._family()
        client = redis.Redis.from_url(
            self.broker_url,
            socket_timeout=BROKER_TIMEOUT_SECONDS,
            socket_connect_timeout=BROKER_TIMEOUT_SECONDS,
        )
        try:
            with client.pipeline(transaction=False) as pipe:
                for key in _queue_keys(self.queue):
                    pipe.llen(key)
                lengths = pipe.execute()
        except redis.RedisError:
            return
        finally:
            client.close()
        family.add_metric((self.queue,), float(sum(lengths)))
        yield family


class QuietScrapes(logging.Filter):
    """Drops runserver's line for each successful scrape: devstack scrapes every 2 s, and the
    `./dev up` log is for what people do. Failed scrapes are still logged."""

    def filter(self, record: logging.LogRecord) -> bool:
        status = getattr(record, "status_code", None)
        scrape = record.getMessage().startswith(f'"GET {METRICS_PATH} ')
        return not (scrape and isinstance(status, int) and status < 400)


def register_collectors() -> None:
    """Called once by PortalConfig.ready(): settings are read, not frozen at import."""
    REGISTRY.register(
        CeleryQueueCollector(settings.CELERY_BROKER_URL, settings.CELERY_TASK_DEFAULT_QUEUE)
    )
    logging.getLogger("django.server").addFilter(QuietScrapes())


class MetricsMiddleware:
    """Times every request and answers GET /metrics (first in MIDDLEWARE, see the module)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        if request.path == METRICS_PATH:
            if request.method not in ("GET", "HEAD"):
                return HttpResponseNotAllowed(["GET", "HEAD"])
            return HttpResponse(generate_latest(REGISTRY), content_type=CONTENT_TYPE_LATEST)
        started = time.perf_counter()
        response = self.get_response(request)
        REQUEST_DURATION.labels(
            view=_route_name(request),
            method=request.method if request.method in KNOWN_METHODS else "other",
            status=f"{response.status_code // 100}xx",
        ).observe(time.perf_counter() - started)
        return response

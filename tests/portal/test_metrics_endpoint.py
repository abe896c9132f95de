"""The portal web process' own /metrics: what it exposes, to whom, and that it moves."""

from __future__ import annotations

import logging
import re
import socket
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone
from kubernetes.client.exceptions import ApiException
from prometheus_client import REGISTRY

from deployments.choices import RolloutState
from deployments.models import RolloutEvent
from models_registry.hub import HubClient, HubUnavailable
from portal import kube
from portal.metrics import CeleryQueueCollector
from tests.deployments.test_api import a_rollout
from tests.fixtures.personas import World

SERIES = (
    "portal_http_request_duration_seconds",
    "portal_celery_queue_length",
    "portal_rollout_step_duration_seconds",
    "portal_kubernetes_api_errors_total",
    "portal_hub_errors_total",
)


@pytest.mark.django_db
def test_metrics_answers_prometheus_text_without_login(client: Client) -> None:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    text = response.content.decode()
    for name in SERIES:
        assert f"# TYPE {name}" in text or f"# HELP {name}" in text, name


@pytest.mark.django_db
def test_metrics_answers_a_scrape_by_pod_ip(client: Client) -> None:
    """Prometheus names the pod by its IP, which ALLOWED_HOSTS does not list."""
    assert client.get("/metrics", HTTP_HOST="10.244.1.7:8000").status_code == 200
    assert client.get("/healthz", HTTP_HOST="10.244.1.7:8000").status_code == 400


@pytest.mark.django_db
def test_metrics_refuses_writes(client: Client) -> None:
    assert client.post("/metrics").status_code == 405


def _requests(view: str, status: str) -> float:
    labels = {"view": view, "method": "GET", "status": status}
    return REGISTRY.get_sample_value("portal_http_request_duration_seconds_count", labels) or 0.0


@pytest.mark.django_db
def test_a_request_is_timed_by_route_name_and_status_class(client: Client) -> None:
    before = _requests("healthz", "2xx")
    client.get("/healthz")
    assert _requests("healthz", "2xx") == before + 1
    assert 'view="healthz"' in client.get("/metrics").content.decode()


@pytest.mark.django_db
def test_unknown_urls_share_one_series(client: Client) -> None:
    before = _requests("<unmatched>", "4xx")
    client.get("/no/such/page-1")
    client.get("/no/such/page-2")
    assert _requests("<unmatched>", "4xx") == before + 2
    assert "page-1" not in client.get("/metrics").content.decode()


def test_celery_queue_length_counts_waiting_messages(settings) -> None:
    import redis

    queue = "metrics-test-queue"
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    broker.delete(queue, f"{queue}\x06\x163")
    try:
        broker.rpush(queue, "a", "b")
        broker.rpush(f"{queue}\x06\x163", "c")  # a message of a higher priority step
        (family,) = CeleryQueueCollector(settings.CELERY_BROKER_URL, queue).collect()
        assert [(s.labels, s.value) for s in family.samples] == [({"queue": queue}, 3.0)]
    finally:
        broker.delete(queue, f"{queue}\x06\x163")


def test_celery_queue_length_is_absent_when_the_broker_is_down() -> None:
    collector = CeleryQueueCollector("redis://127.0.0.1:1/0", "portal")
    assert list(collector.collect()) == []


@pytest.mark.django_db
def test_kubernetes_api_errors_are_counted_by_status(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise ApiException(status=403, reason="Forbidden")

    monkeypatch.setattr(kube, "_dynamic", refuse)
    labels = {"status": "403"}
    before = REGISTRY.get_sample_value("portal_kubernetes_api_errors_total", labels) or 0.0
    with pytest.raises(kube.ClusterUnavailable):
        kube.get("v1", "ConfigMap", "x", "ns")
    assert REGISTRY.get_sample_value("portal_kubernetes_api_errors_total", labels) == before + 1


@pytest.mark.django_db
def test_hub_errors_are_counted_by_kind(settings) -> None:
    with socket.socket() as s:  # a port nothing listens on once closed
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    settings.HF_ENDPOINT = f"http://127.0.0.1:{port}"
    labels = {"error": "HubUnavailable"}
    before = REGISTRY.get_sample_value("portal_hub_errors_total", labels) or 0.0
    with pytest.raises(HubUnavailable):
        HubClient().model_info("org/model", "main")
    assert REGISTRY.get_sample_value("portal_hub_errors_total", labels) == before + 1


def _step_buckets(state: str) -> dict[str, float]:
    text = Client().get("/metrics").content.decode()
    bucket = re.compile(
        rf'^portal_rollout_step_duration_seconds_bucket{{le="([^"]+)",state="{state}"}} (\S+)$'
    )
    return {m[1]: float(m[2]) for line in text.splitlines() if (m := bucket.match(line))}


def test_rollout_step_durations_come_from_the_events(world: World) -> None:
    rollout = a_rollout(world.objects["deployment_a"], state=RolloutState.WAITING_READY)
    start = timezone.now() - timedelta(minutes=10)
    # pending 2 s, weights 40 s, creating 3 s (two events), then waiting_ready (not finished)
    offsets = [0, 2, 42, 43, 45]
    states = [RolloutState.PENDING, RolloutState.WEIGHTS, RolloutState.CREATING]
    events = list(RolloutEvent.objects.filter(rollout=rollout).order_by("at", "id"))
    extra = RolloutEvent.objects.create(
        rollout=rollout, actor_name="w", state=RolloutState.CREATING, message="still creating"
    )
    ordered = [*events[:3], extra, events[3]]
    for event, offset in zip(ordered, offsets, strict=True):
        RolloutEvent.objects.filter(pk=event.pk).update(at=start + timedelta(seconds=offset))
    assert [e.state for e in ordered[:3]] == states

    weights = _step_buckets(RolloutState.WEIGHTS)
    assert weights["30.0"] == 0 and weights["60.0"] == 1 and weights["+Inf"] == 1
    assert _step_buckets(RolloutState.CREATING)["5.0"] == 1
    assert _step_buckets(RolloutState.PENDING)["5.0"] == 1
    assert _step_buckets(RolloutState.WAITING_READY) == {}  # still in it: no duration yet


def _runserver_line(request_line: str, status: int) -> logging.LogRecord:
    record = logging.LogRecord(
        "django.server",
        logging.INFO,
        __file__,
        0,
        '"%s" %s %s',
        (request_line, str(status), "9"),
        None,
    )
    record.status_code = status
    return record


def test_runserver_logs_failed_scrapes_and_pages_but_not_successful_scrapes() -> None:
    """devstack scrapes every 2 s; the `./dev up` log keeps what people do."""
    server = logging.getLogger("django.server")
    assert not server.filter(_runserver_line("GET /metrics HTTP/1.1", 200))
    assert server.filter(_runserver_line("GET /metrics HTTP/1.1", 500))
    assert server.filter(_runserver_line("GET /healthz HTTP/1.1", 200))

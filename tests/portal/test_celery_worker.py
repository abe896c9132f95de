"""Tasks travel through Redis to a real worker process, which writes to PostgreSQL."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.utils import timezone

from tenants import services
from tenants.audit import Actor
from tenants.choices import Channel
from tenants.models import ApiToken, AuditEvent
from tenants.tasks import sweep_expired_api_tokens
from tests.factories import UserFactory
from tests.fixtures.worker import WorkerProcess, wait_until


@pytest.mark.worker
def test_task_sent_through_redis_is_run_by_the_worker(celery_worker_process: WorkerProcess) -> None:
    assert settings.CELERY_TASK_ALWAYS_EAGER is False
    assert str(settings.CELERY_BROKER_URL).startswith("redis://")
    admin: Any = UserFactory(username="root", is_staff=True)
    actor = Actor(user=admin, channel=Channel.CLI)
    tenant = services.create_tenant(actor, name="W", slug="w", namespace="tenant-w")
    services.add_member(actor, tenant, username="root", role="owner")
    issued = services.issue_api_token(actor, tenant, user=admin, name="old", role="viewer")
    ApiToken.objects.filter(pk=issued.token.pk).update(
        expires_at=timezone.now() - timedelta(minutes=1)
    )

    sweep_expired_api_tokens.apply_async(queue=celery_worker_process.queue)

    event = wait_until(
        lambda: AuditEvent.objects.filter(
            action="api_token.expire", target_id=str(issued.token.pk)
        ).first(),
        timeout=30,
        describe=f"the worker's audit event; worker log:\n{celery_worker_process.log()}",
    )
    assert event.channel == "task"
    assert event.actor_name == "tenants.sweep_expired_api_tokens"
    assert "Task tenants.tasks.sweep_expired_api_tokens[" in celery_worker_process.log()

    # Idempotent: running it again records nothing new.
    sweep_expired_api_tokens.apply_async(queue=celery_worker_process.queue)
    wait_until(
        lambda: celery_worker_process.log().count("succeeded") >= 2,
        timeout=30,
        describe="the second run to finish",
    )
    assert AuditEvent.objects.filter(action="api_token.expire").count() == 1

"""Recording audit events. Every domain write calls `record` inside its own transaction."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import AbstractBaseUser
from django.db import models

from tenants.choices import Channel
from tenants.models import AuditEvent, Tenant


@dataclass(frozen=True)
class Actor:
    """Who performs a write: a user (through the UI, API or admin) or a named background task."""

    user: AbstractBaseUser | None
    channel: str
    task_name: str = ""

    @classmethod
    def system(cls, task_name: str) -> Actor:
        return cls(user=None, channel=Channel.TASK, task_name=task_name)

    @property
    def name(self) -> str:
        if self.user is not None:
            return self.user.get_username()
        return self.task_name or "system"

    @property
    def user_or_none(self) -> Any:
        return self.user if self.user is not None and self.user.is_authenticated else None


def record(
    actor: Actor,
    action: str,
    target: models.Model,
    *,
    tenant: Tenant | None,
    changes: dict[str, Any] | None = None,
) -> AuditEvent:
    return AuditEvent.objects.create(
        tenant=tenant,
        tenant_slug=tenant.slug if tenant else "",
        actor=actor.user_or_none,
        actor_name=actor.name,
        channel=actor.channel,
        action=action,
        target_type=target._meta.label_lower,
        target_id=str(target.pk or ""),
        target_repr=str(target)[:200],
        changes=changes or {},
    )


def diff(before: dict[str, Any], after: dict[str, Any]) -> dict[str, list[Any]]:
    """{field: [old, new]} for the fields whose values differ, JSON-friendly."""
    return {
        field: [_jsonable(before.get(field)), _jsonable(value)]
        for field, value in after.items()
        if before.get(field) != value
    }


def _jsonable(value: Any) -> Any:
    if isinstance(value, int | float | str | bool | type(None)):
        return value
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    return str(value)

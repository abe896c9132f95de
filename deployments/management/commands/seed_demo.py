"""Seed a demo: a platform admin, two tenants with members and quotas, and the default tiers
(idempotent). In deployments, since the tiers are its own and tenants may not import it."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from deployments.services import ensure_default_tiers
from tenants import services
from tenants.audit import Actor
from tenants.choices import Channel
from tenants.models import Membership, Tenant

DEMO_PASSWORD = "portal-demo"  # noqa: S105 - documented demo credential for the local stack

TENANTS: list[dict[str, Any]] = [
    {
        "name": "Search Platform",
        "slug": "search",
        "namespace": "tenant-search",
        "quota": {"max_gpus": 16, "max_deployments": 6, "allowed_tiers": ["l4", "a100-80g"]},
        "members": [("alice", "owner"), ("bob", "maintainer"), ("carol", "viewer")],
    },
    {
        "name": "Assistants",
        "slug": "assistants",
        "namespace": "tenant-assistants",
        "quota": {"max_gpus": 8, "max_deployments": 4, "allowed_tiers": ["l4"]},
        "members": [("dave", "owner"), ("bob", "viewer")],
    },
]


class Command(BaseCommand):
    help = "Create the demo admin, users and two tenants if they do not exist yet."

    @transaction.atomic
    def handle(self, *args: Any, **options: Any) -> None:
        users = get_user_model()
        admin, created = users.objects.get_or_create(
            username="admin", defaults={"is_staff": True, "is_superuser": True}
        )
        if created:
            admin.set_password(DEMO_PASSWORD)
            admin.save()
        actor = Actor(user=admin, channel=Channel.CLI)
        ensure_default_tiers()
        for spec in TENANTS:
            tenant = Tenant.objects.filter(slug=spec["slug"]).first()
            if tenant is None:
                tenant = services.create_tenant(
                    actor,
                    name=spec["name"],
                    slug=spec["slug"],
                    namespace=spec["namespace"],
                    quota=spec["quota"],
                )
            for username, role in spec["members"]:
                user, created = users.objects.get_or_create(username=username)
                if created:
                    user.set_password(DEMO_PASSWORD)
                    user.save()
                if not Membership.objects.filter(tenant=tenant, user=user).exists():
                    services.add_member(actor, tenant, username=username, role=role)
        self.stdout.write(
            f"demo ready: log in as admin (platform admin) or alice/bob/carol/dave, "
            f"password '{DEMO_PASSWORD}'"
        )

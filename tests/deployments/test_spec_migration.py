"""The engine migration: a tier keeps offering the TGI image its admin pinned."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = [("deployments", "0003_guardrails_and_replica_history")]
AFTER = [("deployments", "0004_engine_per_revision")]
PINNED = "ghcr.io/huggingface/text-generation-inference:3.3.4"


@pytest.mark.django_db(transaction=True)
def test_an_existing_tier_offers_its_pinned_tgi_image_and_nothing_else() -> None:
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    old_tier = executor.loader.project_state(BEFORE).apps.get_model("deployments", "Tier")
    old_tier.objects.create(
        slug="l4-old",
        name="L4",
        node_pool="l4",
        gpu_product="NVIDIA-L4",
        gpu_memory_gb=Decimal("24"),
        tgi_image=PINNED,
    )

    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(AFTER)
    new_tier = executor.loader.project_state(AFTER).apps.get_model("deployments", "Tier")
    assert new_tier.objects.get(slug="l4-old").engine_images == {"tgi": PINNED}

    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())

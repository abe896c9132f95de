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


@pytest.mark.django_db(transaction=True)
def test_an_existing_tier_keeps_selecting_the_nodes_of_its_pool() -> None:
    """Tiers now select nodes by labels alone; one made when a pool name was a field of its
    own keeps that pool's label in its selector, so its pods stay where they are."""
    before = [("deployments", "0006_deletion_progress")]
    after = [("deployments", "0007_tier_selects_nodes_by_labels")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    old_tier = executor.loader.project_state(before).apps.get_model("deployments", "Tier")
    old_tier.objects.create(
        slug="a100-old",
        name="A100",
        node_pool="a100-80g",
        node_selector={"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"},
        gpu_product="NVIDIA-A100-SXM4-80GB",
        gpu_memory_gb=Decimal("80"),
    )

    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(after)
    new_tier = executor.loader.project_state(after).apps.get_model("deployments", "Tier")
    assert new_tier.objects.get(slug="a100-old").node_selector == {
        "inference.portal/pool": "a100-80g",
        "nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB",
    }

    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(executor.loader.graph.leaf_nodes())

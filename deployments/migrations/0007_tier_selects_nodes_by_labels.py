"""Tiers select their nodes by node labels alone: the pool name moves into the selector.

An existing tier keeps selecting exactly the nodes it selected (its pool label joins its
selector, as the spec builder merged them before), so nothing already deployed moves.
"""

from django.db import migrations, models

OLD_POOL_LABEL = "inference.portal/pool"


def pool_into_selector(apps, schema_editor):
    Tier = apps.get_model("deployments", "Tier")
    for tier in Tier.objects.all():
        if tier.node_pool:
            tier.node_selector = {OLD_POOL_LABEL: tier.node_pool, **(tier.node_selector or {})}
            tier.save(update_fields=["node_selector"])


def selector_into_pool(apps, schema_editor):
    Tier = apps.get_model("deployments", "Tier")
    for tier in Tier.objects.all():
        selector = dict(tier.node_selector or {})
        tier.node_pool = selector.pop(OLD_POOL_LABEL, "")
        tier.node_selector = selector
        tier.save(update_fields=["node_pool", "node_selector"])


class Migration(migrations.Migration):
    dependencies = [("deployments", "0006_deletion_progress")]

    operations = [
        migrations.RunPython(pool_into_selector, selector_into_pool),
        migrations.RemoveField(model_name="tier", name="node_pool"),
        migrations.AlterField(
            model_name="tier",
            name="node_selector",
            field=models.JSONField(
                default=dict,
                help_text="Node labels the tier's GPU nodes carry, as GPU feature discovery and "
                'the cloud set them, e.g. {"nvidia.com/gpu.product": "NVIDIA-L4"} or '
                '{"cloud.google.com/gke-nodepool": "l4-pool"}. Capacity counts the nodes it '
                "matches.",
            ),
        ),
    ]

"""Engines per revision: a tier offers images per engine, a revision pins its engine and image."""

from typing import Any

from django.db import migrations, models

import deployments.models
import engines.registry


def images_from_tgi_image(apps: Any, schema_editor: Any) -> None:
    """Existing tiers keep offering what they offered (TGI at their image); existing revisions
    keep running the image their tier had."""
    Tier = apps.get_model("deployments", "Tier")
    DeploymentRevision = apps.get_model("deployments", "DeploymentRevision")
    for tier in Tier.objects.all():
        tier.engine_images = {"tgi": tier.tgi_image}
        tier.save(update_fields=["engine_images"])
        DeploymentRevision.objects.filter(tier=tier).update(engine="tgi", image=tier.tgi_image)


def tgi_image_from_images(apps: Any, schema_editor: Any) -> None:
    Tier = apps.get_model("deployments", "Tier")
    for tier in Tier.objects.all():
        image = (tier.engine_images or {}).get("tgi")
        if image:
            tier.tgi_image = image
            tier.save(update_fields=["tgi_image"])


class Migration(migrations.Migration):
    dependencies = [
        ("deployments", "0003_guardrails_and_replica_history"),
    ]

    operations = [
        migrations.AddField(
            model_name="tier",
            name="engine_images",
            field=models.JSONField(
                blank=True,
                default=deployments.models.default_engine_images,
                help_text='The engines this tier offers and the image of each, e.g. {"vllm": '
                '"vllm/vllm-openai:v0.11.0"}.',
            ),
        ),
        migrations.AddField(
            model_name="deploymentrevision",
            name="engine",
            field=models.CharField(
                choices=engines.registry.engine_choices, default="tgi", max_length=32
            ),
        ),
        migrations.AddField(
            model_name="deploymentrevision",
            name="image",
            field=models.CharField(
                default="",
                help_text="The engine image, resolved from the tier when admitted.",
                max_length=200,
            ),
            preserve_default=False,
        ),
        migrations.RunPython(images_from_tgi_image, tgi_image_from_images),
        migrations.RemoveField(model_name="tier", name="tgi_image"),
    ]

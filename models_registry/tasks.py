"""Celery tasks of the model registry: thin wrappers over services."""

from celery import shared_task

from models_registry import services


@shared_task(name="models_registry.tasks.recheck_gated_access")
def recheck_gated_access() -> dict[str, int]:
    """Nightly: flag registered gated models the tenant's Hub token can no longer reach."""
    return services.recheck_gated_access()

"""Celery tasks of the tenants app: thin wrappers over services."""

from celery import shared_task

from tenants import services


@shared_task(name="tenants.tasks.sweep_expired_api_tokens")
def sweep_expired_api_tokens() -> int:
    """Write the expiry of each newly expired API token to the audit log (idempotent)."""
    return services.sweep_expired_api_tokens()

from django.apps import AppConfig


class UsageConfig(AppConfig):
    """Read models across apps: a tenant's dashboard, its quota and gateway usage."""

    name = "usage"
    verbose_name = "Usage"
    default_auto_field = "django.db.models.BigAutoField"

from django.apps import AppConfig

from portal import metrics


class PortalConfig(AppConfig):
    name = "portal"
    verbose_name = "Portal"

    def ready(self) -> None:
        metrics.register_collectors()

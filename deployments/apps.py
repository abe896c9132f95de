from django.apps import AppConfig
from prometheus_client import REGISTRY


class DeploymentsConfig(AppConfig):
    name = "deployments"
    verbose_name = "Deployments"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Imported here because models load only once the app registry is ready (Django's
        # rule for ready()), not to dodge a cycle: deployments may import the registry.
        from deployments.admission import active_tier_capacities
        from deployments.rollout_metrics import RolloutStepCollector
        from models_registry import services as registry

        # The registry's fit table lists the tiers, which are ours; it may not import us.
        registry.offer_tier_capacities(active_tier_capacities)
        REGISTRY.register(RolloutStepCollector())

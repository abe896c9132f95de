"""TGI deployments (the rollouts issue adds tiers, revisions and the rollout state machine)."""

from django.db import models

from portal.tenancy import TenantOwnedModel
from tenants.validators import validate_dns1123_label


class Deployment(TenantOwnedModel):
    """A named TGI service of one tenant, serving one registered model on one tier."""

    name = models.CharField(max_length=63, validators=[validate_dns1123_label])
    model = models.ForeignKey(
        "models_registry.RegisteredModel", on_delete=models.PROTECT, related_name="deployments"
    )
    replicas = models.PositiveIntegerField(default=1)
    gpus_per_replica = models.PositiveIntegerField(default=1)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("name",)
        constraints = [
            models.UniqueConstraint(
                fields=("tenant", "name"), name="one_deployment_name_per_tenant"
            )
        ]

    def __str__(self) -> str:
        return self.name

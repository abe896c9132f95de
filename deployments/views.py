"""Web UI of deployments (list only until the rollouts capability lands)."""

from django.db.models import QuerySet
from django.views.generic import ListView

from deployments.models import Deployment
from portal.views import TenantViewMixin


class DeploymentListView(TenantViewMixin, ListView):
    model = Deployment
    template_name = "deployments/deployment_list.html"
    context_object_name = "deployments"
    http_method_names = ["get"]

    def get_queryset(self) -> QuerySet[Deployment]:
        return super().get_queryset().select_related("model")

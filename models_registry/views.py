"""Web UI of the model registry (list only until the registry capability lands)."""

from django.views.generic import ListView

from models_registry.models import RegisteredModel
from portal.views import TenantViewMixin


class ModelListView(TenantViewMixin, ListView):
    model = RegisteredModel
    template_name = "models_registry/model_list.html"
    context_object_name = "models"
    http_method_names = ["get"]

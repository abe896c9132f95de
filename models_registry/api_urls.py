"""URL patterns of the model registry API (mounted under /api/v1/)."""

from django.urls import path

from models_registry import api

model_list = api.RegisteredModelViewSet.as_view({"get": "list", "post": "create"})
model_detail = api.RegisteredModelViewSet.as_view({"get": "retrieve", "delete": "destroy"})
model_update = api.RegisteredModelViewSet.as_view({"get": "update_preview", "post": "apply_update"})
model_fit = api.RegisteredModelViewSet.as_view({"get": "fit"})
model_ack = api.RegisteredModelViewSet.as_view({"post": "acknowledge_license"})
model_approve = api.RegisteredModelViewSet.as_view({"post": "approve_remote_code"})
hub_lookup = api.HubLookupViewSet.as_view({"get": "list"})
hub_token = api.HubTokenViewSet.as_view({"get": "retrieve", "put": "update", "delete": "destroy"})

prefix = "tenants/<slug:tenant_slug>/"
urlpatterns = [
    path(prefix + "models/", model_list, name="api-model-list"),
    path(prefix + "models/<int:pk>/", model_detail, name="api-model-detail"),
    path(prefix + "models/<int:pk>/update/", model_update, name="api-model-update"),
    path(prefix + "models/<int:pk>/fit/", model_fit, name="api-model-fit"),
    path(prefix + "models/<int:pk>/acknowledge-license/", model_ack, name="api-model-ack-license"),
    path(
        prefix + "models/<int:pk>/approve-remote-code/",
        model_approve,
        name="api-model-approve-code",
    ),
    path(prefix + "hub-lookup/", hub_lookup, name="api-hub-lookup"),
    path(prefix + "hub-token/", hub_token, name="api-hub-token"),
]

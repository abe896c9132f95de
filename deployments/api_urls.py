"""URL patterns of the deployments API (mounted under /api/v1/)."""

from django.urls import path

from deployments import api

tier_list = api.TierViewSet.as_view({"get": "list"})
node_pool_list = api.NodePoolViewSet.as_view({"get": "list"})
deployment_list = api.DeploymentViewSet.as_view({"get": "list", "post": "create"})
deployment_detail = api.DeploymentViewSet.as_view(
    {"get": "retrieve", "patch": "partial_update", "delete": "destroy"}
)
deployment_promote = api.DeploymentViewSet.as_view({"post": "promote"})
deployment_abort = api.DeploymentViewSet.as_view({"post": "abort"})
deployment_rollback = api.DeploymentViewSet.as_view({"post": "rollback"})
revision_list = api.RevisionViewSet.as_view({"get": "list"})
rollout_list = api.RolloutViewSet.as_view({"get": "list", "post": "create"})
rollout_detail = api.RolloutViewSet.as_view({"get": "retrieve"})

prefix = "tenants/<slug:tenant_slug>/deployments/"
one = prefix + "<int:pk>/"
child = prefix + "<int:deployment_pk>/"
urlpatterns = [
    path("tiers/", tier_list, name="api-tier-list"),
    path("node-pools/", node_pool_list, name="api-node-pool-list"),
    path(prefix, deployment_list, name="api-deployment-list"),
    path(one, deployment_detail, name="api-deployment-detail"),
    path(one + "promote/", deployment_promote, name="api-deployment-promote"),
    path(one + "abort/", deployment_abort, name="api-deployment-abort"),
    path(one + "rollback/", deployment_rollback, name="api-deployment-rollback"),
    path(child + "revisions/", revision_list, name="api-revision-list"),
    path(child + "rollouts/", rollout_list, name="api-rollout-list"),
    path(child + "rollouts/<int:pk>/", rollout_detail, name="api-rollout-detail"),
]

"""Web UI URL patterns of deployments."""

from django.urls import path

from deployments import metrics_views, views

prefix = "t/<slug:tenant_slug>/deployments/"
urlpatterns = [
    path(prefix, views.DeploymentListView.as_view(), name="deployment-list"),
    path(prefix + "new/", views.DeploymentCreateView.as_view(), name="deployment-create"),
    path(prefix + "<int:pk>/", views.DeploymentDetailView.as_view(), name="deployment-detail"),
    path(
        prefix + "<int:pk>/rollouts/<int:rollout_pk>/",
        views.RolloutView.as_view(),
        name="deployment-rollout",
    ),
    # Before the action pattern, which would otherwise take these as actions.
    path(
        prefix + "<int:pk>/revision/",
        views.DeploymentRevisionView.as_view(),
        name="deployment-revision",
    ),
    path(
        prefix + "<int:pk>/metrics/",
        metrics_views.DeploymentMetricsView.as_view(),
        name="deployment-metrics",
    ),
    path(
        prefix + "<int:pk>/<slug:action>/",
        views.DeploymentActionView.as_view(),
        name="deployment-action",
    ),
]

# Metrics, guardrail alerts and cost (deployments/metrics_views.py).
tenant_prefix = "t/<slug:tenant_slug>/"
urlpatterns += [
    path(
        tenant_prefix + "metrics/", metrics_views.TenantMetricsView.as_view(), name="tenant-metrics"
    ),
    path(tenant_prefix + "alerts/", metrics_views.TenantAlertsView.as_view(), name="tenant-alerts"),
    path(tenant_prefix + "cost/", metrics_views.TenantCostView.as_view(), name="tenant-cost"),
]

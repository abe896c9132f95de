"""Web UI URL patterns of deployments."""

from django.urls import path

from deployments import views

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
    path(
        prefix + "<int:pk>/<slug:action>/",
        views.DeploymentActionView.as_view(),
        name="deployment-action",
    ),
]

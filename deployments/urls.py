from django.urls import path

from deployments import views

urlpatterns = [
    path(
        "t/<slug:tenant_slug>/deployments/",
        views.DeploymentListView.as_view(),
        name="deployment-list",
    ),
]

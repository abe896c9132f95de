"""Web UI URL patterns of the usage pages (their names are the tenants app's, unchanged)."""

from django.urls import path

from usage import views

urlpatterns = [
    path("t/<slug:tenant_slug>/", views.TenantDashboardView.as_view(), name="tenant-dashboard"),
    path("t/<slug:tenant_slug>/gateway/", views.GatewayView.as_view(), name="tenant-gateway"),
    path(
        "t/<slug:tenant_slug>/gateway/keys/<int:pk>/limits/",
        views.GatewayKeyLimitsView.as_view(),
        name="tenant-gateway-key-limits",
    ),
    path(
        "t/<slug:tenant_slug>/gateway/keys/<int:pk>/revoke/",
        views.GatewayKeyRevokeView.as_view(),
        name="tenant-gateway-key-revoke",
    ),
]

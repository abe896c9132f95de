"""Web UI URL patterns of the tenants app."""

from django.urls import path

from tenants import views

urlpatterns = [
    path("", views.home, name="home"),
    path("tenants/", views.TenantListView.as_view(), name="tenant-list"),
    path("t/<slug:tenant_slug>/members/", views.MemberListView.as_view(), name="tenant-members"),
    path(
        "t/<slug:tenant_slug>/members/<int:pk>/",
        views.MemberChangeView.as_view(),
        name="tenant-member-change",
    ),
    path("t/<slug:tenant_slug>/tokens/", views.TokenListView.as_view(), name="tenant-tokens"),
    path(
        "t/<slug:tenant_slug>/tokens/<int:pk>/revoke/",
        views.TokenRevokeView.as_view(),
        name="tenant-token-revoke",
    ),
    path("t/<slug:tenant_slug>/audit/", views.AuditLogView.as_view(), name="tenant-audit"),
]

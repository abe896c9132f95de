"""URL patterns of the tenants API (mounted under /api/v1/)."""

from django.urls import path

from tenants import api

tenant_list = api.TenantViewSet.as_view({"get": "list", "post": "create"})
tenant_detail = api.TenantViewSet.as_view({"get": "retrieve", "patch": "partial_update"})
membership_list = api.MembershipViewSet.as_view({"get": "list", "post": "create"})
membership_detail = api.MembershipViewSet.as_view(
    {"get": "retrieve", "patch": "partial_update", "delete": "destroy"}
)
token_list = api.ApiTokenViewSet.as_view({"get": "list", "post": "create"})
token_detail = api.ApiTokenViewSet.as_view({"get": "retrieve", "delete": "destroy"})
gateway_key_list = api.GatewayKeyViewSet.as_view({"get": "list", "post": "create"})
gateway_key_detail = api.GatewayKeyViewSet.as_view(
    {"get": "retrieve", "patch": "partial_update", "delete": "destroy"}
)
quota_detail = api.QuotaViewSet.as_view({"get": "list", "put": "update", "patch": "partial_update"})
audit_list = api.AuditEventViewSet.as_view({"get": "list"})
me = api.MeViewSet.as_view({"get": "list"})

urlpatterns = [
    path("me/", me, name="api-me"),
    path("tenants/", tenant_list, name="api-tenant-list"),
    path("tenants/<slug:tenant_slug>/", tenant_detail, name="api-tenant-detail"),
    path("tenants/<slug:tenant_slug>/memberships/", membership_list, name="api-membership-list"),
    path(
        "tenants/<slug:tenant_slug>/memberships/<int:pk>/",
        membership_detail,
        name="api-membership-detail",
    ),
    path("tenants/<slug:tenant_slug>/tokens/", token_list, name="api-token-list"),
    path("tenants/<slug:tenant_slug>/tokens/<int:pk>/", token_detail, name="api-token-detail"),
    path("tenants/<slug:tenant_slug>/gateway-keys/", gateway_key_list, name="api-gateway-key-list"),
    path(
        "tenants/<slug:tenant_slug>/gateway-keys/<int:pk>/",
        gateway_key_detail,
        name="api-gateway-key-detail",
    ),
    path("tenants/<slug:tenant_slug>/quota/", quota_detail, name="api-quota"),
    path("tenants/<slug:tenant_slug>/audit-events/", audit_list, name="api-audit-list"),
]

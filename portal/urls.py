"""Top-level URL configuration: UI pages, the REST API under /api/v1/, the admin console."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from portal.views import healthz

admin.site.site_header = "Inference Portal — platform admin"
admin.site.site_title = "Inference Portal admin"
admin.site.index_title = "Tenants, memberships and quotas"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("healthz", healthz, name="healthz"),
    path(
        "login/",
        auth_views.LoginView.as_view(
            redirect_authenticated_user=True, http_method_names=["get", "post"]
        ),
        name="login",
    ),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("api/v1/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    # A page for people: signed-out visitors are sent to the login page, not given a 401.
    path(
        "api/v1/docs/",
        login_required(SpectacularSwaggerView.as_view(url_name="api-schema")),
        name="api-docs",
    ),
    path("api/v1/", include("tenants.api_urls")),
    path("api/v1/", include("models_registry.api_urls")),
    path("api/v1/", include("deployments.api_urls")),
    path("", include("tenants.urls")),
    path("", include("models_registry.urls")),
    path("", include("deployments.urls")),
    path("", include("usage.urls")),
]
handler404 = "portal.views.page_not_found"

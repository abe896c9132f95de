"""Pages that show a tenant's usage across apps: the dashboard (quota usage, recent events) and
the gateway page (keys with their limits, live usage against each limit, the last day's traffic).

Templates and URL names are the tenants app's (the pages were born there); the views live here
because they read deployments and the gateway, which the tenants app must not import.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.views.generic import TemplateView

from deployments.metrics import MetricsUnavailable
from deployments.models import Deployment
from portal.errors import DomainError
from portal.views import apply_domain_error, htmx_partial
from tenants import services
from tenants.forms import CreateGatewayKeyForm, GatewayKeyLimitsForm
from tenants.models import AuditEvent, GatewayKey, Membership
from tenants.scoping import TenantViewMixin
from tenants.views import ui_actor
from usage.queries import KeyTraffic, gateway_live_usage, gateway_traffic, quota_usage


class TenantDashboardView(TenantViewMixin, TemplateView):
    template_name = "tenants/dashboard.html"
    http_method_names = ["get"]

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context["usage"] = quota_usage(self.tenant)
        context["recent_events"] = AuditEvent.objects.for_tenant(self.tenant)[:8]
        context["member_count"] = Membership.objects.for_tenant(self.tenant).count()
        return context


class GatewayView(TenantViewMixin, TemplateView):
    """The tenant's OpenAI-compatible endpoint: its keys, limits and caps, live usage against
    each limit and the last day's traffic per key. Owners manage keys; members read."""

    template_name = "tenants/gateway.html"
    http_method_names = ["get", "post"]
    write_operation = "gateway_key.manage"

    def keys(self) -> list[GatewayKey]:
        return list(
            GatewayKey.objects.for_tenant(self.tenant)
            .select_related("created_by")
            .prefetch_related("deployments")
        )

    def deployment_names(self) -> list[str]:
        return list(
            Deployment.objects.for_tenant(self.tenant)
            .filter(deleting=False)
            .order_by("name")
            .values_list("name", flat=True)
        )

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        keys = self.keys()
        traffic: dict[tuple[str, str], KeyTraffic] = {}
        last_minute: dict[tuple[str, str], KeyTraffic] | None = None
        traffic_error = None
        try:
            windows = gateway_traffic(self.tenant, ("24h", "1m"))
            traffic, last_minute = windows["24h"], windows["1m"]
        except MetricsUnavailable as error:
            traffic_error = str(error)
        live = gateway_live_usage(self.tenant, [k for k in keys if not k.is_revoked], last_minute)
        per_key: dict[str, dict[str, float]] = {}
        for (prefix, _deployment), row in traffic.items():
            totals = per_key.setdefault(prefix, dict.fromkeys(("requests", "errors", "tokens"), 0))
            totals["requests"] += row.requests
            totals["errors"] += row.errors
            totals["tokens"] += row.prompt_tokens + row.completion_tokens
        for key in keys:
            key.live = live.keys.get(key.id)  # type: ignore[attr-defined]
            key.traffic = per_key.get(key.prefix)  # type: ignore[attr-defined]
            key.scope = sorted(d.name for d in key.deployments.all())  # type: ignore[attr-defined]
        context.update(
            keys=keys,
            live=live,
            limit_rows=[
                ("Requests per minute", live.tenant_rpm, "tenant-rpm"),
                ("Tokens per minute", live.tenant_tpm, "tenant-tpm"),
            ],
            traffic_error=traffic_error,
            quota=self.tenant.quota,
            gateway_url=settings.GATEWAY_PUBLIC_URL,
        )
        context.setdefault(
            "create_form", CreateGatewayKeyForm(deployment_names=self.deployment_names())
        )
        return context

    def render_panel(self, status: int = 200, **extra: Any) -> HttpResponse:
        context = self.get_context_data(**extra)
        template = self.template_name + ("#keys-panel" if htmx_partial(self.request) else "")
        response = self.response_class(self.request, template, context, status=status)
        response["Cache-Control"] = "no-store"  # may hold a fresh key
        return response

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        return self.render_panel()

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        form = CreateGatewayKeyForm(request.POST, deployment_names=self.deployment_names())
        if form.is_valid():
            try:
                issued = services.create_gateway_key(
                    ui_actor(request), self.tenant, **form.cleaned_data
                )
            except DomainError as error:
                apply_domain_error(form, error)
            else:
                return self.render_panel(status=201, issued=issued)
        return self.render_panel(status=422, create_form=form)


class GatewayKeyLimitsView(GatewayView):
    """An owner changes one key's limits (empty: the tenant's), within the tenant's ceiling."""

    http_method_names = ["post"]

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        key = get_object_or_404(GatewayKey.objects.for_tenant(self.tenant), pk=kwargs["pk"])
        form = GatewayKeyLimitsForm(request.POST)
        error = None
        if form.is_valid():
            try:
                services.update_gateway_key(ui_actor(request), key, form.cleaned_data)
            except DomainError as failure:
                error = f"{key.name}: {failure.field}: {failure.message}"
        else:
            error = f"{key.name}: " + "; ".join(
                f"{field}: {' '.join(str(m) for m in messages)}"
                for field, messages in form.errors.items()
            )
        if error is None and not htmx_partial(request):
            return HttpResponseRedirect(reverse("tenant-gateway", args=[self.tenant.slug]))
        return self.render_panel(status=422 if error else 200, limits_error=error)


class GatewayKeyRevokeView(GatewayView):
    http_method_names = ["post"]

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        key = get_object_or_404(GatewayKey.objects.for_tenant(self.tenant), pk=kwargs["pk"])
        services.revoke_gateway_key(ui_actor(request), key)
        if htmx_partial(request):
            return self.render_panel()
        return HttpResponseRedirect(reverse("tenant-gateway", args=[self.tenant.slug]))

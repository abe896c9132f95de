"""Web UI of metrics, guardrail alerts and cost: tenant pages and the deployment's panel.

Views are thin: they check the role (TenantViewMixin), validate query parameters with a form
and take their context from deployments.dashboards and deployments.cost. HTMX polls get the
live partial of the same template.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django import forms
from django.conf import settings
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.views.generic import DetailView, TemplateView

from deployments import cost, dashboards
from deployments.models import Deployment, Tier
from portal.views import htmx_partial
from tenants.scoping import TenantViewMixin

POLL_SECONDS = 5


class _LivePartialMixin:
    """Full page, or only ``partial`` when HTMX polls."""

    partial = "live"
    request: HttpRequest
    template_name: str

    def get_template_names(self) -> list[str]:
        suffix = f"#{self.partial}" if htmx_partial(self.request) else ""
        return [self.template_name + suffix]


class TenantMetricsView(_LivePartialMixin, TenantViewMixin, TemplateView):
    """Every deployment and colour of the tenant: live values, sparklines, alerts, usage."""

    template_name = "deployments/tenant_metrics.html"
    http_method_names = ["get"]

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context.update(dashboards.tenant_page(self.tenant), poll_seconds=POLL_SECONDS)
        return context


class TenantAlertsView(TenantViewMixin, TemplateView):
    """The tenant's guardrail alerts as a card (loaded into the dashboard by HTMX)."""

    template_name = "deployments/_alerts_card.html"
    http_method_names = ["get"]

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context.update(dashboards.tenant_alerts(self.tenant), poll_seconds=POLL_SECONDS * 2)
        return context


class DeploymentMetricsView(_LivePartialMixin, TenantViewMixin, DetailView):
    """A deployment's charts, alerts with remedies, input lengths and autoscaler."""

    model = Deployment
    template_name = "deployments/deployment_metrics.html"
    context_object_name = "deployment"
    http_method_names = ["get"]

    def get_queryset(self) -> QuerySet[Deployment]:
        return super().get_queryset().select_related("tenant", "tier", "active_revision__tier")

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context.update(dashboards.deployment_page(self.object), poll_seconds=POLL_SECONDS * 2)
        return context


class CostForm(forms.Form):
    """The cost page's window and the cloud API price to compare with."""

    days = forms.IntegerField(min_value=1, max_value=90, initial=30, required=False)
    api_input = forms.DecimalField(
        label="API price per million input tokens (USD)",
        min_value=Decimal(0),
        max_digits=10,
        decimal_places=4,
        required=False,
    )
    api_output = forms.DecimalField(
        label="API price per million output tokens (USD)",
        min_value=Decimal(0),
        max_digits=10,
        decimal_places=4,
        required=False,
    )

    def api_price(self) -> cost.ApiPrice:
        default = cost.ApiPrice.default()
        data = self.cleaned_data
        return cost.ApiPrice(
            data["api_input"] if data.get("api_input") is not None else default.input_per_million,
            data["api_output"]
            if data.get("api_output") is not None
            else default.output_per_million,
        )


class TenantCostView(TenantViewMixin, TemplateView):
    """GPU-hours, cost, tokens and cost per million tokens against a cloud API."""

    template_name = "deployments/tenant_cost.html"
    http_method_names = ["get"]

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        form = CostForm(
            request.GET
            or {
                "days": 30,
                "api_input": settings.COST_API_INPUT_PRICE_PER_MILLION,
                "api_output": settings.COST_API_OUTPUT_PRICE_PER_MILLION,
            }
        )
        context = self.get_context_data(form=form, **kwargs)
        if not form.is_valid():
            return self.render_to_response(context, status=422)
        start, end = cost.window_days(form.cleaned_data.get("days") or 30)
        report = cost.tenant_cost(self.tenant, start, end, form.api_price())
        tiers = {row.deployment.tier for row in report.rows}
        context.update(
            report=report,
            break_even=[
                (tier, report.break_even_tokens_per_gpu_hour(tier))
                for tier in sorted(tiers, key=lambda t: t.slug)
            ],
            tiers=Tier.objects.filter(is_active=True),
        )
        return self.render_to_response(context)

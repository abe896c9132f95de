"""Web UI of the tenants app: tenant list and switcher, members, tokens, audit log.

The dashboard and the gateway page show usage across apps: they are in usage.views."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.decorators import login_required
from django.contrib.auth.mixins import LoginRequiredMixin
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse
from django.views.decorators.http import require_GET
from django.views.generic import ListView

from portal.errors import DomainError, Forbidden
from portal.views import apply_domain_error, htmx_partial
from tenants import services
from tenants.audit import Actor
from tenants.choices import Channel, Role
from tenants.forms import AddMemberForm, ChangeRoleForm, CreateTokenForm
from tenants.models import ApiToken, AuditEvent, Membership, Tenant
from tenants.scoping import CURRENT_TENANT_SESSION_KEY, TenantViewMixin


def ui_actor(request: HttpRequest) -> Actor:
    return Actor(user=request.user, channel=Channel.UI)  # type: ignore[arg-type]


@require_GET
@login_required
def home(request: HttpRequest) -> HttpResponse:
    """Send the user to the tenant they used last, their only tenant, or the tenant list."""
    visible = Tenant.objects.visible_to(request.user)
    last = request.session.get(CURRENT_TENANT_SESSION_KEY)
    if last and visible.filter(slug=last).exists():
        return redirect("tenant-dashboard", tenant_slug=last)
    slugs = list(visible.values_list("slug", flat=True)[:2])
    if len(slugs) == 1:
        return redirect("tenant-dashboard", tenant_slug=slugs[0])
    return redirect("tenant-list")


class TenantListView(LoginRequiredMixin, ListView):
    """Every tenant the user belongs to (all of them for platform admins)."""

    template_name = "tenants/tenant_list.html"
    context_object_name = "tenants"
    http_method_names = ["get"]

    def get_queryset(self) -> QuerySet[Tenant]:
        return Tenant.objects.visible_to(self.request.user).select_related("quota")

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        user: Any = self.request.user
        roles = dict(Membership.objects.filter(user=user).values_list("tenant_id", "role"))
        for tenant in context["tenants"]:
            tenant.my_role = roles.get(tenant.pk)
        return context


class MemberListView(TenantViewMixin, ListView):
    """Members and roles; owners add, re-role and remove members here."""

    model = Membership
    template_name = "tenants/members.html"
    context_object_name = "memberships"
    write_operation = "member.manage"
    http_method_names = ["get", "post"]

    def get_queryset(self) -> QuerySet[Membership]:
        return super().get_queryset().select_related("user")

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context.setdefault("add_form", AddMemberForm())
        context["role_choices"] = Role.choices
        return context

    def render_members(self, status: int = 200, **extra: Any) -> HttpResponse:
        self.object_list = self.get_queryset()
        context = self.get_context_data(**extra)
        template = self.template_name + ("#members-panel" if htmx_partial(self.request) else "")
        return self.response_class(self.request, template, context, status=status)

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        form = AddMemberForm(request.POST)
        if form.is_valid():
            try:
                services.add_member(ui_actor(request), self.tenant, **form.cleaned_data)
            except DomainError as error:
                apply_domain_error(form, error)
        if form.errors:
            return self.render_members(status=422, add_form=form)
        if htmx_partial(request):
            return self.render_members()
        return HttpResponseRedirect(reverse("tenant-members", args=[self.tenant.slug]))


class MemberChangeView(MemberListView):
    """POST a new role for one member, or `remove=1` to take them out of the tenant."""

    http_method_names = ["post"]

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        membership = get_object_or_404(self.get_queryset(), pk=kwargs["pk"])
        error: str | None = None
        try:
            if request.POST.get("remove"):
                services.remove_member(ui_actor(request), membership)
            else:
                form = ChangeRoleForm(request.POST)
                if not form.is_valid():
                    raise DomainError(form.errors.as_text(), field="role")
                services.change_member_role(ui_actor(request), membership, **form.cleaned_data)
        except DomainError as domain_error:
            error = domain_error.message
        if error is None and not htmx_partial(request):
            return HttpResponseRedirect(reverse("tenant-members", args=[self.tenant.slug]))
        return self.render_members(status=422 if error else 200, member_error=error)


class TokenListView(TenantViewMixin, ListView):
    """API tokens; the secret of a new token is shown once, in the creation response."""

    model = ApiToken
    template_name = "tenants/tokens.html"
    context_object_name = "tokens"
    write_operation = "api_token.manage"
    http_method_names = ["get", "post"]

    def get_queryset(self) -> QuerySet[ApiToken]:
        tokens = super().get_queryset().select_related("user")
        if self.access.may("api_token.view_all"):
            return tokens
        return tokens.filter(user=self.request.user)

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context.setdefault("create_form", CreateTokenForm())
        return context

    def render_tokens(self, status: int = 200, **extra: Any) -> HttpResponse:
        self.object_list = self.get_queryset()
        context = self.get_context_data(**extra)
        template = self.template_name + ("#tokens-panel" if htmx_partial(self.request) else "")
        response = self.response_class(self.request, template, context, status=status)
        # A page holding a fresh secret must not be cached anywhere.
        response["Cache-Control"] = "no-store"
        return response

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        form = CreateTokenForm(request.POST)
        if form.is_valid():
            try:
                issued = services.issue_api_token(
                    ui_actor(request), self.tenant, user=request.user, **form.cleaned_data
                )
            except Forbidden as error:
                raise PermissionDenied(error.message) from None
            except DomainError as error:
                apply_domain_error(form, error)
            else:
                return self.render_tokens(status=201, issued=issued)
        return self.render_tokens(status=422, create_form=form)


class TokenRevokeView(TokenListView):
    http_method_names = ["post"]

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        token = get_object_or_404(self.get_queryset(), pk=kwargs["pk"])
        services.revoke_api_token(ui_actor(request), token)
        if htmx_partial(request):
            return self.render_tokens()
        return HttpResponseRedirect(reverse("tenant-tokens", args=[self.tenant.slug]))


class AuditLogView(TenantViewMixin, ListView):
    model = AuditEvent
    template_name = "tenants/audit.html"
    context_object_name = "events"
    paginate_by = 50
    http_method_names = ["get"]

    def get_queryset(self) -> QuerySet[AuditEvent]:
        events = super().get_queryset()
        action = self.request.GET.get("action", "").strip()
        return events.filter(action__startswith=action) if action else events

    def get_template_names(self) -> list[str]:
        suffix = "#audit-table" if htmx_partial(self.request) else ""
        return [self.template_name + suffix]

"""Web UI of deployments: the list, the deploy wizard, the deployment page with live rollouts.

Views check the role (TenantViewMixin), shape input with forms and call deployments.services;
a DomainError is shown on the field it names. HTMX requests get the page's partials.
"""

from __future__ import annotations

import logging
from typing import Any

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.views.generic import DetailView, ListView, TemplateView

from deployments import deletion, policy, services
from deployments.admission import deployment_gpus, deployments_gpus, gpu_budget, pool_room
from deployments.capacity import ClusterCapacity, pool_capacity
from deployments.choices import ACTIVE_STATES, STEP_ORDER, TERMINAL_STATES, RolloutState
from deployments.forms import DeploymentForm, RevisionForm, ServingForm, revision_changes
from deployments.models import Deployment, Rollout, Tier
from deployments.policy import Action
from deployments.reads import latest_rollouts, rollout_progress
from deployments.rendering.meta import service_host
from deployments.serializers import endpoint
from models_registry import fit
from models_registry import services as registry
from portal import kube
from portal.errors import DomainError, Forbidden
from portal.views import htmx_partial
from tenants.access import TenantAccess
from tenants.models import Tenant, TenantQuota
from tenants.scoping import TenantViewMixin
from tenants.views import ui_actor

log = logging.getLogger(__name__)


def _redirect(request: HttpRequest, url: str) -> HttpResponse:
    if htmx_partial(request):
        response = HttpResponse(status=204)
        response["HX-Location"] = url
        return response
    return HttpResponseRedirect(url)


def _htmx_target(request: HttpRequest) -> str | None:
    """The id of the element an HTMX fragment request targets (None for a page)."""
    htmx = getattr(request, "htmx", None)
    if not htmx_partial(request) or htmx is None:
        return None
    target = htmx.target
    return target if isinstance(target, str) else None


def _pools() -> tuple[ClusterCapacity | None, str]:
    try:
        return pool_capacity(), ""
    except kube.ClusterUnavailable as error:
        log.warning("node pool capacity unavailable: %s", error.message)
        return None, error.message


def serving_checks(
    tenant: Tenant, form: ServingForm, deployment: Deployment | None = None
) -> dict[str, Any]:
    """The live checks of a serving choice, shown by the deploy wizard and the new-revision
    form (of `deployment`) alike: blockers, the fit table, valid quantizations, and the
    review's quota and node pool numbers. A preview only: admission decides when Deploy is
    pressed, from the same figures (admission.gpu_budget and pool_room)."""
    quota = TenantQuota.objects.get(tenant=tenant)
    model = form.selected_model()
    tier = form.selected_tier()
    context: dict[str, Any] = {
        "model": model,
        "tier": tier,
        "allowed_tiers": quota.allowed_tiers,
        "quota": quota,
    }
    if model is not None and model.current_revision is not None:
        context["blockers"] = registry.deployment_blockers(model)
        context["quantizations"] = fit.valid_quantizations(
            model.current_revision.quantization_method
        )
        choice = fit.ServingChoice(
            quantize=form.raw("quantize") or None,
            dtype=form.raw("dtype") or None,
            kv_cache_dtype=form.raw("kv_cache_dtype") or None,
            max_total_tokens=form.number("max_total_tokens")
            or (tier.default_max_total_tokens if tier else 4096),
            concurrent_sequences=1,
        )
        try:
            rows, best = registry.fit_check(model.current_revision, choice)
        except DomainError as error:
            context["fit_error"] = error.message
        else:
            tiers = {t.slug: t for t in Tier.objects.filter(is_active=True)}
            context["fit_rows"] = [
                {
                    "row": row,
                    "tier": tiers[row.tier.slug],
                    "allowed": row.tier.slug in quota.allowed_tiers,
                    "best": row is best,
                }
                for row in rows
                if row.tier.slug in tiers
            ]
    context["review"] = review_figures(
        tenant, quota, deployment, tier, form.number("replicas") or 1
    )
    return context


def review_figures(
    tenant: Tenant,
    quota: TenantQuota,
    deployment: Deployment | None,
    tier: Tier | None,
    replicas: int,
) -> dict[str, Any]:
    """The review's quota and node pool figures, admission's own (for a new revision, the
    deployment's live side counts: it holds its GPUs beside the new side until promotion)."""
    budget = gpu_budget(tenant, quota, deployment, tier, replicas)
    figures: dict[str, Any] = {
        "in_use": budget.in_use,
        "max_gpus": budget.max_gpus,
        "replicas": replicas,
    }
    if tier is not None:
        figures.update(
            needed=budget.needed,
            after=budget.after,
            over_quota=budget.over_quota,
            percent=budget.percent,
        )
        pools, pool_error = _pools()
        if pools is None:
            figures["pool_error"] = pool_error
        else:
            room = pool_room(tier, replicas, pools)
            figures.update(pool=room.pool, pool_fits=room.replicas_that_fit, pool_short=room.short)
    return figures


def _apply_refusal(form: forms.Form, error: DomainError) -> None:
    """Show a refusal on the field it names, or above the form."""
    form.add_error(error.field if error.field in form.fields else None, error.message)


class DeploymentListView(TenantViewMixin, ListView):
    """Deployments with their model, tier, live side and the state of their latest rollout."""

    model = Deployment
    template_name = "deployments/deployment_list.html"
    context_object_name = "deployments"
    http_method_names = ["get"]

    def get_queryset(self) -> QuerySet[Deployment]:
        return super().get_queryset().select_related("model", "tier", "active_revision__tier")

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        deployments = list(context["deployments"])
        rollouts = latest_rollouts(deployments)
        gpus = deployments_gpus(deployments)
        for deployment in deployments:
            deployment.latest_rollout = rollouts.get(deployment.pk)
            deployment.gpus = gpus[deployment.pk]
        context["deployments"] = deployments
        # The table polls while a deletion runs, until the deployment has left it.
        context["deleting"] = any(d.deleting for d in deployments)
        return context

    def get_template_names(self) -> list[str]:
        table = _htmx_target(self.request) == "deployments-table"
        return [self.template_name + ("#deployments-table" if table else "")]


class DeploymentCreateView(TenantViewMixin, TemplateView):
    """The deploy wizard. GET (also HTMX on every change) previews; POST deploys."""

    template_name = "deployments/deployment_new.html"
    read_operation = write_operation = "deployment.create"
    http_method_names = ["get", "post"]

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        form = kwargs.get("form") or DeploymentForm(
            initial=self.request.GET.dict(), tenant=self.tenant
        )
        models = list(form.fields["model"].queryset)  # type: ignore[union-attr]
        context["form"] = form
        context["models"] = [(m, registry.deployment_blockers(m)) for m in models]
        context.update(serving_checks(self.tenant, form))
        return context

    def get_template_names(self) -> list[str]:
        suffix = "#wizard" if htmx_partial(self.request) else ""
        return [self.template_name + suffix]

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        form = DeploymentForm(request.POST, tenant=self.tenant)
        if form.is_valid():
            try:
                deployment, _rollout, warnings = services.create_deployment(
                    ui_actor(request),
                    self.tenant,
                    name=form.cleaned_data["name"],
                    request=form.serving_request(),
                    promotion=form.promotion_choice(),
                )
            except Forbidden as error:
                raise PermissionDenied(error.message) from None
            except DomainError as error:
                _apply_refusal(form, error)
            else:
                for warning in warnings:
                    messages.warning(request, warning)
                url = reverse("deployment-detail", args=[self.tenant.slug, deployment.pk])
                return _redirect(request, url)
        context = self.get_context_data(form=form)
        return self.render_to_response(context, status=422)


class DeploymentDetailView(TenantViewMixin, DetailView):
    """The deployment: active spec, endpoint, the rollout (polled while active), revisions."""

    model = Deployment
    template_name = "deployments/deployment_detail.html"
    context_object_name = "deployment"
    http_method_names = ["get"]

    def get_queryset(self) -> QuerySet[Deployment]:
        return (
            super()
            .get_queryset()
            .select_related(
                "tenant",
                "model",
                "tier",
                "active_revision__tier",
                "active_revision__model_revision",
            )
        )

    def get_rollout(self, deployment: Deployment) -> Rollout | None:
        return deployment.rollouts.select_related("revision", "previous_revision").first()

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        deployment: Deployment = self.object
        rollout = self.get_rollout(deployment)
        running = policy.rollout_running(deployment)
        context.update(
            revision=deployment.active_revision,
            endpoint=endpoint(deployment),
            preview_endpoint=service_host(
                deployment.name, deployment.tenant.namespace, preview=True
            ),
            gpus=deployment_gpus(deployment),
            revisions=deployment.revisions.select_related(
                "tier", "model_revision", "created_by"
            ).order_by("-number"),
        )
        context.update(rollout_context(rollout, running, self.access))
        if deployment.deleting:
            # Nothing can be done to a deployment on its way out: its page shows the way.
            context.update(allowed=frozenset(), deletion_steps=deletion.progress(deployment))
        return context

    def _panel(self) -> str | None:
        """The panel an HTMX request of the page's own targets (its polling, its buttons). The
        HX-Location navigation that follows Deploy, Promote or Roll back targets the body and
        must get the whole page, not a panel alone."""
        target = _htmx_target(self.request)
        return target if target in ("rollout-panel", "deletion-panel") else None

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        try:
            return super().get(request, *args, **kwargs)
        except Http404:
            # The deletion the panel polls is done: the deployment is gone, so is its page.
            if self._panel() != "deletion-panel":
                raise
            return _redirect(request, reverse("deployment-list", args=[self.tenant.slug]))

    def get_template_names(self) -> list[str]:
        panel = self._panel()
        return [self.template_name + (f"#{panel}" if panel else "")]


def rollout_steps(rollout: Rollout) -> list[dict[str, Any]]:
    """STEP_ORDER with each step marked done, current or to do (for the UI's steps list)."""
    progress = rollout_progress(rollout)
    terminal = rollout.state in TERMINAL_STATES
    steps = []
    for index, state in enumerate(STEP_ORDER):
        if index < progress.index or (terminal and rollout.state == RolloutState.COMPLETED):
            status = "done"
        elif index == progress.index:
            status = "failed" if terminal else "current"
        else:
            status = "todo"
        steps.append({"state": state.value, "label": state.label, "status": status})
    return steps


def rollout_context(rollout: Rollout | None, running: bool, access: TenantAccess) -> dict[str, Any]:
    """The rollout panel: the rollout shown, and the actions its state and the role allow."""
    allowed = {
        action
        for action in policy.allowed_actions(rollout, running=running)
        if access.may(policy.OPERATIONS[action])
    }
    if rollout is None:
        return {"rollout": None, "allowed": allowed}
    active = rollout.state in ACTIVE_STATES
    return {
        "allowed": allowed,
        "rollout": rollout,
        "progress": rollout_progress(rollout),
        "steps": rollout_steps(rollout),
        "events": list(rollout.events.all()),
        "polling": active,
    }


class RolloutView(DeploymentDetailView):
    """One rollout of the deployment: the full page, or its panel for HTMX polling."""

    def get_rollout(self, deployment: Deployment) -> Rollout | None:
        rollout = (
            deployment.rollouts.select_related("revision", "previous_revision")
            .filter(pk=self.kwargs["rollout_pk"])
            .first()
        )
        if rollout is None:
            raise Http404("rollout not found")
        return rollout


class DeploymentActionView(DeploymentDetailView):
    """POST promote, abort, rollback or delete; refusals are shown in the rollout panel (422)."""

    http_method_names = ["post"]
    action_operations = {str(action): operation for action, operation in policy.OPERATIONS.items()}
    ACTIONS = {
        Action.PROMOTE: services.promote,
        Action.ABORT: services.abort,
        Action.ROLLBACK: services.rollback,
    }

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        deployment = get_object_or_404(self.get_queryset(), pk=kwargs["pk"])
        action = kwargs["action"]
        detail = reverse("deployment-detail", args=[self.tenant.slug, deployment.pk])
        try:
            if action == Action.DELETE:
                # A task removes it; its page shows how far, then sends on to the list.
                services.delete_deployment(ui_actor(request), deployment)
                return _redirect(request, detail)
            if action == Action.DEPLOY:
                number = request.POST.get("revision", "")
                if not number.isdigit():
                    raise DomainError("choose a revision to deploy", field="revision")
                services.deploy_revision(ui_actor(request), deployment, int(number))
            elif action in self.ACTIONS:
                self.ACTIONS[Action(action)](ui_actor(request), deployment)
            else:
                raise Http404(f"unknown action '{action}'")
        except Forbidden as error:
            raise PermissionDenied(error.message) from None
        except DomainError as error:
            self.object = deployment
            context = self.get_context_data(object=deployment, action_error=error.message)
            return self.render_to_response(context, status=422)
        return _redirect(request, detail)


class DeploymentRevisionView(TenantViewMixin, DetailView):
    """A new revision of the deployment, prefilled from the one it starts from.

    GET previews (HTMX on every change: the wizard's checks and a diff against that revision);
    POST deploys through services.change_deployment, as a PATCH through the API does.
    """

    model = Deployment
    template_name = "deployments/deployment_revision.html"
    context_object_name = "deployment"
    read_operation = write_operation = "deployment.change"
    http_method_names = ["get", "post"]

    def get_queryset(self) -> QuerySet[Deployment]:
        return (
            super()
            .get_queryset()
            .select_related(
                "tenant",
                "model__current_revision",
                "tier",
                "active_revision__tier",
                "active_revision__model_revision",
            )
        )

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        deployment: Deployment = self.object
        # Unbound (prefilled) at first; bound to the inputs on each HTMX re-check, so the diff
        # and the field errors follow what is typed.
        form = kwargs.get("form") or RevisionForm(self.request.GET or None, deployment=deployment)
        changes = None
        if form.is_bound and form.is_valid():
            changes = revision_changes(form.base, form.serving_request())
        elif not form.is_bound:
            changes = []
        context.update(serving_checks(self.tenant, form, deployment))
        context.update(
            form=form,
            base=form.base,
            changes=changes,
            running=policy.rollout_running(deployment),
        )
        return context

    def get_template_names(self) -> list[str]:
        suffix = "#revision-form" if htmx_partial(self.request) else ""
        return [self.template_name + suffix]

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        self.object = deployment = self.get_object()
        form = RevisionForm(request.POST, deployment=deployment)
        if form.is_valid():
            serving = form.serving_request()
            base = form.base
            if base is not None and not revision_changes(base, serving):
                form.add_error(
                    None,
                    f"Nothing to deploy: these are the settings of revision {base.number}. "
                    "Change a field first (the promotion settings belong to a rollout, not to "
                    "a revision).",
                )
            else:
                try:
                    revision, _rollout, warnings = services.change_deployment(
                        ui_actor(request),
                        deployment,
                        serving,
                        promotion=form.promotion_choice(),
                        pod_annotations=dict(base.pod_annotations) if base else None,
                    )
                except DomainError as error:
                    _apply_refusal(form, error)
                else:
                    messages.success(request, f"Revision {revision.number} is rolling out.")
                    for warning in warnings:
                        messages.warning(request, warning)
                    url = reverse("deployment-detail", args=[self.tenant.slug, deployment.pk])
                    return _redirect(request, url)
        context = self.get_context_data(form=form)
        return self.render_to_response(context, status=422)

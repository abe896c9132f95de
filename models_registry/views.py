"""Web UI of the model registry."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.views.generic import DetailView, ListView, TemplateView

from models_registry import fit, services
from models_registry.forms import FitForm, HubTokenForm, RegisterForm
from models_registry.models import HubCredential, RegisteredModel
from portal.errors import DomainError, Forbidden
from portal.views import htmx_partial
from tenants.scoping import TenantViewMixin
from tenants.views import ui_actor


class ModelListView(TenantViewMixin, ListView):
    """Registered models and the registration form with a live Hub lookup."""

    model = RegisteredModel
    template_name = "models_registry/model_list.html"
    context_object_name = "models"
    write_operation = "model.register"
    http_method_names = ["get", "post"]

    def get_queryset(self) -> QuerySet[RegisteredModel]:
        return super().get_queryset().select_related("current_revision")

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context.setdefault("form", RegisterForm())
        return context

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        form = RegisterForm(request.POST)
        if form.is_valid():
            try:
                model = services.register_model(ui_actor(request), self.tenant, **form.cleaned_data)
            except DomainError as error:
                form.add_error(error.field if error.field in form.fields else None, error.message)
            else:
                url = reverse("model-detail", args=[self.tenant.slug, model.pk])
                if htmx_partial(request):
                    response = HttpResponse(status=204)
                    response["HX-Location"] = url
                    return response
                return HttpResponseRedirect(url)
        self.object_list = self.get_queryset()
        template = self.template_name + ("#register-form" if htmx_partial(request) else "")
        return self.response_class(request, template, self.get_context_data(form=form), status=422)


class HubLookupView(TenantViewMixin, TemplateView):
    """The as-you-type preview of a Hub repository (an HTMX fragment)."""

    template_name = "models_registry/_lookup.html"
    http_method_names = ["get"]

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        repo_id = self.request.GET.get("repo_id", "").strip()
        revision = self.request.GET.get("revision", "").strip() or "main"
        context["repo_id"] = repo_id
        if "/" in repo_id and len(repo_id) > 2:
            context["lookup"] = services.lookup(self.tenant, repo_id, revision)
        return context


class ModelDetailView(TenantViewMixin, DetailView):
    model = RegisteredModel
    template_name = "models_registry/model_detail.html"
    context_object_name = "model"
    http_method_names = ["get"]

    def get_queryset(self) -> QuerySet[RegisteredModel]:
        return (
            super()
            .get_queryset()
            .select_related(
                "current_revision__remote_code_approval__approved_by", "license_acknowledged_by"
            )
        )

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        model = self.object
        context["revision"] = model.current_revision
        context["revisions"] = model.revisions.all()[:20]
        context["blockers"] = services.deployment_blockers(model)
        context["approval"] = model.current_revision and services.remote_code_approval(
            model.current_revision
        )
        form = FitForm(self.request.GET or None)
        context["fit_form"] = form
        context.update(_fit_context(model, form))
        return context


def _fit_context(model: RegisteredModel, form: FitForm) -> dict[str, Any]:
    data = (
        form.cleaned_data
        if form.is_bound and form.is_valid()
        else {name: field.initial for name, field in form.fields.items()}
    )
    if form.is_bound and form.errors:
        return {"fit_rows": [], "fit_best": None}
    choice = fit.ServingChoice(
        quantize=data.get("quantize") or None,
        dtype=data.get("dtype") or None,
        kv_cache_dtype=data.get("kv_cache_dtype") or None,
        max_total_tokens=int(data.get("max_total_tokens") or 4096),
        concurrent_sequences=int(data.get("concurrent_sequences") or 8),
    )
    try:
        rows, best = services.fit_check(model.current_revision, choice)  # type: ignore[arg-type]
    except DomainError as error:
        return {"fit_rows": [], "fit_best": None, "fit_error": error.message}
    return {
        "fit_rows": rows,
        "fit_best": best,
        "fit_quantizations": fit.valid_quantizations(model.current_revision.quantization_method),  # type: ignore[union-attr]
    }


class ModelFitView(ModelDetailView):
    """The fit table alone, re-rendered when the serving choices change."""

    def get_template_names(self) -> list[str]:
        return [self.template_name + "#fit-table"]


class ModelActionView(TenantViewMixin, DetailView):
    """POST actions on a model: check for updates, apply one, acknowledge, approve, delete."""

    model = RegisteredModel
    template_name = "models_registry/model_detail.html"
    http_method_names = ["get", "post"]
    action_operations = {
        "update": "model.update",
        "delete": "model.delete",
        "acknowledge-license": "model.acknowledge_license",
        "approve-remote-code": "model.approve_remote_code",
    }

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        """GET update: the preview of what moving to the branch's newest commit changes."""
        model = self.get_object()
        if kwargs["action"] != "update":
            raise PermissionDenied("use POST")
        context: dict[str, Any] = {"tenant": self.tenant, "access": self.access, "model": model}
        try:
            context["preview"] = services.preview_update(model, request.GET.get("revision"))
        except DomainError as error:
            context["preview_error"] = error.message
        return TemplateResponse(request, "models_registry/_update_preview.html", context)

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        model = self.get_object()
        action = kwargs["action"]
        actor = ui_actor(request)
        detail = reverse("model-detail", args=[self.tenant.slug, model.pk])
        try:
            if action == "update":
                services.apply_update(
                    actor,
                    model,
                    revision=request.POST.get("revision") or None,
                    expected_sha=request.POST.get("expected_sha", ""),
                )
            elif action == "acknowledge-license":
                services.acknowledge_license(actor, model)
            elif action == "approve-remote-code":
                services.approve_remote_code(actor, model)
            elif action == "delete":
                services.delete_model(actor, model)
                detail = reverse("model-list", args=[self.tenant.slug])
            else:
                raise DomainError(f"unknown action '{action}'")
        except Forbidden as error:
            raise PermissionDenied(error.message) from None
        except DomainError as error:
            return TemplateResponse(
                request,
                "models_registry/_action_error.html",
                {"message": error.message},
                status=409 if error.status_code == 409 else 422,
            )
        if htmx_partial(request):
            response = HttpResponse(status=204)
            response["HX-Location"] = detail
            return response
        return HttpResponseRedirect(detail)


class HubTokenView(TenantViewMixin, TemplateView):
    """The tenant's Hugging Face token: status for members; owners set or rotate it."""

    template_name = "models_registry/hub_token.html"
    write_operation = "hub_token.manage"
    http_method_names = ["get", "post"]

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context["credential"] = HubCredential.objects.for_tenant(self.tenant).first()
        context.setdefault("form", HubTokenForm())
        return context

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        form = HubTokenForm(request.POST)
        if request.POST.get("remove"):
            services.remove_hub_token(ui_actor(request), self.tenant)
            return HttpResponseRedirect(reverse("hub-token", args=[self.tenant.slug]))
        if form.is_valid():
            try:
                services.set_hub_token(ui_actor(request), self.tenant, form.cleaned_data["token"])
            except DomainError as error:
                form.add_error("token", error.message)
            else:
                return HttpResponseRedirect(reverse("hub-token", args=[self.tenant.slug]))
        return self.render_to_response(self.get_context_data(form=form), status=422)

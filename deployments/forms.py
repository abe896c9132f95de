"""Forms of the deployments UI; they shape input, deployments.services decides."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django import forms
from django.db.models import QuerySet
from django.forms.utils import pretty_name

from deployments.admission import ServingRequest
from deployments.models import Deployment, DeploymentRevision, Tier
from deployments.rendering.meta import service_name
from deployments.services import Promotion
from deployments.serving_fields import (
    PROMOTION_DEFAULTS,
    SERVING_FIELDS,
    SERVING_SCHEMA,
    ServingField,
    promotion_field,
)
from engines import DEFAULT_ENGINE, engine_choices
from models_registry import fit
from models_registry.models import RegisteredModel
from tenants.models import Tenant

NUMBER = forms.NumberInput(attrs={"inputmode": "numeric"})


QUANTIZE_FIELD = next(f for f in SERVING_SCHEMA if f.name == "quantize")


def quantize_label(value: str | None) -> str:
    return value or QUANTIZE_FIELD.blank_label


def form_field(field: ServingField) -> forms.Field:
    """The UI's input for a serving field; optional ones may be left empty."""
    common: dict[str, Any] = {"label": field.label or None, "help_text": field.help_text}
    if field.kind == "choice":
        assert field.choices is not None
        blank = [("", field.blank_label)] if field.allows_blank else []
        return forms.ChoiceField(
            choices=[*blank, *field.choices()], required=False, initial=field.default, **common
        )
    if field.kind == "boolean":
        return forms.BooleanField(required=False, **common)
    # Left empty, a field with a default takes it (ServingForm.clean); an optional one stays
    # None for admission to fill in.
    return forms.IntegerField(
        min_value=field.min_value,
        max_value=field.max_value,
        required=False,
        initial=field.default,
        widget=NUMBER,
        **common,
    )


class ServingForm(forms.Form):
    """What a revision serves: tier → quantization → limits → replicas, and the rollout's promotion.

    Field names are the services' field names, so a DomainError lands on the right input. The
    deploy wizard adds the name and the model; the new-revision form takes the deployment's model.
    """

    tier = forms.ModelChoiceField(
        queryset=Tier.objects.filter(is_active=True),
        to_field_name="slug",
        empty_label=None,
        widget=forms.RadioSelect,
    )
    # The wizard offers the promotion schema's mode and delay (named as the templates know them).
    promotion = form_field(promotion_field("mode"))
    promote_after_seconds = form_field(promotion_field("after_seconds"))

    # The serving schema's fields go between the tier and the promotion: see
    # _declare_serving_fields below.

    def _offer_engines(self) -> None:
        """The engines the selected tier offers (all of them until a tier is chosen)."""
        tier = self.selected_tier()
        if tier is None:
            return
        engine_field: forms.ChoiceField = self.fields["engine"]  # type: ignore[assignment]
        offered = set(tier.offered_engines())
        engine_field.choices = [(n, label) for n, label in engine_choices() if n in offered]

    def _offer_quantizations(self) -> None:
        """Only the quantizations the selected model's checkpoint allows."""
        model = self.selected_model()
        revision = model.current_revision if model else None
        quantize_field: forms.ChoiceField = self.fields["quantize"]  # type: ignore[assignment]
        quantize_field.choices = [
            (q or "", quantize_label(q))
            for q in (fit.valid_quantizations(revision.quantization_method) if revision else [None])
        ]

    def raw(self, name: str) -> Any:
        """The submitted (or initial) value of a field, unvalidated."""
        source = self.data if self.is_bound else self.initial
        value = source.get(name)
        if value in (None, ""):
            value = self.fields[name].initial
        return value

    def number(self, name: str) -> int | None:
        try:
            return int(self.raw(name))
        except (TypeError, ValueError):
            return None

    def selected_model(self) -> RegisteredModel | None:
        raise NotImplementedError

    def selected_tier(self) -> Tier | None:
        value = self.raw("tier")
        return Tier.objects.filter(is_active=True, slug=value).first() if value else None

    def serving_request(self) -> ServingRequest:
        data = self.cleaned_data
        model = data.get("model") or self.selected_model()
        assert model is not None  # a valid form has a model
        return ServingRequest(
            model=model, tier=data["tier"], **{name: data[name] for name in SERVING_FIELDS}
        )

    def clean(self) -> dict[str, Any]:
        """Empty inputs take the schema's defaults, as the API's left-out fields do."""
        data = super().clean() or {}
        defaults = {f.name: f.default for f in SERVING_SCHEMA if f.default is not None}
        defaults["promotion"] = PROMOTION_DEFAULTS["mode"]
        defaults["promote_after_seconds"] = PROMOTION_DEFAULTS["after_seconds"]
        for name, default in defaults.items():
            if name in data and data[name] in (None, ""):
                data[name] = default
        return data

    def clean_engine(self) -> str:
        """Left out, the engine stays what the form started from (the registry's default)."""
        engine: str = self.cleaned_data.get("engine") or ""
        return engine or str(self.initial.get("engine") or DEFAULT_ENGINE)

    def promotion_choice(self) -> Promotion:
        data = self.cleaned_data
        return Promotion(mode=data["promotion"], after_seconds=data["promote_after_seconds"])


def _declare_serving_fields(form: type[ServingForm]) -> None:
    """Put the schema's fields after the tier, before the promotion, in the form's declared
    fields (which subclasses inherit): the metaclass has run, so this is where they go in."""
    declared = dict(form.declared_fields)
    tier = declared.pop("tier")
    fields = {f.name: form_field(f) for f in SERVING_SCHEMA}
    form.declared_fields = form.base_fields = {"tier": tier, **fields, **declared}


_declare_serving_fields(ServingForm)


class DeploymentForm(ServingForm):
    """The deploy wizard: model → tier → quantization → limits → review."""

    name = forms.CharField(
        max_length=100,
        widget=forms.TextInput(attrs={"placeholder": "chat", "autocomplete": "off"}),
        help_text=f"Lower-case letters, digits and '-'; the Service is {service_name('<name>')}.",
    )
    model = forms.ModelChoiceField(queryset=RegisteredModel.objects.none(), empty_label="—")
    field_order = ["name", "model"]

    def __init__(self, *args: Any, tenant: Tenant, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        models: QuerySet[RegisteredModel] = RegisteredModel.objects.for_tenant(
            tenant
        ).select_related("current_revision")
        self.fields["model"].queryset = models  # type: ignore[attr-defined]
        self._offer_engines()
        self._offer_quantizations()

    def selected_model(self) -> RegisteredModel | None:
        value = self.raw("model")
        if not str(value or "").isdigit():
            return None
        queryset: QuerySet[RegisteredModel] = self.fields["model"].queryset  # type: ignore[attr-defined]
        return queryset.filter(pk=int(value)).first()


class RevisionForm(ServingForm):
    """A new revision of a deployment, prefilled from the revision it starts from.

    The model stays the deployment's; the new revision pins the model's current commit, as a
    PATCH through the API does. Pod annotations are not edited here: they are carried over.
    """

    def __init__(self, data: Any = None, *, deployment: Deployment) -> None:
        self.deployment = deployment
        self.base = base_revision(deployment)
        initial = revision_initial(self.base) if self.base is not None else None
        super().__init__(data, initial=initial)
        self._offer_engines()
        self._offer_quantizations()

    def selected_model(self) -> RegisteredModel | None:
        return self.deployment.model


def base_revision(deployment: Deployment) -> DeploymentRevision | None:
    """What a new revision starts from: the one serving, else the newest (a failed first one)."""
    return deployment.active_revision or deployment.revisions.first()


def revision_initial(revision: DeploymentRevision) -> dict[str, Any]:
    return {
        "tier": revision.tier.slug,
        **{name: getattr(revision, name) for name in SERVING_FIELDS},
    }


@dataclass(frozen=True)
class Change:
    """One line of the new-revision diff: ``label: old → new``."""

    field: str
    label: str
    old: str
    new: str


def _shown(value: Any) -> str:
    if value in (None, ""):
        return "—"
    if isinstance(value, bool):
        return "on" if value else "off"
    return str(value)


def revision_changes(base: DeploymentRevision | None, request: ServingRequest) -> list[Change]:
    """What deploying `request` would change against `base`, field by field.

    Compared after TGI's defaults are filled in (ServingRequest.resolved), so an emptied token
    limit that resolves to the value already serving is no change.
    """
    new_commit = request.model.current_revision
    if base is None:
        return []
    changes = []
    if base.tier_id != request.tier.pk:
        changes.append(Change("tier", "Tier", base.tier.name, request.tier.name))
    if new_commit is not None and new_commit.pk != base.model_revision_id:
        old_sha = base.model_revision.commit_sha[:12]
        changes.append(Change("model", "Model commit", old_sha, new_commit.commit_sha[:12]))
    resolved = request.resolved()
    for name in SERVING_FIELDS:
        old, new = getattr(base, name), resolved[name]
        if old != new:
            label = str(ServingForm.base_fields[name].label or pretty_name(name))
            changes.append(Change(name, label, _shown(old), _shown(new)))
    return changes

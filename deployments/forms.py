"""Forms of the deployments UI; they shape input, deployments.services decides."""

from __future__ import annotations

from typing import Any

from django import forms
from django.db.models import QuerySet

from deployments.admission import ServingRequest
from deployments.choices import PromotionMode
from deployments.models import Tier
from deployments.serializers import DTYPE_CHOICES, KV_CACHE_DTYPE_CHOICES
from deployments.services import Promotion
from models_registry import fit
from models_registry.models import RegisteredModel
from tenants.models import Tenant

NUMBER = forms.NumberInput(attrs={"inputmode": "numeric"})


def quantize_label(value: str | None) -> str:
    return value or "none (as stored)"


class DeploymentForm(forms.Form):
    """The deploy wizard: model → tier → quantization → limits → review.

    Field names are the services' field names, so a DomainError lands on the right input.
    """

    name = forms.CharField(
        max_length=100,
        widget=forms.TextInput(attrs={"placeholder": "chat", "autocomplete": "off"}),
        help_text="Lower-case letters, digits and '-'; the Service is tgi-<name>.",
    )
    model = forms.ModelChoiceField(queryset=RegisteredModel.objects.none(), empty_label="—")
    tier = forms.ModelChoiceField(
        queryset=Tier.objects.filter(is_active=True),
        to_field_name="slug",
        empty_label=None,
        widget=forms.RadioSelect,
    )
    quantize = forms.ChoiceField(choices=[("", quantize_label(None))], required=False)
    dtype = forms.ChoiceField(
        choices=[("", "auto"), *((d, d) for d in DTYPE_CHOICES)], required=False
    )
    kv_cache_dtype = forms.ChoiceField(
        choices=[("", "same as dtype"), *((d, d) for d in KV_CACHE_DTYPE_CHOICES)],
        required=False,
        label="KV cache dtype",
    )
    max_input_tokens = forms.IntegerField(min_value=1, required=False, widget=NUMBER)
    max_total_tokens = forms.IntegerField(min_value=2, required=False, widget=NUMBER)
    max_batch_prefill_tokens = forms.IntegerField(
        min_value=1, required=False, widget=NUMBER, label="Max batch prefill tokens"
    )
    max_concurrent_requests = forms.IntegerField(
        min_value=1, max_value=100_000, initial=128, widget=NUMBER
    )
    replicas = forms.IntegerField(min_value=1, max_value=1000, initial=1, widget=NUMBER)
    autoscaling = forms.BooleanField(required=False, label="Autoscale on queue size")
    min_replicas = forms.IntegerField(min_value=1, required=False, widget=NUMBER)
    max_replicas = forms.IntegerField(min_value=1, required=False, widget=NUMBER)
    queue_size_target = forms.IntegerField(min_value=1, max_value=10_000, initial=4, widget=NUMBER)
    promotion = forms.ChoiceField(
        choices=PromotionMode.choices, initial=PromotionMode.AUTOMATIC, label="Promotion"
    )
    promote_after_seconds = forms.IntegerField(
        min_value=0, max_value=86_400, initial=0, required=False, widget=NUMBER
    )

    def __init__(self, *args: Any, tenant: Tenant, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        models: QuerySet[RegisteredModel] = RegisteredModel.objects.for_tenant(
            tenant
        ).select_related("current_revision")
        self.fields["model"].queryset = models  # type: ignore[attr-defined]
        model = self.selected_model()
        revision = model.current_revision if model else None
        method = revision.quantization_method if revision else ""
        quantize_field: forms.ChoiceField = self.fields["quantize"]  # type: ignore[assignment]
        quantize_field.choices = [
            (q or "", quantize_label(q))
            for q in (
                fit.valid_quantizations(method) if model and model.current_revision else [None]
            )
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
        value = self.raw("model")
        if not str(value or "").isdigit():
            return None
        queryset: QuerySet[RegisteredModel] = self.fields["model"].queryset  # type: ignore[attr-defined]
        return queryset.filter(pk=int(value)).first()

    def selected_tier(self) -> Tier | None:
        value = self.raw("tier")
        return Tier.objects.filter(is_active=True, slug=value).first() if value else None

    def serving_request(self) -> ServingRequest:
        data = self.cleaned_data
        values = {
            "quantize": data["quantize"],
            "dtype": data["dtype"],
            "kv_cache_dtype": data["kv_cache_dtype"],
            "max_input_tokens": data["max_input_tokens"],
            "max_total_tokens": data["max_total_tokens"],
            "max_batch_prefill_tokens": data["max_batch_prefill_tokens"],
            "max_concurrent_requests": data["max_concurrent_requests"],
            "replicas": data["replicas"],
            "min_replicas": data["min_replicas"],
            "max_replicas": data["max_replicas"],
            "autoscaling": data["autoscaling"],
            "queue_size_target": data["queue_size_target"],
        }
        return ServingRequest(model=data["model"], tier=data["tier"], **values)

    def promotion_choice(self) -> Promotion:
        return Promotion(
            mode=self.cleaned_data["promotion"],
            after_seconds=self.cleaned_data["promote_after_seconds"] or 0,
        )

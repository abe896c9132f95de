"""Forms of the registry UI."""

from django import forms

from models_registry.constants import QUANTIZE_CHOICES


class RegisterForm(forms.Form):
    repo_id = forms.CharField(
        max_length=200,
        label="Hub repository",
        widget=forms.TextInput(attrs={"placeholder": "org/model-name", "autocomplete": "off"}),
    )
    revision = forms.CharField(max_length=200, initial="main", label="Branch, tag or commit")


class FitForm(forms.Form):
    quantize = forms.ChoiceField(
        choices=[("", "none")] + [(q, q) for q in QUANTIZE_CHOICES], required=False
    )
    dtype = forms.ChoiceField(
        choices=[("", "auto"), ("float16", "float16"), ("bfloat16", "bfloat16")], required=False
    )
    kv_cache_dtype = forms.ChoiceField(
        choices=[("", "same as dtype"), ("fp8_e4m3fn", "fp8_e4m3fn"), ("fp8_e5m2", "fp8_e5m2")],
        required=False,
        label="KV cache dtype",
    )
    max_total_tokens = forms.IntegerField(min_value=2, max_value=1_048_576, initial=4096)
    concurrent_sequences = forms.IntegerField(min_value=1, max_value=4096, initial=8)


class HubTokenForm(forms.Form):
    token = forms.CharField(
        max_length=200,
        label="Hugging Face token",
        widget=forms.PasswordInput(attrs={"autocomplete": "off", "placeholder": "hf_…"}),
    )

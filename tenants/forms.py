"""Forms of the tenants UI; they shape input, the services decide."""

from django import forms

from tenants.choices import Role


class AddMemberForm(forms.Form):
    username = forms.CharField(max_length=150)
    role = forms.ChoiceField(choices=Role.choices, initial=Role.VIEWER)


class ChangeRoleForm(forms.Form):
    role = forms.ChoiceField(choices=Role.choices)


class CreateTokenForm(forms.Form):
    name = forms.CharField(max_length=100)
    role = forms.ChoiceField(choices=Role.choices, initial=Role.VIEWER)
    expires_in_days = forms.IntegerField(min_value=1, max_value=3650, initial=90)


class CreateGatewayKeyForm(forms.Form):
    name = forms.CharField(max_length=100)
    deployments = forms.MultipleChoiceField(
        required=False,
        help_text="Leave empty to allow every deployment of the tenant.",
        widget=forms.SelectMultiple(attrs={"size": 3}),
    )
    requests_per_minute = forms.IntegerField(
        min_value=1,
        required=False,
        help_text="At most this many in any 60-second window. Empty: the tenant's limit.",
    )
    requests_burst = forms.IntegerField(
        min_value=1,
        required=False,
        help_text="Most requests at once, refilling at the per-minute limit / 60 per second. "
        "Empty: none, the whole minute may arrive at once.",
    )
    tokens_per_minute = forms.IntegerField(
        min_value=1, required=False, help_text="Empty: the tenant's limit."
    )

    def __init__(self, *args: object, deployment_names: list[str], **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        field = self.fields["deployments"]
        assert isinstance(field, forms.MultipleChoiceField)
        field.choices = [(name, name) for name in deployment_names]


class GatewayKeyLimitsForm(forms.Form):
    requests_per_minute = forms.IntegerField(min_value=1, required=False)
    requests_burst = forms.IntegerField(min_value=1, required=False)
    tokens_per_minute = forms.IntegerField(min_value=1, required=False)

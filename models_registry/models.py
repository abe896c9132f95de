"""Registered Hub models, their immutable pinned revisions, and tenants' Hub credentials."""

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import models

from models_registry.choices import AccessStatus, Gating, TokenStatus
from tenants.tenancy import TenantOwnedModel


class RegisteredModel(TenantOwnedModel):
    """A Hub repository a tenant registered; it serves the commit of `current_revision`."""

    repo_id = models.CharField(max_length=200, help_text="Hub repository id, e.g. org/name.")
    requested_revision = models.CharField(
        max_length=200, default="main", help_text="Branch, tag or commit asked for."
    )
    current_revision = models.ForeignKey(
        "ModelRevision", null=True, on_delete=models.PROTECT, related_name="+"
    )
    access_status = models.CharField(
        max_length=16, choices=AccessStatus.choices, default=AccessStatus.OK
    )
    access_checked_at = models.DateTimeField(null=True, blank=True)
    access_detail = models.CharField(max_length=300, blank=True)
    license_acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    license_acknowledged_at = models.DateTimeField(null=True, blank=True)
    registered_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("repo_id",)
        constraints = [
            models.UniqueConstraint(fields=("tenant", "repo_id"), name="one_registration_per_repo")
        ]

    def __str__(self) -> str:
        return self.repo_id


class ModelRevision(models.Model):
    """What the Hub said about one commit of a registered model; never changes once saved."""

    model = models.ForeignKey(RegisteredModel, on_delete=models.CASCADE, related_name="revisions")
    commit_sha = models.CharField(max_length=40)
    requested_revision = models.CharField(max_length=200)
    pipeline_tag = models.CharField(max_length=64, blank=True)
    library_name = models.CharField(max_length=64, blank=True)
    architectures = ArrayField(models.CharField(max_length=100), default=list, blank=True)
    model_type = models.CharField(max_length=64, blank=True)
    license = models.CharField(max_length=64, blank=True)
    license_family = models.CharField(
        max_length=32, blank=True, help_text="Restricted licence family needing acknowledgement."
    )
    gated = models.CharField(max_length=8, choices=Gating.choices, blank=True)
    private = models.BooleanField(default=False)
    parameters_by_dtype = models.JSONField(default=dict, blank=True)
    total_parameters = models.BigIntegerField(default=0)
    weights_bytes = models.BigIntegerField(default=0, help_text="Size of the weight files.")
    context_length = models.PositiveIntegerField(null=True, blank=True)
    num_hidden_layers = models.PositiveIntegerField(null=True, blank=True)
    num_attention_heads = models.PositiveIntegerField(null=True, blank=True)
    num_key_value_heads = models.PositiveIntegerField(null=True, blank=True)
    head_dim = models.PositiveIntegerField(null=True, blank=True)
    hidden_size = models.PositiveIntegerField(null=True, blank=True)
    torch_dtype = models.CharField(max_length=16, blank=True)
    quantization_method = models.CharField(max_length=32, blank=True)
    quantization_bits = models.PositiveSmallIntegerField(null=True, blank=True)
    requires_custom_code = models.BooleanField(default=False)
    custom_code_reason = models.CharField(max_length=300, blank=True)
    has_chat_template = models.BooleanField(
        null=True,
        blank=True,
        help_text=(
            "Whether the commit ships a chat template (tokenizer_config.json's chat_template or "
            "chat_template.jinja). False: a base model, served for completions only. Empty: "
            "registered before the portal recorded it."
        ),
    )
    files = models.JSONField(default=list, blank=True)
    config = models.JSONField(default=dict, blank=True, help_text="The full config.json.")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ("-created_at", "-id")
        constraints = [
            models.UniqueConstraint(fields=("model", "commit_sha"), name="one_revision_per_commit")
        ]

    def __str__(self) -> str:
        return f"{self.model.repo_id}@{self.commit_sha[:12]}"


class RemoteCodeApproval(models.Model):
    """A platform admin's review of the remote code of ONE commit of a model.

    It belongs to the revision, not the model: another commit ships other code, so moving the
    model to it needs a new review before `--trust-remote-code` is passed again.
    """

    revision = models.OneToOneField(
        ModelRevision, on_delete=models.CASCADE, related_name="remote_code_approval"
    )
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    approved_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"remote code of {self.revision} approved"


class HubCredential(TenantOwnedModel):
    """Where a tenant's Hugging Face token lives and what we know of it — never the token."""

    secret_name = models.CharField(max_length=63, help_text="Secret in the tenant's namespace.")
    secret_key = models.CharField(max_length=63, default="token")
    fingerprint = models.CharField(max_length=24, help_text="sha256 prefix, to tell tokens apart.")
    hub_username = models.CharField(max_length=100, blank=True)
    token_name = models.CharField(max_length=100, blank=True)
    token_role = models.CharField(max_length=32, blank=True)
    status = models.CharField(max_length=16, choices=TokenStatus.choices, default=TokenStatus.VALID)
    validated_at = models.DateTimeField(null=True, blank=True)
    set_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    set_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=("tenant",), name="one_hub_token_per_tenant")]

    def __str__(self) -> str:
        return f"Hub token {self.fingerprint} of {self.tenant}"

"""Registered Hub models (the registry issue fills in metadata, revisions and fit checks)."""

from django.conf import settings
from django.db import models

from portal.tenancy import TenantOwnedModel


class RegisteredModel(TenantOwnedModel):
    """A Hub repository a tenant registered, pinned to the commit its revision resolved to."""

    repo_id = models.CharField(max_length=200, help_text="Hub repository id, e.g. org/name.")
    revision = models.CharField(max_length=200, default="main", help_text="Requested revision.")
    commit_sha = models.CharField(max_length=40, blank=True, help_text="Pinned commit.")
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

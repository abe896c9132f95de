"""Admin console for platform admins: tenants, memberships, quotas (with history), tokens, audit.

Every save goes through tenants.services so the audit log and quota history stay complete;
writes the services do not cover (deletes, tiers, users and groups) are recorded by the audited
admin mixins below, in the admin's own transaction.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.models import Group, User
from django.core.exceptions import ValidationError
from django.db import models, transaction
from django.db.models import QuerySet
from django.forms import BaseInlineFormSet, ModelForm
from django.http import HttpRequest, HttpResponse

from portal.errors import DomainError
from tenants import audit, services
from tenants.audit import Actor
from tenants.choices import Channel
from tenants.models import (
    ApiToken,
    AuditEvent,
    GatewayKey,
    Membership,
    QuotaChange,
    Tenant,
    TenantQuota,
)


def admin_actor(request: HttpRequest) -> Actor:
    return Actor(user=request.user, channel=Channel.ADMIN)  # type: ignore[arg-type]


def _audit_value(value: Any) -> Any:
    if isinstance(value, models.Model):
        return str(value)
    if isinstance(value, QuerySet | list | tuple):
        return [_audit_value(item) for item in value]
    return value


def form_changes(form: ModelForm, *, created: bool) -> dict[str, Any]:
    """{field: [old, new]} of the fields the admin form changed; secrets are never recorded."""
    changed = [f for f in form.changed_data if "password" not in f]
    before = {f: None if created else _audit_value(form.initial.get(f)) for f in changed}
    after = {f: _audit_value(form.cleaned_data.get(f)) for f in changed}
    changes: dict[str, Any] = audit.diff(before, after)
    if len(changed) < len(form.changed_data):
        changes["password"] = "set"  # noqa: S105 - a marker, never the value
    return changes


class AuditedDeleteMixin(admin.ModelAdmin):
    """Records `<audit_name>.delete` for deletes from the change page and the bulk action."""

    audit_name = ""

    def audit_tenant(self, obj: Any) -> Tenant | None:
        if isinstance(obj, Tenant):
            return obj
        tenant = getattr(obj, "tenant", None)
        return tenant if isinstance(tenant, Tenant) else None

    def _record(self, request: HttpRequest, verb: str, obj: Any, changes: Any = None) -> None:
        name = self.audit_name or obj._meta.model_name
        tenant = self.audit_tenant(obj)
        audit.record(admin_actor(request), f"{name}.{verb}", obj, tenant=tenant, changes=changes)

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        # Recorded first: the event keeps the target's id and name after the row is gone.
        with transaction.atomic():
            self._record(request, "delete", obj)
            super().delete_model(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        with transaction.atomic():
            for obj in queryset:
                self._record(request, "delete", obj)
            super().delete_queryset(request, queryset)


class AuditedAdmin(AuditedDeleteMixin):
    """For models without a service: saves record `<audit_name>.create|update` with the diff."""

    def save_model(self, request: HttpRequest, obj: Any, form: ModelForm, change: bool) -> None:
        with transaction.atomic():
            super().save_model(request, obj, form, change)
            changes = form_changes(form, created=not change)
            if changes or not change:
                self._record(request, "update" if change else "create", obj, changes)


class MembershipInlineFormSet(BaseInlineFormSet):
    def clean(self) -> None:
        super().clean()
        remaining_owners = [
            form.cleaned_data
            for form in self.forms
            if form.cleaned_data
            and not form.cleaned_data.get("DELETE")
            and form.cleaned_data.get("role") == "owner"
        ]
        if self.instance.pk and not remaining_owners:
            raise ValidationError("A tenant must keep at least one owner.")


class MembershipInline(admin.TabularInline):
    model = Membership
    formset = MembershipInlineFormSet
    extra = 1
    autocomplete_fields = ("user",)
    fields = ("user", "role", "created_at")
    readonly_fields = ("created_at",)


class QuotaChangeInline(admin.TabularInline):
    model = QuotaChange
    extra = 0
    can_delete = False
    fields = ("changed_at", "changed_by", "changes")
    readonly_fields = fields
    verbose_name_plural = "Quota history"

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Tenant)
class TenantAdmin(AuditedDeleteMixin):
    list_display = ("name", "slug", "namespace", "max_gpus", "allowed_tiers", "created_at")
    search_fields = ("name", "slug", "namespace", "memberships__user__username")
    list_filter = ("created_at",)
    inlines = (MembershipInline, QuotaChangeInline)

    def get_prepopulated_fields(self, request: HttpRequest, obj: Any = None) -> dict[str, Any]:
        return {} if obj else {"slug": ("name",)}

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        # Renaming the namespace would strand the tenant's running workloads.
        return ("slug", "namespace", "created_at") if obj else ("created_at",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Tenant]:
        return super().get_queryset(request).select_related("quota")

    @admin.display(ordering="quota__max_gpus")
    def max_gpus(self, tenant: Tenant) -> int:
        return tenant.quota.max_gpus

    @admin.display()
    def allowed_tiers(self, tenant: Tenant) -> str:
        return ", ".join(tenant.quota.allowed_tiers) or "—"

    def save_model(self, request: HttpRequest, obj: Tenant, form: ModelForm, change: bool) -> None:
        if change:
            services.rename_tenant(admin_actor(request), obj, name=obj.name)
        else:
            created = services.create_tenant(
                admin_actor(request), name=obj.name, slug=obj.slug, namespace=obj.namespace
            )
            obj.pk = created.pk

    def save_formset(self, request: HttpRequest, form: Any, formset: Any, change: bool) -> None:
        if formset.model is not Membership:
            return super().save_formset(request, form, formset, change)
        actor = admin_actor(request)
        tenant = form.instance
        # The admin's change message reads these; formset.save() would set them.
        formset.new_objects, formset.changed_objects, formset.deleted_objects = [], [], []
        try:
            for inline_form in formset.forms:
                data = inline_form.cleaned_data
                if not data or not data.get("user"):
                    continue
                membership = inline_form.instance
                if data.get("DELETE") and membership.pk:
                    services.remove_member(actor, membership)
                    formset.deleted_objects.append(membership)
                elif not membership.pk:
                    added = services.add_member(
                        actor, tenant, username=data["user"].username, role=data["role"]
                    )
                    formset.new_objects.append(added)
                elif "role" in inline_form.changed_data:
                    services.change_member_role(actor, membership, role=data["role"])
                    formset.changed_objects.append((membership, ["role"]))
        except DomainError as error:
            messages.error(request, error.message)
        return None


@admin.register(TenantQuota)
class TenantQuotaAdmin(AuditedDeleteMixin):
    audit_name = "quota"
    list_display = (
        "tenant",
        "max_gpus",
        "max_deployments",
        "max_replicas_per_deployment",
        "monthly_gpu_hour_budget",
        "requests_per_minute",
        "requests_burst",
        "tokens_per_minute",
        "require_max_tokens",
        "max_output_tokens",
        "updated_at",
    )
    search_fields = ("tenant__name", "tenant__slug")
    list_filter = ("updated_at",)
    readonly_fields = ("tenant", "updated_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # every tenant gets its quota when it is created

    def save_model(
        self, request: HttpRequest, obj: TenantQuota, form: ModelForm, change: bool
    ) -> None:
        changes = {field: form.cleaned_data[field] for field in form.changed_data}
        services.update_quota(admin_actor(request), obj.tenant, changes)


@admin.register(QuotaChange)
class QuotaChangeAdmin(admin.ModelAdmin):
    list_display = ("tenant", "changed_at", "changed_by", "changes")
    list_filter = ("changed_at", "tenant")
    search_fields = ("tenant__name", "changed_by__username")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(ApiToken)
class ApiTokenAdmin(AuditedDeleteMixin):
    audit_name = "api_token"
    list_display = (
        "name",
        "tenant",
        "user",
        "prefix",
        "role",
        "status",
        "expires_at",
        "last_used_at",
    )
    list_filter = ("role", "tenant", "expires_at", "revoked_at")
    search_fields = ("name", "prefix", "user__username", "tenant__name")
    readonly_fields = (
        "tenant",
        "user",
        "name",
        "prefix",
        "role",
        "created_at",
        "expires_at",
        "revoked_at",
        "last_used_at",
    )
    exclude = ("secret_hash", "expiry_recorded")
    actions = ("revoke_selected",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # tokens are created by their holders so the secret is shown only to them

    @admin.action(description="Revoke selected tokens")
    def revoke_selected(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        for token in queryset:
            services.revoke_api_token(admin_actor(request), token)


@admin.register(GatewayKey)
class GatewayKeyAdmin(AuditedDeleteMixin):
    """Platform admins see every tenant's gateway keys and can revoke them (an abusive client);
    limits are changed by tenant owners, within the tenant's quota set here in quotas."""

    audit_name = "gateway_key"

    list_display = (
        "name",
        "tenant",
        "prefix",
        "requests_per_minute",
        "requests_burst",
        "tokens_per_minute",
        "status",
        "created_at",
    )
    list_filter = ("tenant", "revoked_at")
    search_fields = ("name", "prefix", "tenant__name", "tenant__slug")
    readonly_fields = (
        "tenant",
        "name",
        "prefix",
        "deployments",
        "requests_per_minute",
        "requests_burst",
        "tokens_per_minute",
        "created_by",
        "created_at",
        "revoked_at",
    )
    exclude = ("secret_hash",)
    actions = ("revoke_selected",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # created by tenant owners, so the key is shown only to them

    @admin.action(description="Revoke selected gateway keys")
    def revoke_selected(self, request: HttpRequest, queryset: QuerySet[GatewayKey]) -> None:
        for key in queryset:
            services.revoke_gateway_key(admin_actor(request), key)


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    list_display = ("created_at", "tenant_slug", "actor_name", "channel", "action", "target_repr")
    list_filter = ("channel", "action", "tenant")
    search_fields = ("actor_name", "action", "target_repr", "tenant_slug")
    date_hierarchy = "created_at"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


# Django's own user and group admins, audited: granting staff or superuser is a platform write.
admin.site.unregister(User)
admin.site.unregister(Group)


@admin.register(User)
class AuditedUserAdmin(AuditedAdmin, UserAdmin):
    def user_change_password(
        self, request: HttpRequest, id: str, form_url: str = ""
    ) -> HttpResponse:
        with transaction.atomic():
            response = super().user_change_password(request, id, form_url)
            # Only a successful POST redirects; a form with errors renders again (200).
            if request.method == "POST" and response.status_code == 302:
                user = self.get_object(request, id)
                self._record(request, "set_password", user, {"password": "set"})
        return response


@admin.register(Group)
class AuditedGroupAdmin(AuditedAdmin, GroupAdmin):
    pass

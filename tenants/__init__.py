"""Tenants (platform teams), their members and roles, API tokens, quotas and the audit log."""

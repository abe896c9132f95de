"""Hugging Face Hub models registered by tenants, pinned to a commit."""

"""OpenAI-compatible gateway in front of tenants' TGI deployments (rate limiting so far)."""

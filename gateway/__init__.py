"""OpenAI-compatible gateway in front of tenants' deployments, whatever their engine."""

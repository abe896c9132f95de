"""Read models across apps: the tenant dashboard, quota usage and the gateway usage page."""

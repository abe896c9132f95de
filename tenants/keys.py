"""Hashing and parsing of API tokens and gateway keys.

Kept apart from ``tenants.services`` so the gateway, which hashes every presented key, imports
only this and the constants, not the tenants' domain operations.
"""

from __future__ import annotations

import hashlib
import hmac

from django.conf import settings

from tenants.constants import GATEWAY_KEY_SCHEME


def hash_token_secret(secret: str) -> str:
    # Secrets are 256 random bits, so a keyed fast hash is enough; the key stops offline
    # verification from a stolen database dump without the server's SECRET_KEY.
    return hmac.new(settings.SECRET_KEY.encode(), secret.encode(), hashlib.sha256).hexdigest()


def hash_gateway_key_secret(secret: str) -> str:
    """The gateway computes the same keyed hash to look a presented key up in memory."""
    return hash_token_secret(secret)


def split_gateway_key(presented: str) -> tuple[str, str] | None:
    """(prefix, secret) of a well-formed gateway key, else None."""
    scheme, _, rest = presented.partition("_")
    prefix, _, secret = rest.partition("_")
    if scheme != GATEWAY_KEY_SCHEME or not prefix or not secret:
        return None
    return prefix, secret

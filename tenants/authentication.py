"""REST API authentication with tenant-scoped bearer tokens."""

from __future__ import annotations

from typing import Any

from rest_framework import authentication, exceptions
from rest_framework.request import Request

from tenants.models import ApiToken
from tenants.services import TokenRejected, authenticate_api_token


class ApiTokenAuthentication(authentication.BaseAuthentication):
    """`Authorization: Bearer ipt_…`; an expired, revoked or unknown token answers 401."""

    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[Any, ApiToken] | None:
        header = authentication.get_authorization_header(request).decode("latin-1")
        if not header:
            return None
        keyword, _, presented = header.partition(" ")
        if keyword != self.keyword:
            return None
        if not presented.strip():
            raise exceptions.AuthenticationFailed("missing API token after 'Bearer'")
        try:
            token = authenticate_api_token(presented.strip())
        except TokenRejected as rejected:
            raise exceptions.AuthenticationFailed(str(rejected)) from None
        return token.user, token

    def authenticate_header(self, request: Request) -> str:
        return self.keyword

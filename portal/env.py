"""Typed parsers for settings read from the environment.

Every parser fails loudly with an ImproperlyConfigured naming the variable and the reason, so a bad
value stops the process at start instead of surfacing later as odd behaviour.
"""

from __future__ import annotations

import builtins
import os
from collections.abc import Mapping
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


class Env:
    """Reads variables from a mapping (os.environ by default) with typed accessors."""

    def __init__(self, source: Mapping[str, str] | None = None) -> None:
        self._source = os.environ if source is None else source

    def _raw(self, name: builtins.str) -> str | None:
        value = self._source.get(name)
        return None if value is None else value.strip()

    def is_set(self, name: builtins.str) -> builtins.bool:
        return bool(self._raw(name))

    def string(self, name: builtins.str, default: builtins.str | None = None) -> builtins.str:
        value = self._raw(name)
        if value:
            return value
        if default is None:
            raise ImproperlyConfigured(f"{name} must be set")
        return default

    def boolean(self, name: builtins.str, default: builtins.bool) -> builtins.bool:
        value = self._raw(name)
        if value is None:
            return default
        lowered = value.lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ImproperlyConfigured(
            f"{name}={value!r} is not a boolean (use one of: 1/0, true/false, yes/no, on/off)"
        )

    def integer(
        self,
        name: builtins.str,
        default: builtins.int,
        *,
        minimum: builtins.int | None = None,
        maximum: builtins.int | None = None,
    ) -> builtins.int:
        value = self._raw(name)
        if not value:
            return default
        try:
            number = builtins.int(value)
        except ValueError:
            raise ImproperlyConfigured(f"{name}={value!r} is not a whole number") from None
        if minimum is not None and number < minimum:
            raise ImproperlyConfigured(f"{name}={number} is below the minimum of {minimum}")
        if maximum is not None and number > maximum:
            raise ImproperlyConfigured(f"{name}={number} is above the maximum of {maximum}")
        return number

    def number(
        self, name: builtins.str, default: builtins.float, *, minimum: builtins.float | None = None
    ) -> builtins.float:
        value = self._raw(name)
        if not value:
            return default
        try:
            number = builtins.float(value)
        except ValueError:
            raise ImproperlyConfigured(f"{name}={value!r} is not a number") from None
        if minimum is not None and number < minimum:
            raise ImproperlyConfigured(f"{name}={number} is below the minimum of {minimum}")
        return number

    def csv(
        self, name: builtins.str, default: builtins.list[builtins.str] | None = None
    ) -> builtins.list[builtins.str]:
        value = self._raw(name)
        if value is None:
            return builtins.list(default or [])
        return [item.strip() for item in value.split(",") if item.strip()]

    def url(
        self, name: builtins.str, default: builtins.str, *, schemes: tuple[builtins.str, ...]
    ) -> builtins.str:
        value = self._raw(name) or default
        parts = urlsplit(value)
        if parts.scheme not in schemes or not parts.hostname:
            raise ImproperlyConfigured(
                f"{name}={value!r} is not a URL with scheme {' or '.join(schemes)} and a host"
            )
        try:
            parts.port  # noqa: B018 - accessing .port validates it
        except ValueError:
            raise ImproperlyConfigured(f"{name}={value!r} has an invalid port") from None
        return value

    def choice(
        self, name: builtins.str, default: builtins.str, choices: tuple[builtins.str, ...]
    ) -> builtins.str:
        value = self._raw(name) or default
        if value not in choices:
            raise ImproperlyConfigured(f"{name}={value!r} must be one of: {', '.join(choices)}")
        return value


def database_from_url(name: builtins.str, url: str) -> dict[str, object]:
    """Turns postgres://user:pass@host:port/db into a Django DATABASES entry."""
    parts = urlsplit(url)
    database = parts.path.lstrip("/")
    if parts.scheme not in ("postgres", "postgresql") or not database:
        raise ImproperlyConfigured(
            f"{name}={url!r} must look like postgres://user:password@host:port/database"
        )
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": database,
        "USER": parts.username or "",
        "PASSWORD": parts.password or "",
        "HOST": parts.hostname or "",
        "PORT": str(parts.port or 5432),
        "CONN_MAX_AGE": 60,
        "CONN_HEALTH_CHECKS": True,
        "TEST": {"NAME": f"test_{database}"},
    }

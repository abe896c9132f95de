"""Serializer fields shared by the apps' APIs."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers


class SlugRelatedField(serializers.SlugRelatedField):
    """DRF's SlugRelatedField, but text PostgreSQL cannot hold (a NUL) is "no such object".

    DRF looks the slug up as given; a NUL byte made PostgreSQL fail the query (a 500).
    """

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, str) and "\x00" in data:
            self.fail("does_not_exist", slug_name=self.slug_field, value=data.replace("\x00", ""))
        return super().to_internal_value(data)

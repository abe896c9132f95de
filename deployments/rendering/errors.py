"""The renderers' one error type."""

from __future__ import annotations


class SpecError(ValueError):
    """A spec that cannot be rendered into valid manifests; `field` names the culprit."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field

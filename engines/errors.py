"""The error engines and renderers raise for a setting they refuse."""

from __future__ import annotations


class SpecError(ValueError):
    """A spec that cannot be served or rendered as asked; `field` names the culprit."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field

"""The renderers' one error type (owned by ``engines``, which refuses settings too)."""

from __future__ import annotations

from engines.errors import SpecError

__all__ = ["SpecError"]

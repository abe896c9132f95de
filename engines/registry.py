"""The one list of inference engines the portal can run."""

from __future__ import annotations

from engines.base import InferenceEngine
from engines.sglang import SGLANG_ENGINE
from engines.tgi import TGI_ENGINE
from engines.vllm import VLLM_ENGINE

ENGINES: dict[str, InferenceEngine] = {
    engine.name: engine for engine in (TGI_ENGINE, VLLM_ENGINE, SGLANG_ENGINE)
}
DEFAULT_ENGINE = TGI_ENGINE.name


class UnknownEngine(ValueError):
    def __init__(self, name: str) -> None:
        super().__init__(f"unknown engine {name!r} (known: {', '.join(sorted(ENGINES))})")
        self.name = name


def get_engine(name: str) -> InferenceEngine:
    try:
        return ENGINES[name]
    except KeyError:
        raise UnknownEngine(name) from None


def engine_choices() -> list[tuple[str, str]]:
    """(name, label) pairs for model fields and forms, in registry order."""
    return [(engine.name, engine.label) for engine in ENGINES.values()]

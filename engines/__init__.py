"""Inference engines as plug-ins: everything that differs between TGI, vLLM and SGLang.

Each engine is one subpackage (``engines/tgi``, ``engines/vllm``, ``engines/sglang``) holding an
object that satisfies ``engines.base.InferenceEngine``; ``engines.registry.ENGINES`` is the only
list of them. Nothing else in the portal names an engine: deployments, the gateway, metrics,
alerts and the fit check ask the engine object. This package imports no Django app.
"""

from engines.base import InferenceEngine
from engines.registry import DEFAULT_ENGINE, ENGINES, engine_choices, get_engine

__all__ = ["DEFAULT_ENGINE", "ENGINES", "InferenceEngine", "engine_choices", "get_engine"]

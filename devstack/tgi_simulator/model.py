"""Find and read the deployed model's files the way TGI does.

* Where the cache is: ``--huggingface-hub-cache`` (passed to the shards as
  HUGGINGFACE_HUB_CACHE, launcher/src/main.rs), else huggingface_hub's own resolution:
  ``HF_HUB_CACHE``/``HUGGINGFACE_HUB_CACHE``, else ``$HF_HOME/hub`` (the TGI image sets
  HF_HOME=/data).
* ``--model-id`` may be a local directory (``save_pretrained`` layout), as in TGI's get_config.
* config.json gives ``max_position_embeddings`` (or ``max_seq_len``/``n_positions``) and
  ``quantization_config.quant_method`` (launcher/src/main.rs ``RawConfig`` -> ``Config``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def hub_cache_dir(cli_cache: str | None, env: Mapping[str, str]) -> Path:
    if cli_cache:
        return Path(cli_cache)
    for name in ("HUGGINGFACE_HUB_CACHE", "HF_HUB_CACHE"):
        if env.get(name):
            return Path(env[name])
    home = env.get("HF_HOME") or os.path.join(
        env.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "huggingface"
    )
    return Path(home) / "hub"


def locate_snapshot(model_id: str, revision: str | None, hub_cache: Path) -> Path:
    """The snapshot directory; raises ``devstack.model_files.MissingWeights`` when absent."""
    local = Path(model_id)
    if local.is_dir():
        return local
    from devstack.model_files import find_snapshot

    return find_snapshot(hub_cache, model_id, revision or "main")


@dataclass(frozen=True)
class ModelConfig:
    """The few config.json fields the launcher reads."""

    max_position_embeddings: int | None
    quantize: str | None

    @classmethod
    def read(cls, snapshot: Path) -> ModelConfig | None:
        try:
            raw: dict[str, Any] = json.loads((snapshot / "config.json").read_text())
        except (OSError, ValueError):
            return None  # TGI: `get_config(...).ok()` — a missing config is not fatal
        max_pos = next(
            (
                raw[k]
                for k in ("max_position_embeddings", "max_seq_len", "n_positions")
                if isinstance(raw.get(k), int)
            ),
            None,
        )
        quant = (raw.get("quantization_config") or {}).get("quant_method")
        return cls(max_pos, quant if isinstance(quant, str) else None)

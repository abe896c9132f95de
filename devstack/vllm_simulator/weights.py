"""Finding the deployed model's files the way vLLM and SGLang do, and loading its tokenizer.

Both engines hand the model name to ``huggingface_hub`` (``snapshot_download(cache_dir=
download_dir, revision=...)`` in vllm/model_executor/model_loader/weight_utils.py and
sglang/srt/model_loader/weight_utils.py), so the cache root is ``--download-dir`` if given,
else ``HF_HUB_CACHE``, else ``$HF_HOME/hub``. A local directory is used as is. With
``HF_HUB_OFFLINE=1`` nothing is fetched: absent files are a start-up error.

Tokenization and chat templates come from the snapshot through :mod:`devstack.model_files`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from devstack.model_files import MissingWeights, ModelTokenizer, NoChatTemplate
from devstack.model_files import find_snapshot as find_hub_snapshot

__all__ = ["ModelTokenizer", "NoChatTemplate", "WeightsError", "find_snapshot", "hub_cache_dir"]


class WeightsError(Exception):
    """The weights cannot be found; the message is what the engine would log."""


def hub_cache_dir(download_dir: str | None, env: Mapping[str, str]) -> Path:
    """huggingface_hub.constants: HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/huggingface/hub."""
    if download_dir:
        return Path(download_dir).expanduser()
    for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if env.get(name):
            return Path(env[name]).expanduser()
    home = env.get("HF_HOME") or os.path.join(env.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    return Path(home).expanduser() / "hub"


def find_snapshot(model: str, revision: str | None, cache: Path) -> Path:
    """The snapshot directory of ``model`` (a repo id, or a local directory used as is)."""
    local = Path(model)
    if local.is_dir():
        return local
    try:
        return find_hub_snapshot(cache, model, revision or "main")
    except MissingWeights as exc:
        raise WeightsError(str(exc)) from None


def load_tokenizer(snapshot: Path) -> ModelTokenizer:
    return ModelTokenizer.from_dir(snapshot)


@dataclass(frozen=True)
class ModelConfig:
    """The parts of config.json the engines derive limits from."""

    architectures: tuple[str, ...]
    max_position_embeddings: int
    num_attention_heads: int
    num_key_value_heads: int
    num_hidden_layers: int
    hidden_size: int
    torch_dtype: str
    quantization_method: str | None
    head_dim: int

    @classmethod
    def read(cls, snapshot: Path) -> ModelConfig:
        data = json.loads((snapshot / "config.json").read_text())
        heads = int(data.get("num_attention_heads", 32))
        quant = data.get("quantization_config") or {}
        return cls(
            architectures=tuple(data.get("architectures") or ("LlamaForCausalLM",)),
            max_position_embeddings=int(
                data.get("max_position_embeddings") or data.get("n_positions") or 4096
            ),
            num_attention_heads=heads,
            num_key_value_heads=int(data.get("num_key_value_heads", heads)),
            num_hidden_layers=int(data.get("num_hidden_layers", 32)),
            hidden_size=int(data.get("hidden_size", 4096)),
            torch_dtype=str(data.get("torch_dtype") or data.get("dtype") or "bfloat16"),
            quantization_method=quant.get("quant_method"),
            head_dim=int(data.get("head_dim") or int(data.get("hidden_size", 4096)) // heads),
        )

    def kv_bytes_per_token(self, kv_dtype_bytes: int) -> int:
        kv_heads = self.num_key_value_heads
        return 2 * self.num_hidden_layers * kv_heads * self.head_dim * kv_dtype_bytes


def weights_bytes(snapshot: Path) -> int:
    total = 0
    for pattern in ("*.safetensors", "*.bin"):
        for f in snapshot.glob(pattern):
            try:
                total += f.stat().st_size
            except OSError:
                continue
    return total

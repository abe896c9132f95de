"""Turning the Hub's answers into the facts the registry stores (pure functions)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from models_registry.constants import (
    DTYPE_BYTES,
    RESTRICTED_LICENSE_FAMILIES,
    TGI_NATIVE_MODEL_TYPES,
)


@dataclass(frozen=True)
class ModelFacts:
    """Everything the registry records about one commit of a Hub model."""

    repo_id: str
    commit_sha: str
    pipeline_tag: str
    library_name: str
    architectures: list[str]
    model_type: str
    license: str
    license_family: str
    gated: str
    private: bool
    parameters_by_dtype: dict[str, int]
    total_parameters: int
    weights_bytes: int
    context_length: int | None
    num_hidden_layers: int | None
    num_attention_heads: int | None
    num_key_value_heads: int | None
    head_dim: int | None
    hidden_size: int | None
    torch_dtype: str
    quantization_method: str
    quantization_bits: int | None
    requires_custom_code: bool
    custom_code_reason: str
    has_chat_template: bool = False
    files: list[dict[str, Any]] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)

    def as_fields(self) -> dict[str, Any]:
        """Keyword arguments for a ModelRevision."""
        values = asdict(self)
        values.pop("repo_id")
        return values


def _attr(info: Any, name: str, default: Any = None) -> Any:
    value = getattr(info, name, default)
    return default if value is None else value


def _text_config(config: dict[str, Any]) -> dict[str, Any]:
    # Multimodal configs keep the language model's numbers under text_config.
    nested = config.get("text_config")
    return {**config, **nested} if isinstance(nested, dict) else config


def _context_length(config: dict[str, Any]) -> int | None:
    for key in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = config.get(key)
        if isinstance(value, int) and value > 0:
            return value
    return None


def license_of(info: Any) -> str:
    card = _attr(info, "card_data") or _attr(info, "cardData")
    license_id = ""
    if card is not None:
        license_id = (
            card.get("license", "") if isinstance(card, dict) else getattr(card, "license", "")
        )
    if not license_id:
        license_id = next(
            (tag.split(":", 1)[1] for tag in _attr(info, "tags", []) if tag.startswith("license:")),
            "",
        )
    return str(license_id or "")


def license_family(license_id: str) -> str:
    """The restricted family a licence belongs to, or "" for permissive licences."""
    return RESTRICTED_LICENSE_FAMILIES.get(license_id.lower(), "")


def custom_code_reason(config: dict[str, Any], tags: list[str]) -> str:
    """Why serving needs trust_remote_code, or "" when TGI serves the model natively."""
    auto_map = config.get("auto_map") or {}
    model_type = str(config.get("model_type", ""))
    if model_type and model_type not in TGI_NATIVE_MODEL_TYPES:
        return f"model type '{model_type}' is not served natively by TGI"
    if any(key.startswith("AutoModel") for key in auto_map):
        return "config.json maps AutoModel to code in the repository (auto_map)"
    if not model_type and "custom_code" in tags:
        return "the repository is tagged custom_code"
    return ""


# transformers (>= 4.50) may save the template beside tokenizer_config.json instead of inside it.
CHAT_TEMPLATE_FILES = ("chat_template.jinja",)


def has_chat_template(tokenizer_config: dict[str, Any] | None, file_names: list[str]) -> bool:
    """Whether a commit ships a chat template, as transformers finds one when loading it.

    tokenizer_config.json's `chat_template` is one template (a string) or a list of named ones;
    an empty string or list is no template. Models without one (base models) cannot serve chat
    requests: TGI answers 422 "Template error: template not found".
    """
    if any(name in CHAT_TEMPLATE_FILES for name in file_names):
        return True
    template = (tokenizer_config or {}).get("chat_template")
    if isinstance(template, str):
        return bool(template.strip())
    if isinstance(template, list):
        return any(isinstance(item, dict) and item.get("template") for item in template)
    return False


def extract_facts(
    info: Any,
    config: dict[str, Any],
    requested_revision: str,
    tokenizer_config: dict[str, Any] | None = None,
) -> ModelFacts:
    """Facts from a huggingface_hub ModelInfo and the full config.json and tokenizer_config.json
    of the same commit (None when the commit has no tokenizer_config.json)."""
    text = _text_config(config)
    safetensors = _attr(info, "safetensors")
    parameters = dict(getattr(safetensors, "parameters", {}) or {}) if safetensors else {}
    total = int(getattr(safetensors, "total", 0) or sum(parameters.values())) if safetensors else 0
    siblings = _attr(info, "siblings", [])
    files = sorted(
        ({"name": s.rfilename, "size": s.size, "blob_id": s.blob_id} for s in siblings),
        key=lambda f: f["name"],
    )
    # The checkpoint as stored: parameter counts × element size (what the Hub's safetensors
    # metadata says); weight file sizes only when the repository publishes no counts.
    weights_bytes = int(sum(n * DTYPE_BYTES.get(d, 2) for d, n in parameters.items()))
    if not weights_bytes:
        weights_bytes = sum(
            f["size"] or 0 for f in files if str(f["name"]).endswith((".safetensors", ".bin"))
        )
    quantization = config.get("quantization_config") or {}
    attention_heads = text.get("num_attention_heads")
    hidden = text.get("hidden_size")
    head_dim = text.get("head_dim") or (
        hidden // attention_heads if hidden and attention_heads else None
    )
    license_id = license_of(info)
    gated = _attr(info, "gated", False)
    tags = list(_attr(info, "tags", []))
    return ModelFacts(
        repo_id=str(info.id),
        commit_sha=str(info.sha),
        pipeline_tag=str(_attr(info, "pipeline_tag", "")),
        library_name=str(_attr(info, "library_name", "")),
        architectures=list(config.get("architectures") or []),
        model_type=str(config.get("model_type", "")),
        license=license_id,
        license_family=license_family(license_id),
        gated=gated if isinstance(gated, str) else "",
        private=bool(_attr(info, "private", False)),
        parameters_by_dtype={str(k): int(v) for k, v in parameters.items()},
        total_parameters=total,
        weights_bytes=int(weights_bytes),
        context_length=_context_length(text),
        num_hidden_layers=text.get("num_hidden_layers"),
        num_attention_heads=attention_heads,
        num_key_value_heads=text.get("num_key_value_heads") or attention_heads,
        head_dim=head_dim,
        hidden_size=hidden,
        torch_dtype=str(text.get("torch_dtype") or config.get("torch_dtype") or ""),
        quantization_method=str(quantization.get("quant_method", "")),
        quantization_bits=quantization.get("bits"),
        requires_custom_code=bool(custom_code_reason(config, tags)),
        custom_code_reason=custom_code_reason(config, tags),
        has_chat_template=has_chat_template(tokenizer_config, [str(f["name"]) for f in files]),
        files=files,
        config=config,
    )


def describe_changes(old: dict[str, Any], new: ModelFacts) -> dict[str, Any]:
    """What an update would change: commit, files, config keys and licence."""
    old_files = {f["name"]: f for f in old.get("files", [])}
    new_files = {f["name"]: f for f in new.files}
    old_config, new_config = old.get("config", {}), new.config
    return {
        "commit": [old.get("commit_sha"), new.commit_sha],
        "files_added": sorted(set(new_files) - set(old_files)),
        "files_removed": sorted(set(old_files) - set(new_files)),
        "files_changed": sorted(
            name
            for name in set(old_files) & set(new_files)
            if old_files[name].get("blob_id") != new_files[name].get("blob_id")
        ),
        "config_changed": {
            key: [old_config.get(key), new_config.get(key)]
            for key in sorted(set(old_config) | set(new_config))
            if old_config.get(key) != new_config.get(key)
        },
        "license": [old.get("license"), new.license] if old.get("license") != new.license else None,
        "chat_template": (
            [old.get("has_chat_template"), new.has_chat_template]
            if old.get("has_chat_template") not in (None, new.has_chat_template)
            else None
        ),
    }

"""Real tokenizer files for the local Hub, built from tokenizers that ship inside PyPI packages.

`llama-models` carries Llama 3's `tokenizer.model` (tiktoken BPE ranks: 128,000 byte-level
tokens) and `mistral-common` carries Mistral's sentencepiece models. From them this module
writes what a model repository on the Hub holds: a `tokenizer.json` for the `tokenizers`
library, `tokenizer_config.json` (special tokens and, for instruct models only, the chat
template) and `special_tokens_map.json`.

The conversions follow transformers' `convert_slow_tokenizer.py`: for tiktoken, the byte-level
BPE vocabulary is the ranks and the merges are recovered from them (every split of a token into
two tokens, ordered by the rank of the result); for sentencepiece, a byte-fallback BPE whose
merges come from the pieces ordered by score. Building takes a few seconds, so the files are
cached under PORTAL_CACHE_DIR, keyed by this module's recipe version and the source file's hash.

Chat templates are the ones the model repositories publish (`templates/*.jinja`, unchanged
text): Llama 3.1 Instruct's, Mistral 7B Instruct v0.3's (tool-calling version) and v0.2's.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import importlib.util
import json
import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tokenizers import (
    AddedToken,
    Regex,
    Tokenizer,
    decoders,
    models,
    normalizers,
    pre_tokenizers,
    processors,
)

# Bump when the recipe below changes, so cached files are rebuilt.
RECIPE_VERSION = "1"

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"

# --------------------------------------------------------------------------------------------
# Where the source files are
# --------------------------------------------------------------------------------------------


def _package_file(package: str, *parts: str) -> Path:
    """A data file inside an installed package, found without importing the package."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"the {package} package is not installed (./dev setup installs devstack's tokenizers)"
        )
    return Path(next(iter(spec.submodule_search_locations))).joinpath(*parts)


def llama3_tiktoken_file() -> Path:
    return _package_file("llama_models", "llama3", "tokenizer.model")


def mistral_sentencepiece_file(version: str) -> Path:
    names = {
        "v1": "tokenizer.model.v1",
        "v3": "mistral_instruct_tokenizer_240323.model.v3",
        "v7": "mistral_instruct_tokenizer_241114.model.v7",
    }
    return _package_file("mistral_common", "data", names[version])


def cache_root() -> Path:
    """PORTAL_CACHE_DIR (default ~/.cache/inference-portal), as devstack.cluster.config.cache_dir
    resolves it (not imported: that package pulls in the Kubernetes client)."""
    configured = os.environ.get("PORTAL_CACHE_DIR")
    base = Path(configured) if configured else Path.home() / ".cache" / "inference-portal"
    return base.expanduser() / "model-files"


# --------------------------------------------------------------------------------------------
# Llama 3: tiktoken ranks -> byte-level BPE
# --------------------------------------------------------------------------------------------

# llama_models/llama3/tokenizer.py (Tokenizer.pat_str); the same regex is the Split
# pre-tokenizer of Meta's tokenizer.json on the Hub.
LLAMA3_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
    r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
LLAMA3_BOS = "<|begin_of_text|>"
LLAMA3_EOS_BASE = "<|end_of_text|>"
LLAMA3_EOT = "<|eot_id|>"


def llama31_special_tokens() -> list[str]:
    """The 256 special tokens of Llama 3.1 in id order from 128000, named as in the Hub's
    tokenizer.json (Llama 3.1 gave names to reserved slots 128004, 128008 and 128010)."""
    named = {
        0: LLAMA3_BOS,
        1: LLAMA3_EOS_BASE,
        4: "<|finetune_right_pad_id|>",
        6: "<|start_header_id|>",
        7: "<|end_header_id|>",
        8: "<|eom_id|>",
        9: LLAMA3_EOT,
        10: "<|python_tag|>",
    }
    tokens: list[str] = []
    reserved = 0
    for offset in range(256):
        if offset in named:
            tokens.append(named[offset])
        else:
            tokens.append(f"<|reserved_special_token_{reserved}|>")
            reserved += 1
    return tokens


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character map used by byte-level BPE."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    mapping = {byte: chr(byte) for byte in printable}
    extra = 0
    for byte in range(256):
        if byte not in mapping:
            mapping[byte] = chr(256 + extra)
            extra += 1
    return mapping


def load_tiktoken_ranks(path: Path) -> dict[bytes, int]:
    ranks: dict[bytes, int] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks


def merges_from_ranks(ranks: Mapping[bytes, int]) -> list[tuple[bytes, bytes]]:
    """Every (left, right) split of a token into two tokens, ordered by the merged token's rank
    then by the ranks of its halves: tiktoken always merges the adjacent pair whose result has
    the lowest rank, which this order reproduces."""
    found: list[tuple[int, int, int, bytes, bytes]] = []
    for token, rank in ranks.items():
        for split in range(1, len(token)):
            left, right = token[:split], token[split:]
            left_rank = ranks.get(left)
            right_rank = ranks.get(right)
            if left_rank is not None and right_rank is not None:
                found.append((rank, left_rank, right_rank, left, right))
    found.sort()
    return [(left, right) for _, _, _, left, right in found]


def build_llama3_tokenizer(tiktoken_file: Path) -> Tokenizer:
    ranks = load_tiktoken_ranks(tiktoken_file)
    byte_chars = _bytes_to_unicode()

    def as_text(token: bytes) -> str:
        return "".join(byte_chars[byte] for byte in token)

    vocab = {as_text(token): rank for token, rank in ranks.items()}
    merges = [(as_text(left), as_text(right)) for left, right in merges_from_ranks(ranks)]
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=merges, ignore_merges=True))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(LLAMA3_PATTERN), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    specials = llama31_special_tokens()
    tokenizer.add_special_tokens(
        [AddedToken(token, special=True, normalized=False) for token in specials]
    )
    bos_id = len(ranks)
    tokenizer.post_processor = processors.Sequence(
        [
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(
                single=f"{LLAMA3_BOS}:0 $A:0",
                pair=f"{LLAMA3_BOS}:0 $A:0 {LLAMA3_BOS}:1 $B:1",
                special_tokens=[(LLAMA3_BOS, bos_id)],
            ),
        ]
    )
    return tokenizer


# --------------------------------------------------------------------------------------------
# Mistral: sentencepiece -> byte-fallback BPE
# --------------------------------------------------------------------------------------------


def build_sentencepiece_bpe(model_file: Path) -> Tokenizer:
    import sentencepiece

    processor = sentencepiece.SentencePieceProcessor(model_file=str(model_file))
    size = processor.get_piece_size()
    vocab = {processor.id_to_piece(i): i for i in range(size)}
    scores = {processor.id_to_piece(i): processor.get_score(i) for i in range(size)}
    mergeable = {
        processor.id_to_piece(i)
        for i in range(size)
        if not (processor.is_control(i) or processor.is_unknown(i) or processor.is_byte(i))
    }
    # sentencepiece BPE merges the adjacent pair whose result scores highest.
    found: list[tuple[float, int, int, int, str, str]] = []
    for piece in mergeable:
        for split in range(1, len(piece)):
            left, right = piece[:split], piece[split:]
            if left in mergeable and right in mergeable:
                found.append((-scores[piece], vocab[piece], vocab[left], vocab[right], left, right))
    found.sort()
    merges = [(left, right) for *_, left, right in found]
    unk = processor.id_to_piece(processor.unk_id())
    tokenizer = Tokenizer(
        models.BPE(vocab=vocab, merges=merges, unk_token=unk, fuse_unk=True, byte_fallback=True)
    )
    # sentencepiece with add_dummy_prefix and an identity normalizer: one "▁" always starts the
    # text, even text that starts with spaces, and every space becomes "▁". This is the
    # normalizer transformers' LlamaConverter writes (legacy): like the Hub's Mistral
    # tokenizer.json, it also prefixes the text that follows a control token such as [INST].
    tokenizer.normalizer = normalizers.Sequence(
        [normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")]
    )
    tokenizer.decoder = decoders.Sequence(
        [
            decoders.Replace("▁", " "),
            decoders.ByteFallback(),
            decoders.Fuse(),
            decoders.Strip(" ", 1, 0),
        ]
    )
    control = [
        AddedToken(processor.id_to_piece(i), special=True, normalized=False)
        for i in range(size)
        if processor.is_control(i) or processor.is_unknown(i)
    ]
    tokenizer.add_special_tokens(control)
    bos = processor.id_to_piece(processor.bos_id())
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos}:0 $A:0",
        pair=f"{bos}:0 $A:0 {bos}:1 $B:1",
        special_tokens=[(bos, processor.bos_id())],
    )
    return tokenizer


# --------------------------------------------------------------------------------------------
# Tokenizer configs as the repositories publish them
# --------------------------------------------------------------------------------------------


def chat_template(name: str) -> str:
    return (TEMPLATES_DIR / f"{name}.jinja").read_text(encoding="utf-8")


def _added_tokens_decoder(added_tokens: list[dict[str, Any]]) -> dict[str, Any]:
    """tokenizer_config.json's copy of tokenizer.json's added tokens, keyed by id."""
    keys = ("content", "lstrip", "normalized", "rstrip", "single_word", "special")
    return {str(added["id"]): {key: added[key] for key in keys} for added in added_tokens}


def _json(data: Mapping[str, Any]) -> bytes:
    return (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode()


@dataclass(frozen=True)
class TokenizerRecipe:
    """One published tokenizer: how to build tokenizer.json and what its config says."""

    name: str
    source: Callable[[], Path]
    build: Callable[[Path], Tokenizer]
    bos_token: str
    eos_token: str
    model_max_length: int
    tokenizer_class: str
    template: str | None
    extra_config: Mapping[str, Any]
    unk_token: str | None = None

    def config(self, added_tokens: list[dict[str, Any]]) -> dict[str, Any]:
        data: dict[str, Any] = {
            "add_bos_token": True,
            "add_eos_token": False,
            "added_tokens_decoder": _added_tokens_decoder(added_tokens),
            "bos_token": self.bos_token,
            "clean_up_tokenization_spaces": False,
            "eos_token": self.eos_token,
            "model_max_length": self.model_max_length,
            "tokenizer_class": self.tokenizer_class,
            **self.extra_config,
        }
        if self.unk_token is not None:
            data["unk_token"] = self.unk_token
        if self.template is not None:
            data["chat_template"] = chat_template(self.template)
        return dict(sorted(data.items()))

    def special_tokens_map(self) -> dict[str, Any]:
        data = {"bos_token": self.bos_token, "eos_token": self.eos_token}
        if self.unk_token is not None:
            data["unk_token"] = self.unk_token
        return data


def _llama31(name: str, *, eos_token: str, template: str | None) -> TokenizerRecipe:
    return TokenizerRecipe(
        name=name,
        source=llama3_tiktoken_file,
        build=build_llama3_tokenizer,
        bos_token=LLAMA3_BOS,
        eos_token=eos_token,
        model_max_length=131072,
        tokenizer_class="PreTrainedTokenizerFast",
        template=template,
        extra_config={"model_input_names": ["input_ids", "attention_mask"]},
    )


def _mistral(name: str, *, version: str, template: str | None) -> TokenizerRecipe:
    return TokenizerRecipe(
        name=name,
        source=lambda: mistral_sentencepiece_file(version),
        build=build_sentencepiece_bpe,
        bos_token="<s>",  # noqa: S106 - tokenizer tokens, not secrets
        eos_token="</s>",  # noqa: S106
        unk_token="<unk>",  # noqa: S106
        model_max_length=32768,
        tokenizer_class="LlamaTokenizer",
        template=template,
        extra_config={
            "legacy": True,
            "pad_token": None,
            "sp_model_kwargs": {},
            "spaces_between_special_tokens": False,
            "use_default_system_prompt": False,
        },
    )


RECIPES: dict[str, TokenizerRecipe] = {
    recipe.name: recipe
    for recipe in (
        # meta-llama/Llama-3.1-8B-Instruct (and 70B, and quantized copies): chat turns end
        # with <|eot_id|>, which is the tokenizer's eos token.
        _llama31("llama-3.1-instruct", eos_token=LLAMA3_EOT, template="llama-3.1-instruct"),
        # meta-llama/Llama-3.1-8B: the pretrained model, no chat template.
        _llama31("llama-3.1-base", eos_token=LLAMA3_EOS_BASE, template=None),
        # mistralai/Mistral-7B-Instruct-v0.3: the v3 sentencepiece model (32,768 ids, control
        # tokens [INST] 3, [/INST] 4, ...).
        _mistral("mistral-v3-instruct", version="v3", template="mistral-v0.3-instruct"),
        # mistralai/Mistral-7B-v0.3: the pretrained model, no chat template.
        _mistral("mistral-v3-base", version="v3", template=None),
        # Mistral-7B-Instruct-v0.1/v0.2 (and their GPTQ copies): the v1 model, 32,000 ids.
        _mistral("mistral-v1-instruct", version="v1", template="mistral-v0.2-instruct"),
    )
}


# --------------------------------------------------------------------------------------------
# Building with a cache
# --------------------------------------------------------------------------------------------


@functools.cache
def tokenizer_files(recipe_name: str) -> dict[str, bytes]:
    """tokenizer.json, tokenizer_config.json and special_tokens_map.json of a published tokenizer.

    tokenizer.json is built once per machine (a few seconds for Llama 3) and cached under
    PORTAL_CACHE_DIR; the small configs are written from the recipe each time.
    """
    recipe = RECIPES[recipe_name]
    tokenizer_json = _cached_tokenizer_json(recipe)
    added_tokens = json.loads(tokenizer_json)["added_tokens"]
    return {
        "tokenizer.json": tokenizer_json,
        "tokenizer_config.json": _json(recipe.config(added_tokens)),
        "special_tokens_map.json": _json(recipe.special_tokens_map()),
    }


def _cached_tokenizer_json(recipe: TokenizerRecipe) -> bytes:
    # Keyed by what the file depends on: the recipe version, the builder and the source file.
    source = recipe.source()
    source_hash = hashlib.sha256(source.read_bytes()).hexdigest()
    key = hashlib.sha256(
        f"{RECIPE_VERSION}\0{recipe.build.__name__}\0{source_hash}".encode()
    ).hexdigest()[:16]
    cached = cache_root() / f"{source.name}-{key}" / "tokenizer.json"
    if cached.is_file():
        return cached.read_bytes()
    content = recipe.build(source).to_str().encode()
    cached.parent.mkdir(parents=True, exist_ok=True)
    # Written then renamed: concurrent test processes may build the same file.
    with tempfile.NamedTemporaryFile(dir=cached.parent, delete=False) as handle:
        handle.write(content)
    Path(handle.name).replace(cached)
    return content

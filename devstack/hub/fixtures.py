"""Fixture repositories and access tokens served by the local Hub (``python -m devstack.hub``).

Facts only, written in our own words. Parameter counts, layer/head sizes, context lengths and
licences are the published ones (each count was re-derived from the architecture below, and the
derivation is noted next to it). Commit shas are SYNTHETIC (sha1 of our own text): deterministic
across runs, but not the real Hub's. Dates, download and like counts are approximate.

Weight files are tiny *stand-ins*: valid safetensors files of a few KB with one or two small
tensors named ``devstack_stand_in.*``. The real parameter counts live in
``model_info().safetensors`` (what the portal sizes GPUs from), and the real byte size of the
checkpoint in ``model.safetensors.index.json``'s ``metadata.total_size``. Parsing the stand-in
headers (``HfApi.get_safetensors_metadata``) therefore gives tiny counts, on purpose.

Public helpers: :func:`repos`, :func:`repo`, :func:`tokens`, plus the ``*_ID`` and ``TOKEN_*``
constants below.
"""

from __future__ import annotations

import fnmatch
import functools
import hashlib
import json
import struct
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import yaml

from devstack.model_files import real as real_tokenizers

# --------------------------------------------------------------------------------------------
# Public identifiers
# --------------------------------------------------------------------------------------------

LLAMA_8B_ID = "meta-llama/Llama-3.1-8B-Instruct"
# The pretrained (base) model: same tokenizer, no chat template.
LLAMA_8B_BASE_ID = "meta-llama/Llama-3.1-8B"
MISTRAL_7B_ID = "mistralai/Mistral-7B-Instruct-v0.3"
GEMMA_9B_ID = "google/gemma-2-9b-it"
LLAMA_8B_AWQ_ID = "hugging-quants/Meta-Llama-3.1-8B-Instruct-AWQ-INT4"
MISTRAL_GPTQ_ID = "TheBloke/Mistral-7B-Instruct-v0.2-GPTQ"
LLAMA_70B_ID = "meta-llama/Llama-3.1-70B-Instruct"
CUSTOM_CODE_ID = "acme/custom-arch-7b"
CUSTOM_CODE_NEXT_BRANCH = "rope-scaling"
MINILM_ID = "sentence-transformers/all-MiniLM-L6-v2"
PRIVATE_ID = "acme/support-assistant-llama-3.1-8b"

# Valid, may read everything (gated and private repos included).
TOKEN_READ = "hf_portal_valid_read"  # noqa: S105 - fixture token, not a secret
# Valid, but NOT granted any gated or private repo.
TOKEN_NO_GATED = "hf_portal_no_gated"  # noqa: S105
# Valid write token of the same user as TOKEN_READ.
TOKEN_WRITE = "hf_portal_valid_write"  # noqa: S105
# Fine-grained token scoped to one gated repo (Llama-3.1-8B-Instruct) and public repos.
TOKEN_FINE_GRAINED = "hf_portal_fine_grained"  # noqa: S105
# Any token not in the table is invalid; this one is handy for tests.
TOKEN_INVALID = "hf_portal_invalid"  # noqa: S105

Gated = Literal[False, "auto", "manual"]
Role = Literal["read", "write", "fineGrained"]

# Files stored with Git LFS (what the generated .gitattributes says).
LFS_PATTERNS: tuple[str, ...] = (
    "*.safetensors",
    "*.bin",
    "*.pth",
    "*.pt",
    "*.model",
    "*.model.v3",
    "*.onnx",
    "*.h5",
    "*.msgpack",
    "*.gguf",
)

BYTES_PER_DTYPE: Mapping[str, int] = {
    "F64": 8,
    "F32": 4,
    "I64": 8,
    "I32": 4,
    "BF16": 2,
    "F16": 2,
    "I16": 2,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
    "I8": 1,
    "U8": 1,
}


# --------------------------------------------------------------------------------------------
# Data model
# --------------------------------------------------------------------------------------------


def git_blob_sha1(content: bytes) -> str:
    """Git object id of a blob (what the Hub reports as ``oid``/``blobId``)."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content, usedforsecurity=False).hexdigest()


def is_lfs_path(path: str) -> bool:
    name = path.rsplit("/", 1)[-1]
    return any(fnmatch.fnmatch(name, pattern) for pattern in LFS_PATTERNS)


@dataclass(frozen=True)
class RepoFile:
    """One file of a commit's tree."""

    path: str
    content: bytes

    @property
    def size(self) -> int:
        return len(self.content)

    @property
    def is_lfs(self) -> bool:
        return is_lfs_path(self.path)

    @functools.cached_property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()

    @functools.cached_property
    def lfs_pointer(self) -> bytes:
        return (
            "version https://git-lfs.github.com/spec/v1\n"
            f"oid sha256:{self.sha256}\nsize {self.size}\n"
        ).encode()

    @functools.cached_property
    def blob_id(self) -> str:
        """Git oid: of the LFS pointer for LFS files, of the content otherwise."""
        return git_blob_sha1(self.lfs_pointer if self.is_lfs else self.content)

    @property
    def etag(self) -> str:
        """Unquoted ETag the Hub uses: sha256 for LFS files, git oid otherwise."""
        return self.sha256 if self.is_lfs else self.blob_id


@dataclass(frozen=True)
class Commit:
    """A commit with its full tree and the safetensors parameter counts at that commit."""

    sha: str
    title: str
    message: str
    author: str
    date: str  # ISO 8601, UTC
    parent: str | None
    files: Mapping[str, RepoFile]
    safetensors: Mapping[str, int]  # dtype -> number of stored elements

    def json_file(self, path: str) -> dict[str, Any] | None:
        file = self.files.get(path)
        if file is None:
            return None
        loaded = json.loads(file.content)
        return loaded if isinstance(loaded, dict) else None

    @property
    def config(self) -> dict[str, Any]:
        return self.json_file("config.json") or {}

    @property
    def card_data(self) -> dict[str, Any]:
        """YAML front matter of README.md (the Hub's ``cardData``)."""
        readme = self.files.get("README.md")
        if readme is None:
            return {}
        text = readme.content.decode()
        if not text.startswith("---\n"):
            return {}
        front, _, _ = text[4:].partition("\n---\n")
        loaded = yaml.safe_load(front)
        return loaded if isinstance(loaded, dict) else {}


@dataclass(frozen=True)
class Repo:
    """A model repository: static metadata plus its commits and refs."""

    repo_id: str
    gated: Gated
    private: bool
    pipeline_tag: str | None
    library_name: str | None
    transformers_info: Mapping[str, Any] | None
    # Tags the Hub derives beyond library/pipeline/model_type/card tags/licence (e.g.
    # "conversational", "text-generation-inference", "custom_code", "4-bit").
    extra_tags: tuple[str, ...]
    created_at: str
    downloads: int
    likes: int
    commits: Mapping[str, Commit]  # sha -> commit
    branches: Mapping[str, str]  # name -> sha
    tags: Mapping[str, str] = field(default_factory=dict)  # name -> sha
    pull_requests: Mapping[int, str] = field(default_factory=dict)  # number -> sha
    disabled: bool = False

    @property
    def author(self) -> str:
        return self.repo_id.split("/", 1)[0]

    @property
    def main(self) -> Commit:
        return self.commits[self.branches["main"]]


@dataclass(frozen=True)
class Token:
    """A user access token and what it may read."""

    token: str
    user: str
    fullname: str
    email: str | None
    role: Role
    display_name: str
    created_at: str
    # Repo ids this token may read when they are gated or private; "*" means all of them.
    grants: frozenset[str]
    orgs: tuple[str, ...] = ()


# --------------------------------------------------------------------------------------------
# Tokens
# --------------------------------------------------------------------------------------------


@functools.cache
def tokens() -> dict[str, Token]:
    """The token table (a fresh copy of the defaults is what the server starts from)."""
    table = [
        Token(
            token=TOKEN_READ,
            user="portal-ci",
            fullname="Portal CI",
            email="portal-ci@example.com",
            role="read",
            display_name="portal-ci-read",
            created_at="2025-01-15T09:00:00.000Z",
            grants=frozenset({"*"}),
            orgs=("acme",),
        ),
        Token(
            token=TOKEN_WRITE,
            user="portal-ci",
            fullname="Portal CI",
            email="portal-ci@example.com",
            role="write",
            display_name="portal-ci-write",
            created_at="2025-01-15T09:05:00.000Z",
            grants=frozenset({"*"}),
            orgs=("acme",),
        ),
        Token(
            token=TOKEN_NO_GATED,
            user="portal-newcomer",
            fullname="Portal Newcomer",
            email=None,
            role="read",
            display_name="newcomer-read",
            created_at="2025-03-02T14:30:00.000Z",
            grants=frozenset(),
        ),
        Token(
            token=TOKEN_FINE_GRAINED,
            user="portal-scoped",
            fullname="Portal Scoped Reader",
            email="portal-scoped@example.com",
            role="fineGrained",
            display_name="scoped-llama-8b-only",
            created_at="2025-04-10T11:00:00.000Z",
            grants=frozenset({LLAMA_8B_ID}),
        ),
    ]
    return {t.token: t for t in table}


# --------------------------------------------------------------------------------------------
# File builders (our own text; only the facts are the models')
# --------------------------------------------------------------------------------------------


def _json_bytes(data: Mapping[str, Any]) -> bytes:
    return (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode()


def _deterministic_bytes(seed: str, length: int) -> bytes:
    out = bytearray()
    block = hashlib.sha256(seed.encode()).digest()
    while len(out) < length:
        out.extend(block)
        block = hashlib.sha256(block).digest()
    return bytes(out[:length])


def standin_safetensors(
    seed: str, dtypes: Iterable[str] = ("BF16",), elements: int = 1024
) -> bytes:
    """A valid, tiny safetensors file (one small 1-D tensor per dtype), deterministic per seed."""
    header: dict[str, Any] = {
        "__metadata__": {
            "format": "pt",
            "devstack": "stand-in weights; real parameter counts are in model_info().safetensors",
        }
    }
    data = bytearray()
    for index, dtype in enumerate(dtypes):
        length = elements * BYTES_PER_DTYPE[dtype]
        header[f"devstack_stand_in.{seed.rsplit('/', 1)[-1]}.{index}"] = {
            "dtype": dtype,
            "shape": [elements],
            "data_offsets": [len(data), len(data) + length],
        }
        data.extend(_deterministic_bytes(f"{seed}:{index}", length))
    header_bytes = json.dumps(header, separators=(",", ":")).encode()
    header_bytes += b" " * (-len(header_bytes) % 8)
    return struct.pack("<Q", len(header_bytes)) + header_bytes + bytes(data)


def _shard_names(count: int) -> list[str]:
    if count == 1:
        return ["model.safetensors"]
    return [f"model-{i:05d}-of-{count:05d}.safetensors" for i in range(1, count + 1)]


def weight_files(
    seed: str, shards: int, dtypes: Iterable[str], params: Mapping[str, int]
) -> dict[str, bytes]:
    """Stand-in shards, plus an index (with the REAL total byte size) when sharded."""
    dtypes = tuple(dtypes)
    files = {name: standin_safetensors(f"{seed}/{name}", dtypes) for name in _shard_names(shards)}
    if shards > 1:
        weight_map: dict[str, str] = {}
        for name in files:
            for index in range(len(dtypes)):
                weight_map[f"devstack_stand_in.{name}.{index}"] = name
        total = sum(n * BYTES_PER_DTYPE[dtype] for dtype, n in params.items())
        files["model.safetensors.index.json"] = _json_bytes(
            {"metadata": {"total_size": total}, "weight_map": weight_map}
        )
    return files


def _gitattributes() -> bytes:
    lines = [f"{pattern} filter=lfs diff=lfs merge=lfs -text" for pattern in LFS_PATTERNS]
    return ("\n".join(lines) + "\n").encode()


def _readme(card: Mapping[str, Any], title: str, body: str) -> bytes:
    front = yaml.safe_dump(dict(card), sort_keys=False, allow_unicode=True)
    return f"---\n{front}---\n\n# {title}\n\n{body.strip()}\n\n{_FIXTURE_NOTE}\n".encode()


_FIXTURE_NOTE = (
    "_This is a fixture of the portal's local Hub (devstack). Metadata mirrors the published "
    "model; weight files are small stand-ins._"
)


def _tokenizer_json(unk: str) -> bytes:
    # A minimal word-level tokenizer; the real tokenizer.json files are several MB.
    return _json_bytes(
        {
            "version": "1.0",
            "truncation": None,
            "padding": None,
            "added_tokens": [],
            "normalizer": None,
            "pre_tokenizer": {"type": "Whitespace"},
            "post_processor": None,
            "decoder": None,
            "model": {"type": "WordLevel", "vocab": {unk: 0}, "unk_token": unk},
        }
    )


# Shortened chat templates in the spirit of each family's format, for the fixtures whose real
# tokenizer ships in no PyPI package (Gemma, the made-up custom architecture). Llama and Mistral
# fixtures carry their real tokenizers and templates (devstack.model_files.real).
_MISTRAL_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'user' %}[INST] {{ m['content'] }}"
    " [/INST]{% else %}{{ m['content'] }}{{ eos_token }}{% endif %}{% endfor %}"
)
_GEMMA_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<start_of_turn>"
    "{{ 'model' if m['role'] == 'assistant' else m['role'] }}\n{{ m['content'] | trim }}"
    "<end_of_turn>\n{% endfor %}{% if add_generation_prompt %}<start_of_turn>model\n{% endif %}"
)


def _tokenizer_config(
    bos: str, eos: str, max_len: int, template: str | None, **extra: Any
) -> bytes:
    data: dict[str, Any] = {
        "add_bos_token": True,
        "add_eos_token": False,
        "bos_token": bos,
        "eos_token": eos,
        "clean_up_tokenization_spaces": False,
        "model_max_length": max_len,
        "tokenizer_class": extra.pop("tokenizer_class", "PreTrainedTokenizerFast"),
    }
    if template is not None:
        data["chat_template"] = template
    data.update(extra)
    return _json_bytes(dict(sorted(data.items())))


# --------------------------------------------------------------------------------------------
# Parameter counts (derived from the architecture; each equals the published figure)
# --------------------------------------------------------------------------------------------


def decoder_params(
    *,
    hidden: int,
    intermediate: int,
    layers: int,
    heads: int,
    kv_heads: int,
    head_dim: int,
    vocab: int,
    tied: bool,
) -> int:
    """Dense Llama-style decoder: attention + gated MLP + 2 RMSNorms per layer, final norm."""
    attn = hidden * heads * head_dim * 2 + hidden * kv_heads * head_dim * 2
    mlp = 3 * hidden * intermediate
    per_layer = attn + mlp + 2 * hidden
    embeddings = vocab * hidden * (1 if tied else 2)
    return layers * per_layer + embeddings + hidden


def _linear_shapes(hidden: int, intermediate: int, heads: int, kv: int, hd: int) -> list[tuple]:
    """(in_features, out_features) of the 7 quantized linears of one decoder layer."""
    return [
        (hidden, heads * hd),  # q_proj
        (hidden, kv * hd),  # k_proj
        (hidden, kv * hd),  # v_proj
        (heads * hd, hidden),  # o_proj
        (hidden, intermediate),  # gate_proj
        (hidden, intermediate),  # up_proj
        (intermediate, hidden),  # down_proj
    ]


def packed_int_params(
    *,
    hidden: int,
    intermediate: int,
    layers: int,
    heads: int,
    kv_heads: int,
    head_dim: int,
    vocab: int,
    bits: int,
    group_size: int,
    method: Literal["awq", "gptq"],
) -> dict[str, int]:
    """Stored elements per dtype of an AWQ/GPTQ checkpoint (packed int32 + fp16 scales).

    AWQ (GEMM): qweight [in, out*bits/32], qzeros [in/g, out*bits/32], scales [in/g, out].
    GPTQ: qweight [in*bits/32, out], qzeros [in/g, out*bits/32], scales [in/g, out], g_idx [in].
    Embeddings, lm_head and norms stay fp16.
    """
    pack = 32 // bits
    i32 = f16 = 0
    for fan_in, fan_out in _linear_shapes(hidden, intermediate, heads, kv_heads, head_dim):
        i32 += fan_in * fan_out // pack  # qweight
        i32 += (fan_in // group_size) * (fan_out // pack)  # qzeros
        f16 += (fan_in // group_size) * fan_out  # scales
        if method == "gptq":
            i32 += fan_in  # g_idx
    i32 *= layers
    f16 *= layers
    f16 += 2 * vocab * hidden + (2 * layers + 1) * hidden  # embed + lm_head + norms
    return {"I32": i32, "F16": f16}


# --------------------------------------------------------------------------------------------
# Repo builder
# --------------------------------------------------------------------------------------------


def _commit_sha(repo_id: str, parent: str | None, title: str, files: Mapping[str, RepoFile]) -> str:
    tree = "\n".join(f"{path} {f.blob_id}" for path, f in sorted(files.items()))
    text = f"devstack-hub\0{repo_id}\0{parent or ''}\0{title}\0{tree}"
    return hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()


class _History:
    """Builds a linear (or forked) commit history, each commit being a full tree."""

    def __init__(self, repo_id: str) -> None:
        self.repo_id = repo_id
        self.commits: dict[str, Commit] = {}

    def commit(
        self,
        *,
        title: str,
        date: str,
        author: str,
        params: Mapping[str, int],
        parent: str | None = None,
        add: Mapping[str, bytes] | None = None,
        remove: Iterable[str] = (),
        message: str = "",
    ) -> str:
        files: dict[str, RepoFile] = dict(self.commits[parent].files) if parent else {}
        for path in remove:
            files.pop(path, None)
        for path, content in (add or {}).items():
            files[path] = RepoFile(path, content)
        files = dict(sorted(files.items()))
        sha = _commit_sha(self.repo_id, parent, title, files)
        self.commits[sha] = Commit(
            sha=sha,
            title=title,
            message=message,
            author=author,
            date=date,
            parent=parent,
            files=files,
            safetensors=dict(params),
        )
        return sha


def _llama_config(
    *,
    hidden: int,
    intermediate: int,
    layers: int,
    heads: int,
    kv_heads: int,
    dtype: str = "bfloat16",
    quantization: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    config: dict[str, Any] = {
        "architectures": ["LlamaForCausalLM"],
        "attention_bias": False,
        "attention_dropout": 0.0,
        "bos_token_id": 128000,
        "eos_token_id": [128001, 128008, 128009],
        "head_dim": 128,
        "hidden_act": "silu",
        "hidden_size": hidden,
        "initializer_range": 0.02,
        "intermediate_size": intermediate,
        "max_position_embeddings": 131072,
        "mlp_bias": False,
        "model_type": "llama",
        "num_attention_heads": heads,
        "num_hidden_layers": layers,
        "num_key_value_heads": kv_heads,
        "pretraining_tp": 1,
        "rms_norm_eps": 1e-05,
        "rope_scaling": {
            "factor": 8.0,
            "high_freq_factor": 4.0,
            "low_freq_factor": 1.0,
            "original_max_position_embeddings": 8192,
            "rope_type": "llama3",
        },
        "rope_theta": 500000.0,
        "tie_word_embeddings": False,
        "torch_dtype": dtype,
        "transformers_version": "4.43.0.dev0",
        "use_cache": True,
        "vocab_size": 128256,
    }
    if quantization is not None:
        config["quantization_config"] = dict(quantization)
    return config


def _llama_tokenizer_files(recipe: str = "llama-3.1-instruct") -> dict[str, bytes]:
    """Meta's real Llama 3 tokenizer (from llama-models); the Instruct recipe has the chat
    template, the base recipe none."""
    return real_tokenizers.tokenizer_files(recipe)


_LLAMA_GENERATION = _json_bytes(
    {
        "bos_token_id": 128000,
        "do_sample": True,
        "eos_token_id": [128001, 128008, 128009],
        "temperature": 0.6,
        "top_p": 0.9,
        "transformers_version": "4.42.3",
    }
)

_LLAMA31_CARD: dict[str, Any] = {
    "language": ["en", "de", "fr", "it", "pt", "hi", "es", "th"],
    "license": "llama3.1",
    "pipeline_tag": "text-generation",
    "tags": ["facebook", "meta", "pytorch", "llama", "llama-3"],
    "extra_gated_prompt": "Accept the Llama 3.1 Community License to request access.",
    "extra_gated_fields": {"First Name": "text", "Last Name": "text", "Country": "country"},
}

_LLAMA_LICENSE_TEXT = (
    b"Llama 3.1 Community License Agreement (fixture stand-in: see the published licence for "
    b"the actual terms).\n"
)

# ---- 1. meta-llama/Llama-3.1-8B-Instruct ------------------------------------------------------
# 32 layers, hidden 4096, 32 heads, 8 KV heads, head_dim 128, MLP 14336, vocab 128256, untied:
# 32 * (41,943,040 attn + 176,160,768 mlp + 8,192 norms) + 2 * 525,336,576 + 4,096
# = 8,030,261,248 (published BF16 count).
LLAMA_8B_PARAMS = decoder_params(
    hidden=4096,
    intermediate=14336,
    layers=32,
    heads=32,
    kv_heads=8,
    head_dim=128,
    vocab=128256,
    tied=False,
)


def _llama_8b() -> Repo:
    params = {"BF16": LLAMA_8B_PARAMS}
    h = _History(LLAMA_8B_ID)
    card = {**_LLAMA31_CARD, "base_model": "meta-llama/Llama-3.1-8B"}
    first = h.commit(
        title="Upload Llama 3.1 8B Instruct",
        date="2024-07-18T08:56:00.000Z",
        author="meta-llama",
        params=params,
        add={
            ".gitattributes": _gitattributes(),
            "LICENSE": _LLAMA_LICENSE_TEXT,
            "README.md": _readme(
                card,
                "Llama 3.1 8B Instruct",
                "Instruction-tuned 8B model of the Llama 3.1 family, 128K context.",
            ),
            "config.json": _json_bytes(
                _llama_config(hidden=4096, intermediate=14336, layers=32, heads=32, kv_heads=8)
            ),
            "generation_config.json": _LLAMA_GENERATION,
            "original/params.json": _json_bytes(
                {"dim": 4096, "n_layers": 32, "n_heads": 32, "n_kv_heads": 8, "vocab_size": 128256}
            ),
            **_llama_tokenizer_files(),
            **weight_files(LLAMA_8B_ID, 4, ["BF16"], params),
        },
    )
    main = h.commit(
        title="Update README.md",
        date="2024-09-25T17:00:00.000Z",
        author="meta-llama",
        params=params,
        parent=first,
        add={
            "README.md": _readme(
                card,
                "Llama 3.1 8B Instruct",
                "Instruction-tuned 8B model of the Llama 3.1 family, 128K context. "
                "Multilingual: English, German, French, Italian, Portuguese, Hindi, Spanish, Thai.",
            )
        },
    )
    # An open pull request (refs/pr/1) that only touches generation_config.json.
    pr = h.commit(
        title="Lower default temperature",
        date="2024-10-02T10:00:00.000Z",
        author="community-contributor",
        params=params,
        parent=main,
        add={
            "generation_config.json": _LLAMA_GENERATION.replace(
                b'"temperature": 0.6', b'"temperature": 0.5'
            )
        },
    )
    return Repo(
        repo_id=LLAMA_8B_ID,
        gated="manual",
        private=False,
        pipeline_tag="text-generation",
        library_name="transformers",
        transformers_info=_CAUSAL_LM_INFO,
        extra_tags=(
            "safetensors",
            "conversational",
            "text-generation-inference",
            "endpoints_compatible",
            "region:us",
        ),
        created_at="2024-07-18T08:56:00.000Z",
        downloads=5_400_000,
        likes=4_100,
        commits=h.commits,
        branches={"main": main},
        pull_requests={1: pr},
    )


_CAUSAL_LM_INFO: Mapping[str, Any] = {
    "auto_model": "AutoModelForCausalLM",
    "pipeline_tag": "text-generation",
    "processor": "AutoTokenizer",
}


# ---- 1b. meta-llama/Llama-3.1-8B (the pretrained base model) ----------------------------------
# Same architecture and BF16 count as the Instruct model (8,030,261,248). A base model: its
# tokenizer_config.json has NO chat_template and generation stops on <|end_of_text|> (128001),
# so engines refuse chat requests (TGI: 422 "Template error: template not found") and the
# portal's pre-promotion check must use the completion route.
def _llama_8b_base() -> Repo:
    params = {"BF16": LLAMA_8B_PARAMS}
    h = _History(LLAMA_8B_BASE_ID)
    card = {**_LLAMA31_CARD}
    config = _llama_config(hidden=4096, intermediate=14336, layers=32, heads=32, kv_heads=8)
    config["eos_token_id"] = 128001
    main = h.commit(
        title="Upload Llama 3.1 8B",
        date="2024-07-18T08:55:00.000Z",
        author="meta-llama",
        params=params,
        add={
            ".gitattributes": _gitattributes(),
            "LICENSE": _LLAMA_LICENSE_TEXT,
            "README.md": _readme(
                card,
                "Llama 3.1 8B",
                "Pretrained 8B model of the Llama 3.1 family, 128K context. A base model: it "
                "continues text and has no chat template.",
            ),
            "config.json": _json_bytes(config),
            "generation_config.json": _json_bytes(
                {
                    "bos_token_id": 128000,
                    "do_sample": True,
                    "eos_token_id": 128001,
                    "temperature": 0.6,
                    "top_p": 0.9,
                    "transformers_version": "4.43.0.dev0",
                }
            ),
            "original/params.json": _json_bytes(
                {"dim": 4096, "n_layers": 32, "n_heads": 32, "n_kv_heads": 8, "vocab_size": 128256}
            ),
            **_llama_tokenizer_files("llama-3.1-base"),
            **weight_files(LLAMA_8B_BASE_ID, 4, ["BF16"], params),
        },
    )
    return Repo(
        repo_id=LLAMA_8B_BASE_ID,
        gated="manual",
        private=False,
        pipeline_tag="text-generation",
        library_name="transformers",
        transformers_info=_CAUSAL_LM_INFO,
        extra_tags=(
            "safetensors",
            "text-generation-inference",
            "endpoints_compatible",
            "region:us",
        ),
        created_at="2024-07-14T16:27:00.000Z",
        downloads=1_100_000,
        likes=1_300,
        commits=h.commits,
        branches={"main": main},
    )


# ---- 2. mistralai/Mistral-7B-Instruct-v0.3 -----------------------------------------------------
# 32 layers, hidden 4096, 32 heads, 8 KV heads, head_dim 128, MLP 14336, untied:
# vocab 32768 -> 7,248,023,552 (published v0.3 BF16 count); vocab 32000 -> 7,241,732,096 (v0.2).
MISTRAL_V03_PARAMS = decoder_params(
    hidden=4096,
    intermediate=14336,
    layers=32,
    heads=32,
    kv_heads=8,
    head_dim=128,
    vocab=32768,
    tied=False,
)
MISTRAL_V02_PARAMS = decoder_params(
    hidden=4096,
    intermediate=14336,
    layers=32,
    heads=32,
    kv_heads=8,
    head_dim=128,
    vocab=32000,
    tied=False,
)


def _mistral_config(vocab: int, dtype: str = "bfloat16") -> dict[str, Any]:
    return {
        "architectures": ["MistralForCausalLM"],
        "attention_dropout": 0.0,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "head_dim": 128,
        "hidden_act": "silu",
        "hidden_size": 4096,
        "initializer_range": 0.02,
        "intermediate_size": 14336,
        "max_position_embeddings": 32768,
        "model_type": "mistral",
        "num_attention_heads": 32,
        "num_hidden_layers": 32,
        "num_key_value_heads": 8,
        "rms_norm_eps": 1e-05,
        "rope_theta": 1000000.0,
        "sliding_window": None,
        "tie_word_embeddings": False,
        "torch_dtype": dtype,
        "transformers_version": "4.42.0.dev0",
        "use_cache": True,
        "vocab_size": vocab,
    }


def _mistral_tokenizer_files(version: str = "v3") -> dict[str, bytes]:
    """Mistral's real sentencepiece tokenizer (from mistral-common): v1 (32,000 ids, v0.1/v0.2
    and their quantized copies) or v3 (32,768 ids, v0.3), with the published chat template."""
    return {
        **real_tokenizers.tokenizer_files(f"mistral-{version}-instruct"),
        "tokenizer.model": real_tokenizers.mistral_sentencepiece_file(version).read_bytes(),
    }


def _mistral_7b() -> Repo:
    """FICTIONAL two-commit history for the "update to a newer commit" scenario.

    main (commit B) carries the published v0.3 facts: vocab 32768, apache-2.0, 7,248,023,552
    BF16 params, plus a consolidated.safetensors file. The older commit A (tag v1.0) is made up:
    vocab 32000 (7,241,732,096 params), a cc-by-nc-4.0 card licence and no consolidated file, so
    an update shows a changed sha, config, licence, file list and parameter count. The real
    repository is apache-2.0 throughout (and the real repo is gated "auto"; here it is open).
    """
    h = _History(MISTRAL_7B_ID)
    card_a = {"license": "cc-by-nc-4.0", "pipeline_tag": "text-generation", "tags": ["vllm"]}
    card_b = {**card_a, "license": "apache-2.0", "base_model": "mistralai/Mistral-7B-v0.3"}
    v02 = {"BF16": MISTRAL_V02_PARAMS}
    v03 = {"BF16": MISTRAL_V03_PARAMS}
    commit_a = h.commit(
        title="Upload Mistral 7B Instruct",
        date="2024-05-22T09:57:00.000Z",
        author="mistralai",
        params=v02,
        add={
            ".gitattributes": _gitattributes(),
            "README.md": _readme(
                card_a, "Mistral 7B Instruct v0.3", "Instruction-tuned Mistral 7B, 32K context."
            ),
            "config.json": _json_bytes(_mistral_config(32000)),
            "generation_config.json": _json_bytes(
                {"bos_token_id": 1, "eos_token_id": 2, "transformers_version": "4.42.0.dev0"}
            ),
            "params.json": _json_bytes({"dim": 4096, "n_layers": 32, "vocab_size": 32000}),
            **_mistral_tokenizer_files("v1"),
            **weight_files(f"{MISTRAL_7B_ID}@a", 3, ["BF16"], v02),
        },
    )
    commit_b = h.commit(
        title="Extend vocabulary to 32768, add consolidated weights, apache-2.0",
        message="Fixture history: see devstack/hub/fixtures.py.",
        date="2024-08-21T12:00:00.000Z",
        author="mistralai",
        params=v03,
        parent=commit_a,
        add={
            "README.md": _readme(
                card_b,
                "Mistral 7B Instruct v0.3",
                "Instruction-tuned Mistral 7B v0.3: extended vocabulary (32768), function calling.",
            ),
            "config.json": _json_bytes(_mistral_config(32768)),
            "params.json": _json_bytes({"dim": 4096, "n_layers": 32, "vocab_size": 32768}),
            **_mistral_tokenizer_files("v3"),
            "tokenizer.model.v3": real_tokenizers.mistral_sentencepiece_file("v3").read_bytes(),
            "consolidated.safetensors": standin_safetensors(f"{MISTRAL_7B_ID}/consolidated"),
            **weight_files(f"{MISTRAL_7B_ID}@b", 3, ["BF16"], v03),
        },
    )
    return Repo(
        repo_id=MISTRAL_7B_ID,
        gated=False,
        private=False,
        pipeline_tag="text-generation",
        library_name="transformers",
        transformers_info=_CAUSAL_LM_INFO,
        extra_tags=(
            "safetensors",
            "conversational",
            "text-generation-inference",
            "endpoints_compatible",
            "region:us",
        ),
        created_at="2024-05-22T09:57:00.000Z",
        downloads=1_200_000,
        likes=1_900,
        commits=h.commits,
        branches={"main": commit_b},
        tags={"v1.0": commit_a},
    )


# ---- 3. google/gemma-2-9b-it --------------------------------------------------------------------
# 42 layers, hidden 3584, 16 heads x head_dim 256, 8 KV heads, MLP 14336, vocab 256000 TIED, and
# 4 norms per layer: 42 * 198,195,200 + 917,504,000 + 3,584 = 9,241,705,984 (published BF16).
GEMMA_9B_PARAMS = (
    42 * (3584 * 4096 * 2 + 3584 * 2048 * 2 + 3 * 3584 * 14336 + 4 * 3584) + 256000 * 3584 + 3584
)


def _gemma_9b() -> Repo:
    params = {"BF16": GEMMA_9B_PARAMS}
    h = _History(GEMMA_9B_ID)
    card = {
        "license": "gemma",
        "library_name": "transformers",
        "pipeline_tag": "text-generation",
        "base_model": "google/gemma-2-9b",
        "extra_gated_heading": "Access Gemma on Hugging Face",
        "extra_gated_prompt": "Review and agree to Google's usage licence to request access.",
        "extra_gated_button_content": "Acknowledge license",
    }
    config = {
        "architectures": ["Gemma2ForCausalLM"],
        "attention_bias": False,
        "attention_dropout": 0.0,
        "attn_logit_softcapping": 50.0,
        "bos_token_id": 2,
        "cache_implementation": "hybrid",
        "eos_token_id": 1,
        "final_logit_softcapping": 30.0,
        "head_dim": 256,
        "hidden_act": "gelu_pytorch_tanh",
        "hidden_activation": "gelu_pytorch_tanh",
        "hidden_size": 3584,
        "initializer_range": 0.02,
        "intermediate_size": 14336,
        "max_position_embeddings": 8192,
        "model_type": "gemma2",
        "num_attention_heads": 16,
        "num_hidden_layers": 42,
        "num_key_value_heads": 8,
        "pad_token_id": 0,
        "query_pre_attn_scalar": 256,
        "rms_norm_eps": 1e-06,
        "rope_theta": 10000.0,
        "sliding_window": 4096,
        "torch_dtype": "bfloat16",
        "transformers_version": "4.42.0.dev0",
        "use_cache": True,
        "vocab_size": 256000,
    }
    main = h.commit(
        title="Upload Gemma 2 9B IT",
        date="2024-06-24T08:05:00.000Z",
        author="google",
        params=params,
        add={
            ".gitattributes": _gitattributes(),
            "README.md": _readme(
                card, "Gemma 2 9B IT", "Instruction-tuned 9B Gemma 2 model, 8K context."
            ),
            "config.json": _json_bytes(config),
            "generation_config.json": _json_bytes(
                {
                    "bos_token_id": 2,
                    "cache_implementation": "hybrid",
                    "eos_token_id": [1, 107],
                    "pad_token_id": 0,
                    "transformers_version": "4.42.0.dev0",
                }
            ),
            "tokenizer.json": _tokenizer_json("<unk>"),
            "tokenizer.model": _deterministic_bytes("gemma-sentencepiece", 2048),
            "tokenizer_config.json": _tokenizer_config(
                "<bos>",
                "<eos>",
                1000000000000000019884624838656,
                _GEMMA_TEMPLATE,
                pad_token="<pad>",  # noqa: S106
                unk_token="<unk>",  # noqa: S106 - a tokenizer token
                tokenizer_class="GemmaTokenizer",
            ),
            "special_tokens_map.json": _json_bytes(
                {"bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>"}
            ),
            **weight_files(GEMMA_9B_ID, 4, ["BF16"], params),
        },
    )
    return Repo(
        repo_id=GEMMA_9B_ID,
        gated="manual",
        private=False,
        pipeline_tag="text-generation",
        library_name="transformers",
        transformers_info=_CAUSAL_LM_INFO,
        extra_tags=(
            "safetensors",
            "conversational",
            "text-generation-inference",
            "endpoints_compatible",
            "region:us",
        ),
        created_at="2024-06-24T08:05:00.000Z",
        downloads=310_000,
        likes=700,
        commits=h.commits,
        branches={"main": main},
    )


# ---- 4. hugging-quants/Meta-Llama-3.1-8B-Instruct-AWQ-INT4 ------------------------------------
# Llama-3.1-8B quantized with AutoAWQ (GEMM, 4 bit, group 128, zero point):
# I32 879,230,976 (qweight 872,415,232 + qzeros 6,815,744) and F16 1,105,465,344 (scales
# 54,525,952 + embed/lm_head 1,050,673,152 + norms 266,240); total 1,984,696,320 ("1.98B").
LLAMA_8B_AWQ_PARAMS = packed_int_params(
    hidden=4096,
    intermediate=14336,
    layers=32,
    heads=32,
    kv_heads=8,
    head_dim=128,
    vocab=128256,
    bits=4,
    group_size=128,
    method="awq",
)


def _llama_8b_awq() -> Repo:
    params = LLAMA_8B_AWQ_PARAMS
    h = _History(LLAMA_8B_AWQ_ID)
    quant = {
        "bits": 4,
        "group_size": 128,
        "modules_to_not_convert": None,
        "quant_method": "awq",
        "version": "gemm",
        "zero_point": True,
    }
    card = {
        "license": "llama3.1",
        "language": ["en", "de", "fr", "it", "pt", "hi", "es", "th"],
        "library_name": "transformers",
        "pipeline_tag": "text-generation",
        "base_model": "meta-llama/Llama-3.1-8B-Instruct",
        "tags": ["llama-3.1", "meta", "autoawq"],
    }
    main = h.commit(
        title="Upload AWQ INT4 checkpoint",
        date="2024-07-23T18:00:00.000Z",
        author="hugging-quants",
        params=params,
        add={
            ".gitattributes": _gitattributes(),
            "README.md": _readme(
                card,
                "Meta-Llama-3.1-8B-Instruct AWQ INT4",
                "Llama 3.1 8B Instruct quantized to 4-bit with AutoAWQ (GEMM kernels, "
                "group size 128, zero point).",
            ),
            "config.json": _json_bytes(
                _llama_config(
                    hidden=4096,
                    intermediate=14336,
                    layers=32,
                    heads=32,
                    kv_heads=8,
                    dtype="float16",
                    quantization=quant,
                )
            ),
            "generation_config.json": _LLAMA_GENERATION,
            **_llama_tokenizer_files(),
            **weight_files(LLAMA_8B_AWQ_ID, 2, ["I32", "F16"], params),
        },
    )
    return Repo(
        repo_id=LLAMA_8B_AWQ_ID,
        gated=False,
        private=False,
        pipeline_tag="text-generation",
        library_name="transformers",
        transformers_info=_CAUSAL_LM_INFO,
        extra_tags=(
            "safetensors",
            "conversational",
            "text-generation-inference",
            "4-bit",
            "awq",
            "region:us",
        ),
        created_at="2024-07-23T18:00:00.000Z",
        downloads=120_000,
        likes=80,
        commits=h.commits,
        branches={"main": main},
    )


# ---- 5. TheBloke/Mistral-7B-Instruct-v0.2-GPTQ --------------------------------------------------
# Mistral-7B-v0.2 (vocab 32000) with AutoGPTQ packing. main = 4 bit / group 128 / act-order:
# I32 880,476,160 + F16 316,936,192 = 1,197,412,352 ("1.2B"). Branch gptq-8bit-128g-actorder_True:
# I32 1,759,707,136 + F16 316,936,192. Derived from the packing layout; the published counts
# could differ slightly if the files also carry (zero) bias tensors.
MISTRAL_GPTQ_4BIT_PARAMS = packed_int_params(
    hidden=4096,
    intermediate=14336,
    layers=32,
    heads=32,
    kv_heads=8,
    head_dim=128,
    vocab=32000,
    bits=4,
    group_size=128,
    method="gptq",
)
MISTRAL_GPTQ_8BIT_PARAMS = packed_int_params(
    hidden=4096,
    intermediate=14336,
    layers=32,
    heads=32,
    kv_heads=8,
    head_dim=128,
    vocab=32000,
    bits=8,
    group_size=128,
    method="gptq",
)


def _gptq_quant(bits: int) -> dict[str, Any]:
    return {
        "bits": bits,
        "damp_percent": 0.1,
        "desc_act": True,
        "group_size": 128,
        "model_file_base_name": "model",
        "model_name_or_path": None,
        "quant_method": "gptq",
        "static_groups": False,
        "sym": True,
        "true_sequential": True,
    }


def _mistral_gptq() -> Repo:
    h = _History(MISTRAL_GPTQ_ID)
    card = {
        "license": "apache-2.0",
        "base_model": "mistralai/Mistral-7B-Instruct-v0.2",
        "inference": False,
        "model_creator": "Mistral AI_",
        "model_name": "Mistral 7B Instruct v0.2",
        "model_type": "mistral",
        "pipeline_tag": "text-generation",
        "quantized_by": "TheBloke",
        "tags": ["finetuned"],
    }

    def files(bits: int, params: Mapping[str, int]) -> dict[str, bytes]:
        config = _mistral_config(32000)
        config["quantization_config"] = _gptq_quant(bits)
        quantize_config = {k: v for k, v in _gptq_quant(bits).items() if k != "quant_method"}
        return {
            "config.json": _json_bytes(config),
            "quantize_config.json": _json_bytes(quantize_config),
            **weight_files(f"{MISTRAL_GPTQ_ID}@{bits}bit", 1, ["I32", "F16"], params),
        }

    main = h.commit(
        title="GPTQ model commit",
        date="2023-12-11T21:50:00.000Z",
        author="TheBloke",
        params=MISTRAL_GPTQ_4BIT_PARAMS,
        add={
            ".gitattributes": _gitattributes(),
            "README.md": _readme(
                card,
                "Mistral 7B Instruct v0.2 - GPTQ",
                "GPTQ quantizations of Mistral 7B Instruct v0.2. Other bit widths and group "
                "sizes live on separate branches.",
            ),
            "generation_config.json": _json_bytes(
                {"bos_token_id": 1, "eos_token_id": 2, "transformers_version": "4.36.0"}
            ),
            **_mistral_tokenizer_files("v1"),
            **files(4, MISTRAL_GPTQ_4BIT_PARAMS),
        },
    )
    eight_bit = h.commit(
        title="GPTQ model commit (8-bit, group size 128)",
        date="2023-12-11T22:40:00.000Z",
        author="TheBloke",
        params=MISTRAL_GPTQ_8BIT_PARAMS,
        parent=main,
        add=files(8, MISTRAL_GPTQ_8BIT_PARAMS),
    )
    return Repo(
        repo_id=MISTRAL_GPTQ_ID,
        gated=False,
        private=False,
        pipeline_tag="text-generation",
        library_name="transformers",
        transformers_info=_CAUSAL_LM_INFO,
        extra_tags=(
            "safetensors",
            "conversational",
            "text-generation-inference",
            "4-bit",
            "gptq",
            "region:us",
        ),
        created_at="2023-12-11T21:50:00.000Z",
        downloads=95_000,
        likes=50,
        commits=h.commits,
        branches={"main": main, "gptq-8bit-128g-actorder_True": eight_bit},
    )


# ---- 6. meta-llama/Llama-3.1-70B-Instruct -------------------------------------------------------
# 80 layers, hidden 8192, 64 heads, 8 KV heads, head_dim 128, MLP 28672, vocab 128256, untied:
# 80 * 855,654,400 + 2,101,346,304 + 8,192 = 70,553,706,496 (published BF16 count).
LLAMA_70B_PARAMS = decoder_params(
    hidden=8192,
    intermediate=28672,
    layers=80,
    heads=64,
    kv_heads=8,
    head_dim=128,
    vocab=128256,
    tied=False,
)


def _llama_70b() -> Repo:
    params = {"BF16": LLAMA_70B_PARAMS}
    h = _History(LLAMA_70B_ID)
    card = {**_LLAMA31_CARD, "base_model": "meta-llama/Llama-3.1-70B"}
    main = h.commit(
        title="Upload Llama 3.1 70B Instruct",
        date="2024-07-16T16:07:00.000Z",
        author="meta-llama",
        params=params,
        add={
            ".gitattributes": _gitattributes(),
            "LICENSE": _LLAMA_LICENSE_TEXT,
            "README.md": _readme(
                card,
                "Llama 3.1 70B Instruct",
                "Instruction-tuned 70B model of the Llama 3.1 family, 128K context.",
            ),
            "config.json": _json_bytes(
                _llama_config(hidden=8192, intermediate=28672, layers=80, heads=64, kv_heads=8)
            ),
            "generation_config.json": _LLAMA_GENERATION,
            **_llama_tokenizer_files(),
            **weight_files(LLAMA_70B_ID, 30, ["BF16"], params),
        },
    )
    return Repo(
        repo_id=LLAMA_70B_ID,
        gated="manual",
        private=False,
        pipeline_tag="text-generation",
        library_name="transformers",
        transformers_info=_CAUSAL_LM_INFO,
        extra_tags=(
            "safetensors",
            "conversational",
            "text-generation-inference",
            "endpoints_compatible",
            "region:us",
        ),
        created_at="2024-07-16T16:07:00.000Z",
        downloads=620_000,
        likes=850,
        commits=h.commits,
        branches={"main": main},
    )


# ---- 7. acme/custom-arch-7b (MADE UP) ---------------------------------------------------------
# A custom architecture loaded through auto_map (trust_remote_code) that TGI does not serve
# natively. Llama-like shape with vocab 64000, self-consistent count:
# 32 * 218,112,000 + 2 * 262,144,000 + 4,096 = 7,503,876,096 BF16.
CUSTOM_CODE_PARAMS = decoder_params(
    hidden=4096,
    intermediate=14336,
    layers=32,
    heads=32,
    kv_heads=8,
    head_dim=128,
    vocab=64000,
    tied=False,
)

_ACME_CONFIGURATION_PY = b'''"""Configuration of the fictional Acme architecture."""

from transformers import PretrainedConfig


class AcmeConfig(PretrainedConfig):
    model_type = "acme"

    def __init__(self, hidden_size=4096, num_hidden_layers=32, **kwargs):
        self.hidden_size = hidden_size
        self.num_hidden_layers = num_hidden_layers
        super().__init__(**kwargs)
'''

_ACME_MODELING_PY = b'''"""Modeling code of the (fictional) Acme architecture - devstack fixture."""

from transformers import PreTrainedModel

from .configuration_acme import AcmeConfig


class AcmeForCausalLM(PreTrainedModel):
    config_class = AcmeConfig

    def forward(self, *args, **kwargs):
        raise NotImplementedError("devstack fixture: no real modeling code")
'''


def _custom_code() -> Repo:
    params = {"BF16": CUSTOM_CODE_PARAMS}
    h = _History(CUSTOM_CODE_ID)
    card = {
        "license": "other",
        "license_name": "acme-community-license",
        "license_link": "LICENSE",
        "library_name": "transformers",
        "pipeline_tag": "text-generation",
        "tags": ["custom_code"],
    }
    config = {
        "architectures": ["AcmeForCausalLM"],
        "auto_map": {
            "AutoConfig": "configuration_acme.AcmeConfig",
            "AutoModelForCausalLM": "modeling_acme.AcmeForCausalLM",
        },
        "bos_token_id": 1,
        "eos_token_id": 2,
        "hidden_act": "silu",
        "hidden_size": 4096,
        "intermediate_size": 14336,
        "max_position_embeddings": 16384,
        "model_type": "acme",
        "num_attention_heads": 32,
        "num_hidden_layers": 32,
        "num_key_value_heads": 8,
        "rms_norm_eps": 1e-05,
        "rope_theta": 100000.0,
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
        "transformers_version": "4.44.0",
        "vocab_size": 64000,
    }
    main = h.commit(
        title="Upload Acme custom architecture",
        date="2024-11-05T10:00:00.000Z",
        author="acme",
        params=params,
        add={
            ".gitattributes": _gitattributes(),
            "LICENSE": b"Acme Community License (fictional, devstack fixture).\n",
            "README.md": _readme(
                card,
                "Acme Custom Arch 7B",
                "A fictional model whose architecture ships as remote code (auto_map). Loading "
                "it needs trust_remote_code; TGI has no native implementation.",
            ),
            "config.json": _json_bytes(config),
            "configuration_acme.py": _ACME_CONFIGURATION_PY,
            "modeling_acme.py": _ACME_MODELING_PY,
            "generation_config.json": _json_bytes({"bos_token_id": 1, "eos_token_id": 2}),
            "tokenizer.json": _tokenizer_json("<unk>"),
            "tokenizer_config.json": _tokenizer_config("<s>", "</s>", 16384, _MISTRAL_TEMPLATE),
            **weight_files(CUSTOM_CODE_ID, 2, ["BF16"], params),
        },
    )
    next_code = h.commit(
        title="Modeling: scale rotary embeddings",
        date="2024-12-02T09:00:00.000Z",
        author="acme",
        params=params,
        parent=main,
        add={"modeling_acme.py": _ACME_MODELING_PY + b"\n\nROPE_SCALING = 2.0\n"},
    )
    return Repo(
        repo_id=CUSTOM_CODE_ID,
        gated=False,
        private=False,
        pipeline_tag="text-generation",
        library_name="transformers",
        transformers_info={
            "auto_model": "AutoModelForCausalLM",
            "custom_class": "modeling_acme.AcmeForCausalLM",
            "pipeline_tag": "text-generation",
            "processor": "AutoTokenizer",
        },
        extra_tags=("safetensors", "conversational", "region:us"),
        created_at="2024-11-05T10:00:00.000Z",
        downloads=1_200,
        likes=3,
        commits=h.commits,
        # A later commit that changes the remote code: what an approval of main did not review.
        branches={"main": main, CUSTOM_CODE_NEXT_BRANCH: next_code},
    )


# ---- 8. sentence-transformers/all-MiniLM-L6-v2 -------------------------------------------------
# BERT, 6 layers, hidden 384, 12 heads, MLP 1536, vocab 30522, 512 positions, with pooler:
# embeddings 11,918,592 + 6 * 1,774,464 + pooler 147,840 = 22,713,216 F32 ("22.7M").
MINILM_PARAMS = (
    (30522 + 512 + 2) * 384
    + 2 * 384
    + 6 * (4 * (384 * 384 + 384) + 2 * 2 * 384 + (384 * 1536 + 1536) + (1536 * 384 + 384))
    + (384 * 384 + 384)
)


def _minilm() -> Repo:
    params = {"F32": MINILM_PARAMS}
    h = _History(MINILM_ID)
    card = {
        "language": "en",
        "license": "apache-2.0",
        "library_name": "sentence-transformers",
        "pipeline_tag": "sentence-similarity",
        "tags": ["sentence-transformers", "feature-extraction", "sentence-similarity"],
    }
    config = {
        "_name_or_path": "nreimers/MiniLM-L6-H384-uncased",
        "architectures": ["BertModel"],
        "attention_probs_dropout_prob": 0.1,
        "gradient_checkpointing": False,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "hidden_size": 384,
        "initializer_range": 0.02,
        "intermediate_size": 1536,
        "layer_norm_eps": 1e-12,
        "max_position_embeddings": 512,
        "model_type": "bert",
        "num_attention_heads": 12,
        "num_hidden_layers": 6,
        "pad_token_id": 0,
        "position_embedding_type": "absolute",
        "transformers_version": "4.8.2",
        "type_vocab_size": 2,
        "use_cache": True,
        "vocab_size": 30522,
    }
    main = h.commit(
        title="Add safetensors weights",
        date="2022-11-07T08:44:00.000Z",
        author="sentence-transformers",
        params=params,
        add={
            ".gitattributes": _gitattributes(),
            "README.md": _readme(
                card,
                "all-MiniLM-L6-v2",
                "Maps sentences and paragraphs to a 384-dimensional dense vector space, for "
                "semantic search and clustering. Served by embedding servers, not TGI.",
            ),
            "config.json": _json_bytes(config),
            "config_sentence_transformers.json": _json_bytes(
                {"__version__": {"sentence_transformers": "2.0.0"}}
            ),
            "modules.json": _json_bytes(
                {
                    "modules": [
                        {"idx": 0, "name": "0", "path": "", "type": "Transformer"},
                        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "Pooling"},
                        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "Normalize"},
                    ]
                }
            ),
            "sentence_bert_config.json": _json_bytes(
                {"max_seq_length": 256, "do_lower_case": False}
            ),
            "1_Pooling/config.json": _json_bytes(
                {"word_embedding_dimension": 384, "pooling_mode_mean_tokens": True}
            ),
            "tokenizer.json": _tokenizer_json("[UNK]"),
            "tokenizer_config.json": _tokenizer_config(
                "[CLS]", "[SEP]", 512, None, do_lower_case=True, tokenizer_class="BertTokenizer"
            ),
            "vocab.txt": b"[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n",
            **weight_files(MINILM_ID, 1, ["F32"], params),
        },
    )
    return Repo(
        repo_id=MINILM_ID,
        gated=False,
        private=False,
        pipeline_tag="sentence-similarity",
        library_name="sentence-transformers",
        transformers_info={
            "auto_model": "AutoModel",
            "pipeline_tag": "feature-extraction",
            "processor": "AutoTokenizer",
        },
        extra_tags=(
            "safetensors",
            "transformers",
            "text-embeddings-inference",
            "endpoints_compatible",
            "region:us",
        ),
        created_at="2022-03-02T23:29:05.000Z",
        downloads=80_000_000,
        likes=3_500,
        commits=h.commits,
        branches={"main": main},
    )


# ---- 9. acme/support-assistant-llama-3.1-8b (PRIVATE, made up) --------------------------------
# A private fine-tune of Llama-3.1-8B-Instruct (same shape, same 8,030,261,248 BF16 params).
def _private() -> Repo:
    params = {"BF16": LLAMA_8B_PARAMS}
    h = _History(PRIVATE_ID)
    card = {
        "license": "llama3.1",
        "base_model": LLAMA_8B_ID,
        "pipeline_tag": "text-generation",
        "tags": ["llama-3", "fine-tuned"],
    }
    main = h.commit(
        title="Upload fine-tuned support assistant",
        date="2025-02-10T15:00:00.000Z",
        author="acme",
        params=params,
        add={
            ".gitattributes": _gitattributes(),
            "README.md": _readme(
                card,
                "Acme support assistant (Llama 3.1 8B fine-tune)",
                "Private fine-tune for Acme's customer-support chat (fictional).",
            ),
            "config.json": _json_bytes(
                _llama_config(hidden=4096, intermediate=14336, layers=32, heads=32, kv_heads=8)
            ),
            "generation_config.json": _LLAMA_GENERATION,
            **_llama_tokenizer_files(),
            **weight_files(PRIVATE_ID, 4, ["BF16"], params),
        },
    )
    return Repo(
        repo_id=PRIVATE_ID,
        gated=False,
        private=True,
        pipeline_tag="text-generation",
        library_name="transformers",
        transformers_info=_CAUSAL_LM_INFO,
        extra_tags=("safetensors", "conversational", "text-generation-inference", "region:us"),
        created_at="2025-02-10T15:00:00.000Z",
        downloads=40,
        likes=0,
        commits=h.commits,
        branches={"main": main},
    )


_BUILDERS: tuple[Callable[[], Repo], ...] = (
    _llama_8b,
    _llama_8b_base,
    _mistral_7b,
    _gemma_9b,
    _llama_8b_awq,
    _mistral_gptq,
    _llama_70b,
    _custom_code,
    _minilm,
    _private,
)


@functools.cache
def repos() -> dict[str, Repo]:
    """All fixture repositories by repo id (built once per process, deterministic)."""
    return {r.repo_id: r for r in (build() for build in _BUILDERS)}


def repo(repo_id: str) -> Repo:
    return repos()[repo_id]


# --------------------------------------------------------------------------------------------
# Derived views shared by the server and by tests
# --------------------------------------------------------------------------------------------


def config_subset(commit: Commit) -> dict[str, Any]:
    """What the Hub puts in ``model_info().config``: a subset of config.json + tokenizer bits."""
    config = commit.config
    subset: dict[str, Any] = {}
    for key in ("architectures", "auto_map", "model_type"):
        if key in config:
            subset[key] = config[key]
    quant = config.get("quantization_config")
    if isinstance(quant, dict):
        subset["quantization_config"] = {
            k: quant[k]
            for k in ("quant_method", "bits", "load_in_4bit", "load_in_8bit")
            if k in quant
        }
    tokenizer = commit.json_file("tokenizer_config.json") or {}
    tok_subset = {
        k: tokenizer[k]
        for k in ("bos_token", "eos_token", "pad_token", "unk_token", "chat_template")
        if k in tokenizer
    }
    if tok_subset:
        subset["tokenizer_config"] = tok_subset
    return subset


def model_tags(repo: Repo, commit: Commit) -> list[str]:
    """Tags as the Hub computes them: library, card tags, model type, pipeline, licence..."""
    card = commit.card_data
    tags: list[str] = []
    if repo.library_name:
        tags.append(repo.library_name)
    card_tags = card.get("tags") or []
    tags.extend(str(t) for t in card_tags)
    model_type = commit.config.get("model_type")
    if model_type:
        tags.append(str(model_type))
    if repo.pipeline_tag:
        tags.append(repo.pipeline_tag)
    languages = card.get("language") or []
    tags.extend([languages] if isinstance(languages, str) else [str(x) for x in languages])
    base = card.get("base_model")
    if base:
        tags.append(f"base_model:{base}")
    if card.get("license"):
        tags.append(f"license:{card['license']}")
    tags.extend(repo.extra_tags)
    return list(dict.fromkeys(tags))

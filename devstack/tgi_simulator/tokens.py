"""Deterministic stand-in for a tokenizer and a language model's output.

Tokenization model (documented so other components can rely on it):

* a chat-template special marker such as ``<|eot_id|>`` is one token;
* otherwise a token is an optional single leading space followed by either a run of up to
  6 word characters or one other non-space character; any remaining whitespace character
  is a token of its own.

English prose comes out at roughly one token per 4 characters (``"Hello, world!"`` is 4
tokens, as with Llama 3). ``/generate``-style inputs get one extra BOS token because TGI
tokenizes them with ``add_special_tokens=true``; chat prompts carry their BOS in the template.

Generation: the simulated model emits words from a fixed vocabulary, starting at an offset
derived from the prompt, so identical prompts always produce identical text.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

_TOKEN_RE = re.compile(r"<\|[a-z_]{1,32}\|>| ?\w{1,6}| ?[^\w\s]|\s", re.UNICODE)

BOS_TOKEN = "<|begin_of_text|>"  # noqa: S105
EOS_TOKEN = "<|eot_id|>"  # noqa: S105
BOS_ID = 128000
EOS_ID = 128009

# Short words so that each generated word (with its leading space) is exactly one token.
_VOCAB: tuple[str, ...] = tuple(
    """the model is a simple text that we can use to test how the system works under load
    and it will keep going until it is asked to stop or runs out of tokens so you may
    see words like data cloud fast slow queue batch token cache plan build ship check
    run wait green blue alpha beta gamma delta one two three four five six seven eight
    nine ten river stone light sound paper glass metal water fire earth wind tree leaf
    seed root north south east west""".split()  # noqa: SIM905
)
_VOCAB_SIZE = len(_VOCAB)
_TOKEN_TEXTS: tuple[str, ...] = tuple(" " + w for w in _VOCAB)
_TOKEN_IDS: tuple[int, ...] = tuple(1000 + i * 7 for i in range(_VOCAB_SIZE))


def count_tokens(text: str) -> int:
    """Number of tokens in ``text`` (no special tokens added)."""
    return len(_TOKEN_RE.findall(text))


def encode(text: str, add_special_tokens: bool = True) -> list[tuple[int, str, int, int]]:
    """Tokens as ``(id, text, start, stop)`` with character offsets, like TGI's /tokenize."""
    out: list[tuple[int, str, int, int]] = []
    if add_special_tokens:
        out.append((BOS_ID, BOS_TOKEN, 0, 0))
    for m in _TOKEN_RE.finditer(text):
        piece = m.group(0)
        # Stable per-piece ids (crc32 is fast and deterministic across runs, unlike hash()).
        out.append((zlib.crc32(piece.encode()) % 120000 + 1000, piece, m.start(), m.end()))
    return out


def input_length(text: str, add_special_tokens: bool = True) -> int:
    """Token count the router validates: the text plus BOS when special tokens are added."""
    return count_tokens(text) + (1 if add_special_tokens else 0)


def message_text(content: Any) -> str:
    """Flatten OpenAI message content (string or list of parts) to text."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, Mapping) and part.get("type") == "text":
                parts.append(str(part.get("text", "")))
            elif isinstance(part, str):
                parts.append(part)
        return "".join(parts)
    return str(content)


def apply_chat_template(messages: Sequence[Mapping[str, Any]]) -> str:
    """Llama-3-style template; the prompt ends with the assistant header (generation prompt)."""
    parts = [BOS_TOKEN]
    for m in messages:
        role = str(m.get("role", "user"))
        parts.append(f"<|start_header_id|>{role}<|end_header_id|>\n\n")
        parts.append(message_text(m.get("content")))
        parts.append(EOS_TOKEN)
    parts.append("<|start_header_id|>assistant<|end_header_id|>\n\n")
    return "".join(parts)


def generation_offset(prompt: str) -> int:
    """Where in the vocabulary a prompt's answer starts (deterministic per prompt)."""
    return zlib.crc32(prompt.encode("utf-8", "surrogatepass")) % _VOCAB_SIZE


def token_text(offset: int, i: int) -> str:
    """Text of generated token ``i``; the first token has no leading space."""
    t = _TOKEN_TEXTS[(offset + i) % _VOCAB_SIZE]
    return t[1:] if i == 0 else t


def token_id(offset: int, i: int) -> int:
    return _TOKEN_IDS[(offset + i) % _VOCAB_SIZE]


def generated_text(offset: int, n: int) -> str:
    """Concatenated text of the first ``n`` generated (non-special) tokens."""
    if n <= 0:
        return ""
    start = offset % _VOCAB_SIZE
    words: list[str] = []
    remaining = n
    idx = start
    while remaining > 0:
        take = min(remaining, _VOCAB_SIZE - idx)
        words.extend(_VOCAB[idx : idx + take])
        remaining -= take
        idx = 0
    return " ".join(words)


def find_stop(offset: int, n: int, stops: Iterable[str]) -> int | None:
    """Number of tokens generated when the first stop sequence completes, if any does."""
    stops = [s for s in stops if s]
    if not stops:
        return None
    text = ""
    for i in range(n):
        text += token_text(offset, i)
        tail = text[-(max(len(s) for s in stops) + 8) :]
        if any(s in tail for s in stops):
            return i + 1
    return None

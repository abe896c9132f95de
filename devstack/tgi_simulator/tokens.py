"""The deployed model's own tokenizer and a deterministic stand-in for its output.

Tokenization is real: the router tokenizes with the snapshot's ``tokenizer.json`` and renders the
snapshot's chat template (router/src/validation.rs, router/src/infer/chat_template.rs), so prompt
token counts, ``usage`` and the input-length histogram are the model's own. Loading goes through
:mod:`devstack.model_files`.

Generation: the simulated model answers with real ids of its own vocabulary, taken from a fixed
English word list encoded by the model's tokenizer, starting at an offset derived from the prompt
(identical prompts give identical answers), and ends with the model's EOS token.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from devstack.model_files import ModelTokenizer

# Plain words so that the answer reads like text whatever the tokenizer.
_ANSWER_WORDS = (
    "the model is a simple text that we can use to test how the system works under load "
    "and it will keep going until it is asked to stop or runs out of tokens so you may "
    "see words like data cloud fast slow queue batch token cache plan build ship check "
    "run wait green blue alpha beta gamma delta one two three four five six seven eight "
    "nine ten river stone light sound paper glass metal water fire earth wind tree leaf "
    "seed root north south east west"
)


@dataclass(frozen=True)
class Piece:
    """One token of a tokenized input, shaped like TGI's ``SimpleToken``."""

    id: int
    text: str
    start: int
    stop: int


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


class TokenModel:
    """Tokenizer, chat template and deterministic answers of one deployed model."""

    def __init__(self, tokenizer: ModelTokenizer) -> None:
        self.tok = tokenizer
        stops = tokenizer.stop_token_ids
        self.eos_id = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else None
        if self.eos_id is None and stops:
            self.eos_id = stops[0]
        eos_text = None if self.eos_id is None else tokenizer.id_to_token(self.eos_id)
        self.eos_text = eos_text or ""
        self.has_chat_template = tokenizer.chat_template is not None
        ids = list(tokenizer.encode(_ANSWER_WORDS, add_special_tokens=False))
        specials = {tokenizer.bos_token_id, tokenizer.eos_token_id}
        self._ids = tuple(i for i in ids if i not in specials) or (0,)
        size = len(self._ids)
        # Text each answer token contributes: alone at the start, and after another answer
        # token (incremental detokenization, as text_generation_server/models/model.py
        # decode_token does), so that the streamed pieces add up to decode(all ids).
        self._first = tuple(tokenizer.decode([i]) for i in self._ids)
        cycle = list(self._ids) * 2
        mids = []
        for j in range(size):
            before = tokenizer.decode(cycle[: size + j])
            mids.append(tokenizer.decode(cycle[: size + j + 1])[len(before) :])
        self._mid = tuple(mids)

    # --- input side ---------------------------------------------------------------------

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return self.tok.encode(text, add_special_tokens=add_special_tokens)

    def input_length(self, text: str, add_special_tokens: bool = True) -> int:
        return len(self.encode(text, add_special_tokens))

    def pieces(self, text: str, add_special_tokens: bool = True) -> list[Piece]:
        """Tokens with character offsets; ``text`` is the input's slice, as in
        router/src/server.rs ``tokenize`` (a special token like BOS has an empty slice)."""
        ids = self.encode(text, add_special_tokens)
        offsets = self.tok.offsets(text, add_special_tokens=add_special_tokens)
        return [Piece(i, text[a:b], a, b) for i, (a, b) in zip(ids, offsets, strict=True)]

    def apply_chat_template(
        self, messages: Sequence[Mapping[str, Any]], tools: list[Any] | None = None
    ) -> str:
        """The snapshot's template; raises ``devstack.model_files.NoChatTemplate``."""
        flat = [{**m, "content": message_text(m.get("content"))} for m in messages]
        return self.tok.apply_chat_template(flat, add_generation_prompt=True, tools=tools)

    # --- output side --------------------------------------------------------------------

    def generation_offset(self, prompt: str) -> int:
        """Where in the answer vocabulary a prompt's answer starts."""
        return zlib.crc32(prompt.encode("utf-8", "surrogatepass")) % len(self._ids)

    def token_id(self, offset: int, i: int) -> int:
        return self._ids[(offset + i) % len(self._ids)]

    def token_text(self, offset: int, i: int) -> str:
        j = (offset + i) % len(self._ids)
        return self._first[j] if i == 0 else self._mid[j]

    def generated_text(self, offset: int, n: int) -> str:
        """Text of the first ``n`` generated (non-special) tokens."""
        return "".join(self.token_text(offset, i) for i in range(max(0, n)))

    def find_stop(self, offset: int, n: int, stops: Iterable[str]) -> int | None:
        """Number of tokens generated when the first stop sequence completes, if any does."""
        stops = [s for s in stops if s]
        if not stops:
            return None
        longest = max(len(s) for s in stops) + 8
        text = ""
        for i in range(n):
            text = (text + self.token_text(offset, i))[-longest:]
            if any(s in text for s in stops):
                return i + 1
        return None

"""A model's own tokenizer and chat template, loaded from its snapshot folder.

Reads what the engines read: `tokenizer.json` through the `tokenizers` library (TGI's router and
transformers' fast tokenizers both use it), `tokenizer_config.json` for the special tokens,
`add_bos_token`/`add_eos_token` and the chat template (or a `chat_template.jinja` beside it, the
layout transformers writes since 4.50), and `generation_config.json` for the end-of-sequence ids
generation stops on.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer
from tokenizers.processors import TemplateProcessing

from devstack.model_files.chat_templates import (
    NoChatTemplate,
    compile_template,
    parse_chat_templates,
    select_template,
)

# transformers' LlamaTokenizerFast.update_post_processor and TGI's router
# (router/src/server.rs, create_post_processor) rebuild the post-processor of these classes
# from add_bos_token/add_eos_token instead of trusting tokenizer.json's.
_BOS_EOS_FROM_CONFIG_CLASSES = {"LlamaTokenizer", "LlamaTokenizerFast"}


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    loaded = json.loads(path.read_text(encoding="utf-8"))
    return loaded if isinstance(loaded, dict) else {}


def _token_content(value: Any) -> str | None:
    """A special token as tokenizer_config.json writes it: a string or an AddedToken object."""
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping) and isinstance(value.get("content"), str):
        return str(value["content"])
    return None


class ModelTokenizer:
    """Tokenizer, special tokens and chat templates of one model snapshot."""

    def __init__(
        self,
        tokenizer: Tokenizer,
        tokenizer_config: Mapping[str, Any],
        generation_config: Mapping[str, Any] | None = None,
        chat_templates: Mapping[str, str] | None = None,
    ) -> None:
        self._tokenizer = tokenizer
        self.tokenizer_config = dict(tokenizer_config)
        self.generation_config = dict(generation_config or {})
        self.chat_templates: dict[str, str] = dict(chat_templates or {})
        self.bos_token = _token_content(tokenizer_config.get("bos_token"))
        self.eos_token = _token_content(tokenizer_config.get("eos_token"))
        self.unk_token = _token_content(tokenizer_config.get("unk_token"))
        self.pad_token = _token_content(tokenizer_config.get("pad_token"))
        self.bos_token_id = self._id_of(self.bos_token)
        self.eos_token_id = self._id_of(self.eos_token)
        if tokenizer_config.get("tokenizer_class") in _BOS_EOS_FROM_CONFIG_CLASSES:
            self._set_bos_eos_post_processor(
                add_bos=bool(tokenizer_config.get("add_bos_token", True)),
                add_eos=bool(tokenizer_config.get("add_eos_token", False)),
            )

    @classmethod
    def from_dir(cls, snapshot_dir: Path | str) -> ModelTokenizer:
        """Load from a folder holding tokenizer.json (and usually tokenizer_config.json)."""
        folder = Path(snapshot_dir)
        tokenizer_file = folder / "tokenizer.json"
        if not tokenizer_file.is_file():
            raise FileNotFoundError(f"{tokenizer_file} not found")
        tokenizer_config = _read_json(folder / "tokenizer_config.json")
        templates = parse_chat_templates(tokenizer_config.get("chat_template"))
        jinja_file = folder / "chat_template.jinja"
        if jinja_file.is_file():
            templates["default"] = jinja_file.read_text(encoding="utf-8")
        return cls(
            Tokenizer.from_file(str(tokenizer_file)),
            tokenizer_config,
            _read_json(folder / "generation_config.json"),
            templates,
        )

    # Token ids

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        """Ids of `text`; special-token strings in the text become their ids (as in TGI)."""
        return list(self._tokenizer.encode(text, add_special_tokens=add_special_tokens).ids)

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        return str(self._tokenizer.decode(list(ids), skip_special_tokens=skip_special_tokens))

    def id_to_token(self, token_id: int) -> str | None:
        return self._tokenizer.id_to_token(token_id)

    def token_to_id(self, token: str) -> int | None:
        return self._tokenizer.token_to_id(token)

    def offsets(self, text: str, add_special_tokens: bool = True) -> list[tuple[int, int]]:
        """Character start/stop of each token in `text` (TGI's /tokenize returns them)."""
        encoding = self._tokenizer.encode(text, add_special_tokens=add_special_tokens)
        return [(int(start), int(stop)) for start, stop in encoding.offsets]

    @property
    def vocab_size(self) -> int:
        """Every id the model can see, added special tokens included (Llama 3: 128,256)."""
        return int(self._tokenizer.get_vocab_size(with_added_tokens=True))

    @property
    def special_token_ids(self) -> set[int]:
        return {
            token_id
            for token_id, added in self._tokenizer.get_added_tokens_decoder().items()
            if added.special
        }

    @property
    def stop_token_ids(self) -> list[int]:
        """Ids generation stops on: generation_config's eos_token_id (a list for Llama 3 Instruct),
        else the tokenizer's eos token."""
        configured = self.generation_config.get("eos_token_id")
        if isinstance(configured, int):
            return [configured]
        if isinstance(configured, list) and configured:
            return [int(token_id) for token_id in configured]
        return [] if self.eos_token_id is None else [self.eos_token_id]

    @property
    def model_max_length(self) -> int | None:
        value = self.tokenizer_config.get("model_max_length")
        # transformers writes a huge float sentinel (1e30) for "no limit".
        return int(value) if isinstance(value, int) and value < 10**12 else None

    # Chat template

    @property
    def chat_template(self) -> str | None:
        """The template used for plain chat (the "default" one), None for a base model."""
        if not self.chat_templates:
            return None
        return self.chat_templates.get("default") or next(iter(self.chat_templates.values()))

    @property
    def has_chat_template(self) -> bool:
        return bool(self.chat_templates)

    def apply_chat_template(
        self,
        messages: Sequence[Mapping[str, Any]],
        *,
        add_generation_prompt: bool = True,
        tools: list[Any] | None = None,
        **template_kwargs: Any,
    ) -> str:
        """The prompt text for `messages`; raises NoChatTemplate for a model without one and
        jinja2's TemplateError when the template refuses the conversation (raise_exception)."""
        if not self.chat_templates:
            raise NoChatTemplate()
        template = compile_template(select_template(self.chat_templates, tools=tools))
        special_tokens = {
            name: value
            for name, value in (
                ("bos_token", self.bos_token),
                ("eos_token", self.eos_token),
                ("unk_token", self.unk_token),
                ("pad_token", self.pad_token),
            )
            if value is not None
        }
        return str(
            template.render(
                messages=[dict(message) for message in messages],
                tools=tools,
                documents=None,
                add_generation_prompt=add_generation_prompt,
                **{**special_tokens, **template_kwargs},
            )
        )

    # Internals

    def _id_of(self, token: str | None) -> int | None:
        return None if token is None else self._tokenizer.token_to_id(token)

    def _set_bos_eos_post_processor(self, *, add_bos: bool, add_eos: bool) -> None:
        bos = self.bos_token if add_bos and self.bos_token_id is not None else None
        eos = self.eos_token if add_eos and self.eos_token_id is not None else None
        single = " ".join(part for part in (bos and f"{bos}:0", "$A:0", eos and f"{eos}:0") if part)
        pair = " ".join(
            part
            for part in (
                bos and f"{bos}:0",
                "$A:0",
                eos and f"{eos}:0",
                bos and f"{bos}:1",
                "$B:1",
                eos and f"{eos}:1",
            )
            if part
        )
        special_tokens = [
            (token, token_id)
            for token, token_id in ((bos, self.bos_token_id), (eos, self.eos_token_id))
            if token is not None and token_id is not None
        ]
        self._tokenizer.post_processor = TemplateProcessing(
            single=single, pair=pair, special_tokens=special_tokens
        )

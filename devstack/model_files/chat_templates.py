"""Rendering a model's Jinja chat template the way transformers' `apply_chat_template` does.

Follows transformers/utils/chat_template_utils.py (`_compile_jinja_template`,
`render_jinja_template`): an ImmutableSandboxedEnvironment with trim_blocks and lstrip_blocks,
the loopcontrols extension, a `tojson` filter that does not HTML-escape, and the globals
`raise_exception` and `strftime_now`. The `{% generation %}` block (used by templates that mark
assistant turns for training masks) renders its body unchanged.
"""

from __future__ import annotations

import json
from datetime import datetime
from functools import lru_cache
from typing import Any

import jinja2
import jinja2.ext
import jinja2.nodes
from jinja2.exceptions import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

__all__ = [
    "NoChatTemplate",
    "TemplateError",
    "compile_template",
    "parse_chat_templates",
    "select_template",
]


class NoChatTemplate(ValueError):
    """The model ships no chat template, so chat messages cannot be turned into a prompt.

    A ValueError, as transformers raises; the message is transformers' (what vLLM shows).
    TGI answers the same situation with 422 "Template error: template not found".
    """

    def __init__(self, message: str | None = None) -> None:
        super().__init__(
            message
            or "Cannot use chat template functions because tokenizer.chat_template is not set "
            "and no template argument was passed! For information about writing templates and "
            "setting the tokenizer.chat_template attribute, please see the documentation at "
            "https://huggingface.co/docs/transformers/main/en/chat_templating"
        )


class _GenerationBlock(jinja2.ext.Extension):
    """`{% generation %}...{% endgeneration %}` renders its body (transformers' AssistantTracker
    records where the body lands; nothing here needs those indices)."""

    tags = {"generation"}

    def parse(self, parser: Any) -> jinja2.nodes.Node:
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_render_body"), [], [], body).set_lineno(
            lineno
        )

    def _render_body(self, caller: Any) -> str:
        return str(caller())


def _raise_exception(message: str) -> None:
    raise TemplateError(message)


def _tojson(
    value: Any,
    ensure_ascii: bool = False,
    indent: int | str | None = None,
    separators: tuple[str, str] | None = None,
    sort_keys: bool = False,
) -> str:
    # Jinja's own tojson escapes <, >, & and ' for HTML, which would change the prompt.
    return json.dumps(
        value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
    )


def _strftime_now(date_format: str) -> str:
    return datetime.now().strftime(date_format)


@lru_cache(maxsize=64)
def compile_template(source: str) -> jinja2.Template:
    """Compile once per distinct template source (templates are a few KB and reused per request)."""
    environment = ImmutableSandboxedEnvironment(
        trim_blocks=True,
        lstrip_blocks=True,
        extensions=[_GenerationBlock, jinja2.ext.loopcontrols],
    )
    environment.filters["tojson"] = _tojson
    environment.globals["raise_exception"] = _raise_exception
    environment.globals["strftime_now"] = _strftime_now
    return environment.from_string(source)


def parse_chat_templates(value: Any) -> dict[str, str]:
    """tokenizer_config.json's `chat_template`: one string, or a list of {"name", "template"}.

    A single template is named "default", as transformers does when it saves one.
    """
    if isinstance(value, str):
        return {"default": value}
    if isinstance(value, list):
        return {
            str(item["name"]): str(item["template"])
            for item in value
            if isinstance(item, dict) and "name" in item and "template" in item
        }
    if isinstance(value, dict):
        return {str(name): str(template) for name, template in value.items()}
    return {}


def select_template(templates: dict[str, str], *, tools: list[Any] | None = None) -> str:
    """Pick the template transformers' `get_chat_template` would use.

    The "tool_use" template when tools are passed and it exists, else "default"; several named
    templates without a default is an error there too.
    """
    if not templates:
        raise NoChatTemplate()
    if tools is not None and "tool_use" in templates:
        return templates["tool_use"]
    if "default" in templates:
        return templates["default"]
    raise ValueError(
        "This model has multiple chat templates with no default specified! Please either pass a "
        "chat template or the name of the template you wish to use to the `chat_template` "
        f"argument. Available template names are {sorted(templates)}."
    )

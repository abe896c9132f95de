"""A model's files as the engines read them: snapshot lookup, tokenizer and chat template.

The simulators use this to tokenize and template with the deployed model's own files; the local
Hub uses `devstack.model_files.real` to build those files from tokenizers shipped on PyPI.
"""

from devstack.model_files.chat_templates import NoChatTemplate, TemplateError
from devstack.model_files.snapshots import MissingWeights, find_snapshot, weight_files
from devstack.model_files.tokenizer import ModelTokenizer

__all__ = [
    "MissingWeights",
    "ModelTokenizer",
    "NoChatTemplate",
    "TemplateError",
    "find_snapshot",
    "weight_files",
]

"""devstack.model_files: real tokenizers built from PyPI packages, chat templates, snapshots."""

from __future__ import annotations

from pathlib import Path

import jinja2
import pytest
import sentencepiece
import tiktoken

from devstack.hub import fixtures as hub
from devstack.model_files import (
    MissingWeights,
    ModelTokenizer,
    NoChatTemplate,
    find_snapshot,
    real,
)

# Text that trips tokenizers up: unicode and emoji, code, whitespace runs, digits, contractions.
VARIED_TEXTS = [
    "Hello world",
    "  two leading spaces   and\ttabs\n\n\nthree newlines  ",
    "def square(x):\n    return x ** 2  # comment\n\n\nclass A:\n\tpass\n",
    "Ünïcödé — 日本語のテキスト, ελληνικά, русский 🚀🔥👩‍💻",
    "I'm sure we'll see they'd won 1234567 items at 3.14159 each.",
    "    \n   \r\n  ",
    "\ufb01 \uff21 \u00bd \u2122 \u00a0non-breaking",  # ligature, full-width A, ½, ™, nbsp
    '{"json": [1, 2, {"nested": null}], "url": "https://example.com/a?b=c&d=e"}',
    "x" * 40 + " " * 17 + "y",
]


def _snapshot(tmp_path: Path, files: dict[str, bytes]) -> Path:
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
    return tmp_path


@pytest.fixture(scope="module")
def llama_instruct(tmp_path_factory: pytest.TempPathFactory) -> ModelTokenizer:
    folder = tmp_path_factory.mktemp("llama")
    return ModelTokenizer.from_dir(_snapshot(folder, real.tokenizer_files("llama-3.1-instruct")))


@pytest.fixture(scope="module")
def mistral_v3(tmp_path_factory: pytest.TempPathFactory) -> ModelTokenizer:
    folder = tmp_path_factory.mktemp("mistral")
    return ModelTokenizer.from_dir(_snapshot(folder, real.tokenizer_files("mistral-v3-instruct")))


def test_llama3_tokenizer_json_gives_tiktokens_ids(llama_instruct: ModelTokenizer) -> None:
    ranks = real.load_tiktoken_ranks(real.llama3_tiktoken_file())
    specials = real.llama31_special_tokens()
    reference = tiktoken.Encoding(
        name="llama3",
        pat_str=real.LLAMA3_PATTERN,
        mergeable_ranks=ranks,
        special_tokens={token: len(ranks) + i for i, token in enumerate(specials)},
    )
    for text in VARIED_TEXTS:
        assert llama_instruct.encode(text, add_special_tokens=False) == reference.encode(text), text
        assert llama_instruct.decode(reference.encode(text)) == text


def test_llama3_special_tokens_and_vocabulary(llama_instruct: ModelTokenizer) -> None:
    assert llama_instruct.vocab_size == 128_256
    assert llama_instruct.bos_token == "<|begin_of_text|>"
    assert llama_instruct.bos_token_id == 128_000
    assert llama_instruct.eos_token_id == 128_009  # <|eot_id|> ends an Instruct turn
    assert llama_instruct.encode("Hello")[0] == 128_000
    assert llama_instruct.encode("<|start_header_id|>user", add_special_tokens=False)[0] == 128_006
    assert llama_instruct.id_to_token(128_255) == "<|reserved_special_token_247|>"
    assert llama_instruct.decode([128_000, 9906], skip_special_tokens=True) == "Hello"


@pytest.mark.parametrize(
    ("recipe", "version", "vocab"),
    [("mistral-v3-instruct", "v3", 32_768), ("mistral-v1-instruct", "v1", 32_000)],
)
def test_mistral_tokenizer_json_gives_sentencepieces_ids(
    tmp_path: Path, recipe: str, version: str, vocab: int
) -> None:
    tokenizer = ModelTokenizer.from_dir(_snapshot(tmp_path, real.tokenizer_files(recipe)))
    reference = sentencepiece.SentencePieceProcessor(
        model_file=str(real.mistral_sentencepiece_file(version))
    )
    for text in VARIED_TEXTS:
        assert tokenizer.encode(text, add_special_tokens=False) == reference.encode(text), text
        assert tokenizer.decode(reference.encode(text)) == text
    assert tokenizer.vocab_size == vocab
    assert (tokenizer.bos_token, tokenizer.bos_token_id) == ("<s>", 1)
    assert tokenizer.encode("Hello") == [1, *reference.encode("Hello")]


def test_same_text_gives_each_models_own_ids(
    llama_instruct: ModelTokenizer, mistral_v3: ModelTokenizer
) -> None:
    text = "The quick brown fox"
    llama_ids = llama_instruct.encode(text)
    mistral_ids = mistral_v3.encode(text)
    assert llama_ids[0] == 128_000 and mistral_ids[0] == 1
    assert max(mistral_ids) < 32_768
    assert llama_ids != mistral_ids


def test_llama_instruct_renders_its_published_chat_template(
    llama_instruct: ModelTokenizer,
) -> None:
    prompt = llama_instruct.apply_chat_template(
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    )
    assert prompt == (
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n"
        "Cutting Knowledge Date: December 2023\nToday Date: 26 Jul 2024\n\n"
        "Be brief.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n"
    )
    without_prompt = llama_instruct.apply_chat_template(
        [{"role": "user", "content": "Hi"}], add_generation_prompt=False
    )
    assert without_prompt.endswith("Hi<|eot_id|>")
    # Tools go in the first user message, serialised by the non-escaping tojson filter.
    tool = {"type": "function", "function": {"name": "lookup", "description": "a<b & c"}}
    with_tools = llama_instruct.apply_chat_template(
        [{"role": "user", "content": "Find it"}], tools=[tool]
    )
    assert "Environment: ipython" in with_tools and '"description": "a<b & c"' in with_tools


def test_mistral_template_enforces_alternating_roles(mistral_v3: ModelTokenizer) -> None:
    prompt = mistral_v3.apply_chat_template(
        [
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello"},
            {"role": "user", "content": "Again"},
        ]
    )
    assert prompt == "<s>[INST] Hi[/INST] Hello</s>[INST] Again[/INST]"
    ids = mistral_v3.encode(prompt, add_special_tokens=False)
    assert ids[:2] == [1, 3]  # <s> [INST]: control tokens, not text
    with pytest.raises(jinja2.TemplateError, match="must alternate"):
        mistral_v3.apply_chat_template(
            [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]
        )


def test_base_model_has_no_chat_template(tmp_path: Path) -> None:
    base = ModelTokenizer.from_dir(_snapshot(tmp_path, real.tokenizer_files("llama-3.1-base")))
    assert base.chat_template is None and not base.has_chat_template
    assert base.eos_token == "<|end_of_text|>" and base.eos_token_id == 128_001
    assert base.encode("Once upon a time")[0] == 128_000
    with pytest.raises(NoChatTemplate):
        base.apply_chat_template([{"role": "user", "content": "Hi"}])


def test_named_templates_and_chat_template_jinja_file(tmp_path: Path) -> None:
    files = real.tokenizer_files("llama-3.1-base")
    _snapshot(tmp_path, files)
    (tmp_path / "chat_template.jinja").write_text("{{ bos_token }}{{ messages[0]['content'] }}")
    tokenizer = ModelTokenizer.from_dir(tmp_path)
    assert tokenizer.apply_chat_template([{"role": "user", "content": "x"}]) == (
        "<|begin_of_text|>x"
    )


def test_hub_fixtures_carry_the_real_tokenizers(tmp_path: Path) -> None:
    chat = {
        hub.LLAMA_8B_ID,
        hub.LLAMA_70B_ID,
        hub.LLAMA_8B_AWQ_ID,
        hub.MISTRAL_7B_ID,
        hub.MISTRAL_GPTQ_ID,
    }
    for repo_id in chat | {hub.LLAMA_8B_BASE_ID}:
        folder = tmp_path / repo_id.replace("/", "--")
        folder.mkdir()
        files = hub.repo(repo_id).main.files
        for name in ("tokenizer.json", "tokenizer_config.json", "generation_config.json"):
            (folder / name).write_bytes(files[name].content)
        tokenizer = ModelTokenizer.from_dir(folder)
        config_vocab = hub.repo(repo_id).main.config["vocab_size"]
        assert tokenizer.vocab_size == config_vocab, repo_id
        assert tokenizer.has_chat_template == (repo_id in chat), repo_id
    assert hub.repo(hub.LLAMA_8B_BASE_ID).main.config["eos_token_id"] == 128_001


def _write_cache(hub_cache: Path, repo_id: str, commit: str, files: dict[str, bytes]) -> Path:
    repo_folder = hub_cache / ("models--" + repo_id.replace("/", "--"))
    (repo_folder / "refs").mkdir(parents=True)
    (repo_folder / "refs" / "main").write_text(commit)
    snapshot = repo_folder / "snapshots" / commit
    snapshot.mkdir(parents=True)
    for name, content in files.items():
        (snapshot / name).write_bytes(content)
    return snapshot


def test_find_snapshot_follows_the_hub_cache_layout(tmp_path: Path) -> None:
    commit = "a" * 40
    snapshot = _write_cache(
        tmp_path, "org/model", commit, {"config.json": b"{}", "model.safetensors": b"x"}
    )
    assert find_snapshot(tmp_path, "org/model", "main") == snapshot
    assert find_snapshot(tmp_path, "org/model", commit) == snapshot


def test_missing_weights_say_what_the_engines_say_offline(tmp_path: Path) -> None:
    with pytest.raises(MissingWeights) as missing:
        find_snapshot(tmp_path, "org/absent", "main")
    assert "Cannot find an appropriate cached snapshot folder" in str(missing.value)
    assert "HF_HUB_OFFLINE=0" in str(missing.value)
    assert (
        missing.value.tgi_message == "No .bin weights found for model org/absent and revision main."
    )
    # A snapshot holding configs but no weights (an interrupted download) is missing too.
    _write_cache(tmp_path, "org/partial", "b" * 40, {"config.json": b"{}"})
    with pytest.raises(MissingWeights):
        find_snapshot(tmp_path, "org/partial", "main")
    # Another commit in the cache is never used in place of the requested one.
    with pytest.raises(MissingWeights):
        find_snapshot(tmp_path, "org/partial", "c" * 40)

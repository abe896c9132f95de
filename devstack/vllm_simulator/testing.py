"""Test helpers: a tiny model snapshot in the Hugging Face cache layout, and a simulator run as
a real process on a loopback port (used by the vLLM and SGLang simulator tests)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from devstack.model_files.snapshots import repo_folder_name

WORDS = (  # noqa: SIM905 - a sentence reads better than a list of strings
    "the model is a simple text that we can use to test how the system works under load and it "
    "will keep going until asked stop or runs out of tokens so you may see words like data cloud "
    "fast slow queue batch token cache hello world user assistant system , ! . ?"
).split()
# A ChatML-style template (Qwen2 family): no BOS, <|im_start|>role ... <|im_end|>.
CHAT_TEMPLATE = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content']"
    " + '<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def build_snapshot(
    hub: Path, repo_id: str, *, chat: bool, max_position_embeddings: int = 2048
) -> str:
    """Write a small byte-level word tokenizer and a Llama-shaped config; return the commit sha."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors

    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, "<|im_start|>": 3, "<|im_end|>": 4, "Ċ": 5}
    for w in WORDS:
        vocab.setdefault("Ġ" + w, len(vocab))
        vocab.setdefault(w, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))  # noqa: S106 - a token
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(
        [AddedToken(t, special=True) for t in ("<s>", "</s>", "<|im_start|>", "<|im_end|>")]
    )
    if not chat:  # a base model adds BOS to every prompt
        tok.post_processor = processors.TemplateProcessing(
            single="<s> $A", pair="<s> $A $B", special_tokens=[("<s>", 1)]
        )
    sha = ("c" if chat else "b") * 40
    repo = hub / repo_folder_name(repo_id)
    snap = repo / "snapshots" / sha
    snap.mkdir(parents=True, exist_ok=True)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(sha)
    tok.save(str(snap / "tokenizer.json"))
    tcfg: dict[str, object] = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": None if chat else "<s>",
        "eos_token": "<|im_end|>" if chat else "</s>",
        "model_max_length": max_position_embeddings,
    }
    if chat:
        tcfg["chat_template"] = CHAT_TEMPLATE
    (snap / "tokenizer_config.json").write_text(json.dumps(tcfg))
    config = {
        "architectures": ["Qwen2ForCausalLM" if chat else "LlamaForCausalLM"],
        "hidden_size": 256,
        "intermediate_size": 1024,
        "num_attention_heads": 8,
        "num_key_value_heads": 2,
        "num_hidden_layers": 4,
        "max_position_embeddings": max_position_embeddings,
        "vocab_size": len(vocab),
        "torch_dtype": "bfloat16",
    }
    (snap / "config.json").write_text(json.dumps(config))
    (snap / "generation_config.json").write_text(json.dumps({}))
    (snap / "model.safetensors").write_bytes(b"\0" * 64)
    return sha


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Running:
    proc: subprocess.Popen[str]
    port: int
    log_path: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def run_to_exit(
    module: str, argv: Sequence[str], env: Mapping[str, str], timeout: float = 60
) -> tuple[int, str]:
    """Run a simulator that is expected to stop by itself; return (exit code, combined output)."""
    done = subprocess.run(
        [sys.executable, "-m", module, *argv],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return done.returncode, done.stdout + done.stderr


@contextmanager
def running(
    module: str,
    argv: Sequence[str],
    env: Mapping[str, str],
    port: int,
    log_path: Path,
    ready_path: str,
) -> Iterator[Running]:
    """Start the simulator and wait until ``ready_path`` answers 200 (the port opens only after
    the engine is ready)."""
    import httpx

    with log_path.open("w") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", module, *argv],
            env={**os.environ, **env},
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    run = Running(proc, port, log_path)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"simulator exited {proc.returncode}:\n{run.log()}")
            try:
                if httpx.get(run.base_url + ready_path, timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"simulator not ready:\n{run.log()}")
            time.sleep(0.1)
        yield run
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

"""The TGI simulator, run as a real subprocess on a loopback port (no database, no cluster).

Every simulator gets a real Hugging Face cache (HF_HOME) holding the local Hub's fixture
snapshots, and HF_HUB_OFFLINE=1 as the portal sets it: the simulator must find the weights there,
read config.json and tokenize with the snapshot's own tokenizer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from openai.types.chat import ChatCompletionMessageParam

from devstack.hub import fixtures as hub
from devstack.model_files import ModelTokenizer
from devstack.tgi_simulator import FAULTS_ANNOTATION, FAULTS_ENV, Faults, parse_faults
from devstack.tgi_simulator.faults import format_faults
from devstack.tgi_simulator.metrics import duration_buckets, fmt_number

REPO = Path(__file__).resolve().parents[2]
LLAMA = hub.LLAMA_8B_ID
MISTRAL = hub.MISTRAL_7B_ID
BASE = "acme/mistral-7b-base"  # Mistral's files without a chat template
LLAMA_8K = "acme/llama-8k"  # Llama's files with max_position_embeddings 8192
LLAMA_4K = "acme/llama-4k"  # the default here: a 4k context keeps the default prefill valid
NOT_CACHED = "acme/never-downloaded-7b"


def write_snapshot(
    hub_cache: Path,
    source_id: str,
    repo_id: str | None = None,
    *,
    drop_chat_template: bool = False,
    config: dict | None = None,
) -> Path:
    """The fixture repo's main commit in huggingface_hub's cache layout (what the weight
    download Job leaves in the volume); `repo_id` renames it, the options edit its files."""
    commit = hub.repo(source_id).main
    repo_id = repo_id or source_id
    root = hub_cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = root / "snapshots" / commit.sha
    for name, file in commit.files.items():
        target = snapshot / name
        target.parent.mkdir(parents=True, exist_ok=True)
        content = file.content
        if name == "tokenizer_config.json" and drop_chat_template:
            data = json.loads(content)
            data.pop("chat_template", None)
            content = json.dumps(data).encode()
        if name == "config.json" and config:
            content = json.dumps({**json.loads(content), **config}).encode()
        target.write_bytes(content)
    (snapshot / "chat_template.jinja").unlink(missing_ok=True) if drop_chat_template else None
    (root / "refs").mkdir(parents=True, exist_ok=True)
    (root / "refs" / "main").write_text(commit.sha)
    return snapshot


@pytest.fixture(scope="session")
def hf_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("hf-home")
    cache = home / "hub"
    write_snapshot(cache, LLAMA)
    write_snapshot(cache, MISTRAL)
    write_snapshot(cache, MISTRAL, BASE, drop_chat_template=True)
    write_snapshot(cache, LLAMA, LLAMA_8K, config={"max_position_embeddings": 8192})
    write_snapshot(cache, LLAMA, LLAMA_4K, config={"max_position_embeddings": 4096})
    return home


def tokenizer(hf_home: Path, repo_id: str) -> ModelTokenizer:
    root = hf_home / "hub" / ("models--" + repo_id.replace("/", "--"))
    sha = (root / "refs" / "main").read_text()
    return ModelTokenizer.from_dir(root / "snapshots" / sha)


def model_sha(hf_home: Path, repo_id: str) -> str:
    return (hf_home / "hub" / ("models--" + repo_id.replace("/", "--")) / "refs/main").read_text()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class Sim:
    proc: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"simulator exited {self.proc.returncode}:\n{self.logs()}")
            if port_open(self.port):
                return
            time.sleep(0.05)
        raise AssertionError(f"simulator not ready:\n{self.logs()}")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode


def launch(
    tmp_path: Path,
    args: list[str] | None = None,
    env: dict[str, str] | None = None,
    hf_home: Path | None = None,
) -> Sim:
    port = free_port()
    drop = ("PORT", "HOSTNAME", "MODEL_ID", "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE")
    full_env = {k: v for k, v in os.environ.items() if k not in drop}
    full_env.update({"SIM_STARTUP_SECONDS": "0.2", "PYTHONPATH": str(REPO)})
    # What the portal's pod gets: the weights volume as HF_HOME, and no Hub access.
    full_env.update({"HF_HUB_OFFLINE": "1", "HF_HOME": str(hf_home or tmp_path / "empty-hf")})
    if not any(a.startswith("--model-id") for a in args or []) and "MODEL_ID" not in (env or {}):
        args = ["--model-id", LLAMA_4K, *(args or [])]
    full_env.update(env or {})
    log_path = tmp_path / f"sim-{port}.log"
    with log_path.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "devstack.tgi_simulator",
                "--hostname",
                "127.0.0.1",
                "--port",
                str(port),
                *(args or []),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            env=full_env,
        )
    return Sim(proc, port, log_path)


def run_to_exit(
    tmp_path: Path, args: list[str], env: dict[str, str] | None = None, hf_home: Path | None = None
) -> Sim:
    sim = launch(tmp_path, args, env, hf_home)
    try:
        sim.proc.wait(30)
    finally:
        sim.stop()
    return sim


@pytest.fixture
def start_sim(tmp_path: Path, hf_home: Path) -> Iterator:
    started: list[Sim] = []

    def start(args: list[str] | None = None, env: dict[str, str] | None = None) -> Sim:
        sim = launch(tmp_path, args, env, hf_home)
        started.append(sim)
        sim.wait_ready()
        return sim

    yield start
    for sim in started:
        sim.stop()


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory, hf_home: Path) -> Iterator[Sim]:
    s = launch(
        tmp_path_factory.mktemp("sim"),
        [
            "--model-id",
            LLAMA,
            "--max-input-tokens",
            "1000",
            "--max-total-tokens",
            "2048",
        ],
        {"SIM_TOKENS_PER_SECOND": "2000", "SIM_OUTPUT_TOKENS": "12"},
        hf_home,
    )
    s.wait_ready()
    yield s
    assert s.stop() == 0, s.logs()


def sse_events(text: str) -> list[str]:
    return [line[len("data: ") :] for line in text.split("\n\n") if line.startswith("data: ")]


def parse_metrics(text: str) -> tuple[dict[str, str], dict[str, float]]:
    types: dict[str, str] = {}
    samples: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ")
            types[name] = kind
        elif line and not line.startswith("#"):
            key, value = line.rsplit(" ", 1)
            samples[key] = float(value)
    return types, samples


# --- pure helpers -------------------------------------------------------------------------


def test_parse_faults_formats() -> None:
    assert parse_faults("") == Faults()
    assert parse_faults(None) == Faults()
    f = parse_faults('{"error_rate": 0.25, "error_health": true, "slow_start": 3}')
    assert (f.error_rate, f.error_health, f.slow_start) == (0.25, True, 3.0)
    g = parse_faults("crash, token_latency_ms=50; oom=false")
    assert g.crash and not g.oom and g.token_latency_ms == 50.0
    assert parse_faults(format_faults(f)) == f
    assert FAULTS_ENV == "SIM_FAULTS" and FAULTS_ANNOTATION == "sim.inference.portal/faults"
    for bad in ("explode=1", "error_rate=2", "crash=maybe", "[1]", "slow_start=-1"):
        with pytest.raises(ValueError, match="fault"):
            parse_faults(bad)


def test_metric_number_formatting_matches_rust_display() -> None:
    assert fmt_number(41.0) == "41"
    assert fmt_number(40.96) == "40.96"
    assert fmt_number(0.00001) == "0.00001"
    b = duration_buckets()
    assert len(b) == 35
    assert b[0] == pytest.approx(0.00015) and b[-1] == pytest.approx(0.0001 * 1.5**35)


# --- startup ------------------------------------------------------------------------------


def test_port_refused_while_starting_then_healthy(tmp_path: Path, hf_home: Path) -> None:
    sim = launch(tmp_path, env={"SIM_STARTUP_SECONDS": "2"}, hf_home=hf_home)
    try:
        t0 = time.monotonic()
        while time.monotonic() - t0 < 1.0:
            assert not port_open(sim.port), "port must not be bound during download/warmup"
            time.sleep(0.1)
        sim.wait_ready()
        assert httpx.get(sim.url + "/health").status_code == 200
        logs = sim.logs()
        for needle in (
            "Args {",
            "Starting check and download process",
            "Successfully downloaded",
            "Starting shard",
            "Shard ready in",
            "Warming up model",
            "Connected",
        ):
            assert needle in logs
        assert logs.index("Warming up model") < logs.index("Connected")
    finally:
        assert sim.stop() == 0


def test_info_reflects_flags_and_env(start_sim, hf_home: Path) -> None:
    sha = model_sha(hf_home, MISTRAL)
    s = start_sim(
        ["--max-input-tokens", "1000", "--max-total-tokens=2048", "--max-client-batch-size", "8"],
        {"MODEL_ID": MISTRAL, "MAX_CONCURRENT_REQUESTS": "7", "MAX_BEST_OF": "3", "REVISION": sha},
    )
    info = httpx.get(s.url + "/info").json()
    assert info["model_id"] == MISTRAL
    # Offline the router reads the cache only and has no Hub model info: sha and pipeline tag
    # are null (router/src/server.rs, `Type::Cache`).
    assert info["model_sha"] is None and info["model_pipeline_tag"] is None
    assert info["max_concurrent_requests"] == 7
    assert info["max_best_of"] == 3
    assert info["max_stop_sequences"] == 4
    assert (info["max_input_tokens"], info["max_total_tokens"]) == (1000, 2048)
    assert info["max_client_batch_size"] == 8
    assert info["router"] == "text-generation-router"
    assert info["version"].startswith("3.")
    for key in ("validation_workers", "sha", "docker_label"):
        assert key in info
    models = httpx.get(s.url + "/v1/models").json()
    assert models["object"] == "list" and models["data"][0]["id"] == MISTRAL

    online = start_sim(
        ["--model-id", MISTRAL, "--max-total-tokens", "4096"], {"HF_HUB_OFFLINE": "0"}
    )
    info = httpx.get(online.url + "/info").json()
    assert info["model_sha"] == sha and info["model_pipeline_tag"] == "text-generation"


def test_context_length_comes_from_the_snapshot_config(start_sim, tmp_path: Path, hf_home) -> None:
    info = httpx.get(
        start_sim(["--model-id", LLAMA_8K], {"SIM_CHUNKED_PREFILL": "1"}).url + "/info"
    )
    assert (info.json()["max_input_tokens"], info.json()["max_total_tokens"]) == (8191, 8192)
    assert info.json()["max_concurrent_requests"] == 128 and info.json()["max_best_of"] == 2
    # Without chunked prefill the default prefill budget (4096) cannot hold 8191 input tokens.
    sim = run_to_exit(tmp_path, ["--model-id", LLAMA_8K], hf_home=hf_home)
    assert sim.proc.returncode == 1
    assert "Default `max_batch_prefill_tokens` to 4096" in sim.logs()
    assert "`max_batch_prefill_tokens` must be >= `max_input_tokens`" in sim.logs()


# --- generation APIs ----------------------------------------------------------------------


def test_chat_completion_non_streaming(sim: Sim) -> None:
    body = {"model": "tgi", "messages": [{"role": "user", "content": "Say hi"}]}
    r = httpx.post(sim.url + "/v1/chat/completions", json=body)
    assert r.status_code == 200
    data = r.json()
    assert data["object"] == "chat.completion"
    assert data["model"] == "meta-llama/Llama-3.1-8B-Instruct"
    assert data["system_fingerprint"].startswith("3.")
    choice = data["choices"][0]
    assert choice["message"]["role"] == "assistant" and choice["message"]["content"]
    assert choice["finish_reason"] == "stop"  # natural end (EOS) after SIM_OUTPUT_TOKENS
    usage = data["usage"]
    assert usage["completion_tokens"] == 12
    assert usage["prompt_tokens"] > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert r.headers["x-generated-tokens"] == "12"

    r = httpx.post(sim.url + "/v1/chat/completions", json={**body, "max_tokens": 3})
    assert r.json()["choices"][0]["finish_reason"] == "length"
    assert r.json()["usage"]["completion_tokens"] == 3
    # Deterministic: the same prompt gives the same answer.
    again = httpx.post(sim.url + "/v1/chat/completions", json={**body, "max_tokens": 3}).json()
    assert again["choices"][0]["message"] == r.json()["choices"][0]["message"]


def test_chat_completion_streaming_with_usage(sim: Sim) -> None:
    body = {
        "messages": [{"role": "user", "content": "Stream please"}],
        "stream": True,
        "max_tokens": 5,
        "stream_options": {"include_usage": True},
    }
    r = httpx.post(sim.url + "/v1/chat/completions", json=body)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/event-stream")
    assert r.text.endswith("data: [DONE]\n\n")
    events = sse_events(r.text)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    token_chunks, usage_chunk = chunks[:-1], chunks[-1]
    assert len(token_chunks) == 5
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert all(c["choices"][0]["delta"]["role"] == "assistant" for c in token_chunks)
    assert [c["choices"][0]["finish_reason"] for c in token_chunks] == [None] * 4 + ["length"]
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"]["completion_tokens"] == 5
    text = "".join(c["choices"][0]["delta"]["content"] for c in token_chunks)
    non_stream = httpx.post(sim.url + "/v1/chat/completions", json={**body, "stream": False})
    assert text == non_stream.json()["choices"][0]["message"]["content"]

    # Without include_usage there is no usage chunk.
    r = httpx.post(sim.url + "/v1/chat/completions", json={**body, "stream_options": None})
    chunks = [json.loads(e) for e in sse_events(r.text)[:-1]]
    assert len(chunks) == 5 and all(c["usage"] is None for c in chunks)


def test_completions_and_generate_stream(sim: Sim) -> None:
    r = httpx.post(sim.url + "/v1/completions", json={"prompt": "Once upon", "max_tokens": 4})
    data = r.json()
    assert data["object"] == "text_completion"
    assert data["choices"][0]["finish_reason"] == "length"
    assert data["usage"]["completion_tokens"] == 4
    r = httpx.post(
        sim.url + "/v1/completions", json={"prompt": "Once upon", "max_tokens": 4, "stream": True}
    )
    events = sse_events(r.text)
    assert events[-1] == "[DONE]"
    assert json.loads(events[-2])["usage"]["completion_tokens"] == 4

    r = httpx.post(
        sim.url + "/generate_stream",
        json={"inputs": "Hi", "parameters": {"max_new_tokens": 3, "details": True}},
    )
    chunks = [json.loads(e) for e in sse_events(r.text)]
    assert [c["index"] for c in chunks] == [1, 2, 3]
    assert chunks[-1]["generated_text"] and chunks[-1]["details"]["generated_tokens"] == 3
    assert chunks[0]["generated_text"] is None

    r = httpx.post(
        sim.url + "/invocations", json={"inputs": "Hi", "parameters": {"max_new_tokens": 2}}
    )
    assert isinstance(r.json(), list) and r.json()[0]["generated_text"]


def test_generate_headers(sim: Sim, hf_home: Path) -> None:
    r = httpx.post(
        sim.url + "/generate",
        json={"inputs": "Hello, world!", "parameters": {"max_new_tokens": 7, "details": True}},
    )
    assert r.status_code == 200
    h = r.headers
    for name in (
        "x-compute-time",
        "x-total-time",
        "x-validation-time",
        "x-queue-time",
        "x-inference-time",
        "x-time-per-token",
        "x-compute-type",
    ):
        assert name in h
    # The model's own count, BOS included (Llama 3: 4 text tokens + <|begin_of_text|>).
    assert h["x-prompt-tokens"] == str(len(tokenizer(hf_home, LLAMA).encode("Hello, world!")))
    assert h["x-generated-tokens"] == "7"
    assert float(h["x-compute-time"]) > 0
    data = r.json()
    assert data["details"]["finish_reason"] == "length"
    assert len(data["details"]["tokens"]) == 7


def test_validation_errors(sim: Sim, hf_home: Path) -> None:
    too_long = "word " * 1100  # ~1100 tokens > max_input_tokens=1000
    r = httpx.post(
        sim.url + "/generate", json={"inputs": too_long, "parameters": {"max_new_tokens": 10}}
    )
    assert r.status_code == 422
    assert r.json()["error_type"] == "validation"
    assert r.json()["error"].startswith("Input validation error: `inputs` must have less than 1000")

    prompt = "word " * 500
    n = len(tokenizer(hf_home, LLAMA).encode(prompt))  # with BOS
    r = httpx.post(
        sim.url + "/generate", json={"inputs": prompt, "parameters": {"max_new_tokens": 2000}}
    )
    assert r.status_code == 422
    assert r.json() == {
        "error": "Input validation error: `inputs` tokens + `max_new_tokens` must be <= 2048. "
        f"Given: {n} `inputs` tokens and 2000 `max_new_tokens`",
        "error_type": "validation",
    }
    r = httpx.post(
        sim.url + "/v1/chat/completions",
        json={"messages": [{"role": "user", "content": prompt}], "max_tokens": 2000},
    )
    assert r.status_code == 422 and "must be <= 2048" in r.json()["error"]
    # Streaming requests get the error as an SSE event (TGI answers 200 there).
    r = httpx.post(
        sim.url + "/v1/chat/completions",
        json={
            "messages": [{"role": "user", "content": prompt}],
            "max_tokens": 2000,
            "stream": True,
        },
    )
    events = sse_events(r.text)
    assert json.loads(events[0])["error_type"] == "validation" and events[-1] == "[DONE]"
    r = httpx.post(
        sim.url + "/generate",
        json={"inputs": "x", "parameters": {"stop": ["a", "b", "c", "d", "e"]}},
    )
    assert "`stop` supports up to 4 stop sequences. Given: 5" in r.json()["error"]
    r = httpx.post(
        sim.url + "/generate", content=b"{nope", headers={"content-type": "application/json"}
    )
    assert r.status_code == 400
    r = httpx.post(sim.url + "/generate", json={"parameters": {}})
    assert r.status_code == 422 and "missing field `inputs`" in r.text


def test_metrics_exposition(sim: Sim) -> None:
    httpx.post(
        sim.url + "/generate", json={"inputs": "warm up", "parameters": {"max_new_tokens": 2}}
    )
    types, before = parse_metrics(httpx.get(sim.url + "/metrics").text)
    for _ in range(3):
        assert (
            httpx.post(
                sim.url + "/generate",
                json={"inputs": "count me", "parameters": {"max_new_tokens": 4}},
            ).status_code
            == 200
        )
    text = httpx.get(sim.url + "/metrics").text
    types, after = parse_metrics(text)
    # Counters keep their bare names (the Rust exporter adds no `_total` suffix).
    assert not re.search(r"^\w+_total[ {]", text, re.M)
    assert not re.search(r"^# TYPE \w+_total ", text, re.M)
    assert types["tgi_request_count"] == "counter"
    assert types["tgi_request_success"] == "counter"
    assert types["tgi_batch_inference_count"] == "counter"
    assert types["tgi_queue_size"] == "gauge"
    assert types["tgi_batch_current_size"] == "gauge"
    assert types["tgi_batch_max_total_tokens"] == "gauge"
    for h in (
        "tgi_request_duration",
        "tgi_request_queue_duration",
        "tgi_request_input_length",
        "tgi_request_generated_tokens",
        "tgi_request_max_new_tokens",
        "tgi_request_mean_time_per_token_duration",
        "tgi_batch_next_size",
        "tgi_batch_inference_duration",
        "tgi_batch_forward_duration",
    ):
        assert types[h] == "histogram", h
    assert after["tgi_request_count"] - before["tgi_request_count"] == 3
    assert after["tgi_request_success"] - before["tgi_request_success"] == 3
    assert after["tgi_request_duration_count"] - before["tgi_request_duration_count"] == 3
    assert (
        after["tgi_request_generated_tokens_sum"] - before["tgi_request_generated_tokens_sum"] == 12
    )
    assert (
        after['tgi_batch_inference_count{method="prefill"}']
        > before['tgi_batch_inference_count{method="prefill"}']
    )

    def les(name: str) -> list[str]:
        return re.findall(rf'^{name}_bucket\{{le="([^"]+)"\}}', text, re.M)

    expected = [fmt_number(b) for b in duration_buckets()] + ["+Inf"]
    assert les("tgi_request_duration") == expected
    assert les("tgi_request_duration")[0] == "0.00015000000000000001"
    assert les("tgi_request_input_length")[:3] == ["10", "20", "30"]  # max_input 1000 / 100
    assert len(les("tgi_request_input_length")) == 101
    assert les("tgi_request_generated_tokens")[:2] == ["20.48", "40.96"]  # max_total 2048 / 100
    assert les("tgi_request_max_new_tokens")[-2] == "2048"
    assert les("tgi_batch_next_size")[:3] == ["1", "2", "3"]
    assert re.search(
        r'^tgi_batch_inference_duration_bucket\{method="decode",le="0.00015000000000000001"\}',
        text,
        re.M,
    )


# --- load, auth, disconnects --------------------------------------------------------------


def test_overloaded_above_max_concurrent_requests(start_sim) -> None:
    s = start_sim(["--max-concurrent-requests", "2"], {"SIM_TOKENS_PER_SECOND": "50"})

    async def fire() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=s.url, timeout=30) as client:
            reqs = [
                client.post(
                    "/generate", json={"inputs": f"req {i}", "parameters": {"max_new_tokens": 20}}
                )
                for i in range(8)
            ]
            return await asyncio.gather(*reqs)

    responses = asyncio.run(fire())
    codes = sorted(r.status_code for r in responses)
    assert codes.count(200) >= 2 and 429 in codes, codes
    overloaded = next(r for r in responses if r.status_code == 429)
    assert overloaded.json() == {"error": "Model is overloaded", "error_type": "overloaded"}
    _, samples = parse_metrics(httpx.get(s.url + "/metrics").text)
    assert samples['tgi_request_failure{err="overloaded"}'] == codes.count(429)


def test_queue_and_batch_gauges_move_under_load(start_sim) -> None:
    # A tiny KV budget forces queueing: only two sequences fit in a batch at once.
    s = start_sim(
        [
            "--max-input-tokens",
            "100",
            "--max-total-tokens",
            "200",
            "--max-batch-prefill-tokens",
            "200",
            "--max-batch-total-tokens",
            "400",
        ],
        {"SIM_TOKENS_PER_SECOND": "50"},
    )

    async def run() -> tuple[list[int], float, float]:
        async with httpx.AsyncClient(base_url=s.url, timeout=30) as client:
            reqs = [
                asyncio.ensure_future(
                    client.post(
                        "/generate", json={"inputs": "q", "parameters": {"max_new_tokens": 150}}
                    )
                )
                for _ in range(6)
            ]
            await asyncio.sleep(0.5)
            _, mid = parse_metrics((await client.get("/metrics")).text)
            done = await asyncio.gather(*reqs)
            return (
                [r.status_code for r in done],
                mid["tgi_queue_size"],
                mid["tgi_batch_current_size"],
            )

    codes, queued, batch = asyncio.run(run())
    assert codes == [200] * 6
    assert queued >= 1 and batch == 2


def test_api_key(start_sim) -> None:
    s = start_sim(["--api-key", "s3cret"])
    body = {"inputs": "hi", "parameters": {"max_new_tokens": 1}}
    assert httpx.post(s.url + "/generate", json=body).status_code == 401
    assert (
        httpx.post(
            s.url + "/generate", json=body, headers={"Authorization": "Bearer wrong"}
        ).status_code
        == 401
    )
    assert (
        httpx.post(
            s.url + "/generate", json=body, headers={"Authorization": "Bearer s3cret"}
        ).status_code
        == 200
    )
    assert httpx.get(s.url + "/health").status_code == 200  # info routes stay open
    assert "s3cret" not in s.logs()


def test_client_disconnect_stops_generation(start_sim) -> None:
    s = start_sim(env={"SIM_TOKENS_PER_SECOND": "20"})
    body = {"inputs": "long", "parameters": {"max_new_tokens": 400}}
    with httpx.Client(base_url=s.url, timeout=10) as client:
        with client.stream("POST", "/generate_stream", json=body) as r:
            it = r.iter_lines()
            first = next(line for line in it if line.startswith("data:"))
            assert json.loads(first[5:])["index"] == 1
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            _, m = parse_metrics(client.get("/metrics").text)
            if m.get('tgi_request_failure{err="dropped"}') == 1:
                break
            time.sleep(0.1)
        assert m['tgi_request_failure{err="dropped"}'] == 1
        assert m["tgi_batch_current_size"] == 0
        assert m.get("tgi_request_success", 0) == 0


# --- launcher validation and faults ---------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (
            ["--max-input-tokens", "100", "--max-total-tokens", "100"],
            1,
            "`max_input_tokens`(100) must be < `max_total_tokens`(100)",
        ),
        (
            ["--max-input-tokens", "10", "--max-input-length", "10"],
            1,
            "Both `max_input_tokens` (10) and `max_input_length` (10) are set",
        ),
        (
            ["--quantize", "exl2", "--num-shard", "2"],
            1,
            "Sharding is currently not supported with `exl2` quantization",
        ),
        (["--quantize", "int3"], 2, "invalid value 'int3' for '--quantize <QUANTIZE>'"),
        (["--max-total-tokens", "lots"], 2, "invalid digit found in string"),
        (["--no-such-flag"], 2, "unexpected argument '--no-such-flag'"),
        (
            ["--max-total-tokens", "9000", "--max-batch-total-tokens", "8000"],
            1,
            "`max_total_tokens` must be <= `max_batch_total_tokens`. Given: 9000 and 8000",
        ),
        (
            [
                "--max-input-tokens",
                "3000",
                "--max-total-tokens",
                "4000",
                "--max-batch-prefill-tokens",
                "2048",
            ],
            1,
            "`max_batch_prefill_tokens` must be >= `max_input_tokens`. Given: 2048 and 3000",
        ),
        (["--quantize", "awq", "--dtype", "bfloat16"], 1, "ShardCannotStart"),
        (["--quantize", "marlin", "--dtype", "float16"], 1, "Only 1 can be set between `dtype`"),
        (["--sharded", "true", "--num-shard", "1"], 1, "`sharded` is true but `num_shard` <= 1"),
    ],
)
def test_bad_launcher_settings_exit_nonzero(tmp_path: Path, hf_home, args, code, message) -> None:
    sim = run_to_exit(tmp_path, args, hf_home=hf_home)
    assert sim.proc.returncode == code, sim.logs()
    assert message in sim.logs()
    assert not port_open(sim.port)


def test_launcher_settings_from_env(tmp_path: Path, hf_home: Path) -> None:
    env = {"MAX_INPUT_TOKENS": "50", "MAX_TOTAL_TOKENS": "40"}
    sim = run_to_exit(tmp_path, [], env, hf_home)
    assert sim.proc.returncode == 1
    assert "`max_input_tokens`(50) must be < `max_total_tokens`(40)" in sim.logs()


def test_crash_fault_exits_1(tmp_path: Path, hf_home: Path) -> None:
    sim = run_to_exit(tmp_path, [], {FAULTS_ENV: "crash"}, hf_home)
    assert sim.proc.returncode == 1
    logs = sim.logs()
    assert "Shard 0 failed to start" in logs and "Error: ShardCannotStart" in logs


def test_cuda_oom_at_warmup_exits_1_with_the_cause_only_in_the_log(
    tmp_path: Path, hf_home: Path
) -> None:
    sim = run_to_exit(
        tmp_path,
        ["--max-input-tokens", "2000", "--max-batch-prefill-tokens", "2048"],
        {FAULTS_ENV: '{"oom": true}'},
        hf_home,
    )
    # Real TGI exits 1 (WebserverFailed): the kubelet reports Error/CrashLoopBackOff, never
    # OOMKilled, which is the host memory limit.
    assert sim.proc.returncode == 1
    logs = sim.logs()
    assert logs.index("Warming up model") < logs.index(
        "torch.OutOfMemoryError: CUDA out of memory."
    )
    assert "Tried to allocate" in logs
    assert (
        "Not enough memory to handle 2048 prefill tokens. "
        "You need to decrease `--max-batch-prefill-tokens`" in logs
    )
    assert "Webserver Crashed" in logs
    assert logs.rstrip().endswith("Error: WebserverFailed")
    assert not port_open(sim.port)


def test_cuda_oom_while_loading_weights_fails_the_shard(tmp_path: Path, hf_home: Path) -> None:
    sim = run_to_exit(tmp_path, [], {FAULTS_ENV: "oom_load"}, hf_home)
    assert sim.proc.returncode == 1
    logs = sim.logs()
    stderr_dump = logs.index("Shard complete standard error output:")
    assert logs.index("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate", stderr_dump)
    assert "Shard 0 failed to start" in logs
    assert logs.rstrip().endswith("Error: ShardCannotStart")


def test_offline_without_cached_weights_refuses_to_start(tmp_path: Path, hf_home: Path) -> None:
    sim = run_to_exit(tmp_path, ["--model-id", NOT_CACHED, "--revision", "abc123"], None, hf_home)
    assert sim.proc.returncode == 1
    logs = sim.logs()
    assert f"Starting check and download process for {NOT_CACHED}" in logs
    assert "Download encountered an error" in logs
    assert (
        "huggingface_hub.errors.EntryNotFoundError: No .bin weights found for model "
        f"{NOT_CACHED} and revision abc123." in logs
    )
    assert logs.rstrip().endswith("Error: DownloadError")
    assert "Starting shard" not in logs and not port_open(sim.port)
    # A cache elsewhere does not count: --huggingface-hub-cache is where TGI looks.
    other = run_to_exit(
        tmp_path, ["--model-id", LLAMA, "--huggingface-hub-cache", str(tmp_path)], None, hf_home
    )
    assert other.proc.returncode == 1 and "Error: DownloadError" in other.logs()


def test_crash_after_fault(tmp_path: Path, hf_home: Path) -> None:
    sim = launch(tmp_path, env={FAULTS_ENV: "crash_after=0.5"}, hf_home=hf_home)
    try:
        sim.wait_ready()
        assert sim.proc.wait(10) == 1
        assert "Shard 0 crashed" in sim.logs()
    finally:
        sim.stop()


def test_slow_start_fault(tmp_path: Path, hf_home: Path) -> None:
    sim = launch(tmp_path, env={FAULTS_ENV: "slow_start=1.5"}, hf_home=hf_home)
    try:
        t0 = time.monotonic()
        sim.wait_ready()
        assert time.monotonic() - t0 >= 1.5
    finally:
        sim.stop()


def test_error_rate_fault(start_sim) -> None:
    s = start_sim(env={FAULTS_ENV: "error_rate=1,error_health=true"})
    assert httpx.get(s.url + "/health").status_code == 200
    r = httpx.post(s.url + "/generate", json={"inputs": "x", "parameters": {"max_new_tokens": 2}})
    assert r.status_code == 424
    assert r.json()["error_type"] == "generation"
    assert r.json()["error"].startswith("Request failed during generation: ")
    h = httpx.get(s.url + "/health")
    assert h.status_code == 503
    assert h.json() == {"error": "unhealthy", "error_type": "healthcheck"}
    _, m = parse_metrics(httpx.get(s.url + "/metrics").text)
    assert m['tgi_request_failure{err="generation"}'] == 1

    half = start_sim(env={FAULTS_ENV: "error_rate=0.5"})
    codes = [
        httpx.post(
            half.url + "/generate", json={"inputs": "x", "parameters": {"max_new_tokens": 1}}
        ).status_code
        for _ in range(6)
    ]
    assert codes == [200, 424] * 3
    assert httpx.get(half.url + "/health").status_code == 200  # no error_health


def test_token_latency_fault_and_sigterm(start_sim) -> None:
    s = start_sim(env={FAULTS_ENV: "token_latency_ms=50"})
    t0 = time.monotonic()
    r = httpx.post(s.url + "/generate", json={"inputs": "x", "parameters": {"max_new_tokens": 10}})
    elapsed = time.monotonic() - t0
    assert r.status_code == 200 and 0.45 <= elapsed < 3
    s.proc.send_signal(15)
    assert s.proc.wait(10) == 0
    with contextlib.suppress(Exception):
        assert "graceful shutdown" in s.logs()


def test_requests_arriving_during_a_prefill_are_served(sim: Sim) -> None:
    """Regression: one-token requests finish inside their prefill; requests that queued up
    meanwhile must start at once rather than wait for yet another arrival."""

    async def burst() -> list[int]:
        async with httpx.AsyncClient(timeout=5) as http:
            responses = await asyncio.gather(
                *(
                    http.post(
                        f"{sim.url}/v1/chat/completions",
                        json={"messages": [{"role": "user", "content": f"n{i}"}], "max_tokens": 1},
                    )
                    for i in range(12)
                )
            )
        return [r.status_code for r in responses]

    for _ in range(3):
        assert asyncio.run(burst()) == [200] * 12


# --- the deployed model's own tokenizer and chat template ---------------------------------


def test_tokenize_gives_each_models_own_ids_and_bos(start_sim, hf_home: Path) -> None:
    text = "Hello, world! How are you?"
    seen = {}
    for repo_id, bos_id in ((LLAMA, 128000), (MISTRAL, 1)):
        s = start_sim(["--model-id", repo_id, "--max-total-tokens", "4096"])
        tok = tokenizer(hf_home, repo_id)
        tokens = httpx.post(s.url + "/tokenize", json={"inputs": text}).json()
        ids = [t["id"] for t in tokens]
        assert ids == tok.encode(text)
        assert ids[0] == tok.bos_token_id == bos_id  # Llama 3 <|begin_of_text|>, Mistral <s>
        assert tokens[0]["text"] == ""  # the input's slice: BOS covers no characters
        assert "".join(t["text"] for t in tokens) == text
        assert max(ids) < tok.vocab_size
        without = httpx.post(
            s.url + "/tokenize", json={"inputs": text, "add_special_tokens": False}
        )
        assert [t["id"] for t in without.json()] == ids[1:]
        seen[repo_id] = ids
    assert seen[LLAMA] != seen[MISTRAL]


def test_chat_tokenize_renders_the_models_template_without_a_second_bos(
    start_sim, hf_home: Path
) -> None:
    messages = [{"role": "user", "content": "What is the capital of France?"}]
    for repo_id in (LLAMA, MISTRAL):
        s = start_sim(["--model-id", repo_id, "--max-total-tokens", "4096"])
        tok = tokenizer(hf_home, repo_id)
        body = httpx.post(s.url + "/chat_tokenize", json={"messages": messages}).json()
        templated = tok.apply_chat_template(messages)
        assert body["templated_text"] == templated
        ids = [t["id"] for t in body["tokenize_response"]]
        assert ids == tok.encode(templated, add_special_tokens=False)
        assert ids.count(tok.bos_token_id) == 1 and ids[0] == tok.bos_token_id
        # Prompt tokens of the real chat request are the same count.
        r = httpx.post(
            s.url + "/v1/chat/completions", json={"messages": messages, "max_tokens": 2}
        ).json()
        assert r["usage"]["prompt_tokens"] == len(ids)


def test_generated_tokens_are_the_models_own_and_end_with_its_eos(start_sim, hf_home: Path) -> None:
    for repo_id in (LLAMA, MISTRAL):
        s = start_sim(
            ["--model-id", repo_id, "--max-total-tokens", "4096"], {"SIM_OUTPUT_TOKENS": "9"}
        )
        tok = tokenizer(hf_home, repo_id)
        r = httpx.post(
            s.url + "/generate",
            json={
                "inputs": "Tell me a story",
                "parameters": {"max_new_tokens": 50, "details": True},
            },
        ).json()
        details = r["details"]
        assert details["finish_reason"] == "eos_token" and details["generated_tokens"] == 9
        ids = [t["id"] for t in details["tokens"]]
        assert ids[-1] == tok.eos_token_id and details["tokens"][-1]["special"]
        assert all(0 <= i < tok.vocab_size for i in ids)
        # The text is the decoding of those ids, as TGI's detokenizer produces it.
        assert r["generated_text"] == tok.decode(ids[:-1])
        assert "".join(t["text"] for t in details["tokens"][:-1]) == r["generated_text"]


def test_model_without_chat_template_answers_422_but_completes(start_sim) -> None:
    import openai
    from huggingface_hub import InferenceClient
    from huggingface_hub.errors import HfHubHTTPError

    s = start_sim(["--model-id", BASE, "--max-total-tokens", "4096"])
    messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hi"}]
    expected = {"error": "Template error: template not found", "error_type": "template_error"}
    client = openai.OpenAI(base_url=s.url + "/v1", api_key="-", max_retries=0)
    with pytest.raises(openai.UnprocessableEntityError) as caught:
        client.chat.completions.create(model="tgi", messages=messages, max_tokens=4)
    assert caught.value.status_code == 422 and caught.value.response.json() == expected
    # Streaming is refused the same way: the template is applied before the stream starts.
    r = httpx.post(s.url + "/v1/chat/completions", json={"messages": messages, "stream": True})
    assert (r.status_code, r.json()) == (422, expected)
    r = httpx.post(s.url + "/chat_tokenize", json={"messages": messages})
    assert (r.status_code, r.json()) == (422, expected)

    completion = client.completions.create(model="tgi", prompt="Once upon a time", max_tokens=4)
    assert completion.usage is not None and completion.usage.completion_tokens == 4
    assert completion.choices[0].text
    hf = InferenceClient(base_url=s.url)
    out = hf.text_generation("Once upon a time", max_new_tokens=3, details=True)
    assert out.details is not None and out.details.generated_tokens == 3 and out.generated_text
    with pytest.raises(HfHubHTTPError) as hub_error:
        hf.chat_completion([dict(m) for m in messages], max_tokens=3)
    assert hub_error.value.response.status_code == 422


def test_clients_agree_with_the_api_shapes(sim: Sim, hf_home: Path) -> None:
    import openai
    from huggingface_hub import InferenceClient

    messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Say hi"}]
    client = openai.OpenAI(base_url=sim.url + "/v1", api_key="-", max_retries=0)
    chat = client.chat.completions.create(model="tgi", messages=messages, max_tokens=5)
    assert chat.usage is not None and chat.usage.completion_tokens == 5
    assert chat.choices[0].finish_reason == "length"
    tok = tokenizer(hf_home, LLAMA)
    prompt_ids = tok.encode(tok.apply_chat_template(messages), add_special_tokens=False)
    assert chat.usage.prompt_tokens == len(prompt_ids)
    stream = client.chat.completions.create(
        model="tgi",
        messages=messages,
        max_tokens=5,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    usage = chunks[-1].usage
    assert text == chat.choices[0].message.content and usage is not None
    assert usage.total_tokens == usage.prompt_tokens + 5

    hf = InferenceClient(base_url=sim.url)
    out = hf.chat_completion([dict(m) for m in messages], max_tokens=5)
    assert out.choices[0].message.content == chat.choices[0].message.content
    gen = hf.text_generation("Hello, world!", max_new_tokens=4, details=True)
    assert gen.details is not None and gen.details.generated_tokens == 4
    assert gen.details.finish_reason == "length"

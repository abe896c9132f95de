"""The SGLang simulator, run as a real process and spoken to with the official clients.

Each expectation names the SGLang v0.5 source it follows (see devstack/sglang_simulator)."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from huggingface_hub import InferenceClient
from openai.types.chat import ChatCompletionMessageParam

from devstack.model_files import ModelTokenizer
from devstack.sglang_simulator.metrics import TTFT_BUCKETS
from devstack.vllm_simulator.testing import Running, build_snapshot, free_port, run_to_exit, running

MODULE = "devstack.sglang_simulator"
CHAT_REPO, BASE_REPO = "org/chat-model", "org/base-model"
CONTEXT = 512
NATURAL_TOKENS = 6


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("hub")
    build_snapshot(root, CHAT_REPO, chat=True)
    build_snapshot(root, BASE_REPO, chat=False)
    return root


def sim_env(**extra: str) -> dict[str, str]:
    return {
        "HF_HUB_OFFLINE": "1",
        "SIM_STARTUP_SECONDS": "0.2",
        "SIM_TOKENS_PER_SECOND": "0",
        "SIM_OUTPUT_TOKENS": str(NATURAL_TOKENS),
        "SIM_FAULTS": "",
        **extra,
    }


def launch_args(hub: Path, repo: str, port: int, *extra: str) -> list[str]:
    return ["--model-path", repo, "--download-dir", str(hub), "--host", "127.0.0.1",
            "--port", str(port), "--context-length", str(CONTEXT), *extra]  # fmt: skip


@pytest.fixture(scope="module")
def chat_server(hub: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    port = free_port()
    log = tmp_path_factory.mktemp("logs") / "sglang-chat.log"
    args = launch_args(hub, CHAT_REPO, port, "--enable-metrics", "--served-model-name", "chat")
    with running(MODULE, args, sim_env(), port, log, "/health") as run:
        yield run


@pytest.fixture(scope="module")
def base_server(hub: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    port = free_port()
    log = tmp_path_factory.mktemp("logs") / "sglang-base.log"
    args = launch_args(hub, BASE_REPO, port, "--max-total-tokens", "4000")
    with running(MODULE, args, sim_env(), port, log, "/health") as run:
        yield run


@pytest.fixture
def client(chat_server: Running) -> openai.OpenAI:
    return openai.OpenAI(base_url=chat_server.base_url + "/v1", api_key="unused", max_retries=0)


MESSAGES: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hello world"}]


def test_health_routes_generate_and_answer_200_once_ready(chat_server: Running) -> None:
    for path in ("/health", "/health_generate"):
        response = httpx.get(chat_server.base_url + path)
        assert (response.status_code, response.content) == (200, b"")
    assert "The server is fired up and ready to roll!" in chat_server.log()


def test_model_and_server_info(chat_server: Running) -> None:
    info = httpx.get(chat_server.base_url + "/get_model_info").json()
    assert (info["model_path"], info["is_generation"]) == (CHAT_REPO, True)
    server = httpx.get(chat_server.base_url + "/get_server_info").json()
    assert server["context_length"] == CONTEXT and server["served_model_name"] == "chat"
    assert server["version"] == "0.5.5"
    assert server["internal_states"][0]["max_total_num_tokens"] > CONTEXT


def test_chat_stops_on_eos_with_matched_stop(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(model="chat", messages=MESSAGES)
    choice = reply.choices[0]
    assert choice.finish_reason == "stop"
    assert choice.model_extra is not None and isinstance(choice.model_extra["matched_stop"], int)
    assert reply.usage is not None and reply.usage.completion_tokens == NATURAL_TOKENS + 1


def test_streaming_chat_ends_with_usage_chunk(client: openai.OpenAI) -> None:
    plain = client.chat.completions.create(model="chat", messages=MESSAGES)
    chunks = list(
        client.chat.completions.create(
            model="chat",
            messages=MESSAGES,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == plain.choices[0].message.content
    assert chunks[-1].choices == [] and chunks[-1].usage == plain.usage


def test_native_generate_reports_meta_info(chat_server: Running) -> None:
    body = httpx.post(
        chat_server.base_url + "/generate",
        json={"text": "hello world", "sampling_params": {"max_new_tokens": 3}},
    ).json()
    meta = body["meta_info"]
    assert meta["finish_reason"] == {"type": "length", "length": 3}
    assert meta["completion_tokens"] == 3 and len(body["output_ids"]) == 3
    assert body["text"]


def test_too_long_input_is_refused_with_sglangs_error(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.completions.create(model="chat", prompt="hello " * (CONTEXT + 10), max_tokens=5)
    body = caught.value.response.json()
    assert (body["object"], body["type"], body["code"]) == ("error", "BadRequestError", 400)
    assert body["message"].startswith("The input (")
    assert body["message"].endswith(
        f"is longer than the model's context length ({CONTEXT} tokens)."
    )


def test_metrics_carry_sglangs_names_and_buckets(
    client: openai.OpenAI, chat_server: Running
) -> None:
    client.completions.create(model="chat", prompt="hello", max_tokens=2)
    text = httpx.get(chat_server.base_url + "/metrics").text
    sched = 'engine_type="unified",model_name="chat",pp_rank="0",tp_rank="0"'
    for series in (
        f"sglang:num_running_reqs{{{sched}}}",
        f"sglang:num_queue_reqs{{{sched}}}",
        f"sglang:token_usage{{{sched}}}",
        f"sglang:gen_throughput{{{sched}}}",
        'sglang:prompt_tokens_total{model_name="chat"}',
        'sglang:generation_tokens_total{model_name="chat"}',
        'sglang:num_requests_total{model_name="chat"}',
        'sglang:e2e_request_latency_seconds_count{model_name="chat"}',
    ):
        assert series in text, series
    les = [
        line.split('le="')[1].split('"')[0]
        for line in text.splitlines()
        if line.startswith("sglang:time_to_first_token_seconds_bucket")
    ]
    assert les == [str(float(b)) for b in TTFT_BUCKETS] + ["+Inf"]
    assert "_created" not in text


def test_inference_client_chat_completion(chat_server: Running) -> None:
    out = InferenceClient(base_url=chat_server.base_url).chat_completion(
        messages=[{"role": "user", "content": "hello world"}], max_tokens=4
    )
    assert out.choices[0].finish_reason == "length" and out.usage.completion_tokens == 4


def test_base_model_chat_is_400_metrics_off_and_kv_pool_is_max_total_tokens(
    base_server: Running,
) -> None:
    client = openai.OpenAI(base_url=base_server.base_url + "/v1", api_key="unused", max_retries=0)
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=BASE_REPO, messages=MESSAGES)
    assert "tokenizer.chat_template is not set" in caught.value.response.json()["message"]
    assert httpx.get(base_server.base_url + "/metrics").status_code == 404  # no --enable-metrics
    # --max-total-tokens sizes the KV pool, it does not cap a request's length.
    server = httpx.get(base_server.base_url + "/get_server_info").json()
    assert server["internal_states"][0]["max_total_num_tokens"] == 4000
    assert "max_total_num_tokens=4000," in base_server.log()
    reply = client.completions.create(model=BASE_REPO, prompt="hello", max_tokens=300)
    assert reply.usage is not None and reply.usage.completion_tokens == NATURAL_TOKENS + 1


def test_health_is_503_until_warmup_finishes(hub: Path, tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "slow.log"
    seen: list[int] = []
    env = sim_env(SIM_STARTUP_SECONDS="3")
    with running(MODULE, launch_args(hub, CHAT_REPO, port), env, port, log, "/v1/models") as run:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and 200 not in seen:
            seen.append(httpx.get(run.base_url + "/health").status_code)
            time.sleep(0.05)
    assert seen[0] == 503 and seen[-1] == 200


def test_offline_without_weights_dies_through_sigquit(hub: Path) -> None:
    code, out = run_to_exit(MODULE, launch_args(hub, "org/absent", free_port()), sim_env())
    assert code == -signal.SIGKILL  # kill_process_tree(os.getpid()) SIGKILLs the launcher
    assert "Scheduler hit an exception" in out
    assert "huggingface_hub.errors.LocalEntryNotFoundError" in out
    assert "Received sigquit from a child process. It usually means the child failed." in out


def test_cuda_oom_at_startup_is_logged_with_its_remedies(hub: Path) -> None:
    code, out = run_to_exit(
        MODULE, launch_args(hub, CHAT_REPO, free_port()), sim_env(SIM_FAULTS="oom")
    )
    assert code == -signal.SIGKILL
    assert "Capture cuda graph failed: CUDA out of memory." in out
    assert "set --mem-fraction-static to a smaller value" in out


def test_bad_argument_is_an_argparse_error(hub: Path) -> None:
    code, out = run_to_exit(
        MODULE, [*launch_args(hub, CHAT_REPO, free_port()), "--quantization", "nope"], {}
    )
    assert code == 2
    assert "launch_server.py: error: argument --quantization: invalid choice: 'nope'" in out


def test_v1_tokenize_uses_the_models_tokenizer_and_its_model_max_length(
    chat_server: Running, hub: Path
) -> None:
    snapshot = next((hub / "models--org--chat-model" / "snapshots").iterdir())
    own = ModelTokenizer.from_dir(snapshot)
    body = httpx.post(chat_server.base_url + "/v1/tokenize", json={"prompt": "hello world"}).json()
    ids = own.encode("hello world")
    # serving_tokenize.py reports the tokenizer's model_max_length, not --context-length.
    assert body == {"tokens": ids, "count": len(ids), "max_model_len": own.model_max_length}
    back = httpx.post(chat_server.base_url + "/v1/detokenize", json={"tokens": ids}).json()
    assert back == {"text": "hello world"}

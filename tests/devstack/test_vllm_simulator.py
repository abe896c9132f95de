"""The vLLM simulator, run as a real process and spoken to with the official clients.

Each expectation names the vLLM v0.11 source it follows (see devstack/vllm_simulator)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from huggingface_hub import InferenceClient
from openai.types.chat import ChatCompletionMessageParam

from devstack.model_files import ModelTokenizer
from devstack.vllm_simulator.metrics import TTFT_BUCKETS
from devstack.vllm_simulator.testing import Running, build_snapshot, free_port, run_to_exit, running

MODULE = "devstack.vllm_simulator"
CHAT_REPO, BASE_REPO = "org/chat-model", "org/base-model"
MAX_MODEL_LEN = 512
NATURAL_TOKENS = 6  # SIM_OUTPUT_TOKENS: words before EOS


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


def serve_args(hub: Path, repo: str, port: int, *extra: str) -> list[str]:
    return [repo, "--download-dir", str(hub), "--host", "127.0.0.1", "--port", str(port),
            "--max-model-len", str(MAX_MODEL_LEN), *extra]  # fmt: skip


@pytest.fixture(scope="module")
def chat_server(hub: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    port = free_port()
    log = tmp_path_factory.mktemp("logs") / "vllm-chat.log"
    args = serve_args(hub, CHAT_REPO, port, "--served-model-name", "chat")
    with running(MODULE, args, sim_env(), port, log, "/v1/models") as run:
        yield run


@pytest.fixture(scope="module")
def base_server(hub: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    port = free_port()
    log = tmp_path_factory.mktemp("logs") / "vllm-base.log"
    with running(
        MODULE, serve_args(hub, BASE_REPO, port), sim_env(), port, log, "/v1/models"
    ) as run:
        yield run


@pytest.fixture
def client(chat_server: Running) -> openai.OpenAI:
    return openai.OpenAI(base_url=chat_server.base_url + "/v1", api_key="unused", max_retries=0)


MESSAGES: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hello world"}]


def test_health_is_empty_200_and_version_is_vllms(chat_server: Running) -> None:
    health = httpx.get(chat_server.base_url + "/health")
    assert (health.status_code, health.content) == (200, b"")
    assert httpx.get(chat_server.base_url + "/version").json() == {"version": "0.11.0"}


def test_models_lists_the_served_name_with_max_model_len(client: openai.OpenAI) -> None:
    models = client.models.list().data
    assert [m.id for m in models] == ["chat"]
    assert models[0].owned_by == "vllm"
    assert models[0].model_extra is not None
    assert models[0].model_extra["max_model_len"] == MAX_MODEL_LEN
    assert models[0].model_extra["root"] == CHAT_REPO


def test_chat_stops_on_eos_and_counts_it_in_usage(
    client: openai.OpenAI, chat_server: Running
) -> None:
    reply = client.chat.completions.create(model="chat", messages=MESSAGES)
    choice = reply.choices[0]
    assert choice.finish_reason == "stop"
    assert choice.message.content and choice.message.content.strip()
    assert reply.usage is not None
    assert reply.usage.completion_tokens == NATURAL_TOKENS + 1  # the EOS token is generated
    # The prompt is the model's own chat template, tokenized by its own tokenizer.
    counted = httpx.post(
        chat_server.base_url + "/tokenize", json={"model": "chat", "messages": MESSAGES}
    )
    assert reply.usage.prompt_tokens == counted.json()["count"]
    assert reply.id.startswith("chatcmpl-")


def test_streaming_chat_ends_with_usage_chunk(client: openai.OpenAI) -> None:
    plain = client.chat.completions.create(model="chat", messages=MESSAGES)
    stream = client.chat.completions.create(
        model="chat",
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == plain.choices[0].message.content
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert [c.choices[0].finish_reason for c in finals] == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage == plain.usage


def test_completion_hits_max_tokens(client: openai.OpenAI) -> None:
    reply = client.completions.create(model="chat", prompt="hello world", max_tokens=3)
    assert reply.choices[0].finish_reason == "length"
    assert reply.usage is not None and reply.usage.completion_tokens == 3
    assert reply.id.startswith("cmpl-")


def test_prompt_longer_than_max_model_len_is_refused_with_vllms_error(
    client: openai.OpenAI,
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.completions.create(
            model="chat", prompt="hello " * (MAX_MODEL_LEN + 10), max_tokens=5
        )
    body = caught.value.response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert (error["type"], error["code"], error["param"]) == ("BadRequestError", 400, None)
    assert error["message"].startswith(
        f"This model's maximum context length is {MAX_MODEL_LEN} tokens. However, your request has "
    )


def test_max_tokens_beyond_the_context_is_refused(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.completions.create(model="chat", prompt="hello", max_tokens=MAX_MODEL_LEN)
    message = caught.value.response.json()["error"]["message"]
    assert message.startswith(
        f"'max_tokens' or 'max_completion_tokens' is too large: {MAX_MODEL_LEN}."
    )


def test_unknown_model_is_404(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.completions.create(model="other", prompt="hello", max_tokens=2)
    assert caught.value.response.json()["error"]["message"] == "The model `other` does not exist."


def test_tokenize_uses_the_models_own_tokenizer(chat_server: Running, hub: Path) -> None:
    snapshot = next((hub / "models--org--chat-model" / "snapshots").iterdir())
    own = ModelTokenizer.from_dir(snapshot)
    body = httpx.post(chat_server.base_url + "/tokenize", json={"prompt": "hello world"}).json()
    assert body == {
        "count": len(own.encode("hello world")),
        "max_model_len": MAX_MODEL_LEN,
        "tokens": own.encode("hello world"),
        "token_strs": None,
    }
    back = httpx.post(chat_server.base_url + "/detokenize", json={"tokens": body["tokens"]})
    assert back.json() == {"prompt": "hello world"}


def test_metrics_carry_vllms_names_buckets_and_labels(
    client: openai.OpenAI, chat_server: Running
) -> None:
    client.completions.create(model="chat", prompt="hello", max_tokens=2)
    text = httpx.get(chat_server.base_url + "/metrics").text
    labels = 'engine="0",model_name="chat"'
    for series in (
        f"vllm:num_requests_running{{{labels}}}",
        f"vllm:num_requests_waiting{{{labels}}}",
        f"vllm:kv_cache_usage_perc{{{labels}}}",
        f"vllm:prompt_tokens_total{{{labels}}}",
        f"vllm:generation_tokens_total{{{labels}}}",
        'vllm:request_success_total{engine="0",finished_reason="length",model_name="chat"}',
        f"vllm:e2e_request_latency_seconds_count{{{labels}}}",
        f"vllm:request_prompt_tokens_count{{{labels}}}",
        f"vllm:request_generation_tokens_count{{{labels}}}",
        f"vllm:inter_token_latency_seconds_count{{{labels}}}",
    ):
        assert series in text, series
    ttft_les = [
        line.split('le="')[1].split('"')[0]
        for line in text.splitlines()
        if line.startswith("vllm:time_to_first_token_seconds_bucket")
    ]
    assert ttft_les == [str(float(b)) for b in TTFT_BUCKETS] + ["+Inf"]
    assert "vllm:gpu_cache_usage_perc" not in text  # hidden in 0.11


def test_inference_client_chat_completion(chat_server: Running) -> None:
    hf = InferenceClient(base_url=chat_server.base_url)
    out = hf.chat_completion(
        messages=[{"role": "user", "content": "hello world"}], model="chat", max_tokens=4
    )
    assert out.choices[0].finish_reason == "length"
    assert out.usage.completion_tokens == 4


def test_chat_on_a_base_model_is_400_but_completion_works(base_server: Running) -> None:
    client = openai.OpenAI(base_url=base_server.base_url + "/v1", api_key="unused", max_retries=0)
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=BASE_REPO, messages=MESSAGES)
    assert caught.value.response.json()["error"]["message"].startswith(
        "As of transformers v4.44, default chat template is no longer allowed"
    )
    reply = client.completions.create(model=BASE_REPO, prompt="hello world", max_tokens=2)
    assert reply.usage is not None and reply.usage.prompt_tokens == 3  # BOS + two words


def test_port_opens_only_after_the_engine_is_ready(hub: Path, tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "slow.log"
    env = sim_env(SIM_STARTUP_SECONDS="3")
    started = time.monotonic()
    with running(MODULE, serve_args(hub, CHAT_REPO, port), env, port, log, "/health") as run:
        assert time.monotonic() - started >= 2.0  # /health could not answer while loading
        assert "GPU KV cache size:" in run.log()


def test_offline_without_weights_exits_1_with_the_error(hub: Path) -> None:
    code, out = run_to_exit(MODULE, serve_args(hub, "org/absent", free_port()), sim_env())
    assert code == 1
    assert "Cannot find an appropriate cached snapshot folder" in out


@pytest.mark.parametrize(("fault", "where"), [("oom", "profile_run"), ("oom_load", "load_model")])
def test_cuda_oom_at_startup_exits_1_not_oomkilled(hub: Path, fault: str, where: str) -> None:
    args = serve_args(hub, CHAT_REPO, free_port())
    code, out = run_to_exit(MODULE, args, sim_env(SIM_FAULTS=fault))
    assert code == 1
    assert "torch.OutOfMemoryError: CUDA out of memory." in out
    assert where in out
    assert "RuntimeError: Engine core initialization failed. See root cause above." in out
    assert "Application startup complete" not in out  # the port never opened


def test_kv_cache_too_small_for_max_model_len(hub: Path) -> None:
    args = serve_args(hub, CHAT_REPO, free_port(), "--gpu-memory-utilization", "0.02")
    code, out = run_to_exit(MODULE, args, sim_env(SIM_GPU_MEMORY_GIB="1"))
    assert code == 1
    assert "ValueError: No available memory for the cache blocks." in out


def test_bad_quantization_is_an_argparse_error(hub: Path) -> None:
    code, out = run_to_exit(
        MODULE, [*serve_args(hub, CHAT_REPO, free_port()), "--quantization", "nope"], {}
    )
    assert code == 2
    assert "vllm serve: error: argument --quantization/-q: invalid choice: 'nope'" in out


def test_max_model_len_beyond_the_model_is_refused(hub: Path) -> None:
    args = [
        CHAT_REPO,
        "--download-dir",
        str(hub),
        "--max-model-len",
        "100000",
        "--port",
        str(free_port()),
    ]
    code, out = run_to_exit(MODULE, args, sim_env())
    assert code == 1
    assert "User-specified max_model_len (100000) is greater than the derived max_model_len" in out


def test_injected_errors_and_client_aborts_show_in_responses_and_metrics(
    hub: Path, tmp_path: Path
) -> None:
    port = free_port()
    env = sim_env(SIM_FAULTS="error_rate=0.5,token_latency_ms=20")
    args = serve_args(hub, CHAT_REPO, port, "--served-model-name", "chat")
    with running(MODULE, args, env, port, tmp_path / "faulty.log", "/v1/models") as run:
        client = openai.OpenAI(base_url=run.base_url + "/v1", api_key="unused", max_retries=0)
        client.completions.create(model="chat", prompt="hello", max_tokens=2)  # 1st of 2: served
        with pytest.raises(openai.InternalServerError) as caught:
            client.completions.create(model="chat", prompt="hello", max_tokens=2)
        assert caught.value.response.json()["error"]["type"] == "InternalServerError"
        stream = client.completions.create(
            model="chat", prompt="hello", max_tokens=200, stream=True
        )
        next(iter(stream))
        stream.close()  # the client goes away after the first token
        deadline = time.monotonic() + 5
        aborted = (
            'vllm:request_success_total{engine="0",finished_reason="abort",model_name="chat"} 1.0'
        )
        while aborted not in httpx.get(run.base_url + "/metrics").text:
            assert time.monotonic() < deadline, "the abort was not counted"
            time.sleep(0.05)


def test_engine_death_is_logged_and_exits_1(hub: Path, tmp_path: Path) -> None:
    port = free_port()
    env = sim_env(SIM_FAULTS="crash_after=1")
    with running(
        MODULE, serve_args(hub, CHAT_REPO, port), env, port, tmp_path / "d.log", "/health"
    ) as run:
        assert run.proc.wait(15) == 1
        assert "EngineDeadError: EngineCore encountered an issue." in run.log()

"""Each engine as the portal uses it: the container it renders, what it refuses, how the
gateway counts tokens through it, how the pre-promotion check talks to it, and the fit check."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any

import pytest

from deployments.rendering import ServingSpec, render_colour_deployment, render_services
from deployments.rendering.errors import SpecError
from engines import ENGINES, get_engine
from engines.base import HttpCall
from models_registry import fit
from tests.deployments.test_rendering import make_spec, make_tier, with_model

REPO = Path(__file__).parents[2]
SHA = make_spec().model.commit_sha


def spec_for(engine: str, **overrides: Any) -> ServingSpec:
    tier = make_tier(image=ENGINES[engine].default_image)
    return make_spec(engine=get_engine(engine), tier=tier, **overrides)


def test_the_registry_lists_three_engines_with_their_images_and_ports() -> None:
    assert {name: (e.default_image, e.port) for name, e in ENGINES.items()} == {
        "tgi": ("ghcr.io/huggingface/text-generation-inference:3.3.6", 80),
        "vllm": ("vllm/vllm-openai:v0.11.0", 8000),
        "sglang": ("lmsysorg/sglang:v0.5.5", 30000),
    }


EXPECTED_ARGS = {
    "tgi": [
        "--model-id", "meta-llama/Llama-3.1-8B-Instruct", "--revision", SHA, "--num-shard", "2",
        "--quantize", "fp8", "--dtype", "bfloat16",
        "--max-input-tokens", "4096", "--max-total-tokens", "8192",
        "--max-batch-prefill-tokens", "8242", "--max-concurrent-requests", "64",
        "--port", "80", "--hostname", "0.0.0.0", "--huggingface-hub-cache", "/data",
    ],
    "vllm": [
        "meta-llama/Llama-3.1-8B-Instruct", "--revision", SHA,
        "--max-model-len", "8192", "--max-num-batched-tokens", "8242", "--max-num-seqs", "64",
        "--tensor-parallel-size", "2", "--quantization", "fp8", "--dtype", "bfloat16",
        "--download-dir", "/data", "--host", "0.0.0.0", "--port", "8000",
    ],
    "sglang": [
        "--model-path", "meta-llama/Llama-3.1-8B-Instruct", "--revision", SHA,
        "--context-length", "8192", "--chunked-prefill-size", "8242",
        "--max-running-requests", "64", "--tp", "2", "--quantization", "fp8",
        "--dtype", "bfloat16", "--download-dir", "/data", "--enable-metrics",
        "--host", "0.0.0.0", "--port", "30000",
    ],
}  # fmt: skip


@pytest.mark.parametrize("engine", list(ENGINES))
def test_args_are_exactly_the_spec_in_the_engines_own_flags(engine: str) -> None:
    spec = spec_for(engine, quantize="fp8", dtype="bfloat16")
    assert ENGINES[engine].args(spec) == EXPECTED_ARGS[engine]


def test_sglang_never_gets_the_specs_total_tokens_as_its_kv_pool() -> None:
    # SGLang's --max-total-tokens sizes the KV pool; the per-request limit is --context-length.
    assert "--max-total-tokens" not in ENGINES["sglang"].args(spec_for("sglang"))


@pytest.mark.parametrize("engine", list(ENGINES))
def test_the_container_runs_the_engine_on_its_port_with_probes_that_prove_serving(
    engine: str,
) -> None:
    spec = spec_for(engine)
    container = render_colour_deployment(spec, "blue")["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == ENGINES[engine].default_image
    assert container.get("command") == (
        ["python3", "-m", "sglang.launch_server"] if engine == "sglang" else None
    )
    assert container["ports"] == [
        {"name": "http", "containerPort": ENGINES[engine].port, "protocol": "TCP"}
    ]
    paths = {
        probe: container[probe]["httpGet"]["path"]
        for probe in ("startupProbe", "readinessProbe", "livenessProbe")
    }
    assert (
        paths["readinessProbe"]
        == {"tgi": "/health", "vllm": "/v1/models", "sglang": "/health_generate"}[engine]
    )
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["HF_HUB_OFFLINE"] == "1"
    # Services reach the pods by port name, so an engine switch keeps the old side reachable.
    for service in render_services(spec, "blue"):
        assert service["spec"]["ports"][0]["targetPort"] == "http"


def test_switching_engine_keeps_the_colour_selectors() -> None:
    tgi = render_colour_deployment(spec_for("tgi"), "green")["spec"]["selector"]
    vllm = render_colour_deployment(spec_for("vllm"), "green")["spec"]["selector"]
    assert tgi == vllm  # apps/v1 selectors are immutable: a switch re-applies the same colour


REFUSED = {
    "tgi": {"quantize": "awq_marlin", "kv_cache_dtype": "fp8"},
    "vllm": {"quantize": "exl2", "kv_cache_dtype": "fp8_e4m3fn"},
    "sglang": {"quantize": "eetq", "kv_cache_dtype": "fp8_e4m3fn"},
}


@pytest.mark.parametrize("engine", list(ENGINES))
@pytest.mark.parametrize("field", ["quantize", "kv_cache_dtype"])
def test_settings_an_engine_lacks_are_refused_naming_the_field(engine: str, field: str) -> None:
    with pytest.raises(SpecError) as refused:
        spec_for(engine, **{field: REFUSED[engine][field]})
    assert refused.value.field == field
    assert engine in str(refused.value).lower()  # the message names the engine


@pytest.mark.parametrize(
    ("engine", "method", "offered"),
    [
        ("tgi", "gptq", [None, "gptq", "marlin"]),
        ("vllm", "gptq", [None, "gptq", "gptq_marlin"]),
        ("sglang", "awq", [None, "awq", "awq_marlin"]),
        ("tgi", "", [None, "bitsandbytes", "bitsandbytes-nf4", "bitsandbytes-fp4", "eetq", "fp8"]),
        ("vllm", "", [None, "fp8", "bitsandbytes"]),
        ("sglang", "", [None, "fp8"]),
    ],
)
def test_fit_offers_the_quantizations_of_the_engine(
    engine: str, method: str, offered: list[str | None]
) -> None:
    assert fit.valid_quantizations(method, engine) == offered


SHAPE = fit.ModelShape(
    parameters_by_dtype={"BF16": 8_030_261_248},
    num_hidden_layers=32,
    num_key_value_heads=8,
    head_dim=128,
    context_length=131072,
)
EXL2 = dataclasses.replace(SHAPE, quantization_method="exl2")


def test_fit_asks_the_engine_whether_it_serves_the_checkpoint() -> None:
    assert fit.quantization_problem(EXL2, fit.ServingChoice(engine="tgi")) == ""
    assert "cannot serve exl2" in fit.quantization_problem(EXL2, fit.ServingChoice(engine="vllm"))


def test_fit_uses_the_engines_memory_model() -> None:
    tier = fit.TierCapacity("l4", "L4", fit.Decimal("24"), 1)
    choice = fit.ServingChoice(max_total_tokens=8192, concurrent_sequences=4)
    tgi = fit.fit_tier(SHAPE, dataclasses.replace(choice, engine="tgi"), tier)
    vllm = fit.fit_tier(SHAPE, dataclasses.replace(choice, engine="vllm"), tier)
    # vLLM never touches 10 % of the whole GPU and keeps more for CUDA graphs.
    assert vllm.max_concurrent_sequences < tgi.max_concurrent_sequences
    assert "gpu-memory-utilization" in vllm.estimate.explanation[-1]  # type: ignore[union-attr]


CHAT = {"model": "chat", "messages": [{"role": "user", "content": "hi"}], "stream": True}


@pytest.mark.parametrize(
    ("engine", "text_call", "chat_path", "answer", "count"),
    [
        ("tgi", HttpCall("/tokenize", {"inputs": "hi"}), "/chat_tokenize",
         {"tokenize_response": [{"id": 1}, {"id": 2}]}, 2),
        ("vllm", HttpCall("/tokenize", {"prompt": "hi"}), "/tokenize",
         {"count": 7, "max_model_len": 8192, "tokens": [1] * 7}, 7),
        ("sglang", HttpCall("/v1/tokenize", {"prompt": "hi", "add_special_tokens": True}), None,
         {"count": 3, "tokens": [1, 2, 3], "max_model_len": 8192}, 3),
    ],
)  # fmt: skip
def test_the_gateway_counts_input_through_the_engines_tokenizer(
    engine: str, text_call: HttpCall, chat_path: str | None, answer: object, count: int
) -> None:
    tokenizer = ENGINES[engine]
    assert tokenizer.tokenize_text("hi") == text_call
    chat = tokenizer.tokenize_chat(CHAT)
    assert (chat.path if chat else None) == chat_path
    if chat is not None:
        assert "stream" not in (chat.payload or {})
        assert tokenizer.token_count(chat, answer) == count
    else:
        assert tokenizer.token_count(text_call, answer) == count
    assert tokenizer.token_count(text_call, "garbage") is None


@pytest.mark.parametrize(
    ("engine", "completion_path"),
    [("tgi", "/generate"), ("vllm", "/v1/completions"), ("sglang", "/generate")],
)
def test_a_base_model_is_checked_through_the_native_completion_route(
    engine: str, completion_path: str
) -> None:
    chat_model = spec_for(engine)
    base_model = with_model(chat_model, has_chat_template=False)
    assert ENGINES[engine].smoke_request(chat_model).path == "/v1/chat/completions"
    assert ENGINES[engine].smoke_request(base_model).path == completion_path


def test_the_server_info_check_names_what_each_engine_reports() -> None:
    paths = {name: [c.path for c in e.info_checks(spec_for(name))] for name, e in ENGINES.items()}
    assert paths == {
        "tgi": ["/info"],
        "vllm": ["/v1/models", "/version"],
        "sglang": ["/get_model_info", "/get_server_info"],
    }


# Product code outside engines/ must not name an engine's series or routes.
ENGINE_FACTS = re.compile(
    r'inference_backend="(tgi|vllm|sglang)"|\btgi_[a-z_]+|vllm:|sglang:|/chat_tokenize|"/info"'
)


def test_no_engine_fact_is_written_outside_the_engines() -> None:
    offenders = []
    for app in ("deployments", "gateway", "models_registry"):
        for path in (REPO / app).rglob("*.py"):
            if "migrations" in path.parts:
                continue
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if ENGINE_FACTS.search(line):
                    offenders.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert offenders == []

"""Launcher settings: TGI's ``text-generation-launcher`` flags, their env vars and checks.

Every launcher flag of TGI 3.x is accepted (``--flag value``, ``--flag=value``, or the env var
named after the flag, upper-cased with ``-`` -> ``_``); unknown flags and bad values are
rejected like clap does (exit 2). Semantic checks follow the launcher/router order and wording.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

QUANTIZE_VALUES = (
    "awq",
    "compressed-tensors",
    "eetq",
    "exl2",
    "gptq",
    "marlin",
    "bitsandbytes",
    "bitsandbytes-nf4",
    "bitsandbytes-fp4",
    "fp8",
)
# Rust enum variant names, for the `Args { .. }` debug log line.
_QUANTIZE_DEBUG = {
    "awq": "Awq",
    "compressed-tensors": "CompressedTensors",
    "eetq": "Eetq",
    "exl2": "Exl2",
    "gptq": "Gptq",
    "marlin": "Marlin",
    "bitsandbytes": "Bitsandbytes",
    "bitsandbytes-nf4": "BitsandbytesNf4",
    "bitsandbytes-fp4": "BitsandbytesFp4",
    "fp8": "Fp8",
}
DTYPE_VALUES = ("float16", "bfloat16")
KV_CACHE_DTYPE_VALUES = ("fp8_e4m3fn", "fp8_e5m2")
ROPE_SCALING_VALUES = ("linear", "dynamic")
USAGE_STATS_VALUES = ("on", "off", "no-stack")
# Quantizers whose kernels only run in float16 (TGI forces float16 for them).
FLOAT16_ONLY_QUANTIZE = ("awq", "exl2", "gptq", "marlin")
# `--dtype` may be combined only with these (text_generation_server.cli.serve).
DTYPE_COMPATIBLE_QUANTIZE = (
    None,
    "bitsandbytes",
    "bitsandbytes-nf4",
    "bitsandbytes-fp4",
    "gptq",
    "awq",
    "fp8",
)


@dataclass(frozen=True)
class Flag:
    name: str  # field name (snake_case)
    kind: str  # str | usize | u32 | u16 | f32 | flag | optbool | enum | list
    default: Any = None
    choices: tuple[str, ...] = ()
    short: str | None = None

    @property
    def long(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def env(self) -> str:
        return self.name.upper()

    @property
    def value_name(self) -> str:
        return self.name.upper()


FLAGS: tuple[Flag, ...] = (
    Flag("model_id", "str", "bigscience/bloom-560m"),
    Flag("revision", "str"),
    Flag("validation_workers", "usize", 2),
    Flag("sharded", "optbool"),
    Flag("num_shard", "usize"),
    Flag("quantize", "enum", choices=QUANTIZE_VALUES),
    Flag("speculate", "usize"),
    Flag("dtype", "enum", choices=DTYPE_VALUES),
    Flag("kv_cache_dtype", "enum", choices=KV_CACHE_DTYPE_VALUES),
    Flag("trust_remote_code", "flag", False),
    Flag("max_concurrent_requests", "usize", 128),
    Flag("max_best_of", "usize", 2),
    Flag("max_stop_sequences", "usize", 4),
    Flag("max_top_n_tokens", "u32", 5),
    Flag("max_input_tokens", "usize"),
    Flag("max_input_length", "usize"),
    Flag("max_total_tokens", "usize"),
    Flag("waiting_served_ratio", "f32", 0.3),
    Flag("max_batch_prefill_tokens", "u32"),
    Flag("max_batch_total_tokens", "u32"),
    Flag("max_waiting_tokens", "usize", 20),
    Flag("max_batch_size", "usize"),
    Flag("cuda_graphs", "list"),
    Flag("hostname", "str", "0.0.0.0"),
    Flag("port", "u16", 3000, short="-p"),
    Flag("prometheus_port", "u16", 9000),
    Flag("shard_uds_path", "str", "/tmp/text-generation-server"),  # noqa: S108  (TGI default)
    Flag("master_addr", "str", "localhost"),
    Flag("master_port", "usize", 29500),
    Flag("huggingface_hub_cache", "str"),
    Flag("weights_cache_override", "str"),
    Flag("disable_custom_kernels", "flag", False),
    Flag("cuda_memory_fraction", "f32", 1.0),
    Flag("rope_scaling", "enum", choices=ROPE_SCALING_VALUES),
    Flag("rope_factor", "f32"),
    Flag("json_output", "flag", False),
    Flag("otlp_endpoint", "str"),
    Flag("otlp_service_name", "str", "text-generation-inference.router"),
    Flag("cors_allow_origin", "list"),
    Flag("api_key", "str"),
    Flag("watermark_gamma", "f32"),
    Flag("watermark_delta", "f32"),
    Flag("ngrok", "flag", False),
    Flag("ngrok_authtoken", "str"),
    Flag("ngrok_edge", "str"),
    Flag("tokenizer_config_path", "str"),
    Flag("disable_grammar_support", "flag", False),
    Flag("env", "flag", False, short="-e"),
    Flag("max_client_batch_size", "usize", 4),
    Flag("lora_adapters", "str"),
    Flag("usage_stats", "enum", "on", choices=USAGE_STATS_VALUES),
    Flag("payload_limit", "usize", 2000000),
    Flag("enable_prefill_logprobs", "flag", False),
    Flag("graceful_termination_timeout", "usize", 90),
)
_BY_LONG = {f.long: f for f in FLAGS}
_BY_SHORT = {f.short: f for f in FLAGS if f.short}
# `env` has no env var of its own in TGI (`#[clap(long, short, action)]`).
_NO_ENV = {"env"}


class CliError(Exception):
    """A clap-style usage error: printed as is, exit status 2."""


class LauncherError(Exception):
    """A launcher validation error; printed as ``Error: ArgumentValidation("...")``, exit 1."""

    def __init__(self, variant: str, message: str | None = None) -> None:
        super().__init__(message or variant)
        self.variant = variant
        self.message = message

    def debug(self) -> str:
        if self.message is None:
            return self.variant
        escaped = self.message.replace("\\", "\\\\").replace('"', '\\"')
        return f'{self.variant}("{escaped}")'


def _clap_value_error(flag: Flag, raw: str, reason: str | None = None) -> CliError:
    msg = f"error: invalid value '{raw}' for '{flag.long} <{flag.value_name}>'"
    if flag.kind == "enum":
        msg += f"\n  [possible values: {', '.join(flag.choices)}]"
    elif reason:
        msg += f": {reason}"
    return CliError(msg + "\n\nFor more information, try '--help'.")


def _parse_value(flag: Flag, raw: str) -> Any:
    kind = flag.kind
    if kind == "str":
        return raw
    if kind in ("usize", "u32", "u16"):
        limit = {"usize": 2**64 - 1, "u32": 2**32 - 1, "u16": 2**16 - 1}[kind]
        s = raw.strip()
        if not s.isdigit():
            reason = (
                "invalid digit found in string" if s else "cannot parse integer from empty string"
            )
            raise _clap_value_error(flag, raw, reason)
        value = int(s)
        if value > limit:
            raise _clap_value_error(flag, raw, "number too large to fit in target type")
        return value
    if kind == "f32":
        try:
            return float(raw)
        except ValueError:
            raise _clap_value_error(flag, raw, "invalid float literal") from None
    if kind in ("optbool", "flag"):
        s = raw.strip().lower()
        if s in ("true", "1", "yes", "y", "on"):
            return True
        if s in ("false", "0", "no", "n", "off", ""):
            return False
        raise _clap_value_error(flag, raw, "value was not a boolean")
    if kind == "enum":
        if raw not in flag.choices:
            raise _clap_value_error(flag, raw)
        return raw
    if kind == "list":
        return [v for v in raw.split(",") if v != ""]
    raise AssertionError(kind)


def parse_args(argv: Sequence[str], env: Mapping[str, str]) -> dict[str, Any]:
    """Parse launcher flags; command line wins over env, env over defaults."""
    values: dict[str, Any] = {}
    i = 0
    argv = list(argv)
    while i < len(argv):
        arg = argv[i]
        if arg in ("-h", "--help"):
            raise SystemExit(_help())
        if arg in ("-V", "--version"):
            from .launcher import VERSION

            raise SystemExit(f"text-generation-launcher {VERSION}")
        name, eq, inline = arg.partition("=")
        flag = _BY_LONG.get(name) if name.startswith("--") else _BY_SHORT.get(name)
        if flag is None:
            raise CliError(
                f"error: unexpected argument '{arg}' found\n\n"
                "Usage: text-generation-launcher [OPTIONS]\n\n"
                "For more information, try '--help'."
            )
        if flag.kind == "flag":
            if eq:
                raise CliError(
                    f"error: unexpected value '{inline}' for '{flag.long}' found; "
                    "no more were expected\n\nFor more information, try '--help'."
                )
            values[flag.name] = True
            i += 1
            continue
        if eq:
            raw = inline
            i += 1
        else:
            if i + 1 >= len(argv):
                raise CliError(
                    f"error: a value is required for '{flag.long} <{flag.value_name}>' "
                    "but none was supplied\n\nFor more information, try '--help'."
                )
            raw = argv[i + 1]
            i += 2
        value = _parse_value(flag, raw)
        if flag.kind == "list":
            values.setdefault(flag.name, [])
            values[flag.name].extend(value)
        else:
            values[flag.name] = value
    for flag in FLAGS:
        if flag.name in values:
            continue
        raw_env = None if flag.name in _NO_ENV else env.get(flag.env)
        if raw_env is not None:
            values[flag.name] = _parse_value(flag, raw_env)
        else:
            values[flag.name] = flag.default if flag.kind != "list" else None
    return values


def _help() -> str:
    lines = [
        "Text Generation Launcher (simulated)",
        "",
        "Usage: text-generation-launcher [OPTIONS]",
        "",
    ]
    lines.append("Options:")
    for f in FLAGS:
        head = f"      {f.long}" if not f.short else f"  {f.short}, {f.long}"
        if f.kind != "flag":
            head += f" <{f.value_name}>"
        extra = f" [env: {f.env}=]" if f.name not in _NO_ENV else ""
        if f.default not in (None, False):
            extra += f" [default: {f.default}]"
        if f.choices:
            extra += f" [possible values: {', '.join(f.choices)}]"
        lines.append(head + extra)
    return "\n".join(lines)


def args_debug(values: Mapping[str, Any]) -> str:
    """``{:#?}`` rendering of the launcher's ``Args`` struct (secrets redacted)."""

    def fmt(flag: Flag, v: Any) -> str:
        if flag.name in ("api_key", "ngrok_authtoken") and v is not None:
            return 'Some("<redacted>")'
        if flag.kind == "flag":
            return "true" if v else "false"
        if flag.kind == "list":
            return (
                "None" if v is None else "Some(\n        [" + ", ".join(map(str, v)) + "],\n    )"
            )
        if flag.kind == "enum":
            if flag.name == "quantize":
                name = _QUANTIZE_DEBUG.get(v, v) if v else None
            else:
                name = (
                    "".join(p.capitalize() for p in str(v).replace("-", "_").split("_"))
                    if v
                    else None
                )
            if flag.default is not None:
                return str(name)
            return "None" if v is None else f"Some(\n        {name},\n    )"
        if flag.kind == "str":
            if v is None:
                return "None"
            s = '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'
            return s if flag.default is not None else f"Some(\n        {s},\n    )"
        if flag.kind == "f32":
            s = repr(float(v)) if v is not None else "None"
            return s if flag.default is not None or v is None else f"Some(\n        {s},\n    )"
        if flag.kind == "optbool":
            return "None" if v is None else f"Some(\n        {'true' if v else 'false'},\n    )"
        if v is None:
            return "None"
        return str(v) if flag.default is not None else f"Some(\n        {v},\n    )"

    body = "".join(f"    {f.name}: {fmt(f, values.get(f.name))},\n" for f in FLAGS)
    return "Args {\n" + body + "}"


@dataclass
class Settings:
    """Resolved settings after TGI's derivations (what the router ends up running with)."""

    args: dict[str, Any]
    num_shard: int
    quantize: str | None
    max_input_tokens: int
    max_total_tokens: int
    max_batch_prefill_tokens: int
    max_batch_total_tokens: int
    supports_chunking: bool
    cuda_graphs: list[int]
    # From the snapshot's config.json (None when it has none, like TGI's `get_config().ok()`).
    max_position_embeddings: int | None = None
    warnings: list[str] = field(default_factory=list)
    infos: list[str] = field(default_factory=list)

    def __getattr__(self, name: str) -> Any:
        # Convenience: settings.max_best_of etc. read the raw launcher values.
        try:
            return self.__dict__["args"][name]
        except KeyError:
            raise AttributeError(name) from None


def _num_cuda_devices(env: Mapping[str, str]) -> int | None:
    for var in ("CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES", "ZE_AFFINITY_MASK"):
        if var in env:
            return len(env[var].split(","))
    return None


def find_num_shards(sharded: bool | None, num_shard: int | None, env: Mapping[str, str]) -> int:
    if sharded is True and num_shard is None:
        n = _num_cuda_devices(env)
        if n is None:
            raise LauncherError(
                "NotEnoughCUDADevices",
                "--num-shard and CUDA_VISIBLE_DEVICES/NVIDIA_VISIBLE_DEVICES/ZE_AFFINITY_MASK "
                "are not set",
            )
        if n <= 1:
            raise LauncherError(
                "NotEnoughCUDADevices", f"`sharded` is true but only found {n} CUDA devices"
            )
        result = n
    elif sharded is True and num_shard is not None:
        if num_shard <= 1:
            raise LauncherError("ArgumentValidation", "`sharded` is true but `num_shard` <= 1")
        result = num_shard
    elif sharded is False:
        result = num_shard if num_shard is not None else 1
    elif num_shard is None:
        result = _num_cuda_devices(env) or 1
    else:
        result = num_shard
    if result < 1:
        raise LauncherError("ArgumentValidation", "`num_shard` cannot be < 1")
    return result


def _env_int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    return int(raw) if raw else default


def _env_bool(env: Mapping[str, str], name: str) -> bool:
    return str(env.get(name, "")).strip().lower() in ("1", "true", "yes", "on")


def resolve_launcher(
    values: dict[str, Any],
    env: Mapping[str, str],
    max_position_embeddings: int | None = None,
    config_quantize: str | None = None,
) -> Settings:
    """Launcher-side derivation and checks (before download/shards), in TGI's order
    (launcher/src/main.rs ``main``; the model's config.json gives the two optional values)."""
    infos: list[str] = []
    warnings: list[str] = []
    quantize = values["quantize"] or config_quantize

    num_shard = find_num_shards(values["sharded"], values["num_shard"], env)
    if num_shard > 1:
        if values["quantize"] == "exl2":
            raise LauncherError(
                "ArgumentValidation", "Sharding is currently not supported with `exl2` quantization"
            )
        infos.append(f"Sharding model on {num_shard} processes")

    mit, mil = values["max_input_tokens"], values["max_input_length"]
    if mit is not None and mil is not None:
        raise LauncherError(
            "ArgumentValidation",
            f"Both `max_input_tokens` ({mit}) and `max_input_length` ({mil}) are set. Please "
            "define only `max_input_tokens` as `max_input_length is deprecated for naming "
            "consistency.",
        )
    max_input = mit if mit is not None else mil
    max_total = values["max_total_tokens"]
    prefill = values["max_batch_prefill_tokens"]
    if prefill is None:
        prefill = min(4096, max_position_embeddings or 4096)
        infos.append(f"Default `max_batch_prefill_tokens` to {prefill}")

    if max_input is not None and max_total is not None and max_input >= max_total:
        raise LauncherError(
            "ArgumentValidation",
            f"`max_input_tokens`({max_input}) must be < `max_total_tokens`({max_total})",
        )
    if values["quantize"] == "bitsandbytes":
        warnings.append(
            "Bitsandbytes is deprecated, use `eetq` instead, which provides better latencies "
            "overall and is drop-in in most cases."
        )
    if values["cuda_graphs"] is not None:
        cuda_graphs = [c for c in values["cuda_graphs"] if int(c) > 0]
    elif quantize in ("bitsandbytes", "bitsandbytes-nf4", "bitsandbytes-fp4"):
        warnings.append("Bitsandbytes doesn't work with cuda graphs, deactivating them")
        cuda_graphs = []
    elif quantize == "exl2":
        warnings.append("Exl2 doesn't work with cuda graphs, deactivating them")
        cuda_graphs = []
    else:
        cuda_graphs = [1, 2, 4, 8, 16, 32]
        infos.append(f"Using default cuda graphs {cuda_graphs}")

    if values["validation_workers"] == 0:
        raise LauncherError("ArgumentValidation", "`validation_workers` must be > 0")
    if values["trust_remote_code"]:
        warnings.append(
            f"`trust_remote_code` is set. Trusting that model `{values['model_id']}` do not "
            "contain malicious code."
        )
    mbt = values["max_batch_total_tokens"]
    if mbt is not None and max_total is not None and max_total > mbt:
        raise LauncherError(
            "ArgumentValidation",
            f"`max_total_tokens` must be <= `max_batch_total_tokens`. Given: {max_total} and {mbt}",
        )
    if values["ngrok"]:
        if values["ngrok_authtoken"] is None:
            raise LauncherError(
                "ArgumentValidation", "`ngrok-authtoken` must be set when using ngrok tunneling"
            )
        if values["ngrok_edge"] is None:
            raise LauncherError(
                "ArgumentValidation", "`ngrok-edge` must be set when using ngrok tunneling"
            )
    return Settings(
        args=values,
        num_shard=num_shard,
        quantize=quantize,
        max_input_tokens=max_input if max_input is not None else -1,
        max_total_tokens=max_total if max_total is not None else -1,
        max_batch_prefill_tokens=prefill,
        max_batch_total_tokens=mbt if mbt is not None else -1,
        supports_chunking=_env_bool(env, "SIM_CHUNKED_PREFILL"),
        cuda_graphs=cuda_graphs,
        max_position_embeddings=max_position_embeddings,
        warnings=warnings,
        infos=infos,
    )


def shard_error(settings: Settings) -> str | None:
    """The error a Python shard would raise at start for these settings, if any."""
    dtype = settings.args["dtype"]
    quantize = settings.quantize
    if dtype is not None and quantize not in DTYPE_COMPATIBLE_QUANTIZE:
        return (
            "RuntimeError: Only 1 can be set between `dtype` and `quantize`, as they both decide "
            "how goes the final model."
        )
    if dtype == "bfloat16" and quantize in FLOAT16_ONLY_QUANTIZE:
        return (
            f"RuntimeError: `{quantize}` kernels only support float16 activations; "
            f"`--dtype bfloat16` cannot be used with `--quantize {quantize}`"
        )
    return None


def resolve_router(settings: Settings, env: Mapping[str, str]) -> None:
    """Values the shards infer at warmup, then the router's own argument checks.

    Unset max_total_tokens becomes the model's context (flash_causal_lm.py ``warmup`` bounds it
    by max_position_embeddings); unset max_input_tokens is one less.
    """
    max_position = settings.max_position_embeddings or 4096
    if settings.max_total_tokens < 0:
        settings.max_total_tokens = max_position
    if settings.max_input_tokens < 0:
        settings.max_input_tokens = settings.max_total_tokens - 1
    if settings.max_batch_total_tokens < 0:
        # Simulated KV-cache capacity (TGI infers it from free GPU memory at warmup).
        settings.max_batch_total_tokens = max(
            _env_int(env, "SIM_MAX_BATCH_TOTAL_TOKENS", 16 * settings.max_total_tokens),
            settings.max_total_tokens,
        )
    mi, mt = settings.max_input_tokens, settings.max_total_tokens
    prefill, mbt = settings.max_batch_prefill_tokens, settings.max_batch_total_tokens
    if mi >= mt:
        raise LauncherError("ArgumentValidation", "`max_input_tokens` must be < `max_total_tokens`")
    if not settings.supports_chunking and mi > prefill:
        raise LauncherError(
            "ArgumentValidation",
            f"`max_batch_prefill_tokens` must be >= `max_input_tokens`. Given: {prefill} and {mi}",
        )
    if prefill > mbt:
        raise LauncherError(
            "ArgumentValidation",
            f"`max_batch_prefill_tokens` must be <= `max_batch_total_tokens`. "
            f"Given: {prefill} and {mbt}",
        )
    if mt > mbt:
        raise LauncherError(
            "ArgumentValidation",
            f"`max_total_tokens` must be <= `max_batch_total_tokens`. Given: {mt} and {mbt}",
        )


def from_environ(argv: Sequence[str]) -> tuple[dict[str, Any], dict[str, str]]:
    env = dict(os.environ)
    if "HF_API_TOKEN" in env:  # the launcher copies it to HF_TOKEN for its children
        env.setdefault("HF_TOKEN", env["HF_API_TOKEN"])
    return parse_args(argv, env), env

"""Facts about the Hub (and TGI's native model types) that the registry's decisions rest on."""

from engines import ENGINES

# Serving only makes sense for text generation; anything else is refused at registration.
ACCEPTED_PIPELINE_TAGS = frozenset({"text-generation"})

# Licence ids (Hub `license` card field) whose terms a tenant owner must acknowledge before a
# deployment: the family name is shown to the owner.
RESTRICTED_LICENSE_FAMILIES: dict[str, str] = {
    "llama2": "Meta Llama 2 Community License",
    "llama3": "Meta Llama 3 Community License",
    "llama3.1": "Meta Llama 3.1 Community License",
    "llama3.2": "Meta Llama 3.2 Community License",
    "llama3.3": "Meta Llama 3.3 Community License",
    "llama4": "Meta Llama 4 Community License",
    "gemma": "Gemma Terms of Use",
    "deepseek": "DeepSeek License",
    "tongyi-qianwen": "Tongyi Qianwen License",
    "cc-by-nc-4.0": "Creative Commons Non-Commercial",
    "cc-by-nc-sa-4.0": "Creative Commons Non-Commercial Share-Alike",
}

# config.json `model_type`s TGI 3.x serves with its own modelling code (no trust_remote_code).
TGI_NATIVE_MODEL_TYPES = frozenset(
    {
        "llama",
        "llama4",
        "mistral",
        "mixtral",
        "gemma",
        "gemma2",
        "gemma3",
        "gemma3_text",
        "qwen2",
        "qwen2_moe",
        "qwen3",
        "qwen3_moe",
        "qwen2_vl",
        "qwen2_5_vl",
        "phi",
        "phi3",
        "phimoe",
        "gpt2",
        "gptj",
        "gpt_neox",
        "gpt_bigcode",
        "starcoder2",
        "falcon",
        "bloom",
        "mpt",
        "opt",
        "t5",
        "cohere",
        "dbrx",
        "deepseek_v2",
        "deepseek_v3",
        "granite",
        "baichuan",
        "mamba",
        "idefics",
        "idefics2",
        "idefics3",
        "llava_next",
        "mllama",
        "paligemma",
        "chameleon",
        "santacoder",
    }
)

# Bytes per element of safetensors dtypes.
DTYPE_BYTES: dict[str, float] = {
    "F64": 8,
    "F32": 4,
    "BF16": 2,
    "F16": 2,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
    "I64": 8,
    "I32": 4,
    "I16": 2,
    "I8": 1,
    "U8": 1,
    "BOOL": 1,
}

# Quantization is each engine's business (engines/<name>: ``quantization``); the fit check asks
# the engine. These union every engine's values for callers that accept any of them (the fit
# API's validation) until they ask per engine.
ON_THE_FLY_QUANTIZATION: dict[str, float] = {
    method: factor
    for engine in ENGINES.values()
    for method, factor in engine.quantization.on_the_fly.items()
}
PRE_QUANTIZED_OPTIONS: dict[str, tuple[str, ...]] = {
    method: tuple(
        dict.fromkeys(
            option
            for engine in ENGINES.values()
            for option in engine.quantization.pre_quantized.get(method, ())
        )
    )
    for engine in ENGINES.values()
    for method in engine.quantization.pre_quantized
}
# Every value any engine accepts as a quantization, for the fields that offer them.
QUANTIZE_CHOICES: tuple[str, ...] = tuple(
    sorted({*ON_THE_FLY_QUANTIZATION, *(q for qs in PRE_QUANTIZED_OPTIONS.values() for q in qs)})
)

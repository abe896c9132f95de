"""A stand-in for vLLM's OpenAI-compatible server (``vllm serve``, v0.11).

Run it with the arguments that follow ``vllm serve``: ``python -m devstack.vllm_simulator <model>
[flags]``. The start-up sequence and failures follow :mod:`.launcher`, the routes :mod:`.server`
and :mod:`.openai_api`, the metrics :mod:`.metrics`. The SGLang simulator reuses the engine-neutral
modules here (:mod:`.weights`, :mod:`.generation`, :mod:`.openai_api`).
"""

"""A stand-in for SGLang's server (``python -m sglang.launch_server``, v0.5).

Run it with the arguments that follow ``sglang.launch_server``: ``python -m
devstack.sglang_simulator --model-path <model> [flags]``. Start-up and failures: :mod:`.launcher`;
routes: :mod:`.server` (OpenAI routes shared with devstack.vllm_simulator.openai_api); metrics:
:mod:`.metrics`.
"""

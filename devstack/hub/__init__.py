"""Local Hugging Face Hub-compatible server for tests and the offline demo.

Run it with ``python -m devstack.hub --port 58080`` and point the real huggingface_hub library at
it (``HF_ENDPOINT=http://127.0.0.1:58080``, or ``endpoint=`` per call). Fixture repositories and
tokens are in :mod:`devstack.hub.fixtures`; :func:`devstack.hub.server.running_hub` starts it as a
subprocess; the ``/_sim`` test knobs are described in README.md next to this file.
"""

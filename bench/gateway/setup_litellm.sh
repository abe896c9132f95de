#!/usr/bin/env bash
# Create (idempotently) a virtualenv for LiteLLM's proxy, apart from the project's .venv:
# LiteLLM pins its own versions of FastAPI, pydantic, httpx, ... which would clash with ours.
#
#   bash bench/gateway/setup_litellm.sh            # -> var/bench/litellm-venv/bin/litellm
#   LITELLM_VENV=/elsewhere bash bench/gateway/setup_litellm.sh
set -euo pipefail

LITELLM_VERSION="1.108.5"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
VENV="${LITELLM_VENV:-$ROOT/var/bench/litellm-venv}"
PYTHON="${PYTHON:-python3}"
MARKER="$VENV/.litellm-$LITELLM_VERSION"

if [[ -f "$MARKER" && -x "$VENV/bin/litellm" ]]; then
    echo "litellm[proxy]==$LITELLM_VERSION already installed in $VENV"
    exit 0
fi

mkdir -p "$(dirname "$VENV")"
if [[ ! -x "$VENV/bin/python" ]]; then
    echo "creating virtualenv $VENV"
    "$PYTHON" -m venv "$VENV"
fi
echo "installing litellm[proxy]==$LITELLM_VERSION into $VENV (progress below)"
"$VENV/bin/python" -m pip install --disable-pip-version-check --progress-bar on -U pip
"$VENV/bin/python" -m pip install --disable-pip-version-check --progress-bar on \
    "litellm[proxy]==$LITELLM_VERSION"
rm -f "$VENV"/.litellm-*
touch "$MARKER"
"$VENV/bin/python" -c 'import importlib.metadata as m; print("litellm", m.version("litellm"))'

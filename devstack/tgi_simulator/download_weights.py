"""`text-generation-server download-weights` as the TGI image runs it in a weight-download Job.

Follows server/text_generation_server/cli.py ``download_weights`` and utils/hub.py:

- weights already in the Hub cache (HF_HUB_CACHE) for the revision: "Files are already present
  on the host. Skipping download." and exit 0;
- otherwise ``weight_hub_files``: the repository's top-level ``*<extension>`` files (names with
  "arguments", "args" or "training" left out) from the Hub's model info, each fetched with
  ``hf_hub_download`` into the cache and logged ("Download file: …", "Downloaded … in …",
  "Download: [i/n] -- ETA: …");
- no such file: ``EntryNotFoundError`` "No .safetensors weights found for model … and revision
  …."; TGI then falls back to ``.bin`` weights and converts them to safetensors, which this
  simulator does not do (it says so and exits 1);
- a Hub error (unknown repository or revision, gated, unreachable) ends in its traceback and
  exit code 1, as the real command's uncaught exception does.

Only weights are fetched: tokenizer and config files are not (the Job's next step does that).
Run: ``python -m devstack.tgi_simulator.download_weights <model_id> --revision <sha>``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

from huggingface_hub import HfApi, constants, hf_hub_download
from huggingface_hub.errors import EntryNotFoundError

from devstack.model_files import MissingWeights, find_snapshot, weight_files


def _say(message: str) -> None:
    # cli.py: loguru to stdout with format "{message}".
    print(message, flush=True)


def weight_hub_files(model_id: str, revision: str | None, extension: str) -> list[str]:
    info = HfApi().model_info(model_id, revision=revision)
    names = [
        s.rfilename
        for s in info.siblings or []
        if s.rfilename.endswith(extension)
        and len(s.rfilename.split("/")) == 1
        and "arguments" not in s.rfilename
        and "args" not in s.rfilename
        and "training" not in s.rfilename
    ]
    if not names:
        raise EntryNotFoundError(
            f"No {extension} weights found for model {model_id} and revision {revision}."
        )
    return names


def _cached(model_id: str, revision: str | None, extension: str) -> bool:
    """utils/hub.py weight_files: the revision's snapshot in the cache holds the weights."""
    try:
        snapshot = find_snapshot(Path(constants.HF_HUB_CACHE), model_id, revision or "main")
    except MissingWeights:
        return False
    return bool(weight_files(snapshot, extension))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="text-generation-server download-weights")
    parser.add_argument("model_id")
    parser.add_argument("--revision")
    parser.add_argument("--extension", default=".safetensors")
    parser.add_argument("--auto-convert", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--logger-level", default="INFO")
    parser.add_argument("--json-output", action=argparse.BooleanOptionalAction, default=False)
    parser.add_argument("--trust-remote-code", action=argparse.BooleanOptionalAction)
    parser.add_argument("--merge-lora", action=argparse.BooleanOptionalAction)
    args = parser.parse_args(argv)

    if _cached(args.model_id, args.revision, args.extension):
        _say("Files are already present on the host. Skipping download.")
        return 0
    try:
        names = weight_hub_files(args.model_id, args.revision, args.extension)
    except EntryNotFoundError:
        if args.extension != ".safetensors" or not args.auto_convert:
            raise
        _say(
            f"No safetensors weights found for model {args.model_id} at revision "
            f"{args.revision}. Downloading PyTorch weights."
        )
        weight_hub_files(args.model_id, args.revision, ".bin")
        _say("devstack: converting PyTorch weights to safetensors is not simulated")
        return 1
    start = time.time()
    for i, name in enumerate(names):
        _say(f"Download file: {name}")
        began = time.time()
        local = hf_hub_download(args.model_id, name, revision=args.revision)
        _say(f"Downloaded {local} in {timedelta(seconds=int(time.time() - began))}.")
        elapsed = timedelta(seconds=int(time.time() - start))
        eta = (elapsed / (i + 1)) * (len(names) - (i + 1))
        _say(f"Download: [{i + 1}/{len(names)}] -- ETA: {eta}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

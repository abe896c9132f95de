"""Download a model revision's files into a volume: `python -m models_registry.download_weights`.

Runs inside the weight-download Job (the portal's own image) so TGI pods start from a filled
cache with HF_HUB_OFFLINE=1. The layout is huggingface_hub's cache, which TGI reads through
--huggingface-hub-cache. Progress lines are printed for the portal to show.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from huggingface_hub import HfApi, snapshot_download

COMPLETE_MARKER = ".portal-download-complete.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repo-id", required=True)
    parser.add_argument("--revision", required=True, help="the pinned commit sha")
    parser.add_argument("--dest", required=True, type=Path, help="cache directory (the volume)")
    args = parser.parse_args(argv)
    endpoint = os.environ.get("HF_ENDPOINT") or None
    token = os.environ.get("HF_TOKEN") or False
    marker = args.dest / COMPLETE_MARKER.replace(".json", f"-{args.revision}.json")
    if marker.exists():
        print(f"already complete: {args.repo_id}@{args.revision}", flush=True)
        return 0
    started = time.monotonic()
    api = HfApi(endpoint=endpoint, token=token)
    files = [
        entry
        for entry in api.list_repo_tree(args.repo_id, revision=args.revision, recursive=True)
        if hasattr(entry, "size")
    ]
    total = sum(getattr(entry, "size", 0) or 0 for entry in files)
    print(
        f"downloading {len(files)} files, {total} bytes of {args.repo_id}@{args.revision}",
        flush=True,
    )
    path = snapshot_download(
        args.repo_id,
        revision=args.revision,
        cache_dir=args.dest,
        endpoint=endpoint,
        token=token,
        max_workers=4,
    )
    elapsed = time.monotonic() - started
    marker.write_text(
        json.dumps(
            {"repo_id": args.repo_id, "revision": args.revision, "bytes": total, "path": path}
        )
    )
    print(f"complete: {total} bytes in {elapsed:.1f}s into {path}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

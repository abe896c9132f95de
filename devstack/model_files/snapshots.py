"""Finding a model's files in a Hugging Face cache, the way the engines do when offline.

The weight-download Job stores the Hub snapshot in huggingface_hub's cache layout
(`models--<org>--<name>/refs/<branch>` holding a commit sha, `snapshots/<sha>/<files>`).
The resolution follows TGI's `_get_cached_revision_directory`
(server/text_generation_server/utils/hub.py) and huggingface_hub's `snapshot_download`
(`_snapshot_download.py`): a branch or tag is looked up in `refs/`, and a revision with no
snapshot folder is never swapped for another cached one.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

# huggingface_hub/_snapshot_download.py: LocalEntryNotFoundError raised when HF_HUB_OFFLINE=1 and
# the snapshot is not in the cache. vLLM and SGLang reach it through snapshot_download.
OFFLINE_SNAPSHOT_MISSING = (
    "Cannot find an appropriate cached snapshot folder for the specified revision on the local "
    "disk and outgoing traffic has been disabled. To enable repo look-ups and downloads online, "
    "set 'HF_HUB_OFFLINE=0' as environment variable."
)

COMMIT_SHA = re.compile(r"^[0-9a-f]{40}$")


class MissingWeights(Exception):
    """The model's files are not in the cache and the engine may not download them.

    `str(error)` is huggingface_hub's LocalEntryNotFoundError text (what vLLM and SGLang log);
    `tgi_message` is what TGI's `download-weights` step ends with when it finds no weights.
    """

    def __init__(self, hub_cache: Path, repo_id: str, revision: str) -> None:
        super().__init__(OFFLINE_SNAPSHOT_MISSING)
        self.hub_cache = hub_cache
        self.repo_id = repo_id
        self.revision = revision

    @property
    def exception_name(self) -> str:
        """The class name the real engines print before the message in a traceback."""
        return "huggingface_hub.errors.LocalEntryNotFoundError"

    @property
    def tgi_message(self) -> str:
        # server/text_generation_server/utils/hub.py, weight_hub_files(): offline, no cached
        # .safetensors, then (cli.py falls back to PyTorch weights) no .bin either.
        return f"No .bin weights found for model {self.repo_id} and revision {self.revision}."


def repo_folder_name(repo_id: str) -> str:
    """`models--org--name`, as huggingface_hub.file_download.repo_folder_name spells it."""
    return "--".join(["models", *repo_id.split("/")])


def find_snapshot(hub_cache: Path, repo_id: str, revision: str) -> Path:
    """The snapshot folder holding `repo_id` at `revision` (a branch, tag or commit sha).

    Raises MissingWeights when the repository, the ref or the snapshot is absent, or when the
    snapshot holds no weights (an interrupted download leaves configs without weights).
    """
    repo_cache = Path(hub_cache) / repo_folder_name(repo_id)
    commit = revision or "main"
    ref_file = repo_cache / "refs" / commit
    if ref_file.is_file():
        commit = ref_file.read_text().strip()
    snapshot = repo_cache / "snapshots" / commit
    if not snapshot.is_dir() or not weight_files(snapshot):
        raise MissingWeights(Path(hub_cache), repo_id, revision)
    return snapshot


def weight_files(snapshot: Path, extension: str = ".safetensors") -> list[Path]:
    """Weight files at the top of a snapshot, filtered as TGI's `_weight_files_from_dir` does.

    Falls back to PyTorch `.bin` files when there is no safetensors file, like TGI's
    `weight_files`.
    """
    found = _top_level_files(snapshot, extension)
    if not found and extension == ".safetensors":
        found = _top_level_files(snapshot, ".bin")
    return found


def _top_level_files(snapshot: Path, extension: str) -> list[Path]:
    excluded = ("arguments", "args", "adapter", "training")
    return sorted(
        Path(entry.path)
        for entry in os.scandir(snapshot)
        if entry.is_file()
        and entry.name.endswith(extension)
        and not any(word in entry.name for word in excluded)
    )

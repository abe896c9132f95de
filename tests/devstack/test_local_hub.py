"""The local Hub (devstack.hub) speaks what the real huggingface_hub client expects.

Every test goes through the real library against the server subprocess (``local_hub``), passing
``endpoint=`` explicitly. No database needed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
from huggingface_hub import HfApi, hf_hub_download, snapshot_download
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from devstack.hub import fixtures
from devstack.hub.fixtures import (
    CUSTOM_CODE_ID,
    GEMMA_9B_ID,
    LLAMA_8B_AWQ_ID,
    LLAMA_8B_ID,
    LLAMA_70B_ID,
    MINILM_ID,
    MISTRAL_7B_ID,
    MISTRAL_GPTQ_ID,
    PRIVATE_ID,
    TOKEN_FINE_GRAINED,
    TOKEN_INVALID,
    TOKEN_NO_GATED,
    TOKEN_READ,
)
from devstack.hub.server import HubControl
from devstack.model_files import MissingWeights, ModelTokenizer, find_snapshot


@pytest.fixture
def api(local_hub: str) -> HfApi:
    return HfApi(endpoint=local_hub, token=TOKEN_READ)


def _expect_access(api: HfApi, repo_id: str, token: str | bool) -> str:
    """'ok', 'gated' or 'missing', mapping exceptions the way the portal must (Gated first)."""
    try:
        api.auth_check(repo_id, token=token)
    except GatedRepoError:  # subclass of RepositoryNotFoundError: must be caught first
        return "gated"
    except RepositoryNotFoundError:
        return "missing"
    return "ok"


# ---- model_info ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("repo_id", "gated", "license_", "params", "arch"),
    [
        (LLAMA_8B_ID, "manual", "llama3.1", {"BF16": 8_030_261_248}, "LlamaForCausalLM"),
        (MISTRAL_7B_ID, False, "apache-2.0", {"BF16": 7_248_023_552}, "MistralForCausalLM"),
        (GEMMA_9B_ID, "manual", "gemma", {"BF16": 9_241_705_984}, "Gemma2ForCausalLM"),
        (
            LLAMA_8B_AWQ_ID,
            False,
            "llama3.1",
            {"I32": 879_230_976, "F16": 1_105_465_344},
            "LlamaForCausalLM",
        ),
        (
            MISTRAL_GPTQ_ID,
            False,
            "apache-2.0",
            {"I32": 880_476_160, "F16": 316_936_192},
            "MistralForCausalLM",
        ),
        (LLAMA_70B_ID, "manual", "llama3.1", {"BF16": 70_553_706_496}, "LlamaForCausalLM"),
        (CUSTOM_CODE_ID, False, "other", {"BF16": 7_503_876_096}, "AcmeForCausalLM"),
        (MINILM_ID, False, "apache-2.0", {"F32": 22_713_216}, "BertModel"),
        (PRIVATE_ID, False, "llama3.1", {"BF16": 8_030_261_248}, "LlamaForCausalLM"),
    ],
)
def test_model_info_fixture_facts(
    api: HfApi,
    repo_id: str,
    gated: str | bool,
    license_: str,
    params: dict[str, int],
    arch: str,
) -> None:
    info = api.model_info(repo_id)

    repo = fixtures.repo(repo_id)
    assert info.id == repo_id
    assert info.sha == repo.main.sha
    assert info.gated == gated
    assert info.private is repo.private
    assert info.card_data is not None
    assert info.card_data.license == license_
    assert f"license:{license_}" in (info.tags or [])
    assert info.safetensors is not None
    assert info.safetensors.parameters == params
    assert info.safetensors.total == sum(params.values())
    assert info.config is not None
    assert info.config["architectures"] == [arch]
    assert info.siblings is not None
    assert {s.rfilename for s in info.siblings} == set(repo.main.files)
    assert info.last_modified is not None
    assert info.created_at is not None
    assert info.author == repo_id.split("/")[0]


def test_model_info_config_subset_and_tags(api: HfApi) -> None:
    awq = api.model_info(LLAMA_8B_AWQ_ID)
    assert awq.config is not None
    assert awq.config["quantization_config"] == {"quant_method": "awq", "bits": 4}
    assert {"awq", "4-bit"} <= set(awq.tags or [])

    gptq = api.model_info(MISTRAL_GPTQ_ID)
    assert gptq.config is not None
    assert gptq.config["quantization_config"]["quant_method"] == "gptq"

    llama = api.model_info(LLAMA_8B_ID)
    assert llama.config is not None
    assert llama.config["model_type"] == "llama"
    assert llama.config["tokenizer_config"]["eos_token"] == "<|eot_id|>"
    assert "quantization_config" not in llama.config
    assert llama.pipeline_tag == "text-generation"
    assert llama.transformers_info is not None
    assert llama.transformers_info.auto_model == "AutoModelForCausalLM"

    custom = api.model_info(CUSTOM_CODE_ID)
    assert custom.config is not None
    assert "AutoModelForCausalLM" in custom.config["auto_map"]
    assert "custom_code" in (custom.tags or [])

    minilm = api.model_info(MINILM_ID)
    assert minilm.pipeline_tag == "sentence-similarity"
    assert minilm.library_name == "sentence-transformers"


def test_model_info_by_branch_tag_sha_and_pr(api: HfApi) -> None:
    repo = fixtures.repo(MISTRAL_7B_ID)
    old_sha, new_sha = repo.tags["v1.0"], repo.branches["main"]
    assert old_sha != new_sha

    by_branch = api.model_info(MISTRAL_7B_ID, revision="main")
    by_tag = api.model_info(MISTRAL_7B_ID, revision="v1.0")
    by_sha = api.model_info(MISTRAL_7B_ID, revision=old_sha)
    by_ref = api.model_info(MISTRAL_7B_ID, revision="refs/tags/v1.0")

    assert by_branch.sha == new_sha
    assert by_tag.sha == by_sha.sha == by_ref.sha == old_sha
    # What an "update to the newer commit" shows: licence, files, parameter count.
    assert by_tag.card_data is not None
    assert by_branch.card_data is not None
    assert (by_tag.card_data.license, by_branch.card_data.license) == ("cc-by-nc-4.0", "apache-2.0")
    assert by_tag.safetensors is not None
    assert by_branch.safetensors is not None
    assert by_tag.safetensors.total == 7_241_732_096
    assert by_branch.safetensors.total == 7_248_023_552
    old_files = {s.rfilename for s in by_tag.siblings or []}
    new_files = {s.rfilename for s in by_branch.siblings or []}
    assert new_files - old_files == {"consolidated.safetensors", "tokenizer.model.v3"}

    # A URL-encoded revision with slashes (refs%2Fpr%2F1).
    pr = api.model_info(LLAMA_8B_ID, revision="refs/pr/1")
    assert pr.sha == fixtures.repo(LLAMA_8B_ID).pull_requests[1]
    # A second branch on the GPTQ repo, with other quantization parameters.
    eight_bit = api.model_info(MISTRAL_GPTQ_ID, revision="gptq-8bit-128g-actorder_True")
    assert eight_bit.safetensors is not None
    assert eight_bit.safetensors.parameters["I32"] == 1_759_707_136


def test_model_info_files_metadata(api: HfApi) -> None:
    info = api.model_info(LLAMA_8B_ID, files_metadata=True)
    commit = fixtures.repo(LLAMA_8B_ID).main
    siblings = {s.rfilename: s for s in info.siblings or []}

    config = siblings["config.json"]
    assert config.size == commit.files["config.json"].size
    assert config.blob_id == commit.files["config.json"].blob_id
    assert config.lfs is None

    shard = siblings["model-00001-of-00004.safetensors"]
    assert shard.lfs is not None
    assert shard.lfs.sha256 == commit.files["model-00001-of-00004.safetensors"].sha256
    assert shard.lfs.size == shard.size


def test_model_info_expand(api: HfApi) -> None:
    info = api.model_info(LLAMA_70B_ID, expand=["sha", "gated", "safetensors", "cardData"])
    assert info.sha == fixtures.repo(LLAMA_70B_ID).main.sha
    assert info.gated == "manual"
    assert info.safetensors is not None
    assert info.safetensors.total == 70_553_706_496
    assert info.siblings is None  # not requested
    assert info.downloads is None


def test_revision_not_found(api: HfApi) -> None:
    with pytest.raises(RevisionNotFoundError):
        api.model_info(MISTRAL_7B_ID, revision="v9.9")
    with pytest.raises(RevisionNotFoundError):
        api.model_info(MISTRAL_7B_ID, revision="0" * 40)


def test_repository_not_found(local_hub: str) -> None:
    with pytest.raises(RepositoryNotFoundError) as anonymous:
        HfApi(endpoint=local_hub).model_info("nobody/no-such-model", token=False)
    assert anonymous.value.response.status_code == 401
    with pytest.raises(RepositoryNotFoundError) as authenticated:
        HfApi(endpoint=local_hub).model_info("nobody/no-such-model", token=TOKEN_READ)
    assert authenticated.value.response.status_code == 404


def test_private_repo_visible_only_with_access(local_hub: str) -> None:
    api = HfApi(endpoint=local_hub)
    assert api.model_info(PRIVATE_ID, token=TOKEN_READ).private is True
    for token in (TOKEN_NO_GATED, False):
        with pytest.raises(RepositoryNotFoundError):
            api.model_info(PRIVATE_ID, token=token)
    assert _expect_access(api, PRIVATE_ID, TOKEN_NO_GATED) == "missing"


def test_gated_metadata_is_public(local_hub: str) -> None:
    info = HfApi(endpoint=local_hub).model_info(LLAMA_8B_ID, token=False)
    assert info.gated == "manual"


def test_invalid_token_is_rejected_not_mapped_to_missing_repo(local_hub: str) -> None:
    with pytest.raises(HfHubHTTPError) as excinfo:
        HfApi(endpoint=local_hub).model_info(MISTRAL_7B_ID, token=TOKEN_INVALID)
    assert not isinstance(excinfo.value, RepositoryNotFoundError)
    assert excinfo.value.response.status_code == 401
    assert "Invalid credentials" in str(excinfo.value)


# ---- auth-check and whoami ----------------------------------------------------------------


def test_auth_check(local_hub: str) -> None:
    api = HfApi(endpoint=local_hub)
    assert _expect_access(api, LLAMA_8B_ID, TOKEN_READ) == "ok"
    assert _expect_access(api, MISTRAL_7B_ID, TOKEN_NO_GATED) == "ok"
    assert _expect_access(api, LLAMA_8B_ID, TOKEN_NO_GATED) == "gated"
    assert _expect_access(api, GEMMA_9B_ID, TOKEN_NO_GATED) == "gated"
    assert _expect_access(api, "nobody/no-such-model", TOKEN_READ) == "missing"
    # Fine-grained token: scoped to the 8B only.
    assert _expect_access(api, LLAMA_8B_ID, TOKEN_FINE_GRAINED) == "ok"
    assert _expect_access(api, LLAMA_70B_ID, TOKEN_FINE_GRAINED) == "gated"


def test_auth_check_gated_error_details(local_hub: str) -> None:
    api = HfApi(endpoint=local_hub)
    with pytest.raises(GatedRepoError) as denied:
        api.auth_check(LLAMA_70B_ID, token=TOKEN_NO_GATED)
    assert denied.value.response.status_code == 403
    assert denied.value.response.headers["X-Error-Code"] == "GatedRepo"
    assert "not in the authorized list" in str(denied.value)
    assert denied.value.repo_id == LLAMA_70B_ID

    with pytest.raises(GatedRepoError) as anonymous:
        api.auth_check(LLAMA_70B_ID, token=False)
    assert anonymous.value.response.status_code == 401


def test_whoami(local_hub: str) -> None:
    api = HfApi(endpoint=local_hub)
    me = api.whoami(token=TOKEN_READ)
    assert me["type"] == "user"
    assert me["name"] == "portal-ci"
    assert me["auth"]["type"] == "access_token"
    assert me["auth"]["accessToken"]["role"] == "read"
    assert me["auth"]["accessToken"]["displayName"] == "portal-ci-read"
    assert api.whoami(token=TOKEN_FINE_GRAINED)["auth"]["accessToken"]["role"] == "fineGrained"

    with pytest.raises(HfHubHTTPError) as excinfo:
        api.whoami(token=TOKEN_INVALID)
    assert excinfo.value.response.status_code == 401
    assert "Invalid user token" in str(excinfo.value)


# ---- downloads ----------------------------------------------------------------------------


def test_hf_hub_download_config(local_hub: str, hub_cache_dir: Path) -> None:
    commit = fixtures.repo(LLAMA_8B_ID).main
    path = hf_hub_download(
        LLAMA_8B_ID,
        "config.json",
        endpoint=local_hub,
        token=TOKEN_READ,
        cache_dir=hub_cache_dir,
    )
    assert isinstance(path, str)
    local = Path(path)
    assert local.parent.name == commit.sha
    assert local.parent.parent.name == "snapshots"
    config = json.loads(local.read_text())
    assert config["num_hidden_layers"] == 32
    assert config["num_key_value_heads"] == 8
    assert config["head_dim"] == 128
    assert config["max_position_embeddings"] == 131072
    assert config["vocab_size"] == 128256
    # refs/main records the commit the branch resolved to.
    ref = hub_cache_dir / "models--meta-llama--Llama-3.1-8B-Instruct" / "refs" / "main"
    assert ref.read_text() == commit.sha


def test_hf_hub_download_lfs_file_by_sha(local_hub: str, hub_cache_dir: Path) -> None:
    repo = fixtures.repo(MISTRAL_7B_ID)
    old_sha = repo.tags["v1.0"]
    path = hf_hub_download(
        MISTRAL_7B_ID,
        "model-00001-of-00003.safetensors",
        revision=old_sha,
        endpoint=local_hub,
        token=TOKEN_READ,
        cache_dir=hub_cache_dir,
    )
    assert isinstance(path, str)
    expected = repo.commits[old_sha].files["model-00001-of-00003.safetensors"]
    assert Path(path).read_bytes() == expected.content
    # Blobs of LFS files are stored under their sha256, as with the real Hub.
    assert Path(path).resolve().name == expected.sha256


def test_hf_hub_download_errors(local_hub: str, hub_cache_dir: Path) -> None:
    common: dict[str, Any] = {"endpoint": local_hub, "cache_dir": hub_cache_dir}
    with pytest.raises(GatedRepoError):
        hf_hub_download(LLAMA_8B_ID, "config.json", token=TOKEN_NO_GATED, **common)
    with pytest.raises(RemoteEntryNotFoundError):
        hf_hub_download(MISTRAL_7B_ID, "no-such-file.json", token=TOKEN_READ, **common)
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(MISTRAL_7B_ID, "config.json", revision="nope", token=TOKEN_READ, **common)
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("nobody/no-such-model", "config.json", token=TOKEN_READ, **common)


def test_snapshot_download_whole_repo(local_hub: str, tmp_path: Path) -> None:
    repo = fixtures.repo(LLAMA_8B_ID)
    sha = repo.main.sha
    target = tmp_path / "llama"
    result = snapshot_download(
        LLAMA_8B_ID,
        revision=sha,
        endpoint=local_hub,
        token=TOKEN_READ,
        local_dir=target,
        cache_dir=tmp_path / "cache",
    )
    assert Path(result) == target
    downloaded = {
        p.relative_to(target).as_posix()
        for p in target.rglob("*")
        if p.is_file() and ".cache" not in p.relative_to(target).parts
    }
    assert downloaded == set(repo.main.files)
    for name, file in repo.main.files.items():
        assert (target / name).read_bytes() == file.content


def test_snapshot_download_to_cache_by_branch(local_hub: str, hub_cache_dir: Path) -> None:
    snapshot = snapshot_download(
        MINILM_ID, endpoint=local_hub, token=TOKEN_NO_GATED, cache_dir=hub_cache_dir
    )
    commit = fixtures.repo(MINILM_ID).main
    assert Path(snapshot).name == commit.sha
    assert (Path(snapshot) / "1_Pooling" / "config.json").is_file()


def test_range_request(local_hub: str) -> None:
    file = fixtures.repo(MISTRAL_7B_ID).main.files["config.json"]
    response = httpx.get(
        f"{local_hub}/{MISTRAL_7B_ID}/resolve/main/config.json",
        headers={"Range": "bytes=2-9"},
    )
    assert response.status_code == 206
    assert response.content == file.content[2:10]
    assert response.headers["content-range"] == f"bytes 2-9/{file.size}"


def test_head_headers_match_what_the_library_needs(local_hub: str) -> None:
    commit = fixtures.repo(MISTRAL_7B_ID).main
    shard = commit.files["model-00001-of-00003.safetensors"]
    response = httpx.head(
        f"{local_hub}/{MISTRAL_7B_ID}/resolve/main/model-00001-of-00003.safetensors",
        headers={"Accept-Encoding": "identity"},
    )
    assert response.status_code == 200
    assert response.headers["x-repo-commit"] == commit.sha
    assert response.headers["x-linked-etag"] == f'"{shard.sha256}"'
    assert response.headers["x-linked-size"] == str(shard.size)
    assert response.headers["content-length"] == str(shard.size)
    assert response.headers["accept-ranges"] == "bytes"


# ---- /_sim knobs ----------------------------------------------------------------------------


def test_runtime_grant_revocation(
    local_hub: str, hub_control: HubControl, hub_cache_dir: Path
) -> None:
    api = HfApi(endpoint=local_hub)
    assert _expect_access(api, GEMMA_9B_ID, TOKEN_READ) == "ok"

    hub_control.revoke(TOKEN_READ, GEMMA_9B_ID)
    assert _expect_access(api, GEMMA_9B_ID, TOKEN_READ) == "gated"
    with pytest.raises(GatedRepoError):
        hf_hub_download(
            GEMMA_9B_ID,
            "config.json",
            endpoint=local_hub,
            token=TOKEN_READ,
            cache_dir=hub_cache_dir,
        )
    # Other gated repos are unaffected.
    assert _expect_access(api, LLAMA_8B_ID, TOKEN_READ) == "ok"

    hub_control.grant(TOKEN_NO_GATED, GEMMA_9B_ID)
    assert _expect_access(api, GEMMA_9B_ID, TOKEN_NO_GATED) == "ok"

    hub_control.reset()
    assert _expect_access(api, GEMMA_9B_ID, TOKEN_READ) == "ok"
    assert _expect_access(api, GEMMA_9B_ID, TOKEN_NO_GATED) == "gated"


def test_deleted_token_becomes_invalid(local_hub: str, hub_control: HubControl) -> None:
    api = HfApi(endpoint=local_hub)
    hub_control.add_token("hf_portal_temp", "temp-user", grants=[LLAMA_70B_ID])
    assert api.whoami(token="hf_portal_temp")["name"] == "temp-user"
    assert _expect_access(api, LLAMA_70B_ID, "hf_portal_temp") == "ok"
    hub_control.delete_token("hf_portal_temp")
    with pytest.raises(HfHubHTTPError) as excinfo:
        api.whoami(token="hf_portal_temp")
    assert excinfo.value.response.status_code == 401


def test_fault_status_surfaces_as_client_error(
    local_hub: str, hub_control: HubControl, hub_cache_dir: Path
) -> None:
    api = HfApi(endpoint=local_hub, token=TOKEN_READ)
    cached = hf_hub_download(
        MISTRAL_7B_ID, "config.json", endpoint=local_hub, token=TOKEN_READ, cache_dir=hub_cache_dir
    )
    hub_control.set_faults(status=503)
    with pytest.raises(HfHubHTTPError) as excinfo:
        api.model_info(MISTRAL_7B_ID)
    assert excinfo.value.response.status_code == 503
    # Hub down but the file is cached for this branch: the library falls back to the cache.
    again = hf_hub_download(
        MISTRAL_7B_ID, "config.json", endpoint=local_hub, token=TOKEN_READ, cache_dir=hub_cache_dir
    )
    assert again == cached
    hub_control.clear_faults()
    assert api.model_info(MISTRAL_7B_ID).sha == fixtures.repo(MISTRAL_7B_ID).main.sha


def test_download_retries_transient_5xx(
    local_hub: str, hub_control: HubControl, hub_cache_dir: Path
) -> None:
    """hf_hub_download retries a failed HEAD (no cached copy) with backoff: 2 faults, 1 s."""
    hub_control.set_faults(status=503, methods=["HEAD"], times=2)
    hub_control.clear_requests()
    path = hf_hub_download(
        GEMMA_9B_ID, "config.json", endpoint=local_hub, token=TOKEN_READ, cache_dir=hub_cache_dir
    )
    assert isinstance(path, str)
    assert json.loads(Path(path).read_text())["num_hidden_layers"] == 42
    heads = [r["status"] for r in hub_control.requests() if r["method"] == "HEAD"]
    assert heads == [503, 503, 200]


def test_download_fails_when_hub_down_and_not_cached(
    local_hub: str, hub_control: HubControl, hub_cache_dir: Path
) -> None:
    # 501 is not in the library's retry list, so this fails at once (5xx codes that are retried
    # - 500/502/503/504 - take ~23 s of backoff before the same error).
    hub_control.set_faults(status=501)
    with pytest.raises(LocalEntryNotFoundError):
        hf_hub_download(
            MISTRAL_7B_ID,
            "config.json",
            endpoint=local_hub,
            token=TOKEN_READ,
            cache_dir=hub_cache_dir,
        )


def test_fault_scoped_and_counted(local_hub: str, hub_control: HubControl) -> None:
    api = HfApi(endpoint=local_hub, token=TOKEN_READ)
    hub_control.set_faults(status=500, path_regex=r"/auth-check$", times=1)
    assert api.model_info(GEMMA_9B_ID).gated == "manual"  # not matched
    with pytest.raises(HfHubHTTPError) as excinfo:
        api.auth_check(GEMMA_9B_ID)
    assert excinfo.value.response.status_code == 500
    api.auth_check(GEMMA_9B_ID)  # the single injected failure is used up


def test_fault_delay_times_out(local_hub: str, hub_control: HubControl) -> None:
    api = HfApi(endpoint=local_hub, token=TOKEN_READ)
    hub_control.set_faults(delay_seconds=1.0, path_regex=r"^/api/models/")
    with pytest.raises(httpx2.TimeoutException):
        api.model_info(MISTRAL_7B_ID, timeout=0.2)
    # whoami is not slowed down
    assert api.whoami()["name"] == "portal-ci"


def test_branch_moves_at_runtime(local_hub: str, hub_control: HubControl) -> None:
    """Start on the v1.0 commit, then main "advances" to the newer commit."""
    api = HfApi(endpoint=local_hub, token=TOKEN_READ)
    repo = fixtures.repo(MISTRAL_7B_ID)
    old_sha, new_sha = repo.tags["v1.0"], repo.branches["main"]

    hub_control.move_branch(MISTRAL_7B_ID, "main", old_sha)
    assert api.model_info(MISTRAL_7B_ID).sha == old_sha
    assert [c.commit_id for c in api.list_repo_commits(MISTRAL_7B_ID)] == [old_sha]

    hub_control.move_branch(MISTRAL_7B_ID, "main", new_sha)
    assert api.model_info(MISTRAL_7B_ID).sha == new_sha
    assert [c.commit_id for c in api.list_repo_commits(MISTRAL_7B_ID)] == [new_sha, old_sha]
    refs = api.list_repo_refs(MISTRAL_7B_ID)
    assert {t.name: t.target_commit for t in refs.tags} == {"v1.0": old_sha}


def test_lfs_redirect_to_cdn_host(
    local_hub: str, hub_control: HubControl, hub_cache_dir: Path
) -> None:
    hub_control.set_lfs_redirect(True)
    hub_control.clear_requests()
    file = fixtures.repo(MINILM_ID).main.files["model.safetensors"]
    path = hf_hub_download(
        MINILM_ID,
        "model.safetensors",
        endpoint=local_hub,
        token=TOKEN_READ,
        cache_dir=hub_cache_dir,
    )
    assert isinstance(path, str)
    assert Path(path).read_bytes() == file.content
    log = hub_control.requests()
    cdn = [r for r in log if r["path"].startswith("/_cdn/lfs/")]
    assert cdn
    assert all(r["user"] is None for r in cdn)  # auth header not forwarded to the "CDN"


def test_request_log_records_calls(local_hub: str, hub_control: HubControl) -> None:
    HfApi(endpoint=local_hub).model_info(MINILM_ID, token=TOKEN_NO_GATED)
    log = hub_control.requests()
    assert log[-1]["path"] == f"/api/models/{MINILM_ID}"
    assert log[-1]["user"] == "portal-newcomer"
    assert log[-1]["status"] == 200


def test_tree_listing(api: HfApi) -> None:
    files = api.list_repo_files(LLAMA_8B_ID)
    assert set(files) == set(fixtures.repo(LLAMA_8B_ID).main.files)
    top = {entry.path for entry in api.list_repo_tree(LLAMA_8B_ID)}
    assert "original" in top
    assert "original/params.json" not in top


def test_safetensors_stand_ins_parse(api: HfApi) -> None:
    """Stand-in shards are valid safetensors; real counts come from model_info instead."""
    metadata = api.get_safetensors_metadata(LLAMA_8B_AWQ_ID)
    assert metadata.sharded
    assert set(metadata.parameter_count) == {"I32", "F16"}
    assert metadata.metadata is not None
    assert int(metadata.metadata["total_size"]) == 879_230_976 * 4 + 1_105_465_344 * 2


def test_downloaded_tokenizers_are_the_models_own(local_hub: str, hub_cache_dir: Path) -> None:
    """What a weight-download Job stores: the engines find it offline and tokenize with it."""
    patterns = ["*.json", "*.safetensors"]
    for repo_id in (LLAMA_8B_ID, fixtures.LLAMA_8B_BASE_ID, MISTRAL_7B_ID):
        snapshot_download(
            repo_id,
            endpoint=local_hub,
            token=TOKEN_READ,
            cache_dir=hub_cache_dir,
            allow_patterns=patterns,
        )
    instruct = ModelTokenizer.from_dir(find_snapshot(hub_cache_dir, LLAMA_8B_ID, "main"))
    base = ModelTokenizer.from_dir(find_snapshot(hub_cache_dir, fixtures.LLAMA_8B_BASE_ID, "main"))
    mistral = ModelTokenizer.from_dir(find_snapshot(hub_cache_dir, MISTRAL_7B_ID, "main"))
    assert instruct.encode("Hello")[0] == base.encode("Hello")[0] == 128_000
    assert mistral.encode("Hello")[0] == 1 and mistral.vocab_size == 32_768
    assert instruct.has_chat_template and mistral.has_chat_template
    assert not base.has_chat_template
    with pytest.raises(MissingWeights):
        find_snapshot(hub_cache_dir, GEMMA_9B_ID, "main")


def test_model_info_shows_the_chat_template_only_for_chat_models(api: HfApi) -> None:
    # The Hub copies tokenizer_config.json's chat_template into model_info().config.
    instruct = api.model_info(LLAMA_8B_ID)
    base = api.model_info(fixtures.LLAMA_8B_BASE_ID)
    assert instruct.config is not None and base.config is not None
    assert "<|start_header_id|>" in instruct.config["tokenizer_config"]["chat_template"]
    assert "chat_template" not in base.config["tokenizer_config"]
    assert base.config["tokenizer_config"]["eos_token"] == "<|end_of_text|>"

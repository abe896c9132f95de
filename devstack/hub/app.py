"""ASGI app of the local Hub: the subset of the Hugging Face Hub HTTP API huggingface_hub uses.

Behaviour follows what huggingface_hub 2.x expects (utils/_http.py ``hf_raise_for_status``,
file_download.py ``get_hf_file_metadata``, hf_api.py ``model_info``/``auth_check``/``whoami``/
``list_repo_tree``): errors carry ``X-Error-Code``/``X-Error-Message`` headers and a JSON
``{"error": ...}`` body; ``/resolve`` answers HEAD and GET with ``X-Repo-Commit``, a quoted
``ETag`` (plus ``X-Linked-Etag``/``X-Linked-Size`` for LFS files), ``Content-Length`` and
``Accept-Ranges``. Routing works on the raw (still percent-encoded) path so that revisions such
as ``refs%2Fpr%2F1`` keep their slashes. The ``/_sim/*`` endpoints are the test knobs (see
README.md next to this file).
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import json
import mimetypes
import re
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import parse_qs, quote, unquote

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from devstack.hub import fixtures
from devstack.hub.fixtures import Commit, Repo, RepoFile, Token

# Properties model_info accepts in ``expand`` (huggingface_hub's ExpandModelProperty_T).
EXPAND_MODEL_PROPERTIES = frozenset(
    {
        "author",
        "baseModels",
        "cardData",
        "childrenModelCount",
        "config",
        "createdAt",
        "disabled",
        "downloads",
        "downloadsAllTime",
        "evalResults",
        "gated",
        "gguf",
        "inference",
        "inferenceProviderMapping",
        "lastModified",
        "library_name",
        "likes",
        "mask_token",
        "model-index",
        "pipeline_tag",
        "private",
        "resourceGroup",
        "safetensors",
        "sha",
        "siblings",
        "spaces",
        "tags",
        "transformersInfo",
        "trendingScore",
        "usedStorage",
        "widgetData",
    }
)

INVALID_CREDENTIALS = "Invalid credentials in Authorization header"
COMMIT_SHA_RE = re.compile(r"[0-9a-f]{40}")
_UNENCODED_REF = re.compile(r"(pr/\d+|heads/[^/]+|tags/[^/]+)/(.+)")
_SERVER_ERRORS = {
    500: "Internal Error - We're working hard to fix this as soon as possible!",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


# --------------------------------------------------------------------------------------------
# Runtime state (what /_sim changes)
# --------------------------------------------------------------------------------------------


@dataclass
class Faults:
    """Injected failures for "Hub slow / unreachable" tests."""

    delay_seconds: float = 0.0
    status: int | None = None  # e.g. 500, 503, 504, 429
    path_regex: str | None = None  # only requests whose decoded path matches (re.search)
    methods: list[str] | None = None  # only these HTTP methods
    times: int | None = None  # affect only the next N matching requests, then clear
    message: str | None = None  # error body; a default per status otherwise

    def matches(self, method: str, path: str) -> bool:
        if not self.delay_seconds and self.status is None:
            return False
        if self.methods and method.upper() not in {m.upper() for m in self.methods}:
            return False
        return not (self.path_regex and not re.search(self.path_regex, path))


@dataclass
class TokenState:
    token: Token
    allow: set[str]
    deny: set[str] = field(default_factory=set)

    def may_read(self, repo_id: str) -> bool:
        if repo_id in self.deny:
            return False
        return "*" in self.allow or repo_id in self.allow


class HubState:
    """Mutable server state, reset to the fixture defaults by :meth:`reset`."""

    def __init__(self, repos: Mapping[str, Repo], tokens: Mapping[str, Token]) -> None:
        self.repos = dict(repos)
        self.default_tokens = dict(tokens)
        self.lfs_by_sha256: dict[str, RepoFile] = {}
        for repo in self.repos.values():
            for commit in repo.commits.values():
                for file in commit.files.values():
                    if file.is_lfs:
                        self.lfs_by_sha256[file.sha256] = file
        self.requests: deque[dict[str, Any]] = deque(maxlen=1000)
        self.reset()

    def reset(self) -> None:
        self.tokens: dict[str, TokenState] = {
            key: TokenState(token=t, allow=set(t.grants)) for key, t in self.default_tokens.items()
        }
        self.faults = Faults()
        self.lfs_redirect = False
        self.branches: dict[str, dict[str, str]] = {
            rid: dict(r.branches) for rid, r in self.repos.items()
        }
        self.tags: dict[str, dict[str, str]] = {rid: dict(r.tags) for rid, r in self.repos.items()}

    # ---- refs ----------------------------------------------------------------------------

    def resolve(self, repo: Repo, revision: str) -> Commit | None:
        branches = self.branches[repo.repo_id]
        tags = self.tags[repo.repo_id]
        sha: str | None = None
        if revision in branches:
            sha = branches[revision]
        elif revision.startswith("refs/heads/"):
            sha = branches.get(revision.removeprefix("refs/heads/"))
        elif revision in tags:
            sha = tags[revision]
        elif revision.startswith("refs/tags/"):
            sha = tags.get(revision.removeprefix("refs/tags/"))
        elif match := re.fullmatch(r"refs/pr/(\d+)", revision):
            sha = repo.pull_requests.get(int(match.group(1)))
        elif COMMIT_SHA_RE.fullmatch(revision):
            sha = revision
        elif re.fullmatch(r"[0-9a-f]{7,39}", revision):
            candidates = [c for c in repo.commits if c.startswith(revision)]
            sha = candidates[0] if len(candidates) == 1 else None
        return repo.commits.get(sha) if sha else None

    def snapshot(self) -> dict[str, Any]:
        return {
            "tokens": {
                key: {
                    "user": ts.token.user,
                    "role": ts.token.role,
                    "allow": sorted(ts.allow),
                    "deny": sorted(ts.deny),
                }
                for key, ts in self.tokens.items()
            },
            "faults": asdict(self.faults),
            "lfs_redirect": self.lfs_redirect,
            "branches": self.branches,
            "tags": self.tags,
        }


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


class _InvalidCredentials(Exception):
    pass


def hub_error(
    status: int,
    message: str,
    code: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """An error the way the Hub sends it: X-Error-Code/X-Error-Message + {"error": message}."""
    all_headers = {"X-Error-Message": message}
    if code is not None:
        all_headers["X-Error-Code"] = code
    all_headers.update(headers or {})
    return JSONResponse({"error": message}, status_code=status, headers=all_headers)


def _flag(value: str | None) -> bool:
    return value is not None and value.lower() in {"1", "true", "yes"}


def _first(values: Mapping[str, list[str]], key: str) -> str | None:
    found = values.get(key)
    return found[0] if found else None


def _object_id(text: str) -> str:
    """A stable 24-hex id shaped like the Hub's Mongo ``_id``."""
    return hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()[:24]


def _file_headers(file: RepoFile, commit: Commit) -> dict[str, str]:
    headers = {
        "X-Repo-Commit": commit.sha,
        "ETag": f'"{file.etag}"',
        "Accept-Ranges": "bytes",
        "Content-Type": _content_type(file.path),
        "Vary": "Origin, Accept",
    }
    if file.is_lfs:
        name = file.path.rsplit("/", 1)[-1]
        headers["X-Linked-Etag"] = f'"{file.sha256}"'
        headers["X-Linked-Size"] = str(file.size)
        headers["Content-Disposition"] = (
            f"inline; filename*=UTF-8''{quote(name)}; filename=\"{name}\";"
        )
    return headers


def _content_type(path: str) -> str:
    if path.endswith((".json", ".md", ".txt", ".py", ".yaml", ".yml", ".gitattributes")):
        return "text/plain; charset=utf-8"
    guessed, _ = mimetypes.guess_type(path)
    return guessed or "application/octet-stream"


def _parse_range(header: str, size: int) -> tuple[int, int] | None:
    """Single ``bytes=a-b`` / ``bytes=a-`` / ``bytes=-n`` range -> inclusive (start, end)."""
    match = re.fullmatch(r"\s*bytes=(\d*)-(\d*)\s*", header)
    if not match or (not match.group(1) and not match.group(2)):
        return None
    first, last = match.group(1), match.group(2)
    if not first:
        length = int(last)
        if length == 0:
            return None
        return max(size - length, 0), size - 1
    start = int(first)
    end = min(int(last), size - 1) if last else size - 1
    if start >= size or end < start:
        return None
    return start, end


def _other_loopback(host: str) -> str:
    """Another name for the same loopback server, so the client treats it as a CDN host."""
    if host == "127.0.0.1":
        return "localhost"
    if host == "localhost":
        return "127.0.0.1"
    return host


# --------------------------------------------------------------------------------------------
# The application
# --------------------------------------------------------------------------------------------

Handler = Callable[..., Awaitable[Response]]


class HubApp:
    """ASGI callable. Use :func:`create_app` to build one on the fixtures."""

    def __init__(self, state: HubState) -> None:
        self.state = state
        seg = r"([^/]+)"
        repo = rf"{seg}/{seg}"
        api = rf"/api/models/{repo}"
        self.routes: list[tuple[frozenset[str], re.Pattern[str], Handler]] = [
            (frozenset({"GET"}), re.compile(r"/api/whoami-v2"), self.whoami),
            (frozenset({"GET"}), re.compile(r"/api/models"), self.list_models),
            (frozenset({"GET"}), re.compile(api), self.model_info),
            (frozenset({"GET"}), re.compile(rf"{api}/revision/{seg}"), self.model_info),
            (frozenset({"GET"}), re.compile(rf"{api}/auth-check(/write)?"), self.auth_check),
            (frozenset({"GET"}), re.compile(rf"{api}/tree/{seg}(/.*)?"), self.tree),
            (frozenset({"POST"}), re.compile(rf"{api}/paths-info/{seg}"), self.paths_info),
            (frozenset({"GET"}), re.compile(rf"{api}/refs"), self.refs),
            (frozenset({"GET"}), re.compile(rf"{api}/commits/{seg}"), self.commits),
            (frozenset({"GET", "HEAD"}), re.compile(rf"/{repo}/resolve/{seg}/(.+)"), self.resolve),
            (frozenset({"GET", "HEAD"}), re.compile(r"/_cdn/lfs/([0-9a-f]{64})"), self.cdn),
        ]
        self.sim_routes: list[tuple[frozenset[str], re.Pattern[str], Handler]] = [
            (frozenset({"GET"}), re.compile(r"/_sim/health"), self.sim_health),
            (frozenset({"GET"}), re.compile(r"/_sim/state"), self.sim_state),
            (frozenset({"POST"}), re.compile(r"/_sim/reset"), self.sim_reset),
            (frozenset({"POST"}), re.compile(r"/_sim/grants"), self.sim_grants),
            (frozenset({"POST"}), re.compile(r"/_sim/tokens"), self.sim_add_token),
            (frozenset({"DELETE"}), re.compile(r"/_sim/tokens/([^/]+)"), self.sim_revoke_token),
            (frozenset({"GET", "POST", "DELETE"}), re.compile(r"/_sim/faults"), self.sim_faults),
            (frozenset({"POST"}), re.compile(r"/_sim/refs"), self.sim_refs),
            (frozenset({"POST"}), re.compile(r"/_sim/options"), self.sim_options),
            (frozenset({"GET", "DELETE"}), re.compile(r"/_sim/requests"), self.sim_requests),
        ]

    # ---- ASGI plumbing -------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        request = Request(scope, receive)
        raw_path = scope.get("raw_path") or scope["path"].encode()
        raw = raw_path.decode("latin-1").split("?", 1)[0]
        started = time.monotonic()
        try:
            response = await self.dispatch(request, raw)
        except _InvalidCredentials:
            response = hub_error(401, INVALID_CREDENTIALS)
        except Exception as exc:  # a bug in a handler: answer like the Hub's 500
            response = JSONResponse({"error": f"devstack hub error: {exc!r}"}, status_code=500)
        response.headers.setdefault("X-Request-Id", f"devstack-{uuid.uuid4().hex[:16]}")
        if not raw.startswith("/_sim/"):
            self.state.requests.append(
                {
                    "time": time.time(),
                    "method": request.method,
                    "path": unquote(raw),
                    "query": request.url.query,
                    "status": response.status_code,
                    "user": self._user_for_log(request),
                    "range": request.headers.get("range"),
                    "duration_ms": round((time.monotonic() - started) * 1000, 1),
                }
            )
        await response(scope, receive, send)

    def _user_for_log(self, request: Request) -> str | None:
        token = self._bearer(request)
        if token is None:
            return None
        ts = self.state.tokens.get(token)
        return ts.token.user if ts else "<invalid>"

    async def dispatch(self, request: Request, raw: str) -> Response:
        method = request.method.upper()
        if raw.startswith("/_sim/"):
            return await self._route(self.sim_routes, method, raw, request)
        faults = self.state.faults
        if faults.matches(method, unquote(raw)):
            if faults.times is not None:
                faults.times -= 1
                if faults.times <= 0:
                    self.state.faults = Faults()
            if faults.delay_seconds:
                await asyncio.sleep(faults.delay_seconds)
            if faults.status is not None:
                message = faults.message or _SERVER_ERRORS.get(faults.status, "Injected fault")
                return JSONResponse({"error": message}, status_code=faults.status)
        return await self._route(self.routes, method, raw, request)

    async def _route(
        self,
        routes: list[tuple[frozenset[str], re.Pattern[str], Handler]],
        method: str,
        raw: str,
        request: Request,
    ) -> Response:
        allowed = False
        for methods, pattern, handler in routes:
            match = pattern.fullmatch(raw)
            if match is None:
                continue
            if method not in methods:
                allowed = True
                continue
            args = [unquote(g) if g is not None else None for g in match.groups()]
            return await handler(request, *args)
        if allowed:
            return JSONResponse({"error": "Method not allowed"}, status_code=405)
        return JSONResponse(
            {"error": "Sorry, we can't find the page you are looking for."}, status_code=404
        )

    # ---- auth ----------------------------------------------------------------------------

    @staticmethod
    def _bearer(request: Request) -> str | None:
        header = request.headers.get("authorization")
        if header is None:
            return None
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer":
            return ""
        return value.strip()

    def _principal(self, request: Request) -> TokenState | None:
        """The caller's token, None when anonymous; raises on an unknown token."""
        token = self._bearer(request)
        if token is None:
            return None
        state = self.state.tokens.get(token)
        if state is None:
            raise _InvalidCredentials
        return state

    def _visible_repo(
        self, request: Request, namespace: str, name: str
    ) -> tuple[Repo, TokenState | None] | Response:
        """The repo if the caller may see it at all, else the Hub's RepoNotFound error."""
        principal = self._principal(request)
        repo = self.state.repos.get(f"{namespace}/{name}")
        if repo is None or (repo.private and not (principal and principal.may_read(repo.repo_id))):
            return hub_error(
                401 if principal is None else 404, "Repository not found", "RepoNotFound"
            )
        if repo.disabled:
            return hub_error(403, "Access to this resource is disabled.")
        return repo, principal

    @staticmethod
    def _gate(repo: Repo, principal: TokenState | None) -> Response | None:
        """None when the caller may read the repo's files, else the Hub's GatedRepo error."""
        if not repo.gated or (principal is not None and principal.may_read(repo.repo_id)):
            return None
        if principal is None:
            return hub_error(
                401,
                f"Access to model {repo.repo_id} is restricted. You must have access to it and "
                "be authenticated to access it. Please log in.",
                "GatedRepo",
            )
        return hub_error(
            403,
            f"Access to model {repo.repo_id} is restricted and you are not in the authorized "
            f"list. Visit https://huggingface.co/{repo.repo_id} to ask for access.",
            "GatedRepo",
        )

    def _commit(self, repo: Repo, revision: str) -> Commit | Response:
        commit = self.state.resolve(repo, revision)
        if commit is None:
            return hub_error(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return commit

    # ---- /api/whoami-v2 ------------------------------------------------------------------

    async def whoami(self, request: Request) -> Response:
        if self._bearer(request) is None:
            return hub_error(401, "Invalid username or password.")
        principal = self._principal(request)
        assert principal is not None
        token = principal.token
        access_token: dict[str, Any] = {
            "displayName": token.display_name,
            "role": token.role,
            "createdAt": token.created_at,
        }
        if token.role == "fineGrained":
            access_token["fineGrained"] = {
                "canReadGatedRepos": bool(principal.allow),
                "global": [],
                "scoped": [
                    {
                        "entity": {"_id": _object_id(repo_id), "type": "model", "name": repo_id},
                        "permissions": ["repo.content.read"],
                    }
                    for repo_id in sorted(principal.allow - {"*"})
                ],
            }
        return JSONResponse(
            {
                "type": "user",
                "id": _object_id(f"user:{token.user}"),
                "name": token.user,
                "fullname": token.fullname,
                **({"email": token.email, "emailVerified": True} if token.email else {}),
                "canPay": False,
                "isPro": False,
                "periodEnd": None,
                "avatarUrl": f"/avatars/{_object_id(token.user)}.svg",
                "orgs": [
                    {
                        "type": "org",
                        "id": _object_id(f"org:{org}"),
                        "name": org,
                        "fullname": org.title(),
                        "isEnterprise": False,
                        "canPay": False,
                        "avatarUrl": f"/avatars/{_object_id(org)}.svg",
                        "roleInOrg": "write" if token.role == "write" else "read",
                    }
                    for org in token.orgs
                ],
                "auth": {"type": "access_token", "accessToken": access_token},
            }
        )

    # ---- /api/models ---------------------------------------------------------------------

    def _model_payload(
        self, repo: Repo, commit: Commit, *, blobs: bool, security: bool
    ) -> dict[str, Any]:
        files = commit.files.values()
        siblings: list[dict[str, Any]] = []
        for f in files:
            sibling: dict[str, Any] = {"rfilename": f.path}
            if blobs:
                sibling["blobId"] = f.blob_id
                sibling["size"] = f.size
                if f.is_lfs:
                    sibling["lfs"] = {
                        "sha256": f.sha256,
                        "size": f.size,
                        "pointerSize": len(f.lfs_pointer),
                    }
            siblings.append(sibling)
        card = commit.card_data
        payload: dict[str, Any] = {
            "_id": _object_id(repo.repo_id),
            "id": repo.repo_id,
            "modelId": repo.repo_id,
            "author": repo.author,
            "sha": commit.sha,
            "lastModified": commit.date,
            "createdAt": repo.created_at,
            "private": repo.private,
            "gated": repo.gated,
            "disabled": repo.disabled,
            "downloads": repo.downloads,
            "likes": repo.likes,
            "library_name": repo.library_name,
            "pipeline_tag": repo.pipeline_tag,
            "tags": fixtures.model_tags(repo, commit),
            "config": fixtures.config_subset(commit),
            "cardData": card,
            "transformersInfo": dict(repo.transformers_info) if repo.transformers_info else None,
            "siblings": siblings,
            "spaces": [],
        }
        if commit.safetensors:
            payload["safetensors"] = {
                "parameters": dict(commit.safetensors),
                "total": sum(commit.safetensors.values()),
            }
        if blobs:
            payload["usedStorage"] = sum(f.size for f in files)
        if security:
            payload["securityRepoStatus"] = {"scansDone": True, "filesWithIssues": []}
        return payload

    def _expanded(self, repo: Repo, commit: Commit, expand: list[str]) -> dict[str, Any]:
        full = self._model_payload(repo, commit, blobs=False, security=False)
        full["downloadsAllTime"] = repo.downloads * 6
        full["trendingScore"] = 0
        full["usedStorage"] = sum(f.size for f in commit.files.values())
        base = commit.card_data.get("base_model")
        if base:
            relation = "quantized" if "quantization_config" in commit.config else "finetune"
            full["baseModels"] = {"relation": relation, "models": [{"id": base}]}
        out = {"_id": full["_id"], "id": full["id"]}
        for key in expand:
            if key in full:
                out[key] = full[key]
        return out

    async def model_info(
        self, request: Request, namespace: str, name: str, revision: str | None = None
    ) -> Response:
        found = self._visible_repo(request, namespace, name)
        if isinstance(found, Response):
            return found
        repo, _ = found
        commit = self._commit(repo, revision or "main")
        if isinstance(commit, Response):
            return commit
        query = parse_qs(request.url.query)
        expand = query.get("expand", []) + query.get("expand[]", [])
        blobs = _flag(request.query_params.get("blobs"))
        security = _flag(request.query_params.get("securityStatus"))
        if expand:
            unknown = sorted(set(expand) - EXPAND_MODEL_PROPERTIES)
            if unknown:
                allowed = ", ".join(sorted(EXPAND_MODEL_PROPERTIES))
                return hub_error(400, f'"expand" must be one of [{allowed}], got {unknown}')
            if blobs or security:
                return hub_error(400, "expand cannot be combined with blobs or securityStatus")
            return JSONResponse(self._expanded(repo, commit, expand))
        return JSONResponse(self._model_payload(repo, commit, blobs=blobs, security=security))

    async def list_models(self, request: Request) -> Response:
        principal = self._principal(request)
        query = parse_qs(request.url.query)
        params = request.query_params
        search = (params.get("search") or "").lower()
        author = params.get("author")
        filters = query.get("filter", [])
        pipeline = params.get("pipeline_tag")
        gated = params.get("gated")
        results: list[dict[str, Any]] = []
        for repo in self.state.repos.values():
            if repo.private and not (principal and principal.may_read(repo.repo_id)):
                continue
            commit = self.state.resolve(repo, "main")
            if commit is None:
                continue
            tags = fixtures.model_tags(repo, commit)
            if search and search not in repo.repo_id.lower():
                continue
            if author and repo.author != author:
                continue
            if any(f not in tags and f != repo.library_name for f in filters):
                continue
            if pipeline and repo.pipeline_tag != pipeline:
                continue
            if gated is not None and bool(repo.gated) != _flag(gated):
                continue
            results.append(self._summary(repo, commit, query))
        sort = params.get("sort") or "downloads"
        key = {"likes": "likes", "createdAt": "createdAt", "lastModified": "lastModified"}.get(
            sort, "downloads"
        )
        results.sort(key=lambda item: item.get(key) or 0, reverse=True)
        limit = params.get("limit")
        if limit and limit.isdigit():
            results = results[: int(limit)]
        return JSONResponse(results)

    def _summary(self, repo: Repo, commit: Commit, query: dict[str, list[str]]) -> dict[str, Any]:
        expand = query.get("expand", []) + query.get("expand[]", [])
        if expand:
            return self._expanded(repo, commit, expand)
        full = self._model_payload(repo, commit, blobs=False, security=False)
        keys = [
            "_id",
            "id",
            "likes",
            "downloads",
            "private",
            "pipeline_tag",
            "library_name",
            "tags",
            "createdAt",
            "modelId",
        ]
        if _flag(_first(query, "full")):
            keys += ["author", "gated", "disabled", "lastModified", "sha", "siblings"]
        if _flag(_first(query, "config")):
            keys.append("config")
        if _flag(_first(query, "cardData")):
            keys.append("cardData")
        return {k: full[k] for k in keys if k in full}

    async def auth_check(
        self, request: Request, namespace: str, name: str, write: str | None
    ) -> Response:
        found = self._visible_repo(request, namespace, name)
        if isinstance(found, Response):
            return found
        repo, principal = found
        gate = self._gate(repo, principal)
        if gate is not None:
            return gate
        if write:
            token = principal.token if principal else None
            if token is None:
                return hub_error(401, "You must be authenticated to write to this repository.")
            owner = repo.author == token.user or repo.author in token.orgs
            if token.role not in {"write", "fineGrained"} or not owner:
                return hub_error(403, "You don't have the rights to write to this repository.")
        return JSONResponse({"repo": repo.repo_id, "gated": repo.gated, "access": "granted"})

    # ---- tree / paths-info / refs / commits ---------------------------------------------

    def _entries(self, repo: Repo, commit: Commit, *, expand: bool) -> dict[str, dict[str, Any]]:
        """Every file and directory of the commit's tree, by path."""
        entries: dict[str, dict[str, Any]] = {}
        directories: dict[str, list[str]] = {}
        for path, file in commit.files.items():
            entry: dict[str, Any] = {
                "type": "file",
                "oid": file.blob_id,
                "size": file.size,
                "path": path,
            }
            if file.is_lfs:
                entry["lfs"] = {
                    "oid": file.sha256,
                    "size": file.size,
                    "pointerSize": len(file.lfs_pointer),
                }
            if expand:
                last = self._last_commit(repo, commit, path)
                entry["lastCommit"] = {"id": last.sha, "title": last.title, "date": last.date}
                entry["securityFileStatus"] = {
                    "status": "safe",
                    "avScan": {"virusFound": False, "virusNames": None},
                    "pickleImportScan": None,
                }
            entries[path] = entry
            parts = path.split("/")
            for depth in range(1, len(parts)):
                directories.setdefault("/".join(parts[:depth]), []).append(file.blob_id)
        for path, oids in directories.items():
            oid = hashlib.sha1("".join(sorted(oids)).encode(), usedforsecurity=False).hexdigest()
            entries[path] = {"type": "directory", "oid": oid, "size": 0, "path": path}
            if expand:
                last = commit
                entries[path]["lastCommit"] = {
                    "id": last.sha,
                    "title": last.title,
                    "date": last.date,
                }
        return entries

    @staticmethod
    def _last_commit(repo: Repo, commit: Commit, path: str) -> Commit:
        current = commit
        while current.parent is not None:
            parent = repo.commits[current.parent]
            before = parent.files.get(path)
            if before is None or before.blob_id != current.files[path].blob_id:
                break
            current = parent
        return current

    async def tree(
        self, request: Request, namespace: str, name: str, revision: str, sub: str | None
    ) -> Response:
        found = self._visible_repo(request, namespace, name)
        if isinstance(found, Response):
            return found
        repo, _ = found
        commit = self._commit(repo, revision)
        if isinstance(commit, Response):
            return commit
        base = (sub or "").strip("/")
        recursive = _flag(request.query_params.get("recursive"))
        entries = self._entries(repo, commit, expand=_flag(request.query_params.get("expand")))
        if base and (base not in entries or entries[base]["type"] != "directory"):
            return hub_error(
                404, f"Entry not found: {base}", "EntryNotFound", {"X-Repo-Commit": commit.sha}
            )
        prefix = f"{base}/" if base else ""
        listed = []
        for path, entry in entries.items():
            if not path.startswith(prefix):
                continue
            relative = path[len(prefix) :]
            if recursive or "/" not in relative:
                listed.append(entry)
        listed.sort(key=lambda e: (e["type"] != "directory", e["path"]))
        return JSONResponse(listed, headers={"X-Repo-Commit": commit.sha})

    async def paths_info(
        self, request: Request, namespace: str, name: str, revision: str
    ) -> Response:
        found = self._visible_repo(request, namespace, name)
        if isinstance(found, Response):
            return found
        repo, _ = found
        commit = self._commit(repo, revision)
        if isinstance(commit, Response):
            return commit
        body = await request.body()
        paths: list[str]
        expand = False
        if request.headers.get("content-type", "").startswith("application/json"):
            data = json.loads(body or b"{}")
            paths = list(data.get("paths", []))
            expand = bool(data.get("expand", False))
        else:
            form = parse_qs(body.decode())
            paths = form.get("paths", [])
            expand = _flag(_first(form, "expand"))
        entries = self._entries(repo, commit, expand=expand)
        return JSONResponse([entries[p.strip("/")] for p in paths if p.strip("/") in entries])

    async def refs(self, request: Request, namespace: str, name: str) -> Response:
        found = self._visible_repo(request, namespace, name)
        if isinstance(found, Response):
            return found
        repo, _ = found

        def ref(kind: str, ref_name: str, sha: str) -> dict[str, str]:
            return {"name": ref_name, "ref": f"refs/{kind}/{ref_name}", "targetCommit": sha}

        payload: dict[str, Any] = {
            "branches": [ref("heads", n, s) for n, s in self.state.branches[repo.repo_id].items()],
            "converts": [],
            "tags": [ref("tags", n, s) for n, s in self.state.tags[repo.repo_id].items()],
        }
        if _flag(request.query_params.get("include_prs")):
            payload["pullRequests"] = [
                {"name": f"refs/pr/{num}", "ref": f"refs/pr/{num}", "targetCommit": sha}
                for num, sha in sorted(repo.pull_requests.items())
            ]
        return JSONResponse(payload)

    async def commits(self, request: Request, namespace: str, name: str, revision: str) -> Response:
        found = self._visible_repo(request, namespace, name)
        if isinstance(found, Response):
            return found
        repo, _ = found
        commit = self._commit(repo, revision)
        if isinstance(commit, Response):
            return commit
        formatted = "formatted" in parse_qs(request.url.query).get("expand[]", [])
        items = []
        current: Commit | None = commit
        while current is not None:
            item: dict[str, Any] = {
                "id": current.sha,
                "title": current.title,
                "message": current.message,
                "authors": [{"user": current.author, "avatar": None}],
                "date": current.date,
            }
            if formatted:
                item["formatted"] = {
                    "title": f"<p>{current.title}</p>",
                    "message": f"<p>{current.message}</p>",
                }
            items.append(item)
            current = repo.commits[current.parent] if current.parent else None
        return JSONResponse(items)

    # ---- file download -------------------------------------------------------------------

    async def resolve(
        self, request: Request, namespace: str, name: str, revision: str, path: str
    ) -> Response:
        found = self._visible_repo(request, namespace, name)
        if isinstance(found, Response):
            return found
        repo, principal = found
        gate = self._gate(repo, principal)
        if gate is not None:
            return gate
        if revision == "refs" and (split := _UNENCODED_REF.fullmatch(path)):
            # An unencoded "refs/pr/1"-style revision: the library always encodes it, curl may not.
            revision, path = f"refs/{split.group(1)}", split.group(2)
        commit = self._commit(repo, revision)
        if isinstance(commit, Response):
            return commit
        file = commit.files.get(path)
        if file is None:
            return hub_error(404, "Entry not found", "EntryNotFound", {"X-Repo-Commit": commit.sha})
        headers = _file_headers(file, commit)
        if file.is_lfs and self.state.lfs_redirect:
            host = _other_loopback(request.url.hostname or "127.0.0.1")
            port = request.url.port
            location = f"http://{host}{f':{port}' if port else ''}/_cdn/lfs/{file.sha256}"
            headers["Location"] = location
            headers["Content-Length"] = "0"
            return Response(b"", status_code=302, headers=headers)
        return self._serve_bytes(request, file, headers)

    async def cdn(self, request: Request, sha256: str) -> Response:
        """Stand-in for the LFS CDN: serves blobs by sha256, no auth (like a signed URL)."""
        file = self.state.lfs_by_sha256.get(sha256)
        if file is None:
            return JSONResponse({"error": "NoSuchKey"}, status_code=404)
        headers = {
            "ETag": f'"{file.sha256}"',
            "Accept-Ranges": "bytes",
            "Content-Type": "application/octet-stream",
        }
        return self._serve_bytes(request, file, headers)

    @staticmethod
    def _serve_bytes(request: Request, file: RepoFile, headers: dict[str, str]) -> Response:
        content = file.content
        status = 200
        range_header = request.headers.get("range")
        if range_header is not None:
            span = _parse_range(range_header, len(content))
            if span is None:
                headers["Content-Range"] = f"bytes */{len(content)}"
                return Response(b"", status_code=416, headers=headers)
            start, end = span
            content = content[start : end + 1]
            headers["Content-Range"] = f"bytes {start}-{end}/{file.size}"
            status = 206
        headers["Content-Length"] = str(len(content))
        body = b"" if request.method == "HEAD" else content
        return Response(body, status_code=status, headers=headers)

    # ---- /_sim knobs ---------------------------------------------------------------------

    async def _json(self, request: Request) -> dict[str, Any]:
        body = await request.body()
        if not body:
            return {}
        data = json.loads(body)
        if not isinstance(data, dict):
            raise ValueError("expected a JSON object")
        return data

    async def sim_health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok", "repos": sorted(self.state.repos)})

    async def sim_state(self, request: Request) -> Response:
        return JSONResponse(self.state.snapshot())

    async def sim_reset(self, request: Request) -> Response:
        self.state.reset()
        self.state.requests.clear()
        return JSONResponse(self.state.snapshot())

    async def sim_grants(self, request: Request) -> Response:
        data = await self._json(request)
        token, repo_id = data.get("token"), data.get("repo_id")
        if token not in self.state.tokens or not isinstance(repo_id, str):
            return JSONResponse({"error": "need a known 'token' and a 'repo_id'"}, status_code=400)
        ts = self.state.tokens[token]
        if data.get("access", True):
            ts.allow.add(repo_id)
            ts.deny.discard(repo_id)
        else:
            ts.allow.discard(repo_id)
            if repo_id != "*":
                ts.deny.add(repo_id)
        return JSONResponse(self.state.snapshot()["tokens"][token])

    async def sim_add_token(self, request: Request) -> Response:
        data = await self._json(request)
        token = data.get("token")
        user = data.get("user")
        if not isinstance(token, str) or not isinstance(user, str):
            return JSONResponse({"error": "need 'token' and 'user'"}, status_code=400)
        role = data.get("role", "read")
        if role not in {"read", "write", "fineGrained"}:
            return JSONResponse({"error": f"bad role {role!r}"}, status_code=400)
        record = Token(
            token=token,
            user=user,
            fullname=data.get("fullname", user),
            email=data.get("email"),
            role=role,
            display_name=data.get("display_name", f"{user}-token"),
            created_at=data.get("created_at", "2025-06-01T00:00:00.000Z"),
            grants=frozenset(data.get("grants", [])),
            orgs=tuple(data.get("orgs", [])),
        )
        self.state.tokens[token] = TokenState(token=record, allow=set(record.grants))
        return JSONResponse(self.state.snapshot()["tokens"][token], status_code=201)

    async def sim_revoke_token(self, request: Request, token: str) -> Response:
        removed = self.state.tokens.pop(token, None)
        return JSONResponse({"revoked": removed is not None})

    async def sim_faults(self, request: Request) -> Response:
        if request.method == "DELETE":
            self.state.faults = Faults()
        elif request.method == "POST":
            data = await self._json(request)
            known = set(Faults.__dataclass_fields__)
            unknown = sorted(set(data) - known)
            if unknown:
                return JSONResponse({"error": f"unknown fault fields {unknown}"}, status_code=400)
            faults = Faults(**data)
            if faults.path_regex:
                re.compile(faults.path_regex)
            self.state.faults = faults
        return JSONResponse(asdict(self.state.faults))

    async def sim_refs(self, request: Request) -> Response:
        data = await self._json(request)
        repo = self.state.repos.get(str(data.get("repo_id")))
        if repo is None:
            return JSONResponse({"error": "unknown repo_id"}, status_code=400)
        if "branch" in data:
            table, ref_name = self.state.branches[repo.repo_id], str(data["branch"])
        elif "tag" in data:
            table, ref_name = self.state.tags[repo.repo_id], str(data["tag"])
        else:
            return JSONResponse({"error": "need 'branch' or 'tag'"}, status_code=400)
        target = data.get("target")
        if target is None:
            if table is self.state.branches[repo.repo_id] and ref_name == "main":
                return JSONResponse({"error": "cannot delete main"}, status_code=400)
            table.pop(ref_name, None)
        else:
            commit = self.state.resolve(repo, str(target))
            if commit is None:
                return JSONResponse({"error": f"unknown target {target!r}"}, status_code=400)
            table[ref_name] = commit.sha
        return JSONResponse(
            {"branches": self.state.branches[repo.repo_id], "tags": self.state.tags[repo.repo_id]}
        )

    async def sim_options(self, request: Request) -> Response:
        data = await self._json(request)
        if "lfs_redirect" in data:
            self.state.lfs_redirect = bool(data["lfs_redirect"])
        return JSONResponse({"lfs_redirect": self.state.lfs_redirect})

    async def sim_requests(self, request: Request) -> Response:
        if request.method == "DELETE":
            self.state.requests.clear()
            return JSONResponse([])
        return JSONResponse(list(self.state.requests))


def create_app(
    repos: Mapping[str, Repo] | None = None, tokens: Mapping[str, Token] | None = None
) -> HubApp:
    """An app serving ``repos`` (default: all fixtures) with ``tokens`` (default table)."""
    return HubApp(
        HubState(
            repos if repos is not None else fixtures.repos(),
            copy.copy(tokens) if tokens is not None else fixtures.tokens(),
        )
    )

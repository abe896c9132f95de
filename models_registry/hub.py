"""All Hugging Face Hub access, through huggingface_hub, with timeouts and clear errors.

Only HF_ENDPOINT differs between the real Hub and the local one used in tests and the demo.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any, TypeVar

import httpx2
from django.conf import settings
from huggingface_hub import HfApi
from huggingface_hub.errors import (
    EntryNotFoundError,
    GatedRepoError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.utils import _http as hf_http
from prometheus_client import Counter

from portal.errors import DomainError

# Every Hub failure a caller sees, by its kind (the HubError subclass): HubUnavailable is the
# Hub's or the network's fault, the others are answers about a repository or a token.
_E = TypeVar("_E", bound="HubError")
HUB_ERRORS = Counter(
    "portal_hub_errors_total",
    "Hugging Face Hub calls of this process that failed, by the kind of error reported.",
    ("error",),
)


def _counted(error: _E) -> _E:
    HUB_ERRORS.labels(error=type(error).__name__).inc()
    return error


class HubError(DomainError):
    """The Hub refused or failed; the message says what the user can do about it."""

    status_code = 400
    code = "hub_error"


class RepoNotFound(HubError):
    status_code = 404
    code = "repo_not_found"


class GatedNoAccess(HubError):
    status_code = 403
    code = "gated_no_access"


class RevisionNotFound(HubError):
    status_code = 404
    code = "revision_not_found"


class InvalidToken(HubError):
    status_code = 400
    code = "invalid_hub_token"


class HubUnavailable(HubError):
    status_code = 503
    code = "hub_unavailable"


def _repo_not_found(repo_id: str) -> RepoNotFound:
    return RepoNotFound(
        f"no model '{repo_id}' on the Hub (or it is private and the tenant's token cannot see it)",
        field="repo_id",
    )


_configured = threading.Lock()
_installed_timeout: float | None = None


def _install_client_with_timeout() -> None:
    """huggingface_hub's default HTTP client never times out; a slow Hub must not hang a request.

    Re-installed when the configured timeout changes (set_client_factory also drops the
    library's cached session).
    """
    global _installed_timeout
    timeout = float(settings.HF_HUB_TIMEOUT_SECONDS)
    with _configured:
        if _installed_timeout == timeout:
            return

        def factory() -> httpx2.Client:
            return httpx2.Client(
                event_hooks={"request": [hf_http.hf_request_event_hook]},
                follow_redirects=True,
                timeout=httpx2.Timeout(timeout),
            )

        hf_http.set_client_factory(factory)
        _installed_timeout = timeout


class HubClient:
    """A tenant's view of the Hub: authenticated with its token when it has one."""

    def __init__(self, token: str | None = None) -> None:
        _install_client_with_timeout()
        self.endpoint = settings.HF_ENDPOINT
        # token=False stops the library from falling back to a token saved on this machine.
        self._token: str | bool = token or False
        self._api = HfApi(endpoint=self.endpoint, token=self._token)

    def _translate(self, error: Exception, repo_id: str = "", revision: str = "") -> HubError:
        return _counted(self._classify(error, repo_id, revision))

    def _classify(self, error: Exception, repo_id: str, revision: str) -> HubError:
        if isinstance(error, GatedRepoError):  # a subclass of RepositoryNotFoundError: first
            return GatedNoAccess(
                f"'{repo_id}' is gated and the tenant's Hub token has no access to it: request "
                "access on the Hub, or set a token of an account that has it",
                field="repo_id",
            )
        if isinstance(error, RepositoryNotFoundError):
            return _repo_not_found(repo_id)
        if isinstance(error, RevisionNotFoundError):
            return RevisionNotFound(
                f"'{repo_id}' has no branch, tag or commit '{revision}'", field="revision"
            )
        if isinstance(error, EntryNotFoundError):
            return HubError(f"'{repo_id}' at {revision[:12]} has no such file", field="repo_id")
        if isinstance(error, OfflineModeIsEnabled):
            return HubUnavailable("Hub access is switched off here (HF_HUB_OFFLINE=1)")
        if isinstance(error, httpx2.TimeoutException):
            return HubUnavailable(
                f"the Hub at {self.endpoint} did not answer within "
                f"{settings.HF_HUB_TIMEOUT_SECONDS:g} s; try again later"
            )
        if isinstance(error, httpx2.TransportError):
            return HubUnavailable(f"cannot reach the Hub at {self.endpoint}; try again later")
        if isinstance(error, HfHubHTTPError):
            status = error.response.status_code if error.response is not None else 0
            if status == 401:
                return InvalidToken("the Hub rejected the tenant's token (401)", field="token")
            if status >= 500 or status == 429:
                return HubUnavailable(f"the Hub answered {status}; try again later")
            if status == 404 and repo_id:
                # A 404 without the Hub's X-Error-Code: the URL names no repository at all
                # (an id such as "0" that no route of the Hub serves). For the user this is
                # the same as any other missing repository.
                return _repo_not_found(repo_id)
            return HubError(f"the Hub answered {status}", field="repo_id")
        raise error

    def whoami(self) -> dict[str, Any]:
        try:
            return dict(self._api.whoami(token=self._token))
        except HfHubHTTPError as error:
            if error.response is not None and error.response.status_code == 401:
                raise _counted(
                    InvalidToken(
                        "the Hub does not accept this token (invalid or revoked)", field="token"
                    )
                ) from None
            raise self._translate(error) from None
        except Exception as error:
            raise self._translate(error) from None

    def model_info(self, repo_id: str, revision: str) -> Any:
        try:
            return self._api.model_info(
                repo_id,
                revision=revision,
                files_metadata=True,
                timeout=float(settings.HF_HUB_TIMEOUT_SECONDS),
            )
        except Exception as error:
            raise self._translate(error, repo_id, revision) from None

    def has_access(self, repo_id: str) -> bool:
        """auth_check: True when the token can download the repository's files."""
        try:
            self._api.auth_check(repo_id, token=self._token)
        except GatedRepoError:
            return False
        except Exception as error:
            raise self._translate(error, repo_id) from None
        return True

    def read_json(self, repo_id: str, commit_sha: str, filename: str) -> dict[str, Any] | None:
        """A JSON file of the commit (downloaded into the portal's small metadata cache)."""
        try:
            path = self._api.hf_hub_download(
                repo_id,
                filename,
                revision=commit_sha,
                cache_dir=settings.HF_METADATA_CACHE,
                etag_timeout=float(settings.HF_HUB_TIMEOUT_SECONDS),
            )
        except LocalEntryNotFoundError as error:
            # Raised when the Hub could not be asked (it subclasses EntryNotFoundError, so it
            # must be caught first): an outage, not a missing file.
            cause = error.__cause__ or error.__context__
            if isinstance(cause, Exception) and not isinstance(cause, LocalEntryNotFoundError):
                raise self._translate(cause, repo_id, commit_sha) from None
            raise _counted(
                HubUnavailable(f"could not fetch {filename} from the Hub at {self.endpoint}")
            ) from None
        except EntryNotFoundError:
            return None
        except Exception as error:
            raise self._translate(error, repo_id, commit_sha) from None
        data = json.loads(Path(path).read_text())
        return data if isinstance(data, dict) else None

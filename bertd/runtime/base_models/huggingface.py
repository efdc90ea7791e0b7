"""Pulling from the Hugging Face Hub or a mirror of it (HF_ENDPOINT), file by file, resumable.

Why not `snapshot_download(local_dir=...)`: in huggingface_hub 2.x, `hf_hub_download` streams each
file into a process-unique `<hash>.<etag>.<random>.incomplete` under `local_dir/.cache/huggingface/
download/` and deletes it when the call fails (huggingface_hub PR #4228), so nothing survives for
a later attempt to resume; its `http_get` retries a dropped connection only within one call (five
tries, one second apart), and as it reads in 10 MiB chunks (`iter_bytes(chunk_size=10 MiB)`, whose
unfinished chunk is lost with the error) its Range starts at the last whole 10 MiB, so a smaller
file starts over. It also writes refs into the global cache (~/.cache/huggingface/hub) even
with `local_dir`, and when the Hub cannot be reached and `local_dir` is not empty it returns the
folder as it is, with only a logged warning. So this module uses the library for the API call, the
URLs, the HTTP client (`get_session()`: proxies, offline mode, `set_client_factory`), the headers
(token, user agent) and its error classes, and does the byte transfer itself: plain HTTP from the
`resolve` URLs, never Xet storage (hf_xet), whose servers a mirror does not stand in for.

Each file is written to `<file>.incomplete` inside the `.partial` folder and fetched on with
`Range: bytes=<size on disk>-`; it is checked against the size and hash the Hub lists for it
(sha256 for LFS files, the git blob sha1 for the others) before it counts as done."""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path

from bertd.runtime.base_models.hubs import (
    DEFAULT_HF_ENDPOINT,
    HF_MIRROR_EXAMPLE,
    BaseModelDownloadError,
    Cancelled,
    Transient,
    first_line,
)
from bertd.runtime.base_models.partial import (
    INCOMPLETE_SUFFIX,
    PartialState,
    Plan,
    RemoteFile,
    fsync,
    git_blob_sha1,
    sha256_of,
)
from bertd.runtime.base_models.pull import Pull


class HuggingFaceClient:
    def __init__(self, pull: Pull) -> None:
        self.pull = pull

    def check_usable(self) -> None:
        from huggingface_hub import constants

        if constants.is_offline_mode():
            raise self.offline_error()

    def offline_error(self) -> BaseModelDownloadError:
        return self.pull.error(
            "offline", "offline mode is on for this process (HF_HUB_OFFLINE=1)",
            "unset HF_HUB_OFFLINE (or set it to 0) in bertd's environment to pull base models",
        )

    def close(self) -> None:
        pass

    # -- the plan ------------------------------------------------------------------------------

    def plan(self) -> Plan:
        from huggingface_hub import HfApi

        pull = self.pull
        api = HfApi(endpoint=pull.endpoint, token=pull.token, library_name="bertd")
        info = api.model_info(pull.name, revision=pull.revision, files_metadata=True, timeout=self.request_timeout())
        if not info.sha:
            raise pull.error("server", "the hub's answer has no commit sha", "check that the endpoint is a Hugging Face Hub")
        siblings = {sibling.rfilename: sibling for sibling in info.siblings or []}
        files = []
        for path in pull.select(list(siblings)):
            sibling = siblings[path]
            lfs = sibling.lfs
            files.append(RemoteFile(
                path=path,
                size=lfs.size if lfs is not None else sibling.size,
                sha256=lfs.sha256 if lfs is not None else None,
                blob_id=sibling.blob_id if lfs is None else None,
            ))
        plan = Plan(info.sha, files)
        for remote in plan.files:
            if remote.size is None:  # a mirror that does not list sizes: ask per file
                self.head(plan.commit, remote)
        return plan

    def request_timeout(self) -> float:
        from huggingface_hub import constants

        return float(self.pull.timeout if self.pull.timeout is not None else constants.HF_HUB_DOWNLOAD_TIMEOUT)

    def url(self, commit: str, path: str) -> str:
        from huggingface_hub import hf_hub_url

        return hf_hub_url(self.pull.name, path, revision=commit, endpoint=self.pull.endpoint)

    def head(self, commit: str, remote: RemoteFile) -> None:
        from huggingface_hub import get_hf_file_metadata

        metadata = get_hf_file_metadata(self.url(commit, remote.path), token=self.pull.token,
                                        timeout=self.request_timeout(), library_name="bertd",
                                        endpoint=self.pull.endpoint)
        remote.size = metadata.size
        etag = (metadata.etag or "").lower()
        if re.fullmatch(r"[0-9a-f]{64}", etag):  # LFS files: the sha256 of the content
            remote.sha256 = etag
        elif re.fullmatch(r"[0-9a-f]{40}", etag) and remote.sha256 is None:  # git files: the blob sha1
            remote.blob_id = etag

    # -- the files -----------------------------------------------------------------------------

    def fetch_all(self, partial: Path, plan: Plan, state: PartialState) -> None:
        for remote in plan.files:
            self.pull.check_cancel()
            self.fetch(partial, remote, state)

    def fetch(self, partial: Path, remote: RemoteFile, state: PartialState) -> None:
        """Bring one file to completion in the `.partial` folder, resuming what is there."""
        progress = self.pull.progress
        target = partial / remote.path
        if remote.path in state.complete and target.is_file():
            return
        incomplete = target.with_name(target.name + INCOMPLETE_SUFFIX)
        target.parent.mkdir(parents=True, exist_ok=True)
        offset = incomplete.stat().st_size if incomplete.is_file() else 0
        if remote.size is not None and offset > remote.size:
            progress.add(-offset)
            incomplete.unlink()
            offset = 0
        if remote.size is None or offset < remote.size:
            self.transfer(remote, incomplete, offset, state.data["commit"])
        size = incomplete.stat().st_size
        if remote.size is not None and size != remote.size:
            raise Transient("network", f"{remote.path} ended at {size} of {remote.size} bytes")
        if not verified(incomplete, remote, size):
            progress.add(-size)
            incomplete.unlink()
            raise Transient("corrupt", f"{remote.path} does not match the hash the hub lists for it")
        fsync(incomplete)
        os.replace(incomplete, target)
        state.mark_complete(remote.path)

    def transfer(self, remote: RemoteFile, incomplete: Path, offset: int, commit: str) -> None:
        """GET the file from `offset` on (a Range request) and append it to `incomplete`."""
        from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

        pull, progress = self.pull, self.pull.progress
        headers = build_hf_headers(token=pull.token, library_name="bertd")
        # Sizes and ranges are of the bytes on disk: no gzip of text files.
        headers["Accept-Encoding"] = "identity"
        if offset:
            headers["Range"] = f"bytes={offset}-"
        url = self.url(commit, remote.path)
        with get_session().stream("GET", url, headers=headers, timeout=self.request_timeout(),
                                  follow_redirects=True) as response:
            if response.status_code == 416 and offset:
                # What is on disk does not fit the file the server has: start it over.
                progress.add(-offset)
                incomplete.unlink()
                raise Transient("corrupt", f"the hub refused to resume {remote.path} at byte {offset}")
            if response.status_code >= 400:
                response.read()
                hf_raise_for_status(response)
            if offset and response.status_code == 206:
                content_range = response.headers.get("Content-Range", "")
                if not content_range.startswith(f"bytes {offset}-"):
                    raise Transient("corrupt", f"the hub resumed {remote.path} at the wrong place ({content_range!r})")
                mode = "ab"
            else:
                if offset:  # the server ignored the Range header: the whole file comes again
                    progress.add(-offset)
                mode = "wb"
            with incomplete.open(mode) as out:
                for chunk in response.iter_bytes():
                    if pull.should_cancel():
                        raise Cancelled()
                    if not chunk:
                        continue
                    out.write(chunk)
                    pull.received_this_try = True
                    progress.add(len(chunk))

    # -- errors --------------------------------------------------------------------------------

    def classify(self, error: BaseException) -> BaseModelDownloadError | Transient:
        import httpx2
        from huggingface_hub.errors import (
            GatedRepoError,
            HfHubHTTPError,
            OfflineModeIsEnabled,
            RemoteEntryNotFoundError,
            RepositoryNotFoundError,
            RevisionNotFoundError,
        )

        pull = self.pull
        if isinstance(error, OfflineModeIsEnabled):
            return self.offline_error()
        if isinstance(error, GatedRepoError):
            return pull.error("gated", "the repository is gated",
                              f"accept its terms on {pull.endpoint}/{pull.name} and set HF_TOKEN to a token of that account")
        if isinstance(error, RepositoryNotFoundError):
            return pull.error(
                "not_found", "no such repository (or it is private and no valid token was sent)",
                f"check the name on {DEFAULT_HF_ENDPOINT}/models (ids look like 'google-bert/bert-base-chinese'), set "
                f"HF_TOKEN for a private repository, or set HF_ENDPOINT to a mirror such as {HF_MIRROR_EXAMPLE} if "
                f"{pull.endpoint} is not the hub you meant",
            )
        if isinstance(error, RevisionNotFoundError):
            return pull.error("revision_not_found", f"the repository has no revision {pull.revision!r}",
                              "use a branch, tag or commit that exists, or leave the revision empty for main")
        if isinstance(error, RemoteEntryNotFoundError):
            return pull.error("server", f"a file the repository lists is not served ({first_line(error)})",
                              "try again later")
        if isinstance(error, HfHubHTTPError):
            status = error.response.status_code if error.response is not None else None
            if status == 401:
                return pull.error("unauthorized", "the hub refused the token (HTTP 401)",
                                  "check HF_TOKEN (a read token of an account with access to the repository)")
            if status == 403:
                return pull.error("forbidden", "access is forbidden (HTTP 403)",
                                  "check that the token's account may read this repository")
            if status is not None and (status >= 500 or status in (408, 429)):
                return Transient("server", f"the hub answered HTTP {status}")
            return pull.error("server", f"the hub answered HTTP {status} ({first_line(error)})")
        if isinstance(error, httpx2.TransportError):
            return Transient("network", f"{type(error).__name__}: {first_line(error) or 'connection failed'}")
        if isinstance(error, ValueError):  # e.g. an HTML page (a proxy or captive portal) where JSON was due
            return pull.error("server", f"its answer is not a hub API answer ({first_line(error)})",
                              f"check that {pull.endpoint} is a Hugging Face Hub or a mirror of it (HF_ENDPOINT)")
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
            return pull.error("disk", f"the disk is full ({error})",
                              f"free space in {pull.base_models_dir}; pulling again resumes")
        if isinstance(error, OSError) and error.errno is not None:
            return pull.error("disk", f"cannot write the files ({error})")
        raise error


def verified(file: Path, remote: RemoteFile, size: int) -> bool:
    if remote.sha256 is not None:
        return sha256_of(file) == remote.sha256
    if remote.blob_id is not None:
        return git_blob_sha1(file, size) == remote.blob_id
    return True

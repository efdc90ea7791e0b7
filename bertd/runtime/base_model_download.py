"""Pulling a base model from the Hugging Face Hub (or a mirror of it) into BASE_MODELS_DIR.

`download_base_model` is synchronous and blocking: run it in a thread (`asyncio.to_thread`), never
on the event loop. It fetches only what a BERT classifier needs (config.json, the tokenizer files,
and model.safetensors or its shards, pytorch_model.bin only when there are no safetensors; never
TF, Flax, ONNX or msgpack weights) into `<BASE_MODELS_DIR>/<name>.partial/` (`org/name` keeps its
nesting), checks the result (`check_base_model`), then renames the folder to its final name.

Resuming: each file is written to `<file>.incomplete` inside the `.partial` folder and fetched on
with `Range: bytes=<size on disk>-` after a dropped connection, a timeout, a 5xx, or a later pull
after a crash or a restart. Every file is checked against the size and hash the Hub lists for it
(sha256 for LFS files, the git blob sha1 for the others) before it counts as done. Files are
pinned to the commit the revision resolved to, kept in the `.partial` folder's state file; if the
revision has moved by a later pull, the `.partial` folder starts over.

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

Endpoint and token are read when the function is called, not when huggingface_hub is imported:
`endpoint` defaults to `HF_ENDPOINT` (e.g. https://hf-mirror.com), then https://huggingface.co;
`token` to `HF_TOKEN`, then what huggingface_hub finds itself (HUGGING_FACE_HUB_TOKEN, the token
saved by `hf auth login`). `HF_HUB_OFFLINE=1`, read by huggingface_hub at import, makes a pull fail
at once with a clear error.

ModelScope (source "modelscope") goes through ModelScope's own client, `modelscope_hub` (the
package `modelscope-hub`; the big `modelscope` package delegates its downloads to it): its file
listing (sizes, sha256) for the plan, then `HubApi.download_repo(local_dir=<the .partial folder>,
file_list=<the chosen files>)`, which keeps `<file>.incomplete` across calls and resumes it with a
Range request, retries by itself and checks each file's sha256. `endpoint` defaults to
MODELSCOPE_ENDPOINT, then https://www.modelscope.cn; `token` to MODELSCOPE_API_TOKEN (its client
also uses a `modelscope login`). Without `modelscope_hub` installed, such a pull fails with kind
"unsupported_source" and says what to install."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bertd.runtime.base_model_files import (
    CONFIG_FILE,
    PYTORCH_FILE,
    PYTORCH_INDEX,
    SAFETENSORS_FILE,
    SAFETENSORS_INDEX,
    SOURCE_FILE,
    TOKENIZER_FILES,
    BaseModelFileError,
    base_model_path,
    check_base_model,
    partial_path,
)

HUGGINGFACE = "huggingface"
MODELSCOPE = "modelscope"
DOWNLOAD_SOURCES = (HUGGINGFACE, MODELSCOPE)
DEFAULT_HF_ENDPOINT = "https://huggingface.co"
HF_MIRROR_EXAMPLE = "https://hf-mirror.com"
DEFAULT_MODELSCOPE_ENDPOINT = "https://www.modelscope.cn"

STATE_FILE = ".bertd-download.json"
LOCK_FILE = ".bertd-download.lock"
INCOMPLETE_SUFFIX = ".incomplete"
MAX_BACKOFF_SECONDS = 30.0

SAFETENSORS_SHARD = re.compile(r"^model-\d+-of-\d+\.safetensors$")
PYTORCH_SHARD = re.compile(r"^pytorch_model-\d+-of-\d+\.bin$")

MODELSCOPE_CLIENT_MISSING = (
    "ModelScope's client library is not installed (pip install modelscope-hub); or fetch the model "
    "by hand (modelscope download --model {name} --local_dir {target}) and it is listed as a local base model"
)

ProgressCallback = Callable[[int, int | None], None]
ShouldCancel = Callable[[], bool]


class BaseModelDownloadError(Exception):
    """A pull that did not complete. The message is one readable sentence naming the hub (with
    its endpoint), the repo id and the reason, then what to do. `kind` says which failure it was:

    invalid_name, unsupported_source, exists, busy, offline, not_found, gated, revision_not_found,
    unauthorized, forbidden, not_a_model, network, server, corrupt, broken, disk, cancelled.

    `retryable` is True where pulling again later may succeed (and resumes: the `.partial` folder
    is kept for network, server, corrupt, disk and cancelled)."""

    RETRYABLE_KINDS = frozenset({"busy", "network", "server", "corrupt", "disk", "cancelled"})

    def __init__(self, message: str, *, kind: str, hub: str, endpoint: str, repo_id: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.hub = hub
        self.endpoint = endpoint
        self.repo_id = repo_id

    @property
    def retryable(self) -> bool:
        return self.kind in self.RETRYABLE_KINDS


class _Transient(Exception):
    """A failure worth another try, with the reason to report if the tries run out."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


class _Cancelled(BaseException):  # noqa: N818 - a signal, not an error
    """Raised from inside a transfer when `should_cancel()` says so. A BaseException, so that a
    client library's retry loop (`except Exception`) lets it through, as it does KeyboardInterrupt."""


@dataclass
class _RemoteFile:
    path: str
    size: int | None
    sha256: str | None  # LFS files
    blob_id: str | None  # git blob sha1 (for non-LFS files)


@dataclass
class _Plan:
    commit: str
    files: list[_RemoteFile]

    @property
    def total(self) -> int | None:
        if any(remote.size is None for remote in self.files):
            return None
        return sum(remote.size or 0 for remote in self.files)


class _Progress:
    """Bytes done / total, passed to the callback at most once per `interval` (and always at the
    start and the end)."""

    def __init__(self, callback: ProgressCallback, interval: float) -> None:
        self._callback = callback
        self._interval = interval
        self._last = 0.0
        self.done = 0
        self.total: int | None = None

    def add(self, count: int) -> None:
        self.done = max(self.done + count, 0)
        self.emit()

    def emit(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._last >= self._interval:
            self._last = now
            self._callback(self.done, self.total)


@dataclass
class _State:
    """The `.partial` folder's state file: what the files in it belong to."""

    path: Path
    data: dict[str, Any] = field(default_factory=dict)

    def load(self) -> None:
        try:
            loaded = json.loads(self.path.read_text(encoding="utf-8"))
            self.data = loaded if isinstance(loaded, dict) else {}
        except (OSError, ValueError):
            self.data = {}

    def save(self) -> None:
        temporary = self.path.with_name(self.path.name + ".tmp")
        temporary.write_text(json.dumps(self.data, indent=1), encoding="utf-8")
        os.replace(temporary, self.path)

    @property
    def complete(self) -> set[str]:
        return set(self.data.get("complete", []))

    def mark_complete(self, path: str) -> None:
        self.data["complete"] = sorted(self.complete | {path})
        self.save()


def resolve_endpoint(source: str, endpoint: str | None = None) -> str:
    """The hub URL a pull from `source` uses: `endpoint`, else HF_ENDPOINT (MODELSCOPE_ENDPOINT for
    ModelScope), else the public hub. Read at call time."""
    if source == MODELSCOPE:
        domain = os.environ.get("MODELSCOPE_DOMAIN", "").strip()  # deprecated by ModelScope, still honoured
        chosen = (endpoint or os.environ.get("MODELSCOPE_ENDPOINT")
                  or (f"https://{domain}" if domain and "://" not in domain else domain) or DEFAULT_MODELSCOPE_ENDPOINT)
    else:
        chosen = endpoint or os.environ.get("HF_ENDPOINT") or DEFAULT_HF_ENDPOINT
    return chosen.strip().rstrip("/")


def hub_label(source: str) -> str:
    return "ModelScope" if source == MODELSCOPE else "the Hugging Face Hub"


def download_base_model(
    name: str,
    source: str,
    revision: str | None,
    base_models_dir: Path,
    on_progress: ProgressCallback,
    *,
    endpoint: str | None = None,
    token: str | None = None,
    should_cancel: ShouldCancel | None = None,
    retries: int = 5,
    backoff_seconds: float = 1.0,
    progress_interval: float = 0.25,
    timeout: float | None = None,
) -> Path:
    """Pull the hub model `name` (`bert-base-chinese` or `google-bert/bert-base-chinese`) at
    `revision` (None: main) into BASE_MODELS_DIR and return its folder. Blocking: run it in a
    thread.

    If the final folder already holds a model it is returned at once, nothing downloaded. Progress
    goes to `on_progress(bytes_done, bytes_total)` (total None while unknown) from this thread, at
    most every `progress_interval` seconds plus once at the start and once at the end; bytes_done
    counts what a previous, interrupted pull left too. A dropped connection, a timeout or a 5xx is
    retried up to `retries` times in a row (a try that received bytes resets the count), after
    `backoff_seconds`, doubling up to 30 s, each resuming where the files stopped. `should_cancel`
    is polled between chunks; cancelling keeps the `.partial` folder for a later pull to resume
    (`discard_partial_download` removes it). `timeout`: seconds a connect or a read may stall
    (default huggingface_hub's HF_HUB_DOWNLOAD_TIMEOUT, 10).

    Raises BaseModelDownloadError (see its `kind`). A missing repository fails at once, without
    retries and without leaving a folder."""
    puller = _HubPull(
        name=name, source=source, revision=revision, base_models_dir=Path(base_models_dir),
        progress=_Progress(on_progress, progress_interval), endpoint=endpoint, token=token,
        should_cancel=should_cancel or (lambda: False), retries=retries, backoff_seconds=backoff_seconds,
        timeout=timeout,
    )
    return puller.run()


def discard_partial_download(base_models_dir: Path, name: str) -> bool:
    """Remove the `.partial` folder of `name` (an interrupted or cancelled pull); False if there is
    none. Raises BaseModelDownloadError (kind "busy") while a pull of it is running."""
    partial = partial_path(Path(base_models_dir), name)
    if not partial.is_dir():
        return False
    with _locked(partial, name=name, source=HUGGINGFACE, endpoint=""):
        shutil.rmtree(partial)
    return True


@contextlib.contextmanager
def _locked(partial: Path, *, name: str, source: str, endpoint: str) -> Iterator[None]:
    """An exclusive lock on the `.partial` folder (flock: between threads and between processes)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        yield
        return
    partial.mkdir(parents=True, exist_ok=True)
    handle = open(partial / LOCK_FILE, "a+b")  # noqa: SIM115 - held for the whole block
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as error:
            raise BaseModelDownloadError(
                f"{name!r} is already being downloaded from {hub_label(source)} into {partial}: wait for that "
                f"pull to end",
                kind="busy", hub=source, endpoint=endpoint, repo_id=name,
            ) from error
        yield
    finally:
        handle.close()


def _git_blob_sha1(path: Path, size: int) -> str:
    digest = hashlib.sha1(f"blob {size}\0".encode())
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def select_files(available: list[str]) -> list[str]:
    """Of a repo's top-level files, the ones a BERT classifier needs, config first. Raises
    ValueError (with the reason) when the repo lacks a config, a tokenizer or PyTorch weights."""
    names = {path for path in available if "/" not in path}
    if CONFIG_FILE not in names:
        raise ValueError("the repository has no config.json, so it is not a transformers model")
    if "tokenizer.json" not in names and "vocab.txt" not in names:
        raise ValueError("the repository has no tokenizer (neither tokenizer.json nor vocab.txt)")
    chosen = [CONFIG_FILE, *(name for name in TOKENIZER_FILES if name in names)]
    safetensors_shards = sorted(name for name in names if SAFETENSORS_SHARD.match(name))
    pytorch_shards = sorted(name for name in names if PYTORCH_SHARD.match(name))
    if SAFETENSORS_FILE in names:
        chosen.append(SAFETENSORS_FILE)
    elif SAFETENSORS_INDEX in names and safetensors_shards:
        chosen += [SAFETENSORS_INDEX, *safetensors_shards]
    elif PYTORCH_FILE in names:
        chosen.append(PYTORCH_FILE)
    elif PYTORCH_INDEX in names and pytorch_shards:
        chosen += [PYTORCH_INDEX, *pytorch_shards]
    else:
        raise ValueError(
            "the repository has no PyTorch weights (model.safetensors or pytorch_model.bin); TensorFlow, Flax "
            "and ONNX weights are not used"
        )
    return chosen


class _HubPull:
    def __init__(
        self, *, name: str, source: str, revision: str | None, base_models_dir: Path, progress: _Progress,
        endpoint: str | None, token: str | None, should_cancel: ShouldCancel, retries: int,
        backoff_seconds: float, timeout: float | None,
    ) -> None:
        self.name = name
        self.source = source
        self.revision = revision or ("master" if source == MODELSCOPE else "main")  # each hub's default branch
        self.base_models_dir = base_models_dir
        self.progress = progress
        self.endpoint = resolve_endpoint(source, endpoint)
        self.token = token or os.environ.get("MODELSCOPE_API_TOKEN" if source == MODELSCOPE else "HF_TOKEN") or None
        self.should_cancel = should_cancel
        self.retries = max(retries, 0)
        self.backoff_seconds = max(backoff_seconds, 0.0)
        self.timeout = timeout
        self.received_this_try = False
        self.modelscope_cache: Path | None = None

    # -- errors --------------------------------------------------------------------------------

    def error(self, kind: str, reason: str, advice: str | None = None) -> BaseModelDownloadError:
        hub = f"{hub_label(self.source)} at {self.endpoint}" if self.endpoint else hub_label(self.source)
        message = f"could not download {self.name!r} from {hub}: {reason}"
        if advice:
            message += f"; {advice}"
        return BaseModelDownloadError(message, kind=kind, hub=self.source, endpoint=self.endpoint, repo_id=self.name)

    def classify(self, error: BaseException) -> BaseModelDownloadError | _Transient:
        """A library error as our final error, or as a _Transient worth another try."""
        import httpx2
        from huggingface_hub.errors import (
            GatedRepoError,
            HfHubHTTPError,
            OfflineModeIsEnabled,
            RemoteEntryNotFoundError,
            RepositoryNotFoundError,
            RevisionNotFoundError,
        )

        if self.source == MODELSCOPE and (outcome := self.classify_modelscope(error)) is not None:
            return outcome
        if isinstance(error, OfflineModeIsEnabled):
            return self.offline_error()
        if isinstance(error, GatedRepoError):
            return self.error("gated", "the repository is gated",
                              f"accept its terms on {self.endpoint}/{self.name} and set HF_TOKEN to a token of that account")
        if isinstance(error, RepositoryNotFoundError):
            return self.error(
                "not_found", "no such repository (or it is private and no valid token was sent)",
                f"check the name on {DEFAULT_HF_ENDPOINT}/models (ids look like 'google-bert/bert-base-chinese'), set "
                f"HF_TOKEN for a private repository, or set HF_ENDPOINT to a mirror such as {HF_MIRROR_EXAMPLE} if "
                f"{self.endpoint} is not the hub you meant",
            )
        if isinstance(error, RevisionNotFoundError):
            return self.error("revision_not_found", f"the repository has no revision {self.revision!r}",
                              "use a branch, tag or commit that exists, or leave the revision empty for main")
        if isinstance(error, RemoteEntryNotFoundError):
            return self.error("server", f"a file the repository lists is not served ({_first_line(error)})",
                              "try again later")
        if isinstance(error, HfHubHTTPError):
            status = error.response.status_code if error.response is not None else None
            if status == 401:
                return self.error("unauthorized", "the hub refused the token (HTTP 401)",
                                  "check HF_TOKEN (a read token of an account with access to the repository)")
            if status == 403:
                return self.error("forbidden", "access is forbidden (HTTP 403)",
                                  "check that the token's account may read this repository")
            if status is not None and (status >= 500 or status in (408, 429)):
                return _Transient("server", f"the hub answered HTTP {status}")
            return self.error("server", f"the hub answered HTTP {status} ({_first_line(error)})")
        if isinstance(error, httpx2.TransportError):
            return _Transient("network", f"{type(error).__name__}: {_first_line(error) or 'connection failed'}")
        if isinstance(error, ValueError):  # e.g. an HTML page (a proxy or captive portal) where JSON was due
            return self.error("server", f"its answer is not a hub API answer ({_first_line(error)})",
                              f"check that {self.endpoint} is a Hugging Face Hub or a mirror of it (HF_ENDPOINT)")
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
            return self.error("disk", f"the disk is full ({error})",
                              f"free space in {self.base_models_dir}; pulling again resumes")
        if isinstance(error, OSError) and error.errno is not None:
            return self.error("disk", f"cannot write the files ({error})")
        raise error

    def offline_error(self) -> BaseModelDownloadError:
        return self.error(
            "offline", "offline mode is on for this process (HF_HUB_OFFLINE=1)",
            "unset HF_HUB_OFFLINE (or set it to 0) in bertd's environment to pull base models",
        )

    # -- the pull ------------------------------------------------------------------------------

    def run(self) -> Path:
        try:
            final = base_model_path(self.base_models_dir, self.name)
        except ValueError as error:
            raise self.error("invalid_name", str(error)) from None
        if self.source not in DOWNLOAD_SOURCES:
            raise self.error("unsupported_source", f"unknown source {self.source!r}",
                             f"use one of {', '.join(DOWNLOAD_SOURCES)}")
        if final.exists():
            if (final / CONFIG_FILE).is_file():
                return final
            raise self.error("exists", f"{final} exists but holds no config.json",
                             "remove or rename that folder, then pull again")
        if self.source == MODELSCOPE:
            try:
                import modelscope_hub  # noqa: F401
            except ImportError:
                raise self.error("unsupported_source",
                                 MODELSCOPE_CLIENT_MISSING.format(name=self.name, target=final)) from None
        else:
            from huggingface_hub import constants

            if constants.is_offline_mode():
                raise self.offline_error()
        try:
            return self._pull(final)
        except _Cancelled:
            raise self.error("cancelled", "the pull was cancelled",
                             "pulling again resumes from what was downloaded") from None
        finally:
            if self.modelscope_cache is not None:
                shutil.rmtree(self.modelscope_cache, ignore_errors=True)

    def _pull(self, final: Path) -> Path:
        partial = partial_path(self.base_models_dir, self.name)
        plan: _Plan | None = None
        failures = 0
        with contextlib.ExitStack() as stack:
            state: _State | None = None
            while True:
                self.check_cancel()
                self.received_this_try = False
                try:
                    if plan is None:
                        plan = self.plan()
                    if state is None:
                        # Only now, with the repository found, does a folder appear.
                        stack.enter_context(_locked(partial, name=self.name, source=self.source,
                                                    endpoint=self.endpoint))
                        state = self.prepare(partial, plan)
                    if self.source == MODELSCOPE:
                        self.fetch_modelscope(partial, plan, state)
                    else:
                        for remote in plan.files:
                            self.check_cancel()
                            self.fetch(partial, remote, state)
                    break
                except (_Cancelled, BaseModelDownloadError):
                    raise
                except Exception as error:  # classified below: final, or worth another try
                    outcome = error if isinstance(error, _Transient) else self.classify(error)
                    if isinstance(outcome, BaseModelDownloadError):
                        raise outcome from error
                    failures = 1 if self.received_this_try else failures + 1
                    if failures > self.retries:
                        where = ("check the network and MODELSCOPE_ENDPOINT" if self.source == MODELSCOPE else
                                 f"check the network, or set HF_ENDPOINT to a mirror such as {HF_MIRROR_EXAMPLE}")
                        raise self.error(
                            outcome.kind, f"{outcome.reason} (gave up after {failures} tries in a row)",
                            f"{where}; pulling again resumes from what was downloaded",
                        ) from error
                    self.sleep(min(self.backoff_seconds * 2 ** (failures - 1), MAX_BACKOFF_SECONDS))
            assert plan is not None and state is not None
            self.progress.done = self.progress.total or self.progress.done
            self.progress.emit(force=True)
            return self.finish(partial, final, plan)

    def check_cancel(self) -> None:
        if self.should_cancel():
            raise _Cancelled()

    def sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            self.check_cancel()
            time.sleep(min(left, 0.1))

    def plan(self) -> _Plan:
        """Resolve the revision to a commit and list the files to fetch, with their sizes and hashes."""
        if self.source == MODELSCOPE:
            return self.plan_modelscope()
        from huggingface_hub import HfApi

        api = HfApi(endpoint=self.endpoint, token=self.token, library_name="bertd")
        info = api.model_info(self.name, revision=self.revision, files_metadata=True, timeout=self.request_timeout())
        if not info.sha:
            raise self.error("server", "the hub's answer has no commit sha", "check that the endpoint is a Hugging Face Hub")
        siblings = {sibling.rfilename: sibling for sibling in info.siblings or []}
        wanted = self.select(list(siblings))
        files = []
        for path in wanted:
            sibling = siblings[path]
            lfs = sibling.lfs
            files.append(_RemoteFile(
                path=path,
                size=lfs.size if lfs is not None else sibling.size,
                sha256=lfs.sha256 if lfs is not None else None,
                blob_id=sibling.blob_id if lfs is None else None,
            ))
        plan = _Plan(info.sha, files)
        for remote in plan.files:
            if remote.size is None:  # a mirror that does not list sizes: ask per file
                self.head(plan.commit, remote)
        return plan

    def select(self, available: list[str]) -> list[str]:
        try:
            return select_files(available)
        except ValueError as error:
            raise self.error("not_a_model", str(error),
                             "pick a BERT-style model repository with config.json, a tokenizer and PyTorch weights") from None

    def request_timeout(self) -> float:
        from huggingface_hub import constants

        return float(self.timeout if self.timeout is not None else constants.HF_HUB_DOWNLOAD_TIMEOUT)

    def url(self, commit: str, path: str) -> str:
        from huggingface_hub import hf_hub_url

        return hf_hub_url(self.name, path, revision=commit, endpoint=self.endpoint)

    def head(self, commit: str, remote: _RemoteFile) -> None:
        from huggingface_hub import get_hf_file_metadata

        metadata = get_hf_file_metadata(self.url(commit, remote.path), token=self.token, timeout=self.request_timeout(),
                                        library_name="bertd", endpoint=self.endpoint)
        remote.size = metadata.size
        etag = (metadata.etag or "").lower()
        if re.fullmatch(r"[0-9a-f]{64}", etag):  # LFS files: the sha256 of the content
            remote.sha256 = etag
        elif re.fullmatch(r"[0-9a-f]{40}", etag) and remote.sha256 is None:  # git files: the blob sha1
            remote.blob_id = etag

    def prepare(self, partial: Path, plan: _Plan) -> _State:
        """Open the `.partial` folder's state; start over if it belongs to another commit or hub."""
        state = _State(partial / STATE_FILE)
        state.load()
        identity = {"source": self.source, "repo_id": self.name, "endpoint": self.endpoint, "commit": plan.commit}
        if any(state.data.get(key) != value for key, value in identity.items()):
            for child in partial.iterdir():
                if child.name == LOCK_FILE:
                    continue
                if child.is_dir():
                    shutil.rmtree(child)
                else:
                    child.unlink()
            state.data = {**identity, "revision": self.revision, "complete": []}
            state.save()
        present = 0
        for remote in plan.files:
            target = partial / remote.path
            incomplete = target.with_name(target.name + INCOMPLETE_SUFFIX)
            if remote.path in state.complete and target.is_file():
                present += target.stat().st_size
            elif incomplete.is_file():
                present += incomplete.stat().st_size
        self.progress.total = plan.total
        self.progress.done = present
        self.progress.emit(force=True)
        return state

    def fetch(self, partial: Path, remote: _RemoteFile, state: _State) -> None:
        """Bring one file to completion in the `.partial` folder, resuming what is there."""
        target = partial / remote.path
        if remote.path in state.complete and target.is_file():
            return
        incomplete = target.with_name(target.name + INCOMPLETE_SUFFIX)
        target.parent.mkdir(parents=True, exist_ok=True)
        offset = incomplete.stat().st_size if incomplete.is_file() else 0
        if remote.size is not None and offset > remote.size:
            self.progress.add(-offset)
            incomplete.unlink()
            offset = 0
        if remote.size is None or offset < remote.size:
            self.transfer(remote, incomplete, offset, state.data["commit"])
        size = incomplete.stat().st_size
        if remote.size is not None and size != remote.size:
            raise _Transient("network", f"{remote.path} ended at {size} of {remote.size} bytes")
        if not self.verified(incomplete, remote, size):
            self.progress.add(-size)
            incomplete.unlink()
            raise _Transient("corrupt", f"{remote.path} does not match the hash the hub lists for it")
        _fsync(incomplete)
        os.replace(incomplete, target)
        state.mark_complete(remote.path)

    def verified(self, file: Path, remote: _RemoteFile, size: int) -> bool:
        if remote.sha256 is not None:
            return _sha256(file) == remote.sha256
        if remote.blob_id is not None:
            return _git_blob_sha1(file, size) == remote.blob_id
        return True

    def transfer(self, remote: _RemoteFile, incomplete: Path, offset: int, commit: str) -> None:
        """GET the file from `offset` on (a Range request) and append it to `incomplete`."""
        from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

        headers = build_hf_headers(token=self.token, library_name="bertd")
        # Sizes and ranges are of the bytes on disk: no gzip of text files.
        headers["Accept-Encoding"] = "identity"
        if offset:
            headers["Range"] = f"bytes={offset}-"
        url = self.url(commit, remote.path)
        with get_session().stream("GET", url, headers=headers, timeout=self.request_timeout(),
                                  follow_redirects=True) as response:
            if response.status_code == 416 and offset:
                # What is on disk does not fit the file the server has: start it over.
                self.progress.add(-offset)
                incomplete.unlink()
                raise _Transient("corrupt", f"the hub refused to resume {remote.path} at byte {offset}")
            if response.status_code >= 400:
                response.read()
                hf_raise_for_status(response)
            if offset and response.status_code == 206:
                content_range = response.headers.get("Content-Range", "")
                if not content_range.startswith(f"bytes {offset}-"):
                    raise _Transient("corrupt", f"the hub resumed {remote.path} at the wrong place ({content_range!r})")
                mode = "ab"
            else:
                if offset:  # the server ignored the Range header: the whole file comes again
                    self.progress.add(-offset)
                mode = "wb"
            with incomplete.open(mode) as out:
                for chunk in response.iter_bytes():
                    if self.should_cancel():
                        raise _Cancelled()
                    if not chunk:
                        continue
                    out.write(chunk)
                    self.received_this_try = True
                    self.progress.add(len(chunk))

    # -- ModelScope ----------------------------------------------------------------------------

    def modelscope_api(self) -> Any:
        from modelscope_hub import HubApi, HubConfig

        if self.modelscope_cache is None:
            # Its file locks and scratch files: ours for this pull only (the .partial lock is what
            # keeps two pulls apart), removed at the end.
            self.modelscope_cache = Path(tempfile.mkdtemp(prefix="bertd-modelscope-"))
        return HubApi(HubConfig(endpoint=self.endpoint, token=self.token, cache_dir=self.modelscope_cache))

    def plan_modelscope(self) -> _Plan:
        listing = self.modelscope_api().list_repo_files(self.name, "model", revision=self.revision, recursive=True)
        by_path = {entry.path: entry for entry in listing if not entry.is_dir and entry.path}
        wanted = self.select(list(by_path))
        files = [_RemoteFile(path=path, size=by_path[path].size, sha256=by_path[path].sha256 or None, blob_id=None)
                 for path in wanted]
        # The listing names no commit: the revision stands for it (hashes guard against a moved branch).
        return _Plan(self.revision, files)

    def fetch_modelscope(self, partial: Path, plan: _Plan, state: _State) -> None:
        """Let ModelScope's client fetch the files not yet complete, into the `.partial` folder."""
        from modelscope_hub import ProgressCallback

        remaining = [remote for remote in plan.files if not (remote.path in state.complete and (partial / remote.path).is_file())]
        if not remaining:
            return
        complete_bytes = sum((partial / remote.path).stat().st_size for remote in plan.files if remote not in remaining)
        on_disk = {remote.path: _size_or_zero(partial / (remote.path + INCOMPLETE_SUFFIX)) for remote in remaining}
        reported: dict[str, int] = {}  # per file, what its client reported (it starts with the bytes on disk)
        lock = threading.Lock()
        puller = self

        class Forward(ProgressCallback):
            def update(self, size: int) -> None:
                if puller.should_cancel():
                    raise _Cancelled()
                with lock:
                    reported[self.filename] = reported.get(self.filename, 0) + size
                    if reported[self.filename] > on_disk.get(self.filename, 0):
                        puller.received_this_try = True
                    puller.progress.done = complete_bytes + sum(reported.get(path, size_on_disk)
                                                                for path, size_on_disk in on_disk.items())
                    puller.progress.emit()

        self.modelscope_api().download_repo(
            self.name, "model", revision=self.revision, local_dir=partial, max_workers=1,
            progress_callbacks=[Forward],
            file_list=[{"Path": remote.path, "Name": remote.path.rsplit("/", 1)[-1], "Type": "blob",
                        "Size": remote.size, "Sha256": remote.sha256} for remote in remaining],
        )
        for remote in remaining:
            target = partial / remote.path
            if not target.is_file() or (remote.size is not None and target.stat().st_size != remote.size):
                raise _Transient("network", f"{remote.path} did not arrive whole")
            _fsync(target)
            state.mark_complete(remote.path)

    def classify_modelscope(self, error: BaseException) -> BaseModelDownloadError | _Transient | None:
        try:
            from modelscope_hub import errors
        except ImportError:
            return None
        if isinstance(error, errors.FileDownloadError) and error.failed_files:
            failures = list(error.failed_files.values())
            if all(isinstance(failure, errors.HubError) and not failure.retryable for failure in failures):
                error = failures[0]  # a lasting failure: report it as itself
            else:
                return _Transient("network", f"{len(failures)} file(s) failed: {_first_line(failures[0])}")
        if isinstance(error, errors.NotExistError):
            return self.error(
                "not_found", "no such repository (or it is private and no valid token was sent)",
                "check the name on https://www.modelscope.cn/models (ids look like 'tiansz/bert-base-chinese'); a "
                "private repository also needs MODELSCOPE_API_TOKEN",
            )
        if isinstance(error, errors.AuthenticationError):
            return self.error("unauthorized", "the hub refused the token", "check MODELSCOPE_API_TOKEN")
        if isinstance(error, errors.PermissionDeniedError):
            return self.error("forbidden", "access is forbidden", "check that the token's account may read this repository")
        if isinstance(error, errors.FileIntegrityError):
            return _Transient("corrupt", _first_line(error))
        if isinstance(error, errors.HubError):
            if error.retryable or isinstance(error, errors.NetworkError | errors.ServerError | errors.RateLimitError):
                return _Transient("network" if isinstance(error, errors.NetworkError) else "server", _first_line(error))
            return self.error("server", _first_line(error))
        return None

    def finish(self, partial: Path, final: Path, plan: _Plan) -> Path:
        """Check the model, record where it came from, and rename `.partial` to its final name."""
        try:
            check_base_model(partial)
        except BaseModelFileError as error:
            shutil.rmtree(partial, ignore_errors=True)
            raise self.error("broken", f"the downloaded model does not load ({error})",
                             "the repository is not a usable BERT model; pick another") from None
        (partial / SOURCE_FILE).write_text(json.dumps({
            "source": self.source,
            "repo_id": self.name,
            "revision": plan.commit,
            "requested_revision": self.revision,
            "endpoint": self.endpoint,
            "files": [remote.path for remote in plan.files],
            "downloaded_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }, indent=1), encoding="utf-8")
        for leftover in (STATE_FILE, LOCK_FILE):
            (partial / leftover).unlink(missing_ok=True)
        try:
            os.rename(partial, final)  # refuses a non-empty final folder: nothing is replaced
        except OSError as error:
            if error.errno in (errno.EEXIST, errno.ENOTEMPTY) and (final / CONFIG_FILE).is_file():
                shutil.rmtree(partial, ignore_errors=True)  # someone else put it there first
                return final
            raise self.error("disk", f"cannot move {partial} to {final} ({error})") from error
        _fsync(final.parent)
        return final


def _size_or_zero(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__

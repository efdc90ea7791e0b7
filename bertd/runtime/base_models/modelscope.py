"""Pulling from ModelScope through its own client, `modelscope_hub` (the package `modelscope-hub`;
the big `modelscope` package delegates its downloads to it).

Its file listing (sizes, sha256) makes the plan; then `HubApi.download_repo(local_dir=<the .partial
folder>, file_list=<the chosen files>)`, which keeps `<file>.incomplete` across calls and resumes
it with a Range request, retries by itself and checks each file's sha256. The endpoint defaults to
MODELSCOPE_ENDPOINT, then https://www.modelscope.cn; the token to MODELSCOPE_API_TOKEN (its client
also uses a `modelscope login`). Without `modelscope_hub` installed, a pull fails with kind
"unsupported_source" and says what to install."""

from __future__ import annotations

import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

from bertd.runtime.base_models.files import base_model_path
from bertd.runtime.base_models.hubs import BaseModelDownloadError, Cancelled, Transient, first_line
from bertd.runtime.base_models.huggingface import HuggingFaceClient
from bertd.runtime.base_models.partial import INCOMPLETE_SUFFIX, PartialState, Plan, RemoteFile, fsync, size_or_zero
from bertd.runtime.base_models.pull import Pull

MODELSCOPE_CLIENT_MISSING = (
    "ModelScope's client library is not installed (pip install modelscope-hub); or fetch the model "
    "by hand (modelscope download --model {name} --local_dir {target}) and it is listed as a local base model"
)


class ModelScopeClient:
    def __init__(self, pull: Pull) -> None:
        self.pull = pull
        self.scratch: Path | None = None

    def check_usable(self) -> None:
        try:
            import modelscope_hub  # noqa: F401
        except ImportError:
            target = base_model_path(self.pull.base_models_dir, self.pull.name)
            raise self.pull.error("unsupported_source",
                                  MODELSCOPE_CLIENT_MISSING.format(name=self.pull.name, target=target)) from None

    def close(self) -> None:
        if self.scratch is not None:
            shutil.rmtree(self.scratch, ignore_errors=True)
            self.scratch = None

    def api(self) -> Any:
        from modelscope_hub import HubApi, HubConfig

        if self.scratch is None:
            # Its file locks and scratch files: ours for this pull only (the .partial lock is what
            # keeps two pulls apart), removed at the end.
            self.scratch = Path(tempfile.mkdtemp(prefix="bertd-modelscope-"))
        return HubApi(HubConfig(endpoint=self.pull.endpoint, token=self.pull.token, cache_dir=self.scratch))

    def plan(self) -> Plan:
        pull = self.pull
        listing = self.api().list_repo_files(pull.name, "model", revision=pull.revision, recursive=True)
        by_path = {entry.path: entry for entry in listing if not entry.is_dir and entry.path}
        files = [RemoteFile(path=path, size=by_path[path].size, sha256=by_path[path].sha256 or None, blob_id=None)
                 for path in pull.select(list(by_path))]
        # The listing names no commit: the revision stands for it (hashes guard against a moved branch).
        return Plan(pull.revision, files)

    def fetch_all(self, partial: Path, plan: Plan, state: PartialState) -> None:
        """Let ModelScope's client fetch the files not yet complete, into the `.partial` folder."""
        from modelscope_hub import ProgressCallback

        pull = self.pull
        remaining = [remote for remote in plan.files
                     if not (remote.path in state.complete and (partial / remote.path).is_file())]
        if not remaining:
            return
        complete_bytes = sum((partial / remote.path).stat().st_size for remote in plan.files if remote not in remaining)
        on_disk = {remote.path: size_or_zero(partial / (remote.path + INCOMPLETE_SUFFIX)) for remote in remaining}
        reported: dict[str, int] = {}  # per file, what its client reported (it starts with the bytes on disk)
        lock = threading.Lock()

        class Forward(ProgressCallback):
            def update(self, size: int) -> None:
                if pull.should_cancel():
                    raise Cancelled()
                with lock:
                    reported[self.filename] = reported.get(self.filename, 0) + size
                    if reported[self.filename] > on_disk.get(self.filename, 0):
                        pull.received_this_try = True
                    pull.progress.done = complete_bytes + sum(reported.get(path, size_on_disk)
                                                              for path, size_on_disk in on_disk.items())
                    pull.progress.emit()

        self.api().download_repo(
            pull.name, "model", revision=pull.revision, local_dir=partial, max_workers=1,
            progress_callbacks=[Forward],
            file_list=[{"Path": remote.path, "Name": remote.path.rsplit("/", 1)[-1], "Type": "blob",
                        "Size": remote.size, "Sha256": remote.sha256} for remote in remaining],
        )
        for remote in remaining:
            target = partial / remote.path
            if not target.is_file() or (remote.size is not None and target.stat().st_size != remote.size):
                raise Transient("network", f"{remote.path} did not arrive whole")
            fsync(target)
            state.mark_complete(remote.path)

    def classify(self, error: BaseException) -> BaseModelDownloadError | Transient:
        outcome = self.classify_own(error)
        # What ModelScope's client does not wrap (disk errors, a proxy's HTML page) reads as for any hub.
        return outcome if outcome is not None else HuggingFaceClient(self.pull).classify(error)

    def classify_own(self, error: BaseException) -> BaseModelDownloadError | Transient | None:
        try:
            from modelscope_hub import errors
        except ImportError:
            return None
        pull = self.pull
        if isinstance(error, errors.FileDownloadError) and error.failed_files:
            failures = list(error.failed_files.values())
            if all(isinstance(failure, errors.HubError) and not failure.retryable for failure in failures):
                error = failures[0]  # a lasting failure: report it as itself
            else:
                return Transient("network", f"{len(failures)} file(s) failed: {first_line(failures[0])}")
        if isinstance(error, errors.NotExistError):
            return pull.error(
                "not_found", "no such repository (or it is private and no valid token was sent)",
                "check the name on https://www.modelscope.cn/models (ids look like 'tiansz/bert-base-chinese'); a "
                "private repository also needs MODELSCOPE_API_TOKEN",
            )
        if isinstance(error, errors.AuthenticationError):
            return pull.error("unauthorized", "the hub refused the token", "check MODELSCOPE_API_TOKEN")
        if isinstance(error, errors.PermissionDeniedError):
            return pull.error("forbidden", "access is forbidden", "check that the token's account may read this repository")
        if isinstance(error, errors.FileIntegrityError):
            return Transient("corrupt", first_line(error))
        if isinstance(error, errors.HubError):
            if error.retryable or isinstance(error, errors.NetworkError | errors.ServerError | errors.RateLimitError):
                return Transient("network" if isinstance(error, errors.NetworkError) else "server", first_line(error))
            return pull.error("server", first_line(error))
        return None

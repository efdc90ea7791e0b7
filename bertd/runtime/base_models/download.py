"""Pulling a base model from a hub into BASE_MODELS_DIR: the retry loop around one hub's client.

`download_base_model` is synchronous and blocking: run it in a thread (`asyncio.to_thread`), never
on the event loop. It fetches only what a BERT classifier needs (config.json, the tokenizer files,
and model.safetensors or its shards, pytorch_model.bin only when there are no safetensors; never
TF, Flax, ONNX or msgpack weights) into `<BASE_MODELS_DIR>/<name>.partial/` (`org/name` keeps its
nesting), checks the result (`check_base_model`), then renames the folder to its final name.

Resuming: a dropped connection, a timeout, a 5xx, or a later pull after a crash or a restart picks
up the files where they stopped (how, is each hub client's business: huggingface.py,
modelscope.py). Files are pinned to the commit the revision resolved to, kept in the `.partial`
folder's state file; if the revision has moved by a later pull, the `.partial` folder starts over.

Endpoint and token are read when the function is called, not when huggingface_hub is imported:
`endpoint` defaults to `HF_ENDPOINT` (e.g. https://hf-mirror.com), then https://huggingface.co;
`token` to `HF_TOKEN`, then what huggingface_hub finds itself (HUGGING_FACE_HUB_TOKEN, the token
saved by `hf auth login`). `HF_HUB_OFFLINE=1`, read by huggingface_hub at import, makes a pull fail
at once with a clear error. ModelScope (source "modelscope"): see modelscope.py."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path

from bertd.runtime.base_models.files import (
    CONFIG_FILE,
    SOURCE_FILE,
    BaseModelFileError,
    base_model_path,
    check_base_model,
    partial_path,
)
from bertd.runtime.base_models.hubs import (
    DOWNLOAD_SOURCES,
    HF_MIRROR_EXAMPLE,
    MODELSCOPE,
    BaseModelDownloadError,
    Cancelled,
    Transient,
)
from bertd.runtime.base_models.huggingface import HuggingFaceClient
from bertd.runtime.base_models.modelscope import ModelScopeClient
from bertd.runtime.base_models.partial import (
    INCOMPLETE_SUFFIX,
    LOCK_FILE,
    STATE_FILE,
    ByteProgress,
    PartialState,
    Plan,
    ProgressCallback,
    fsync,
    locked,
)
from bertd.runtime.base_models.pull import HubClient, Pull, ShouldCancel

MAX_BACKOFF_SECONDS = 30.0


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
    pull = Pull.create(
        name=name, source=source, revision=revision, base_models_dir=Path(base_models_dir),
        progress=ByteProgress(on_progress, progress_interval), endpoint=endpoint, token=token,
        should_cancel=should_cancel or (lambda: False), retries=retries, backoff_seconds=backoff_seconds,
        timeout=timeout,
    )
    try:
        final = base_model_path(pull.base_models_dir, name)
    except ValueError as error:
        raise pull.error("invalid_name", str(error)) from None
    if source not in DOWNLOAD_SOURCES:
        raise pull.error("unsupported_source", f"unknown source {source!r}", f"use one of {', '.join(DOWNLOAD_SOURCES)}")
    if final.exists():
        if (final / CONFIG_FILE).is_file():
            return final
        raise pull.error("exists", f"{final} exists but holds no config.json", "remove or rename that folder, then pull again")
    client: HubClient = ModelScopeClient(pull) if source == MODELSCOPE else HuggingFaceClient(pull)
    client.check_usable()
    try:
        return _pull_with_retries(pull, client, final)
    except Cancelled:
        raise pull.error("cancelled", "the pull was cancelled", "pulling again resumes from what was downloaded") from None
    finally:
        client.close()


def _pull_with_retries(pull: Pull, client: HubClient, final: Path) -> Path:
    partial = partial_path(pull.base_models_dir, pull.name)
    plan: Plan | None = None
    failures = 0
    with contextlib.ExitStack() as stack:
        state: PartialState | None = None
        while True:
            pull.check_cancel()
            pull.received_this_try = False
            try:
                if plan is None:
                    plan = client.plan()
                if state is None:
                    # Only now, with the repository found, does a folder appear.
                    stack.enter_context(locked(partial, name=pull.name, source=pull.source, endpoint=pull.endpoint))
                    state = _prepare(pull, partial, plan)
                client.fetch_all(partial, plan, state)
                break
            except (Cancelled, BaseModelDownloadError):
                raise
            except Exception as error:  # classified below: final, or worth another try
                outcome = error if isinstance(error, Transient) else client.classify(error)
                if isinstance(outcome, BaseModelDownloadError):
                    raise outcome from error
                failures = 1 if pull.received_this_try else failures + 1
                if failures > pull.retries:
                    where = ("check the network and MODELSCOPE_ENDPOINT" if pull.source == MODELSCOPE else
                             f"check the network, or set HF_ENDPOINT to a mirror such as {HF_MIRROR_EXAMPLE}")
                    raise pull.error(
                        outcome.kind, f"{outcome.reason} (gave up after {failures} tries in a row)",
                        f"{where}; pulling again resumes from what was downloaded",
                    ) from error
                pull.sleep(min(pull.backoff_seconds * 2 ** (failures - 1), MAX_BACKOFF_SECONDS))
        assert plan is not None and state is not None
        pull.progress.done = pull.progress.total or pull.progress.done
        pull.progress.emit(force=True)
        return _finish(pull, partial, final, plan)


def _prepare(pull: Pull, partial: Path, plan: Plan) -> PartialState:
    """Open the `.partial` folder's state; start over if it belongs to another commit or hub."""
    state = PartialState(partial / STATE_FILE)
    state.load()
    identity = {"source": pull.source, "repo_id": pull.name, "endpoint": pull.endpoint, "commit": plan.commit}
    if any(state.data.get(key) != value for key, value in identity.items()):
        for child in partial.iterdir():
            if child.name == LOCK_FILE:
                continue
            if child.is_dir():
                shutil.rmtree(child)
            else:
                child.unlink()
        state.data = {**identity, "revision": pull.revision, "complete": []}
        state.save()
    present = 0
    for remote in plan.files:
        target = partial / remote.path
        incomplete = target.with_name(target.name + INCOMPLETE_SUFFIX)
        if remote.path in state.complete and target.is_file():
            present += target.stat().st_size
        elif incomplete.is_file():
            present += incomplete.stat().st_size
    pull.progress.total = plan.total
    pull.progress.done = present
    pull.progress.emit(force=True)
    return state


def _finish(pull: Pull, partial: Path, final: Path, plan: Plan) -> Path:
    """Check the model, record where it came from, and rename `.partial` to its final name."""
    try:
        check_base_model(partial)
    except BaseModelFileError as error:
        shutil.rmtree(partial, ignore_errors=True)
        raise pull.error("broken", f"the downloaded model does not load ({error})",
                         "the repository is not a usable BERT model; pick another") from None
    (partial / SOURCE_FILE).write_text(json.dumps({
        "source": pull.source,
        "repo_id": pull.name,
        "revision": plan.commit,
        "requested_revision": pull.revision,
        "endpoint": pull.endpoint,
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
        raise pull.error("disk", f"cannot move {partial} to {final} ({error})") from error
    fsync(final.parent)
    return final

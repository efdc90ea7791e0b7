"""The base model downloads the server runs: at most one per name, shared by everyone who waits
for it (a POST /api/v1/base-models, any number of tasks), each in a thread of its own.

A download is recorded in SQLite (base_model_downloads) before it starts and until it ends well;
its bytes are in the `.partial` folder, which the downloader resumes. So after a restart a row
still 'downloading' is resumed, and a 'failed' one is still listed with its error until it is
pulled again or deleted. Progress and endings go to the hub (a `base_model` message for
/api/v1/ws) and to the listeners (the gate, which keeps waiting tasks up to date)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from loguru import logger

from bertd.protocol import TaskError
from bertd.runtime.base_models.catalog import DOWNLOADING, FAILED, READY, BaseModelEntry, entry_for, folder_of
from bertd.runtime.base_models.download import download_base_model
from bertd.runtime.base_models.hubs import BaseModelDownloadError, describe_hub, hub_label, resolve_endpoint
from bertd.runtime.base_models.partial import discard_partial_download
from bertd.runtime.hub import Hub
from bertd.state.records import DownloadRecord, DownloadStatus, utc_now
from bertd.state.store import Store


class AlreadyDownloading(Exception):
    """A download of this name is running; `record` is where it stands."""

    def __init__(self, record: DownloadRecord) -> None:
        super().__init__(record.name)
        self.record = record


@dataclass(frozen=True)
class DownloadSettings:
    retries: int = 5
    backoff_seconds: float = 1.0
    # Seconds between two progress reports of one download.
    progress_interval: float = 0.5


@dataclass(frozen=True)
class DownloadOutcome:
    """How a download ended, for the listeners: ready (with its entry), failed (with the error)."""

    record: DownloadRecord
    status: str  # ready | failed
    entry: BaseModelEntry | None = None
    failure: BaseModelDownloadError | None = None


@dataclass(eq=False)
class _Running:
    record: DownloadRecord
    cancel: threading.Event = field(default_factory=threading.Event)
    task: asyncio.Task[None] | None = None


ProgressListener = Callable[[DownloadRecord], None]
EndListener = Callable[[DownloadOutcome], Awaitable[None]]


def download_error(failure: BaseModelDownloadError) -> TaskError:
    """A failed download as an error object; its code is the failure's kind (not_found, network ...)."""
    return TaskError(code=failure.kind, message=failure.what_failed, hint=failure.advice)


class BaseModelDownloads:
    def __init__(self, store: Store, hub: Hub, base_models_dir: Path, settings: DownloadSettings) -> None:
        self._store = store
        self._hub = hub
        self._dir = base_models_dir
        self._settings = settings
        self._running: dict[str, _Running] = {}
        self._failed: dict[str, DownloadRecord] = {}
        self._progress_listeners: list[ProgressListener] = []
        self._end_listeners: list[EndListener] = []
        self._closing = False

    # ---- life cycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Resume what was downloading when the server stopped; remember what had failed."""
        for record in await self._store.list_downloads():
            if record.status == DownloadStatus.FAILED:
                self._failed[record.name] = record
            else:
                logger.info("base model {}: resuming its download from {}", record.name, hub_label(record.source))
                await self._begin(record.name, record.source, record.revision)

    async def close(self) -> None:
        """Stop every download where it is (kept 'downloading', resumed at the next start)."""
        self._closing = True
        running = list(self._running.values())
        for download in running:
            download.cancel.set()
        await asyncio.gather(*(download.task for download in running if download.task), return_exceptions=True)

    def listen(self, on_progress: ProgressListener, on_end: EndListener) -> None:
        self._progress_listeners.append(on_progress)
        self._end_listeners.append(on_end)

    def unlisten(self, on_progress: ProgressListener, on_end: EndListener) -> None:
        self._progress_listeners.remove(on_progress)
        self._end_listeners.remove(on_end)

    # ---- what there is -----------------------------------------------------------------------

    def downloading_names(self) -> frozenset[str]:
        return frozenset(self._running)

    def current(self, name: str) -> DownloadRecord | None:
        """The running download of `name`, else its failure, else None."""
        running = self._running.get(name)
        return running.record if running is not None else self._failed.get(name)

    def entries(self) -> list[BaseModelEntry]:
        """Downloads that run or failed, as lines of the base model list."""
        records = [download.record for download in self._running.values()] + list(self._failed.values())
        return [self.entry(record) for record in sorted(records, key=lambda record: record.name)]

    def entry(self, record: DownloadRecord) -> BaseModelEntry:
        return BaseModelEntry(
            name=record.name, source=record.source, path=str(folder_of(self._dir, record.name)),
            status=str(record.status), revision=record.revision, bytes_done=record.bytes_done,
            bytes_total=record.bytes_total, size_bytes=record.bytes_done, error=record.error,
        )

    # ---- starting and ending -----------------------------------------------------------------

    async def pull(self, name: str, source: str, revision: str | None) -> DownloadRecord:
        """Start downloading `name`; raises AlreadyDownloading while one runs."""
        running = self._running.get(name)
        if running is not None:
            raise AlreadyDownloading(running.record)
        return (await self._begin(name, source, revision)).record

    async def ensure(self, name: str, source: str) -> DownloadRecord:
        """The running download of `name`, started now (from `source`) if there is none."""
        running = self._running.get(name)
        if running is None:
            running = await self._begin(name, source, None)
        return running.record

    async def discard(self, name: str) -> bool:
        """Stop a running download of `name` and forget it with its `.partial` folder, or forget
        its failure. False when there is neither."""
        running = self._running.get(name)
        failed = self._failed.pop(name, None)
        if running is None and failed is None:
            return False
        if running is not None:
            running.cancel.set()
            if running.task is not None:
                await asyncio.gather(running.task, return_exceptions=True)
        await self._store.delete_download(name)
        await asyncio.to_thread(discard_partial_download, self._dir, name)
        self.announce({"name": name, "status": "deleted"})
        logger.info("base model {}: download discarded", name)
        return True

    async def _begin(self, name: str, source: str, revision: str | None) -> _Running:
        now = utc_now()
        record = DownloadRecord(name=name, source=source, revision=revision, status=DownloadStatus.DOWNLOADING,
                                started_at=now, updated_at=now)
        # Registered before the first await, so that two callers for one name share one download.
        running = _Running(record)
        self._running[name] = running
        self._failed.pop(name, None)
        await self._store.save_download(record)
        running.task = asyncio.create_task(self._run(running), name=f"base-model-{name}")
        logger.info("base model {}: downloading from {}", name, describe_hub(source, resolve_endpoint(source)))
        self.announce(self.entry(record).to_json())
        return running

    async def _run(self, running: _Running) -> None:
        loop = asyncio.get_running_loop()
        name = running.record.name

        def on_progress(done: int, total: int | None) -> None:  # in the download's thread
            loop.call_soon_threadsafe(self._progressed, running, done, total)

        outcome: DownloadOutcome | None = None
        try:
            path = await asyncio.to_thread(
                download_base_model, name, running.record.source, running.record.revision, self._dir, on_progress,
                should_cancel=running.cancel.is_set, retries=self._settings.retries,
                backoff_seconds=self._settings.backoff_seconds, progress_interval=self._settings.progress_interval)
            entry = await asyncio.to_thread(entry_for, name, path)
            outcome = DownloadOutcome(running.record, READY, entry=entry)
        except BaseModelDownloadError as failure:
            if failure.kind != "cancelled":
                outcome = DownloadOutcome(replace(running.record, status=DownloadStatus.FAILED, updated_at=utc_now(),
                                                  error=download_error(failure)), FAILED, failure=failure)
        except Exception as error:  # a bug, not the network: keep the traceback
            logger.exception("base model {}: download crashed", name)
            failure = BaseModelDownloadError(f"could not download {name!r}: {error}", kind="internal",
                                             hub=running.record.source, endpoint="", repo_id=name, reason=str(error),
                                             advice="the server log has the traceback")
            outcome = DownloadOutcome(replace(running.record, status=DownloadStatus.FAILED, updated_at=utc_now(),
                                              error=download_error(failure)), FAILED, failure=failure)
        await asyncio.shield(self._conclude(running, outcome))

    async def _conclude(self, running: _Running, outcome: DownloadOutcome | None) -> None:
        name = running.record.name
        self._running.pop(name, None)
        if outcome is None:  # cancelled: by close() (resumed at the next start) or by discard()
            if self._closing:
                await self._store.save_download(replace(running.record, updated_at=utc_now()))
            return
        if outcome.status == READY:
            await self._store.delete_download(name)
            logger.info("base model {}: ready in {}", name, outcome.entry.path if outcome.entry else "?")
            self.announce(outcome.entry.to_json() if outcome.entry else {"name": name, "status": READY})
        else:
            self._failed[name] = outcome.record
            await self._store.save_download(outcome.record)
            logger.warning("base model {}: {}", name, outcome.record.error.text if outcome.record.error else "failed")
            self.announce(self.entry(outcome.record).to_json())
        for listener in list(self._end_listeners):
            try:
                await listener(outcome)
            except Exception:
                logger.exception("base model {}: a listener failed", name)

    def _progressed(self, running: _Running, done: int, total: int | None) -> None:
        if self._running.get(running.record.name) is not running:
            return  # a late report of a download that has ended
        running.record = replace(running.record, bytes_done=done, bytes_total=total)
        self.announce(self.entry(running.record).to_json())
        for listener in list(self._progress_listeners):
            listener(running.record)

    def announce(self, state: dict[str, Any]) -> None:
        """A `base_model` message on /api/v1/ws: the model's whole state (or {name, status: deleted})."""
        self._hub.broadcast({"type": "base_model", **state})


__all__ = ["DOWNLOADING", "AlreadyDownloading", "BaseModelDownloads", "DownloadOutcome", "DownloadSettings"]

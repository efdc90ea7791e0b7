"""Queued tasks whose base model is not on the server yet: they wait, in phase
`downloading_base_model`, while the one download of that model runs, without holding a training
slot and without holding up the tasks behind them.

The scheduler asks `next_task()` for the task to start: the oldest queued task whose base model is
here, passing over those whose model is still downloading. A task keeps its place (its seq): once
its model is ready it is again the oldest and starts first. A missing model is pulled
(AUTO_DOWNLOAD_BASE_MODELS) when a task that needs it is created, found by the dispatcher, or
found queued at start-up. If the download fails, every task waiting for it fails with the hub, the
id and the reason."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

from loguru import logger

from bertd.i18n import Text
from bertd.protocol import Phase, Progress, TaskError
from bertd.runtime.announcer import Announcer
from bertd.runtime.base_models.catalog import READY, locate
from bertd.runtime.base_models.files import validate_base_model_name
from bertd.runtime.base_models.hubs import HUGGINGFACE
from bertd.runtime.base_models.manager import BaseModelDownloads, DownloadOutcome
from bertd.state.records import DownloadRecord, TaskRecord, TaskStatus, utc_now
from bertd.state.store import Store


class BaseModelGate:
    def __init__(self, store: Store, announcer: Announcer, downloads: BaseModelDownloads, base_models_dir: Path, *,
                 auto_download: bool, source: str, write_interval: float) -> None:
        self._store = store
        self._announcer = announcer
        self._downloads = downloads
        self._dir = base_models_dir
        self._auto = auto_download
        self._source = source
        self._write_interval = write_interval
        # base model -> task_id -> the waiting task's progress as last published
        self._waiting: dict[str, dict[str, Progress]] = {}
        self._last_write: dict[str, float] = {}
        self._writes: set[asyncio.Task[None]] = set()
        # hold() and a download's end must not interleave their writes for one task.
        self._lock = asyncio.Lock()
        self._wake: Callable[[], None] = lambda: None

    async def start(self, wake: Callable[[], None]) -> None:
        """Follow the downloads, and make every queued task whose model is missing wait for it."""
        self._wake = wake
        self._downloads.listen(self._on_progress, self._on_end)
        if not self._auto:
            return
        here: dict[str, bool] = {}
        for task in await self._store.tasks_in((TaskStatus.QUEUED,)):
            if task.base_model not in here:
                here[task.base_model] = await self.is_here(task.base_model)
            if not here[task.base_model]:
                await self.hold(task)

    async def close(self) -> None:
        self._downloads.unlisten(self._on_progress, self._on_end)
        await asyncio.gather(*self._writes, return_exceptions=True)

    async def refusal(self, name: str) -> Text | None:
        """Why a task on the missing base model `name` cannot wait for a download; None if it can."""
        if not self._auto:
            return Text("AUTO_DOWNLOAD_BASE_MODELS is false")
        try:
            validate_base_model_name(name)
        except ValueError:
            return Text("it is not a hub id, so it cannot be downloaded")
        if self._source == HUGGINGFACE and await asyncio.to_thread(hub_offline):
            return Text("bertd runs with HF_HUB_OFFLINE=1, so it cannot be downloaded")
        return None

    async def is_here(self, name: str) -> bool:
        return await asyncio.to_thread(locate, self._dir, name) is not None

    def waiting_for(self, name: str) -> list[str]:
        return list(self._waiting.get(name, {}))

    # ---- the scheduler's question ------------------------------------------------------------

    async def next_task(self) -> TaskRecord | None:
        """The oldest queued task that can start now; None when every queued task waits."""
        passed_over = set(self._downloads.downloading_names())
        while True:
            task = await self._store.next_queued(frozenset(passed_over))
            if task is None:
                return None
            # Without auto-download a missing model fails the task in its worker, with the hint.
            if not self._auto or await self.is_here(task.base_model):
                return task
            await self.hold(task)
            passed_over.add(task.base_model)

    # ---- waiting -----------------------------------------------------------------------------

    async def hold(self, task: TaskRecord) -> TaskRecord:
        """Make a queued task wait for its base model, starting the download if none runs."""
        async with self._lock:
            record = await self._downloads.ensure(task.base_model, self._source)
            waiting = self._waiting.setdefault(task.base_model, {})
            if task.task_id not in waiting:
                logger.info("task {} waits for base model {} to download", task.task_id, task.base_model)
            progress = task.current_progress.updated(phase=Phase.DOWNLOADING_BASE_MODEL,
                                                     download_bytes_done=record.bytes_done,
                                                     download_bytes_total=record.bytes_total)
            waiting[task.task_id] = progress
            if await self._store.set_queued_progress(task.task_id, progress):
                self._announcer.progress(task.task_id, progress)
            else:  # it left the queue meanwhile
                waiting.pop(task.task_id, None)
        return await self._store.get_task(task.task_id) or task

    def _on_progress(self, record: DownloadRecord) -> None:
        waiting = self._waiting.get(record.name)
        if not waiting:
            return
        for task_id, progress in waiting.items():
            waiting[task_id] = progress.updated(download_bytes_done=record.bytes_done,
                                                download_bytes_total=record.bytes_total)
            self._announcer.progress(task_id, waiting[task_id])
        # The hub has every report; SQLite (what GET shows) gets one every write interval.
        now = time.monotonic()
        if now - self._last_write.get(record.name, 0.0) >= self._write_interval:
            self._last_write[record.name] = now
            write = asyncio.create_task(self._write(dict(waiting)), name=f"waiting-progress-{record.name}")
            self._writes.add(write)
            write.add_done_callback(self._writes.discard)

    async def _write(self, progress_by_task: dict[str, Progress]) -> None:
        async with self._lock:
            for task_id, progress in progress_by_task.items():
                await self._store.set_queued_progress(task_id, progress)

    async def _on_end(self, outcome: DownloadOutcome) -> None:
        name = outcome.record.name
        async with self._lock:
            waiting = self._waiting.pop(name, {})
            self._last_write.pop(name, None)
            if outcome.status == READY:
                for task_id, progress in waiting.items():
                    ready = progress.updated(phase=Phase.QUEUED, download_bytes_done=None, download_bytes_total=None)
                    if await self._store.set_queued_progress(task_id, ready):
                        self._announcer.progress(task_id, ready)
                self._wake()
                return
            failure = outcome.record.error
            error = (failure.model_copy(update={"code": "base_model_download_failed"}) if failure else
                     TaskError.of("base_model_download_failed",
                                  Text("could not download base model {name!r}", name=name)))
            for task_id, progress in waiting.items():
                await self._fail(task_id, progress, error)

    async def _fail(self, task_id: str, progress: Progress, error: TaskError) -> None:
        updated = await self._store.transition(task_id, TaskStatus.FAILED, error_message=error.text, error=error,
                                               finished_at=utc_now(), progress=progress.updated(phase=Phase.FAILED))
        if updated is not None:
            self._announcer.transition(TaskStatus.QUEUED, updated, error.text)


def hub_offline() -> bool:
    """Whether huggingface_hub is in offline mode (HF_HUB_OFFLINE, read when it was imported)."""
    from huggingface_hub import constants

    return constants.is_offline_mode()

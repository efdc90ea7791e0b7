"""Admission, FIFO dispatch to the executor, stop and delete, and the end of every run.

The queue itself lives in SQLite (status 'queued', ordered by seq), so it survives restarts. Every
status change is written first, then announced; a run's ending is written under asyncio.shield so
that shutting down cannot lose it. The scheduler is the only one that removes model folders."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from loguru import logger

from bertd.protocol import Phase, StopReason, TaskError
from bertd.runtime.announcer import Announcer
from bertd.runtime.executor import Executor
from bertd.runtime.gpus import GpuAssigner
from bertd.runtime.jobs import JobSettings
from bertd.runtime.model_store import ModelStore
from bertd.runtime.supervisor import ActiveRun, ending_of, follow
from bertd.state.records import RUNNING_STATUSES, TaskRecord, TaskStatus, utc_now
from bertd.state.store import Store


class ShuttingDown(Exception):
    """The server is shutting down and takes no new tasks."""


class Scheduler:
    def __init__(self, store: Store, executor: Executor, announcer: Announcer, model_store: ModelStore, *,
                 slots: int, max_queued: int, jobs: JobSettings, gpus: GpuAssigner,
                 progress_write_interval: float,
                 next_task: Callable[[], Awaitable[TaskRecord | None]] | None = None) -> None:
        self._store = store
        self._executor = executor
        self._announcer = announcer
        self._models = model_store
        self._slots = slots
        self._max_queued = max_queued
        self._jobs = jobs
        self._gpus = gpus
        self._progress_write_interval = progress_write_interval
        # Which queued task starts next: the oldest by default; the base model gate passes over
        # tasks whose base model is still downloading (runtime/base_models/gate.py).
        self._next_task = next_task or store.oldest_queued
        self._active: dict[str, ActiveRun] = {}
        self._followers: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._dispatcher: asyncio.Task[None] | None = None
        self._closing = False

    @property
    def running_count(self) -> int:
        return len(self._active)

    @property
    def running_samples_per_second(self) -> float:
        return sum(active.progress.samples_per_second or 0.0 for active in self._active.values())

    # ---- life cycle --------------------------------------------------------------------------

    async def start(self) -> None:
        await self._fail_interrupted_tasks()
        # Every queued task has a live state in the hub, so subscribers never race the database.
        for task in await self._store.tasks_in((TaskStatus.QUEUED,)):
            self._announcer.live_status(task)
        self._dispatcher = asyncio.create_task(self._dispatch_loop(), name="dispatcher")
        self._wake.set()
        self._executor.warm_up()

    def wake(self) -> None:
        """Look at the queue again (e.g. a base model that tasks waited for has arrived)."""
        self._wake.set()

    def begin_shutdown(self) -> None:
        """Stop admitting and starting tasks; running ones are stopped by close()."""
        self._closing = True

    async def close(self) -> None:
        """Stop admitting, ask every run to stop (the executor ends them for certain), record each."""
        self._closing = True
        if self._dispatcher is not None:
            self._dispatcher.cancel()
            await asyncio.gather(self._dispatcher, return_exceptions=True)
        running = list(self._active.values())
        started = time.monotonic()
        for active in running:
            self._request_stop(active, StopReason.SHUTDOWN)
        if self._followers:
            await asyncio.gather(*self._followers, return_exceptions=True)
        await self._executor.close()
        outcomes = [await self._store.get_task(active.task_id) for active in running]
        counts = {status: sum(1 for task in outcomes if task and task.status == status) for status in TaskStatus}
        queued = len(await self._store.tasks_in((TaskStatus.QUEUED,)))
        logger.info("shutdown: {} running task(s) in {:.1f} s: {} stopped, {} failed, {} completed; "
                    "{} queued task(s) kept for the next start", len(running), time.monotonic() - started,
                    counts[TaskStatus.STOPPED], counts[TaskStatus.FAILED], counts[TaskStatus.COMPLETED], queued)

    async def _fail_interrupted_tasks(self) -> None:
        """Tasks left training or stopping by a crash cannot be resumed: end them as failed."""
        for task in await self._store.tasks_in(tuple(RUNNING_STATUSES)):
            error = TaskError(code="interrupted", message=f"bertd stopped while this task was training (during epoch "
                                                          f"{task.current_progress.current_epoch})",
                              hint="create it again to retry")
            message = error.text
            updated = await self._store.transition(task.task_id, TaskStatus.FAILED, error_message=message, error=error,
                                                   finished_at=utc_now(), event_data={"reason": "recovery"})
            self._models.remove(task.task_id)
            if updated is not None:
                self._announcer.transition(task.status, updated, message)

    # ---- admission and dispatch --------------------------------------------------------------

    async def submit(self, task: TaskRecord) -> TaskRecord:
        """Queue a new task. Raises ShuttingDown, or the store's QueueFull / MissingFile."""
        if self._closing:
            raise ShuttingDown()
        stored = await self._store.insert_task(task, self._max_queued)
        self._announcer.transition("new", stored, f"{stored.model_name_en} on {stored.training_data_file}")
        self._wake.set()
        return stored

    async def _dispatch_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while not self._closing and len(self._active) < self._slots:
                task = await self._next_task()
                if task is None:
                    break
                await self._launch(task)

    async def _launch(self, task: TaskRecord) -> None:
        progress = task.current_progress.updated(phase=Phase.STARTING)
        claimed = await self._store.transition(task.task_id, TaskStatus.TRAINING, started_at=utc_now(),
                                               progress=progress)
        if claimed is None:  # stopped or deleted between the read and the claim
            return
        self._announcer.transition(TaskStatus.QUEUED, claimed)
        job = self._jobs.job_for(claimed, self._gpus.assign(claimed.task_id))
        try:
            run = self._executor.start(job)
        except Exception as error:
            logger.exception("task {} could not be started", task.task_id)
            self._gpus.release(task.task_id)
            failure = TaskError(code="worker_start_failed", message=f"the worker process could not start: {error}",
                                hint="the server log has the traceback; check memory, disk space and WORKER_CPUS")
            await self._end(claimed, TaskStatus.FAILED, progress=progress.updated(phase=Phase.FAILED),
                            error_message=failure.text, error=failure)
            return
        active = ActiveRun(claimed, run, progress)
        self._active[task.task_id] = active
        follower = asyncio.create_task(self._follow(active), name=f"follow-{task.task_id[:8]}")
        self._followers.add(follower)
        follower.add_done_callback(self._followers.discard)

    async def _follow(self, active: ActiveRun) -> None:
        try:
            await follow(active, self._store, self._announcer, self._progress_write_interval)
        finally:
            await asyncio.shield(self._conclude(active))

    async def _conclude(self, active: ActiveRun) -> None:
        try:
            ending = ending_of(active)
            if ending.traceback:
                logger.error("task {} worker traceback:\n{}", active.task_id, ending.traceback.rstrip())
            if not ending.keeps_model:
                self._models.remove(active.task_id)
            await self._end(active.task, ending.status, progress=ending.progress, error_message=ending.error_message,
                            error=ending.error, metrics=ending.metrics, artifacts=ending.artifacts)
        finally:
            self._gpus.release(active.task_id)
            self._active.pop(active.task_id, None)
            active.finished.set()
            self._wake.set()

    async def _end(self, task: TaskRecord, target: TaskStatus, **fields: object) -> TaskRecord | None:
        before = await self._store.get_task(task.task_id)
        fields = {name: value for name, value in fields.items() if value is not None}
        updated = await self._store.transition(task.task_id, target, finished_at=utc_now(), **fields)
        if updated is None:
            return None
        self._announcer.transition(before.status if before else "?", updated, updated.error_message or "")
        return updated

    # ---- stop and delete ---------------------------------------------------------------------

    def _request_stop(self, active: ActiveRun, reason: StopReason) -> None:
        if active.stop_reason is None:
            active.stop_reason = reason
        active.run.stop()

    async def stop(self, task_id: str) -> TaskRecord | None:
        """Stop a task: a queued one at once, a training one through its run.
        Returns the task as it now is, or None if it does not exist."""
        task = await self._store.get_task(task_id)
        if task is None:
            return None
        if task.status == TaskStatus.QUEUED:
            ended = await self._end(task, TaskStatus.STOPPED, progress=task.current_progress.updated(
                phase=Phase.STOPPED))
            if ended is not None:
                return ended
            task = await self._store.get_task(task_id)  # it was claimed meanwhile: stop its run
            if task is None:
                return None
        if task.status == TaskStatus.TRAINING:
            updated = await self._store.transition(task_id, TaskStatus.STOPPING)
            if updated is not None:
                self._announcer.transition(TaskStatus.TRAINING, updated)
                active = self._active.get(task_id)
                if active is not None:
                    self._request_stop(active, StopReason.REQUESTED)
                return updated
        return await self._store.get_task(task_id)

    async def wait_until_finished(self, task_id: str) -> None:
        active = self._active.get(task_id)
        if active is not None:
            await active.finished.wait()

    async def delete(self, task_id: str) -> bool:
        """Stop the task if it is active, then remove its record, events and model."""
        task = await self.stop(task_id)
        if task is None:
            return False
        await self.wait_until_finished(task_id)
        deleted = await self._store.delete_task(task_id)
        self._models.remove(task_id)
        if deleted:
            logger.info("task {} deleted", task_id)
        return deleted


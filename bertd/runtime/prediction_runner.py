"""Prediction jobs' side of the scheduler: admission, launching one into a slot the scheduler found
free, following it, its end, stop and delete, recovery and shutdown.

The scheduler owns one of these: it decides when a job starts (FIFO with the tasks, in the same
slots) and counts `active` among its running work. Each ending is written under asyncio.shield,
first to the store, then announced. Result files are removed only here."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from loguru import logger

from bertd.i18n import Text
from bertd.protocol import StopReason, TaskError
from bertd.runtime.announcer import Announcer
from bertd.runtime.executor import Executor
from bertd.runtime.gpus import GpuAssigner
from bertd.runtime.jobs import JobSettings
from bertd.runtime.prediction_files import PredictionFiles
from bertd.runtime.prediction_supervisor import ActivePrediction, error_fields, follow_prediction, prediction_ending
from bertd.state.records import PREDICTION_TERMINAL, PredictionRecord, PredictionStatus, TaskStatus, utc_now
from bertd.state.store import Store


class PredictionRunner:
    def __init__(self, store: Store, executor: Executor, announcer: Announcer, files: PredictionFiles, *,
                 jobs: JobSettings, gpus: GpuAssigner, progress_write_interval: float, requeue_on_shutdown: bool,
                 max_queued: int, wake: Callable[[], None]) -> None:
        self._store = store
        self._executor = executor
        self._announcer = announcer
        self.files = files
        self._jobs = jobs
        self._gpus = gpus
        self._write_interval = progress_write_interval
        self._requeue = requeue_on_shutdown
        self._max_queued = max_queued
        self._wake = wake
        self.active: dict[str, ActivePrediction] = {}
        self.followers: set[asyncio.Task[None]] = set()
        # Stops that came between a job's claim and the start of its run.
        self._early_stops: set[str] = set()

    def capacity(self) -> int:
        """How many jobs may run at once in the executor they run in."""
        return self._executor.capacity()

    async def close_executor(self) -> None:
        """Close the executor of their own (the cluster's API node pool), after interrupt_all."""
        await self._executor.close()

    async def recover(self) -> None:
        """Jobs left running by a crash: back to the queue to run again from the start (or, with
        RESUME_INTERRUPTED_TASKS=false, stopped); their half-written results removed."""
        for job in await self._store.predictions_in((PredictionStatus.RUNNING,)):
            self.files.remove(self.files.result_path(job.task_id, job.prediction_id, job.file))
            target = PredictionStatus.QUEUED if self._requeue else PredictionStatus.STOPPED
            fields: dict[str, Any] = {"phase": None, "rows_done": 0, "rows_per_second": None} if self._requeue else \
                error_fields("stopped", TaskError.of("shutdown", Text("the server stopped while it was running"),
                                                     Text("create it again")))
            await self._end(job, target, event_data={"reason": "recovery"}, **fields)

    async def submit(self, job: PredictionRecord) -> PredictionRecord:
        """Queue a new job. Raises the store's TaskNotCompleted, MissingFile or QueueFull."""
        stored = await self._store.insert_prediction(job, self._max_queued)
        self._announcer.prediction_transition("new", stored, f"{stored.file}, sheet {stored.sheet_name!r}")
        self._wake()
        return stored

    async def launch(self, job: PredictionRecord) -> None:
        """Claim a queued job and start its run (the scheduler has a free slot for it)."""
        claimed = await self._store.transition_prediction(job.prediction_id, PredictionStatus.RUNNING,
                                                          started_at=utc_now(), phase="starting", rows_done=0)
        if claimed is None:  # stopped or deleted between the read and the claim
            return
        self._announcer.prediction_transition(PredictionStatus.QUEUED, claimed)
        task = await self._store.get_task(job.task_id)
        if task is None or task.status != TaskStatus.COMPLETED or task.artifacts is None:
            await self._end(claimed, PredictionStatus.FAILED, **error_fields("failed", TaskError.of(
                "model_missing", Text("task {task_id} has no completed model any more", task_id=job.task_id))))
            return
        output = self.files.result_path(job.task_id, job.prediction_id, job.file)
        run_job = self._jobs.prediction_job_for(claimed, task, self._gpus.assign(job.prediction_id), output)
        try:
            run = await self._executor.start(run_job)
        except Exception as error:
            logger.exception("prediction {} could not be started", job.prediction_id)
            self._gpus.release(job.prediction_id)
            await self._end(claimed, PredictionStatus.FAILED, **error_fields("failed", TaskError.of(
                "worker_start", Text("the worker process could not start: {error}", error=str(error)))))
            return
        active = ActivePrediction(claimed, run, output)
        self.active[job.prediction_id] = active
        if job.prediction_id in self._early_stops:
            self._early_stops.discard(job.prediction_id)
            self._interrupt(active, StopReason.REQUESTED)
        follower = asyncio.create_task(self._follow(active), name=f"predict-{job.prediction_id[:8]}")
        self.followers.add(follower)
        follower.add_done_callback(self.followers.discard)

    async def _follow(self, active: ActivePrediction) -> None:
        try:
            await follow_prediction(active, self._store, self._announcer, self._write_interval)
        finally:
            await asyncio.shield(self._conclude(active))

    async def _conclude(self, active: ActivePrediction) -> None:
        try:
            ending = prediction_ending(active, self._requeue)
            if ending.traceback:
                logger.error("prediction {} worker traceback:\n{}", active.prediction_id, ending.traceback.rstrip())
            if ending.status == PredictionStatus.COMPLETED:
                self.files.remove_partial(active.output_path)
            else:
                self.files.remove(active.output_path)
            updated = await self._end(active.job, ending.status, **ending.fields)
            if updated is None:  # deleted meanwhile: nothing may point at the file any more
                self.files.remove(active.output_path)
        finally:
            self._gpus.release(active.prediction_id)
            self.active.pop(active.prediction_id, None)
            active.finished.set()
            self._wake()

    async def _end(self, job: PredictionRecord, target: PredictionStatus, *,
                   event_data: dict[str, Any] | None = None, **fields: Any) -> PredictionRecord | None:
        if target in PREDICTION_TERMINAL:
            fields["finished_at"] = utc_now()
        before = await self._store.get_prediction(job.prediction_id)
        updated = await self._store.transition_prediction(job.prediction_id, target, event_data=event_data, **fields)
        if updated is not None:
            self._announcer.prediction_transition(before.status if before else "?", updated,
                                                  updated.error_message or "")
        return updated

    # ---- stop and delete -------------------------------------------------------------------------

    def _interrupt(self, active: ActivePrediction, reason: StopReason) -> None:
        # A user's stop overrides a shutdown's requeue; a prediction run has no pause.
        if active.stop_reason is None or reason == StopReason.REQUESTED:
            active.stop_reason = reason
        active.run.stop()

    def interrupt_all(self) -> None:
        """The server is shutting down: every run is asked to stop; each job goes back to the queue
        (or ends stopped without RESUME_INTERRUPTED_TASKS) once its run has exited."""
        for active in list(self.active.values()):
            self._interrupt(active, StopReason.SHUTDOWN)

    async def stop(self, prediction_id: str) -> PredictionRecord | None:
        """Stop a job: a queued one at once, a running one through its run (it stays `running` until
        the run has exited). The job as it now is; None if it does not exist."""
        job = await self._store.get_prediction(prediction_id)
        if job is None:
            return None
        if job.status == PredictionStatus.QUEUED:
            stopped = await self._end(job, PredictionStatus.STOPPED, phase="stopped")
            if stopped is not None:
                return stopped
        active = self.active.get(prediction_id)
        if active is not None:
            self._interrupt(active, StopReason.REQUESTED)
        elif job.status in (PredictionStatus.QUEUED, PredictionStatus.RUNNING):
            self._early_stops.add(prediction_id)  # claimed, its run not started yet: stopped once it is
        return await self._store.get_prediction(prediction_id)

    async def delete(self, prediction_id: str) -> bool:
        """Stop the job if it is active, then remove its record and its result file."""
        job = await self.stop(prediction_id)
        if job is None:
            return False
        await self._wait_until_finished(prediction_id)
        deleted = await self._store.delete_prediction(prediction_id)
        self.files.remove(self.files.result_path(job.task_id, prediction_id, job.file))
        if deleted:
            logger.info("prediction {} of task {} deleted", prediction_id, job.task_id)
        return deleted

    async def stop_all_of(self, task_id: str) -> None:
        """Before a task is deleted: its queued and running jobs stopped, their runs over."""
        for job in await self._store.predictions_in((PredictionStatus.QUEUED, PredictionStatus.RUNNING), task_id):
            await self.stop(job.prediction_id)
            await self._wait_until_finished(job.prediction_id)

    async def _wait_until_finished(self, prediction_id: str) -> None:
        active = self.active.get(prediction_id)
        if active is not None:
            await active.finished.wait()

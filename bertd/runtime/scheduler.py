"""Admission, dispatch to the executor, stop, pause, resume and delete, and the end of every run.

The queue itself lives in SQLite (status 'queued', in priority then seq order), so it survives
restarts. Prediction jobs (prediction_runner.py) wait in the same queue and run in the same slots:
the next job is whichever of the next task and the next prediction job was created first. Every
status change is written first, then announced; a run's ending is written under asyncio.shield so
that shutting down cannot lose it. The scheduler is the only one that removes model folders,
checkpoints and prediction results."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from loguru import logger

from bertd.i18n import Text
from bertd.protocol import Phase, Progress, StopReason, TaskError
from bertd.runtime.announcer import Announcer
from bertd.runtime.executor import Executor, Run
from bertd.runtime.gpus import GpuAssigner
from bertd.runtime.jobs import JobSettings
from bertd.runtime.model_store import ModelStore
from bertd.runtime.prediction_files import PredictionFiles
from bertd.runtime.prediction_runner import PredictionRunner
from bertd.runtime.resume_policy import ResumePolicy
from bertd.runtime.supervisor import ActiveRun, ending_of, follow
from bertd.state.records import RUNNING_STATUSES, PredictionRecord, PredictionStatus, TaskRecord, TaskStatus, utc_now
from bertd.state.store import Store


class ShuttingDown(Exception):
    """The server is shutting down and takes no new tasks."""


def first_created(task: TaskRecord | None, prediction: PredictionRecord | None) -> TaskRecord | PredictionRecord | None:
    """The job to start next of the next queued task and the next queued prediction job: a task that
    continues after a restart goes first (as it does among tasks), otherwise whichever was created
    first. A prediction job knows the newest task seq at its creation: a task with a larger one
    came after it."""
    if task is None or prediction is None:
        return task or prediction
    return task if task.priority > 0 or task.seq <= prediction.tasks_seq else prediction


class PauseUnsupported(Exception):
    """The executor cannot pause a run (the cluster's: checkpoints stay on the box that wrote them)."""


class Scheduler:
    def __init__(self, store: Store, executor: Executor, announcer: Announcer, model_store: ModelStore, *,
                 max_queued: int, jobs: JobSettings, gpus: GpuAssigner, progress_write_interval: float,
                 resume: ResumePolicy, prediction_files: PredictionFiles,
                 next_task: Callable[[], Awaitable[TaskRecord | None]] | None = None,
                 prediction_executor: Executor | None = None) -> None:
        self._store = store
        self._executor = executor
        self._announcer = announcer
        self._models = model_store
        self._max_queued = max_queued
        self._jobs = jobs
        self._gpus = gpus
        self._progress_write_interval = progress_write_interval
        self._resume = resume
        # Which queued task starts next: by default the first in dispatch order; the base model gate
        # passes over tasks whose base model is still downloading (runtime/base_models/gate.py).
        self._next_task = next_task or store.next_queued
        self._active: dict[str, ActiveRun] = {}
        self._followers: set[asyncio.Task[None]] = set()
        self._wake = asyncio.Event()
        self._dispatcher: asyncio.Task[None] | None = None
        self._closing = False
        executor.on_capacity_change = self._wake.set
        # Without an executor of their own, prediction jobs share the training slots (FIFO with the
        # tasks); the cluster gives them the API node's own pool, beside the boxes' slots.
        self._predictions_share_slots = prediction_executor is None
        self.predictions = PredictionRunner(store, prediction_executor or executor, announcer, prediction_files,
                                            jobs=jobs, gpus=gpus, progress_write_interval=progress_write_interval,
                                            requeue_on_shutdown=resume.enabled, max_queued=max_queued,
                                            wake=self._wake.set)

    @property
    def running_count(self) -> int:
        """Worker processes at work: training tasks and prediction jobs."""
        return len(self._active) + len(self.predictions.active)

    @property
    def running_samples_per_second(self) -> float:
        return sum(active.progress.samples_per_second or 0.0 for active in self._active.values())

    # ---- life cycle --------------------------------------------------------------------------

    async def start(self) -> None:
        await self._reattach_or_recover()
        await self.predictions.recover()
        # Every active task has a live state in the hub, so subscribers never race the database.
        for task in await self._store.tasks_in((TaskStatus.QUEUED, TaskStatus.PAUSED)):
            self._announcer.live_status(task)
        self._dispatcher = asyncio.create_task(self._dispatch_loop(), name="dispatcher")
        self._wake.set()
        self._executor.warm_up()

    def wake(self) -> None:
        """Look at the queue again (e.g. a base model that tasks waited for has arrived)."""
        self._wake.set()

    def begin_shutdown(self) -> None:
        """Stop admitting and starting tasks; running ones are dealt with by close()."""
        self._closing = True

    async def close(self) -> None:
        """Stop admitting; ask every run to checkpoint and stop (or just to stop, when interrupted
        tasks do not continue); the executor ends them for certain; record each."""
        self._closing = True
        if self._dispatcher is not None:
            self._dispatcher.cancel()
            await asyncio.gather(self._dispatcher, return_exceptions=True)
        running = list(self._active.values())
        predicting = list(self.predictions.active.values())
        started = time.monotonic()
        if self._executor.keeps_runs_on_shutdown:
            # Runs on other boxes go on; the next start reads their messages on from where these stop.
            for active in running:
                active.detached = True
            for follower in self._followers:
                follower.cancel()
        else:
            for active in running:
                self._interrupt(active, StopReason.SHUTDOWN)
        self.predictions.interrupt_all()
        if self._followers or self.predictions.followers:
            await asyncio.gather(*self._followers, *self.predictions.followers, return_exceptions=True)
        await self._executor.close()
        if not self._predictions_share_slots:
            await self.predictions.close_executor()
        outcomes = [await self._store.get_task(active.task_id) for active in running]
        counts = {status: sum(1 for task in outcomes if task and task.status == status) for status in TaskStatus}
        queued = len(await self._store.tasks_in((TaskStatus.QUEUED,)))
        logger.info("shutdown: {} running task(s) in {:.1f} s: {} requeued to continue, {} stopped, {} failed, "
                    "{} completed, {} left running on their workers; {} queued task(s) kept for the next start",
                    len(running), time.monotonic() - started, counts[TaskStatus.QUEUED], counts[TaskStatus.STOPPED],
                    counts[TaskStatus.FAILED], counts[TaskStatus.COMPLETED],
                    counts[TaskStatus.TRAINING] + counts[TaskStatus.STOPPING], queued)
        if predicting:
            ended = [await self._store.get_prediction(active.prediction_id) for active in predicting]
            logger.info("shutdown: {} running prediction job(s): {} requeued to run again, {} ended", len(predicting),
                        sum(1 for job in ended if job and job.status == PredictionStatus.QUEUED),
                        sum(1 for job in ended if job and job.status != PredictionStatus.QUEUED))

    async def _reattach_or_recover(self) -> None:
        """Tasks left training or stopping: a run that went on without the server (on another box)
        is followed again from where it was; the others were interrupted: back to the queue to
        continue from their last checkpoint, or (RESUME_INTERRUPTED_TASKS=false) ended as failed."""
        for task in await self._store.tasks_in(tuple(RUNNING_STATUSES)):
            run = self._executor.reattach(task)
            if run is not None:
                logger.info("task {} is still running{}; following it again", task.task_id,
                            f" on worker {task.worker}" if task.worker else " (not yet on a worker)")
                self._follow_run(task, run, task.current_progress)
                continue
            target, fields = self._resume.after_crash(task)
            updated = await self._store.transition(task.task_id, target, event_data={"reason": "recovery"},
                                                   **self._ending_fields(target, fields))
            if updated is None:
                continue
            self._tidy_up(updated)
            self._announcer.transition(task.status, updated, updated.error_message or "continues after the restart")

    # ---- admission and dispatch --------------------------------------------------------------

    async def submit(self, task: TaskRecord) -> TaskRecord:
        """Queue a new task. Raises ShuttingDown, or the store's QueueFull / MissingFile."""
        if self._closing:
            raise ShuttingDown()
        stored = await self._store.insert_task(task, self._max_queued)
        self._announcer.transition("new", stored, f"{stored.model_name_en} on {stored.training_data_file}")
        self._wake.set()
        return stored

    async def submit_prediction(self, job: PredictionRecord) -> PredictionRecord:
        """Queue a new prediction job. Raises ShuttingDown, or the store's TaskNotCompleted,
        MissingFile or QueueFull."""
        if self._closing:
            raise ShuttingDown()
        return await self.predictions.submit(job)

    async def _next_job(self) -> TaskRecord | PredictionRecord | None:
        """The next job that has a free slot: with shared slots, whichever of the next task and the
        next prediction job was created first; otherwise the next task if a training slot is free,
        else the next prediction job if one of theirs is."""
        training_capacity = self._executor.capacity()
        if self._predictions_share_slots:
            if self.running_count >= training_capacity:
                return None
            return first_created(await self._next_task(), await self._store.next_queued_prediction())
        task = await self._next_task() if len(self._active) < training_capacity else None
        if task is not None:
            return task
        if len(self.predictions.active) < self.predictions.capacity():
            return await self._store.next_queued_prediction()
        return None

    async def _dispatch_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while not self._closing:
                job = await self._next_job()
                if job is None:
                    break
                if isinstance(job, PredictionRecord):
                    await self.predictions.launch(job)
                else:
                    await self._launch(job)

    async def _launch(self, task: TaskRecord) -> None:
        progress = task.current_progress.updated(phase=Phase.STARTING)
        claimed = await self._store.transition(task.task_id, TaskStatus.TRAINING, started_at=task.started_at or
                                               utc_now(), progress=progress)
        if claimed is None:  # stopped, paused or deleted between the read and the claim
            return
        self._announcer.transition(TaskStatus.QUEUED, claimed)
        job = self._jobs.job_for(claimed, self._gpus.assign(claimed.task_id))
        try:
            run = await self._executor.start(job)
        except Exception as error:
            logger.exception("task {} could not be started", task.task_id)
            self._gpus.release(task.task_id)
            failure = TaskError.of("worker_start_failed",
                                   Text("the worker process could not start: {error}", error=str(error)),
                                   Text("the server log has the traceback; check memory, disk space and WORKER_CPUS"))
            await self._end(claimed, TaskStatus.FAILED, progress=progress.updated(phase=Phase.FAILED),
                            error_message=failure.text, error=failure)
            return
        self._follow_run(claimed, run, progress)

    def _follow_run(self, task: TaskRecord, run: Run, progress: Progress) -> None:
        active = ActiveRun(task, run, progress)
        self._active[task.task_id] = active
        follower = asyncio.create_task(self._follow(active), name=f"follow-{task.task_id[:8]}")
        self._followers.add(follower)
        follower.add_done_callback(self._followers.discard)

    async def _follow(self, active: ActiveRun) -> None:
        try:
            await follow(active, self._store, self._announcer, self._progress_write_interval)
        finally:
            if not active.detached:
                await asyncio.shield(self._conclude(active))

    async def _conclude(self, active: ActiveRun) -> None:
        try:
            ending = ending_of(active, self._resume.enabled)
            if ending.traceback:
                logger.error("task {} worker traceback:\n{}", active.task_id, ending.traceback.rstrip())
            target, fields = ending.status, {"progress": ending.progress, "error_message": ending.error_message,
                                             "error": ending.error, "metrics": ending.metrics,
                                             "artifacts": ending.artifacts}
            if target == TaskStatus.QUEUED:
                current = await self._store.get_task(active.task_id)
                target, fields = self._resume.after_interruption(current or active.task,
                                                                Text("a shutdown of the server"))
            updated = await self._end(active.task, target, **fields)
            if updated is not None:
                self._tidy_up(updated)
        finally:
            self._gpus.release(active.task_id)
            self._active.pop(active.task_id, None)
            active.finished.set()
            self._wake.set()

    def _tidy_up(self, task: TaskRecord) -> None:
        """What a task no longer needs on disk: a model that was not completed; checkpoints once the
        task has ended (unless KEEP_CHECKPOINTS)."""
        if task.status != TaskStatus.COMPLETED and task.status not in (TaskStatus.PAUSED, TaskStatus.QUEUED):
            self._models.remove(task.task_id)
        if task.status in (TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.STOPPED) \
                and not self._resume.keep_checkpoints:
            self._models.remove_checkpoints(task.task_id)

    def _ending_fields(self, target: TaskStatus, fields: dict[str, Any]) -> dict[str, Any]:
        """The columns to set with a transition: None values are left out; an ended task gets its
        finished_at, and loses its checkpoint (removed from disk by `_tidy_up`)."""
        ended: dict[str, Any] = {}
        if target in (TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.STOPPED):
            ended["finished_at"] = utc_now()
            if not self._resume.keep_checkpoints:
                ended["checkpoint"] = None
        return {**ended, **{name: value for name, value in fields.items() if value is not None}}

    async def _end(self, task: TaskRecord, target: TaskStatus, **fields: Any) -> TaskRecord | None:
        before = await self._store.get_task(task.task_id)
        updated = await self._store.transition(task.task_id, target, **self._ending_fields(target, fields))
        if updated is None:
            return None
        self._announcer.transition(before.status if before else "?", updated, updated.error_message or "")
        return updated

    # ---- stop, pause, resume and delete ------------------------------------------------------

    def _interrupt(self, active: ActiveRun, reason: StopReason) -> None:
        """Ask the run to end: with a checkpoint first for a pause, and for a shutdown when
        interrupted tasks continue; a user's stop overrides a pause under way."""
        if active.stop_reason is None or reason == StopReason.REQUESTED:
            active.stop_reason = reason
        if active.stop_reason == StopReason.PAUSE or (active.stop_reason == StopReason.SHUTDOWN
                                                       and self._resume.enabled):
            active.run.pause()
        else:
            active.run.stop()

    async def stop(self, task_id: str) -> TaskRecord | None:
        """Stop a task: a queued or paused one at once, a training one through its run.
        Returns the task as it now is, or None if it does not exist."""
        task = await self._store.get_task(task_id)
        if task is None:
            return None
        if task.status in (TaskStatus.QUEUED, TaskStatus.PAUSED):
            ended = await self._end(task, TaskStatus.STOPPED, progress=task.current_progress.updated(
                phase=Phase.STOPPED))
            if ended is not None:
                self._tidy_up(ended)
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
                    self._interrupt(active, StopReason.REQUESTED)
                return updated
        return await self._store.get_task(task_id)

    async def pause(self, task_id: str) -> TaskRecord | None:
        """Pause a task: a queued one at once; a training one checkpoints at its next step, frees
        its slot and becomes `paused`. The task as it now is (None if it does not exist)."""
        task = await self._store.get_task(task_id)
        if task is None:
            return None
        if not self._executor.supports_pause:
            raise PauseUnsupported()
        if task.status == TaskStatus.QUEUED:
            paused = await self._end(task, TaskStatus.PAUSED,
                                     progress=task.current_progress.updated(phase=Phase.PAUSED))
            if paused is not None:
                return paused
            task = await self._store.get_task(task_id)  # it was claimed meanwhile: pause its run
            if task is None:
                return None
        active = self._active.get(task_id)
        if task.status == TaskStatus.TRAINING and active is not None and active.stop_reason is None:
            self._interrupt(active, StopReason.PAUSE)
            active.progress = active.progress.updated(phase=Phase.PAUSING)
            await self._store.set_progress(task_id, active.progress)
            self._announcer.progress(task_id, active.progress)
            logger.info("task {} pausing: a checkpoint at its next step, then its slot is freed", task_id)
        return await self._store.get_task(task_id)

    async def resume(self, task_id: str) -> TaskRecord | None:
        """Queue a paused task again: it keeps its place (seq) and continues from its checkpoint."""
        task = await self._store.get_task(task_id)
        if task is None or task.status != TaskStatus.PAUSED:
            return task
        queued = await self._end(task, TaskStatus.QUEUED, progress=task.current_progress.updated(phase=Phase.QUEUED))
        self._wake.set()
        return queued or await self._store.get_task(task_id)

    def pausing(self, task_id: str) -> bool:
        active = self._active.get(task_id)
        return active is not None and active.stop_reason is not None

    async def wait_until_finished(self, task_id: str) -> None:
        active = self._active.get(task_id)
        if active is not None:
            await active.finished.wait()

    async def delete(self, task_id: str) -> bool:
        """Stop the task if it is active, then remove its record, events, model and checkpoints, and
        its prediction jobs (stopped first) with their results."""
        task = await self.stop(task_id)
        if task is None:
            return False
        await self.wait_until_finished(task_id)
        await self.predictions.stop_all_of(task_id)
        deleted = await self._store.delete_task(task_id)
        self._models.remove(task_id)
        self._models.remove_checkpoints(task_id)
        self.predictions.files.remove_task(task_id)
        if deleted:
            logger.info("task {} deleted", task_id)
        return deleted

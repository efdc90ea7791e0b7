"""Admission, FIFO dispatch, stop and delete, progress persistence, crash recovery.

The queue itself lives in SQLite (status 'queued', ordered by seq), so it survives restarts.
Terminal states are written under asyncio.shield before anyone (callback, log) is told."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from loguru import logger

from bertd.job import TrainingJob
from bertd.runtime.callbacks import CallbackSender
from bertd.runtime.hub import Hub
from bertd.runtime.local_pool import WorkerHandle, WorkerPool, describe_exit
from bertd.runtime.model_store import remove_model_files
from bertd.server.config import Config
from bertd.server.prometheus import ServiceMetrics, observe_task_end
from bertd.state.records import TERMINAL_STATUSES, TaskRecord, TaskStatus, initial_progress, utc_now
from bertd.state.store import Store

PROGRESS_FIELDS = (
    "phase", "current_epoch", "total_epochs", "step", "total_steps", "progress_percentage", "train_loss",
    "train_accuracy", "val_loss", "val_accuracy", "val_macro_f1", "learning_rate", "samples_per_second",
    "eta_seconds",
)
EPOCH_EVENT_FIELDS = (
    "epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "val_macro_f1", "is_best",
    "samples_per_second", "per_class", "confusion_matrix",
)


def log_transition(task_id: str, source: str, target: TaskStatus, detail: str = "") -> None:
    """One line per transition, always the same grammar: task <id> <from> -> <to>[: detail]."""
    logger.info("task {} {} -> {}{}", task_id, source, target, f": {detail}" if detail else "")


def least_loaded_gpu(gpus: list[int], in_use: list[int]) -> int:
    """The GPU fewest running tasks use (so each task has its own while slots <= GPUs)."""
    return min(gpus, key=lambda gpu: (in_use.count(gpu), gpu))


class Scheduler:
    def __init__(self, config: Config, store: Store, callbacks: CallbackSender, hub: Hub,
                 metrics: ServiceMetrics) -> None:
        self._config = config
        self._store = store
        self._callbacks = callbacks
        self._hub = hub
        self._metrics = metrics
        self._speeds: dict[str, float] = {}
        self._pool = WorkerPool(config.training_function, config.log_level, config.keep_spare_worker,
                                config.worker_cpus)
        self._gpus = list(config.gpu_devices or ())
        self._gpu_of: dict[str, int] = {}
        self._running: dict[str, WorkerHandle] = {}
        self._supervisors: dict[str, asyncio.Task[None]] = {}
        self._finished: dict[str, asyncio.Event] = {}
        self._stop_reasons: dict[str, str] = {}
        self._wake = asyncio.Event()
        self._dispatcher: asyncio.Task[None] | None = None
        self._closing = False

    @property
    def running_count(self) -> int:
        return len(self._running)

    @property
    def accepting(self) -> bool:
        return not self._closing

    @property
    def running_samples_per_second(self) -> float:
        return sum(self._speeds.values())

    def begin_shutdown(self) -> None:
        """Stop admitting and starting tasks; running ones are stopped by close()."""
        self._closing = True

    # ---- life cycle --------------------------------------------------------------------------

    async def start(self) -> None:
        await self._recover_interrupted_tasks()
        # Every active task has a live state in the hub, so subscribers never race the database.
        for task in await self._store.tasks_in((TaskStatus.QUEUED,)):
            self._hub.publish(task.task_id, {"type": "status", "status": str(task.status)})
        self._dispatcher = asyncio.create_task(self._dispatch_loop(), name="dispatcher")
        self._wake.set()
        self._pool.warm_up()

    async def close(self) -> None:
        """Stop admitting, ask running workers to stop, give them the grace period, then kill."""
        self._closing = True
        if self._dispatcher is not None:
            self._dispatcher.cancel()
            await asyncio.gather(self._dispatcher, return_exceptions=True)
        handles = list(self._running.values())
        for handle in handles:
            self._stop_reasons[handle.task_id] = "the server shut down while it was training"
            handle.request_stop()
        started = time.monotonic()
        await asyncio.gather(*(self._wait_or_kill(handle) for handle in handles))
        supervisors = list(self._supervisors.values())
        if supervisors:
            await asyncio.gather(*supervisors, return_exceptions=True)
        await asyncio.to_thread(self._pool.close)
        outcomes = [(await self._store.get_task(handle.task_id)) for handle in handles]
        counts = {status: sum(1 for task in outcomes if task and task.status == status) for status in TaskStatus}
        queued = len(await self._store.tasks_in((TaskStatus.QUEUED,)))
        logger.info("shutdown: {} running task(s) in {:.1f} s: {} stopped, {} failed, {} completed; "
                    "{} queued task(s) kept for the next start", len(handles), time.monotonic() - started,
                    counts[TaskStatus.STOPPED], counts[TaskStatus.FAILED], counts[TaskStatus.COMPLETED], queued)

    async def _recover_interrupted_tasks(self) -> None:
        """Tasks left training or stopping by a crash cannot be resumed: end them as failed."""
        for task in await self._store.tasks_in((TaskStatus.TRAINING, TaskStatus.STOPPING)):
            epoch = (task.progress or {}).get("current_epoch") or 0
            message = f"bertd stopped while this task was training (during epoch {epoch}); create it again to retry"
            updated = await self._store.transition(task.task_id, TaskStatus.FAILED, error_message=message,
                                                   finished_at=utc_now(), event_data={"reason": "recovery"})
            self._remove_artifacts(task.task_id)
            if updated is not None:
                self._announce(task.status, updated, message)

    # ---- admission and dispatch --------------------------------------------------------------

    def task_added(self, task: TaskRecord) -> None:
        self._announce("new", task, f"{task.model_name_en} on {task.training_data_file}")
        self._wake.set()

    async def _dispatch_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while not self._closing and len(self._running) < self._config.max_concurrent_tasks:
                task = await self._store.oldest_queued()
                if task is None:
                    break
                await self._launch(task)

    async def _launch(self, task: TaskRecord) -> None:
        progress = {**initial_progress(task.hyperparameters), "phase": "starting"}
        claimed = await self._store.transition(task.task_id, TaskStatus.TRAINING, started_at=utc_now(),
                                               progress=progress)
        if claimed is None:  # stopped or deleted between the read and the claim
            return
        self._announce(TaskStatus.QUEUED, claimed)
        job = self._job_for(claimed, self._assign_gpu(claimed.task_id))
        try:
            handle = self._pool.start(job)
        except Exception as error:
            logger.exception("task {} worker could not be started", task.task_id)
            await self._end(claimed, TaskStatus.FAILED, error_message=f"the worker process could not start: {error}")
            return
        self._running[task.task_id] = handle
        self._finished[task.task_id] = asyncio.Event()
        self._supervisors[task.task_id] = asyncio.create_task(
            self._supervise(handle, claimed), name=f"supervise-{task.task_id[:8]}"
        )

    def _assign_gpu(self, task_id: str) -> str | None:
        if not self._gpus:
            return None
        chosen = least_loaded_gpu(self._gpus, list(self._gpu_of.values()))
        self._gpu_of[task_id] = chosen
        return f"cuda:{chosen}"

    def set_gpus(self, indices: list[int]) -> None:
        if not self._gpus:
            self._gpus = list(indices)

    def _job_for(self, task: TaskRecord, device: str | None = None) -> TrainingJob:
        uploads = self._config.uploads_dir
        return TrainingJob(
            task_id=task.task_id,
            training_data_path=str(uploads / task.training_data_file),
            validation_data_path=str(uploads / task.validation_data_file) if task.validation_data_file else None,
            base_model=task.base_model,
            base_models_dir=str(self._config.effective_base_models_dir),
            output_dir=str(self._config.models_dir / task.task_id),
            hyperparameters=task.hyperparameters,
            report_interval=self._config.progress_report_interval,
            cpu_threads=max(1, len(self._config.worker_cpus or range(os.cpu_count() or 1))
                            // self._config.max_concurrent_tasks),
            device=device,
        )

    # ---- supervising one worker --------------------------------------------------------------

    async def _supervise(self, handle: WorkerHandle, task: TaskRecord) -> None:
        progress = dict(task.progress or initial_progress(task.hyperparameters))
        last_write = 0.0
        verdict: dict[str, Any] | None = None
        exitcode: int | None = None
        try:
            while True:
                message = await handle.messages.get()
                kind = message.get("type")
                if kind == "progress":
                    phase_changed = message.get("phase", progress.get("phase")) != progress.get("phase")
                    progress.update({k: message[k] for k in PROGRESS_FIELDS if k in message})
                    if progress.get("samples_per_second"):
                        self._speeds[task.task_id] = progress["samples_per_second"]
                    self._hub.publish(task.task_id, {"type": "progress", **progress})
                    # Phase changes are rare and users wait on them: write those at once.
                    if phase_changed or time.monotonic() - last_write >= self._config.progress_write_interval:
                        last_write = time.monotonic()
                        await self._store.set_progress(task.task_id, progress)
                elif kind == "epoch":
                    progress.update({k: message[k] for k in PROGRESS_FIELDS if k in message})
                    progress["current_epoch"] = message["epoch"]
                    # Evaluation is over; the worker says "saving" if this was the last epoch.
                    progress["phase"] = "training"
                    last_write = time.monotonic()
                    await self._store.set_progress(task.task_id, progress)
                    await self._on_epoch(task, message)
                elif kind == "evaluation":
                    data = {k: message[k] for k in ("epoch", "step", "val_loss", "val_accuracy", "val_macro_f1",
                                                    "is_best") if k in message}
                    await self._store.add_event(task.task_id, "evaluation", data)
                    self._hub.publish(task.task_id, {"type": "evaluation", **data})
                elif kind == "warning":
                    logger.warning("task {}: {}", task.task_id, message["message"])
                    await self._store.add_event(task.task_id, "warning", {"message": message["message"]})
                    self._hub.publish(task.task_id, {"type": "warning", "message": message["message"]})
                elif kind in ("completed", "stopped", "failed"):
                    verdict = message
                elif kind == "exited":
                    exitcode = message["exitcode"]
                    break
        finally:
            await asyncio.shield(self._conclude(handle, task, progress, verdict, exitcode))

    async def _on_epoch(self, task: TaskRecord, message: dict[str, Any]) -> None:
        data = {k: message[k] for k in EPOCH_EVENT_FIELDS if k in message}
        await self._store.add_event(task.task_id, "epoch", data)
        self._hub.publish(task.task_id, {"type": "epoch", **data, "total_epochs": message.get("total_epochs")})
        logger.info("task {} epoch {}/{}: val_accuracy {:.4f}, val_macro_f1 {:.4f}", task.task_id, message["epoch"],
                    message.get("total_epochs"), message["val_accuracy"], message["val_macro_f1"])
        if task.callback_url:
            self._callbacks.send(task.task_id, task.callback_url,
                                 {"event": "task.epoch", "task_id": task.task_id, "epoch": message["epoch"],
                                  "metrics": data})

    async def _conclude(
        self,
        handle: WorkerHandle,
        task: TaskRecord,
        progress: dict[str, Any],
        verdict: dict[str, Any] | None,
        exitcode: int | None,
    ) -> None:
        try:
            kind = verdict["type"] if verdict else None
            stop_reason = self._stop_reasons.pop(task.task_id, None)
            if kind == "completed":
                assert verdict is not None
                final = {**progress, "phase": "completed", "progress_percentage": 100.0, "eta_seconds": 0}
                await self._end(task, TaskStatus.COMPLETED, progress=final, metrics=verdict["metrics"],
                                artifacts=verdict["artifacts"])
            elif kind == "stopped" or (kind is None and stop_reason is not None):
                self._remove_artifacts(task.task_id)
                await self._end(task, TaskStatus.STOPPED, progress={**progress, "phase": "stopped"},
                                error_message=stop_reason if stop_reason and "shut down" in stop_reason else None)
            elif kind == "failed":
                assert verdict is not None
                logger.error("task {} worker traceback:\n{}", task.task_id, verdict.get("traceback", "").rstrip())
                await self._end(task, TaskStatus.FAILED, progress={**progress, "phase": "failed"},
                                error_message=verdict["error"])
            else:
                self._remove_artifacts(task.task_id)
                message = (f"the worker process died with {describe_exit(exitcode)} during "
                           f"{progress.get('phase', 'training')} (epoch {progress.get('current_epoch') or 0}); "
                           "if it was killed for memory, lower batch_size or max_sequence_length")
                await self._end(task, TaskStatus.FAILED, progress={**progress, "phase": "failed"},
                                error_message=message)
        finally:
            self._speeds.pop(task.task_id, None)
            self._gpu_of.pop(task.task_id, None)
            self._running.pop(task.task_id, None)
            self._supervisors.pop(task.task_id, None)
            finished = self._finished.pop(task.task_id, None)
            if finished is not None:
                finished.set()
            self._wake.set()

    async def _end(self, task: TaskRecord, target: TaskStatus, **fields: Any) -> TaskRecord | None:
        before = await self._store.get_task(task.task_id)
        updated = await self._store.transition(task.task_id, target, finished_at=utc_now(), **fields)
        if updated is None:
            return None
        self._announce(before.status if before else "?", updated, fields.get("error_message") or "")
        return updated

    def _announce(self, source: str, task: TaskRecord, detail: str = "") -> None:
        """Tell everyone about a transition that is already persisted: the log, the hub (and
        for an ended task its `end` message and the callback)."""
        log_transition(task.task_id, source, task.status, detail)
        status_message = {"type": "status", "status": str(task.status)}
        if task.error_message:
            status_message["error_message"] = task.error_message
        self._hub.publish(task.task_id, status_message)
        if task.status in TERMINAL_STATUSES:
            observe_task_end(self._metrics, task)
            self._hub.publish(task.task_id, {"type": "end", "task": task.to_json()})
            if task.callback_url:
                self._callbacks.send(task.task_id, task.callback_url,
                                     {"event": f"task.{task.status}", "task": task.to_json()})

    # ---- stop and delete ---------------------------------------------------------------------

    async def stop(self, task_id: str) -> TaskRecord | None:
        """Stop a task: a queued one at once, a training one through its worker.
        Returns the task as it now is, or None if it does not exist."""
        task = await self._store.get_task(task_id)
        if task is None:
            return None
        if task.status == TaskStatus.QUEUED:
            ended = await self._end(task, TaskStatus.STOPPED, progress={**initial_progress(task.hyperparameters),
                                                                        "phase": "stopped"})
            if ended is not None:
                return ended
            task = await self._store.get_task(task_id)  # it was claimed meanwhile: stop the worker
            if task is None:
                return None
        if task.status == TaskStatus.TRAINING:
            updated = await self._store.transition(task_id, TaskStatus.STOPPING)
            if updated is not None:
                self._announce(TaskStatus.TRAINING, updated)
                handle = self._running.get(task_id)
                if handle is not None:
                    self._stop_reasons.setdefault(task_id, "stopped on request")
                    handle.request_stop()
                    asyncio.create_task(self._wait_or_kill(handle), name=f"stop-{task_id[:8]}")
                return updated
        return await self._store.get_task(task_id)

    async def _wait_or_kill(self, handle: WorkerHandle) -> None:
        """Give a stopping worker the grace period, then SIGTERM, then SIGKILL."""
        for action, wait in ((handle.terminate, self._config.stop_grace_seconds),
                             (handle.kill, self._config.kill_wait_seconds)):
            try:
                await asyncio.wait_for(handle.exited.wait(), wait)
                return
            except TimeoutError:
                logger.warning("task {} worker did not exit within {:g} s; sending {}", handle.task_id, wait,
                               action.__name__)
                action()
        await handle.exited.wait()

    async def wait_until_finished(self, task_id: str) -> None:
        finished = self._finished.get(task_id)
        if finished is not None:
            await finished.wait()

    async def delete(self, task_id: str) -> bool:
        """Stop the task if it is active, then remove its record, events and artifacts."""
        task = await self.stop(task_id)
        if task is None:
            return False
        await self.wait_until_finished(task_id)
        deleted = await self._store.delete_task(task_id)
        self._remove_artifacts(task_id)
        if deleted:
            logger.info("task {} deleted", task_id)
        return deleted

    def _remove_artifacts(self, task_id: str) -> None:
        remove_model_files(self._config.models_dir / task_id)

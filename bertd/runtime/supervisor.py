"""Following one run: apply each of its messages to the task (store first, then the announcer),
and decide from how it ended what the task becomes. The conclusion itself is the scheduler's."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from bertd.i18n import Text
from bertd.protocol import (
    PROGRESS_FIELDS,
    Artifacts,
    CheckpointFailed,
    CheckpointReport,
    Completed,
    EpochReport,
    EvaluationReport,
    Exited,
    Failed,
    Paused,
    Phase,
    Progress,
    ProgressReport,
    ResumedReport,
    Started,
    Stopped,
    StopReason,
    TaskError,
    Verdict,
    WarningReport,
)
from bertd.runtime.announcer import Announcer
from bertd.runtime.executor import Run
from bertd.state.records import TaskRecord, TaskStatus, utc_now, warning_data
from bertd.state.store import Store


@dataclass(eq=False)
class ActiveRun:
    """A task the executor is running, and what the server knows of it so far."""

    task: TaskRecord
    run: Run
    progress: Progress
    stop_reason: StopReason | None = None
    verdict: Verdict | None = None
    exited: Exited | None = None
    # Epoch and evaluation results up to this step were recorded (and called back) already: a run
    # continuing from a checkpoint may report some of them again.
    reported_step: int = 0
    # Left running on its worker when the API node shut down: not concluded here.
    detached: bool = False
    finished: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def task_id(self) -> str:
        return self.task.task_id


@dataclass(frozen=True)
class Ending:
    """What a run's task becomes once the run is over."""

    status: TaskStatus
    progress: Progress
    error: TaskError | None = None
    # For a stopped task: why, when it was not a user's request.
    stop_message: str | None = None
    metrics: dict | None = None
    artifacts: Artifacts | None = None
    # A traceback worth logging: an unexpected failure inside the run.
    traceback: str | None = None

    @property
    def keeps_model(self) -> bool:
        return self.status == TaskStatus.COMPLETED

    @property
    def error_message(self) -> str | None:
        return self.error.text if self.error is not None else self.stop_message

    @property
    def keeps_checkpoint(self) -> bool:
        """Paused and requeued tasks continue from it; an ended task needs it no more."""
        return self.status in (TaskStatus.PAUSED, TaskStatus.QUEUED)


def ending_of(active: ActiveRun, resume_after_shutdown: bool) -> Ending:
    progress, reason = active.progress, active.stop_reason
    match active.verdict:
        case Completed(metrics=metrics, artifacts=artifacts):
            return Ending(TaskStatus.COMPLETED, progress.updated(phase=Phase.COMPLETED, progress_percentage=100.0,
                                                                 eta_seconds=0),
                          metrics=metrics, artifacts=artifacts)
        case Failed(error=error, detail=detail, expected=expected, traceback=traceback):
            return Ending(TaskStatus.FAILED, progress.updated(phase=Phase.FAILED),
                          error=detail or TaskError.of("training_error", error),
                          traceback=None if expected else traceback)
        case Paused() if reason == StopReason.PAUSE:
            return Ending(TaskStatus.PAUSED, progress.updated(phase=Phase.PAUSED, eta_seconds=None))
    if reason == StopReason.SHUTDOWN and resume_after_shutdown:
        # Whatever the run managed (a checkpoint, or none: then it starts over), it goes on at the next start.
        return Ending(TaskStatus.QUEUED, progress.updated(phase=Phase.QUEUED, eta_seconds=None,
                                                          samples_per_second=None))
    if reason is not None or isinstance(active.verdict, Stopped | Paused):
        message = "the server shut down while it was training" if reason == StopReason.SHUTDOWN else None
        return Ending(TaskStatus.STOPPED, progress.updated(phase=Phase.STOPPED), stop_message=message)
    detail = active.exited.detail if active.exited and active.exited.detail else Text("an unknown exit status")
    return Ending(TaskStatus.FAILED, progress.updated(phase=Phase.FAILED), error=TaskError.of(
        "worker_died",
        Text("the worker process died with {detail} during {phase} (epoch {epoch})", detail=detail,
             phase=str(progress.phase), epoch=progress.current_epoch),
        Text("if it was killed for memory, lower batch_size or max_sequence_length")))


def _data(message: EpochReport | EvaluationReport, exclude: set[str] | None = None) -> dict:
    """A result message as an event's data: what it reports, without the envelope."""
    return message.model_dump(mode="json", exclude={"type", "origin", "sent_at", *(exclude or ())})


class ProgressWriter:
    """Progress goes to the hub at once and to SQLite at most every `interval` seconds (phase
    changes at once: they are rare and users wait on them)."""

    def __init__(self, store: Store, interval: float) -> None:
        self._store = store
        self._interval = interval
        self._last_write = 0.0

    async def write(self, task_id: str, progress: Progress, urgent: bool = False) -> None:
        if urgent or time.monotonic() - self._last_write >= self._interval:
            self._last_write = time.monotonic()
            await self._store.set_progress(task_id, progress)


async def follow(active: ActiveRun, store: Store, announcer: Announcer, write_interval: float) -> None:
    """Apply the run's messages until it has exited, keeping `active` up to date as it goes (so
    whoever concludes the task after a cancellation knows as much as possible)."""
    task_id = active.task_id
    writer = ProgressWriter(store, write_interval)
    active.reported_step = await store.last_reported_step(task_id)
    async for message in active.run.messages():
        match message:
            case ProgressReport():
                # A pause under way shows until the run ends, whatever phase the worker reports.
                changes = message.changes()
                if active.stop_reason == StopReason.PAUSE:
                    changes["phase"] = Phase.PAUSING
                phase_changed = changes.get("phase", active.progress.phase) != active.progress.phase
                active.progress = active.progress.updated(**changes)
                announcer.progress(task_id, active.progress, message.sent_at)
                await writer.write(task_id, active.progress, urgent=phase_changed)
            case EpochReport():
                shared = {name: value for name, value in message.model_dump().items() if name in PROGRESS_FIELDS}
                # Evaluation is over; the worker says "saving" if this was the last epoch.
                active.progress = active.progress.updated(**shared, phase=Phase.TRAINING, current_epoch=message.epoch)
                await writer.write(task_id, active.progress, urgent=True)
                if message.step > active.reported_step:
                    active.reported_step = message.step
                    if await store.add_event(task_id, "epoch", _data(message, exclude={"total_epochs"}),
                                             message.origin):
                        announcer.epoch(active.task, message)
            case EvaluationReport():
                if message.step > active.reported_step:
                    active.reported_step = message.step
                    if await store.add_event(task_id, "evaluation", _data(message), message.origin):
                        announcer.evaluation(task_id, message)
            case WarningReport():
                if await store.add_event(task_id, "warning", warning_data(message.message, message.text),
                                         message.origin):
                    announcer.warning(task_id, message.message)
            case CheckpointReport():
                await store.set_checkpoint(task_id, {"epoch": message.epoch, "step": message.step,
                                                     "size_bytes": message.size_bytes, "at": utc_now()})
                announcer.checkpoint(task_id, message)
            case CheckpointFailed():
                text = Text("could not write the checkpoint of epoch {epoch}, step {step} ({reason}); training goes "
                            "on without it", epoch=message.epoch, step=message.step, reason=message.reason)
                if await store.add_event(task_id, "warning", warning_data(str(text), text), message.origin):
                    announcer.checkpoint_failed(task_id, str(text))
            case ResumedReport():
                data = {"epoch": message.epoch, "step": message.step, "epoch_complete": message.epoch_complete,
                        "interruptions": active.task.interruptions}
                if await store.add_event(task_id, "resumed", data, message.origin):
                    announcer.resumed(task_id, data)
            case Started(worker=worker):
                await store.set_worker(task_id, worker)
                if await store.add_event(task_id, "started", {"worker": worker}, message.origin):
                    announcer.started(task_id, worker)
            case Completed() | Stopped() | Paused() | Failed():
                active.verdict = message
            case Exited():
                active.exited = message

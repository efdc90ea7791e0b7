"""Following one prediction run (the sibling of supervisor.py for training runs): apply its messages
to the job (store first, then the announcer), and decide from how it ended what the job becomes."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bertd.i18n import Text
from bertd.protocol import (
    Exited,
    Failed,
    PredictionCompleted,
    PredictionProgress,
    Stopped,
    StopReason,
    TaskError,
    Verdict,
    WarningReport,
)
from bertd.runtime.announcer import Announcer
from bertd.runtime.executor import Run
from bertd.state.records import PredictionRecord, PredictionStatus, warning_data
from bertd.state.store import Store


@dataclass(eq=False)
class ActivePrediction:
    """A prediction job the executor is running, and what the server knows of it so far."""

    job: PredictionRecord
    run: Run
    output_path: Path
    stop_reason: StopReason | None = None
    verdict: Verdict | None = None
    exited: Exited | None = None
    finished: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def prediction_id(self) -> str:
        return self.job.prediction_id


@dataclass(frozen=True)
class PredictionEnding:
    """What a prediction job becomes once its run is over: a status and the columns to set."""

    status: PredictionStatus
    fields: dict[str, Any]
    # A traceback worth logging: an unexpected failure inside the run.
    traceback: str | None = None


def prediction_ending(active: ActivePrediction, requeue_after_shutdown: bool) -> PredictionEnding:
    reason = active.stop_reason
    match active.verdict:
        case PredictionCompleted() as done:
            return PredictionEnding(PredictionStatus.COMPLETED, {
                "phase": "completed", "rows_done": done.rows_total, "rows_total": done.rows_total,
                "rows_empty": done.rows_empty, "rows_below_threshold": done.rows_below_threshold,
                "label_counts": done.label_counts, "columns": done.columns, "output_path": done.output_path,
                "seconds": done.seconds, "rows_per_second": done.rows_per_second})
        case Failed(error=error, expected=expected, traceback=traceback):
            return PredictionEnding(PredictionStatus.FAILED, {"phase": "failed", "error_message": error,
                                                              "error": active.verdict.detail},
                                    None if expected else traceback)
    if reason == StopReason.SHUTDOWN and requeue_after_shutdown:
        # It has no checkpoint: it runs again from the start at the next start of the server.
        return PredictionEnding(PredictionStatus.QUEUED, {"phase": None, "rows_done": 0, "rows_per_second": None})
    if reason is not None or isinstance(active.verdict, Stopped):
        if reason != StopReason.SHUTDOWN:
            return PredictionEnding(PredictionStatus.STOPPED, {"phase": "stopped", "error_message": None})
        return PredictionEnding(PredictionStatus.STOPPED, error_fields("stopped", TaskError.of(
            "shutdown", Text("the server shut down while it was running"), Text("create it again"))))
    detail = active.exited.detail if active.exited else "an unknown exit status"
    return PredictionEnding(PredictionStatus.FAILED, error_fields("failed", TaskError.of(
        "worker_died", Text("the worker process died with {detail} while {phase}", detail=detail,
                            phase=active.job.phase or "starting"),
        Text("if it was killed for memory, split the sheet into smaller files"))))


def error_fields(phase: str, error: TaskError) -> dict[str, Any]:
    """A job's ending fields for `error`: its English text, and the error itself for other languages."""
    return {"phase": phase, "error_message": error.text, "error": error}



async def follow_prediction(active: ActivePrediction, store: Store, announcer: Announcer,
                            write_interval: float) -> None:
    """Apply the run's messages until it has exited, keeping `active.job` up to date: progress goes
    to the hub at once and to SQLite at most every `write_interval` seconds (phase changes at once)."""
    last_write = 0.0
    async for message in active.run.messages():
        match message:
            case PredictionProgress():
                changes = message.model_dump(include=message.model_fields_set - {"type"}, mode="json")
                phase_changed = changes.get("phase", active.job.phase) != active.job.phase
                active.job = dataclasses.replace(active.job, **changes)
                announcer.prediction_progress(active.job)
                if phase_changed or time.monotonic() - last_write >= write_interval:
                    last_write = time.monotonic()
                    await store.set_prediction_progress(active.prediction_id, **changes)
            case WarningReport():
                await store.add_event(active.job.task_id, "warning", {
                    **warning_data(message.message, message.text), "prediction_id": active.prediction_id})
            case PredictionCompleted() | Stopped() | Failed():
                active.verdict = message
            case Exited():
                active.exited = message

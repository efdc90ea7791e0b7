"""Plain domain types: task states and their allowed transitions, file, task, event and base model
download records."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from bertd.i18n import ENGLISH, Language, Text
from bertd.protocol import Artifacts, Hyperparameters, Progress, TaskError
from bertd.sheets import SheetInfo


class TaskStatus(enum.StrEnum):
    QUEUED = "queued"
    TRAINING = "training"
    STOPPING = "stopping"
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"
    STOPPED = "stopped"


# Tasks that hold on to their data files and base model: these may not be deleted under them.
ACTIVE_STATUSES = frozenset({TaskStatus.QUEUED, TaskStatus.TRAINING, TaskStatus.STOPPING, TaskStatus.PAUSED})
# Tasks a worker runs (or ran until a crash): training, or stopping on the way out.
RUNNING_STATUSES = frozenset({TaskStatus.TRAINING, TaskStatus.STOPPING})
TERMINAL_STATUSES = frozenset({TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.STOPPED})

# Every status change is a guarded UPDATE ... WHERE status IN (the sources allowed here).
# training -> queued: back in the queue to continue from a checkpoint after a restart.
ALLOWED_TRANSITIONS: dict[TaskStatus, frozenset[TaskStatus]] = {
    TaskStatus.QUEUED: frozenset({TaskStatus.TRAINING, TaskStatus.STOPPED, TaskStatus.FAILED, TaskStatus.PAUSED}),
    TaskStatus.TRAINING: frozenset(
        {TaskStatus.STOPPING, TaskStatus.COMPLETED, TaskStatus.FAILED, TaskStatus.STOPPED, TaskStatus.PAUSED,
         TaskStatus.QUEUED}
    ),
    TaskStatus.STOPPING: frozenset({TaskStatus.STOPPED, TaskStatus.FAILED, TaskStatus.COMPLETED}),
    TaskStatus.PAUSED: frozenset({TaskStatus.QUEUED, TaskStatus.STOPPED, TaskStatus.FAILED}),
    TaskStatus.COMPLETED: frozenset(),
    TaskStatus.FAILED: frozenset(),
    TaskStatus.STOPPED: frozenset(),
}


def sources_of(target: TaskStatus) -> tuple[TaskStatus, ...]:
    """The statuses a task may be in for a move to `target` to be allowed."""
    return tuple(source for source, targets in ALLOWED_TRANSITIONS.items() if target in targets)


def utc_now() -> str:
    """Now as ISO 8601 in UTC with second precision, the form API.md uses."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class FileRecord:
    filename: str
    size_bytes: int
    sha256: str
    uploaded_at: str
    sheets: list[SheetInfo]

    def to_json(self) -> dict[str, Any]:
        return {
            "filename": self.filename,
            "size_bytes": self.size_bytes,
            "sha256": self.sha256,
            "uploaded_at": self.uploaded_at,
            "sheets": [sheet.to_json() for sheet in self.sheets],
        }

    def sheet(self, name: str | None) -> SheetInfo | None:
        """The named sheet, or the first one when name is None."""
        if name is None:
            return self.sheets[0] if self.sheets else None
        return next((sheet for sheet in self.sheets if sheet.name == name), None)


@dataclass(frozen=True)
class TaskRecord:
    seq: int
    task_id: str
    status: TaskStatus
    model_name_cn: str
    model_name_en: str
    base_model: str
    training_data_file: str
    validation_data_file: str | None
    hyperparameters: Hyperparameters
    callback_url: str | None
    created_at: str
    started_at: str | None = None
    finished_at: str | None = None
    progress: Progress | None = None
    metrics: dict[str, Any] | None = None
    artifacts: Artifacts | None = None
    error_message: str | None = None
    callback: dict[str, Any] | None = None
    queue_position: int | None = None
    # A failed task's error, structured; error_message is its text.
    error: TaskError | None = None
    updated_at: str | None = None
    # Dispatch order is priority (higher first), then seq: tasks continuing after a restart go first.
    priority: int = 0
    # How often a restart of the server interrupted this task (each continues from its checkpoint).
    interruptions: int = 0
    # The newest checkpoint: {"epoch", "step", "size_bytes", "at"}; None before the first one.
    checkpoint: dict[str, Any] | None = None
    # With the cluster executor: the box that runs (or ran) the task, its current run, and how far
    # the run's message stream has been applied.
    worker: str | None = None
    run_id: str | None = None
    message_cursor: str | None = None

    @property
    def current_progress(self) -> Progress:
        """The stored progress, or the initial one of a task that has not reported any."""
        return self.progress or Progress.initial(self.hyperparameters)

    def to_json(self, language: Language = ENGLISH) -> dict[str, Any]:
        """The API's task; a failed task's error and error_message in `language` (bertd.i18n)."""
        return {
            "task_id": self.task_id,
            "status": str(self.status),
            "model_name_cn": self.model_name_cn,
            "model_name_en": self.model_name_en,
            "base_model": self.base_model,
            "training_data_file": self.training_data_file,
            "validation_data_file": self.validation_data_file,
            "hyperparameters": self.hyperparameters.model_dump(mode="json"),
            "callback_url": self.callback_url,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "updated_at": self.updated_at,
            "queue_position": self.queue_position,
            "progress": self.current_progress.model_dump(mode="json"),
            "metrics": self.metrics,
            "artifacts": self.artifacts.model_dump(mode="json") if self.artifacts else None,
            "error_message": self.error.text_in(language) if self.error else self.error_message,
            "error": self.error.localized(language) if self.error else None,
            "callback": self.callback,
            "checkpoint": self.checkpoint,
            "interruptions": self.interruptions,
            "worker": self.worker,
        }


@dataclass(frozen=True)
class TaskEvent:
    id: int
    task_id: str
    at: str
    type: str
    data: dict[str, Any] = field(default_factory=dict)

    def to_json(self, language: Language = ENGLISH) -> dict[str, Any]:
        """The event; a message kept with its catalogue entry (`text`) is given in `language`."""
        data = self.data
        if "text" in data:
            data = {name: value for name, value in data.items() if name != "text"}
            data["message"] = Text.model_validate(self.data["text"]).render(language)
        return {"id": self.id, "at": self.at, "type": self.type, "data": data}


def warning_data(message: str, text: Text | None) -> dict[str, Any]:
    """A warning event's data: the English message, and its catalogue entry when it has one."""
    return {"message": message, "text": text.model_dump(mode="json")} if text else {"message": message}


class DownloadStatus(enum.StrEnum):
    DOWNLOADING = "downloading"
    FAILED = "failed"


@dataclass(frozen=True)
class DownloadRecord:
    """A base model download the server was asked for, while it runs or after it failed."""

    name: str
    source: str
    revision: str | None
    status: DownloadStatus
    started_at: str
    updated_at: str
    bytes_done: int = 0
    bytes_total: int | None = None
    error: TaskError | None = None
class PredictionStatus(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    STOPPED = "stopped"


PREDICTION_TERMINAL = frozenset({PredictionStatus.COMPLETED, PredictionStatus.FAILED, PredictionStatus.STOPPED})
# running -> queued: back in the queue after a shutdown or crash, to run again from the start.
PREDICTION_TRANSITIONS: dict[PredictionStatus, frozenset[PredictionStatus]] = {
    PredictionStatus.QUEUED: frozenset({PredictionStatus.RUNNING, PredictionStatus.STOPPED, PredictionStatus.FAILED}),
    PredictionStatus.RUNNING: frozenset({PredictionStatus.COMPLETED, PredictionStatus.FAILED, PredictionStatus.STOPPED,
                                         PredictionStatus.QUEUED}),
    PredictionStatus.COMPLETED: frozenset(),
    PredictionStatus.FAILED: frozenset(),
    PredictionStatus.STOPPED: frozenset(),
}


def prediction_sources_of(target: PredictionStatus) -> tuple[PredictionStatus, ...]:
    return tuple(source for source, targets in PREDICTION_TRANSITIONS.items() if target in targets)


@dataclass(frozen=True)
class PredictionRecord:
    """A prediction job: one sheet of an upload through a completed task's model."""

    seq: int
    prediction_id: str
    task_id: str
    status: PredictionStatus
    file: str
    sheet_name: str
    text_column: str
    top_k: int
    threshold: float | None
    # The newest task seq when the job was created: tasks with a larger one came after it.
    tasks_seq: int
    created_at: str
    started_at: str | None = None
    finished_at: str | None = None
    phase: str | None = None
    rows_done: int = 0
    rows_total: int | None = None
    rows_per_second: float | None = None
    rows_empty: int | None = None
    rows_below_threshold: int | None = None
    label_counts: dict[str, int] | None = None
    columns: list[str] | None = None
    output_path: str | None = None
    seconds: float | None = None
    error_message: str | None = None
    # Why it failed or stopped, structured (error_message is its English text).
    error: TaskError | None = None
    # 1 = the next job to start (tasks and prediction jobs together); None unless queued.
    queue_position: int | None = None

    @property
    def download_name(self) -> str:
        """What the result is called when downloaded: <input stem>-predicted<suffix>."""
        stem, dot, suffix = self.file.rpartition(".")
        return f"{stem}-predicted.{suffix}" if dot else f"{self.file}-predicted"

    @property
    def progress_percentage(self) -> float:
        if self.status == PredictionStatus.COMPLETED:
            return 100.0
        return round(100.0 * self.rows_done / self.rows_total, 2) if self.rows_total else 0.0

    def to_json(self, language: Language = ENGLISH) -> dict[str, Any]:
        """The API's job; its error_message in `language` (bertd.i18n)."""
        remaining = (self.rows_total or 0) - self.rows_done
        eta = (round(remaining / self.rows_per_second, 1) if self.status == PredictionStatus.RUNNING
               and self.rows_per_second and self.rows_total else None)
        return {
            "prediction_id": self.prediction_id,
            "task_id": self.task_id,
            "status": str(self.status),
            "file": self.file,
            "sheet_name": self.sheet_name,
            "text_column": self.text_column,
            "top_k": self.top_k,
            "threshold": self.threshold,
            "created_at": self.created_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "queue_position": self.queue_position,
            "phase": self.phase or str(self.status),
            "progress": self.progress_percentage,
            "rows_done": self.rows_done,
            "rows_total": self.rows_total,
            "rows_per_second": self.rows_per_second,
            "eta_seconds": eta,
            "rows_empty": self.rows_empty,
            "rows_below_threshold": self.rows_below_threshold,
            "label_counts": self.label_counts,
            "output_columns": self.columns,
            "seconds": self.seconds,
            "download_name": self.download_name if self.status == PredictionStatus.COMPLETED else None,
            "error_message": self.error.text_in(language) if self.error else self.error_message,
        }

"""What crosses the boundary between the server and whatever runs training or predictions.

Both sides import this module and nothing else of each other: the jobs a worker runs (a training
job with its typed hyperparameters, or a prediction job over a sheet), every message a worker sends
back, the one `Progress` shape the API shows, and the errors a run ends with. Everything here is a
frozen pydantic model, so the same types travel pickled through a local pipe or as JSON through a
broker. Imports neither torch nor aiohttp nor aiosqlite."""

from __future__ import annotations

import enum
import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
)

from bertd.hyperparameters import (  # noqa: F401 - the training job's settings, part of the contract
    DEFAULT_LEARNING_RATE,
    LORA_DEFAULT_LEARNING_RATE,
    Frozen,
    Hyperparameters,
    LoraSettings,
    NonEmptyText,
    TargetModules,
)
from bertd.i18n import Text
from bertd.prediction_protocol import (  # noqa: F401 - the prediction job's part of the contract
    PredictionCompleted,
    PredictionJob,
    PredictionPhase,
    PredictionProgress,
)
from bertd.task_error import TaskError  # noqa: F401 - how a run ends, part of the contract

# ---- progress ----------------------------------------------------------------------------------


class Phase(enum.StrEnum):
    QUEUED = "queued"
    # Queued, and waiting for its base model to be downloaded; holds no training slot meanwhile.
    DOWNLOADING_BASE_MODEL = "downloading_base_model"
    STARTING = "starting"
    LOADING_DATA = "loading_data"
    LOADING_MODEL = "loading_model"
    TRAINING = "training"
    EVALUATING = "evaluating"
    SAVING = "saving"
    PAUSING = "pausing"  # a checkpoint at the next step, then the slot is freed
    PAUSED = "paused"
    COMPLETED = "completed"
    FAILED = "failed"
    STOPPED = "stopped"


class Progress(BaseModel):
    """A task's progress: in the API's task object, on the WebSocket, and what workers report."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    phase: Phase = Phase.QUEUED
    current_epoch: int = 0
    total_epochs: int | None = None
    step: int = 0
    total_steps: int | None = None
    progress_percentage: float = 0.0
    train_loss: float | None = None
    train_accuracy: float | None = Field(None, description="Over the epoch so far.")
    val_loss: float | None = None
    val_accuracy: float | None = None
    val_macro_f1: float | None = None
    learning_rate: float | None = None
    samples_per_second: float | None = None
    eta_seconds: float | None = None
    download_bytes_done: int | None = Field(None, description=(
        "In phase downloading_base_model: bytes of the base model downloaded so far (else null)."))
    download_bytes_total: int | None = Field(None, description=(
        "In phase downloading_base_model: the base model's size in bytes, once the hub has said (else null)."))

    @classmethod
    def initial(cls, hyperparameters: Hyperparameters) -> Progress:
        return cls(total_epochs=hyperparameters.epochs)

    def updated(self, **changes: Any) -> Progress:
        return self.model_copy(update=changes)


PROGRESS_FIELDS = tuple(Progress.model_fields)


# ---- the job -----------------------------------------------------------------------------------


class TrainingJob(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    task_id: str
    training_data_path: str
    validation_data_path: str | None
    base_model: str
    base_models_dir: str
    # Where the finished model goes; it is written to partial_path(output_dir) first, then renamed.
    output_dir: str
    hyperparameters: Hyperparameters
    # Seconds between two progress reports; epoch ends are always reported.
    report_interval: float = 0.5
    # CPU threads for torch when training on the CPU: the cores shared among concurrent tasks,
    # so two tasks on two cores do not each run two threads and thrash.
    cpu_threads: int | None = None
    # "cuda:N" when the scheduler gave this job a GPU of its own; None: the first GPU, else the CPU.
    device: str | None = None
    # Where the run keeps its checkpoints (one folder per task); it continues from the newest
    # complete one found there. None: no checkpoints.
    checkpoint_dir: str | None = None


Job = TrainingJob | PredictionJob


def partial_path(model_dir: Path) -> Path:
    """The sibling a model (or a prediction's result) is written into before it is renamed into place."""
    return model_dir.with_name(model_dir.name + ".partial")


# ---- worker messages ---------------------------------------------------------------------------


class Message(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    # Where the message came from when it travelled through a broker (its stream entry): what it
    # records is recorded once, however often it is read (an API node restarting mid-stream).
    origin: str | None = None
    # When the worker sent it (Unix seconds): how fresh a progress message is when it arrives.
    sent_at: float | None = None


class ProgressReport(Message):
    """Only the fields the worker sets are applied (`model_fields_set`); the rest stay as they were."""

    type: Literal["progress"] = "progress"
    phase: Phase
    current_epoch: int | None = None
    total_epochs: int | None = None
    step: int | None = None
    total_steps: int | None = None
    progress_percentage: float | None = None
    train_loss: float | None = None
    train_accuracy: float | None = None
    learning_rate: float | None = None
    samples_per_second: float | None = None
    eta_seconds: float | None = None

    def changes(self) -> dict[str, Any]:
        return self.model_dump(include=self.model_fields_set - {"type", "origin", "sent_at"})


class EvaluationReport(Message):
    """A mid-epoch evaluation (hyperparameters.evaluation_steps)."""

    type: Literal["evaluation"] = "evaluation"
    epoch: int
    step: int
    val_loss: float
    val_accuracy: float
    val_macro_f1: float
    is_best: bool


class EpochReport(Message):
    """The validation figures are None when the task has no validation rows (train_val_split 0)."""

    type: Literal["epoch"] = "epoch"
    epoch: int
    total_epochs: int
    step: int
    train_loss: float
    train_accuracy: float
    val_loss: float | None
    val_accuracy: float | None
    val_macro_f1: float | None
    is_best: bool
    per_class: dict[str, dict[str, float]] = Field(default_factory=dict)
    confusion_matrix: list[list[int]] = Field(default_factory=list)
    samples_per_second: float | None = None


class WarningReport(Message):
    type: Literal["warning"] = "warning"
    message: str
    # The message as a catalogue entry, so the API shows it in a reader's language.
    text: Text | None = None

    @classmethod
    def of(cls, text: Text) -> WarningReport:
        return cls(message=str(text), text=text)


class Artifacts(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    model_path: str
    label_mapping_path: str | None = None
    metrics_path: str | None = None


class Completed(Message):
    type: Literal["completed"] = "completed"
    metrics: dict[str, Any]
    artifacts: Artifacts | None


class Stopped(Message):
    type: Literal["stopped"] = "stopped"


class Paused(Message):
    """Stopped after writing a checkpoint: the task can continue from `epoch` / `step`."""

    type: Literal["paused"] = "paused"
    epoch: int
    step: int


class Failed(Message):
    type: Literal["failed"] = "failed"
    # The error as one line (TaskError.text); `detail` is the same, structured.
    error: str
    detail: TaskError | None = None
    # A known input error (TrainingInputError) is one log line; anything else logs its traceback.
    expected: bool = False
    traceback: str = ""


class Exited(Message):
    """The last message of every run: the process (or the box running it) is gone."""

    type: Literal["exited"] = "exited"
    exitcode: int | None
    # What ended it, in words, when the exit code alone does not say (e.g. a worker box lost).
    detail: Text | str | None = None


class Started(Message):
    """A worker box took the run (the cluster executor's first message)."""

    type: Literal["started"] = "started"
    worker: str


class CheckpointReport(Message):
    """A checkpoint is complete on disk."""

    type: Literal["checkpoint"] = "checkpoint"
    epoch: int
    step: int
    size_bytes: int
    seconds: float
    path: str


class CheckpointFailed(Message):
    """A checkpoint could not be written (e.g. the disk is full); training goes on without it."""

    type: Literal["checkpoint_failed"] = "checkpoint_failed"
    epoch: int
    step: int
    reason: str


class ResumedReport(Message):
    """The run continues from a checkpoint instead of starting over."""

    type: Literal["resumed"] = "resumed"
    epoch: int  # the epoch the checkpoint was taken in
    step: int
    epoch_complete: bool


WorkerMessage = Annotated[
    Started | ProgressReport | EvaluationReport | EpochReport | WarningReport | CheckpointReport | CheckpointFailed
    | ResumedReport | PredictionProgress | Completed | PredictionCompleted | Stopped | Paused | Failed | Exited,
    Field(discriminator="type"),
]
# Decodes a worker message from JSON (messages that travel through a broker).
WORKER_MESSAGES: TypeAdapter[WorkerMessage] = TypeAdapter(WorkerMessage)


def encode_message(message: Message) -> str:
    """JSON of the fields the sender set (a ProgressReport applies only those), and its type."""
    return json.dumps({**message.model_dump(mode="json", exclude_unset=True), "type": message.type},
                      ensure_ascii=False)


def decode_message(raw: str | bytes, origin: str | None = None) -> WorkerMessage:
    message = WORKER_MESSAGES.validate_json(raw)
    return message.model_copy(update={"origin": origin}) if origin else message


Verdict = Completed | PredictionCompleted | Stopped | Paused | Failed
Report = Callable[[ProgressReport | EvaluationReport | EpochReport | WarningReport | CheckpointReport
                   | CheckpointFailed | ResumedReport | PredictionProgress], None]


class Interruption(enum.StrEnum):
    """What the server asks of a running job."""

    STOP = "stop"  # end now; nothing is kept
    PAUSE = "pause"  # write a checkpoint at the next step, then end: the task can continue later


# Polled every step: None to go on.
ShouldStop = Callable[[], Interruption | None]


class StopReason(enum.StrEnum):
    """Why the server asked a run to stop; decides what the task records."""

    REQUESTED = "requested"  # a user's stop or delete: the task ends `stopped`, no error
    PAUSE = "pause"  # a user's pause: the run checkpoints and the task becomes `paused`
    # The server is shutting down: with RESUME_INTERRUPTED_TASKS the run checkpoints and the task goes
    # back to the queue, to continue at the next start; otherwise it ends `stopped`, saying so.
    SHUTDOWN = "shutdown"


# ---- how a run ends ----------------------------------------------------------------------------


class TrainingStopped(Exception):
    """A stop was requested; the worker reports `stopped`."""


def add_base_model_hint(name: str) -> Text:
    """What to do about a base model the server does not have: the one wording the API's 400, a
    failed task and a failed download all use."""
    return Text("add it with `bertd pull {name}` or POST /api/v1/base-models {{\"name\": \"{name}\"}} (where the "
                "Hub cannot be reached, set HF_ENDPOINT=https://hf-mirror.com or pull with \"source\": "
                "\"modelscope\"), or copy a model folder (config.json, weights, tokenizer) to BASE_MODELS_DIR/{name}",
                name=name)


class TrainingPaused(Exception):
    """A pause was requested and the checkpoint is written; the worker reports `paused`."""

    def __init__(self, epoch: int, step: int) -> None:
        super().__init__(f"paused at epoch {epoch}, step {step}")
        self.epoch = epoch
        self.step = step


class TrainingInputError(ValueError):
    """The data or base model cannot be used as asked; the message is shown to the user as is,
    followed by the hint (what to do), and `code` names the kind of problem (e.g. column_missing)."""

    def __init__(self, message: Text | str, *, code: str = "invalid_input", hint: Text | str | None = None) -> None:
        super().__init__(str(message))
        self.code = code
        self.hint = None if hint is None else str(hint)
        # The message and hint as given: Texts render in the reader's language (bertd.i18n).
        self.text = message
        self.hint_text = hint

    @property
    def task_error(self) -> TaskError:
        return TaskError.of(self.code, self.text, self.hint_text)

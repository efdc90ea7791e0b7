"""What crosses the boundary between the server and whatever runs training.

Both sides import this module and nothing else of each other: the job a worker runs (with its
typed hyperparameters), every message a worker sends back, the one `Progress` shape the API shows,
and the errors a training run ends with. Everything here is a frozen pydantic model, so the same
types travel pickled through a local pipe or as JSON through a broker. Imports neither torch nor
aiohttp nor aiosqlite."""

from __future__ import annotations

import enum
import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    TypeAdapter,
    field_serializer,
    field_validator,
    model_validator,
)

# ---- hyperparameters --------------------------------------------------------------------------

LORA_DEFAULT_LEARNING_RATE = 2e-4
DEFAULT_LEARNING_RATE = 2e-5


class Frozen(BaseModel):
    """Immutable, strict (no "3" for 3, no true for 1), unknown fields refused by name."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, allow_inf_nan=False)


NonEmptyText = Annotated[str, Field(min_length=1)]

# A list of layer names, or one string that peft understands, such as "all-linear". Only the branch
# the input's own type picks is checked, so an error names the list item (target_modules[1]), and
# a JSON array is taken (lax) as the tuple a frozen model keeps.
TargetModules = Annotated[
    Annotated[NonEmptyText, Tag("one-string")]
    | Annotated[tuple[NonEmptyText, ...], Tag("list-of-names"), Field(strict=False, min_length=1)],
    Discriminator(lambda value: "one-string" if isinstance(value, str) else "list-of-names"),
]


def _array_or_string(schema: dict[str, Any]) -> None:
    """Target modules' schema without oneOf, for readers that want one `type` (the dashboard's
    form): an array of names or a string."""
    array = next(variant for variant in schema.pop("oneOf") if variant.get("type") == "array")
    schema.update(type=["array", "string"], items=array["items"], minItems=array["minItems"], minLength=1)


class LoraSettings(Frozen):
    enabled: bool = Field(False, description=(
        "Train low-rank adapters and the classification head instead of all weights; the saved model has the "
        f"adapters merged in. learning_rate then defaults to {LORA_DEFAULT_LEARNING_RATE:g}."))
    r: int = Field(8, ge=1, le=256, description="LoRA rank.")
    lora_alpha: float = Field(16, ge=1, le=1024, description="LoRA scaling numerator (any number).")
    lora_dropout: float = Field(0.1, ge=0, le=0.9, description="Dropout on LoRA inputs.")
    target_modules: TargetModules = Field(
        ("query", "value"), json_schema_extra=_array_or_string,
        description="Names of the linear layers to adapt (BERT: query, key, value, dense), or a string peft "
                    "accepts such as \"all-linear\".")

    @field_serializer("lora_alpha")
    def _whole_numbers_stay_whole(self, value: float) -> float | int:
        # 16 in, 16 out (not 16.0): the echo matches what was sent.
        return int(value) if float(value).is_integer() else value


class Hyperparameters(Frozen):
    learning_rate: float = Field(DEFAULT_LEARNING_RATE, gt=0, le=1, description=(
        f"Peak learning rate of AdamW; when left out with lora.enabled, {LORA_DEFAULT_LEARNING_RATE:g}."))
    epochs: int = Field(3, ge=1, le=1000, description="Passes over the training rows.")
    batch_size: int = Field(16, ge=1, le=4096, description="Rows per optimiser step (before gradient accumulation).")
    max_sequence_length: int = Field(256, ge=8, le=8192, description="Tokens kept per text; longer texts are truncated.")
    random_seed: int = Field(42, ge=0, le=2**32 - 1, description="Seed for the split, shuffling and initialisation.")
    train_val_split: float = Field(0.2, ge=0, le=0.5, description=(
        "Fraction of rows held out for validation (stratified by label); ignored with validation_data_file. "
        "0 trains on every row: without a validation_data_file there are then no validation metrics and the "
        "last epoch is saved."))
    text_column: NonEmptyText = Field("text", description="Column holding the text to classify.")
    label_column: NonEmptyText = Field("label", description="Column holding the label.")
    sheet_name: NonEmptyText | None = Field(None, description="Sheet of training_data_file; null means the first sheet.")
    validation_sheet_name: NonEmptyText | None = Field(
        None, description="Sheet of validation_data_file; null means the first sheet.")
    weight_decay: float = Field(0.01, ge=0, le=1, description="AdamW weight decay (not applied to biases and LayerNorm).")
    warmup_ratio: float = Field(0.0, ge=0, le=0.9, description="Fraction of steps with a linear learning-rate warm-up.")
    max_grad_norm: float = Field(1.0, ge=0, le=1000, description="Gradient clipping norm; 0 turns clipping off.")
    gradient_accumulation_steps: int = Field(1, ge=1, le=1024, description="Batches summed into one optimiser step.")
    precision: Literal["auto", "fp32", "fp16", "bf16"] = Field(
        "auto", description="Compute precision; auto picks bf16 on a GPU that supports it, else fp32.")
    early_stopping_enabled: bool = Field(False, description="Stop when the metric stops improving.")
    early_stopping_patience: int = Field(2, ge=1, le=1000, description="Epochs without improvement before stopping.")
    early_stopping_metric: Literal["val_accuracy", "val_loss", "f1_score"] = Field(
        "f1_score", description="Metric watched for early stopping.")
    early_stopping_min_delta: float = Field(0.0, ge=0, le=1000, description="Smallest change that counts as an improvement.")
    class_weighting: Literal["none", "balanced"] = Field("none", description=(
        "none, or balanced: weight each label's loss by n_rows / (n_labels * rows_of_label), for imbalanced data."))
    evaluation_steps: int | None = Field(None, ge=1, le=10**7, description=(
        "Also evaluate every this many optimiser steps (null: only at epoch ends); the best evaluation is kept."))
    compile: Literal["auto", "on", "off"] = Field("auto", description=(
        "torch.compile the model: auto (on a GPU when the job is long enough to repay compiling), on, off."))
    # null is taken for "off" (see below), as clients of the original system send it.
    lora: LoraSettings = Field(LoraSettings(), description="LoRA fine-tuning (off by default; null means off).",
                               json_schema_extra={"type": ["object", "null"]})

    @field_validator("lora", mode="before")
    @classmethod
    def _null_lora_is_off(cls, value: Any) -> Any:
        # Clients of the original system send "lora": null for "no LoRA".
        return LoraSettings() if value is None else value

    @model_validator(mode="after")
    def _lora_learning_rate(self) -> Hyperparameters:
        # Adapters start at zero and need a larger step than full fine-tuning's default to move;
        # a learning rate the user gave is kept.
        if self.lora.enabled and "learning_rate" not in self.model_fields_set:
            return self.model_copy(update={"learning_rate": LORA_DEFAULT_LEARNING_RATE})
        return self


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


def partial_path(model_dir: Path) -> Path:
    """The sibling a model is written into before it is renamed into place."""
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


class TaskError(BaseModel):
    """Why a task failed, for people and programs: a stable snake_case `code`, the `message` (what
    went wrong, one short sentence) and the `hint` (what to do about it). A task's `error_message`
    is `text`, the two in one line."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    code: str
    message: str
    hint: str | None = None

    @property
    def text(self) -> str:
        return f"{self.message}; {self.hint}" if self.hint else self.message


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
    detail: str | None = None


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
    | ResumedReport | Completed | Stopped | Paused | Failed | Exited,
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

Verdict = Completed | Stopped | Paused | Failed
Report = Callable[[ProgressReport | EvaluationReport | EpochReport | WarningReport | CheckpointReport
                   | CheckpointFailed | ResumedReport], None]


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


def add_base_model_hint(name: str) -> str:
    """What to do about a base model the server does not have: the one wording the API's 400, a
    failed task and a failed download all use."""
    return (f"add it with `bertd pull {name}` or POST /api/v1/base-models {{\"name\": \"{name}\"}} (where the Hub "
            "cannot be reached, set HF_ENDPOINT=https://hf-mirror.com or pull with \"source\": \"modelscope\"), "
            f"or copy a model folder (config.json, weights, tokenizer) to BASE_MODELS_DIR/{name}")


class TrainingPaused(Exception):
    """A pause was requested and the checkpoint is written; the worker reports `paused`."""

    def __init__(self, epoch: int, step: int) -> None:
        super().__init__(f"paused at epoch {epoch}, step {step}")
        self.epoch = epoch
        self.step = step


class TrainingInputError(ValueError):
    """The data or base model cannot be used as asked; the message is shown to the user as is,
    followed by the hint (what to do), and `code` names the kind of problem (e.g. column_missing)."""

    def __init__(self, message: str, *, code: str = "invalid_input", hint: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.hint = hint

    @property
    def task_error(self) -> TaskError:
        return TaskError(code=self.code, message=str(self), hint=self.hint)

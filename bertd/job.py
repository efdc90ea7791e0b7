"""What crosses the process boundary: the job a worker runs and the errors it ends with.

Messages from a worker are small picklable dicts with a "type": progress, epoch, warning,
then exactly one of completed, stopped or failed. Nothing here imports torch or aiohttp."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Report = Callable[[dict[str, Any]], None]
ShouldStop = Callable[[], bool]


@dataclass(frozen=True)
class TrainingJob:
    task_id: str
    training_data_path: str
    validation_data_path: str | None
    base_model: str
    base_models_dir: str
    output_dir: str
    hyperparameters: dict[str, Any]
    # Seconds between two progress reports; epoch ends are always reported.
    report_interval: float = 0.5
    # CPU threads for torch when training on the CPU: the cores shared among concurrent tasks,
    # so two tasks on two cores do not each run two threads and thrash.
    cpu_threads: int | None = None
    # "cuda:N" when the scheduler gave this job a GPU of its own; None: the first GPU, else the CPU.
    device: str | None = None


class TrainingStopped(Exception):
    """A stop was requested; the worker cleans up and reports `stopped`."""


class TrainingInputError(ValueError):
    """The data or base model cannot be used as asked; the message is shown to the user as is."""

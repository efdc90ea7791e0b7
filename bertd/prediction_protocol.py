"""The prediction job's part of the contract between the server and its workers: the job (a whole
sheet through a completed task's model) and the messages only such a job sends. bertd.protocol
imports all of it, so both sides keep importing the contract from there; this module imports
nothing of bertd."""

from __future__ import annotations

import enum
from typing import Literal

from pydantic import BaseModel, ConfigDict


class _Message(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class PredictionJob(BaseModel):
    """Predict every row of one sheet with a completed task's model; the result is the input file
    with prediction columns appended (see bertd/training/predict_sheet.py)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    prediction_id: str
    task_id: str
    model_dir: str
    input_path: str
    # The name the user uploaded the file as: messages name it, not the path on the server.
    input_name: str
    # None: the first sheet (a CSV file has one).
    sheet_name: str | None
    text_column: str
    top_k: int = 1
    # Labels whose score is below it are left empty; None: every row gets its best label.
    threshold: float | None = None
    # Where the result goes; it is written to partial_path(output_path) first, then renamed.
    output_path: str
    # Tokens kept per text: the task's max_sequence_length, as in training.
    max_length: int
    report_interval: float = 0.5
    cpu_threads: int | None = None
    device: str | None = None


class PredictionPhase(enum.StrEnum):
    READING = "reading"  # the sheet
    LOADING_MODEL = "loading_model"
    PREDICTING = "predicting"
    WRITING = "writing"  # the result file


class PredictionProgress(_Message):
    """How far a prediction job is; rows_done counts rows predicted and empty rows passed over."""

    type: Literal["prediction_progress"] = "prediction_progress"
    phase: PredictionPhase
    rows_done: int = 0
    rows_total: int | None = None
    rows_per_second: float | None = None


class PredictionCompleted(_Message):
    """The result file is in place at output_path."""

    type: Literal["prediction_completed"] = "prediction_completed"
    rows_total: int
    # Rows whose text cell is empty: they get an empty prediction.
    rows_empty: int
    # Rows whose best score is below the threshold: they get an empty label.
    rows_below_threshold: int = 0
    # Rows per best label (labels below the threshold left out), every label of the model listed.
    label_counts: dict[str, int]
    # The columns appended to the sheet, in order.
    columns: list[str]
    output_path: str
    seconds: float
    rows_per_second: float | None = None

"""The WebSocket part of the OpenAPI document: every live message's schema and the streams'
descriptions (the HTTP routes are in openapi.py)."""

from __future__ import annotations

from typing import Any

from bertd.schema.openapi_base_models import BASE_MODEL
from bertd.schema.openapi_parts import COMPONENTS, NULLABLE_NUMBER, TASK_ERROR, ref
from bertd.state.records import PredictionStatus, TaskStatus


def _message(kind: str, description: str, properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"type": "object", "description": description,
            "required": ["type", *required],
            "properties": {"type": {"const": kind}, "task_id": {"type": "string"},
                           "seq": {"type": "integer", "description": "Per task, increasing by 1"}, **properties}}


WS_MESSAGE_SCHEMAS: dict[str, Any] = {
    "WsSnapshot": _message("snapshot", "First message. Per task: the task as of `seq`; on /api/v1/ws: "
                           "every active task, each with its own `seq`, every queued or running prediction job "
                           "(each with the `seq` of its own stream), and `base_models`, the downloads running or "
                           "failed.",
                           {"task": ref("Task"), "tasks": {"type": "array", "items": ref("Task")},
                            "predictions": {"type": "array", "items": ref("PredictionJob")},
                            "base_models": {"type": "array", "items": ref("BaseModel")}}, []),
    "WsProgress": _message("progress", "Step-level progress; a slow client gets only the newest. In phase "
                           "downloading_base_model it carries the download's bytes.",
                           COMPONENTS["Progress"]["properties"],
                           ["task_id", "seq"]),
    "WsEpoch": _message("epoch", "One epoch's results; the validation figures are null when the task holds "
                        "nothing out (train_val_split 0 without a validation file).", {
        "epoch": {"type": "integer"}, "total_epochs": {"type": ["integer", "null"]},
        "train_loss": {"type": "number"}, "train_accuracy": {"type": "number"}, "val_loss": NULLABLE_NUMBER,
        "val_accuracy": NULLABLE_NUMBER, "val_macro_f1": NULLABLE_NUMBER, "is_best": {"type": "boolean"},
        "per_class": {"type": "object"}, "confusion_matrix": {"type": "array"}}, ["task_id", "seq", "epoch"]),
    "WsEvaluation": _message("evaluation", "A mid-epoch evaluation (hyperparameters.evaluation_steps).", {
        "epoch": {"type": "integer"}, "step": {"type": "integer"}, "val_loss": {"type": "number"},
        "val_accuracy": {"type": "number"}, "val_macro_f1": {"type": "number"}, "is_best": {"type": "boolean"}},
        ["task_id", "seq", "step"]),
    "WsStatus": _message("status", "A status change; a failure carries error_message and error.", {
        "status": {"type": "string", "enum": [str(status) for status in TaskStatus]},
        "error_message": {"type": "string"}, "error": TASK_ERROR}, ["task_id", "seq", "status"]),
    "WsWarning": _message("warning", "Something the user should know (e.g. rows dropped).",
                          {"message": {"type": "string"}}, ["task_id", "seq", "message"]),
    "WsStarted": _message("started", "With BROKER_URL: the worker box that took the run.",
                          {"worker": {"type": "string"}}, ["task_id", "seq", "worker"]),
    "WsResumed": _message("resumed", "The run continues from a checkpoint (after a restart or a resume): the "
                          "epoch and step it was taken at; `interruptions` counts restarts so far.", {
        "epoch": {"type": "integer"}, "step": {"type": "integer"}, "epoch_complete": {"type": "boolean"},
        "interruptions": {"type": "integer"}}, ["task_id", "seq", "epoch", "step"]),
    "WsEnd": _message("end", "The task ended; its full record. The per-task stream then closes with 1000, "
                      "unless prediction jobs of the task are queued or running: then after the last one's "
                      "`prediction_end`.",
                      {"task": ref("Task")}, ["task_id", "seq", "task"]),
    "WsBaseModel": {
        "type": "object", "required": ["type", "name", "status"],
        "description": "Only on /api/v1/ws: a base model download started, progressed, ended (ready or failed), "
                       "or a base model was deleted (status `deleted`, name only). It carries the model's whole "
                       "state (a line of GET /api/v1/base-models), no task_id and no seq: a slow client gets only "
                       "the newest of one model.",
        "properties": {**BASE_MODEL["properties"], "type": {"const": "base_model"},
                       "status": {"type": "string", "enum": ["downloading", "ready", "failed", "deleted"]},
                       "at": {"type": "number"}},
    },
}

PREDICTION_ID = {"prediction_id": {"type": "string"}}
WS_MESSAGE_SCHEMAS.update({
    "WsPredictionSnapshot": _message("prediction_snapshot", "First message of a prediction job's stream: the job as "
                                     "of `seq` (numbered per prediction job).",
                                     {**PREDICTION_ID, "prediction": ref("PredictionJob")},
                                     ["task_id", "prediction_id", "seq", "prediction"]),
    "WsPredictionProgress": _message("prediction_progress", "Rows done of a running prediction job; a slow client "
                                     "gets only the newest.", {
        **PREDICTION_ID, "phase": {"type": "string"}, "progress": {"type": "number"}, "rows_done": {"type": "integer"},
        "rows_total": {"type": ["integer", "null"]}, "rows_per_second": {"type": ["number", "null"]},
        "eta_seconds": {"type": ["number", "null"]}}, ["task_id", "prediction_id", "seq", "rows_done"]),
    "WsPredictionStatus": _message("prediction_status", "A prediction job's status change.", {
        **PREDICTION_ID, "status": {"type": "string", "enum": [str(status) for status in PredictionStatus]},
        "error_message": {"type": "string"}}, ["task_id", "prediction_id", "seq", "status"]),
    "WsPredictionEnd": _message("prediction_end", "The prediction job ended; its full record. Its own stream then "
                                "closes with 1000 (its task's stream too, if no other job of the task is queued or "
                                "running).", {**PREDICTION_ID, "prediction": ref("PredictionJob")},
                                ["task_id", "prediction_id", "seq", "prediction"]),
})

WS_TASK_DESCRIPTION = """\
Messages are JSON text frames: first `snapshot`, then `progress`, `epoch`, `warning` and `status`
with `seq` increasing by one per message of this task, finally `end` and a close with code 1000.
A task that already ended gives `snapshot`, `end`, close; while prediction jobs of the completed
task are queued or running, `snapshot`, a `prediction_snapshot` per job, `end`, then the jobs'
`prediction_progress`, `prediction_status` and `prediction_end` (each numbered in its job's own
`seq`, jobs created meanwhile included), and the close after the last job's `prediction_end`.
Nothing falls between the snapshot and
the first live message and nothing comes twice. Close codes: 1000 task ended, 1001 server shutting
down, 4008 the client fell too far behind (reconnect for a fresh snapshot). The server pings every
WS_HEARTBEAT_SECONDS. Unknown task: 404 before the upgrade; a GET that is no WebSocket upgrade: 400.

Example session:
```
<- {"type": "snapshot", "task_id": "3f2c", "seq": 4, "task": {"status": "training", ...}}
<- {"type": "progress", "task_id": "3f2c", "seq": 5, "phase": "training", "step": 40, "total_steps": 189, ...}
<- {"type": "epoch", "task_id": "3f2c", "seq": 9, "epoch": 1, "val_accuracy": 0.91, "val_macro_f1": 0.9, ...}
<- {"type": "status", "task_id": "3f2c", "seq": 31, "status": "completed"}
<- {"type": "end", "task_id": "3f2c", "seq": 32, "task": {"status": "completed", "metrics": {...}, ...}}
<- close 1000
```"""

WS_PREDICTION_DESCRIPTION = """\
A prediction job's live messages: first `prediction_snapshot`, then `prediction_progress` (rows done,
rows per second; may be coalesced) and `prediction_status`, with `seq` increasing by one per message
of this job, finally `prediction_end` (the full job) and a close with code 1000. A job that already
ended gives `prediction_snapshot`, `prediction_end`, close. The same messages reach the task's own
stream (which stays open while the task has queued or running jobs) and /api/v1/ws. Unknown job:
404 before the upgrade.

Example session:
```
<- {"type": "prediction_snapshot", "task_id": "3f2c", "prediction_id": "9a1b", "seq": 2, "prediction": {...}}
<- {"type": "prediction_progress", "task_id": "3f2c", "prediction_id": "9a1b", "seq": 5, "rows_done": 4096, ...}
<- {"type": "prediction_status", "task_id": "3f2c", "prediction_id": "9a1b", "seq": 9, "status": "completed"}
<- {"type": "prediction_end", "task_id": "3f2c", "prediction_id": "9a1b", "seq": 10, "prediction": {...}}
<- close 1000
```"""

WS_ALL_DESCRIPTION = """\
The same messages for every task, each with its `task_id`, after a first
`{"type": "snapshot", "tasks": [...], "predictions": [...], "base_models": [...]}` of the active
tasks and the queued or running prediction jobs (each with its own `seq`: ignore a live message
whose `seq` is not above it) and of the base model downloads running or failed. Prediction jobs'
messages (`prediction_status`, `prediction_progress`, `prediction_end`) carry their `prediction_id`
and are numbered per prediction job. The stream stays open; `end` does not close it.

Base model downloads (POST /api/v1/base-models, or a task whose base model is missing) come as
`base_model` messages, a few a second while one runs, each with the model's whole state:
```
<- {"type": "base_model", "name": "bert-base-chinese", "status": "downloading", "bytes_done": 104857600,
    "bytes_total": 411553792, "source": "huggingface", ...}
<- {"type": "base_model", "name": "bert-base-chinese", "status": "ready", "size_bytes": 411578122,
    "parameters": 102267648, ...}
```
A GET that is no WebSocket upgrade: 400."""


"""Shared pieces of the OpenAPI document: helpers and the component schemas (the task, its progress
and metrics, uploads, events, errors), most of them derived from the typed models."""

from __future__ import annotations

from typing import Any

from bertd.protocol import Hyperparameters, Progress
from bertd.schema.json_schema import schema_of
from bertd.schema.requests import PredictRequest, TaskRequest, TicketRequest
from bertd.state.records import TaskStatus

NULLABLE_NUMBER = {"type": ["number", "null"]}
NULLABLE_INTEGER = {"type": ["integer", "null"]}
NULLABLE_STRING = {"type": ["string", "null"]}


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def json_body(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def error_body(description: str) -> dict[str, Any]:
    return json_body(ref("Error"), description)


def with_message(name: str) -> dict[str, Any]:
    return {"allOf": [ref(name), {"type": "object", "properties": {"message": {"type": "string"}},
                                   "required": ["message"]}]}


TASK_ERROR = {
    "type": ["object", "null"],
    "description": "Why it failed: a stable snake_case code, what went wrong, and what to do. error_message is "
                   "message and hint in one line.",
    "required": ["code", "message", "hint"],
    "properties": {"code": {"type": "string", "description": "e.g. base_model_missing, column_missing, "
                                                             "base_model_download_failed, out_of_memory"},
                   "message": {"type": "string"}, "hint": NULLABLE_STRING},
}


COMPONENTS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "required": ["error"],
        "properties": {"error": {
            "type": "object",
            "required": ["code", "message", "details"],
            "properties": {
                "code": {"type": "string", "description": "snake_case, e.g. validation_error, not_found"},
                "message": {"type": "string", "description": "One sentence naming the field/file/column."},
                "details": {"description": "Extra structured detail (e.g. {field}), or null."},
            },
        }},
    },
    "Sheet": {
        "type": "object",
        "required": ["name", "rows", "columns"],
        "properties": {"name": {"type": "string"}, "rows": {"type": "integer"},
                       "columns": {"type": "array", "items": {"type": "string"}}},
    },
    "File": {
        "type": "object",
        "required": ["filename", "size_bytes", "sha256", "uploaded_at", "sheets"],
        "properties": {
            "filename": {"type": "string"},
            "size_bytes": {"type": "integer"},
            "sha256": {"type": "string"},
            "uploaded_at": {"type": "string", "format": "date-time"},
            "sheets": {"type": "array", "items": ref("Sheet")},
        },
    },
    "TaskRequest": schema_of(TaskRequest),
    "PredictRequest": schema_of(PredictRequest),
    "TicketRequest": schema_of(TicketRequest),
    "Ticket": {
        "type": "object",
        "required": ["ticket", "path", "expires_at", "expires_in_seconds", "single_use"],
        "properties": {
            "ticket": {"type": "string", "description": "Pass as ?token= on the WebSocket or download URL."},
            "path": {**NULLABLE_STRING, "description": "The one path it opens; null: any WebSocket or download."},
            "expires_at": {"type": "string", "format": "date-time"},
            "expires_in_seconds": {"type": "number"},
            "single_use": {"type": "boolean", "const": True},
        },
    },
    "Progress": schema_of(Progress, mode="serialization"),
    "Metrics": {
        "type": ["object", "null"],
        "properties": {
            "best_epoch": {"type": "integer", "description": "The epoch saved"},
            "val_accuracy": {**NULLABLE_NUMBER, "description": "null without validation rows"},
            "val_macro_f1": NULLABLE_NUMBER,
            "val_loss": NULLABLE_NUMBER,
            "model_selection": {"type": "string", "enum": ["best_validation_macro_f1", "last_epoch"],
                                "description": "last_epoch when train_val_split is 0 and there is no "
                                               "validation_data_file: nothing was held out to compare epochs"},
            "validation_rows": {"type": "integer"},
            "per_class": {"type": "object", "additionalProperties": {
                "type": "object", "properties": {"precision": {"type": "number"}, "recall": {"type": "number"},
                                                 "f1": {"type": "number"}, "support": {"type": "integer"}}}},
            "confusion_matrix": {"type": "array", "items": {"type": "array", "items": {"type": "integer"}},
                                 "description": "rows: true label, columns: predicted label, in `labels` order"},
            "labels": {"type": "array", "items": {"type": "string"}},
            "history": {"type": "array", "items": {"type": "object"}},
        },
    },
    "Task": {
        "type": "object",
        "required": ["task_id", "status", "model_name_cn", "model_name_en", "base_model", "training_data_file",
                     "hyperparameters", "created_at", "progress"],
        "properties": {
            "task_id": {"type": "string"},
            "status": {"type": "string", "enum": [str(status) for status in TaskStatus]},
            "model_name_cn": {"type": "string"},
            "model_name_en": {"type": "string"},
            "base_model": {"type": "string"},
            "training_data_file": {"type": "string"},
            "validation_data_file": NULLABLE_STRING,
            "hyperparameters": {**schema_of(Hyperparameters, mode="serialization"),
                                "description": "Every hyperparameter, defaults filled in."},
            "callback_url": NULLABLE_STRING,
            "created_at": {"type": "string", "format": "date-time"},
            "started_at": NULLABLE_STRING,
            "finished_at": NULLABLE_STRING,
            "updated_at": {**NULLABLE_STRING, "description": "When the task last changed (status, progress, ...)"},
            "queue_position": {**NULLABLE_INTEGER, "description": "1 = next to start; null unless queued"},
            "progress": ref("Progress"),
            "metrics": ref("Metrics"),
            "artifacts": {"type": ["object", "null"], "properties": {
                "model_path": {"type": "string", "description": "Loads with transformers.pipeline"},
                "label_mapping_path": {"type": "string"}, "metrics_path": {"type": "string"}}},
            "error_message": {**NULLABLE_STRING, "description": "A failed task: what went wrong; what to do"},
            "error": TASK_ERROR,
            "checkpoint": {"type": ["object", "null"], "description": "The newest checkpoint, or null before the "
                           "first (and once an ended task's checkpoints are removed)", "properties": {
                "epoch": {"type": "integer"}, "step": {"type": "integer"}, "size_bytes": {"type": "integer"},
                "at": {"type": "string", "format": "date-time"}}},
            "worker": {**NULLABLE_STRING, "description": "With BROKER_URL: the box that runs (or ran) the task"},
            "interruptions": {"type": "integer", "description": "How often a restart of the server interrupted "
                              "the task (it continued from its checkpoint each time; at most MAX_RESUMES)"},
            "callback": {"type": ["object", "null"], "properties": {
                "status": {"type": "string", "enum": ["retrying", "delivered", "failed"]},
                "attempts": {"type": "integer"}, "last_error": NULLABLE_STRING, "event": {"type": "string"}}},
        },
    },
    "Event": {
        "type": "object",
        "required": ["id", "at", "type", "data"],
        "properties": {"id": {"type": "integer"}, "at": {"type": "string", "format": "date-time"},
                       "type": {"type": "string", "enum": ["status", "epoch", "evaluation", "warning", "resumed",
                                                            "callback", "prediction"]},
                       "data": {"type": "object"}},
    },
}
COMPONENTS["Worker"] = {
    "type": "object",
    "required": ["name", "slots", "busy", "gpus", "last_heartbeat", "version"],
    "properties": {
        "name": {"type": "string"}, "slots": {"type": "integer"}, "busy": {"type": "integer"},
        "gpus": {"type": "array", "items": {"type": "object"}}, "version": {"type": "string"},
        "protocol": {"type": "integer"}, "alive": {"type": "boolean", "description": "a heartbeat in the last 15 s"},
        "last_heartbeat": {"type": "string", "format": "date-time"}},
}

"""The OpenAPI 3.1 document of every route, built from the same field list that validates requests."""

from __future__ import annotations

from typing import Any

from bertd import __version__
from bertd.protocol import Hyperparameters, Progress
from bertd.schema import openapi_base_models, openapi_ws
from bertd.schema.json_schema import schema_of
from bertd.schema.openapi_parts import (
    NULLABLE_INTEGER,
    NULLABLE_NUMBER,
    NULLABLE_STRING,
    TASK_ERROR,
    error,
    json_body,
    ref,
    with_message,
)
from bertd.schema.requests import PredictRequest, TaskRequest
from bertd.state.records import TaskStatus

_ref = ref
_json = json_body
_error = error
_with_message = with_message


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
            "sheets": {"type": "array", "items": _ref("Sheet")},
        },
    },
    "TaskRequest": schema_of(TaskRequest),
    "PredictRequest": schema_of(PredictRequest),
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
            "progress": _ref("Progress"),
            "metrics": _ref("Metrics"),
            "artifacts": {"type": ["object", "null"], "properties": {
                "model_path": {"type": "string", "description": "Loads with transformers.pipeline"},
                "label_mapping_path": {"type": "string"}, "metrics_path": {"type": "string"}}},
            "error_message": {**NULLABLE_STRING, "description": "A failed task: what went wrong; what to do"},
            "error": TASK_ERROR,
            "callback": {"type": ["object", "null"], "properties": {
                "status": {"type": "string", "enum": ["retrying", "delivered", "failed"]},
                "attempts": {"type": "integer"}, "last_error": NULLABLE_STRING, "event": {"type": "string"}}},
        },
    },
    "Event": {
        "type": "object",
        "required": ["id", "at", "type", "data"],
        "properties": {"id": {"type": "integer"}, "at": {"type": "string", "format": "date-time"},
                       "type": {"type": "string", "enum": ["status", "epoch", "evaluation", "warning", "callback"]},
                       "data": {"type": "object"}},
    },
}

WS_MESSAGE_SCHEMAS: dict[str, Any] = openapi_ws.message_schemas(COMPONENTS["Progress"]["properties"])


TASK_ID = {"name": "task_id", "in": "path", "required": True, "schema": {"type": "string"}}
FILENAME = {"name": "filename", "in": "path", "required": True, "schema": {"type": "string"},
            "description": "URL-encoded; Unicode names are kept as uploaded."}


def build_openapi() -> dict[str, Any]:
    not_found = _error("No such task or file")
    bad_request = _error("Validation error naming the field")
    paths: dict[str, Any] = {
        "/api/v1/health": {"get": {
            "summary": "Service health, devices and load", "security": [],
            "responses": {"200": _json({"type": "object", "required": ["status", "version", "devices"], "properties": {
                "status": {"type": "string", "enum": ["ok"]}, "version": {"type": "string"},
                "devices": {"type": "array", "items": {"type": "object"}},
                "max_concurrent_tasks": {"type": "integer"}, "training": {"type": "integer"},
                "queued": {"type": "integer"}}}, "Healthy")}}},
        "/": {"get": {"summary": "The web dashboard (HTML; its API calls carry the token)", "security": [],
                      "responses": {"200": {"description": "The dashboard page",
                                            "content": {"text/html": {"schema": {"type": "string"}}}}}}},
        "/metrics": {"get": {
            "summary": "Prometheus metrics: tasks by status, queue depth, task duration, samples/s, "
                       "callback failures, WebSocket clients",
            "responses": {"200": {"description": "Prometheus text format",
                                  "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
        "/api/v1/openapi.json": {"get": {"summary": "This document", "security": [],
                                         "responses": {"200": _json({"type": "object"}, "OpenAPI 3.1")}}},
        "/api/v1/docs": {"get": {"summary": "Interactive API docs (HTML)", "security": [],
                                 "responses": {"200": {"description": "Swagger UI",
                                                       "content": {"text/html": {"schema": {"type": "string"}}}}}}},
        "/api/v1/files": {
            "post": {
                "summary": "Upload an .xlsx or .csv file of texts and labels",
                "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
                    "type": "object", "required": ["file"],
                    "properties": {"file": {"type": "string", "format": "binary"}}}}}},
                "responses": {
                    "201": _json(_ref("File"), "Uploaded; sheets, columns and row counts read once"),
                    "200": _json(_ref("File"), "The same bytes were already uploaded under this name"),
                    "400": _error("Missing part, bad filename, empty or unreadable file"),
                    "409": _error("Different bytes are already uploaded under this name"),
                    "413": _error("Larger than MAX_UPLOAD_MB"),
                    "415": _error("Not multipart, or not .xlsx/.csv"),
                    "507": _error("The upload could not be written (disk full or DATA_DIR not writable)"),
                },
            },
            "get": {"summary": "List uploads", "responses": {"200": _json(
                {"type": "object", "required": ["files"], "properties": {"files": {"type": "array",
                                                                                   "items": _ref("File")}}},
                "Every upload, newest first")}},
        },
        "/api/v1/files/{filename}": {
            "parameters": [FILENAME],
            "get": {"summary": "One upload's metadata", "responses": {"200": _json(_ref("File"), "The file"),
                                                                     "404": not_found}},
            "delete": {"summary": "Delete an upload", "responses": {
                "200": _json({"type": "object", "properties": {"filename": {"type": "string"},
                                                               "deleted": {"type": "boolean"},
                                                               "message": {"type": "string"}}}, "Deleted"),
                "404": not_found, "409": _error("A queued or training task uses it")}},
        },
        "/api/v1/training/tasks": {
            "post": {
                "summary": "Create a training task (queued FIFO)",
                "requestBody": {"required": True, "content": {"application/json": {"schema": _ref("TaskRequest")}}},
                "responses": {"201": _json(_with_message("Task"), "Created and queued (waiting in phase "
                                                                  "downloading_base_model while its base model is "
                                                                  "downloaded)"),
                              "400": _error("Validation error naming the field; also a base_model the server "
                                            "does not have and cannot download (the message names the available "
                                            "ones and how to add one)"),
                              "409": _error("A data file was deleted meanwhile"),
                              "415": _error("Body is not application/json"),
                              "429": _error("MAX_QUEUED_TASKS tasks are already waiting"),
                              "503": _error("The server is shutting down")},
            },
            "get": {
                "summary": "List tasks, newest first",
                "parameters": [
                    {"name": "status", "in": "query", "schema": {"type": "string",
                                                                 "enum": [str(s) for s in TaskStatus]}},
                    {"name": "page", "in": "query", "schema": {"type": "integer", "minimum": 1, "default": 1}},
                    {"name": "page_size", "in": "query",
                     "schema": {"type": "integer", "minimum": 1, "maximum": 200, "default": 20}},
                ],
                "responses": {"200": _json({"type": "object", "required": ["total", "page", "page_size", "tasks"],
                                            "properties": {"total": {"type": "integer"}, "page": {"type": "integer"},
                                                           "page_size": {"type": "integer"},
                                                           "tasks": {"type": "array", "items": _ref("Task")}}},
                                           "A page of tasks"),
                              "400": bad_request},
            },
        },
        "/api/v1/training/tasks/{task_id}": {
            "parameters": [TASK_ID],
            "get": {"summary": "One task with live progress", "responses": {"200": _json(_ref("Task"), "The task"),
                                                                            "404": not_found}},
            "delete": {"summary": "Stop if active, then delete record, events and model", "responses": {
                "200": _json({"type": "object", "required": ["task_id", "deleted"], "properties": {
                    "task_id": {"type": "string"}, "deleted": {"type": "boolean"}, "message": {"type": "string"}}},
                    "Deleted"),
                "404": not_found}},
        },
        "/api/v1/training/tasks/{task_id}/stop": {
            "parameters": [TASK_ID],
            "post": {"summary": "Stop a queued or training task", "responses": {
                "202": _json(_with_message("Task"), "stopped (was queued) or stopping (worker is exiting)"),
                "404": not_found, "409": _error("The task already ended")}},
        },
        "/api/v1/training/tasks/{task_id}/predict": {
            "parameters": [TASK_ID],
            "post": {
                "summary": "Classify texts with a completed task's model",
                "requestBody": {"required": True,
                                "content": {"application/json": {"schema": _ref("PredictRequest")}}},
                "responses": {
                    "200": _json({"type": "object", "required": ["predictions"], "properties": {
                        "task_id": {"type": "string"},
                        "predictions": {"type": "array", "items": {
                            "type": "object", "required": ["label", "score", "scores"],
                            "properties": {"label": {"type": "string"}, "score": {"type": "number"},
                                           "scores": {"type": "object",
                                                      "additionalProperties": {"type": "number"}},
                                           "top_k": {"type": "array", "items": {"type": "object"}}}}}}},
                        "One prediction per text, labels as in the training data"),
                    "400": bad_request, "404": not_found, "409": _error("The task is not completed"),
                    "410": _error("The model is no longer on disk"), "413": _error("A text is too long"),
                    "415": _error("Body is not application/json")},
            },
        },
        "/api/v1/training/tasks/{task_id}/download": {
            "parameters": [TASK_ID],
            "get": {"summary": "The model directory as a .tar.gz (Hugging Face format, labels.json, metrics.json)",
                    "responses": {"200": {"description": "The tarball", "content": {
                        "application/gzip": {"schema": {"type": "string", "format": "binary"}}}},
                        "404": not_found, "409": _error("The task is not completed"),
                        "410": _error("The model is no longer on disk"),
                        "507": _error("The tarball could not be written")}},
        },
        "/api/v1/training/tasks/{task_id}/events": {
            "parameters": [TASK_ID],
            "get": {
                "summary": "The task's persisted history",
                "parameters": [
                    {"name": "after", "in": "query", "schema": {"type": "integer", "minimum": 0, "default": 0},
                     "description": "Only events with a larger id"},
                    {"name": "limit", "in": "query",
                     "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}},
                ],
                "responses": {"200": _json({"type": "object", "required": ["events"], "properties": {
                    "events": {"type": "array", "items": _ref("Event")}}}, "Events in id order"),
                    "400": bad_request, "404": not_found},
            },
        },
    }
    paths.update(openapi_ws.ws_paths(TASK_ID, not_found))
    paths.update(openapi_base_models.paths(bad_request))
    for item in paths.values():
        for method, operation in item.items():
            if method != "parameters" and operation.get("security") != []:
                operation["responses"]["401"] = _error("Missing or wrong API token (only when API_TOKEN is set)")
    return {
        "openapi": "3.1.0",
        "info": {"title": "bertd", "version": __version__,
                 "description": "Fine-tune BERT text classifiers over HTTP. Every error body is "
                                "{\"error\": {\"code\", \"message\", \"details\"}}."},
        "paths": paths,
        "components": {
            "schemas": {**COMPONENTS, **openapi_base_models.COMPONENTS, **WS_MESSAGE_SCHEMAS},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "Needed when API_TOKEN is set; WebSockets may pass ?token="}},
        },
        "security": [{"bearer": []}],
    }

"""The OpenAPI 3.1 document of every route, built from the same field list that validates requests."""

from __future__ import annotations

from typing import Any

from bertd import __version__
from bertd.protocol import Hyperparameters, Progress
from bertd.schema.json_schema import schema_of
from bertd.schema.requests import PredictRequest, TaskRequest, TicketRequest
from bertd.state.records import TaskStatus

NULLABLE_NUMBER = {"type": ["number", "null"]}
NULLABLE_INTEGER = {"type": ["integer", "null"]}
NULLABLE_STRING = {"type": ["string", "null"]}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str) -> dict[str, Any]:
    return _json(_ref("Error"), description)


def _with_message(name: str) -> dict[str, Any]:
    return {"allOf": [_ref(name), {"type": "object", "properties": {"message": {"type": "string"}},
                                   "required": ["message"]}]}


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
            "best_epoch": {"type": "integer"},
            "val_accuracy": {"type": "number"},
            "val_macro_f1": {"type": "number"},
            "val_loss": {"type": "number"},
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
            "queue_position": {**NULLABLE_INTEGER, "description": "1 = next to start; null unless queued"},
            "progress": _ref("Progress"),
            "metrics": _ref("Metrics"),
            "artifacts": {"type": ["object", "null"], "properties": {
                "model_path": {"type": "string", "description": "Loads with transformers.pipeline"},
                "label_mapping_path": {"type": "string"}, "metrics_path": {"type": "string"}}},
            "error_message": NULLABLE_STRING,
            "checkpoint": {"type": ["object", "null"], "description": "The newest checkpoint, or null before the "
                           "first (and once an ended task's checkpoints are removed)", "properties": {
                "epoch": {"type": "integer"}, "step": {"type": "integer"}, "size_bytes": {"type": "integer"},
                "at": {"type": "string", "format": "date-time"}}},
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
                                                            "callback"]},
                       "data": {"type": "object"}},
    },
}

def _message(kind: str, description: str, properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {"type": "object", "description": description,
            "required": ["type", *required],
            "properties": {"type": {"const": kind}, "task_id": {"type": "string"},
                           "seq": {"type": "integer", "description": "Per task, increasing by 1"}, **properties}}


WS_MESSAGE_SCHEMAS: dict[str, Any] = {
    "WsSnapshot": _message("snapshot", "First message. Per task: the task as of `seq`; on /api/v1/ws: "
                           "every active task, each with its own `seq`.",
                           {"task": _ref("Task"), "tasks": {"type": "array", "items": _ref("Task")}}, []),
    "WsProgress": _message("progress", "Step-level progress; a slow client gets only the newest.",
                           COMPONENTS["Progress"]["properties"],
                           ["task_id", "seq"]),
    "WsEpoch": _message("epoch", "One epoch's validation results.", {
        "epoch": {"type": "integer"}, "total_epochs": {"type": ["integer", "null"]},
        "train_loss": {"type": "number"}, "train_accuracy": {"type": "number"}, "val_loss": {"type": "number"},
        "val_accuracy": {"type": "number"}, "val_macro_f1": {"type": "number"}, "is_best": {"type": "boolean"},
        "per_class": {"type": "object"}, "confusion_matrix": {"type": "array"}}, ["task_id", "seq", "epoch"]),
    "WsEvaluation": _message("evaluation", "A mid-epoch evaluation (hyperparameters.evaluation_steps).", {
        "epoch": {"type": "integer"}, "step": {"type": "integer"}, "val_loss": {"type": "number"},
        "val_accuracy": {"type": "number"}, "val_macro_f1": {"type": "number"}, "is_best": {"type": "boolean"}},
        ["task_id", "seq", "step"]),
    "WsStatus": _message("status", "A status change.", {
        "status": {"type": "string", "enum": [str(status) for status in TaskStatus]},
        "error_message": {"type": "string"}}, ["task_id", "seq", "status"]),
    "WsWarning": _message("warning", "Something the user should know (e.g. rows dropped).",
                          {"message": {"type": "string"}}, ["task_id", "seq", "message"]),
    "WsResumed": _message("resumed", "The run continues from a checkpoint (after a restart or a resume): the "
                          "epoch and step it was taken at; `interruptions` counts restarts so far.", {
        "epoch": {"type": "integer"}, "step": {"type": "integer"}, "epoch_complete": {"type": "boolean"},
        "interruptions": {"type": "integer"}}, ["task_id", "seq", "epoch", "step"]),
    "WsEnd": _message("end", "The task ended; its full record. The per-task stream then closes with 1000.",
                      {"task": _ref("Task")}, ["task_id", "seq", "task"]),
}

WS_TASK_DESCRIPTION = """\
Messages are JSON text frames: first `snapshot`, then `progress`, `epoch`, `warning` and `status`
with `seq` increasing by one per message of this task, finally `end` and a close with code 1000.
A task that already ended gives `snapshot`, `end`, close. Nothing falls between the snapshot and
the first live message and nothing comes twice. Close codes: 1000 task ended, 1001 server shutting
down, 4008 the client fell too far behind (reconnect for a fresh snapshot). The server pings every
WS_HEARTBEAT_SECONDS. Unknown task: 404 before the upgrade.

Example session:
```
<- {"type": "snapshot", "task_id": "3f2c", "seq": 4, "task": {"status": "training", ...}}
<- {"type": "progress", "task_id": "3f2c", "seq": 5, "phase": "training", "step": 40, "total_steps": 189, ...}
<- {"type": "epoch", "task_id": "3f2c", "seq": 9, "epoch": 1, "val_accuracy": 0.91, "val_macro_f1": 0.9, ...}
<- {"type": "status", "task_id": "3f2c", "seq": 31, "status": "completed"}
<- {"type": "end", "task_id": "3f2c", "seq": 32, "task": {"status": "completed", "metrics": {...}, ...}}
<- close 1000
```"""

WS_ALL_DESCRIPTION = """\
The same messages for every task, each with its `task_id`, after a first
`{"type": "snapshot", "tasks": [...]}` of the active tasks (each with its own `seq`: ignore a live
message whose `seq` is not above it). The stream stays open; `end` does not close it."""

REFUSED_HOST = ("host_not_allowed: the Host header is not an IP address, localhost, this machine's name or in "
                "ALLOWED_HOSTS (DNS rebinding guard)")
REFUSED_BY_GUARD = (f"{REFUSED_HOST}; or cross_origin_refused: a web page from another origin than bertd's own "
                    "and not in ALLOWED_ORIGINS (judged by Origin and Sec-Fetch-Site; clients that send "
                    "neither are not affected)")

TASK_ID = {"name": "task_id", "in": "path", "required": True, "schema": {"type": "string"}}
TICKET = {"name": "token", "in": "query", "required": False, "schema": {"type": "string"},
          "description": "A ticket from POST /api/v1/tickets, for browsers that cannot send the Authorization "
                         "header here (only with API_TOKEN set); never the API token itself."}
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
        "/api/v1/tickets": {"post": {
            "summary": "A single-use ticket for a WebSocket or download URL, which cannot send the "
                       "Authorization header",
            "description": "With API_TOKEN set, WebSockets and download links pass `?token=<ticket>`, never the "
                           "API token itself (URLs end up in proxy logs and browser history). A ticket works "
                           "once, within a minute, for `path` when one is given. An empty body asks for a "
                           "ticket good for any WebSocket or download.",
            "requestBody": {"required": False, "content": {"application/json": {"schema": _ref("TicketRequest")}}},
            "responses": {"201": _json(_ref("Ticket"), "Issued"),
                          "400": bad_request,
                          "415": _error("A body that is not application/json")}}},
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
                "responses": {"201": _json(_with_message("Task"), "Created and queued"),
                              "400": bad_request,
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
            "post": {"summary": "Stop a queued, training or paused task", "responses": {
                "202": _json(_with_message("Task"), "stopped (was queued or paused) or stopping (worker is exiting)"),
                "404": not_found, "409": _error("The task already ended")}},
        },
        "/api/v1/training/tasks/{task_id}/pause": {
            "parameters": [TASK_ID],
            "post": {"summary": "Pause a task: it writes a checkpoint at its next step and frees its slot",
                     "description": "A queued task is paused at once. A training one stays `training` (progress "
                                    "phase `pausing`) until its checkpoint is written, then becomes `paused`. A paused "
                                    "task survives restarts; resume, stop and delete work on it.",
                     "responses": {
                         "202": _json(_with_message("Task"), "paused (was queued) or pausing"),
                         "404": not_found,
                         "409": _error("The task is not queued or training, or already pausing or stopping")}},
        },
        "/api/v1/training/tasks/{task_id}/resume": {
            "parameters": [TASK_ID],
            "post": {"summary": "Queue a paused task again; it continues from its checkpoint", "responses": {
                "202": _json(_with_message("Task"), "queued again, in its original place"),
                "404": not_found, "409": _error("The task is not paused")}},
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
            "parameters": [TASK_ID, TICKET],
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
    ws_messages = {"oneOf": [_ref(name) for name in WS_MESSAGE_SCHEMAS]}
    upgrade = {"101": {"description": "Switching Protocols; then JSON text messages, see the description",
                       "content": {"application/json": {"schema": ws_messages}}}}
    paths["/api/v1/training/tasks/{task_id}/ws"] = {"parameters": [TASK_ID, TICKET], "get": {
        "summary": "Live messages of one task (WebSocket)",
        "description": WS_TASK_DESCRIPTION,
        "responses": {**upgrade, "404": not_found}}}
    paths["/api/v1/ws"] = {"parameters": [TICKET], "get": {
        "summary": "Live messages of every task (WebSocket, for dashboards)",
        "description": WS_ALL_DESCRIPTION,
        "responses": upgrade}}
    websockets = {"/api/v1/ws", "/api/v1/training/tasks/{task_id}/ws"}
    for path, item in paths.items():
        for method, operation in item.items():
            if method == "parameters":
                continue
            if operation.get("security") != []:
                operation["responses"]["401"] = _error("Missing or wrong API token (only when API_TOKEN is set)")
            checks_origin = method != "get" or path in websockets
            operation["responses"]["403"] = _error(REFUSED_BY_GUARD if checks_origin else REFUSED_HOST)
    return {
        "openapi": "3.1.0",
        "info": {"title": "bertd", "version": __version__,
                 "description": "Fine-tune BERT text classifiers over HTTP. Every error body is "
                                "{\"error\": {\"code\", \"message\", \"details\"}}."},
        "paths": paths,
        "components": {
            "schemas": {**COMPONENTS, **WS_MESSAGE_SCHEMAS},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "Needed when API_TOKEN is set; WebSockets and download "
                                                          "links pass ?token=<ticket> from POST /api/v1/tickets"}},
        },
        "security": [{"bearer": []}],
    }

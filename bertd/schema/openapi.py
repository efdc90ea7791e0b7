"""The OpenAPI 3.1 document of every route; the schemas come from the typed models that validate
requests (openapi_parts.py), the WebSocket messages from openapi_ws.py."""

from __future__ import annotations

from typing import Any

from bertd import __version__
from bertd.schema import openapi_base_models
from bertd.schema.openapi_internal import INTERNAL_PATHS
from bertd.schema.openapi_parts import COMPONENTS, error_body, json_body, ref, with_message
from bertd.schema.openapi_predictions import PREDICTION_COMPONENTS, WEBSOCKET, prediction_paths
from bertd.schema.openapi_ws import (
    WS_ALL_DESCRIPTION,
    WS_MESSAGE_SCHEMAS,
    WS_PREDICTION_DESCRIPTION,
    WS_TASK_DESCRIPTION,
)
from bertd.state.records import TaskStatus

REFUSED_HOST = ("host_not_allowed: the Host header is not an IP address, localhost, this machine's name or in "
                "ALLOWED_HOSTS (DNS rebinding guard)")
REFUSED_BY_GUARD = (f"{REFUSED_HOST}; or cross_origin_refused: a web page from another origin than bertd's own "
                    "and not in ALLOWED_ORIGINS (judged by Origin and Sec-Fetch-Site; clients that send "
                    "neither are not affected)")

TASK_ID = {"name": "task_id", "in": "path", "required": True, "schema": {"type": "string"}}
TICKET = {"name": "token", "in": "query", "required": False, "schema": {"type": "string"},
          "description": "A ticket from POST /api/v1/tickets, for browsers that cannot send the Authorization "
                         "header here (only with API_TOKEN set); never the API token itself."}
LANG = {"name": "lang", "in": "query", "required": False, "schema": {"type": "string", "examples": ["zh", "en"]},
        "description": "Language of the summaries and descriptions: zh (Simplified Chinese) or en; without it, "
                       "the Accept-Language header decides."}
FILENAME = {"name": "filename", "in": "path", "required": True, "schema": {"type": "string"},
            "description": "URL-encoded; Unicode names are kept as uploaded."}


def build_openapi() -> dict[str, Any]:
    not_found = error_body("No such task or file")
    bad_request = error_body("Validation error naming the field")
    paths: dict[str, Any] = {
        "/api/v1/health": {"get": {
            "summary": "Service health, devices and load", "security": [],
            "responses": {"200": json_body({"type": "object", "required": ["status", "version", "devices"], "properties": {
                "status": {"type": "string", "enum": ["ok"]}, "version": {"type": "string"},
                "devices": {"type": "array", "items": {"type": "object"}},
                "max_concurrent_tasks": {"type": "integer"}, "training": {"type": "integer"},
                "queued": {"type": "integer"}, "paused": {"type": "integer"},
                "running_workers": {"type": "integer", "description": "Training tasks and prediction jobs running"},
                "predicting": {"type": "integer", "description": "Prediction jobs running"}}}, "Healthy")}}},
        "/": {"get": {"summary": "The web dashboard (HTML; its API calls carry the token)", "security": [],
                      "responses": {"200": {"description": "The dashboard page",
                                            "content": {"text/html": {"schema": {"type": "string"}}}}}}},
        "/metrics": {"get": {
            "summary": "Prometheus metrics: tasks by status, queue depth, task duration, samples/s, "
                       "callback failures, WebSocket clients",
            "responses": {"200": {"description": "Prometheus text format",
                                  "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
        "/api/v1/openapi.json": {"get": {"summary": "This document", "security": [], "parameters": [LANG],
                                         "responses": {"200": json_body({"type": "object"}, "OpenAPI 3.1")}}},
        "/api/v1/docs": {"get": {"summary": "Interactive API docs (HTML)", "security": [], "parameters": [LANG],
                                 "responses": {"200": {"description": "Swagger UI",
                                                       "content": {"text/html": {"schema": {"type": "string"}}}}}}},
        "/api/v1/workers": {"get": {
            "summary": "The worker boxes (with BROKER_URL), from their heartbeats; empty without a broker",
            "responses": {"200": json_body({"type": "object", "required": ["workers"], "properties": {
                "workers": {"type": "array", "items": ref("Worker")}}}, "Every box seen in the last heartbeats")}}},
        **INTERNAL_PATHS,
        "/api/v1/tickets": {"post": {
            "summary": "A single-use ticket for a WebSocket or download URL, which cannot send the "
                       "Authorization header",
            "description": "With API_TOKEN set, WebSockets and download links pass `?token=<ticket>`, never the "
                           "API token itself (URLs end up in proxy logs and browser history). A ticket works "
                           "once, within a minute, for `path` when one is given. An empty body asks for a "
                           "ticket good for any WebSocket or download.",
            "requestBody": {"required": False, "content": {"application/json": {"schema": ref("TicketRequest")}}},
            "responses": {"201": json_body(ref("Ticket"), "Issued"),
                          "400": bad_request,
                          "415": error_body("A body that is not application/json")}}},
        "/api/v1/files": {
            "post": {
                "summary": "Upload an .xlsx or .csv file of texts and labels",
                "requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
                    "type": "object", "required": ["file"],
                    "properties": {"file": {"type": "string", "format": "binary"}}}}}},
                "responses": {
                    "201": json_body(ref("File"), "Uploaded; sheets, columns and row counts read once"),
                    "200": json_body(ref("File"), "The same bytes were already uploaded under this name"),
                    "400": error_body("Missing part, bad filename, empty or unreadable file"),
                    "409": error_body("Different bytes are already uploaded under this name"),
                    "413": error_body("Larger than MAX_UPLOAD_MB"),
                    "415": error_body("Not multipart, or not .xlsx/.csv"),
                    "507": error_body("The upload could not be written (disk full or DATA_DIR not writable)"),
                },
            },
            "get": {"summary": "List uploads", "responses": {"200": json_body(
                {"type": "object", "required": ["files"], "properties": {"files": {"type": "array",
                                                                                   "items": ref("File")}}},
                "Every upload, newest first")}},
        },
        "/api/v1/files/{filename}": {
            "parameters": [FILENAME],
            "get": {"summary": "One upload's metadata", "responses": {"200": json_body(ref("File"), "The file"),
                                                                     "404": not_found}},
            "delete": {"summary": "Delete an upload", "responses": {
                "200": json_body({"type": "object", "properties": {"filename": {"type": "string"},
                                                               "deleted": {"type": "boolean"},
                                                               "message": {"type": "string"}}}, "Deleted"),
                "404": not_found, "409": error_body("A queued or training task uses it")}},
        },
        "/api/v1/training/tasks": {
            "post": {
                "summary": "Create a training task (queued FIFO)",
                "requestBody": {"required": True, "content": {"application/json": {"schema": ref("TaskRequest")}}},
                "responses": {"201": json_body(with_message("Task"), "Created and queued (waiting in phase "
                                                                     "downloading_base_model while its base model "
                                                                     "is downloaded)"),
                              "400": error_body("Validation error naming the field; also a base_model the server "
                                                "does not have and cannot download (the message names the "
                                                "available ones and how to add one)"),
                              "409": error_body("A data file was deleted meanwhile"),
                              "415": error_body("Body is not application/json"),
                              "429": error_body("MAX_QUEUED_TASKS tasks are already waiting"),
                              "503": error_body("The server is shutting down")},
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
                "responses": {"200": json_body({"type": "object", "required": ["total", "page", "page_size", "tasks"],
                                            "properties": {"total": {"type": "integer"}, "page": {"type": "integer"},
                                                           "page_size": {"type": "integer"},
                                                           "tasks": {"type": "array", "items": ref("Task")}}},
                                           "A page of tasks"),
                              "400": bad_request},
            },
        },
        "/api/v1/training/tasks/{task_id}": {
            "parameters": [TASK_ID],
            "get": {"summary": "One task with live progress", "responses": {"200": json_body(ref("Task"), "The task"),
                                                                            "404": not_found}},
            "delete": {"summary": "Stop if active, then delete record, events and model", "responses": {
                "200": json_body({"type": "object", "required": ["task_id", "deleted"], "properties": {
                    "task_id": {"type": "string"}, "deleted": {"type": "boolean"}, "message": {"type": "string"}}},
                    "Deleted"),
                "404": not_found}},
        },
        "/api/v1/training/tasks/{task_id}/stop": {
            "parameters": [TASK_ID],
            "post": {"summary": "Stop a queued, training or paused task", "responses": {
                "202": json_body(with_message("Task"), "stopped (was queued or paused) or stopping (worker is exiting)"),
                "404": not_found, "409": error_body("The task already ended")}},
        },
        "/api/v1/training/tasks/{task_id}/pause": {
            "parameters": [TASK_ID],
            "post": {"summary": "Pause a task: it writes a checkpoint at its next step and frees its slot",
                     "description": "A queued task is paused at once. A training one stays `training` (progress "
                                    "phase `pausing`) until its checkpoint is written, then becomes `paused`. A paused "
                                    "task survives restarts; resume, stop and delete work on it.",
                     "responses": {
                         "202": json_body(with_message("Task"), "paused (was queued) or pausing"),
                         "404": not_found,
                         "409": error_body("The task is not queued or training, or already pausing or stopping")}},
        },
        "/api/v1/training/tasks/{task_id}/resume": {
            "parameters": [TASK_ID],
            "post": {"summary": "Queue a paused task again; it continues from its checkpoint", "responses": {
                "202": json_body(with_message("Task"), "queued again, in its original place"),
                "404": not_found, "409": error_body("The task is not paused")}},
        },
        "/api/v1/training/tasks/{task_id}/predict": {
            "parameters": [TASK_ID],
            "post": {
                "summary": "Classify texts with a completed task's model",
                "requestBody": {"required": True,
                                "content": {"application/json": {"schema": ref("PredictRequest")}}},
                "responses": {
                    "200": json_body({"type": "object", "required": ["predictions"], "properties": {
                        "task_id": {"type": "string"},
                        "predictions": {"type": "array", "items": {
                            "type": "object", "required": ["label", "score", "scores"],
                            "properties": {"label": {"type": "string"}, "score": {"type": "number"},
                                           "scores": {"type": "object",
                                                      "additionalProperties": {"type": "number"}},
                                           "top_k": {"type": "array", "items": {"type": "object"}}}}}}},
                        "One prediction per text, labels as in the training data"),
                    "400": bad_request, "404": not_found, "409": error_body("The task is not completed"),
                    "410": error_body("The model is no longer on disk"), "413": error_body("A text is too long"),
                    "415": error_body("Body is not application/json")},
            },
        },
        "/api/v1/training/tasks/{task_id}/download": {
            "parameters": [TASK_ID, TICKET],
            "get": {"summary": "The model directory as a .tar.gz (Hugging Face format, labels.json, metrics.json)",
                    "responses": {"200": {"description": "The tarball", "content": {
                        "application/gzip": {"schema": {"type": "string", "format": "binary"}}}},
                        "404": not_found, "409": error_body("The task is not completed"),
                        "410": error_body("The model is no longer on disk"),
                        "507": error_body("The tarball could not be written")}},
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
                "responses": {"200": json_body({"type": "object", "required": ["events"], "properties": {
                    "events": {"type": "array", "items": ref("Event")}}}, "Events in id order"),
                    "400": bad_request, "404": not_found},
            },
        },
    }
    paths.update(prediction_paths(TASK_ID, TICKET))
    ws_messages = {"oneOf": [ref(name) for name in WS_MESSAGE_SCHEMAS]}
    upgrade = {"101": {"description": "Switching Protocols; then JSON text messages, see the description",
                       "content": {"application/json": {"schema": ws_messages}}},
               "400": error_body("Not a WebSocket upgrade request (code websocket_required)")}
    paths["/api/v1/training/tasks/{task_id}/ws"] = {"parameters": [TASK_ID, TICKET], "get": {
        "summary": "Live messages of one task (WebSocket)",
        "description": WS_TASK_DESCRIPTION,
        "responses": {**upgrade, "404": not_found}}}
    paths["/api/v1/ws"] = {"parameters": [TICKET], "get": {
        "summary": "Live messages of every task and of base model downloads (WebSocket, for dashboards)",
        "description": WS_ALL_DESCRIPTION,
        "responses": dict(upgrade)}}
    paths[WEBSOCKET] = {"parameters": [TASK_ID, {"name": "prediction_id", "in": "path", "required": True,
                                                 "schema": {"type": "string"}}, TICKET], "get": {
        "summary": "Live messages of one prediction job (WebSocket)",
        "description": WS_PREDICTION_DESCRIPTION,
        "responses": {**upgrade, "404": error_body("No such task or prediction job")}}}
    paths.update(openapi_base_models.paths(bad_request))
    websockets = {"/api/v1/ws", "/api/v1/training/tasks/{task_id}/ws", WEBSOCKET}
    for path, item in paths.items():
        for method, operation in item.items():
            if method == "parameters":
                continue
            if operation.get("security") != []:
                operation["responses"]["401"] = error_body("Missing or wrong API token (only when API_TOKEN is set)")
            checks_origin = method != "get" or path in websockets
            operation["responses"]["403"] = error_body(REFUSED_BY_GUARD if checks_origin else REFUSED_HOST)
    return {
        "openapi": "3.1.0",
        "info": {"title": "bertd", "version": __version__,
                 "description": "Fine-tune BERT text classifiers over HTTP. Every error body is "
                                "{\"error\": {\"code\", \"message\", \"details\"}}."},
        "paths": paths,
        "components": {
            "schemas": {**COMPONENTS, **PREDICTION_COMPONENTS, **openapi_base_models.COMPONENTS,
                        **WS_MESSAGE_SCHEMAS},
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer",
                           "description": "Needed when API_TOKEN is set; WebSockets and download "
                                          "links pass ?token=<ticket> from POST /api/v1/tickets"},
                "worker": {"type": "http", "scheme": "bearer",
                           "description": "WORKER_TOKEN: the secret bertd worker boxes share with the API node"}},
        },
        "security": [{"bearer": []}],
    }

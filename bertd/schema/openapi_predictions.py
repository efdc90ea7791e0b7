"""The prediction jobs' part of the OpenAPI document: their routes and component schemas."""

from __future__ import annotations

from typing import Any

from bertd.schema.json_schema import schema_of
from bertd.schema.openapi_parts import (
    NULLABLE_INTEGER,
    NULLABLE_NUMBER,
    NULLABLE_STRING,
    error_body,
    json_body,
    ref,
    with_message,
)
from bertd.schema.requests import PredictionJobRequest
from bertd.state.records import PredictionStatus

JOBS = "/api/v1/training/tasks/{task_id}/predictions"
WEBSOCKET = JOBS + "/{prediction_id}/ws"
PREDICTION_ID = {"name": "prediction_id", "in": "path", "required": True, "schema": {"type": "string"}}
COUNTS = {"type": ["object", "null"], "additionalProperties": {"type": "integer"}}

PREDICTION_COMPONENTS: dict[str, Any] = {
    "PredictionJobRequest": schema_of(PredictionJobRequest),
    "PredictionJob": {
        "type": "object",
        "required": ["prediction_id", "task_id", "status", "file", "sheet_name", "text_column", "top_k", "threshold",
                     "created_at", "phase", "progress", "rows_done", "rows_total", "rows_per_second", "label_counts"],
        "properties": {
            "prediction_id": {"type": "string"},
            "task_id": {"type": "string"},
            "status": {"type": "string", "enum": [str(status) for status in PredictionStatus]},
            "file": {"type": "string", "description": "The upload predicted."},
            "sheet_name": {"type": "string", "description": "The sheet predicted (the first one when none was named)."},
            "text_column": {"type": "string"},
            "top_k": {"type": "integer"},
            "threshold": NULLABLE_NUMBER,
            "created_at": {"type": "string", "format": "date-time"},
            "started_at": NULLABLE_STRING,
            "finished_at": NULLABLE_STRING,
            "queue_position": {**NULLABLE_INTEGER, "description": "1 = the next job to start, tasks and prediction "
                               "jobs together; null unless queued"},
            "phase": {"type": "string", "description": "queued, starting, reading, loading_model, predicting, writing, "
                      "then completed, failed or stopped"},
            "progress": {"type": "number", "description": "Percent of rows done (0-100)."},
            "rows_done": {"type": "integer"},
            "rows_total": NULLABLE_INTEGER,
            "rows_per_second": NULLABLE_NUMBER,
            "eta_seconds": NULLABLE_NUMBER,
            "rows_empty": {**NULLABLE_INTEGER, "description": "Rows with an empty text: an empty prediction."},
            "rows_below_threshold": {**NULLABLE_INTEGER, "description": "Rows whose best score is under threshold."},
            "label_counts": {**COUNTS, "description": "Rows per predicted label, every label of the model listed."},
            "output_columns": {"type": ["array", "null"], "items": {"type": "string"},
                               "description": "The columns appended to the sheet."},
            "seconds": NULLABLE_NUMBER,
            "download_name": {**NULLABLE_STRING, "description": "The result's file name: <input stem>-predicted"
                              "<suffix>; null until completed."},
            "error_message": NULLABLE_STRING,
        },
    },
}


def prediction_paths(task_id: dict[str, Any], ticket: dict[str, Any]) -> dict[str, Any]:
    not_found = error_body("No such task or prediction job")
    deleted = {"type": "object", "required": ["prediction_id", "deleted"], "properties": {
        "prediction_id": {"type": "string"}, "deleted": {"type": "boolean"}, "message": {"type": "string"}}}
    return {
        JOBS: {
            "parameters": [task_id],
            "post": {
                "summary": "Predict every row of an uploaded sheet with a completed task's model (runs in the pool)",
                "description": "The job queues FIFO with the training tasks and holds a slot while it runs. Its "
                               "result is the input file with columns appended: predicted_label, predicted_score, "
                               "and for top_k > 1 predicted_label_2, predicted_score_2 ... (a suffix .1, .2 ... "
                               "when the sheet has such columns already). Every other sheet, column and row is kept.",
                "requestBody": {"required": True,
                                "content": {"application/json": {"schema": ref("PredictionJobRequest")}}},
                "responses": {
                    "202": json_body(with_message("PredictionJob"), "Queued"),
                    "400": error_body("Validation error naming the field: unknown file, sheet or column, top_k "
                                      "above the model's labels, threshold outside 0..1"),
                    "404": not_found, "409": error_body("The task is not completed, or the file was deleted meanwhile"),
                    "410": error_body("The model is no longer on disk"),
                    "415": error_body("Body is not application/json"),
                    "429": error_body("MAX_QUEUED_TASKS prediction jobs are already waiting"),
                    "503": error_body("The server is shutting down")},
            },
            "get": {"summary": "The task's prediction jobs, newest first", "responses": {
                "200": json_body({"type": "object", "required": ["predictions"], "properties": {
                    "predictions": {"type": "array", "items": ref("PredictionJob")}}}, "Prediction jobs"),
                "404": not_found}},
        },
        JOBS + "/{prediction_id}": {
            "parameters": [task_id, PREDICTION_ID],
            "get": {"summary": "One prediction job: status, progress, rows done and per second, label counts",
                    "responses": {"200": json_body(ref("PredictionJob"), "The job"), "404": not_found}},
            "delete": {"summary": "Stop it if active, then delete the job and its result file", "responses": {
                "200": json_body(deleted, "Deleted"), "404": not_found}},
        },
        JOBS + "/{prediction_id}/stop": {
            "parameters": [task_id, PREDICTION_ID],
            "post": {"summary": "Stop a queued or running prediction job", "responses": {
                "202": json_body(with_message("PredictionJob"), "stopped (was queued) or running until its worker "
                                 "has exited"),
                "404": not_found, "409": error_body("The job already ended")}},
        },
        JOBS + "/{prediction_id}/download": {
            "parameters": [task_id, PREDICTION_ID, ticket],
            "get": {"summary": "The result: the input file with the prediction columns appended, in its format",
                    "responses": {
                        "200": {"description": "The file, named <input stem>-predicted<suffix>", "content": {
                            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet": {
                                "schema": {"type": "string", "format": "binary"}},
                            "text/csv": {"schema": {"type": "string", "format": "binary"}}}},
                        "404": not_found, "409": error_body("The job is not completed"),
                        "410": error_body("The result is no longer on disk")}},
        },
    }

"""The OpenAPI parts for base models (list, pull, delete) and for registering files copied into
the uploads folder."""

from __future__ import annotations

from typing import Any

from bertd.schema.json_schema import schema_of
from bertd.schema.openapi_parts import (
    NULLABLE_INTEGER,
    NULLABLE_STRING,
    TASK_ERROR,
    error_body,
    json_body,
    ref,
    with_message,
)
from bertd.schema.requests import BaseModelRequest

BASE_MODEL = {
    "type": "object",
    "required": ["name", "source", "path", "status", "size_bytes", "parameters", "hidden_size", "num_layers",
                 "vocab_size", "bytes_done", "bytes_total", "error_message"],
    "properties": {
        "name": {"type": "string", "description": "What a task names as base_model"},
        "source": {"type": "string", "enum": ["local", "huggingface", "modelscope"],
                   "description": "local: put there by hand; else the hub it was pulled from"},
        "path": {"type": "string", "description": "Its folder (for a download: where it will be)"},
        "location": {"type": "string", "enum": ["base_models_dir", "hf_cache"],
                     "description": "BASE_MODELS_DIR (bertd manages it) or the Hugging Face cache"},
        "status": {"type": "string", "enum": ["ready", "downloading", "failed"]},
        "size_bytes": {**NULLABLE_INTEGER, "description": "On disk (while downloading: so far)"},
        "parameters": {**NULLABLE_INTEGER, "description": "From the safetensors headers"},
        "hidden_size": NULLABLE_INTEGER, "num_layers": NULLABLE_INTEGER, "vocab_size": NULLABLE_INTEGER,
        "revision": {**NULLABLE_STRING, "description": "The commit a pulled model came from"},
        "bytes_done": {**NULLABLE_INTEGER, "description": "Downloading or failed: bytes on disk"},
        "bytes_total": {**NULLABLE_INTEGER, "description": "Downloading or failed: the model's size, once known"},
        "error_message": {**NULLABLE_STRING, "description": "Failed: the hub, the id, the reason, what to do"},
        "error": TASK_ERROR,
    },
}

COMPONENTS: dict[str, Any] = {
    "BaseModel": BASE_MODEL,
    "BaseModelRequest": schema_of(BaseModelRequest),
    "RescanResult": {
        "type": "object", "required": ["added", "skipped", "missing"],
        "properties": {
            "added": {"type": "array", "items": ref("File"), "description": "Newly registered files"},
            "skipped": {"type": "array", "items": {"type": "object", "properties": {
                "filename": {"type": "string"}, "reason": {"type": "string"}}},
                "description": "Files in the folder that could not be registered, and why"},
            "missing": {"type": "array", "items": {"type": "string"},
                        "description": "Registered files whose file is gone from the folder"},
        },
    },
}

NAME = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"},
        "description": "The base model's name; an org/name id with its slash as is or URL-encoded (%2F)."}


def paths(bad_request: dict[str, Any]) -> dict[str, Any]:
    return {
        "/api/v1/base-models": {
            "get": {"summary": "Base models this server can train from, and downloads running or failed",
                    "responses": {"200": json_body({"type": "object", "required": ["base_models"], "properties": {
                        "base_models": {"type": "array", "items": ref("BaseModel")}}}, "By name")}},
            "post": {
                "summary": "Download a base model from the Hugging Face Hub (or HF_ENDPOINT) or ModelScope",
                "description": "Runs in the background, resumable, retried when a connection drops, and checked "
                               "(config, weights and tokenizer load) before it is listed as ready. Follow it in the "
                               "list or as `base_model` messages on the WebSocket /api/v1/ws.",
                "requestBody": {"required": True,
                                "content": {"application/json": {"schema": ref("BaseModelRequest")}}},
                "responses": {"202": json_body(with_message("BaseModel"), "The download started"),
                              "200": json_body(with_message("BaseModel"), "It is already on this server"),
                              "400": bad_request, "409": error_body("The same base model is being downloaded"),
                              "415": error_body("Body is not application/json")},
            },
        },
        "/api/v1/base-models/{name}": {
            "parameters": [NAME],
            "delete": {"summary": "Delete a base model from BASE_MODELS_DIR, or stop and discard its download",
                       "responses": {
                           "200": json_body({"type": "object", "required": ["name", "deleted"], "properties": {
                               "name": {"type": "string"}, "deleted": {"type": "boolean"},
                               "message": {"type": "string"}}}, "Deleted"),
                           "404": error_body("No such base model"),
                           "409": error_body("A queued or training task uses it, or it is in the Hugging Face cache, "
                                        "which bertd does not manage")}},
        },
        "/api/v1/files/rescan": {
            "post": {"summary": "Register files copied into the uploads folder by hand (also done at start-up)",
                     "responses": {"200": json_body(ref("RescanResult"), "What the scan found")}},
        },
    }

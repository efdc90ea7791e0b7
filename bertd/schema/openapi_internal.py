"""The OpenAPI document's routes that only `bertd worker` boxes call (WORKER_TOKEN)."""

from __future__ import annotations

from typing import Any

from bertd.schema.openapi_parts import error_body, json_body

WORKER_ONLY: list[dict[str, Any]] = [{"worker": []}]
BINARY = {"schema": {"type": "string", "format": "binary"}}

INTERNAL_PATHS: dict[str, Any] = {
    "/api/v1/internal/hello": {"get": {
        "summary": "Workers: the API node's protocol version (a worker checks it before taking any task)",
        "security": WORKER_ONLY,
        "responses": {"200": json_body({"type": "object", "required": ["protocol", "version"], "properties": {
            "protocol": {"type": "integer"}, "version": {"type": "string"}}}, "Who the API node is"),
            "403": error_body("This bertd takes no workers (no BROKER_URL / WORKER_TOKEN)")}}},
    "/api/v1/internal/files/{filename}": {
        "parameters": [{"name": "filename", "in": "path", "required": True, "schema": {"type": "string"}}],
        "get": {"summary": "Workers: an uploaded file (its sha256 in X-Content-SHA256)", "security": WORKER_ONLY,
                "responses": {"200": {"description": "The file", "content": {"application/octet-stream": BINARY}},
                              "403": error_body("This bertd takes no workers"),
                              "404": error_body("No such upload")}}},
    "/api/v1/internal/base-models/{name}": {
        "parameters": [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"},
                        "description": "URL-encoded; org/name ids work"}],
        "get": {"summary": "Workers: a base model folder as .tar.gz", "security": WORKER_ONLY,
                "responses": {"200": {"description": "The folder", "content": {"application/gzip": BINARY}},
                              "403": error_body("This bertd takes no workers"),
                              "404": error_body("The API node does not have this base model")}}},
    "/api/v1/internal/tasks/{task_id}/model": {
        "parameters": [{"name": "task_id", "in": "path", "required": True, "schema": {"type": "string"}},
                       {"name": "run_id", "in": "query", "required": True, "schema": {"type": "string"}}],
        "put": {"summary": "Workers: the trained model (.tar.gz, sha256 in X-Content-SHA256), put in place before "
                           "the task completes", "security": WORKER_ONLY,
                "requestBody": {"required": True, "description": "A .tar.gz of the model folder (workers send it "
                                "as application/gzip; the content type is not checked, the sha256 is)",
                                "content": {"application/octet-stream": BINARY}},
                "responses": {
                    "200": json_body({"type": "object", "properties": {"artifacts": {"type": "object"}}},
                                     "In place; the artifacts as the API node has them"),
                    "400": error_body("The sha256 does not match, or the archive holds no model"),
                    "403": error_body("This bertd takes no workers"),
                    "404": error_body("No such task"),
                    "409": error_body("The task's current run is another one (the model is not wanted)"),
                    "507": error_body("The model could not be stored")}}},
}

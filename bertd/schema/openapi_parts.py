"""Small builders the OpenAPI modules share: references, JSON bodies, error answers."""

from __future__ import annotations

from typing import Any

NULLABLE_NUMBER = {"type": ["number", "null"]}
NULLABLE_INTEGER = {"type": ["integer", "null"]}
NULLABLE_STRING = {"type": ["string", "null"]}


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def json_body(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def error(description: str) -> dict[str, Any]:
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

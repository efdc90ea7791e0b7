"""JSON Schema of the typed models, shaped for OpenAPI 3.1 readers (the docs page, the dashboard's
create form, fuzzers): nullable fields as `"type": [T, "null"]`, no generated titles, and nested
models written inline so a request schema reads as one document."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema


class _OpenApiFlavour(GenerateJsonSchema):
    def nullable_schema(self, schema: core_schema.NullableSchema) -> JsonSchemaValue:
        inner = self.generate_inner(schema["schema"])
        if "$ref" in inner or "type" not in inner:
            return super().nullable_schema(schema)
        nullable = dict(inner)
        nullable["type"] = [*([inner["type"]] if isinstance(inner["type"], str) else inner["type"]), "null"]
        if "enum" in nullable:
            nullable["enum"] = [*nullable["enum"], None]
        return nullable

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False

    def model_schema(self, schema: core_schema.ModelSchema) -> JsonSchemaValue:
        generated = super().model_schema(schema)
        generated.pop("title", None)
        return generated


def _inline(node: Any, definitions: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        if "$ref" in node:
            target = definitions[node["$ref"].rsplit("/", 1)[-1]]
            merged = {**_inline(target, definitions), **{k: v for k, v in node.items() if k != "$ref"}}
            return merged
        return {key: _inline(value, definitions) for key, value in node.items()}
    if isinstance(node, list):
        return [_inline(item, definitions) for item in node]
    return node


def schema_of(model: type[BaseModel], mode: str = "validation") -> dict[str, Any]:
    """The model's JSON Schema with every nested model inlined."""
    generated = model.model_json_schema(schema_generator=_OpenApiFlavour, mode=mode)  # type: ignore[arg-type]
    definitions = generated.pop("$defs", {})
    return _inline(generated, definitions)

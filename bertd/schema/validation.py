"""Turning a request body into a typed model, and pydantic's errors into bertd's one error body.

Every rejection names the field by its full path (`hyperparameters.lora.target_modules[1]`) and
says what was expected, in the words the API has always used; only the first problem is reported,
except that all unknown fields of one object are listed together."""

from __future__ import annotations

from typing import Any, TypeVar

from annotated_types import Ge, Gt, Le, Lt
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from bertd.server.errors import ApiError, validation_error

Model = TypeVar("Model", bound=BaseModel)

TYPE_NAMES = {
    "string_type": "a string",
    "int_type": "an integer",
    "float_type": "a number",
    "bool_type": "true or false",
    "dict_type": "an object",
    "model_type": "an object",
    "model_attributes_type": "an object",
    "tuple_type": "an array",
    "list_type": "an array",
}
RANGE_ERRORS = ("greater_than", "greater_than_equal", "less_than", "less_than_equal")
# Hints for fields with a pattern, keyed by field name.
PATTERN_HINTS: dict[str, str] = {}


def field_path(location: tuple[int | str, ...]) -> str:
    """('hyperparameters', 'lora', 'target_modules', 1) -> 'hyperparameters.lora.target_modules[1]'.
    Union tags (never identifiers, unlike field names) are left out."""
    path = ""
    for part in location:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part.isidentifier():
            path += f".{part}" if path else part
    return path


def _field_at(model: type[BaseModel], location: tuple[int | str, ...]) -> FieldInfo | None:
    """The FieldInfo a location points to, following nested models."""
    current: Any = model
    found: FieldInfo | None = None
    for part in location:
        if not (isinstance(part, str) and part.isidentifier()):
            continue
        fields = getattr(current, "model_fields", None)
        if not fields or part not in fields:
            return found if isinstance(part, int) else None
        found = fields[part]
        current = found.annotation
    return found


def _model_at(model: type[BaseModel], location: tuple[int | str, ...]) -> type[BaseModel] | None:
    if not location:
        return model
    field = _field_at(model, location)
    annotation = field.annotation if field else None
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def describe_range(field: FieldInfo | None) -> str:
    parts = []
    for rule in field.metadata if field else ():
        if isinstance(rule, Gt):
            parts.append(f"> {rule.gt}")
        elif isinstance(rule, Ge):
            parts.append(f">= {rule.ge}")
        elif isinstance(rule, Lt):
            parts.append(f"< {rule.lt}")
        elif isinstance(rule, Le):
            parts.append(f"<= {rule.le}")
    return " and ".join(parts) or "in range"


def _message(model: type[BaseModel], error: dict[str, Any]) -> str:
    kind, location, value = error["type"], error["loc"], error.get("input")
    path = field_path(location) or "the request body"
    context = error.get("ctx") or {}
    if kind == "missing":
        return f"{path} is required"
    if kind in TYPE_NAMES:
        expected = TYPE_NAMES[kind]
        if not location:
            return f"the request body must be a JSON object, got {type(value).__name__}"
        if value is None:
            return f"{path} must not be null; expected {expected}"
        return f"{path} must be {expected}, got {type(value).__name__} {value!r}"
    if kind in RANGE_ERRORS:
        return f"{path} must be {describe_range(_field_at(model, location))}, got {value}"
    if kind == "finite_number":
        return f"{path} must be a finite number"
    if kind == "string_too_short":
        minimum = context.get("min_length", 1)
        return f"{path} must not be empty" if minimum == 1 else f"{path} must be at least {minimum} characters long"
    if kind == "string_too_long":
        return f"{path} must be at most {context.get('max_length')} characters long"
    if kind == "too_short":
        return f"{path} must have at least {context.get('min_length')} item(s)"
    if kind == "too_long":
        return f"{path} must have at most {context.get('max_length')} item(s)"
    if kind in ("literal_error", "enum"):
        return f"{path} must be one of {context.get('expected', '').replace(' or ', ', ')}; got {value!r}"
    if kind == "string_pattern_mismatch":
        name = next((part for part in reversed(location) if isinstance(part, str)), "")
        return f"{path} {PATTERN_HINTS.get(name, 'has an invalid format')}; got {value!r}"
    if kind == "value_error":
        return f"{path} {context.get('error', error['msg'])}"
    return f"{path}: {error['msg']}"


def translate(model: type[BaseModel], failure: ValidationError,
              statuses: dict[str, tuple[int, str]] | None = None) -> ApiError:
    errors = failure.errors(include_url=False)
    unknown = [error for error in errors if error["type"] == "extra_forbidden"]
    if unknown:
        parent = unknown[0]["loc"][:-1]
        names = [str(error["loc"][-1]) for error in unknown if error["loc"][:-1] == parent]
        owner = _model_at(model, parent)
        expected = ", ".join(owner.model_fields) if owner else "the documented fields"
        prefix = field_path(parent)
        listed = ", ".join(f"{prefix}.{name}" if prefix else name for name in names)
        return validation_error(f"unknown field(s) {listed}; expected only: {expected}", prefix or None,
                                unknown=names)
    first = errors[0]
    path = field_path(first["loc"]) or None
    if statuses and first["type"] in statuses:
        status, code = statuses[first["type"]]
        return ApiError(status, code, _message(model, first), {"field": path})
    return validation_error(_message(model, first), path)


def parse(model: type[Model], body: Any, statuses: dict[str, tuple[int, str]] | None = None) -> Model:
    """`body` (decoded JSON) as `model`, or the ApiError that names what is wrong: 400, unless
    `statuses` maps the error's type to another status and code."""
    try:
        return model.model_validate(body)
    except ValidationError as failure:
        raise translate(model, failure, statuses) from None


__all__ = ["ApiError", "PATTERN_HINTS", "field_path", "parse", "translate"]

"""Turning a request body into a typed model, and pydantic's errors into bertd's one error body.

Every rejection names the field by its full path (`hyperparameters.lora.target_modules[1]`) and
says what was expected, in the words the API has always used; only the first problem is reported,
except that all unknown fields of one object are listed together."""

from __future__ import annotations

from typing import Any, TypeVar

from annotated_types import Ge, Gt, Le, Lt
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from bertd.i18n import Text
from bertd.server.errors import ApiError, validation_error

Model = TypeVar("Model", bound=BaseModel)

TYPE_NAMES = {
    "string_type": Text("a string"),
    "int_type": Text("an integer"),
    "float_type": Text("a number"),
    "bool_type": Text("true or false"),
    "dict_type": Text("an object"),
    "model_type": Text("an object"),
    "model_attributes_type": Text("an object"),
    "tuple_type": Text("an array"),
    "list_type": Text("an array"),
}
RANGE_ERRORS = ("greater_than", "greater_than_equal", "less_than", "less_than_equal")
# Hints for fields with a pattern, keyed by field name.
PATTERN_HINTS: dict[str, Text] = {}


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


def describe_range(field: FieldInfo | None) -> Text | str:
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
    if not parts:
        return Text("in range")
    described: Text | str = parts[0]
    for part in parts[1:]:
        described = Text("{first} and {second}", first=described, second=part)
    return described


def _value_error(context: dict[str, Any], fallback: str) -> Text | str:
    """A validator's ValueError: its Text when it raised one, else its words as they are."""
    error = context.get("error", fallback)
    argument = error.args[0] if isinstance(error, ValueError) and error.args else None
    return argument if isinstance(argument, Text) else str(error)


def _message(model: type[BaseModel], error: dict[str, Any]) -> Text:
    kind, location, value = error["type"], error["loc"], error.get("input")
    path = field_path(location) or Text("the request body")
    context = error.get("ctx") or {}
    if kind == "missing":
        return Text("{path} is required", path=path)
    if kind in TYPE_NAMES:
        expected = TYPE_NAMES[kind]
        if not location:
            return Text("the request body must be a JSON object, got {type}", type=type(value).__name__)
        if value is None:
            return Text("{path} must not be null; expected {expected}", path=path, expected=expected)
        return Text("{path} must be {expected}, got {type} {value}", path=path, expected=expected,
                    type=type(value).__name__, value=repr(value))
    if kind in RANGE_ERRORS:
        return Text("{path} must be {range}, got {value}", path=path, range=describe_range(_field_at(model, location)),
                    value=str(value))
    if kind == "finite_number":
        return Text("{path} must be a finite number", path=path)
    if kind == "string_too_short":
        minimum = context.get("min_length", 1)
        return (Text("{path} must not be empty", path=path) if minimum == 1 else
                Text("{path} must be at least {minimum} characters long", path=path, minimum=minimum))
    if kind == "string_too_long":
        return Text("{path} must be at most {maximum} characters long", path=path, maximum=context.get("max_length"))
    if kind == "too_short":
        return Text("{path} must have at least {minimum} item(s)", path=path, minimum=context.get("min_length"))
    if kind == "too_long":
        return Text("{path} must have at most {maximum} item(s)", path=path, maximum=context.get("max_length"))
    if kind in ("literal_error", "enum"):
        return Text("{path} must be one of {expected}; got {value}", path=path,
                    expected=str(context.get("expected", "")).replace(" or ", ", "), value=repr(value))
    if kind == "string_pattern_mismatch":
        name = next((part for part in reversed(location) if isinstance(part, str)), "")
        return Text("{path} {rule}; got {value}", path=path,
                    rule=PATTERN_HINTS.get(name, Text("has an invalid format")), value=repr(value))
    if kind == "value_error":
        return Text("{path} {rule}", path=path, rule=_value_error(context, error["msg"]))
    return Text("{path}: {problem}", path=path, problem=str(error["msg"]))


def translate(model: type[BaseModel], failure: ValidationError,
              statuses: dict[str, tuple[int, str]] | None = None) -> ApiError:
    errors = failure.errors(include_url=False)
    unknown = [error for error in errors if error["type"] == "extra_forbidden"]
    if unknown:
        parent = unknown[0]["loc"][:-1]
        names = [str(error["loc"][-1]) for error in unknown if error["loc"][:-1] == parent]
        owner = _model_at(model, parent)
        expected = ", ".join(owner.model_fields) if owner else Text("the documented fields")
        prefix = field_path(parent)
        listed = ", ".join(f"{prefix}.{name}" if prefix else name for name in names)
        return validation_error(Text("unknown field(s) {names}; expected only: {expected}", names=listed,
                                     expected=expected), prefix or None, unknown=names)
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

"""The task request: one declarative field list that both validates requests and feeds OpenAPI."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from bertd.server.errors import validation_error


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()

JSON_TYPE_NAMES = {
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "object": "an object",
    "array": "an array",
}


@dataclass(frozen=True)
class FieldSpec:
    name: str
    kind: str  # a JSON schema type: string, integer, number, boolean, object, array
    description: str
    default: Any = REQUIRED
    nullable: bool = False
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    choices: tuple[str, ...] | None = None
    min_length: int | None = None
    max_length: int | None = None
    pattern: str | None = None
    fields: tuple[FieldSpec, ...] | None = None  # for objects
    item_kind: str | None = None  # for arrays

    @property
    def required(self) -> bool:
        return self.default is REQUIRED


def _kind_matches(kind: str, value: Any) -> bool:
    if kind == "string":
        return isinstance(value, str)
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if kind == "object":
        return isinstance(value, dict)
    if kind == "array":
        return isinstance(value, list)
    raise AssertionError(f"unknown kind {kind}")


def _check_value(spec: FieldSpec, value: Any, path: str) -> Any:
    if value is None:
        if spec.nullable:
            return None
        raise validation_error(f"{path} must not be null; expected {JSON_TYPE_NAMES[spec.kind]}", path)
    if not _kind_matches(spec.kind, value):
        raise validation_error(
            f"{path} must be {JSON_TYPE_NAMES[spec.kind]}, got {type(value).__name__} {value!r}", path
        )
    if spec.kind in ("integer", "number"):
        low_ok = spec.minimum is None or (value > spec.minimum if spec.exclusive_minimum else value >= spec.minimum)
        high_ok = spec.maximum is None or value <= spec.maximum
        if not (low_ok and high_ok):
            raise validation_error(f"{path} must be {describe_range(spec)}, got {value}", path)
    if spec.kind == "string":
        if spec.min_length is not None and len(value) < spec.min_length:
            raise validation_error(f"{path} must be at least {spec.min_length} character(s) long", path)
        if spec.max_length is not None and len(value) > spec.max_length:
            raise validation_error(f"{path} must be at most {spec.max_length} characters long", path)
        if spec.choices is not None and value not in spec.choices:
            raise validation_error(f"{path} must be one of {', '.join(spec.choices)}; got {value!r}", path)
        if spec.pattern is not None and not re.fullmatch(spec.pattern, value):
            raise validation_error(f"{path} {PATTERN_HINTS.get(spec.pattern, 'has an invalid format')}; got {value!r}", path)
    if spec.kind == "object" and spec.fields is not None:
        return validate_object(spec.fields, value, path)
    if spec.kind == "array":
        if spec.min_length is not None and len(value) < spec.min_length:
            raise validation_error(f"{path} must have at least {spec.min_length} item(s)", path)
        for index, item in enumerate(value):
            if spec.item_kind is not None and not _kind_matches(spec.item_kind, item):
                raise validation_error(f"{path}[{index}] must be {JSON_TYPE_NAMES[spec.item_kind]}", path)
            if spec.item_kind == "string" and not item:
                raise validation_error(f"{path}[{index}] must not be empty", path)
    return value


def describe_range(spec: FieldSpec) -> str:
    low = "" if spec.minimum is None else (f"> {spec.minimum}" if spec.exclusive_minimum else f">= {spec.minimum}")
    high = "" if spec.maximum is None else f"<= {spec.maximum}"
    return " and ".join(part for part in (low, high) if part) or "a number"


def validate_object(specs: tuple[FieldSpec, ...], value: Any, path: str = "") -> dict[str, Any]:
    """Check `value` against the field list, rejecting unknown fields by name; fill in defaults."""
    where = path or "the request body"
    if not isinstance(value, dict):
        raise validation_error(f"{where} must be a JSON object", path or None)
    known = {spec.name: spec for spec in specs}
    unknown = sorted(set(value) - set(known))
    if unknown:
        names = ", ".join(f"{path}.{name}" if path else name for name in unknown)
        raise validation_error(
            f"unknown field(s) {names}; expected only: {', '.join(known)}", path or None, unknown=unknown
        )
    result: dict[str, Any] = {}
    for spec in specs:
        field_path = f"{path}.{spec.name}" if path else spec.name
        if spec.name not in value:
            if spec.required:
                raise validation_error(f"{field_path} is required", field_path)
            default = spec.default
            if spec.kind == "object" and spec.fields is not None and default == {}:
                default = validate_object(spec.fields, {}, field_path)
            result[spec.name] = list(default) if isinstance(default, (list, tuple)) else default
            continue
        result[spec.name] = _check_value(spec, value[spec.name], field_path)
    return result


# ---- the fields ------------------------------------------------------------------------------

MODEL_NAME_EN_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}"
# A directory name under BASE_MODELS_DIR or a hub id "org/name": never absolute, never "..".
BASE_MODEL_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?"

PATTERN_HINTS = {
    MODEL_NAME_EN_PATTERN: "must be 1-100 letters, digits, '.', '_' or '-', starting with a letter or digit",
    BASE_MODEL_PATTERN: "must be a directory name under BASE_MODELS_DIR or a hub id like 'bert-base-chinese' "
    "or 'org/name' (letters, digits, '.', '_', '-')",
}

LORA_DEFAULT_LEARNING_RATE = 2e-4

LORA_FIELDS = (
    FieldSpec("enabled", "boolean",
              "Train low-rank adapters and the classification head instead of all weights; the saved model has the "
              f"adapters merged in. learning_rate then defaults to {LORA_DEFAULT_LEARNING_RATE:g}.", default=False),
    FieldSpec("r", "integer", "LoRA rank.", default=8, minimum=1, maximum=256),
    FieldSpec("lora_alpha", "integer", "LoRA scaling numerator.", default=16, minimum=1, maximum=1024),
    FieldSpec("lora_dropout", "number", "Dropout on LoRA inputs.", default=0.1, minimum=0, maximum=0.9),
    FieldSpec(
        "target_modules", "array", "Names of the linear layers to adapt (BERT: query, key, value, dense).",
        default=("query", "value"), item_kind="string", min_length=1,
    ),
)

HYPERPARAMETER_FIELDS = (
    FieldSpec("learning_rate", "number",
              f"Peak learning rate of AdamW; when left out with lora.enabled, {LORA_DEFAULT_LEARNING_RATE:g}.",
              default=2e-5, minimum=0,
              exclusive_minimum=True, maximum=1),
    FieldSpec("epochs", "integer", "Passes over the training rows.", default=3, minimum=1, maximum=1000),
    FieldSpec("batch_size", "integer", "Rows per optimiser step (before gradient accumulation).", default=16,
              minimum=1, maximum=4096),
    FieldSpec("max_sequence_length", "integer", "Tokens kept per text; longer texts are truncated.", default=256,
              minimum=8, maximum=8192),
    FieldSpec("random_seed", "integer", "Seed for the split, shuffling and initialisation.", default=42, minimum=0,
              maximum=2**32 - 1),
    FieldSpec("train_val_split", "number",
              "Fraction of rows held out for validation (stratified by label); ignored with validation_data_file.",
              default=0.2, minimum=0, exclusive_minimum=True, maximum=0.5),
    FieldSpec("text_column", "string", "Column holding the text to classify.", default="text", min_length=1),
    FieldSpec("label_column", "string", "Column holding the label.", default="label", min_length=1),
    FieldSpec("sheet_name", "string", "Sheet of training_data_file; null means the first sheet.", default=None,
              nullable=True, min_length=1),
    FieldSpec("validation_sheet_name", "string", "Sheet of validation_data_file; null means the first sheet.",
              default=None, nullable=True, min_length=1),
    FieldSpec("weight_decay", "number", "AdamW weight decay (not applied to biases and LayerNorm).", default=0.01,
              minimum=0, maximum=1),
    FieldSpec("warmup_ratio", "number", "Fraction of steps with a linear learning-rate warm-up.", default=0.0,
              minimum=0, maximum=0.9),
    FieldSpec("max_grad_norm", "number", "Gradient clipping norm; 0 turns clipping off.", default=1.0, minimum=0,
              maximum=1000),
    FieldSpec("gradient_accumulation_steps", "integer", "Batches summed into one optimiser step.", default=1,
              minimum=1, maximum=1024),
    FieldSpec("precision", "string", "Compute precision; auto picks bf16 on a GPU that supports it, else fp32.",
              default="auto", choices=("auto", "fp32", "fp16", "bf16")),
    FieldSpec("early_stopping_enabled", "boolean", "Stop when the metric stops improving.", default=False),
    FieldSpec("early_stopping_patience", "integer", "Epochs without improvement before stopping.", default=2,
              minimum=1, maximum=1000),
    FieldSpec("early_stopping_metric", "string", "Metric watched for early stopping.", default="f1_score",
              choices=("val_accuracy", "val_loss", "f1_score")),
    FieldSpec("early_stopping_min_delta", "number", "Smallest change that counts as an improvement.", default=0.0,
              minimum=0, maximum=1000),
    FieldSpec("class_weighting", "string",
              "none, or balanced: weight each label's loss by n_rows / (n_labels * rows_of_label), for imbalanced data.",
              default="none", choices=("none", "balanced")),
    FieldSpec("evaluation_steps", "integer",
              "Also evaluate every this many optimiser steps (null: only at epoch ends); the best evaluation is kept.",
              default=None, nullable=True, minimum=1, maximum=10**7),
    FieldSpec("compile", "string",
              "torch.compile the model: auto (on a GPU when the job is long enough to repay compiling), on, off.",
              default="auto", choices=("auto", "on", "off")),
    FieldSpec("lora", "object", "LoRA fine-tuning (off by default).", default={},
              fields=LORA_FIELDS),
)

TASK_FIELDS = (
    FieldSpec("model_name_cn", "string", "Display name of the model (any language).", min_length=1, max_length=200),
    FieldSpec("model_name_en", "string", "ASCII name of the model, used in file names.",
              pattern=MODEL_NAME_EN_PATTERN),
    FieldSpec("training_data_file", "string", "Filename of an upload (POST /api/v1/files).", min_length=1),
    FieldSpec("validation_data_file", "string", "Filename of an upload used for validation instead of a split.",
              default=None, nullable=True, min_length=1),
    FieldSpec("base_model", "string",
              "A directory under BASE_MODELS_DIR holding a Hugging Face model, else a hub id from the local cache.",
              default="bert-base-chinese", pattern=BASE_MODEL_PATTERN, max_length=200),
    FieldSpec("hyperparameters", "object", "Training settings; missing ones take their defaults.", default={},
              fields=HYPERPARAMETER_FIELDS),
    FieldSpec("callback_url", "string", "http(s) URL that receives POSTs after each epoch and at the end.",
              default=None, nullable=True, max_length=2048),
)


def validate_task_request(body: Any) -> dict[str, Any]:
    """The validated request with every default filled in; raises ApiError naming the field."""
    request = validate_object(TASK_FIELDS, body)
    callback_url = request["callback_url"]
    if callback_url is not None:
        parts = urlsplit(callback_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise validation_error(f"callback_url must be an http:// or https:// URL; got {callback_url!r}",
                                   "callback_url")
    hyperparameters = request["hyperparameters"]
    if hyperparameters["lora"]["enabled"] and "learning_rate" not in body.get("hyperparameters", {}):
        # Adapters start at zero and need a larger step than full fine-tuning's default to move.
        hyperparameters["learning_rate"] = LORA_DEFAULT_LEARNING_RATE
    return request


# ---- JSON schema -----------------------------------------------------------------------------

def field_schema(spec: FieldSpec) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": [spec.kind, "null"] if spec.nullable else spec.kind,
                              "description": spec.description}
    if not spec.required:
        default = spec.default
        if spec.kind == "object" and spec.fields is not None:
            default = validate_object(spec.fields, {}, spec.name)
        schema["default"] = list(default) if isinstance(default, tuple) else default
    if spec.minimum is not None:
        schema["exclusiveMinimum" if spec.exclusive_minimum else "minimum"] = spec.minimum
    if spec.maximum is not None:
        schema["maximum"] = spec.maximum
    if spec.choices is not None:
        schema["enum"] = list(spec.choices) + ([None] if spec.nullable else [])
    if spec.min_length is not None:
        schema["minItems" if spec.kind == "array" else "minLength"] = spec.min_length
    if spec.max_length is not None:
        schema["maxLength"] = spec.max_length
    if spec.pattern is not None:
        schema["pattern"] = f"^{spec.pattern}$"
    if spec.fields is not None:
        schema.update(object_schema(spec.fields))
        schema["type"] = "object"
    if spec.item_kind is not None:
        # Empty strings are refused like in string fields.
        schema["items"] = {"type": spec.item_kind, **({"minLength": 1} if spec.item_kind == "string" else {})}
    return schema


def object_schema(specs: tuple[FieldSpec, ...]) -> dict[str, Any]:
    schema: dict[str, Any] = {
        "type": "object",
        "additionalProperties": False,
        "properties": {spec.name: field_schema(spec) for spec in specs},
    }
    required = [spec.name for spec in specs if spec.required]
    if required:
        schema["required"] = required
    return schema

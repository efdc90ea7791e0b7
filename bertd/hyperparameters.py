"""The hyperparameters of a training task, as validated at the API and read by the trainer: one
typed model, so a typo is an error at the request, never a KeyError inside a worker. Part of the
contract in bertd.protocol (which imports all of it); imports nothing of bertd."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_serializer, field_validator, model_validator

# ---- hyperparameters --------------------------------------------------------------------------

LORA_DEFAULT_LEARNING_RATE = 2e-4
DEFAULT_LEARNING_RATE = 2e-5


class Frozen(BaseModel):
    """Immutable, strict (no "3" for 3, no true for 1), unknown fields refused by name."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, allow_inf_nan=False)


NonEmptyText = Annotated[str, Field(min_length=1)]

# A list of layer names, or one string that peft understands, such as "all-linear". Only the branch
# the input's own type picks is checked, so an error names the list item (target_modules[1]), and
# a JSON array is taken (lax) as the tuple a frozen model keeps.
TargetModules = Annotated[
    Annotated[NonEmptyText, Tag("one-string")]
    | Annotated[tuple[NonEmptyText, ...], Tag("list-of-names"), Field(strict=False, min_length=1)],
    Discriminator(lambda value: "one-string" if isinstance(value, str) else "list-of-names"),
]


def _array_or_string(schema: dict[str, Any]) -> None:
    """Target modules' schema without oneOf, for readers that want one `type` (the dashboard's
    form): an array of names or a string."""
    array = next(variant for variant in schema.pop("oneOf") if variant.get("type") == "array")
    schema.update(type=["array", "string"], items=array["items"], minItems=array["minItems"], minLength=1)


class LoraSettings(Frozen):
    enabled: bool = Field(False, description=(
        "Train low-rank adapters and the classification head instead of all weights; the saved model has the "
        f"adapters merged in. learning_rate then defaults to {LORA_DEFAULT_LEARNING_RATE:g}."))
    r: int = Field(8, ge=1, le=256, description="LoRA rank.")
    lora_alpha: float = Field(16, ge=1, le=1024, description="LoRA scaling numerator (any number).")
    lora_dropout: float = Field(0.1, ge=0, le=0.9, description="Dropout on LoRA inputs.")
    target_modules: TargetModules = Field(
        ("query", "value"), json_schema_extra=_array_or_string,
        description="Names of the linear layers to adapt (BERT: query, key, value, dense), or a string peft "
                    "accepts such as \"all-linear\".")

    @field_serializer("lora_alpha")
    def _whole_numbers_stay_whole(self, value: float) -> float | int:
        # 16 in, 16 out (not 16.0): the echo matches what was sent.
        return int(value) if float(value).is_integer() else value


class Hyperparameters(Frozen):
    learning_rate: float = Field(DEFAULT_LEARNING_RATE, gt=0, le=1, description=(
        f"Peak learning rate of AdamW; when left out with lora.enabled, {LORA_DEFAULT_LEARNING_RATE:g}."))
    epochs: int = Field(3, ge=1, le=1000, description="Passes over the training rows.")
    batch_size: int = Field(16, ge=1, le=4096, description="Rows per optimiser step (before gradient accumulation).")
    max_sequence_length: int = Field(256, ge=8, le=8192, description="Tokens kept per text; longer texts are truncated.")
    random_seed: int = Field(42, ge=0, le=2**32 - 1, description="Seed for the split, shuffling and initialisation.")
    train_val_split: float = Field(0.2, ge=0, le=0.5, description=(
        "Fraction of rows held out for validation (stratified by label); ignored with validation_data_file. "
        "0 trains on every row: without a validation_data_file there are then no validation metrics and the "
        "last epoch is saved."))
    text_column: NonEmptyText = Field("text", description="Column holding the text to classify.")
    label_column: NonEmptyText = Field("label", description="Column holding the label.")
    sheet_name: NonEmptyText | None = Field(None, description="Sheet of training_data_file; null means the first sheet.")
    validation_sheet_name: NonEmptyText | None = Field(
        None, description="Sheet of validation_data_file; null means the first sheet.")
    weight_decay: float = Field(0.01, ge=0, le=1, description="AdamW weight decay (not applied to biases and LayerNorm).")
    warmup_ratio: float = Field(0.0, ge=0, le=0.9, description="Fraction of steps with a linear learning-rate warm-up.")
    max_grad_norm: float = Field(1.0, ge=0, le=1000, description="Gradient clipping norm; 0 turns clipping off.")
    gradient_accumulation_steps: int = Field(1, ge=1, le=1024, description="Batches summed into one optimiser step.")
    precision: Literal["auto", "fp32", "fp16", "bf16"] = Field(
        "auto", description="Compute precision; auto picks bf16 on a GPU that supports it, else fp32.")
    early_stopping_enabled: bool = Field(False, description="Stop when the metric stops improving.")
    early_stopping_patience: int = Field(2, ge=1, le=1000, description="Epochs without improvement before stopping.")
    early_stopping_metric: Literal["val_accuracy", "val_loss", "f1_score"] = Field(
        "f1_score", description="Metric watched for early stopping.")
    early_stopping_min_delta: float = Field(0.0, ge=0, le=1000, description="Smallest change that counts as an improvement.")
    class_weighting: Literal["none", "balanced"] = Field("none", description=(
        "none, or balanced: weight each label's loss by n_rows / (n_labels * rows_of_label), for imbalanced data."))
    evaluation_steps: int | None = Field(None, ge=1, le=10**7, description=(
        "Also evaluate every this many optimiser steps (null: only at epoch ends); the best evaluation is kept."))
    compile: Literal["auto", "on", "off"] = Field("auto", description=(
        "torch.compile the model: auto (on a GPU when the job is long enough to repay compiling), on, off."))
    # null is taken for "off" (see below), as clients of the original system send it.
    lora: LoraSettings = Field(LoraSettings(), description="LoRA fine-tuning (off by default; null means off).",
                               json_schema_extra={"type": ["object", "null"]})

    @field_validator("lora", mode="before")
    @classmethod
    def _null_lora_is_off(cls, value: Any) -> Any:
        # Clients of the original system send "lora": null for "no LoRA".
        return LoraSettings() if value is None else value

    @model_validator(mode="after")
    def _lora_learning_rate(self) -> Hyperparameters:
        # Adapters start at zero and need a larger step than full fine-tuning's default to move;
        # a learning rate the user gave is kept.
        if self.lora.enabled and "learning_rate" not in self.model_fields_set:
            return self.model_copy(update={"learning_rate": LORA_DEFAULT_LEARNING_RATE})
        return self

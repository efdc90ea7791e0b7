"""Request bodies as typed models. Validating one is parsing it: what a handler gets is typed,
frozen, with every default filled in; the OpenAPI document is derived from the same models."""

from __future__ import annotations

from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator

from bertd.i18n import Text
from bertd.protocol import Frozen, Hyperparameters, NonEmptyText
from bertd.runtime.base_models.catalog import NAME_PATTERN
from bertd.runtime.base_models.files import validate_base_model_name
from bertd.schema.validation import PATTERN_HINTS

MODEL_NAME_EN_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"
# A directory name under BASE_MODELS_DIR or a hub id "org/name": never absolute, never "..".
BASE_MODEL_PATTERN = NAME_PATTERN
PATTERN_HINTS.update({
    "model_name_en": Text("must be 1-100 letters, digits, '.', '_' or '-', starting with a letter or digit"),
    "base_model": Text("must be a directory name under BASE_MODELS_DIR or a hub id like 'bert-base-chinese' "
                       "or 'org/name' (letters, digits, '.', '_', '-')"),
})

MAX_PREDICT_TEXTS = 256
MAX_TEXT_CHARACTERS = 20_000


class TaskRequest(Frozen):
    model_name_cn: str = Field(min_length=1, max_length=200, description="Display name of the model (any language).")
    model_name_en: str = Field(pattern=MODEL_NAME_EN_PATTERN, description="ASCII name of the model, used in file names.")
    training_data_file: NonEmptyText = Field(description="Filename of an upload (POST /api/v1/files).")
    validation_data_file: NonEmptyText | None = Field(
        None, description="Filename of an upload used for validation instead of a split.")
    base_model: str = Field("bert-base-chinese", pattern=BASE_MODEL_PATTERN, max_length=200, description=(
        "A directory under BASE_MODELS_DIR holding a Hugging Face model, else a hub id from the local cache; "
        "one the server does not have is downloaded first (AUTO_DOWNLOAD_BASE_MODELS), the task waiting in "
        "phase downloading_base_model."))
    hyperparameters: Hyperparameters = Field(
        Hyperparameters(), description="Training settings; missing ones take their defaults.")
    callback_url: str | None = Field(None, max_length=2048, description=(
        "http(s) URL that receives POSTs after each epoch and at the end."))

    @field_validator("callback_url")
    @classmethod
    def _http_only(cls, value: str | None) -> str | None:
        if value is not None:
            parts = urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(Text("must be an http:// or https:// URL; got {value!r}", value=value))
        return value


PredictText = Annotated[str, Field(min_length=1, max_length=MAX_TEXT_CHARACTERS)]


class PredictRequest(Frozen):
    texts: list[PredictText] = Field(min_length=1, max_length=MAX_PREDICT_TEXTS, description=(
        f"1 to {MAX_PREDICT_TEXTS} texts to classify; each is truncated like the training texts."))
    top_k: int = Field(1, ge=1, le=1000, description="How many ranked labels to return per text (as `top_k`) "
                                                       "when above 1.")

    @field_validator("texts")
    @classmethod
    def _no_blank_texts(cls, texts: list[str]) -> list[str]:
        for index, text in enumerate(texts):
            if not text.strip():
                raise ValueError(Text("must not hold empty texts; texts[{index}] is empty", index=index))
        return texts


MAX_PREDICTION_TOP_K = 100


class PredictionJobRequest(Frozen):
    file: NonEmptyText = Field(description="Filename of an upload (POST /api/v1/files) holding the texts.")
    sheet_name: NonEmptyText | None = Field(None, description="Sheet to predict; null means the first sheet.")
    text_column: NonEmptyText = Field(description="Column holding the texts to classify.")
    top_k: int = Field(1, ge=1, le=MAX_PREDICTION_TOP_K, description=(
        "How many ranked labels each row gets (at most the model's number of labels): predicted_label and "
        "predicted_score, then predicted_label_2, predicted_score_2 ..."))
    threshold: float | None = Field(None, ge=0, le=1, description=(
        "A label whose score is below it is left empty (its score is kept); null: every row gets its best labels."))


# Paths a ticket can open: WebSockets (…/ws) and downloads (…/download) under /api/v1/.
TICKET_PATH_PATTERN = r"^/api/v1/[^?#\s]*/(ws|download)$|^/api/v1/ws$"
PATTERN_HINTS["path"] = Text("must be the path of a WebSocket or a download under /api/v1/, without a query, "
                              "e.g. '/api/v1/ws' or '/api/v1/training/tasks/<task_id>/download'")


class TicketRequest(Frozen):
    path: str | None = Field(None, max_length=1000, pattern=TICKET_PATH_PATTERN, description=(
        "The one path the ticket opens, e.g. /api/v1/ws or /api/v1/training/tasks/<task_id>/download; "
        "null: any WebSocket or download."))


class BaseModelRequest(Frozen):
    name: str = Field(min_length=1, max_length=200, description=(
        "Hub id: 'bert-base-chinese', or with its organisation 'google-bert/bert-base-chinese' (on ModelScope e.g. "
        "'tiansz/bert-base-chinese'). The model lands in BASE_MODELS_DIR/<name> and tasks name it so."))
    source: Literal["huggingface", "modelscope"] | None = Field(None, description=(
        "huggingface (HF_ENDPOINT, e.g. a mirror, and HF_TOKEN are honoured) or modelscope (MODELSCOPE_ENDPOINT, "
        "MODELSCOPE_API_TOKEN); null: the server's BASE_MODEL_SOURCE, huggingface unless set."))
    revision: NonEmptyText | None = Field(None, max_length=200, description=(
        "Branch, tag or commit; null: the hub's default branch."))

    @field_validator("name")
    @classmethod
    def _hub_id(cls, name: str) -> str:
        try:
            return validate_base_model_name(name)
        except ValueError:
            raise ValueError(Text(
                "must be a hub id such as 'bert-base-chinese' or 'google-bert/bert-base-chinese' (letters, digits, "
                "'-', '_' and '.'; at most one '/'); got {name!r}", name=name)) from None

"""HTTP handlers for using a trained model: predict, and download as a tarball."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from aiohttp import web
from loguru import logger

from bertd.api.tasks import read_json, task_or_404
from bertd.runtime.archive import build_tarball
from bertd.schema.requests import FieldSpec, validate_object
from bertd.server.errors import ApiError, conflict, validation_error
from bertd.server.keys import MODEL_CACHE, STORE
from bertd.server.responses import json_response
from bertd.state.records import TaskRecord, TaskStatus

MAX_TEXTS = 256
MAX_TEXT_CHARACTERS = 20_000

PREDICT_FIELDS = (
    FieldSpec("texts", "array", f"1 to {MAX_TEXTS} texts to classify; each is truncated like the training texts.",
              item_kind="string"),
    FieldSpec("top_k", "integer", "How many ranked labels to return per text (as `top_k`) when above 1.",
              default=1, minimum=1, maximum=1000),
)


def _completed_model(task: TaskRecord) -> Path:
    if task.status != TaskStatus.COMPLETED or not task.artifacts:
        raise conflict(f"task {task.task_id} is {task.status}; only a completed task has a model",
                       status=str(task.status))
    model_dir = Path(task.artifacts["model_path"])
    if not (model_dir / "config.json").is_file():
        raise ApiError(410, "gone", f"the model of task {task.task_id} is no longer on disk ({model_dir})")
    return model_dir


def _checked_predict_request(body: Any) -> tuple[list[str], int]:
    request = validate_object(PREDICT_FIELDS, body)
    texts: list[str] = request["texts"]
    if not 1 <= len(texts) <= MAX_TEXTS:
        raise validation_error(f"texts must hold 1 to {MAX_TEXTS} texts, got {len(texts)}", "texts")
    for index, text in enumerate(texts):
        if not text.strip():
            raise validation_error(f"texts[{index}] is empty", "texts")
        if len(text) > MAX_TEXT_CHARACTERS:
            raise ApiError(413, "payload_too_large",
                           f"texts[{index}] has {len(text)} characters; at most {MAX_TEXT_CHARACTERS}",
                           {"field": "texts"})
    return texts, request["top_k"]


async def predict(request: web.Request) -> web.Response:
    task = await task_or_404(request.app[STORE], request.match_info["task_id"])
    texts, top_k = _checked_predict_request(await read_json(request))
    model_dir = _completed_model(task)
    predictions = await request.app[MODEL_CACHE].predict(
        task.task_id, model_dir, task.hyperparameters["max_sequence_length"], texts, top_k)
    return json_response({"task_id": task.task_id, "predictions": predictions})


async def download(request: web.Request) -> web.StreamResponse:
    task = await task_or_404(request.app[STORE], request.match_info["task_id"])
    model_dir = _completed_model(task)
    folder = f"{task.model_name_en}-{task.task_id[:8]}"
    try:
        tarball = await asyncio.to_thread(build_tarball, model_dir, folder)
    except OSError as error:
        logger.error("task {} tarball failed: {}", task.task_id, error)
        raise ApiError(507, "insufficient_storage", f"could not pack the model: {error.strerror or error}") from error
    return web.FileResponse(tarball, headers={
        "Content-Type": "application/gzip",
        "Content-Disposition": f'attachment; filename="{folder}.tar.gz"',
    })

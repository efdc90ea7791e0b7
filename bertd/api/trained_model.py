"""HTTP handlers for using a trained model: predict, and download as a tarball."""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiohttp import web
from loguru import logger

from bertd.api.request_parsing import read_json
from bertd.api.tasks import task_or_404
from bertd.i18n import Text
from bertd.schema.requests import PredictRequest
from bertd.schema.validation import parse
from bertd.server.errors import ApiError, conflict
from bertd.server.keys import MODEL_CACHE, MODEL_STORE, STORE
from bertd.server.responses import json_response
from bertd.state.records import TaskRecord, TaskStatus

# A text over the limit is a payload problem (413), not a malformed request.
TOO_LONG = {"string_too_long": (413, "payload_too_large")}


def completed_model(task: TaskRecord) -> Path:
    if task.status != TaskStatus.COMPLETED or not task.artifacts:
        raise conflict(Text("task {task_id} is {status}; only a completed task has a model", task_id=task.task_id,
                            status=str(task.status)),
                       status=str(task.status))
    model_dir = Path(task.artifacts.model_path)
    if not (model_dir / "config.json").is_file():
        raise ApiError(410, "gone", Text("the model of task {task_id} is no longer on disk ({folder})",
                                         task_id=task.task_id, folder=str(model_dir)))
    return model_dir


async def predict(request: web.Request) -> web.Response:
    task = await task_or_404(request.app[STORE], request.match_info["task_id"])
    body = parse(PredictRequest, await read_json(request), TOO_LONG)
    model_dir = completed_model(task)
    predictions = await request.app[MODEL_CACHE].predict(
        task.task_id, model_dir, task.hyperparameters.max_sequence_length, body.texts, body.top_k)
    return json_response({"task_id": task.task_id, "predictions": predictions})


async def download(request: web.Request) -> web.StreamResponse:
    task = await task_or_404(request.app[STORE], request.match_info["task_id"])
    completed_model(task)
    folder = f"{task.model_name_en}-{task.task_id[:8]}"
    try:
        tarball = await asyncio.to_thread(request.app[MODEL_STORE].tarball, task.task_id, folder)
    except OSError as error:
        logger.error("task {} tarball failed: {}", task.task_id, error)
        raise ApiError(507, "insufficient_storage", Text("could not pack the model: {reason}",
                                                         reason=error.strerror or str(error))) from error
    return web.FileResponse(tarball, headers={
        "Content-Type": "application/gzip",
        "Content-Disposition": f'attachment; filename="{folder}.tar.gz"',
    })

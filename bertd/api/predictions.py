"""HTTP handlers for prediction jobs: a whole sheet of an upload through a completed task's model,
run in the training pool; create, list, get, download the result, stop, delete."""

from __future__ import annotations

import uuid
from pathlib import Path
from urllib.parse import quote

from aiohttp import web

from bertd.api.request_parsing import read_json
from bertd.api.tasks import task_or_404, uploaded_or_400
from bertd.api.trained_model import completed_model
from bertd.i18n import Text
from bertd.runtime.scheduler import ShuttingDown
from bertd.schema.requests import PredictionJobRequest
from bertd.schema.validation import parse
from bertd.server.errors import ApiError, conflict, not_found, validation_error
from bertd.server.keys import SCHEDULER, STORE
from bertd.server.language import request_language
from bertd.server.responses import json_response
from bertd.state.prediction_store import TaskNotCompleted
from bertd.state.records import PREDICTION_TERMINAL, PredictionRecord, PredictionStatus, TaskRecord, utc_now
from bertd.state.store import MissingFile, QueueFull, Store

CONTENT_TYPES = {".xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet", ".csv": "text/csv"}


def no_such_job(prediction_id: str, task: TaskRecord) -> Text:
    return Text("no prediction job {prediction_id!r} of task {task_id}", prediction_id=prediction_id,
                task_id=task.task_id)


async def prediction_or_404(store: Store, task: TaskRecord, prediction_id: str) -> PredictionRecord:
    job = await store.get_prediction(prediction_id)
    if job is None or job.task_id != task.task_id:
        raise not_found(no_such_job(prediction_id, task))
    return job


def label_count(task: TaskRecord) -> int | None:
    labels = (task.metrics or {}).get("labels")
    return len(labels) if isinstance(labels, list) else None


async def create_prediction(request: web.Request) -> web.Response:
    store, scheduler = request.app[STORE], request.app[SCHEDULER]
    task = await task_or_404(store, request.match_info["task_id"])
    body = parse(PredictionJobRequest, await read_json(request))
    completed_model(task)
    upload = await uploaded_or_400(store, body.file, "file")
    sheet = upload.sheet(body.sheet_name)
    if sheet is None:
        raise validation_error(Text("sheet_name: sheet {sheet!r} not found in {filename!r}; sheets are: {names}",
                                    sheet=body.sheet_name, filename=upload.filename,
                                    names=", ".join(s.name for s in upload.sheets)), "sheet_name")
    if body.text_column not in sheet.columns:
        raise validation_error(Text("text_column: column {column!r} not found in sheet {sheet!r} of {filename!r}; "
                                    "columns are: {columns}", column=body.text_column, sheet=sheet.name,
                                    filename=upload.filename, columns=", ".join(sheet.columns)), "text_column")
    labels = label_count(task)
    if labels is not None and body.top_k > labels:
        raise validation_error(Text("top_k must be at most {count}, the number of labels of task {task_id}'s model; "
                                    "got {top_k}", count=labels, task_id=task.task_id, top_k=body.top_k), "top_k")
    new_job = PredictionRecord(seq=0, prediction_id=uuid.uuid4().hex, task_id=task.task_id,
                               status=PredictionStatus.QUEUED, file=upload.filename, sheet_name=sheet.name,
                               text_column=body.text_column, top_k=body.top_k, threshold=body.threshold, tasks_seq=0,
                               created_at=utc_now())
    try:
        job = await scheduler.submit_prediction(new_job)
    except ShuttingDown:
        raise ApiError(503, "service_unavailable", Text("bertd is shutting down and takes no new jobs; retry "
                                                        "shortly")) from None
    except TaskNotCompleted:
        raise conflict(Text("task {task_id} was deleted or is no longer completed", task_id=task.task_id)) from None
    except MissingFile:
        raise conflict(Text("file {filename!r} was deleted while the job was being created; upload it again",
                            filename=upload.filename)) from None
    except QueueFull as full:
        raise ApiError(429, "too_many_requests", Text("{count} prediction jobs are already queued (MAX_QUEUED_TASKS); "
                                                      "wait for some to finish or stop queued ones",
                                                      count=full.args[0])) from None
    message = (f"prediction job queued at position {job.queue_position}" if job.queue_position
               else "prediction job created")
    return json_response({**job.to_json(request_language(request)), "message": message}, status=202)


async def list_predictions(request: web.Request) -> web.Response:
    store = request.app[STORE]
    task = await task_or_404(store, request.match_info["task_id"])
    jobs = await store.list_predictions(task.task_id)
    return json_response({"predictions": [job.to_json(request_language(request)) for job in jobs]})


async def get_prediction(request: web.Request) -> web.Response:
    store = request.app[STORE]
    task = await task_or_404(store, request.match_info["task_id"])
    job = await prediction_or_404(store, task, request.match_info["prediction_id"])
    return json_response(job.to_json(request_language(request)))


def content_disposition(name: str, fallback: str) -> str:
    """attachment with the UTF-8 name (RFC 6266 / 5987) and an ASCII one for old clients."""
    ascii_name = name if name.isascii() and '"' not in name and "\\" not in name else fallback
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name, safe='')}"


async def download_prediction(request: web.Request) -> web.StreamResponse:
    store = request.app[STORE]
    task = await task_or_404(store, request.match_info["task_id"])
    job = await prediction_or_404(store, task, request.match_info["prediction_id"])
    if job.status != PredictionStatus.COMPLETED or job.output_path is None:
        raise conflict(Text("prediction job {prediction_id} is {status}; only a completed job has a result",
                            prediction_id=job.prediction_id, status=str(job.status)), status=str(job.status))
    result = Path(job.output_path)
    if not result.is_file():
        raise ApiError(410, "gone", Text("the result of prediction job {prediction_id} is no longer on disk",
                                         prediction_id=job.prediction_id))
    suffix = result.suffix.lower()
    return web.FileResponse(result, headers={
        "Content-Type": CONTENT_TYPES.get(suffix, "application/octet-stream"),
        "Content-Disposition": content_disposition(job.download_name, f"predicted-{job.prediction_id[:8]}{suffix}"),
    })


async def stop_prediction(request: web.Request) -> web.Response:
    store, scheduler = request.app[STORE], request.app[SCHEDULER]
    task = await task_or_404(store, request.match_info["task_id"])
    job = await prediction_or_404(store, task, request.match_info["prediction_id"])
    if job.status in PREDICTION_TERMINAL:
        raise conflict(Text("prediction job {prediction_id} already ended as {status}; nothing to stop",
                            prediction_id=job.prediction_id, status=str(job.status)), status=str(job.status))
    stopped = await scheduler.predictions.stop(job.prediction_id)
    if stopped is None:
        raise not_found(no_such_job(job.prediction_id, task))
    message = ("prediction job stopped" if stopped.status == PredictionStatus.STOPPED else
               "stop requested; the job ends as stopped once its worker has exited")
    return json_response({**stopped.to_json(request_language(request)), "message": message}, status=202)


async def delete_prediction(request: web.Request) -> web.Response:
    store, scheduler = request.app[STORE], request.app[SCHEDULER]
    task = await task_or_404(store, request.match_info["task_id"])
    job = await prediction_or_404(store, task, request.match_info["prediction_id"])
    if not await scheduler.predictions.delete(job.prediction_id):
        raise not_found(no_such_job(job.prediction_id, task))
    return json_response({"prediction_id": job.prediction_id, "deleted": True,
                          "message": "prediction job and its result file were deleted"})

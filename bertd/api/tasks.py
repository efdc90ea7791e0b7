"""HTTP handlers for training tasks: create, get, list, stop, delete, events."""

from __future__ import annotations

import asyncio
import uuid

from aiohttp import web

from bertd.api.request_parsing import query_int, read_json, reject_unknown_query
from bertd.i18n import Text
from bertd.protocol import Hyperparameters, add_base_model_hint
from bertd.runtime.base_models.catalog import locate, ready_models
from bertd.runtime.scheduler import PauseUnsupported, ShuttingDown
from bertd.schema.requests import TaskRequest
from bertd.schema.validation import parse
from bertd.server.errors import ApiError, conflict, not_found, validation_error
from bertd.server.keys import BASE_MODEL_GATE, CONFIG, MODEL_CACHE, SCHEDULER, STORE
from bertd.server.language import request_language
from bertd.server.responses import json_response
from bertd.state.records import TERMINAL_STATUSES, FileRecord, TaskRecord, TaskStatus, utc_now
from bertd.state.store import MissingFile, QueueFull, Store

MAX_PAGE_SIZE = 200
MAX_EVENTS_LIMIT = 1000


async def uploaded_or_400(store: Store, filename: str, field: str) -> FileRecord:
    record = await store.get_file(filename)
    if record is None:
        known = [f.filename for f in await store.list_files()]
        hint = (Text("; uploaded files: {names}", names=", ".join(known)) if known
                else Text("; no files are uploaded yet"))
        raise validation_error(Text("{field} {filename!r} has not been uploaded (POST /api/v1/files){hint}",
                                    field=field, filename=filename, hint=hint), field)
    return record


def _check_sheet_and_columns(record: FileRecord, sheet_name: str | None, sheet_field: str,
                             hyperparameters: Hyperparameters) -> None:
    sheet = record.sheet(sheet_name)
    if sheet is None:
        names = ", ".join(s.name for s in record.sheets)
        raise validation_error(Text("{field}: sheet {sheet!r} not found in {filename!r}; sheets are: {names}",
                                    field=sheet_field, sheet=sheet_name, filename=record.filename, names=names),
                               sheet_field)
    for column_field in ("text_column", "label_column"):
        column = getattr(hyperparameters, column_field)
        if column not in sheet.columns:
            raise validation_error(
                Text("hyperparameters.{field}: column {column!r} not found in sheet {sheet!r} of {filename!r}; "
                     "columns are: {columns}", field=column_field, column=column, sheet=sheet.name,
                     filename=record.filename, columns=", ".join(sheet.columns)),
                f"hyperparameters.{column_field}",
            )


async def create_task(request: web.Request) -> web.Response:
    store, scheduler = request.app[STORE], request.app[SCHEDULER]
    body = parse(TaskRequest, await read_json(request))
    hyperparameters = body.hyperparameters
    if hyperparameters.text_column == hyperparameters.label_column:
        raise validation_error(Text("hyperparameters.label_column must name a different column than "
                                    "hyperparameters.text_column"), "hyperparameters.label_column")
    training = await uploaded_or_400(store, body.training_data_file, "training_data_file")
    _check_sheet_and_columns(training, hyperparameters.sheet_name, "hyperparameters.sheet_name", hyperparameters)
    if body.validation_data_file is not None:
        validation = await uploaded_or_400(store, body.validation_data_file, "validation_data_file")
        _check_sheet_and_columns(validation, hyperparameters.validation_sheet_name,
                                 "hyperparameters.validation_sheet_name", hyperparameters)
    elif hyperparameters.validation_sheet_name is not None:
        raise validation_error(Text("hyperparameters.validation_sheet_name is set but validation_data_file is not"),
                               "hyperparameters.validation_sheet_name")
    else:
        _check_training_on_every_row(hyperparameters)
    base_models_dir = request.app[CONFIG].effective_base_models_dir
    missing = await asyncio.to_thread(locate, base_models_dir, body.base_model) is None
    if missing:
        await _check_downloadable(request, body.base_model)
    new_task = TaskRecord(
        seq=0,
        task_id=uuid.uuid4().hex,
        status=TaskStatus.QUEUED,
        model_name_cn=body.model_name_cn,
        model_name_en=body.model_name_en,
        base_model=body.base_model,
        training_data_file=body.training_data_file,
        validation_data_file=body.validation_data_file,
        hyperparameters=hyperparameters,
        callback_url=body.callback_url,
        created_at=utc_now(),
    )
    try:
        task = await scheduler.submit(new_task)
    except ShuttingDown:
        raise ApiError(503, "service_unavailable",
                       Text("bertd is shutting down and takes no new tasks; retry shortly")) from None
    except MissingFile:
        raise conflict(Text("a data file of this task was deleted while the task was being created; "
                            "upload it again")) from None
    except QueueFull as full:
        raise ApiError(429, "too_many_requests",
                       Text("{count} tasks are already queued (MAX_QUEUED_TASKS); wait for some to finish "
                            "or stop queued ones", count=full.args[0])) from None
    message = f"task queued at position {task.queue_position}" if task.queue_position else "task created"
    if missing:
        task = await request.app[BASE_MODEL_GATE].hold(task)
        message += f"; it waits for base model {task.base_model!r} to download (phase downloading_base_model)"
    return json_response({**task.to_json(request_language(request)), "message": message}, status=201)


def _check_training_on_every_row(hyperparameters: Hyperparameters) -> None:
    """train_val_split 0 without a validation file holds nothing out: what needs validation
    metrics cannot be asked for."""
    if hyperparameters.train_val_split > 0:
        return
    for name, wanted in (("early_stopping_enabled", hyperparameters.early_stopping_enabled),
                         ("evaluation_steps", hyperparameters.evaluation_steps is not None)):
        if wanted:
            raise validation_error(
                Text("hyperparameters.{name} needs validation metrics, but train_val_split is 0 and there is no "
                     "validation_data_file; set train_val_split above 0, upload a validation_data_file, or leave "
                     "{name} out", name=name), f"hyperparameters.{name}")


async def _check_downloadable(request: web.Request, name: str) -> None:
    """A 400 on base_model unless the missing model can be downloaded for the task."""
    reason = await request.app[BASE_MODEL_GATE].refusal(name)
    if reason is None:
        return
    ready = await asyncio.to_thread(ready_models, request.app[CONFIG].effective_base_models_dir)
    available = [entry.name for entry in ready]
    raise validation_error(
        Text("base_model {name!r} is not on this server and {reason}; available base models: {available}; {hint}",
             name=name, reason=reason, available=", ".join(available) if available else Text("none yet"),
             hint=add_base_model_hint(name)),
        "base_model", available=available)


def no_such_task(task_id: str) -> Text:
    return Text("no training task with task_id {task_id!r}", task_id=task_id)


async def task_or_404(store: Store, task_id: str) -> TaskRecord:
    task = await store.get_task(task_id)
    if task is None:
        raise not_found(no_such_task(task_id))
    return task


async def get_task(request: web.Request) -> web.Response:
    task = await task_or_404(request.app[STORE], request.match_info["task_id"])
    return json_response(task.to_json(request_language(request)))


async def list_tasks(request: web.Request) -> web.Response:
    reject_unknown_query(request, ("status", "page", "page_size"))
    raw_status = request.query.get("status")
    status = None
    if raw_status is not None:
        try:
            status = TaskStatus(raw_status)
        except ValueError:
            raise validation_error(Text("query parameter status must be one of {statuses}; got {value!r}",
                                        statuses=", ".join(TaskStatus), value=raw_status), "status") from None
    page = query_int(request, "page", 1, 1, 1_000_000)
    page_size = query_int(request, "page_size", 20, 1, MAX_PAGE_SIZE)
    total, tasks = await request.app[STORE].list_tasks(status, page, page_size)
    return json_response({"total": total, "page": page, "page_size": page_size,
                              "tasks": [task.to_json(request_language(request)) for task in tasks]})


async def stop_task(request: web.Request) -> web.Response:
    store, scheduler = request.app[STORE], request.app[SCHEDULER]
    task = await task_or_404(store, request.match_info["task_id"])
    if task.status in TERMINAL_STATUSES:
        raise conflict(Text("task {task_id} already ended as {status}; nothing to stop", task_id=task.task_id,
                            status=str(task.status)), status=str(task.status))
    stopped = await scheduler.stop(task.task_id)
    if stopped is None:
        raise not_found(no_such_task(task.task_id))
    message = {
        TaskStatus.STOPPED: "task stopped",
        TaskStatus.STOPPING: "stop requested; the task ends as stopped once its worker has exited",
    }.get(stopped.status, f"task is {stopped.status}")
    return json_response({**stopped.to_json(request_language(request)), "message": message}, status=202)


async def pause_task(request: web.Request) -> web.Response:
    store, scheduler = request.app[STORE], request.app[SCHEDULER]
    task = await task_or_404(store, request.match_info["task_id"])
    if task.status not in (TaskStatus.QUEUED, TaskStatus.TRAINING) or scheduler.pausing(task.task_id):
        state = (Text("is already pausing or stopping") if task.status == TaskStatus.TRAINING
                 else Text("is {status}", status=str(task.status)))
        raise conflict(Text("task {task_id} {state}; only a queued or training task can be paused",
                            task_id=task.task_id, state=state), status=str(task.status))
    try:
        paused = await scheduler.pause(task.task_id)
    except PauseUnsupported:
        raise conflict(Text("tasks cannot be paused with several boxes (BROKER_URL): a checkpoint stays on the box "
                            "that wrote it; stop the task instead"), status=str(task.status)) from None
    if paused is None:
        raise not_found(no_such_task(task.task_id))
    message = ("task paused" if paused.status == TaskStatus.PAUSED else
               "pause requested; the task writes a checkpoint at its next step, then frees its slot and is paused")
    return json_response({**paused.to_json(request_language(request)), "message": message}, status=202)


async def resume_task(request: web.Request) -> web.Response:
    store, scheduler = request.app[STORE], request.app[SCHEDULER]
    task = await task_or_404(store, request.match_info["task_id"])
    if task.status != TaskStatus.PAUSED:
        raise conflict(Text("task {task_id} is {status}; only a paused task can be resumed", task_id=task.task_id,
                            status=str(task.status)), status=str(task.status))
    resumed = await scheduler.resume(task.task_id)
    if resumed is None:
        raise not_found(no_such_task(task.task_id))
    where = "it continues from its checkpoint" if resumed.checkpoint else "it starts from the beginning"
    return json_response({**resumed.to_json(request_language(request)), "message": f"task queued again at position "
                                                          f"{resumed.queue_position}; {where}"}, status=202)


async def delete_task(request: web.Request) -> web.Response:
    scheduler = request.app[SCHEDULER]
    task = await task_or_404(request.app[STORE], request.match_info["task_id"])
    if not await scheduler.delete(task.task_id):
        raise not_found(no_such_task(task.task_id))
    request.app[MODEL_CACHE].forget(task.task_id)
    return json_response({"task_id": task.task_id, "deleted": True,
                              "message": "task, its events and its model were deleted"})


async def list_events(request: web.Request) -> web.Response:
    store = request.app[STORE]
    task = await task_or_404(store, request.match_info["task_id"])
    reject_unknown_query(request, ("after", "limit"))
    after = query_int(request, "after", 0, 0, 2**62)
    limit = query_int(request, "limit", 100, 1, MAX_EVENTS_LIMIT)
    events = await store.list_events(task.task_id, after, limit)
    return json_response({"events": [event.to_json(request_language(request)) for event in events]})

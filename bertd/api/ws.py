"""WebSocket streams: one task's live messages, one prediction job's, or every task's and prediction
job's (for dashboards).

Per task: `snapshot` (the task, with the seq it reflects), then `progress` / `epoch` / `warning` /
`status` messages with increasing seq, then `end` (the full task) and a close with 1000; while
prediction jobs of the completed task are queued or running, the stream goes on with their messages
(each numbered in its job's own sequence) and closes after the last one's `prediction_end`. Per
prediction job the same with `prediction_snapshot`, `prediction_progress`, `prediction_status` and
`prediction_end`. A client
that falls too far behind is closed with 4008; on server shutdown every socket is closed with 1001.
How messages reach one socket is ws_socket's business."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web

from bertd.api.tasks import no_such_task
from bertd.api.ws_socket import PredictionStreamEnd, SocketSubscriber, StreamEnd, TaskStreamEnd, close_quietly
from bertd.i18n import Text
from bertd.runtime.hub import LiveState
from bertd.server.errors import ApiError, not_found
from bertd.server.keys import BASE_MODEL_DOWNLOADS, CONFIG, HUB, STORE, WEBSOCKETS
from bertd.state.records import (
    ACTIVE_STATUSES,
    PREDICTION_TERMINAL,
    TERMINAL_STATUSES,
    PredictionRecord,
    PredictionStatus,
    TaskRecord,
)


def snapshot_of(task: TaskRecord, live: LiveState | None) -> dict[str, Any]:
    """The task as stored, with status and progress as of the live state the subscriber starts from."""
    body = task.to_json()
    if live is not None and task.status not in TERMINAL_STATUSES:
        if live.status is not None:
            body["status"] = live.status
        if live.progress is not None:
            body["progress"] = live.progress
    return body


def prediction_snapshot_of(job: PredictionRecord, live: LiveState | None) -> dict[str, Any]:
    """The job as stored, with status and progress as of the live state the subscriber starts from."""
    body = job.to_json()
    if live is not None and job.status not in PREDICTION_TERMINAL:
        if live.status is not None:
            body["status"] = live.status
        if live.progress is not None:
            body.update({name: value for name, value in live.progress.items() if name in body})
    return body


def prediction_snapshot_message(job: PredictionRecord, live: LiveState | None) -> dict[str, Any]:
    """The first message about a job on a stream: the job as of `seq`, its own stream's number."""
    return {"type": "prediction_snapshot", "task_id": job.task_id, "prediction_id": job.prediction_id,
            "seq": live.seq if live else 0, "prediction": prediction_snapshot_of(job, live)}


def _subscriber(request: web.Request, task_id: str | None, ending: StreamEnd | None) -> SocketSubscriber:
    """A not yet accepted WebSocket and the hub subscriber that writes to it."""
    config = request.app[CONFIG]
    # No permessage-deflate: live messages are small, and one uncompressed frame serves every
    # subscriber (see ws_frame); compressing would mean one zlib stream per socket per message.
    socket = web.WebSocketResponse(heartbeat=config.ws_heartbeat_seconds or None, max_msg_size=1 << 16,
                                   compress=False)
    return SocketSubscriber(task_id, socket, request.transport, config.ws_queue_limit,
                            config.ws_send_timeout_seconds, ending=ending)


async def _accept(request: web.Request, subscriber: SocketSubscriber) -> None:
    # A plain GET (no Upgrade: websocket) is answered 400 with the one error body, as documented.
    if not subscriber.socket.can_prepare(request).ok:
        raise ApiError(400, "websocket_required",
                       Text("{path} is a WebSocket endpoint: connect with a WebSocket client (GET with "
                            "Connection: Upgrade and Upgrade: websocket)", path=request.path))
    await subscriber.socket.prepare(request)
    request.app[WEBSOCKETS].add(subscriber.socket)


async def _stream(subscriber: SocketSubscriber, first: list[dict[str, Any]]) -> None:
    """Send until the stream ends; meanwhile read (and ignore) what the client sends, so pings,
    pongs and its close are handled, and a client that leaves ends the stream."""

    async def drain_incoming() -> None:
        async for message in subscriber.socket:
            if message.type == WSMsgType.ERROR:
                break

    reader = asyncio.create_task(drain_incoming())
    reader.add_done_callback(lambda _: subscriber.mailbox.close())
    try:
        await subscriber.run(first)
    finally:
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)


async def task_stream(request: web.Request) -> web.WebSocketResponse:
    store, hub = request.app[STORE], request.app[HUB]
    task_id = request.match_info["task_id"]
    # Subscribe before reading the task, so nothing published after the read is missed; the one
    # read both answers 404 (before the upgrade) and makes the snapshot. One read per connect
    # matters when hundreds of dashboards reconnect at once.
    ending = TaskStreamEnd()
    subscriber = _subscriber(request, task_id, ending)
    states = hub.subscribe(subscriber)
    try:
        task = await store.get_task(task_id)
        if task is None:
            raise not_found(no_such_task(task_id))
        jobs = await store.predictions_in((PredictionStatus.QUEUED, PredictionStatus.RUNNING), task_id)
        await _accept(request, subscriber)
        live = states.get(task_id)
        seq = live.seq if live else 0
        first: list[dict[str, Any]] = [{"type": "snapshot", "task_id": task_id, "seq": seq,
                                        "task": snapshot_of(task, live)}]
        # The task's queued and running prediction jobs keep its stream open past its `end`.
        ending.active_jobs.update(job.prediction_id for job in jobs)
        first += [prediction_snapshot_message(job, states.get(job.prediction_id)) for job in jobs]
        if live is None and task.status in TERMINAL_STATUSES:
            first.append({"type": "end", "task_id": task_id, "seq": seq, "task": task.to_json()})
        await _stream(subscriber, first)
    finally:
        hub.unsubscribe(subscriber)
        request.app[WEBSOCKETS].discard(subscriber.socket)
    return subscriber.socket


async def prediction_stream(request: web.Request) -> web.WebSocketResponse:
    store, hub = request.app[STORE], request.app[HUB]
    task_id, prediction_id = request.match_info["task_id"], request.match_info["prediction_id"]
    # As for a task: subscribe first, then the one read that answers 404 and makes the snapshot.
    subscriber = _subscriber(request, prediction_id, PredictionStreamEnd())
    states = hub.subscribe(subscriber)
    try:
        job = await store.get_prediction(prediction_id)
        if job is None or job.task_id != task_id:
            raise not_found(f"no prediction job {prediction_id!r} of task {task_id}")
        await _accept(request, subscriber)
        live = states.get(prediction_id)
        first = [prediction_snapshot_message(job, live)]
        if live is None and job.status in PREDICTION_TERMINAL:
            first.append({"type": "prediction_end", "task_id": task_id, "prediction_id": prediction_id, "seq": 0,
                          "prediction": job.to_json()})
        await _stream(subscriber, first)
    finally:
        hub.unsubscribe(subscriber)
        request.app[WEBSOCKETS].discard(subscriber.socket)
    return subscriber.socket


async def all_tasks_stream(request: web.Request) -> web.WebSocketResponse:
    store, hub = request.app[STORE], request.app[HUB]
    subscriber = _subscriber(request, None, None)
    await _accept(request, subscriber)
    states = hub.subscribe(subscriber)
    # In the same step as subscribing: every later base_model message is newer than this.
    downloads = [entry.to_json() for entry in request.app[BASE_MODEL_DOWNLOADS].entries()]
    try:
        active = await store.tasks_in(tuple(ACTIVE_STATUSES))
        tasks = [{**snapshot_of(task, states.get(task.task_id)), "seq": states[task.task_id].seq
                  if task.task_id in states else 0} for task in active]
        jobs = await store.predictions_in((PredictionStatus.QUEUED, PredictionStatus.RUNNING))
        predictions = [{**prediction_snapshot_of(job, states.get(job.prediction_id)),
                        "seq": states[job.prediction_id].seq if job.prediction_id in states else 0} for job in jobs]
        await _stream(subscriber, [{"type": "snapshot", "tasks": tasks, "predictions": predictions,
                                    "base_models": downloads}])
    finally:
        hub.unsubscribe(subscriber)
        request.app[WEBSOCKETS].discard(subscriber.socket)
    return subscriber.socket


async def close_all(app: web.Application) -> None:
    """On shutdown: every open socket gets 1001 (going away)."""
    for socket in list(app[WEBSOCKETS]):
        await close_quietly(socket, WSCloseCode.GOING_AWAY, b"server shutting down")

"""WebSocket streams: one task's live messages, or every task's (for dashboards).

Per task: `snapshot` (the task, with the seq it reflects), then `progress` / `epoch` / `warning` /
`status` messages with increasing seq, then `end` (the full task) and a close with 1000. A client
that falls too far behind is closed with 4008; on server shutdown every socket is closed with 1001."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from aiohttp import WSCloseCode, WSMsgType, web
from loguru import logger

from bertd.runtime.hub import CLOSE_TOO_SLOW, END_WRITTEN, LiveState, Message, Subscriber, SubscriberTooSlow
from bertd.server.errors import not_found
from bertd.server.keys import CONFIG, HUB, STORE, WEBSOCKETS
from bertd.server.responses import dumps
from bertd.state.records import ACTIVE_STATUSES, TERMINAL_STATUSES, TaskRecord

# Bytes a client may leave unread before new messages queue (and coalesce) instead of being
# written straight away.
WRITE_NOW_BUFFER_LIMIT = 64 * 1024


def snapshot_of(task: TaskRecord, live: LiveState | None) -> dict[str, Any]:
    """The task as stored, with status and progress as of the live state the subscriber starts from."""
    body = task.to_json()
    if live is not None and task.status not in TERMINAL_STATUSES:
        if live.status is not None:
            body["status"] = live.status
        if live.progress is not None:
            body["progress"] = live.progress
    return body


async def _open(request: web.Request) -> web.WebSocketResponse:
    config = request.app[CONFIG]
    # No permessage-deflate: live messages are small, and one uncompressed frame serves every
    # subscriber (see ws_frame); compressing would mean one zlib stream per socket per message.
    socket = web.WebSocketResponse(heartbeat=config.ws_heartbeat_seconds or None, max_msg_size=1 << 16,
                                   compress=False)
    await socket.prepare(request)
    request.app[WEBSOCKETS].add(socket)
    return socket


async def _send(socket: web.WebSocketResponse, message: dict[str, Any], timeout: float) -> None:
    # A client that stops reading fills the socket buffer; a bounded send keeps it from
    # holding this connection's writer forever.
    text = message.text if isinstance(message, Message) else dumps(message)
    await asyncio.wait_for(socket.send_str(text), timeout or None)


def _writer_for(socket: web.WebSocketResponse, transport: asyncio.Transport,
                buffer_limit: int) -> Callable[[Message], bool]:
    """Writes a message's prepared frame straight to the connection, unless it is closing or the
    client has not taken what it was already sent (then the hub queues the message instead)."""

    def write_now(message: Message) -> bool:
        if socket.closed or transport.is_closing() or transport.get_write_buffer_size() > buffer_limit:
            return False
        transport.write(message.frame)
        return True

    return write_now


async def _drain_incoming(socket: web.WebSocketResponse) -> None:
    """Read (and ignore) what the client sends, so pings, pongs and its close are handled."""
    async for message in socket:
        if message.type == WSMsgType.ERROR:
            break


async def _stream(request: web.Request, socket: web.WebSocketResponse, subscriber: Subscriber,
                  first: list[dict[str, Any]], close_after_end: bool) -> None:
    timeout = request.app[CONFIG].ws_send_timeout_seconds
    write_now = _writer_for(socket, request.transport, WRITE_NOW_BUFFER_LIMIT)
    reader = asyncio.create_task(_drain_incoming(socket))
    reader.add_done_callback(lambda _: subscriber.hang_up())

    async def deliver(message: dict[str, Any]) -> bool:
        """Send `message` (unless the hub already wrote it); True once the stream is closed after `end`."""
        if message is not END_WRITTEN:
            await _send(socket, message, timeout)
        if message["type"] == "end" and close_after_end:
            await socket.close(code=WSCloseCode.OK, message=b"task ended")
            return True
        return False

    try:
        for message in first:
            if await deliver(message):
                return
        while True:
            # Direct writes only while nothing is queued or in flight here, so order holds.
            subscriber.write_now = write_now
            message = await subscriber.next()
            subscriber.write_now = None
            if message is None or await deliver(message):
                return
    except (TimeoutError, SubscriberTooSlow):
        logger.info("closing a WebSocket client that fell too far behind ({})", request.path)
        await _close_quietly(socket, CLOSE_TOO_SLOW, b"client too slow; reconnect for a fresh snapshot",
                             request.transport)
    except (ConnectionResetError, RuntimeError):
        pass  # the client went away mid-send
    finally:
        subscriber.write_now = None
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)


async def _close_quietly(socket: web.WebSocketResponse, code: int, message: bytes,
                         transport: asyncio.BaseTransport | None = None) -> None:
    """Close with `code`; a client that will not even take the close frame is cut off."""
    try:
        await asyncio.wait_for(socket.close(code=code, message=message), 2.0)
    except (TimeoutError, ConnectionResetError, RuntimeError):
        if transport is not None:
            transport.abort()


async def task_stream(request: web.Request) -> web.WebSocketResponse:
    store, hub = request.app[STORE], request.app[HUB]
    task_id = request.match_info["task_id"]
    # Subscribe before reading the task, so nothing published after the read is missed; the one
    # read both answers 404 (before the upgrade) and makes the snapshot. One read per connect
    # matters when hundreds of dashboards reconnect at once.
    subscriber, states = hub.subscribe(task_id)
    socket: web.WebSocketResponse | None = None
    try:
        task = await store.get_task(task_id)
        if task is None:
            raise not_found(f"no training task with task_id {task_id!r}")
        socket = await _open(request)
        live = states.get(task_id)
        seq = live.seq if live else 0
        first: list[dict[str, Any]] = [{"type": "snapshot", "task_id": task_id, "seq": seq,
                                        "task": snapshot_of(task, live)}]
        if live is None and task.status in TERMINAL_STATUSES:
            first.append({"type": "end", "task_id": task_id, "seq": seq, "task": task.to_json()})
        await _stream(request, socket, subscriber, first, close_after_end=True)
    finally:
        hub.unsubscribe(subscriber)
        if socket is not None:
            request.app[WEBSOCKETS].discard(socket)
    return socket


async def all_tasks_stream(request: web.Request) -> web.WebSocketResponse:
    store, hub = request.app[STORE], request.app[HUB]
    socket = await _open(request)
    subscriber, states = hub.subscribe(None)
    try:
        active = await store.tasks_in(tuple(ACTIVE_STATUSES))
        tasks = [{**snapshot_of(task, states.get(task.task_id)), "seq": states[task.task_id].seq
                  if task.task_id in states else 0} for task in active]
        first = [{"type": "snapshot", "tasks": tasks}]
        await _stream(request, socket, subscriber, first, close_after_end=False)
    finally:
        hub.unsubscribe(subscriber)
        request.app[WEBSOCKETS].discard(socket)
    return socket


async def close_all(app: web.Application) -> None:
    """On shutdown: every open socket gets 1001 (going away)."""
    sockets = list(app[WEBSOCKETS])
    for socket in sockets:
        await _close_quietly(socket, WSCloseCode.GOING_AWAY, b"server shutting down")

"""One WebSocket connection as a hub subscriber: how live messages reach the client, in order.

Two ways a message goes out:
- directly, inside `offer` (the hub's publish): one prepared frame written straight to the
  transport, no task wake-up per subscriber per message. Allowed only while the sender is idle
  (waiting on an empty mailbox) and the client has taken what it was sent (the transport buffer is
  under `buffer_limit`), so a direct write can never overtake a queued or in-flight message;
- otherwise through the mailbox, which the sender task drains with bounded sends (coalescing
  progress, closing a client that falls too far behind with CLOSE_TOO_SLOW).
A stream's last message written directly still needs the sender to close the socket: `offer`
records that and wakes it. Which message is a stream's last is the stream's `StreamEnd` business."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiohttp import WSCloseCode, web
from loguru import logger

from bertd.api.ws_frame import text_frame
from bertd.runtime.hub import Message
from bertd.runtime.mailbox import Mailbox, SubscriberTooSlow
from bertd.server.responses import dumps
from bertd.state.records import PREDICTION_TERMINAL

CLOSE_TOO_SLOW = 4008
# Bytes a client may leave unread before new messages queue (and coalesce) instead of being
# written straight away.
WRITE_NOW_BUFFER_LIMIT = 64 * 1024


class StreamEnd(Protocol):
    def ended_by(self, message: Mapping[str, Any]) -> bool:
        """Called once per message sent, in order: is the stream over once it is sent?"""


class PredictionStreamEnd:
    """A prediction job's stream ends with its `prediction_end`."""

    def ended_by(self, message: Mapping[str, Any]) -> bool:
        return message["type"] == "prediction_end"


@dataclass
class TaskStreamEnd:
    """A task's stream ends with the task's `end`, or, while prediction jobs of the (completed)
    task are queued or running, with the `prediction_end` of the last of them."""

    active_jobs: set[str] = field(default_factory=set)
    task_ended: bool = False

    def ended_by(self, message: Mapping[str, Any]) -> bool:
        kind = message["type"]
        if kind == "end":
            self.task_ended = True
        elif kind == "prediction_status" and message["status"] not in PREDICTION_TERMINAL:
            self.active_jobs.add(message["prediction_id"])
        elif kind == "prediction_end":
            self.active_jobs.discard(message["prediction_id"])
        return self.task_ended and not self.active_jobs


class SocketSubscriber:
    def __init__(self, task_id: str | None, socket: web.WebSocketResponse, transport: asyncio.Transport,
                 queue_limit: int, send_timeout: float, *, ending: StreamEnd | None,
                 buffer_limit: int = WRITE_NOW_BUFFER_LIMIT) -> None:
        self.task_id = task_id
        self.mailbox = Mailbox(task_id, queue_limit)
        self.socket = socket
        self._transport = transport
        self._send_timeout = send_timeout
        self.ending = ending  # None: the stream of every task, which never ends
        self._buffer_limit = buffer_limit
        # True only while the sender waits on an empty mailbox: the one state in which `offer` may write.
        self._sender_idle = False
        self._ended = False  # its last message was written directly; the sender closes the socket

    # ---- the hub's side ------------------------------------------------------------------------

    def offer(self, message: Message) -> None:
        if self._sender_idle and not self.mailbox.pending() and self._write_now(message):
            if self.ending is not None and self.ending.ended_by(message):
                self._ended = True
                self.mailbox.wake()
            return
        self.mailbox.offer(message)

    def _write_now(self, message: Message) -> bool:
        transport = self._transport
        if self.socket.closed or transport.is_closing() or transport.get_write_buffer_size() > self._buffer_limit:
            return False
        transport.write(message.derived(text_frame))
        return True

    # ---- the sender's side ---------------------------------------------------------------------

    async def run(self, first: list[dict[str, Any]]) -> None:
        """Send `first` (the snapshot), then every live message until the stream ends, the client
        leaves or falls too far behind."""
        try:
            for message in first:
                if await self._deliver(message):
                    return
            while True:
                self._sender_idle = True
                await self.mailbox.wait()
                self._sender_idle = False
                if self._ended:
                    await self.socket.close(code=WSCloseCode.OK, message=b"stream ended")
                    return
                message = self.mailbox.take()
                if message is None:
                    if self.mailbox.closed:
                        return
                    continue
                if await self._deliver(message):
                    return
        except (TimeoutError, SubscriberTooSlow):
            logger.info("closing a WebSocket client that fell too far behind ({})", self.task_id or "every task")
            await close_quietly(self.socket, CLOSE_TOO_SLOW, b"client too slow; reconnect for a fresh snapshot",
                                self._transport)
        except (ConnectionResetError, RuntimeError):
            pass  # the client went away mid-send
        finally:
            self._sender_idle = False

    async def _deliver(self, message: dict[str, Any]) -> bool:
        """Send one message; True once the stream is closed after its last."""
        # A client that stops reading fills the socket buffer; a bounded send keeps it from
        # holding this connection's sender forever.
        text = message.text if isinstance(message, Message) else dumps(message)
        await asyncio.wait_for(self.socket.send_str(text), self._send_timeout or None)
        if self.ending is not None and self.ending.ended_by(message):
            await self.socket.close(code=WSCloseCode.OK, message=b"stream ended")
            return True
        return False


async def close_quietly(socket: web.WebSocketResponse, code: int, message: bytes,
                        transport: asyncio.BaseTransport | None = None) -> None:
    """Close with `code`; a client that will not even take the close frame is cut off."""
    try:
        await asyncio.wait_for(socket.close(code=code, message=message), 2.0)
    except (TimeoutError, ConnectionResetError, RuntimeError):
        if transport is not None:
            transport.abort()

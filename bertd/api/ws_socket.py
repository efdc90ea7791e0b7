"""One WebSocket connection as a hub subscriber: how live messages reach the client, in order.

Two ways a message goes out:
- directly, inside `offer` (the hub's publish): one prepared frame written straight to the
  transport, no task wake-up per subscriber per message. Allowed only while the sender is idle
  (waiting on an empty mailbox) and the client has taken what it was sent (the transport buffer is
  under `buffer_limit`), so a direct write can never overtake a queued or in-flight message;
- otherwise through the mailbox, which the sender task drains with bounded sends (coalescing
  progress, closing a client that falls too far behind with CLOSE_TOO_SLOW).
An `end` written directly still needs the sender to close a task stream: `offer` records that and
wakes it."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import WSCloseCode, web
from loguru import logger

from bertd.api.ws_frame import text_frame
from bertd.runtime.hub import END_TYPES, Message
from bertd.runtime.mailbox import Mailbox, SubscriberTooSlow
from bertd.server.responses import dumps

CLOSE_TOO_SLOW = 4008
# Bytes a client may leave unread before new messages queue (and coalesce) instead of being
# written straight away.
WRITE_NOW_BUFFER_LIMIT = 64 * 1024


class SocketSubscriber:
    def __init__(self, task_id: str | None, socket: web.WebSocketResponse, transport: asyncio.Transport,
                 queue_limit: int, send_timeout: float, *, close_after_end: bool,
                 buffer_limit: int = WRITE_NOW_BUFFER_LIMIT) -> None:
        self.task_id = task_id
        self.mailbox = Mailbox(task_id, queue_limit)
        self.socket = socket
        self._transport = transport
        self._send_timeout = send_timeout
        self._close_after_end = close_after_end
        self._buffer_limit = buffer_limit
        # True only while the sender waits on an empty mailbox: the one state in which `offer` may write.
        self._sender_idle = False
        self._end_written = False

    # ---- the hub's side ------------------------------------------------------------------------

    def offer(self, message: Message) -> None:
        if self._sender_idle and not self.mailbox.pending() and self._write_now(message):
            if message["type"] in END_TYPES:
                self._end_written = True
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
                if self._end_written and self._close_after_end:
                    await self.socket.close(code=WSCloseCode.OK, message=b"task ended")
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
        """Send one message; True once the stream is closed after `end`."""
        # A client that stops reading fills the socket buffer; a bounded send keeps it from
        # holding this connection's sender forever.
        text = message.text if isinstance(message, Message) else dumps(message)
        await asyncio.wait_for(self.socket.send_str(text), self._send_timeout or None)
        if message["type"] in END_TYPES and self._close_after_end:
            await self.socket.close(code=WSCloseCode.OK, message=b"task ended")
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

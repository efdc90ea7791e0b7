"""A subscriber's bounded queue of live messages, for whoever cannot take them the moment they
are published (a WebSocket whose client is behind).

Back-pressure: a pending `progress` of a task (or `prediction_progress` of a prediction job) is
replaced by a newer one (newest wins), and so is a pending `base_model` message of the same base
model (each carries the download's whole state); `status`, `epoch`, `warning` and `end` are never
dropped. A mailbox that still overflows is marked too slow: its reader gets SubscriberTooSlow and
should close the connection."""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

COALESCED_TYPES = frozenset({"progress", "prediction_progress", "base_model"})


def _subject(message: dict[str, Any]) -> tuple[str | None, str | None]:
    """What a message is about: its task (and prediction job), or the base model a `base_model`
    message describes."""
    return message.get("task_id") or message.get("name"), message.get("prediction_id")


class SubscriberTooSlow(Exception):
    """The subscriber fell too far behind; its connection should be closed."""


class Mailbox:
    def __init__(self, task_id: str | None, limit: int) -> None:
        self.task_id = task_id  # None: every task
        self.limit = limit
        self.too_slow = False
        self.coalesced = 0
        self._queue: deque[dict[str, Any]] = deque()
        self._ready = asyncio.Event()
        self._closed = False

    def offer(self, message: dict[str, Any]) -> None:
        """Queue `message` (a hub subscriber's one method)."""
        if self.too_slow:
            return
        if message["type"] in COALESCED_TYPES:
            for index, pending in enumerate(self._queue):
                if pending["type"] == message["type"] and _subject(pending) == _subject(message):
                    del self._queue[index]
                    self.coalesced += 1
                    break
        if len(self._queue) >= self.limit:
            self.too_slow = True
            self._queue.clear()
        else:
            self._queue.append(message)
        self._ready.set()

    def close(self) -> None:
        """Nothing more will be read: wake the reader so it can finish."""
        self._closed = True
        self._ready.set()

    def wake(self) -> None:
        """Wake the reader without a message (it re-checks whatever state woke it)."""
        self._ready.set()

    async def wait(self) -> None:
        """Until there is a message, the mailbox is closed or too slow, or someone wakes it."""
        if not self._queue and not self._closed and not self.too_slow:
            self._ready.clear()
            await self._ready.wait()

    def take(self) -> dict[str, Any] | None:
        """The oldest message, None if there is none; raises SubscriberTooSlow once overflowed."""
        if self.too_slow:
            raise SubscriberTooSlow()
        return self._queue.popleft() if self._queue else None

    @property
    def closed(self) -> bool:
        return self._closed

    def pending(self) -> list[dict[str, Any]]:
        return list(self._queue)

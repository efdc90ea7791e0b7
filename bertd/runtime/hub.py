"""Fan-out of live task messages to WebSocket subscribers, each with a bounded queue.

Every message of a task carries a per-task sequence number. The hub also keeps each task's latest
status and progress with that number, so a subscriber gets a snapshot and its live queue in one
synchronous step: nothing can fall between them, and nothing arrives twice.

Delivery: a subscriber that is keeping up gets each message written straight to its socket during
`publish` (one prepared frame, one write per socket: no task wake-up per subscriber per message).
Otherwise the message waits in the subscriber's queue for its sender task.

Back-pressure: a subscriber's pending `progress` for a task is replaced by a newer one (newest
wins); `status`, `epoch` and `end` are never dropped. A subscriber whose queue still overflows is
marked too slow and its socket is closed with CLOSE_TOO_SLOW."""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bertd.api.ws_frame import text_frame

CLOSE_TOO_SLOW = 4008
COALESCED_TYPES = frozenset({"progress"})
# Queued after an `end` that was written directly: the sender task closes the task stream on it.
END_WRITTEN: dict[str, Any] = {"type": "end", "task_id": None, "written": True}


class Message(dict):
    """A published message. `text` (its JSON) and `frame` (that JSON as a WebSocket frame) are
    built once however many subscribers get it."""

    __slots__ = ("frame", "text")

    def __init__(self, body: dict[str, Any]) -> None:
        super().__init__(body)
        self.text = json.dumps(body, ensure_ascii=False)
        self.frame = text_frame(self.text)


@dataclass
class LiveState:
    """What the hub last published of an active task. Ended tasks have none: the database is
    complete for them before their `end` message goes out."""

    seq: int = 0
    status: str | None = None
    progress: dict[str, Any] | None = None


class SubscriberTooSlow(Exception):
    """The subscriber fell too far behind; its connection should be closed."""


@dataclass(eq=False)  # compared and hashed by identity: subscribers live in sets
class Subscriber:
    task_id: str | None  # None: every task
    limit: int
    _queue: deque[dict[str, Any]] = field(default_factory=deque)
    _ready: asyncio.Event = field(default_factory=asyncio.Event)
    too_slow: bool = False
    hung_up: bool = False
    coalesced: int = 0
    # Set by the sender task while its queue is empty: writes a message to the socket now and
    # says whether it did (False when the socket is closing or its buffer is full).
    write_now: Callable[[Message], bool] | None = None

    def offer(self, message: Message) -> None:
        if self.too_slow:
            return
        if self.write_now is not None and not self._queue and self.write_now(message):
            if message["type"] == "end":
                self._queue.append(END_WRITTEN)
                self._ready.set()
            return
        if message["type"] in COALESCED_TYPES:
            for index, pending in enumerate(self._queue):
                if pending["type"] == message["type"] and pending["task_id"] == message["task_id"]:
                    del self._queue[index]
                    self.coalesced += 1
                    break
        if len(self._queue) >= self.limit:
            self.too_slow = True
            self._queue.clear()
        else:
            self._queue.append(message)
        self._ready.set()

    def hang_up(self) -> None:
        """The connection is gone: wake the sender task so it can finish."""
        self.hung_up = True
        self._ready.set()

    async def next(self) -> dict[str, Any] | None:
        """The oldest queued message, waiting for one; None once the connection is gone."""
        while not self._queue:
            if self.too_slow:
                raise SubscriberTooSlow()
            if self.hung_up:
                return None
            self._ready.clear()
            await self._ready.wait()
        if self.too_slow:
            raise SubscriberTooSlow()
        return self._queue.popleft()

    def pending(self) -> int:
        return len(self._queue)


class Hub:
    def __init__(self, queue_limit: int = 256) -> None:
        self._queue_limit = queue_limit
        self._states: dict[str, LiveState] = {}
        self._by_task: dict[str, set[Subscriber]] = {}
        self._everything: set[Subscriber] = set()

    @property
    def subscriber_count(self) -> int:
        return len(self._everything) + sum(len(subscribers) for subscribers in self._by_task.values())

    def publish(self, task_id: str, message: dict[str, Any]) -> dict[str, Any]:
        """Number the message, remember the task's latest state, and queue it for every subscriber."""
        state = self._states.setdefault(task_id, LiveState())
        state.seq += 1
        # `at` (Unix seconds) lets clients see how fresh a message is, and benchmarks its latency.
        numbered = Message({**message, "task_id": task_id, "seq": state.seq, "at": time.time()})
        kind = message["type"]
        if kind == "status":
            state.status = message["status"]
        elif kind == "progress":
            state.progress = {k: v for k, v in message.items() if k != "type"}
        for subscriber in (*self._by_task.get(task_id, ()), *self._everything):
            subscriber.offer(numbered)
        if kind == "end":
            del self._states[task_id]
        return numbered

    def subscribe(self, task_id: str | None) -> tuple[Subscriber, dict[str, LiveState]]:
        """A new subscriber to one task (or to all, for None) and, at this same instant, the live
        state of that task (or of every active task). Every later message has a larger seq."""
        subscriber = Subscriber(task_id, self._queue_limit)
        if task_id is None:
            self._everything.add(subscriber)
            wanted = self._states
        else:
            self._by_task.setdefault(task_id, set()).add(subscriber)
            wanted = {task_id: self._states[task_id]} if task_id in self._states else {}
        states = {key: LiveState(state.seq, state.status, dict(state.progress) if state.progress else None)
                  for key, state in wanted.items()}
        return subscriber, states

    def unsubscribe(self, subscriber: Subscriber) -> None:
        if subscriber.task_id is None:
            self._everything.discard(subscriber)
            return
        subscribers = self._by_task.get(subscriber.task_id)
        if subscribers is not None:
            subscribers.discard(subscriber)
            if not subscribers:
                del self._by_task[subscriber.task_id]


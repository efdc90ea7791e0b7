"""Fan-out of live task messages to subscribers.

Every message of a task carries a per-task sequence number. The hub also keeps each task's latest
status and progress with that number, so a subscriber gets a snapshot and its live messages in one
synchronous step: nothing can fall between them, and nothing arrives twice.

A subscriber is anything with a `task_id` (None: every task) and an `offer(message)` that must not
block; what it does with the message (write it to a socket, queue it) is its own business.

A prediction job has a stream of its own, keyed by its prediction_id: its messages carry the
task_id of their task (and their prediction_id, and the seq of the job's stream), and reach that
stream's subscribers, those of its task, and those of every task."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol


class Message(dict):
    """A published message. Its JSON `text` is built once however many subscribers get it, and so
    is any other form a subscriber derives from that text (a WebSocket frame, say)."""

    __slots__ = ("_derived", "text")

    def __init__(self, body: dict[str, Any]) -> None:
        super().__init__(body)
        self.text = json.dumps(body, ensure_ascii=False)
        self._derived: dict[Callable[[str], Any], Any] = {}

    def derived(self, make: Callable[[str], Any]) -> Any:
        if make not in self._derived:
            self._derived[make] = make(self.text)
        return self._derived[make]


STATUS_TYPES = frozenset({"status", "prediction_status"})
PROGRESS_TYPES = frozenset({"progress", "prediction_progress"})
# The last message of a stream: the hub forgets its live state.
END_TYPES = frozenset({"end", "prediction_end"})


class Subscriber(Protocol):
    @property
    def task_id(self) -> str | None: ...

    def offer(self, message: Message) -> None: ...


@dataclass
class LiveState:
    """What the hub last published of an active task. Ended tasks have none: the database is
    complete for them before their `end` message goes out."""

    seq: int = 0
    status: str | None = None
    progress: dict[str, Any] | None = None


class Hub:
    def __init__(self) -> None:
        self._states: dict[str, LiveState] = {}
        self._by_task: dict[str, set[Subscriber]] = {}
        self._everything: set[Subscriber] = set()
        # A live prediction job's stream -> its task, whose subscribers get the job's messages too.
        self._owner: dict[str, str] = {}

    @property
    def subscriber_count(self) -> int:
        return len(self._everything) + sum(len(subscribers) for subscribers in self._by_task.values())

    def publish(self, task_id: str, body: dict[str, Any]) -> Message:
        """Number the message, remember the stream's latest state, and offer it to every subscriber.
        `task_id` keys the stream: a task's id, or a prediction job's (whose body names its task)."""
        state = self._states.setdefault(task_id, LiveState())
        state.seq += 1
        # `at` (Unix seconds) lets clients see how fresh a message is, and benchmarks its latency.
        message = Message({"task_id": task_id, **body, "seq": state.seq, "at": time.time()})
        kind = body["type"]
        if kind in STATUS_TYPES:
            state.status = body["status"]
        elif kind in PROGRESS_TYPES:
            state.progress = {k: v for k, v in body.items() if k not in ("type", "sent_at")}
        subscribers = [*self._by_task.get(task_id, ()), *self._everything]
        owner = body.get("task_id", task_id)
        if owner != task_id:
            self._owner[task_id] = owner
            subscribers += self._by_task.get(owner, ())
        for subscriber in subscribers:
            subscriber.offer(message)
        if kind in END_TYPES:
            del self._states[task_id]
            self._owner.pop(task_id, None)
        return message

    def broadcast(self, body: dict[str, Any]) -> Message:
        """A message that belongs to no task (a base model download): offered only to the
        subscribers of every task, with `at` but no `task_id` or `seq`. Each such message carries
        its subject's whole state, so a newer one may replace an older one a slow client has not
        taken yet."""
        message = Message({**body, "at": time.time()})
        for subscriber in tuple(self._everything):
            subscriber.offer(message)
        return message

    def subscribe(self, subscriber: Subscriber) -> dict[str, LiveState]:
        """Add a subscriber to its stream (or to every stream) and return, at this same instant, the
        live state of that stream and of its task's live prediction jobs (or of every live stream).
        Every later message of a stream has a larger seq."""
        task_id = subscriber.task_id
        if task_id is None:
            self._everything.add(subscriber)
            wanted = self._states
        else:
            self._by_task.setdefault(task_id, set()).add(subscriber)
            keys = [task_id, *(key for key, owner in self._owner.items() if owner == task_id)]
            wanted = {key: self._states[key] for key in keys if key in self._states}
        return {key: LiveState(state.seq, state.status, dict(state.progress) if state.progress else None)
                for key, state in wanted.items()}

    def unsubscribe(self, subscriber: Subscriber) -> None:
        if subscriber.task_id is None:
            self._everything.discard(subscriber)
            return
        subscribers = self._by_task.get(subscriber.task_id)
        if subscribers is not None:
            subscribers.discard(subscriber)
            if not subscribers:
                del self._by_task[subscriber.task_id]

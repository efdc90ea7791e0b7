"""The Celery executor (BROKER_URL set): each run goes to a `bertd worker` on some box as a Celery
task; its messages come back through a Redis stream, read from where the API node left off.

Capacity is what the live boxes offer (their heartbeats), so the scheduler hands a run to Celery
only when a slot is free somewhere and a queued task never waits behind a busy box. A run survives
a restart of the API node: its stream and the cursor kept in SQLite let the next start read on.
A box that stops sending heartbeats fails its run."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from celery import Celery
from loguru import logger
from redis.asyncio import Redis
from redis.exceptions import RedisError

from bertd.cluster.celery_app import make_celery
from bertd.cluster.contract import (
    CELERY_TASK,
    DEAD_AFTER_SECONDS,
    STREAM_TTL_SECONDS,
    RemoteJob,
    claim_key,
    control_key,
    stream_key,
)
from bertd.cluster.directory import WorkerDirectory
from bertd.protocol import Exited, ProgressReport, Started, TrainingJob, WorkerMessage, decode_message
from bertd.state.records import TaskRecord
from bertd.state.store import Store

CURSOR_SAVE_INTERVAL = 1.0
READ_BLOCK_MILLISECONDS = 1000


class RemoteRun:
    """A run on some worker box, seen through its Redis stream."""

    def __init__(self, task_id: str, run_id: str, redis: Redis, directory: WorkerDirectory, store: Store,
                 cursor: str = "0-0", worker: str | None = None) -> None:
        self.task_id = task_id
        self.run_id = run_id
        self.worker = worker
        self._redis = redis
        self._directory = directory
        self._store = store
        self._cursor = cursor
        self._cursor_saved_at = 0.0
        # A box is judged by its heartbeats only once Redis has answered for a while: after an outage
        # every heartbeat looks old until the boxes have written a new one.
        self._redis_ok_since = time.monotonic()

    async def messages(self) -> AsyncIterator[WorkerMessage]:
        stream = stream_key(self.task_id, self.run_id)
        last_check = time.monotonic()
        while True:
            try:
                entries = await self._redis.xread({stream: self._cursor}, count=100, block=READ_BLOCK_MILLISECONDS)
            except RedisError as error:  # Redis restarting: the stream is kept (AOF); read on once it is back
                logger.warning("task {}: Redis unreachable ({}); retrying", self.task_id, error)
                self._redis_ok_since = time.monotonic() + 1.0
                await asyncio.sleep(1.0)
                continue
            for _stream, items in entries or []:
                for entry_id, fields in items:
                    entry = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
                    message = decode_message(fields[b"m"], origin=f"{self.run_id}/{entry}")
                    if isinstance(message, Started):
                        self.worker = message.worker
                    # By the time the generator resumes, the scheduler has applied the message.
                    yield message
                    self._cursor = entry
                    await self._save_cursor(urgent=not isinstance(message, ProgressReport))
                    if isinstance(message, Exited):
                        return
            if time.monotonic() - last_check >= DEAD_AFTER_SECONDS / 3 \
                    and time.monotonic() - self._redis_ok_since > DEAD_AFTER_SECONDS:
                last_check = time.monotonic()
                lost = await self._lost_worker()
                if lost is not None:
                    yield Exited(exitcode=None, detail=lost)
                    return

    async def _save_cursor(self, urgent: bool) -> None:
        if urgent or time.monotonic() - self._cursor_saved_at >= CURSOR_SAVE_INTERVAL:
            self._cursor_saved_at = time.monotonic()
            await self._store.set_run(self.task_id, self.run_id, cursor=self._cursor)

    async def _lost_worker(self) -> str | None:
        """Why the run is lost (its box stopped sending heartbeats), or None while it lives."""
        worker = self.worker
        if worker is None:
            try:
                claimed = await self._redis.get(claim_key(self.task_id, self.run_id))
            except RedisError:
                return None
            worker = claimed.decode() if isinstance(claimed, bytes) else claimed
            if worker is None:
                return None  # not picked up yet: Celery keeps it for the next free slot
        try:
            info = await self._directory.worker(worker)
        except RedisError:
            return None  # no news is not bad news while Redis itself is away
        if info is not None and info.alive:
            return None
        return (f"worker {worker} stopped answering (no heartbeat for over {DEAD_AFTER_SECONDS:g} s): its box or "
                "its bertd worker process is gone")

    def stop(self) -> None:
        asyncio.ensure_future(self._request("stop"))

    def pause(self) -> None:
        # Checkpoints stay on the box that wrote them, so a pause is not offered (the scheduler
        # refuses it); a shutdown of the API node leaves remote runs alone.
        self.stop()

    async def _request(self, what: str) -> None:
        try:
            await self._redis.set(control_key(self.task_id, self.run_id), what, ex=STREAM_TTL_SECONDS)
        except RedisError as error:
            logger.error("task {}: could not ask its worker to {} ({})", self.task_id, what, error)


class CeleryExecutor:
    """Runs jobs on `bertd worker` boxes through Celery + Redis."""

    keeps_runs_on_shutdown = True
    supports_pause = False

    def __init__(self, broker_url: str, store: Store) -> None:
        self._celery: Celery = make_celery(broker_url)
        self._redis = Redis.from_url(broker_url)
        self.directory = WorkerDirectory(self._redis)
        self._store = store
        self._capacity = 0
        self._watcher: asyncio.Task[None] | None = None
        self.on_capacity_change: Callable[[], None] = lambda: None

    def capacity(self) -> int:
        return self._capacity

    def warm_up(self) -> None:
        if self._watcher is None:
            self._watcher = asyncio.create_task(self._watch_workers(), name="worker-heartbeats")

    async def _watch_workers(self) -> None:
        while True:
            try:
                workers = await self.directory.workers()
                capacity = sum(info.slots for info in workers if info.alive)
            except RedisError as error:
                logger.warning("cannot read worker heartbeats from Redis: {}", error)
                capacity = self._capacity
            if capacity != self._capacity:
                logger.info("worker slots available: {} (was {})", capacity, self._capacity)
                self._capacity = capacity
                self.on_capacity_change()
            await asyncio.sleep(1.0)

    async def start(self, job: TrainingJob) -> RemoteRun:
        run_id = uuid.uuid4().hex
        training = await self._store.get_file(Path(job.training_data_path).name)
        validation = (await self._store.get_file(Path(job.validation_data_path).name)
                      if job.validation_data_path else None)
        if training is None or (job.validation_data_path and validation is None):
            raise RuntimeError("a data file of the task is no longer uploaded")
        remote = RemoteJob(task_id=job.task_id, run_id=run_id, job=job, training_file=training.filename,
                           training_sha256=training.sha256,
                           validation_file=validation.filename if validation else None,
                           validation_sha256=validation.sha256 if validation else None)
        # Recorded before it is sent: a restart in between finds the run and reads its stream.
        await self._store.set_run(job.task_id, run_id, cursor="0-0")
        await asyncio.to_thread(self._celery.send_task, CELERY_TASK, args=[remote.model_dump(mode="json")],
                                task_id=f"{job.task_id}-{run_id}", serializer="json")
        return RemoteRun(job.task_id, run_id, self._redis, self.directory, self._store)

    def reattach(self, task: TaskRecord) -> RemoteRun | None:
        """The run of a task that was running when the API node stopped, read on from its cursor."""
        if not task.run_id:
            return None
        return RemoteRun(task.task_id, task.run_id, self._redis, self.directory, self._store,
                         cursor=task.message_cursor or "0-0", worker=task.worker)

    async def close(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            await asyncio.gather(self._watcher, return_exceptions=True)
        await self._redis.aclose()
        await asyncio.to_thread(self._celery.close)



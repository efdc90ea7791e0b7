"""`bertd worker`: a Celery worker on a GPU box that runs one job per slot.

Before it consumes anything from the broker it shows its WORKER_TOKEN to the API node and checks
the protocol version, so a worker with a wrong or missing token never takes a task off the queue.
While it runs, a heartbeat thread keeps its key in Redis fresh: that is how the API node counts its
slots and notices when the box is gone."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loguru import logger
from redis import Redis
from redis.exceptions import RedisError

from bertd import __version__
from bertd.cluster.api_node import ApiNode, ApiNodeError
from bertd.cluster.box_job import BoxContext, run_remote_job
from bertd.cluster.celery_app import make_celery
from bertd.cluster.contract import (
    CELERY_QUEUE,
    CELERY_TASK,
    HEARTBEAT_SECONDS,
    HEARTBEAT_TTL_SECONDS,
    PROTOCOL_VERSION,
    RemoteJob,
    heartbeat_key,
)
from bertd.runtime.local_pool import LocalPool


@dataclass(frozen=True)
class BoxConfig:
    url: str
    broker_url: str
    name: str
    data_dir: Path
    slots: int
    gpus: tuple[int, ...]
    token: str | None = field(default=None, repr=False)
    log_level: str = "INFO"
    keep_spare_worker: bool = True
    training_function: str = "bertd.training.loop:run_training"


class Slots:
    """Which slot (and GPU) each running job holds, and how many are busy."""

    def __init__(self, count: int, gpus: tuple[int, ...]) -> None:
        self._free = list(range(count))
        self._gpus = gpus
        self._lock = threading.Lock()
        self.count = count

    @property
    def busy(self) -> int:
        with self._lock:
            return self.count - len(self._free)

    def take(self) -> tuple[int, str | None]:
        with self._lock:
            slot = self._free.pop(0) if self._free else 0
        device = f"cuda:{self._gpus[slot % len(self._gpus)]}" if self._gpus else None
        return slot, device

    def give_back(self, slot: int) -> None:
        with self._lock:
            self._free.append(slot)
            self._free.sort()


def heartbeat_loop(config: BoxConfig, slots: Slots, gpus: list[dict[str, Any]], stop: threading.Event) -> None:
    redis = Redis.from_url(config.broker_url)
    while not stop.is_set():
        beat = {"name": config.name, "slots": config.slots, "busy": slots.busy, "gpus": gpus,
                "version": __version__, "protocol": PROTOCOL_VERSION, "at": time.time()}
        try:
            redis.set(heartbeat_key(config.name), json.dumps(beat), ex=HEARTBEAT_TTL_SECONDS)
        except RedisError as error:
            logger.warning("heartbeat not written ({}); retrying", error)
        stop.wait(HEARTBEAT_SECONDS)
    try:  # a clean exit: the API node stops counting these slots at once
        redis.delete(heartbeat_key(config.name))
    except RedisError:
        pass
    redis.close()


class WorkerRefused(Exception):
    """The worker must not take tasks (wrong token, another protocol, no broker); the message says why."""


def check_api_node(config: BoxConfig) -> None:
    """Refuse to start unless the API node accepts the token and speaks our protocol."""
    try:
        hello = asyncio.run(ApiNode(config.url, config.token).hello())
    except ApiNodeError as error:
        raise WorkerRefused(f"{error}; no task was taken from the queue") from None
    if hello.get("protocol") != PROTOCOL_VERSION:
        raise WorkerRefused(f"the API node at {config.url} speaks protocol {hello.get('protocol')} (bertd "
                            f"{hello.get('version')}), this worker {PROTOCOL_VERSION} (bertd {__version__}); run the "
                            "same bertd version on every box; no task was taken from the queue")
    try:
        Redis.from_url(config.broker_url).ping()
    except RedisError as error:
        raise WorkerRefused(f"cannot reach the broker: {error}") from None


def serve_worker(config: BoxConfig, gpus: list[dict[str, Any]]) -> int:
    try:
        check_api_node(config)
    except WorkerRefused as refusal:
        logger.error("bertd worker: {}", refusal)
        return 2
    config.data_dir.mkdir(parents=True, exist_ok=True)
    slots = Slots(config.slots, config.gpus)
    pool = LocalPool(config.training_function, config.log_level, config.keep_spare_worker)
    pool.warm_up()
    shutting_down = threading.Event()
    stop_heartbeats = threading.Event()
    heartbeats = threading.Thread(target=heartbeat_loop, args=(config, slots, gpus, stop_heartbeats),
                                  name="heartbeats", daemon=True)
    heartbeats.start()
    api = ApiNode(config.url, config.token)
    cpu_threads = max(1, len(os.sched_getaffinity(0)) // config.slots)
    app = make_celery(config.broker_url, config.slots)

    @app.task(name=CELERY_TASK, ignore_result=True)
    def run_job(payload: dict[str, Any]) -> None:
        remote = RemoteJob.model_validate(payload)
        slot, device = slots.take()
        logger.info("task {} run {} on slot {} ({})", remote.task_id, remote.run_id, slot, device or "cpu")
        try:
            context = BoxContext(config.name, config.broker_url, api, config.data_dir, pool, cpu_threads)
            asyncio.run(_run_with_shutdown(context, remote, device, shutting_down))
        finally:
            slots.give_back(slot)

    def on_shutdown(*_: object, **__: object) -> None:
        # Running jobs stop (their tasks fail, naming this box); Celery's own handler then exits.
        shutting_down.set()

    from celery.signals import worker_shutting_down

    worker_shutting_down.connect(on_shutdown, weak=False)
    logger.info("bertd worker {} ({} slot(s), GPUs {}) taking tasks from {}", config.name, config.slots,
                list(config.gpus) or "none", CELERY_QUEUE)
    try:
        app.worker_main(["worker", f"--hostname=bertd@{config.name}", f"--loglevel={config.log_level}",
                         "--pool=threads", f"--concurrency={config.slots}", f"--queues={CELERY_QUEUE}",
                         "--without-gossip", "--without-mingle", "--without-heartbeat"])
    finally:
        stop_heartbeats.set()
        heartbeats.join(timeout=5)
        asyncio.run(pool.close())
    return 0


async def _run_with_shutdown(context: BoxContext, remote: RemoteJob, device: str | None,
                             shutting_down: threading.Event) -> None:
    """The job, with the box's shutdown (a thread event) seen as an asyncio event by its control watcher."""
    event = asyncio.Event()

    async def mirror() -> None:
        while not shutting_down.is_set():
            await asyncio.sleep(0.2)
        event.set()

    mirroring = asyncio.create_task(mirror())
    try:
        await run_remote_job(dataclasses.replace(context, shutting_down=event), remote, device)
    finally:
        mirroring.cancel()
        await asyncio.gather(mirroring, return_exceptions=True)


def default_name() -> str:
    return socket.gethostname()


def visible_gpus() -> list[dict[str, Any]]:
    from bertd.runtime.devices import detect_gpus

    return detect_gpus()


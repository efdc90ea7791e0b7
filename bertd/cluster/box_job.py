"""One Celery task on a worker box: claim the run, fetch its inputs, train in a spawned child (the same
worker code the local pool runs), and relay every message to the run's Redis stream; the finished
model goes to the API node before `completed` is sent, so the task completes only once it is there."""

from __future__ import annotations

import asyncio
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from loguru import logger
from redis.asyncio import Redis
from redis.exceptions import RedisError

from bertd.cluster.api_node import ApiNode, ApiNodeError
from bertd.cluster.contract import PROTOCOL_VERSION, STREAM_TTL_SECONDS, RemoteJob, claim_key, control_key, stream_key
from bertd.protocol import Completed, Exited, Failed, Message, Started, Stopped, TrainingJob, encode_message
from bertd.runtime.local_pool import LocalPool

CONTROL_POLL_SECONDS = 0.5
# How long a message waits for Redis to come back before the run gives up on reporting.
PUBLISH_PATIENCE_SECONDS = 600


@dataclass(frozen=True)
class BoxContext:
    """What every job on this box shares."""

    name: str
    broker_url: str
    api: ApiNode
    data_dir: Path
    pool: LocalPool
    # torch threads per job on the CPU: this box's cores shared among its slots (the job as sent
    # carries the API node's figure, which says nothing of this box).
    cpu_threads: int = 1
    shutting_down: asyncio.Event | None = None

    @property
    def cache_dir(self) -> Path:
        return self.data_dir / "cache" / "files"

    @property
    def base_models_dir(self) -> Path:
        return self.data_dir / "base_models"

    def scratch(self, task_id: str) -> Path:
        return self.data_dir / "runs" / task_id


class Relay:
    """The run's stream: every message appended in order, waiting out a Redis restart."""

    def __init__(self, redis: Redis, remote: RemoteJob) -> None:
        self._redis = redis
        self._stream = stream_key(remote.task_id, remote.run_id)

    async def publish(self, message: Message) -> None:
        deadline = time.monotonic() + PUBLISH_PATIENCE_SECONDS
        while True:
            try:
                await self._redis.xadd(self._stream, {"m": encode_message(message)})
                await self._redis.expire(self._stream, STREAM_TTL_SECONDS)
                return
            except RedisError as error:
                if time.monotonic() > deadline:
                    raise
                logger.warning("Redis unreachable ({}); holding the message", error)
                await asyncio.sleep(0.5)


async def _local_job(context: BoxContext, remote: RemoteJob, device: str | None) -> TrainingJob:
    """The job with this box's paths: inputs fetched (or found in the cache), a scratch folder."""
    training = await context.api.fetch_file(remote.training_file, remote.training_sha256, context.cache_dir)
    validation = None
    if remote.validation_file and remote.validation_sha256:
        validation = await context.api.fetch_file(remote.validation_file, remote.validation_sha256,
                                                  context.cache_dir)
    await context.api.fetch_base_model(remote.job.base_model, context.base_models_dir)
    scratch = context.scratch(remote.task_id)
    return remote.job.model_copy(update={
        "training_data_path": str(training),
        "validation_data_path": str(validation) if validation else None,
        "base_models_dir": str(context.base_models_dir),
        "output_dir": str(scratch / "model"),
        "checkpoint_dir": str(scratch / "checkpoints"),
        "device": device,
        "cpu_threads": context.cpu_threads,
    })


async def _watch_control(redis: Redis, remote: RemoteJob, run, context: BoxContext) -> None:
    """Pass a stop the API node asks for (or this box's shutdown) on to the child."""
    key = control_key(remote.task_id, remote.run_id)
    while True:
        try:
            if await redis.get(key) is not None:
                run.stop()
                return
        except RedisError:
            pass
        if context.shutting_down is not None and context.shutting_down.is_set():
            run.stop()
            return
        await asyncio.sleep(CONTROL_POLL_SECONDS)


async def run_remote_job(context: BoxContext, remote: RemoteJob, device: str | None) -> None:
    redis = Redis.from_url(context.broker_url)
    relay = Relay(redis, remote)
    try:
        if not await redis.set(claim_key(remote.task_id, remote.run_id), context.name, nx=True,
                               ex=STREAM_TTL_SECONDS):
            logger.warning("task {} run {} is already claimed by another worker; skipping it", remote.task_id,
                           remote.run_id)
            return
        if remote.protocol != PROTOCOL_VERSION:
            await relay.publish(Failed(error=f"worker {context.name} speaks protocol {PROTOCOL_VERSION}, the job "
                                             f"protocol {remote.protocol}; run the same bertd version everywhere",
                                       expected=True))
            await relay.publish(Exited(exitcode=None))
            return
        if await redis.get(control_key(remote.task_id, remote.run_id)) is not None:
            await relay.publish(Stopped())  # stopped while it waited in the queue: never started
            await relay.publish(Exited(exitcode=0))
            return
        await relay.publish(Started(worker=context.name))
        await _train(context, remote, device, redis, relay)
    finally:
        shutil.rmtree(context.scratch(remote.task_id), ignore_errors=True)
        await redis.aclose()


async def _train(context: BoxContext, remote: RemoteJob, device: str | None, redis: Redis, relay: Relay) -> None:
    try:
        job = await _local_job(context, remote, device)
    except (ApiNodeError, OSError) as error:
        await relay.publish(Failed(error=f"worker {context.name} could not get the task's inputs: {error}",
                                   expected=True))
        await relay.publish(Exited(exitcode=None))
        return
    run = await context.pool.start(job)
    watcher = asyncio.create_task(_watch_control(redis, remote, run, context))
    try:
        async for message in run.messages():
            if isinstance(message, Completed) and message.artifacts is not None:
                message = await _deliver_model(context, remote, message)
            elif isinstance(message, Stopped) and context.shutting_down is not None \
                    and context.shutting_down.is_set() and await redis.get(
                        control_key(remote.task_id, remote.run_id)) is None:
                message = Failed(error=f"worker {context.name} shut down while this task was training; create it "
                                       "again to retry", expected=True)
            await relay.publish(message)
    finally:
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)


async def _deliver_model(context: BoxContext, remote: RemoteJob, message: Completed) -> Completed | Failed:
    assert message.artifacts is not None
    try:
        artifacts = await context.api.upload_model(remote.task_id, remote.run_id, Path(message.artifacts.model_path))
    except (ApiNodeError, OSError) as error:
        logger.error("task {}: the model could not be delivered: {}", remote.task_id, error)
        return Failed(error=f"worker {context.name} trained the model but could not deliver it to the API node: "
                            f"{error}", expected=True)
    return message.model_copy(update={"artifacts": artifacts})

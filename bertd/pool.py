"""Worker processes: spawning one per task, the channel back, stopping and killing. No SQL, no HTTP.

Each worker gets its own one-way Pipe. The server closes its copy of the write end, so a worker
that dies (even mid-message, even by kill -9) makes recv() raise at once instead of hanging,
which a shared multiprocessing.Queue does not guarantee."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import threading
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.context import SpawnProcess
from multiprocessing.synchronize import Event
from typing import Any

from loguru import logger

from bertd.job import TrainingJob
from bertd.worker import worker_main

SPAWN = multiprocessing.get_context("spawn")


@dataclass
class WorkerHandle:
    task_id: str
    process: SpawnProcess
    stop_event: Event
    # Messages from the worker, then one {"type": "exited", "exitcode": int} once it is gone.
    messages: asyncio.Queue[dict[str, Any]]
    exited: asyncio.Event = field(default_factory=asyncio.Event)

    def request_stop(self) -> None:
        self.stop_event.set()

    def terminate(self) -> None:
        if self.process.is_alive():
            self.process.terminate()

    def kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()


def _pump(connection: Connection, handle: WorkerHandle, loop: asyncio.AbstractEventLoop) -> None:
    """Runs in a thread: forward every message to the event loop, then the exit code."""

    def deliver(message: dict[str, Any]) -> None:
        try:
            loop.call_soon_threadsafe(handle.messages.put_nowait, message)
        except RuntimeError:  # the loop is closed: the server is gone, nobody is listening
            pass

    while True:
        try:
            message = connection.recv()
        except (EOFError, OSError):
            break
        except Exception as error:  # a message that does not unpickle: report it, keep reading
            deliver({"type": "warning", "message": f"unreadable message from the worker: {error}"})
            continue
        deliver(message)
    connection.close()
    handle.process.join()
    deliver({"type": "exited", "exitcode": handle.process.exitcode})

    def mark_exited() -> None:
        handle.exited.set()

    try:
        loop.call_soon_threadsafe(mark_exited)
    except RuntimeError:
        pass


def start_worker(job: TrainingJob, training_function: str, log_level: str) -> WorkerHandle:
    """Spawn the worker process for one job and start forwarding its messages."""
    loop = asyncio.get_running_loop()
    reader, writer = SPAWN.Pipe(duplex=False)
    stop_event = SPAWN.Event()
    process = SPAWN.Process(
        target=worker_main,
        args=(job, writer, stop_event, training_function, log_level, os.getpid()),
        name=f"bertd-worker-{job.task_id[:8]}",
        daemon=True,
    )
    handle = WorkerHandle(job.task_id, process, stop_event, asyncio.Queue())
    try:
        process.start()
    finally:
        writer.close()  # only the child may hold the write end, or EOF would never come
    logger.debug("task {} worker pid {} spawned", job.task_id, process.pid)
    threading.Thread(target=_pump, args=(reader, handle, loop), name=f"pump-{job.task_id[:8]}", daemon=True).start()
    return handle


def describe_exit(exitcode: int | None) -> str:
    if exitcode is None:
        return "an unknown exit status"
    if exitcode < 0:
        import signal

        try:
            return f"signal {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"signal {-exitcode}"
    return f"exit code {exitcode}"

"""Worker processes: spawning one per task, the channel back, stopping and killing. No SQL, no HTTP.

Each worker gets its own one-way Pipe for reports. The server closes its copy of the write end, so
a worker that dies (even mid-message, even by kill -9) makes recv() raise at once instead of
hanging, which a shared multiprocessing.Queue does not guarantee.

Start-up (spawning Python, importing torch and transformers) takes seconds that every user would
wait through. So the pool keeps one spare worker that has already done its imports and waits for
a job on a second pipe; a task takes the spare and a new spare starts behind it."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import threading
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.context import SpawnProcess
from multiprocessing.synchronize import Event
from typing import Any

from loguru import logger

from bertd.job import TrainingJob
from bertd.training.worker import worker_main

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


@dataclass
class IdleWorker:
    """A started worker process waiting for its job."""

    process: SpawnProcess
    jobs: Connection  # the server's end: the job goes here
    reports: Connection  # the server's end: the worker's messages come from here
    stop_event: Event


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
    try:
        loop.call_soon_threadsafe(handle.exited.set)
    except RuntimeError:
        pass


class WorkerPool:
    def __init__(self, training_function: str, log_level: str, keep_spare: bool,
                 cpus: tuple[int, ...] | None = None) -> None:
        self._training_function = training_function
        self._log_level = log_level
        self._keep_spare = keep_spare
        self._cpus = cpus
        self._spare: IdleWorker | None = None

    def _spawn(self) -> IdleWorker:
        report_reader, report_writer = SPAWN.Pipe(duplex=False)
        job_reader, job_writer = SPAWN.Pipe(duplex=False)
        stop_event = SPAWN.Event()
        process = SPAWN.Process(
            target=worker_main,
            args=(job_reader, report_writer, stop_event, self._training_function, self._log_level, os.getpid(),
                  self._cpus),
            name="bertd-worker",
            daemon=True,
        )
        try:
            process.start()
        finally:
            # Only the child may hold these ends, or EOF would never reach either side.
            report_writer.close()
            job_reader.close()
        return IdleWorker(process, job_writer, report_reader, stop_event)

    def warm_up(self) -> None:
        """Start the spare now, so the first task does not wait for imports either."""
        if self._keep_spare and (self._spare is None or not self._spare.process.is_alive()):
            self._spare = self._spawn()
            logger.debug("spare worker pid {} started", self._spare.process.pid)

    def start(self, job: TrainingJob) -> WorkerHandle:
        """Hand the job to the spare (or a new worker) and start forwarding its messages."""
        worker = self._spare if self._spare is not None and self._spare.process.is_alive() else None
        self._spare = None
        if worker is None:
            worker = self._spawn()
        loop = asyncio.get_running_loop()
        handle = WorkerHandle(job.task_id, worker.process, worker.stop_event, asyncio.Queue())
        try:
            worker.jobs.send(job)
        except OSError:
            pass  # it died while idle: the pump reports its exit and the task fails with it
        finally:
            worker.jobs.close()
        logger.debug("task {} runs in worker pid {}", job.task_id, worker.process.pid)
        threading.Thread(target=_pump, args=(worker.reports, handle, loop), name=f"pump-{job.task_id[:8]}",
                         daemon=True).start()
        self.warm_up()
        return handle

    def close(self) -> None:
        spare, self._spare = self._spare, None
        if spare is not None:
            spare.jobs.close()  # EOF: the spare exits on its own
            spare.process.join(timeout=5)
            if spare.process.is_alive():
                spare.process.kill()
                spare.process.join()
            spare.reports.close()


def describe_exit(exitcode: int | None) -> str:
    if exitcode is None:
        return "an unknown exit status"
    if exitcode < 0:
        try:
            return f"signal {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"signal {-exitcode}"
    return f"exit code {exitcode}"

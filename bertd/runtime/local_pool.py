"""The default executor: each run in a spawned worker process on this machine. No SQL, no HTTP.

Each worker gets its own one-way Pipe for reports. The server closes its copy of the write end, so
a worker that dies (even mid-message, even by kill -9) makes recv() raise at once instead of
hanging, which a shared multiprocessing.Queue does not guarantee.

Start-up (spawning Python, importing torch and transformers) takes seconds that every user would
wait through. So the pool keeps one spare worker that has already done its imports and waits for
a job on a second pipe; a run takes the spare and a new spare starts behind it."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.context import SpawnProcess
from multiprocessing.synchronize import Event

from loguru import logger

from bertd.i18n import Text
from bertd.protocol import Exited, PredictionJob, TrainingJob, WarningReport, WorkerMessage
from bertd.state.records import TaskRecord
from bertd.training.worker import worker_main

SPAWN = multiprocessing.get_context("spawn")


def describe_exit(exitcode: int | None) -> Text:
    if exitcode is None:
        return Text("an unknown exit status")
    if exitcode < 0:
        try:
            return Text("signal {signal}", signal=signal.Signals(-exitcode).name)
        except ValueError:
            return Text("signal {signal}", signal=str(-exitcode))
    return Text("exit code {code}", code=exitcode)


@dataclass(frozen=True)
class StopPolicy:
    # Seconds a stopping worker gets to exit on its own, then after SIGTERM before SIGKILL.
    grace_seconds: float = 30.0
    kill_wait_seconds: float = 5.0


@dataclass(eq=False)
class LocalRun:
    """A job running in a worker process of this machine."""

    task_id: str
    # What logs call the run: the task's id, or a prediction job's.
    job_id: str
    process: SpawnProcess
    stop_event: Event
    pause_event: Event
    policy: StopPolicy
    # Filled by the pump thread: the worker's messages, then one Exited.
    inbox: asyncio.Queue[WorkerMessage] = field(default_factory=asyncio.Queue)
    exited: asyncio.Event = field(default_factory=asyncio.Event)
    _escalation: asyncio.Task[None] | None = None

    async def messages(self) -> AsyncIterator[WorkerMessage]:
        while True:
            message = await self.inbox.get()
            yield message
            if isinstance(message, Exited):
                return

    def stop(self) -> None:
        self.stop_event.set()
        self._make_sure_it_ends()

    def pause(self) -> None:
        self.pause_event.set()
        self._make_sure_it_ends()

    def _make_sure_it_ends(self) -> None:
        if self._escalation is None:
            self._escalation = asyncio.create_task(self._end_for_certain(), name=f"stop-{self.job_id[:8]}")

    async def _end_for_certain(self) -> None:
        """Give the worker the grace period, then SIGTERM, then SIGKILL."""
        for action, wait in ((self._terminate, self.policy.grace_seconds),
                             (self._kill, self.policy.kill_wait_seconds)):
            try:
                await asyncio.wait_for(self.exited.wait(), wait)
                return
            except TimeoutError:
                logger.warning("job {} worker did not exit within {:g} s; sending {}", self.job_id, wait,
                               action.__name__.strip("_"))
                action()

    def _terminate(self) -> None:
        if self.process.is_alive():
            self.process.terminate()

    def _kill(self) -> None:
        if self.process.is_alive():
            self.process.kill()


@dataclass
class IdleWorker:
    """A started worker process waiting for its job."""

    process: SpawnProcess
    jobs: Connection  # the server's end: the job goes here
    reports: Connection  # the server's end: the worker's messages come from here
    stop_event: Event
    pause_event: Event


def _pump(connection: Connection, run: LocalRun, loop: asyncio.AbstractEventLoop) -> None:
    """Runs in a thread: forward every message to the event loop, then the exit."""

    def deliver(message: WorkerMessage) -> None:
        try:
            loop.call_soon_threadsafe(run.inbox.put_nowait, message)
        except RuntimeError:  # the loop is closed: the server is gone, nobody is listening
            pass

    while True:
        try:
            message = connection.recv()
        except (EOFError, OSError):
            break
        except Exception as error:  # a message that does not unpickle: report it, keep reading
            deliver(WarningReport(message=f"unreadable message from the worker: {error}"))
            continue
        deliver(message)
    connection.close()
    run.process.join()
    exitcode = run.process.exitcode
    deliver(Exited(exitcode=exitcode, detail=describe_exit(exitcode)))
    try:
        loop.call_soon_threadsafe(run.exited.set)
    except RuntimeError:
        pass


class LocalPool:
    """Runs each job in its own spawned process, keeping one spare process imported and waiting.
    Safe to share between threads (a `bertd worker` runs one event loop per slot)."""

    keeps_runs_on_shutdown = False
    supports_pause = True

    def __init__(self, training_function: str, log_level: str, keep_spare: bool,
                 cpus: tuple[int, ...] | None = None, policy: StopPolicy | None = None, slots: int = 1,
                 prediction_function: str = "bertd.training.predict_sheet:run_prediction") -> None:
        self._training_function = training_function
        self._prediction_function = prediction_function
        self._log_level = log_level
        self._keep_spare = keep_spare
        self._cpus = cpus
        self._policy = policy or StopPolicy()
        self._slots = slots
        self._spare: IdleWorker | None = None
        self._spare_lock = threading.Lock()
        self.on_capacity_change: Callable[[], None] = lambda: None

    def capacity(self) -> int:
        return self._slots

    def reattach(self, task: TaskRecord) -> None:
        return None  # a local run never outlives the server: its process dies with it

    def _spawn(self) -> IdleWorker:
        report_reader, report_writer = SPAWN.Pipe(duplex=False)
        job_reader, job_writer = SPAWN.Pipe(duplex=False)
        stop_event, pause_event = SPAWN.Event(), SPAWN.Event()
        process = SPAWN.Process(
            target=worker_main,
            args=(job_reader, report_writer, stop_event, pause_event, self._training_function, self._log_level,
                  os.getpid(), self._cpus, self._prediction_function),
            name="bertd-worker",
            daemon=True,
        )
        try:
            process.start()
        finally:
            # Only the child may hold these ends, or EOF would never reach either side.
            report_writer.close()
            job_reader.close()
        return IdleWorker(process, job_writer, report_reader, stop_event, pause_event)

    def warm_up(self) -> None:
        """Start the spare now, so the next job does not wait for imports either."""
        with self._spare_lock:
            if self._keep_spare and (self._spare is None or not self._spare.process.is_alive()):
                self._spare = self._spawn()
                logger.debug("spare worker pid {} started", self._spare.process.pid)

    async def start(self, job: TrainingJob | PredictionJob) -> LocalRun:
        """Hand the job to the spare (or a new worker) and start forwarding its messages."""
        with self._spare_lock:
            worker = self._spare if self._spare is not None and self._spare.process.is_alive() else None
            self._spare = None
        if worker is None:
            worker = self._spawn()
        loop = asyncio.get_running_loop()
        job_id = job.prediction_id if isinstance(job, PredictionJob) else job.task_id
        run = LocalRun(job.task_id, job_id, worker.process, worker.stop_event, worker.pause_event, self._policy)
        try:
            worker.jobs.send(job)
        except OSError:
            pass  # it died while idle: the pump reports its exit and the task fails with it
        finally:
            worker.jobs.close()
        logger.debug("job {} runs in worker pid {}", job_id, worker.process.pid)
        threading.Thread(target=_pump, args=(worker.reports, run, loop), name=f"pump-{job_id[:8]}",
                         daemon=True).start()
        self.warm_up()
        return run

    async def close(self) -> None:
        await asyncio.to_thread(self._close_spare)

    def _close_spare(self) -> None:
        with self._spare_lock:
            spare, self._spare = self._spare, None
        if spare is not None:
            spare.jobs.close()  # EOF: the spare exits on its own
            spare.process.join(timeout=5)
            if spare.process.is_alive():
                spare.process.kill()
                spare.process.join()
            spare.reports.close()

"""The worker process's entry point: run one job, send its messages, always end with one verdict.

Imports neither aiohttp nor aiosqlite; torch arrives only through the training function."""

from __future__ import annotations

import ctypes
import errno
import importlib
import os
import signal
import sys
import threading
import time
import traceback
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Event
from typing import Any

from loguru import logger

from bertd.i18n import Text
from bertd.protocol import (
    Completed,
    Failed,
    Interruption,
    Paused,
    Stopped,
    TaskError,
    TrainingInputError,
    TrainingJob,
    TrainingPaused,
    TrainingStopped,
)
from bertd.training.priority import low_until_job
from bertd.training.wording import MAX_MESSAGE_CHARACTERS, shortened

PR_SET_PDEATHSIG = 1
EXIT_PARENT_GONE = 70


def die_with_parent(parent_pid: int) -> None:
    """A worker whose server died must not keep training or holding the GPU. Linux kills it
    with the parent-death signal (SIGKILL: nothing is left to report to, and the next server
    start cleans up); elsewhere, or if the parent died before prctl, a thread notices."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        except OSError:
            pass

    def watch_parent() -> None:
        while True:
            if os.getppid() != parent_pid:
                os._exit(EXIT_PARENT_GONE)
            time.sleep(1.0)

    threading.Thread(target=watch_parent, name="watch-parent", daemon=True).start()


def load_function(dotted: str) -> Any:
    module_name, _, attribute = dotted.partition(":")
    return getattr(importlib.import_module(module_name), attribute)


def task_error(error: BaseException) -> TaskError:
    """What a user reads of a failed run: what went wrong (short, never cut inside a word) and
    what to do. The traceback of an unexpected error goes to the log."""
    if isinstance(error, TrainingInputError):
        return error.task_error.model_copy(update={"message": shortened(str(error))})
    if type(error).__name__ == "OutOfMemoryError" or "out of memory" in str(error).lower():
        return TaskError.of("out_of_memory", Text("out of GPU memory"), Text(
            "lower hyperparameters.batch_size or max_sequence_length, or raise gradient_accumulation_steps"))
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EACCES,
                                                       errno.EROFS):
        where = shortened(str(error.filename), MAX_MESSAGE_CHARACTERS // 2) if error.filename else None
        message = (Text("could not write {path}: {reason}", path=where, reason=error.strerror) if where
                   else Text("could not write: {reason}", reason=error.strerror))
        return TaskError.of("disk", message, Text("free disk space in DATA_DIR or make it writable"))
    if isinstance(error, MemoryError):
        return TaskError.of("out_of_memory", Text("out of memory"),
                            Text("lower hyperparameters.batch_size or max_sequence_length"))
    first_line = " ".join((str(error).strip().splitlines() or [""])[0].split())
    kind = type(error).__name__
    # Say less rather than cut: a reason too long to read whole is left to the log.
    message = (Text("training failed with {kind}: {reason}", kind=kind, reason=first_line)
               if first_line and len(kind) + len(first_line) + 24 <= MAX_MESSAGE_CHARACTERS
               else Text("training failed with {kind}", kind=kind))
    return TaskError.of("training_error", message, Text(
        "the server log has the traceback under this task's id; if it happens again, report it"))


def worker_main(
    jobs: Connection,
    connection: Connection,
    stop_event: Event,
    pause_event: Event,
    training_function: str,
    log_level: str,
    parent_pid: int,
    cpus: tuple[int, ...] | None = None,
) -> None:
    """Import the training code, wait for one job, run it, report, exit."""
    die_with_parent(parent_pid)
    if cpus and hasattr(os, "sched_setaffinity"):
        # Before torch starts its thread pool, so every thread stays on these cores.
        os.sched_setaffinity(0, cpus)
    # A SIGTERM from the server ends the job like a stop request. The handler only flips a
    # flag: taking the Event's lock inside a signal handler can deadlock.
    terminated = False

    def on_sigterm(*_: object) -> None:
        nonlocal terminated
        terminated = True

    signal.signal(signal.SIGTERM, on_sigterm)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logger.remove()
    logger.configure(extra={"task": "(spare)"})
    logger.add(sys.stderr, level=log_level,
               format="{time:YYYY-MM-DD HH:mm:ss} | {level: <7} | worker {extra[task]} | {message}")

    # The imports (torch, transformers) happen while the worker is still a spare, before any job,
    # at low CPU priority so that a task training meanwhile keeps its cores.
    restore_priority = low_until_job(jobs)
    train: Any = None
    import_error: BaseException | None = None
    try:
        train = load_function(training_function)
    except BaseException as error:  # noqa: BLE001 - reported once there is a job to fail
        import_error = error
    try:
        job: TrainingJob = jobs.recv()
    except (EOFError, OSError):
        return  # the server closed the spare without a job
    finally:
        jobs.close()
    restore_priority()  # before the job starts threads of its own, which would inherit a low one
    log = logger.bind(task=job.task_id)
    log.debug("worker {} took the job", os.getpid())

    # Checkpoints are written by a background thread: one lock keeps its messages and the loop's
    # from interleaving on the pipe.
    sending = threading.Lock()

    def report(message: Any) -> None:
        with sending:
            connection.send(message.model_copy(update={"sent_at": time.time()}))

    def interruption() -> Interruption | None:
        if terminated or stop_event.is_set():
            return Interruption.STOP
        return Interruption.PAUSE if pause_event.is_set() else None

    # Whatever the run leaves on disk when it does not complete (a .partial model folder) is the
    # server's to remove: it owns the model store.
    try:
        if import_error is not None:
            raise import_error
        verdict: Completed | Stopped | Paused | Failed = train(job, report, interruption)
    except TrainingStopped:
        verdict = Stopped()
    except TrainingPaused as paused:
        verdict = Paused(epoch=paused.epoch, step=paused.step)
    except BaseException as error:  # noqa: BLE001 - every failure must reach the server as a verdict
        detail = task_error(error)
        verdict = Failed(error=detail.text, detail=detail, expected=isinstance(error, TrainingInputError),
                         traceback="".join(traceback.format_exception(error)))
    try:
        report(verdict)
    except (OSError, ValueError):
        if isinstance(verdict, Failed):
            # The server is gone: the log is the only place left for the traceback.
            log.error("task {} failed: {}\n{}", job.task_id, verdict.error, verdict.traceback)
    finally:
        connection.close()

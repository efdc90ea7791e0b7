"""The worker process's entry point: run one job (training or a prediction job), send its messages,
always end with one verdict.

Imports neither aiohttp nor aiosqlite; torch arrives only through the training and prediction
functions, both imported while the worker is still a spare, so either kind of job starts at once."""

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

from bertd.protocol import (
    Completed,
    Failed,
    Interruption,
    Job,
    Paused,
    PredictionCompleted,
    PredictionJob,
    Stopped,
    TrainingInputError,
    TrainingJob,
    TrainingPaused,
    TrainingStopped,
)
from bertd.training.priority import low_until_job

PR_SET_PDEATHSIG = 1
EXIT_PARENT_GONE = 70
MAX_ERROR_LENGTH = 500


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


def user_message(error: BaseException, doing: str = "training") -> str:
    """One line a user can act on; the traceback goes to the log. `doing`: training or prediction."""
    if isinstance(error, TrainingInputError):
        text = str(error)
    elif type(error).__name__ == "OutOfMemoryError" or "out of memory" in str(error).lower():
        text = ("out of GPU memory; lower hyperparameters.batch_size or max_sequence_length, "
                "or raise gradient_accumulation_steps") if doing == "training" else (
                "out of GPU memory while predicting; run it when no other job uses the GPU")
    elif isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EACCES,
                                                         errno.EROFS):
        where = f" {error.filename}" if error.filename else ""
        text = f"could not write{where}: {error.strerror}; free disk space in DATA_DIR or make it writable"
    elif isinstance(error, MemoryError):
        text = ("out of memory; lower hyperparameters.batch_size or max_sequence_length" if doing == "training"
                else "out of memory while predicting; split the sheet into smaller files")
    else:
        first_line = (str(error).strip().splitlines() or [""])[0]
        text = f"{doing} failed with {type(error).__name__}: {first_line}".rstrip(": ")
    text = " ".join(text.split())
    return text if len(text) <= MAX_ERROR_LENGTH else text[: MAX_ERROR_LENGTH - 3] + "..."


def worker_main(
    jobs: Connection,
    connection: Connection,
    stop_event: Event,
    pause_event: Event,
    training_function: str,
    log_level: str,
    parent_pid: int,
    cpus: tuple[int, ...] | None = None,
    prediction_function: str = "bertd.training.predict_sheet:run_prediction",
) -> None:
    """Import the training and prediction code, wait for one job, run the function for its kind,
    report, exit."""
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
    dotted = {TrainingJob: training_function, PredictionJob: prediction_function}
    functions: dict[type, Any] = {}
    import_errors: dict[type, BaseException] = {}

    def load(kind: type) -> None:
        if kind not in functions and kind not in import_errors:
            try:
                functions[kind] = load_function(dotted[kind])
            except BaseException as error:  # noqa: BLE001 - reported once there is a job to fail
                import_errors[kind] = error

    load(TrainingJob)
    # A spare, still waiting, imports the prediction code too (cheap once torch is in). A worker
    # whose job is already there (started for it) goes straight to it and imports what it needs.
    if not jobs.poll(0):
        load(PredictionJob)
    try:
        job: Job = jobs.recv()
    except (EOFError, OSError):
        return  # the server closed the spare without a job
    finally:
        jobs.close()
    restore_priority()  # before the job starts threads of its own, which would inherit a low one
    predicting = isinstance(job, PredictionJob)
    log = logger.bind(task=job.prediction_id if predicting else job.task_id)
    log.debug("worker {} took the {} job", os.getpid(), "prediction" if predicting else "training")

    # Checkpoints are written by a background thread: one lock keeps its messages and the loop's
    # from interleaving on the pipe.
    sending = threading.Lock()

    def report(message: Any) -> None:
        with sending:
            connection.send(message)

    def interruption() -> Interruption | None:
        if terminated or stop_event.is_set():
            return Interruption.STOP
        return Interruption.PAUSE if pause_event.is_set() else None

    # Whatever the run leaves on disk when it does not complete (a .partial model folder or result
    # file) is the server's to remove: it owns the model and prediction stores.
    kind = type(job)
    load(kind)
    try:
        if kind in import_errors:
            raise import_errors[kind]
        verdict: Completed | PredictionCompleted | Stopped | Paused | Failed = functions[kind](job, report,
                                                                                             interruption)
    except TrainingStopped:
        verdict = Stopped()
    except TrainingPaused as paused:
        verdict = Paused(epoch=paused.epoch, step=paused.step)
    except BaseException as error:  # noqa: BLE001 - every failure must reach the server as a verdict
        verdict = Failed(error=user_message(error, "prediction" if predicting else "training"),
                         expected=isinstance(error, TrainingInputError),
                         traceback="".join(traceback.format_exception(error)))
    try:
        report(verdict)
    except (OSError, ValueError):
        if isinstance(verdict, Failed):
            # The server is gone: the log is the only place left for the traceback.
            log.error("job failed: {}\n{}", verdict.error, verdict.traceback)
    finally:
        connection.close()

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

from bertd.i18n import Text
from bertd.protocol import (
    Completed,
    Failed,
    Interruption,
    Job,
    Paused,
    PredictionCompleted,
    PredictionJob,
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


def task_error(error: BaseException, doing: str = "training") -> TaskError:
    """What a user reads of a failed run (`doing`: training or prediction): what went wrong (short,
    never cut inside a word) and what to do. The traceback of an unexpected error goes to the log."""
    training = doing == "training"
    if isinstance(error, TrainingInputError):
        return error.task_error.model_copy(update={"message": shortened(str(error))})
    if type(error).__name__ == "OutOfMemoryError" or "out of memory" in str(error).lower():
        return TaskError.of("out_of_memory", Text("out of GPU memory"), Text(
            "lower hyperparameters.batch_size or max_sequence_length, or raise gradient_accumulation_steps")
            if training else Text("run it when no other job uses the GPU"))
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EACCES,
                                                       errno.EROFS):
        where = shortened(str(error.filename), MAX_MESSAGE_CHARACTERS // 2) if error.filename else None
        message = (Text("could not write {path}: {reason}", path=where, reason=error.strerror) if where
                   else Text("could not write: {reason}", reason=error.strerror))
        return TaskError.of("disk", message, Text("free disk space in DATA_DIR or make it writable"))
    if isinstance(error, MemoryError):
        return TaskError.of("out_of_memory", Text("out of memory"),
                            Text("lower hyperparameters.batch_size or max_sequence_length") if training
                            else Text("split the sheet into smaller files"))
    first_line = " ".join((str(error).strip().splitlines() or [""])[0].split())
    kind = type(error).__name__
    failed = (Text("training failed with {kind}", kind=kind) if training
              else Text("prediction failed with {kind}", kind=kind))
    # Say less rather than cut: a reason too long to read whole is left to the log.
    if first_line and len(str(failed)) + len(first_line) + 2 <= MAX_MESSAGE_CHARACTERS:
        failed = (Text("training failed with {kind}: {reason}", kind=kind, reason=first_line) if training
                  else Text("prediction failed with {kind}: {reason}", kind=kind, reason=first_line))
    return TaskError.of(f"{doing}_error", failed, Text(
        "the server log has the traceback under this job's id; if it happens again, report it"))


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
            connection.send(message.model_copy(update={"sent_at": time.time()}))

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
        detail = task_error(error, "prediction" if predicting else "training")
        verdict = Failed(error=detail.text, detail=detail, expected=isinstance(error, TrainingInputError),
                         traceback="".join(traceback.format_exception(error)))
    try:
        report(verdict)
    except (OSError, ValueError):
        if isinstance(verdict, Failed):
            # The server is gone: the log is the only place left for the traceback.
            log.error("job failed: {}\n{}", verdict.error, verdict.traceback)
    finally:
        connection.close()
    # The verdict is sent and every file of the job is closed. The interpreter's teardown with torch
    # loaded takes a second or more, and the server ends the run (and frees its slot) only once the
    # process has exited: skip it.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)

"""A worker does its imports at the lowest CPU priority until its job arrives.

The spare worker that follows a task spends seconds of CPU importing torch and transformers while
that task trains: on a 2-core box it took about 15 % of the task's training speed (BENCHMARKS.md).
At nice 19 the imports use only what training leaves idle; the moment a job is readable on the
spare's pipe, a watcher thread puts every thread of the process back at the server's priority, so
the job never runs (or finishes its imports) at the low one.

Linux keeps a nice value per thread, and going back up needs CAP_SYS_NICE or a high enough
RLIMIT_NICE. Where that is not allowed (probed on a throw-away thread first), nothing changes."""

from __future__ import annotations

import os
import select
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection

from loguru import logger

IMPORT_NICE = 19


def _set_thread_nice(thread_id: int, nice: int) -> None:
    os.setpriority(os.PRIO_PROCESS, thread_id, nice)


def _thread_ids() -> list[int]:
    return [int(name) for name in os.listdir("/proc/self/task")]


def thread_nice_values() -> dict[int, int]:
    """Nice value of each thread of this process (Linux)."""
    values = {}
    for thread_id in _thread_ids():
        try:
            values[thread_id] = os.getpriority(os.PRIO_PROCESS, thread_id)
        except (ProcessLookupError, PermissionError):
            continue  # the thread ended
    return values


def can_raise_priority(nice: int) -> bool:
    """Whether a thread of this process may go back to `nice` after being lowered: try it on a
    thread that exists only for the probe."""
    allowed: list[bool] = []

    def probe() -> None:
        me = threading.get_native_id()
        try:
            _set_thread_nice(me, min(nice + 1, IMPORT_NICE))
            _set_thread_nice(me, nice)
            allowed.append(True)
        except PermissionError:
            allowed.append(False)

    thread = threading.Thread(target=probe, name="nice-probe")
    thread.start()
    thread.join()
    return allowed == [True]


def restore(nice: int) -> None:
    for thread_id in _thread_ids():
        try:
            _set_thread_nice(thread_id, nice)
        except ProcessLookupError:
            continue
        except PermissionError:
            logger.warning("could not restore the worker's CPU priority to nice {}", nice)
            return


def low_until_job(jobs: Connection) -> Callable[[], None]:
    """Lower this (main) thread to IMPORT_NICE now; restore every thread as soon as `jobs` has
    data or is closed. Returns the restore, for the main thread to call (again) once it holds the
    job, before training starts any thread of its own. Does nothing where nice values are not per
    thread or cannot be raised again."""
    if not os.path.isdir("/proc/self/task") or not hasattr(os, "setpriority"):
        return lambda: None
    base = os.getpriority(os.PRIO_PROCESS, 0)
    if base >= IMPORT_NICE or not can_raise_priority(base):
        return lambda: None

    def restore_when_job_arrives() -> None:
        try:
            select.select([jobs.fileno()], [], [])
        except (OSError, ValueError):
            pass  # the pipe was closed under us: restore anyway
        restore(base)

    # Started before the main thread is lowered, so it wakes at the server's priority.
    threading.Thread(target=restore_when_job_arrives, name="restore-priority", daemon=True).start()
    _set_thread_nice(threading.get_native_id(), IMPORT_NICE)
    return lambda: restore(base)

"""Checkpoints: everything a run needs to continue exactly where it was.

A checkpoint holds the weights that train, the optimiser, learning-rate schedule and gradient-scaler
states, every random generator in use (torch's, the NumPy dropout masks', the batch order's,
Python's), the position in the data (epoch and batches done, with the epoch's running sums), and
the loop's history and best-so-far record. Restored into a freshly prepared run, it continues with
the same numbers an uninterrupted run would have produced.

On disk, one folder per checkpoint under the task's checkpoint folder, `step-<step>/`: written as
`step-<step>.tmp/`, fsynced, renamed, and only then are older ones removed; so a crash at any
moment leaves at least one complete checkpoint, and a half-written one is never read. The tensors
are copied to CPU memory at once; writing happens in a background thread while training goes on."""

from __future__ import annotations

import copy
import errno
import json
import os
import random
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from loguru import logger

from bertd.protocol import CheckpointFailed, CheckpointReport, Report
from bertd.training.cpu_dropout import dropout_generator

STATE_FILE = "state.pt"
META_FILE = "checkpoint.json"
PREFIX = "step-"
DISK_ERRORS = (errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EROFS, errno.EACCES)


@dataclass(frozen=True)
class Position:
    """Where in the data a checkpoint was taken."""

    epoch: int  # the epoch in progress, from 1
    batches_done: int  # batches of that epoch already trained
    epoch_complete: bool  # the epoch is over, its evaluation included


def cpu_copy(value: Any) -> Any:
    """A deep copy with every tensor on the CPU (detached from what training goes on changing)."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {key: cpu_copy(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(cpu_copy(item) for item in value)
    return copy.deepcopy(value)


def trained_weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The weights training changes (with LoRA, the adapters and the head) and the buffers."""
    changing = {name for name, parameter in model.named_parameters() if parameter.requires_grad}
    changing.update(name for name, _ in model.named_buffers())
    return {name: tensor for name, tensor in model.state_dict().items() if name in changing}


def random_states(model: torch.nn.Module, batch_order: Any) -> dict[str, Any]:
    dropout = dropout_generator(model)
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        "python": random.getstate(),
        "batch_order": batch_order.bit_generator.state,
        "numpy_dropout": dropout.bit_generator.state if dropout is not None else None,
    }


def restore_random_states(states: dict[str, Any], model: torch.nn.Module, batch_order: Any) -> None:
    torch.set_rng_state(states["torch"])
    if states["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    random.setstate(states["python"])
    batch_order.bit_generator.state = states["batch_order"]
    dropout = dropout_generator(model)
    if dropout is not None and states["numpy_dropout"] is not None:
        dropout.bit_generator.state = states["numpy_dropout"]


def _fsync(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def write(directory: Path, step: int, payload: dict[str, Any], meta: dict[str, Any]) -> tuple[Path, int]:
    """Write one checkpoint atomically and remove the older ones; (its folder, bytes written)."""
    directory.mkdir(parents=True, exist_ok=True)
    final = directory / f"{PREFIX}{step:09d}"
    temporary = directory / f"{final.name}.tmp"
    shutil.rmtree(temporary, ignore_errors=True)
    temporary.mkdir()
    try:
        # Through a Python file: torch then raises the OSError (a full disk, say) as the context of
        # its own RuntimeError, where `underlying_os_error` finds it.
        with (temporary / STATE_FILE).open("wb") as handle:
            torch.save(payload, handle)
        (temporary / META_FILE).write_text(json.dumps(meta), encoding="utf-8")
        for name in (STATE_FILE, META_FILE):
            _fsync(temporary / name)
        shutil.rmtree(final, ignore_errors=True)
        temporary.rename(final)
        _fsync(directory)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    for older in directory.glob(f"{PREFIX}*"):
        if older != final:
            shutil.rmtree(older, ignore_errors=True)
    size = sum(path.stat().st_size for path in final.iterdir())
    return final, size


def underlying_os_error(error: BaseException) -> OSError | None:
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, OSError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def load_latest(directory: Path) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """(payload, meta) of the newest complete checkpoint that reads back whole; None if there is none.
    Folders still being written (`.tmp`) are never read; an unreadable one gives way to an older one."""
    if not directory.is_dir():
        return None
    candidates = sorted((path for path in directory.glob(f"{PREFIX}*") if not path.name.endswith(".tmp")),
                        reverse=True)
    for folder in candidates:
        try:
            meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
            payload = torch.load(folder / STATE_FILE, map_location="cpu", weights_only=True)
        except Exception:  # noqa: BLE001 - a damaged checkpoint is skipped for an older one, whatever the damage
            continue
        return payload, meta
    return None


class CheckpointWriter:
    """Writes checkpoints one at a time in a background thread. A checkpoint the disk cannot hold
    is dropped with a warning, and training goes on without it."""

    def __init__(self, directory: Path, report: Report) -> None:
        self._directory = directory
        self._report = report
        self._thread: threading.Thread | None = None
        self.last_error: OSError | None = None

    def submit(self, step: int, epoch: int, payload: dict[str, Any], meta: dict[str, Any]) -> None:
        self.wait()  # one at a time: a slow disk must not pile up copies of the model in memory
        self._thread = threading.Thread(target=self._write, args=(step, epoch, payload, meta),
                                        name=f"checkpoint-{step}", daemon=True)
        self._thread.start()

    def wait(self) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _write(self, step: int, epoch: int, payload: dict[str, Any], meta: dict[str, Any]) -> None:
        started = time.perf_counter()
        try:
            folder, size = write(self._directory, step, payload, meta)
        except Exception as error:  # noqa: BLE001 - a checkpoint that fails must not end the training
            cause = underlying_os_error(error)
            if cause is not None and cause.errno in DISK_ERRORS and cause.strerror:
                reason = cause.strerror
            else:
                logger.opt(exception=error).warning("checkpoint of step {} failed", step)
                reason = f"{type(cause or error).__name__}: {cause or error}"
            self.last_error = cause or OSError(str(error))
            self._report(CheckpointFailed(epoch=epoch, step=step, reason=reason))
            return
        self.last_error = None
        self._report(CheckpointReport(epoch=epoch, step=step, size_bytes=size, seconds=round(time.perf_counter()
                                      - started, 3), path=str(folder)))

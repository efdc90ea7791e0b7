"""A run's checkpoints: taking them from the loop's state, and continuing from the newest one.

The loop calls `save` at the end of every epoch and after every mid-epoch evaluation, `pause` when
the server asks for a checkpoint and an end, and `resume` once before its first step."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loguru import logger

from bertd.protocol import Report, ResumedReport, TrainingPaused, TrainingStopped
from bertd.training import checkpoint
from bertd.training.checkpoint import Position
from bertd.training.loop_state import EpochSums, LoopState
from bertd.training.setup import Setup


@dataclass(frozen=True)
class Start:
    """Where the loop begins: the first epoch to train, and within it what a mid-epoch checkpoint
    left (the batch order's state before the epoch was drawn, batches done, running sums)."""

    epoch: int = 1
    batches_done: int = 0
    epoch_order: dict[str, Any] | None = None
    sums: EpochSums | None = None


class Checkpoints:
    def __init__(self, setup: Setup, state: LoopState, report: Report) -> None:
        self._setup = setup
        self._state = state
        self._report = report
        directory = setup.job.checkpoint_dir
        self._directory = Path(directory) if directory else None
        self._writer = checkpoint.CheckpointWriter(self._directory, report) if self._directory else None

    # ---- taking one --------------------------------------------------------------------------

    def _payload(self, position: Position, sums: EpochSums | None, epoch_order: dict[str, Any] | None
                 ) -> dict[str, Any]:
        setup, state = self._setup, self._state
        # Weights change only at optimiser steps: a best entry of this step holds the current weights.
        best_is_current = state.best.entry is not None and state.best.entry["step"] == state.step
        payload = {
            "position": {"epoch": position.epoch, "batches_done": position.batches_done,
                         "epoch_complete": position.epoch_complete},
            "weights": checkpoint.trained_weights(setup.model),
            "optimizer": setup.optimizer.state_dict(),
            "scheduler": setup.scheduler.state_dict(),
            "grad_scaler": setup.grad_scaler.state_dict(),
            "random": checkpoint.random_states(setup.model, setup.batch_order),
            "epoch_order": epoch_order,
            "epoch_sums": None if sums is None else {"loss_sum": sums.loss_sum, "correct": sums.correct,
                                                     "samples": sums.samples, "seconds": sums.seconds()},
            "loop": {"step": state.step, "samples_seen": state.samples_seen,
                     "training_seconds": state.training_seconds, "history": state.history,
                     "best_entry": state.best.entry, "best_watch": state.best_watch,
                     "epochs_without_improvement": state.epochs_without_improvement},
            # The best weights are the current ones right after an improvement: not stored twice.
            "best_is_current": best_is_current,
            "best_state": None if best_is_current else state.best.state,
        }
        return checkpoint.cpu_copy(payload)

    def save(self, position: Position, sums: EpochSums | None = None,
             epoch_order: dict[str, Any] | None = None) -> None:
        """Copy the state now; write it in the background."""
        if self._writer is None:
            return
        meta = {"epoch": position.epoch, "step": self._state.step, "epoch_complete": position.epoch_complete,
                "task_id": self._setup.job.task_id, "at": time.time()}
        self._writer.submit(self._state.step, position.epoch, self._payload(position, sums, epoch_order), meta)

    def pause(self, position: Position, sums: EpochSums, epoch_order: dict[str, Any]
              ) -> TrainingPaused | TrainingStopped:
        """Write a checkpoint here and wait for it: the exception that ends the run as paused. If
        the disk cannot hold it, an earlier complete checkpoint still serves (some steps are then
        done again); without any, the run can only stop."""
        if self._writer is None or self._directory is None:
            return TrainingStopped()
        self.save(position, sums, epoch_order)
        self._writer.wait()
        if self._writer.last_error is None:
            return TrainingPaused(position.epoch, self._state.step)
        found = checkpoint.load_latest(self._directory)
        if found is not None:
            return TrainingPaused(found[1]["epoch"], found[1]["step"])
        return TrainingStopped()

    def finish(self) -> None:
        """Wait for a checkpoint still being written (before the process reports its end)."""
        if self._writer is not None:
            self._writer.wait()

    # ---- continuing from one -----------------------------------------------------------------

    def resume(self) -> Start:
        """Restore the newest complete checkpoint into the prepared run, or start at the beginning."""
        found = checkpoint.load_latest(self._directory) if self._directory else None
        if found is None:
            return Start()
        payload, meta = found
        setup, state = self._setup, self._state
        unexpected = setup.model.load_state_dict(payload["weights"], strict=False).unexpected_keys
        if unexpected:
            logger.warning("task {}: the checkpoint does not fit the model ({} unexpected weights); starting over",
                           setup.job.task_id, len(unexpected))
            return Start()
        setup.optimizer.load_state_dict(payload["optimizer"])
        setup.scheduler.load_state_dict(payload["scheduler"])
        setup.grad_scaler.load_state_dict(payload["grad_scaler"])
        checkpoint.restore_random_states(payload["random"], setup.model, setup.batch_order)
        loop = payload["loop"]
        state.step, state.samples_seen = loop["step"], loop["samples_seen"]
        state.training_seconds, state.history = loop["training_seconds"], loop["history"]
        state.best_watch, state.epochs_without_improvement = loop["best_watch"], loop["epochs_without_improvement"]
        state.best.entry = loop["best_entry"]
        state.best.state = (checkpoint.cpu_copy(payload["weights"]) if payload["best_is_current"]
                            else payload["best_state"])
        position = Position(**payload["position"])
        self._report(ResumedReport(epoch=position.epoch, step=state.step, epoch_complete=position.epoch_complete))
        logger.info("task {} continues from its checkpoint of epoch {}, step {}", setup.job.task_id, position.epoch,
                    state.step)
        if position.epoch_complete:
            return Start(epoch=position.epoch + 1)
        sums = payload["epoch_sums"]
        device = setup.device
        return Start(epoch=position.epoch, batches_done=position.batches_done, epoch_order=payload["epoch_order"],
                     sums=EpochSums(sums["loss_sum"].to(device), sums["correct"].to(device), sums["samples"],
                                    started=time.perf_counter() - sums["seconds"]))

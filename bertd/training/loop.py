"""The training loop: prepare (or continue from a checkpoint), then epochs of steps with evaluations
and checkpoints, then save the best.

Runs inside a worker process and reads top to bottom like nanoGPT's train.py. Progress goes out
through `report`; `should_stop` is polled every step: a stop ends the run, a pause ends it after a
checkpoint (at an optimiser-step boundary, so no half-accumulated gradient is lost)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from bertd.i18n import Text
from bertd.protocol import (
    Completed,
    EpochReport,
    EvaluationReport,
    Interruption,
    Phase,
    ProgressReport,
    Report,
    ShouldStop,
    TrainingJob,
    TrainingStopped,
    WarningReport,
)
from bertd.training.batching import epoch_batches, make_batch
from bertd.training.checkpoint import Position
from bertd.training.evaluation import evaluate, metric_value
from bertd.training.loop_state import EpochSums, LoopState
from bertd.training.resume import Checkpoints, Start
from bertd.training.saving import save_model
from bertd.training.setup import Setup, prepare


def run_training(job: TrainingJob, report: Report, should_stop: ShouldStop) -> Completed:
    setup = prepare(job, report)
    state = LoopState()
    checkpoints = Checkpoints(setup, state, report)
    try:
        start = checkpoints.resume()
        for epoch in range(start.epoch, setup.hp.epochs + 1):
            train_epoch(setup, state, epoch, report, should_stop, checkpoints,
                        start if epoch == start.epoch else Start(epoch))
            stop_early = end_epoch(setup, state, epoch, report)
            if stop_early:
                break
            if epoch < setup.hp.epochs:
                checkpoints.save(Position(epoch, batches_done=0, epoch_complete=True))
        if should_stop() == Interruption.STOP:
            raise TrainingStopped()
        report(ProgressReport(phase=Phase.SAVING))
        return finish(setup, state)
    finally:
        checkpoints.finish()


def train_epoch(setup: Setup, state: LoopState, epoch: int, report: Report, should_stop: ShouldStop,
                checkpoints: Checkpoints, start: Start) -> None:
    hp, model, device = setup.hp, setup.model, setup.device
    rows = len(setup.train_split)
    model.train()
    # The batch order's state before this epoch's batches are drawn: a mid-epoch checkpoint keeps
    # it, and a resume draws the same batches again from it.
    if start.epoch_order is not None:
        setup.batch_order.bit_generator.state = start.epoch_order
    epoch_order = setup.batch_order.bit_generator.state
    batches = epoch_batches(setup.train_split.lengths(), hp.batch_size, setup.batch_order)
    sums = start.sums or EpochSums.zero(device)
    last_report = 0.0
    for batch_index in range(start.batches_done, len(batches)):
        interruption = should_stop()
        if interruption == Interruption.STOP:
            raise TrainingStopped()
        if interruption == Interruption.PAUSE and batch_index % hp.gradient_accumulation_steps == 0:
            raise checkpoints.pause(Position(epoch, batch_index, epoch_complete=False), sums, epoch_order)
        indices = batches[batch_index]
        batch = make_batch(setup.train_split, indices, setup.pad_id, device)
        with torch.autocast(device.type, dtype=setup.autocast_dtype or torch.float32,
                            enabled=setup.autocast_dtype is not None):
            logits = setup.forward(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        loss = torch.nn.functional.cross_entropy(logits.float(), batch["labels"], weight=setup.class_weights)
        setup.grad_scaler.scale(loss / hp.gradient_accumulation_steps).backward()
        sums.loss_sum += loss.detach() * len(indices)
        sums.correct += (logits.detach().argmax(dim=-1) == batch["labels"]).sum()
        sums.samples += len(indices)
        state.samples_seen += len(indices)
        last_of_epoch = batch_index == len(batches) - 1
        if (batch_index + 1) % hp.gradient_accumulation_steps == 0 or last_of_epoch:
            optimiser_step(setup)
            state.step += 1
            if hp.evaluation_steps and state.step % hp.evaluation_steps == 0 and not last_of_epoch:
                paused = time.perf_counter()
                evaluate_mid_epoch(setup, state, epoch, report)
                model.train()
                # Evaluation time is not training time: keep samples/s and the ETA honest.
                sums.started += time.perf_counter() - paused
                checkpoints.save(Position(epoch, batch_index + 1, epoch_complete=False), sums, epoch_order)
        now = time.perf_counter()
        if now - last_report >= setup.job.report_interval or last_of_epoch:
            last_report = now
            speed = state.speed(sums.seconds())
            remaining_samples = (hp.epochs - epoch) * rows + (rows - sums.samples)
            report(ProgressReport(
                phase=Phase.TRAINING,
                current_epoch=epoch,
                total_epochs=hp.epochs,
                step=state.step,
                total_steps=setup.total_steps,
                progress_percentage=round(100.0 * state.step / setup.total_steps, 2),
                train_loss=float(sums.loss_sum.item() / sums.samples),
                train_accuracy=float(sums.correct.item() / sums.samples),
                learning_rate=setup.scheduler.get_last_lr()[0],
                samples_per_second=round(speed, 2) if speed else None,
                eta_seconds=round(remaining_samples / speed, 1) if speed else None,
            ))
    state.training_seconds += sums.seconds()
    state.history.append({"epoch": epoch, "step": state.step,
                          "train_loss": float(sums.loss_sum.item() / max(1, sums.samples)),
                          "train_accuracy": float(sums.correct.item() / max(1, sums.samples))})


def optimiser_step(setup: Setup) -> None:
    if setup.hp.max_grad_norm > 0:
        setup.grad_scaler.unscale_(setup.optimizer)
        torch.nn.utils.clip_grad_norm_(setup.model.parameters(), setup.hp.max_grad_norm)
    setup.grad_scaler.step(setup.optimizer)
    setup.grad_scaler.update()
    setup.optimizer.zero_grad(set_to_none=True)
    setup.scheduler.step()


def evaluate_now(setup: Setup) -> dict[str, Any]:
    return evaluate(setup.model, setup.validation_split, setup.hp.batch_size * 2, setup.pad_id, setup.device,
                    setup.autocast_dtype, setup.label_names)


def evaluate_mid_epoch(setup: Setup, state: LoopState, epoch: int, report: Report) -> None:
    if not len(setup.validation_split):
        return  # train_val_split 0 without a validation file: nothing to evaluate on
    evaluation = evaluate_now(setup)
    entry = {"epoch": epoch, "step": state.step, "val_loss": evaluation["loss"],
             "val_accuracy": evaluation["accuracy"], "val_macro_f1": evaluation["macro_f1"]}
    state.history.append(entry)
    report(EvaluationReport(**entry, is_best=state.best.offer(entry, evaluation, setup.model)))


def end_epoch(setup: Setup, state: LoopState, epoch: int, report: Report) -> bool:
    """Evaluate the epoch, report it, and say whether early stopping ends training here."""
    hp = setup.hp
    if not len(setup.validation_split):
        return end_epoch_without_validation(setup, state, epoch, report)
    report(ProgressReport(phase=Phase.EVALUATING, current_epoch=epoch))
    evaluation = evaluate_now(setup)
    # train_epoch left the epoch's training figures as the last history entry; complete it.
    entry = state.history[-1]
    entry.update(val_loss=evaluation["loss"], val_accuracy=evaluation["accuracy"],
                 val_macro_f1=evaluation["macro_f1"])
    is_best = state.best.offer(entry, evaluation, setup.model)
    speed = state.speed()
    report(EpochReport(**entry, total_epochs=hp.epochs, is_best=is_best, per_class=evaluation["per_class"],
                       confusion_matrix=evaluation["confusion_matrix"],
                       samples_per_second=round(speed, 2) if speed else None))
    if not hp.early_stopping_enabled:
        return False
    watched = metric_value(evaluation, hp.early_stopping_metric)
    if watched > state.best_watch + hp.early_stopping_min_delta:
        state.best_watch = watched
        state.epochs_without_improvement = 0
        return False
    state.epochs_without_improvement += 1
    if state.epochs_without_improvement >= hp.early_stopping_patience and epoch < hp.epochs:
        report(WarningReport.of(Text("early stopping after epoch {epoch}: {metric} did not improve for {epochs} "
                                     "epoch(s)", epoch=epoch, metric=hp.early_stopping_metric,
                                     epochs=state.epochs_without_improvement)))
        return True
    return False


def end_epoch_without_validation(setup: Setup, state: LoopState, epoch: int, report: Report) -> bool:
    """train_val_split 0 without a validation file: the epoch's training figures only; every epoch
    is the latest, and the last one is what gets saved."""
    entry = state.history[-1]
    entry.update(val_loss=None, val_accuracy=None, val_macro_f1=None)
    speed = state.speed()
    report(EpochReport(**entry, total_epochs=setup.hp.epochs, is_best=True,
                       samples_per_second=round(speed, 2) if speed else None))
    return False


def finish(setup: Setup, state: LoopState) -> Completed:
    best = state.best
    validated = len(setup.validation_split) > 0
    if not validated:
        best.keep_last(state.history[-1], setup.model)
    assert best.entry is not None and best.state is not None
    speed = state.speed()
    metrics = {
        "best_epoch": best.entry["epoch"],
        "best_step": best.entry["step"],
        "val_accuracy": best.entry["val_accuracy"],
        "val_macro_f1": best.entry["val_macro_f1"],
        "val_loss": best.entry["val_loss"],
        "per_class": best.entry["per_class"],
        "confusion_matrix": best.entry["confusion_matrix"],
        "labels": setup.label_names,
        "history": state.history,
        "train_rows": len(setup.train_split),
        "validation_rows": len(setup.validation_split),
        # How the saved epoch was chosen: by validation macro-F1, or the last one when nothing was held out.
        "model_selection": "best_validation_macro_f1" if validated else "last_epoch",
        "samples_per_second": round(speed, 2) if speed else None,
        "training_seconds": round(state.training_seconds, 3),
        "device": str(setup.device),
        "precision": str(setup.autocast_dtype).removeprefix("torch.") if setup.autocast_dtype else "fp32",
        "compiled": setup.compiled,
        "class_weights": setup.class_weights.tolist() if setup.class_weights is not None else None,
        "lora": setup.hp.lora.enabled,
        "trainable_parameters": setup.trainable_parameters,
        "total_parameters": setup.total_parameters,
    }
    artifacts = save_model(setup.model, setup.tokenizer, best.state, setup.label_names, metrics,
                           Path(setup.job.output_dir))
    return Completed(metrics=metrics, artifacts=artifacts)

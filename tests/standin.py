"""Fast stand-ins for the training and prediction functions, for scheduler cases. They run in real worker
processes and speak the real message protocol; only the model work is left out."""

from __future__ import annotations

import os
import time
from pathlib import Path

from bertd.protocol import (
    Artifacts,
    Completed,
    EpochReport,
    Phase,
    PredictionCompleted,
    PredictionJob,
    PredictionPhase,
    PredictionProgress,
    ProgressReport,
    Report,
    ShouldStop,
    TrainingJob,
    TrainingStopped,
    WarningReport,
)

STEPS = 20
METRICS = {"best_epoch": 1, "val_accuracy": 1.0, "val_macro_f1": 1.0, "history": []}


def steady(job: TrainingJob, report: Report, should_stop: ShouldStop) -> Completed:
    """20 steps of `step_seconds` (hyperparameter random_seed doubles as milliseconds per step)."""
    step_seconds = job.hyperparameters.random_seed / 1000
    for step in range(1, STEPS + 1):
        if should_stop():
            raise TrainingStopped()
        time.sleep(step_seconds)
        report(ProgressReport(phase=Phase.TRAINING, current_epoch=1, total_epochs=1, step=step, total_steps=STEPS,
                              progress_percentage=100.0 * step / STEPS, train_loss=1.0 / step))
    report(EpochReport(epoch=1, total_epochs=1, step=STEPS, train_loss=0.1, train_accuracy=1.0, val_loss=0.1,
                       val_accuracy=1.0, val_macro_f1=1.0, is_best=True))
    output = Path(job.output_dir)
    output.mkdir(parents=True)
    (output / "marker.txt").write_text("stand-in model", encoding="utf-8")
    (output / "config.json").write_text("{}", encoding="utf-8")  # what a model folder must have
    return Completed(metrics=METRICS, artifacts=Artifacts(model_path=str(output)))


def narrated(job: TrainingJob, report: Report, should_stop: ShouldStop) -> Completed:
    """Like steady, with a warning at every step: a stream of events whose order a test can check."""
    step_seconds = job.hyperparameters.random_seed / 1000
    for step in range(1, STEPS + 1):
        if should_stop():
            raise TrainingStopped()
        time.sleep(step_seconds)
        report(WarningReport(message=f"step {step}"))
        report(ProgressReport(phase=Phase.TRAINING, step=step, total_steps=STEPS,
                              progress_percentage=100.0 * step / STEPS))
    output = Path(job.output_dir)
    output.mkdir(parents=True)
    (output / "config.json").write_text("{}", encoding="utf-8")
    return Completed(metrics=METRICS, artifacts=Artifacts(model_path=str(output)))


def stubborn(job: TrainingJob, report: Report, should_stop: ShouldStop) -> Completed:
    """Never looks at the stop flag and ignores SIGTERM's flag: only SIGKILL ends it."""
    report(ProgressReport(phase=Phase.TRAINING, step=1, total_steps=1000))
    while True:
        time.sleep(0.05)


def crashing(job: TrainingJob, report: Report, should_stop: ShouldStop) -> Completed:
    """Dies without a verdict, as a segfault or the OOM killer would leave it."""
    import os

    report(ProgressReport(phase=Phase.TRAINING, step=1, total_steps=10))
    os._exit(3)


def chatty(job: TrainingJob, report: Report, should_stop: ShouldStop) -> Completed:
    """Floods the channel: `random_seed` epoch messages of about 16 KB each, as fast as it can."""
    padding = {f"类别{i}": {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": i} for i in range(250)}
    epochs = job.hyperparameters.random_seed
    for epoch in range(1, epochs + 1):
        if should_stop():
            raise TrainingStopped()
        report(EpochReport(epoch=epoch, total_epochs=epochs, step=epoch, train_loss=0.1, train_accuracy=1.0,
                           val_loss=0.1, val_accuracy=1.0, val_macro_f1=1.0, is_best=False, per_class=padding))
        if epoch % 50 == 0:
            time.sleep(0.01)
    return Completed(metrics=METRICS, artifacts=None)


def affinity(job: TrainingJob, report: Report, should_stop: ShouldStop) -> Completed:
    """Reports the CPUs it may run on, then completes."""
    import os

    report(WarningReport(message=f"cpus={sorted(os.sched_getaffinity(0))} threads={job.cpu_threads}"))
    return Completed(metrics=METRICS, artifacts=None)


def priority(job: TrainingJob, report: Report, should_stop: ShouldStop) -> Completed:
    """Reports the nice values of its threads (one started by the job itself included)."""
    import threading

    from bertd.training.priority import thread_nice_values

    started = threading.Event()
    release = threading.Event()

    def job_thread() -> None:
        started.set()
        release.wait()

    thread = threading.Thread(target=job_thread)
    thread.start()
    started.wait()
    report(WarningReport(message=f"nice={sorted(set(thread_nice_values().values()))}"))
    release.set()
    thread.join()
    return Completed(metrics=METRICS, artifacts=None)


LABELS = ["工业废气", "扬尘", "油烟"]


def with_model(job: TrainingJob, report: Report, should_stop: ShouldStop) -> Completed:
    """As `steady`, then a model folder the API accepts as one (a config.json) and three labels, for
    prediction jobs that `slow_prediction` runs."""
    steady(job, report, should_stop)
    output = Path(job.output_dir)
    (output / "config.json").write_text("{}", encoding="utf-8")
    return Completed(metrics={**METRICS, "labels": LABELS}, artifacts=Artifacts(model_path=str(output)))


def slow_prediction(job: PredictionJob, report: Report, should_stop: ShouldStop) -> PredictionCompleted:
    """40 steps of 50 ms, polling the stop flag, then a one-line result file where the real one goes."""
    total = 40
    for step in range(1, total + 1):
        if should_stop():
            raise TrainingStopped()
        time.sleep(0.05)
        report(PredictionProgress(phase=PredictionPhase.PREDICTING, rows_done=step, rows_total=total,
                                  rows_per_second=20.0))
    output = Path(job.output_path)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text("stand-in result", encoding="utf-8")
    return PredictionCompleted(rows_total=total, rows_empty=0, label_counts={LABELS[0]: total},
                               columns=["predicted_label", "predicted_score"], output_path=str(output), seconds=2.0)


def dying_prediction(job: PredictionJob, report: Report, should_stop: ShouldStop) -> PredictionCompleted:
    """The worker process dies at once (as one killed for memory would)."""
    os._exit(3)

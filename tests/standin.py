"""Fast stand-ins for the training function, for scheduler cases. They run in real worker
processes and speak the real message protocol; only the model work is left out."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bertd.job import Report, ShouldStop, TrainingJob, TrainingStopped

STEPS = 20


def steady(job: TrainingJob, report: Report, should_stop: ShouldStop) -> dict[str, Any]:
    """20 steps of `step_seconds` (hyperparameter random_seed doubles as milliseconds per step)."""
    step_seconds = job.hyperparameters["random_seed"] / 1000
    for step in range(1, STEPS + 1):
        if should_stop():
            raise TrainingStopped()
        time.sleep(step_seconds)
        report({"type": "progress", "phase": "training", "current_epoch": 1, "total_epochs": 1, "step": step,
                "total_steps": STEPS, "progress_percentage": 100.0 * step / STEPS, "train_loss": 1.0 / step})
    report({"type": "epoch", "epoch": 1, "total_epochs": 1, "train_loss": 0.1, "train_accuracy": 1.0,
            "val_loss": 0.1, "val_accuracy": 1.0, "val_macro_f1": 1.0, "is_best": True})
    output = Path(job.output_dir)
    output.mkdir(parents=True)
    (output / "marker.txt").write_text("stand-in model", encoding="utf-8")
    return {"metrics": {"best_epoch": 1, "val_accuracy": 1.0, "val_macro_f1": 1.0, "history": []},
            "artifacts": {"model_path": str(output)}}


def stubborn(job: TrainingJob, report: Report, should_stop: ShouldStop) -> dict[str, Any]:
    """Never looks at the stop flag and ignores SIGTERM's flag: only SIGKILL ends it."""
    report({"type": "progress", "phase": "training", "step": 1, "total_steps": 1000})
    while True:
        time.sleep(0.05)


def crashing(job: TrainingJob, report: Report, should_stop: ShouldStop) -> dict[str, Any]:
    """Dies without a verdict, as a segfault or the OOM killer would leave it."""
    import os

    report({"type": "progress", "phase": "training", "step": 1, "total_steps": 10})
    os._exit(3)


def chatty(job: TrainingJob, report: Report, should_stop: ShouldStop) -> dict[str, Any]:
    """Floods the channel: `random_seed` epoch messages of about 16 KB each, as fast as it can."""
    padding = {f"类别{i}": {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": i} for i in range(250)}
    for epoch in range(1, job.hyperparameters["random_seed"] + 1):
        if should_stop():
            raise TrainingStopped()
        report({"type": "epoch", "epoch": epoch, "total_epochs": job.hyperparameters["random_seed"],
                "train_loss": 0.1, "train_accuracy": 1.0, "val_loss": 0.1, "val_accuracy": 1.0,
                "val_macro_f1": 1.0, "is_best": False, "per_class": padding})
        if epoch % 50 == 0:
            time.sleep(0.01)
    return {"metrics": {"best_epoch": 1, "val_accuracy": 1.0, "val_macro_f1": 1.0, "history": []},
            "artifacts": None}


def affinity(job: TrainingJob, report: Report, should_stop: ShouldStop) -> dict[str, Any]:
    """Reports the CPUs it may run on, then completes."""
    import os

    report({"type": "warning", "message": f"cpus={sorted(os.sched_getaffinity(0))} threads={job.cpu_threads}"})
    return {"metrics": {"best_epoch": 1, "val_accuracy": 1.0, "val_macro_f1": 1.0, "history": []},
            "artifacts": None}


def priority(job: TrainingJob, report: Report, should_stop: ShouldStop) -> dict[str, Any]:
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
    report({"type": "warning", "message": f"nice={sorted(set(thread_nice_values().values()))}"})
    release.set()
    thread.join()
    return {"metrics": {"best_epoch": 1, "val_accuracy": 1.0, "val_macro_f1": 1.0, "history": []},
            "artifacts": None}

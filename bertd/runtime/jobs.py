"""What a claimed task becomes for the executor: the job, with every path and setting it needs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bertd.protocol import TrainingJob
from bertd.state.records import TaskRecord


@dataclass(frozen=True)
class JobSettings:
    uploads_dir: Path
    base_models_dir: Path
    models_dir: Path
    # None: runs write no checkpoints.
    checkpoints_dir: Path | None
    # Seconds between two progress reports of a worker (epoch ends always report).
    report_interval: float
    # torch threads per task on the CPU: the cores shared among the slots.
    cpu_threads: int

    def job_for(self, task: TaskRecord, device: str | None) -> TrainingJob:
        return TrainingJob(
            task_id=task.task_id,
            training_data_path=str(self.uploads_dir / task.training_data_file),
            validation_data_path=(str(self.uploads_dir / task.validation_data_file)
                                  if task.validation_data_file else None),
            base_model=task.base_model,
            base_models_dir=str(self.base_models_dir),
            output_dir=str(self.models_dir / task.task_id),
            hyperparameters=task.hyperparameters,
            report_interval=self.report_interval,
            cpu_threads=self.cpu_threads,
            device=device,
            checkpoint_dir=str(self.checkpoints_dir / task.task_id) if self.checkpoints_dir else None,
        )

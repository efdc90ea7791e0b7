"""What a claimed task or prediction job becomes for the executor: the job, with every path and
setting it needs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bertd.protocol import PredictionJob, TrainingJob
from bertd.state.records import PredictionRecord, TaskRecord


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

    def prediction_job_for(self, prediction: PredictionRecord, task: TaskRecord, device: str | None,
                           output_path: Path) -> PredictionJob:
        assert task.artifacts is not None, "a prediction job needs a completed task"
        return PredictionJob(
            prediction_id=prediction.prediction_id,
            task_id=task.task_id,
            model_dir=task.artifacts.model_path,
            input_path=str(self.uploads_dir / prediction.file),
            input_name=prediction.file,
            sheet_name=prediction.sheet_name,
            text_column=prediction.text_column,
            top_k=prediction.top_k,
            threshold=prediction.threshold,
            output_path=str(output_path),
            max_length=task.hyperparameters.max_sequence_length,
            report_interval=self.report_interval,
            cpu_threads=self.cpu_threads,
            device=device,
        )

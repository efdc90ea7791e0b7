"""What prediction jobs leave on disk: one result file per job under DATA_DIR/predictions/<task_id>/,
and the .partial sibling a run writes first. The scheduler is the only one that removes them;
nothing of the upload or the model is ever touched here."""

from __future__ import annotations

import shutil
from pathlib import Path

from bertd.protocol import partial_path


class PredictionFiles:
    def __init__(self, predictions_dir: Path) -> None:
        self.predictions_dir = predictions_dir

    def result_path(self, task_id: str, prediction_id: str, input_name: str) -> Path:
        """The job's result: named by its id, with the input's suffix (.xlsx stays .xlsx)."""
        return self.predictions_dir / task_id / f"{prediction_id}{Path(input_name).suffix.lower()}"

    def remove_partial(self, result: Path) -> None:
        partial_path(result).unlink(missing_ok=True)

    def remove(self, result: Path) -> None:
        result.unlink(missing_ok=True)
        self.remove_partial(result)

    def remove_task(self, task_id: str) -> None:
        """Every prediction result of a task."""
        shutil.rmtree(self.predictions_dir / task_id, ignore_errors=True)

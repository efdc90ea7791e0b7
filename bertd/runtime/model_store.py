"""What runs leave on disk: one model folder per task under MODELS_DIR, the .partial sibling a run
writes first, the .tar.gz built for downloads, and the task's checkpoints (DATA_DIR/checkpoints/
<task_id>/). The scheduler is the only one that removes them."""

from __future__ import annotations

import shutil
import tarfile
from pathlib import Path

from bertd.protocol import partial_path


class ModelStore:
    def __init__(self, models_dir: Path, checkpoints_dir: Path) -> None:
        self.models_dir = models_dir
        self.checkpoints_dir = checkpoints_dir

    def checkpoint_dir(self, task_id: str) -> Path:
        return self.checkpoints_dir / task_id

    def remove_checkpoints(self, task_id: str) -> None:
        shutil.rmtree(self.checkpoint_dir(task_id), ignore_errors=True)

    def checkpoint_bytes(self) -> int:
        """What every task's checkpoints take on disk."""
        if not self.checkpoints_dir.is_dir():
            return 0
        return sum(path.stat().st_size for path in self.checkpoints_dir.rglob("*") if path.is_file())

    def model_dir(self, task_id: str) -> Path:
        return self.models_dir / task_id

    def tarball_path(self, task_id: str) -> Path:
        return self.models_dir / f"{task_id}.tar.gz"

    def remove(self, task_id: str) -> None:
        """Everything of the task's model: the folder, a half-written .partial, the tarball."""
        model_dir = self.model_dir(task_id)
        shutil.rmtree(model_dir, ignore_errors=True)
        shutil.rmtree(partial_path(model_dir), ignore_errors=True)
        self.tarball_path(task_id).unlink(missing_ok=True)

    def tarball(self, task_id: str, top_folder: str) -> Path:
        """The model folder packed as `top_folder/...`, built once (a partial file, renamed) and kept."""
        target = self.tarball_path(task_id)
        if target.exists():
            return target
        model_dir = self.model_dir(task_id)
        partial = target.with_name(target.name + ".partial")
        try:
            with tarfile.open(partial, "w:gz", compresslevel=6) as archive:
                for path in sorted(model_dir.rglob("*")):
                    archive.add(path, arcname=f"{top_folder}/{path.relative_to(model_dir)}", recursive=False)
            partial.rename(target)
        finally:
            partial.unlink(missing_ok=True)
        return target

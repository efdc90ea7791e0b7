"""Where a task's model files live beside its model directory, and removing all of them."""

from __future__ import annotations

import shutil
from pathlib import Path


def partial_dir(model_dir: Path) -> Path:
    """The sibling a model is written into before it is renamed into place."""
    return model_dir.with_name(model_dir.name + ".partial")


def tarball_path(model_dir: Path) -> Path:
    """The downloadable .tar.gz, built on the first download."""
    return model_dir.with_name(model_dir.name + ".tar.gz")


def remove_model_files(model_dir: Path) -> None:
    shutil.rmtree(model_dir, ignore_errors=True)
    shutil.rmtree(partial_dir(model_dir), ignore_errors=True)
    tarball_path(model_dir).unlink(missing_ok=True)

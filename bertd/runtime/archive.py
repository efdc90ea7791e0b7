"""The downloadable .tar.gz of a model directory, built once and kept beside it."""

from __future__ import annotations

import tarfile
from pathlib import Path

from bertd.runtime.model_store import tarball_path


def build_tarball(model_dir: Path, top_folder: str) -> Path:
    """Pack model_dir as `top_folder/...` (written to a partial file, then renamed)."""
    target = tarball_path(model_dir)
    if target.exists():
        return target
    partial = target.with_name(target.name + ".partial")
    try:
        with tarfile.open(partial, "w:gz", compresslevel=6) as archive:
            for path in sorted(model_dir.rglob("*")):
                archive.add(path, arcname=f"{top_folder}/{path.relative_to(model_dir)}", recursive=False)
        partial.rename(target)
    finally:
        partial.unlink(missing_ok=True)
    return target

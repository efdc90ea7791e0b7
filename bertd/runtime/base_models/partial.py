"""The `.partial` folder a pull assembles a model in: what to fetch (the plan), which files are
complete (its state file), the lock that keeps two pulls of one model apart, file hashes, and the
byte count reported as progress."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bertd.runtime.base_models.files import (
    CONFIG_FILE,
    PYTORCH_FILE,
    PYTORCH_INDEX,
    SAFETENSORS_FILE,
    SAFETENSORS_INDEX,
    TOKENIZER_FILES,
    partial_path,
)
from bertd.runtime.base_models.hubs import HUGGINGFACE, BaseModelDownloadError, hub_label

STATE_FILE = ".bertd-download.json"
LOCK_FILE = ".bertd-download.lock"
INCOMPLETE_SUFFIX = ".incomplete"

SAFETENSORS_SHARD = re.compile(r"^model-\d+-of-\d+\.safetensors$")
PYTORCH_SHARD = re.compile(r"^pytorch_model-\d+-of-\d+\.bin$")

ProgressCallback = Callable[[int, int | None], None]


@dataclass
class RemoteFile:
    path: str
    size: int | None
    sha256: str | None  # LFS files
    blob_id: str | None  # git blob sha1 (for non-LFS files)


@dataclass
class Plan:
    commit: str
    files: list[RemoteFile]

    @property
    def total(self) -> int | None:
        if any(remote.size is None for remote in self.files):
            return None
        return sum(remote.size or 0 for remote in self.files)


def select_files(available: list[str]) -> list[str]:
    """Of a repo's top-level files, the ones a BERT classifier needs, config first. Raises
    ValueError (with the reason) when the repo lacks a config, a tokenizer or PyTorch weights."""
    names = {path for path in available if "/" not in path}
    if CONFIG_FILE not in names:
        raise ValueError("the repository has no config.json, so it is not a transformers model")
    if "tokenizer.json" not in names and "vocab.txt" not in names:
        raise ValueError("the repository has no tokenizer (neither tokenizer.json nor vocab.txt)")
    chosen = [CONFIG_FILE, *(name for name in TOKENIZER_FILES if name in names)]
    safetensors_shards = sorted(name for name in names if SAFETENSORS_SHARD.match(name))
    pytorch_shards = sorted(name for name in names if PYTORCH_SHARD.match(name))
    if SAFETENSORS_FILE in names:
        chosen.append(SAFETENSORS_FILE)
    elif SAFETENSORS_INDEX in names and safetensors_shards:
        chosen += [SAFETENSORS_INDEX, *safetensors_shards]
    elif PYTORCH_FILE in names:
        chosen.append(PYTORCH_FILE)
    elif PYTORCH_INDEX in names and pytorch_shards:
        chosen += [PYTORCH_INDEX, *pytorch_shards]
    else:
        raise ValueError(
            "the repository has no PyTorch weights (model.safetensors or pytorch_model.bin); TensorFlow, Flax "
            "and ONNX weights are not used"
        )
    return chosen


class ByteProgress:
    """Bytes done / total, passed to the callback at most once per `interval` (and always at the
    start and the end)."""

    def __init__(self, callback: ProgressCallback, interval: float) -> None:
        self._callback = callback
        self._interval = interval
        self._last = 0.0
        self.done = 0
        self.total: int | None = None

    def add(self, count: int) -> None:
        self.done = max(self.done + count, 0)
        self.emit()

    def emit(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._last >= self._interval:
            self._last = now
            self._callback(self.done, self.total)


@dataclass
class PartialState:
    """The `.partial` folder's state file: what the files in it belong to."""

    path: Path
    data: dict[str, Any] = field(default_factory=dict)

    def load(self) -> None:
        try:
            loaded = json.loads(self.path.read_text(encoding="utf-8"))
            self.data = loaded if isinstance(loaded, dict) else {}
        except (OSError, ValueError):
            self.data = {}

    def save(self) -> None:
        temporary = self.path.with_name(self.path.name + ".tmp")
        temporary.write_text(json.dumps(self.data, indent=1), encoding="utf-8")
        os.replace(temporary, self.path)

    @property
    def complete(self) -> set[str]:
        return set(self.data.get("complete", []))

    def mark_complete(self, path: str) -> None:
        self.data["complete"] = sorted(self.complete | {path})
        self.save()


@contextlib.contextmanager
def locked(partial: Path, *, name: str, source: str, endpoint: str) -> Iterator[None]:
    """An exclusive lock on the `.partial` folder (flock: between threads and between processes)."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        yield
        return
    partial.mkdir(parents=True, exist_ok=True)
    handle = open(partial / LOCK_FILE, "a+b")  # noqa: SIM115 - held for the whole block
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as error:
            reason = f"it is already being downloaded into {partial}"
            raise BaseModelDownloadError(
                f"{name!r} is already being downloaded from {hub_label(source)} into {partial}: wait for that "
                f"pull to end",
                kind="busy", hub=source, endpoint=endpoint, repo_id=name, reason=reason,
                advice="wait for that pull to end",
            ) from error
        yield
    finally:
        handle.close()


def discard_partial_download(base_models_dir: Path, name: str) -> bool:
    """Remove the `.partial` folder of `name` (an interrupted or cancelled pull); False if there is
    none. Raises BaseModelDownloadError (kind "busy") while a pull of it is running."""
    partial = partial_path(Path(base_models_dir), name)
    if not partial.is_dir():
        return False
    with locked(partial, name=name, source=HUGGINGFACE, endpoint=""):
        shutil.rmtree(partial)
    return True


def git_blob_sha1(path: Path, size: int) -> str:
    digest = hashlib.sha1(f"blob {size}\0".encode())
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fsync(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def size_or_zero(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0

"""Which base models this server has: folders of BASE_MODELS_DIR, and (as training has always
accepted) hub ids already in the local Hugging Face cache. A name in both is the folder, as
training resolves it. Blocking (disk, the cache scan): call these in a thread."""

from __future__ import annotations

import os
import re
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bertd.i18n import ENGLISH, Language
from bertd.protocol import TaskError
from bertd.runtime.base_models.files import (
    CONFIG_FILE,
    PARTIAL_SUFFIX,
    BaseModelFileError,
    base_model_path,
    find_local_base_models,
    inspect_base_model,
)

# What a task may name as base_model (schema/requests.py): a folder name or "org/name", never
# absolute, never "..", each part starting with a letter or digit.
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$"

READY = "ready"
DOWNLOADING = "downloading"
FAILED = "failed"


@dataclass(frozen=True)
class BaseModelEntry:
    """One line of GET /api/v1/base-models."""

    name: str
    source: str  # local | huggingface | modelscope
    path: str
    status: str  # ready | downloading | failed
    size_bytes: int | None = None
    parameters: int | None = None
    hidden_size: int | None = None
    num_layers: int | None = None
    vocab_size: int | None = None
    revision: str | None = None
    bytes_done: int | None = None
    bytes_total: int | None = None
    error: TaskError | None = None
    # Where it is kept: "base_models_dir" (bertd manages it) or "hf_cache" (the Hugging Face cache).
    location: str = "base_models_dir"

    def to_json(self, language: Language = ENGLISH) -> dict[str, Any]:
        """The API's entry; a failed download's error in `language` where its catalogue has it."""
        return {
            "name": self.name, "source": self.source, "path": self.path, "location": self.location,
            "size_bytes": self.size_bytes, "parameters": self.parameters, "hidden_size": self.hidden_size,
            "num_layers": self.num_layers, "vocab_size": self.vocab_size, "revision": self.revision,
            "status": self.status, "bytes_done": self.bytes_done, "bytes_total": self.bytes_total,
            "error_message": self.error.text_in(language) if self.error else None,
            "error": self.error.localized(language) if self.error else None,
        }


def is_model_name(name: str) -> bool:
    """A name that can only mean a model folder inside BASE_MODELS_DIR (not a download in progress)."""
    return re.match(NAME_PATTERN, name) is not None and not name.endswith(PARTIAL_SUFFIX)


def folder_of(base_models_dir: Path, name: str) -> Path:
    """BASE_MODELS_DIR/<name> (nested for org/name), for a name that passes is_model_name."""
    if not is_model_name(name):
        raise ValueError(f"{name!r} is not a base model name")
    try:
        return base_model_path(base_models_dir, name)
    except ValueError:  # a folder name that is no hub id (e.g. 'a--b') is still a folder name
        return Path(base_models_dir, *name.split("/"))


def cached_snapshot(name: str) -> Path | None:
    """The Hugging Face cache's snapshot of hub id `name` at main, if it has a config.json."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    try:
        found = try_to_load_from_cache(name, CONFIG_FILE)
    except Exception:  # an id the library refuses (HFValidationError), an unreadable cache
        return None
    return Path(found).parent if isinstance(found, str) else None


def locate(base_models_dir: Path, name: str) -> Path | None:
    """Where training would find `name`: its folder in BASE_MODELS_DIR, else its snapshot in the
    Hugging Face cache; None when the server does not have it."""
    if not is_model_name(name):
        return None
    folder = folder_of(base_models_dir, name)
    if (folder / CONFIG_FILE).is_file():
        return folder
    return cached_snapshot(name)


def find(base_models_dir: Path, name: str) -> BaseModelEntry | None:
    """The ready model `name`, as training would find it; None when the server does not have it."""
    path = locate(base_models_dir, name)
    if path is None:
        return None
    inside = path == folder_of(base_models_dir, name)
    return entry_for(name, path, location="base_models_dir" if inside else "hf_cache")


def remove_folder(folder: Path) -> None:
    """Delete a model folder: first renamed to a hidden name (so it is gone from listings and
    lookups at once, and a crash halfway leaves no half model under its name), then removed."""
    hidden = folder.with_name(f".deleting-{folder.name}-{uuid.uuid4().hex[:8]}")
    os.rename(folder, hidden)
    if hidden.is_symlink():  # a link to a model kept elsewhere: the link goes, not what it points to
        hidden.unlink()
    else:
        shutil.rmtree(hidden, ignore_errors=True)


def entry_for(name: str, path: Path, location: str = "base_models_dir") -> BaseModelEntry:
    """A ready model's line, with what its files tell (size, parameters, shape)."""
    try:
        info = inspect_base_model(path)
    except BaseModelFileError as error:
        return BaseModelEntry(name=name, source="local", path=str(path), status=READY, location=location,
                              error=TaskError(code="base_model_unusable", message=str(error),
                                              hint="replace the folder with a complete Hugging Face model"))
    source = "huggingface" if location == "hf_cache" else info.source
    return BaseModelEntry(
        name=name, source=source, path=str(path), status=READY, size_bytes=info.size_bytes,
        parameters=info.parameters, hidden_size=info.hidden_size, num_layers=info.num_layers,
        vocab_size=info.vocab_size, revision=info.revision, location=location,
    )


def cached_models() -> list[tuple[str, Path]]:
    """Model repos in the Hugging Face cache with a config.json at main: (hub id, snapshot folder)."""
    try:
        from huggingface_hub import constants, scan_cache_dir
        from huggingface_hub.errors import CacheNotFound
    except ImportError:
        return []
    try:
        # The cache folder as huggingface_hub knows it now (scan_cache_dir's default is fixed at import).
        cache = scan_cache_dir(constants.HF_HUB_CACHE)
    except (CacheNotFound, OSError, ValueError):
        return []
    found = []
    for repo in cache.repos:
        if repo.repo_type != "model":
            continue
        for revision in repo.revisions:
            if "main" in revision.refs and (revision.snapshot_path / CONFIG_FILE).is_file():
                found.append((repo.repo_id, revision.snapshot_path))
    return sorted(found)


def ready_models(base_models_dir: Path) -> list[BaseModelEntry]:
    """Every model the server can train from, by name."""
    entries = {model.name: entry_for(model.name, model.path) for model in find_local_base_models(base_models_dir)}
    for name, snapshot in cached_models():
        if name not in entries:
            entries[name] = entry_for(name, snapshot, location="hf_cache")
    return [entries[name] for name in sorted(entries)]

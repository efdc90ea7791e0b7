"""Files an operator copied into the uploads folder by hand (as the original system's users did
with data/uploads/): registered like uploads (sha256, sheets, columns), at start-up and on
POST /api/v1/files/rescan, so that a task can name them without an upload call.

The same checks as an upload apply, except the size limit (the operator put the file there): the
name must be a plain, visible .xlsx or .csv name, and the workbook passes the zip-bomb checks
before any parser reads it. Records whose file has gone are reported, not removed."""

from __future__ import annotations

import asyncio
import hashlib
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from loguru import logger

from bertd.sheets import SUPPORTED_SUFFIXES, SheetError, SheetInfo, read_sheet_metadata
from bertd.state.records import FileRecord, utc_now
from bertd.state.store import Store

MAX_FILENAME_BYTES = 255


@dataclass
class ScanResult:
    added: list[FileRecord] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file name, why)
    missing: list[str] = field(default_factory=list)  # registered, but the file is gone

    def to_json(self) -> dict[str, Any]:
        return {"added": [record.to_json() for record in self.added],
                "skipped": [{"filename": name, "reason": reason} for name, reason in self.skipped],
                "missing": self.missing}


def name_problem(name: str) -> str | None:
    """Why a file name in the uploads folder cannot be registered as it is; None if it can."""
    if Path(name).suffix.lower() not in SUPPORTED_SUFFIXES:
        return "not a .xlsx or .csv file"
    if unicodedata.normalize("NFC", name) != name:
        return "its name is not in Unicode NFC form (as uploads are stored); rename it"
    if any(unicodedata.category(char) in ("Cc", "Cf") for char in name):
        return "its name contains control characters; rename it"
    if len(name.encode("utf-8")) > MAX_FILENAME_BYTES:
        return f"its name is longer than {MAX_FILENAME_BYTES} bytes; rename it"
    return None


def _candidates(uploads_dir: Path) -> list[Path]:
    if not uploads_dir.is_dir():
        return []
    # Hidden names are bertd's own (temporary upload files) or not meant to be seen.
    return sorted(path for path in uploads_dir.iterdir() if path.is_file() and not path.name.startswith("."))


def _describe(path: Path) -> tuple[int, str, list[SheetInfo]]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
            size += len(block)
    if size == 0:
        raise SheetError(f"{path.name} is empty")
    return size, digest.hexdigest(), read_sheet_metadata(path)


async def register_copied_files(store: Store, uploads_dir: Path, lock: asyncio.Lock) -> ScanResult:
    """Register every file of the uploads folder that has no record yet."""
    result = ScanResult()
    known = {record.filename for record in await store.list_files()}
    for path in await asyncio.to_thread(_candidates, uploads_dir):
        name = path.name
        if name in known:
            continue
        problem = name_problem(name)
        if problem is None:
            try:
                size, sha256, sheets = await asyncio.to_thread(_describe, path)
            except (SheetError, OSError) as error:
                problem = str(error)
        if problem is not None:
            if Path(name).suffix.lower() in SUPPORTED_SUFFIXES:
                logger.warning("uploads: {} was not registered: {}", name, problem)
            result.skipped.append((name, problem))
            continue
        record = FileRecord(name, size, sha256, utc_now(), sheets)
        async with lock:  # the same lock as uploads: an upload of this name meanwhile wins
            if await store.get_file(name) is not None:
                continue
            await store.insert_file(record)
        logger.info("uploads: registered {} ({} bytes, {} sheet(s)), copied into the folder by hand", name, size,
                    len(sheets))
        result.added.append(record)
    present = {path.name for path in await asyncio.to_thread(_candidates, uploads_dir)}
    result.missing = sorted(name for name in known if name not in present)
    for name in result.missing:
        logger.warning("uploads: {} is registered but its file is gone from {}", name, uploads_dir)
    return result

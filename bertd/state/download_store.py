"""The SQL of base model downloads, part of the one Store (which mixes these statements in): one
row per base model name, what the download manager last recorded of it."""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any

import aiosqlite

from bertd.state.json_column import json_column
from bertd.state.records import DownloadRecord, DownloadStatus
from bertd.task_error import TaskError

if TYPE_CHECKING:
    from collections.abc import Callable


class DownloadStatements:
    """Mixed into Store; relies on its transaction and fetch helpers."""

    if TYPE_CHECKING:
        _transaction: Callable[[], AbstractAsyncContextManager[aiosqlite.Connection]]

        async def _fetch_all(self, sql: str, parameters: tuple[Any, ...] = ()) -> list[aiosqlite.Row]: ...

    async def save_download(self, record: DownloadRecord) -> None:
        async with self._transaction() as connection:
            await connection.execute(
                "INSERT INTO base_model_downloads (name, source, revision, status, bytes_done, bytes_total, error_json, "
                "started_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET "
                "source = excluded.source, revision = excluded.revision, status = excluded.status, "
                "bytes_done = excluded.bytes_done, bytes_total = excluded.bytes_total, error_json = excluded.error_json, "
                "started_at = excluded.started_at, updated_at = excluded.updated_at",
                (record.name, record.source, record.revision, str(record.status), record.bytes_done, record.bytes_total,
                 json_column(record.error), record.started_at, record.updated_at),
            )

    async def list_downloads(self) -> list[DownloadRecord]:
        rows = await self._fetch_all("SELECT * FROM base_model_downloads ORDER BY name")
        return [DownloadRecord(
            name=row["name"], source=row["source"], revision=row["revision"], status=DownloadStatus(row["status"]),
            started_at=row["started_at"], updated_at=row["updated_at"], bytes_done=row["bytes_done"],
            bytes_total=row["bytes_total"],
            error=TaskError.model_validate_json(row["error_json"]) if row["error_json"] else None,
        ) for row in rows]

    async def delete_download(self, name: str) -> None:
        async with self._transaction() as connection:
            await connection.execute("DELETE FROM base_model_downloads WHERE name = ?", (name,))

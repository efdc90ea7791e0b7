"""Every SQL statement bertd runs, behind functions that return dataclasses."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiosqlite

from bertd.protocol import Artifacts, Hyperparameters, Progress, TaskError
from bertd.sheets import SheetInfo
from bertd.state.download_store import DownloadStatements
from bertd.state.json_column import json_column
from bertd.state.prediction_store import PredictionStatements
from bertd.state.records import (
    ACTIVE_STATUSES,
    FileRecord,
    TaskEvent,
    TaskRecord,
    TaskStatus,
    sources_of,
    utc_now,
)

# The dispatch order of queued tasks: priority (higher first), then seq. queue_position counts
# the queued tasks at or before this one in that order, and the prediction jobs that go before it
# (created earlier, unless the task continues after a restart).
DISPATCH_ORDER = "priority DESC, seq"
TASK_COLUMNS = """
    seq, task_id, status, model_name_cn, model_name_en, base_model, training_data_file,
    validation_data_file, hyperparameters_json, callback_url, created_at, started_at, finished_at,
    progress_json, metrics_json, artifacts_json, error_message, callback_json, priority, interruptions,
    checkpoint_json, error_json, updated_at, worker, run_id, message_cursor,
    CASE WHEN status = 'queued'
         THEN (SELECT COUNT(*) FROM tasks AS earlier WHERE earlier.status = 'queued'
               AND (earlier.priority > tasks.priority OR (earlier.priority = tasks.priority AND earlier.seq <= tasks.seq)))
            + (SELECT COUNT(*) FROM prediction_jobs WHERE prediction_jobs.status = 'queued' AND tasks.priority = 0
               AND prediction_jobs.tasks_seq < tasks.seq)
    END AS queue_position
"""


def _loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def _placeholders(values: tuple[Any, ...] | list[Any]) -> str:
    return ", ".join("?" for _ in values)


ACTIVE = tuple(str(status) for status in sorted(ACTIVE_STATUSES))


def _task_from_row(row: aiosqlite.Row) -> TaskRecord:
    return TaskRecord(
        seq=row["seq"],
        task_id=row["task_id"],
        status=TaskStatus(row["status"]),
        model_name_cn=row["model_name_cn"],
        model_name_en=row["model_name_en"],
        base_model=row["base_model"],
        training_data_file=row["training_data_file"],
        validation_data_file=row["validation_data_file"],
        hyperparameters=Hyperparameters.model_validate_json(row["hyperparameters_json"]),
        callback_url=row["callback_url"],
        created_at=row["created_at"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        progress=Progress.model_validate_json(row["progress_json"]) if row["progress_json"] else None,
        metrics=_loads(row["metrics_json"]),
        artifacts=Artifacts.model_validate_json(row["artifacts_json"]) if row["artifacts_json"] else None,
        error_message=row["error_message"],
        callback=_loads(row["callback_json"]),
        queue_position=row["queue_position"],
        error=TaskError.model_validate_json(row["error_json"]) if row["error_json"] else None,
        updated_at=row["updated_at"],
        priority=row["priority"],
        interruptions=row["interruptions"],
        checkpoint=_loads(row["checkpoint_json"]),
        worker=row["worker"],
        run_id=row["run_id"],
        message_cursor=row["message_cursor"],
    )


def _file_from_row(row: aiosqlite.Row) -> FileRecord:
    sheets = [SheetInfo(s["name"], s["rows"], list(s["columns"])) for s in json.loads(row["sheets_json"])]
    return FileRecord(row["filename"], row["size_bytes"], row["sha256"], row["uploaded_at"], sheets)


class MissingFile(Exception):
    """A data file the task names is not (or no longer) uploaded."""


class QueueFull(Exception):
    """As many tasks as allowed are already waiting."""


class Store(PredictionStatements, DownloadStatements):
    """The one path to SQLite (prediction jobs' statements are in prediction_store.py, base model
    downloads' in download_store.py). Writes are serialised by a lock so no coroutine's statement
    can slip into another's transaction on the shared connection."""

    def __init__(self, connection: aiosqlite.Connection) -> None:
        self._connection = connection
        self._write_lock = asyncio.Lock()

    async def close(self) -> None:
        await self._connection.close()

    @asynccontextmanager
    async def _transaction(self) -> AsyncIterator[aiosqlite.Connection]:
        async with self._write_lock:
            await self._connection.execute("BEGIN IMMEDIATE")
            try:
                yield self._connection
            except BaseException:
                await self._connection.rollback()
                raise
            await self._connection.commit()

    async def _fetch_all(self, sql: str, parameters: tuple[Any, ...] = ()) -> list[aiosqlite.Row]:
        async with self._connection.execute(sql, parameters) as cursor:
            return list(await cursor.fetchall())

    async def _fetch_one(self, sql: str, parameters: tuple[Any, ...] = ()) -> aiosqlite.Row | None:
        async with self._connection.execute(sql, parameters) as cursor:
            return await cursor.fetchone()

    # ---- files -------------------------------------------------------------------------------

    async def insert_file(self, record: FileRecord) -> None:
        async with self._transaction() as connection:
            await connection.execute(
                "INSERT INTO files (filename, size_bytes, sha256, uploaded_at, sheets_json) VALUES (?, ?, ?, ?, ?)",
                (
                    record.filename,
                    record.size_bytes,
                    record.sha256,
                    record.uploaded_at,
                    json_column([sheet.to_json() for sheet in record.sheets]),
                ),
            )

    async def get_file(self, filename: str) -> FileRecord | None:
        row = await self._fetch_one("SELECT * FROM files WHERE filename = ?", (filename,))
        return None if row is None else _file_from_row(row)

    async def list_files(self) -> list[FileRecord]:
        rows = await self._fetch_all("SELECT * FROM files ORDER BY uploaded_at DESC, filename")
        return [_file_from_row(row) for row in rows]

    async def delete_file_unless_used(self, filename: str) -> list[str] | None:
        """Delete the file's record unless an active task or a queued or running prediction job uses it.
        Returns None when it was deleted, else the ids of the tasks and prediction jobs that use it."""
        async with self._transaction() as connection:
            async with connection.execute(
                f"SELECT task_id FROM tasks WHERE status IN ({_placeholders(ACTIVE)}) "
                "AND (training_data_file = ? OR validation_data_file = ?) "
                "UNION ALL SELECT prediction_id FROM prediction_jobs WHERE status IN ('queued', 'running') "
                "AND file = ?",
                (*ACTIVE, filename, filename, filename),
            ) as cursor:
                users = [row["task_id"] for row in await cursor.fetchall()]
            if users:
                return users
            await connection.execute("DELETE FROM files WHERE filename = ?", (filename,))
            return None

    # ---- tasks -------------------------------------------------------------------------------

    async def insert_task(self, task: TaskRecord, max_queued: int) -> TaskRecord:
        """Insert a new queued task. Raises MissingFile if one of its data files was deleted since
        it was checked, QueueFull if max_queued tasks are already waiting."""
        files = [name for name in (task.training_data_file, task.validation_data_file) if name]
        async with self._transaction() as connection:
            async with connection.execute(
                f"SELECT COUNT(DISTINCT filename) FROM files WHERE filename IN ({_placeholders(files)})", tuple(files)
            ) as cursor:
                found = await cursor.fetchone()
            if found is None or found[0] != len(set(files)):
                raise MissingFile()
            async with connection.execute("SELECT COUNT(*) FROM tasks WHERE status = 'queued'") as cursor:
                queued = await cursor.fetchone()
            if queued is not None and queued[0] >= max_queued:
                raise QueueFull(queued[0])
            await connection.execute(
                "INSERT INTO tasks (task_id, status, model_name_cn, model_name_en, base_model, training_data_file, "
                "validation_data_file, hyperparameters_json, callback_url, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    task.task_id,
                    str(task.status),
                    task.model_name_cn,
                    task.model_name_en,
                    task.base_model,
                    task.training_data_file,
                    task.validation_data_file,
                    json_column(task.hyperparameters),
                    task.callback_url,
                    task.created_at,
                ),
            )
            await self._insert_event(connection, task.task_id, "status", {"status": str(task.status)})
        stored = await self.get_task(task.task_id)
        assert stored is not None
        return stored

    async def get_task(self, task_id: str) -> TaskRecord | None:
        row = await self._fetch_one(f"SELECT {TASK_COLUMNS} FROM tasks WHERE task_id = ?", (task_id,))
        return None if row is None else _task_from_row(row)

    async def list_tasks(self, status: TaskStatus | None, page: int, page_size: int) -> tuple[int, list[TaskRecord]]:
        where, parameters = ("WHERE status = ?", (str(status),)) if status else ("", ())
        count_row = await self._fetch_one(f"SELECT COUNT(*) FROM tasks {where}", parameters)
        rows = await self._fetch_all(
            f"SELECT {TASK_COLUMNS} FROM tasks {where} ORDER BY seq DESC LIMIT ? OFFSET ?",
            (*parameters, page_size, (page - 1) * page_size),
        )
        return (int(count_row[0]) if count_row else 0), [_task_from_row(row) for row in rows]

    async def count_by_status(self) -> dict[str, int]:
        rows = await self._fetch_all("SELECT status, COUNT(*) AS n FROM tasks GROUP BY status")
        counts = {str(status): 0 for status in TaskStatus}
        counts.update({row["status"]: row["n"] for row in rows})
        return counts

    async def next_queued(self, skip_base_models: frozenset[str] = frozenset()) -> TaskRecord | None:
        """The first queued task in dispatch order, passing over those whose base model is in
        `skip_base_models` (still downloading)."""
        skipped = tuple(sorted(skip_base_models))
        where = f" AND base_model NOT IN ({_placeholders(skipped)})" if skipped else ""
        row = await self._fetch_one(
            f"SELECT {TASK_COLUMNS} FROM tasks WHERE status = 'queued'{where} ORDER BY {DISPATCH_ORDER} LIMIT 1",
            skipped)
        return None if row is None else _task_from_row(row)

    async def active_tasks_using(self, base_model: str) -> list[str]:
        """Ids of the queued or training tasks that name `base_model`."""
        rows = await self._fetch_all(
            f"SELECT task_id FROM tasks WHERE status IN ({_placeholders(ACTIVE)}) AND base_model = ? ORDER BY seq",
            (*ACTIVE, base_model))
        return [row["task_id"] for row in rows]

    async def tasks_in(self, statuses: tuple[TaskStatus, ...]) -> list[TaskRecord]:
        rows = await self._fetch_all(
            f"SELECT {TASK_COLUMNS} FROM tasks WHERE status IN ({_placeholders(statuses)}) ORDER BY seq",
            tuple(str(status) for status in statuses),
        )
        return [_task_from_row(row) for row in rows]

    async def transition(
        self,
        task_id: str,
        target: TaskStatus,
        *,
        event_data: dict[str, Any] | None = None,
        **fields: Any,
    ) -> TaskRecord | None:
        """Move a task to `target` if its current status allows it, setting the given columns
        (progress, metrics, artifacts, error_message, started_at, finished_at) and recording a
        status event in the same transaction. Returns the updated task, or None if not allowed."""
        assignments = ["status = ?"]
        values: list[Any] = [str(target)]
        for name, value in fields.items():
            if name in ("progress", "metrics", "artifacts", "callback", "checkpoint", "error"):
                assignments.append(f"{name}_json = ?")
                values.append(json_column(value))
            elif name in ("error_message", "started_at", "finished_at", "priority", "interruptions"):
                assignments.append(f"{name} = ?")
                values.append(value)
            else:
                raise ValueError(f"unknown task column {name!r}")
        sources = sources_of(target)
        async with self._transaction() as connection:
            cursor = await connection.execute(
                f"UPDATE tasks SET {', '.join(assignments)} WHERE task_id = ? AND status IN ({_placeholders(sources)})",
                (*values, task_id, *(str(source) for source in sources)),
            )
            if cursor.rowcount != 1:
                return None
            data: dict[str, Any] = {"status": str(target)}
            if fields.get("error_message"):
                data["error_message"] = fields["error_message"]
            if fields.get("error") is not None:
                data["error"] = fields["error"].localized()
            data.update(event_data or {})
            await self._insert_event(connection, task_id, "status", data)
        return await self.get_task(task_id)

    async def set_progress(self, task_id: str, progress: Progress) -> None:
        async with self._transaction() as connection:
            await connection.execute(
                "UPDATE tasks SET progress_json = ? WHERE task_id = ?", (json_column(progress), task_id)
            )

    async def set_queued_progress(self, task_id: str, progress: Progress) -> bool:
        """Progress of a task still waiting in the queue (e.g. for its base model); False once it
        has left the queue (stopped, deleted, started), which then keeps its own progress."""
        async with self._transaction() as connection:
            cursor = await connection.execute(
                "UPDATE tasks SET progress_json = ? WHERE task_id = ? AND status = 'queued'", (json_column(progress), task_id)
            )
            return cursor.rowcount == 1

    async def set_checkpoint(self, task_id: str, checkpoint: dict[str, Any] | None) -> None:
        async with self._transaction() as connection:
            await connection.execute(
                "UPDATE tasks SET checkpoint_json = ? WHERE task_id = ?", (json_column(checkpoint), task_id)
            )

    async def set_run(self, task_id: str, run_id: str, cursor: str) -> None:
        """The task's current remote run and how far its message stream is applied."""
        async with self._transaction() as connection:
            await connection.execute("UPDATE tasks SET run_id = ?, message_cursor = ? WHERE task_id = ?",
                                     (run_id, cursor, task_id))

    async def set_worker(self, task_id: str, worker: str | None) -> None:
        async with self._transaction() as connection:
            await connection.execute("UPDATE tasks SET worker = ? WHERE task_id = ?", (worker, task_id))

    async def set_callback_state(self, task_id: str, callback: dict[str, Any]) -> None:
        async with self._transaction() as connection:
            await connection.execute(
                "UPDATE tasks SET callback_json = ? WHERE task_id = ?", (json_column(callback), task_id)
            )

    async def delete_task(self, task_id: str) -> bool:
        async with self._transaction() as connection:
            cursor = await connection.execute("DELETE FROM tasks WHERE task_id = ?", (task_id,))
            return cursor.rowcount == 1

    # ---- events ------------------------------------------------------------------------------

    @staticmethod
    async def _insert_event(
        connection: aiosqlite.Connection, task_id: str, event_type: str, data: dict[str, Any],
        origin: str | None = None,
    ) -> bool:
        """Insert an event; False when one of the same origin is recorded already."""
        cursor = await connection.execute(
            "INSERT OR IGNORE INTO task_events (task_id, at, type, data_json, origin) VALUES (?, ?, ?, ?, ?)",
            (task_id, utc_now(), event_type, json_column(data), origin),
        )
        return cursor.rowcount == 1

    async def add_event(self, task_id: str, event_type: str, data: dict[str, Any], origin: str | None = None) -> bool:
        """Record an event of the task; False (nothing recorded) when the task is gone or an event of
        the same origin (a broker message read twice) is recorded already."""
        async with self._transaction() as connection:
            # The task may have been deleted meanwhile; an event for it is then simply dropped.
            exists = await (await connection.execute("SELECT 1 FROM tasks WHERE task_id = ?", (task_id,))).fetchone()
            return bool(exists) and await self._insert_event(connection, task_id, event_type, data, origin)

    async def last_reported_step(self, task_id: str) -> int:
        """The step of the task's latest epoch or evaluation event (0 if none): a run that continues
        from a checkpoint may report those again, and they are recorded once."""
        row = await self._fetch_one(
            "SELECT MAX(json_extract(data_json, '$.step')) FROM task_events WHERE task_id = ? "
            "AND type IN ('epoch', 'evaluation')", (task_id,))
        return int(row[0]) if row and row[0] is not None else 0

    async def list_events(self, task_id: str, after: int, limit: int) -> list[TaskEvent]:
        rows = await self._fetch_all(
            "SELECT id, task_id, at, type, data_json FROM task_events WHERE task_id = ? AND id > ? ORDER BY id LIMIT ?",
            (task_id, after, limit),
        )
        return [TaskEvent(row["id"], row["task_id"], row["at"], row["type"], json.loads(row["data_json"])) for row in rows]

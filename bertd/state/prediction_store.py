"""The SQL of prediction jobs, part of the one Store (which mixes these statements in): the same
connection, the same write lock, every status change a guarded UPDATE with its event in the task's
history (type "prediction")."""

from __future__ import annotations

import json
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any

import aiosqlite

from bertd.state.json_column import json_column
from bertd.state.records import PredictionRecord, PredictionStatus, TaskStatus, prediction_sources_of
from bertd.task_error import TaskError

if TYPE_CHECKING:
    from collections.abc import Callable

# A queued job's place among everything queued: the prediction jobs before it, and the tasks that
# go first (continuing after a restart, or created before it).
PREDICTION_COLUMNS = """
    *,
    CASE WHEN status = 'queued'
         THEN (SELECT COUNT(*) FROM prediction_jobs AS earlier WHERE earlier.status = 'queued'
               AND earlier.seq <= prediction_jobs.seq)
            + (SELECT COUNT(*) FROM tasks WHERE tasks.status = 'queued'
               AND (tasks.priority > 0 OR tasks.seq <= prediction_jobs.tasks_seq))
    END AS queue_position
"""
# Columns a transition or a progress write may set, and how each is stored.
JSON_COLUMNS = ("label_counts", "columns", "error")
PLAIN_COLUMNS = ("started_at", "finished_at", "phase", "rows_done", "rows_total", "rows_per_second", "rows_empty",
                 "rows_below_threshold", "output_path", "seconds", "error_message")


class TaskNotCompleted(Exception):
    """The task is gone or not completed (any more): it has no model to predict with."""


def _prediction_from_row(row: aiosqlite.Row) -> PredictionRecord:
    return PredictionRecord(
        seq=row["seq"], prediction_id=row["prediction_id"], task_id=row["task_id"],
        status=PredictionStatus(row["status"]), file=row["file"], sheet_name=row["sheet_name"],
        text_column=row["text_column"], top_k=row["top_k"], threshold=row["threshold"], tasks_seq=row["tasks_seq"],
        created_at=row["created_at"], started_at=row["started_at"], finished_at=row["finished_at"],
        phase=row["phase"], rows_done=row["rows_done"], rows_total=row["rows_total"],
        rows_per_second=row["rows_per_second"], rows_empty=row["rows_empty"],
        rows_below_threshold=row["rows_below_threshold"],
        label_counts=json.loads(row["label_counts_json"]) if row["label_counts_json"] else None,
        columns=json.loads(row["columns_json"]) if row["columns_json"] else None,
        output_path=row["output_path"], seconds=row["seconds"], error_message=row["error_message"],
        error=TaskError.model_validate_json(row["error_json"]) if row["error_json"] else None,
        queue_position=row["queue_position"],
    )


def _assignments(fields: dict[str, Any]) -> tuple[list[str], list[Any]]:
    assignments, values = [], []
    for name, value in fields.items():
        if name in JSON_COLUMNS:
            assignments.append(f"{name}_json = ?")
            values.append(json_column(value))
        elif name in PLAIN_COLUMNS:
            assignments.append(f"{name} = ?")
            values.append(value)
        else:
            raise ValueError(f"unknown prediction job column {name!r}")
    return assignments, values


class PredictionStatements:
    """Mixed into Store; relies on its transaction, fetch and event helpers."""

    if TYPE_CHECKING:
        _transaction: Callable[[], AbstractAsyncContextManager[aiosqlite.Connection]]

        async def _fetch_one(self, sql: str, parameters: tuple[Any, ...] = ()) -> aiosqlite.Row | None: ...
        async def _fetch_all(self, sql: str, parameters: tuple[Any, ...] = ()) -> list[aiosqlite.Row]: ...
        @staticmethod
        async def _insert_event(connection: aiosqlite.Connection, task_id: str, event_type: str,
                                data: dict[str, Any]) -> int: ...

    async def insert_prediction(self, job: PredictionRecord, max_queued: int) -> PredictionRecord:
        """Insert a new queued prediction job. Raises TaskNotCompleted, MissingFile (its upload was
        deleted since it was checked) or QueueFull (max_queued jobs wait already)."""
        from bertd.state.store import MissingFile, QueueFull  # store.py mixes this class in: import late

        async with self._transaction() as connection:
            task = await (await connection.execute("SELECT status FROM tasks WHERE task_id = ?",
                                                   (job.task_id,))).fetchone()
            if task is None or task["status"] != str(TaskStatus.COMPLETED):
                raise TaskNotCompleted()
            if await (await connection.execute("SELECT 1 FROM files WHERE filename = ?", (job.file,))).fetchone() is None:
                raise MissingFile()
            queued = await (await connection.execute(
                "SELECT COUNT(*) FROM prediction_jobs WHERE status = 'queued'")).fetchone()
            if queued is not None and queued[0] >= max_queued:
                raise QueueFull(queued[0])
            await connection.execute(
                "INSERT INTO prediction_jobs (prediction_id, task_id, status, file, sheet_name, text_column, top_k, "
                "threshold, tasks_seq, created_at) "
                "VALUES (?, ?, 'queued', ?, ?, ?, ?, ?, (SELECT COALESCE(MAX(seq), 0) FROM tasks), ?)",
                (job.prediction_id, job.task_id, job.file, job.sheet_name, job.text_column, job.top_k, job.threshold,
                 job.created_at))
            await self._insert_event(connection, job.task_id, "prediction", {
                "prediction_id": job.prediction_id, "status": "queued", "file": job.file, "sheet_name": job.sheet_name,
                "text_column": job.text_column, "top_k": job.top_k, "threshold": job.threshold})
        stored = await self.get_prediction(job.prediction_id)
        assert stored is not None
        return stored

    async def get_prediction(self, prediction_id: str) -> PredictionRecord | None:
        row = await self._fetch_one(f"SELECT {PREDICTION_COLUMNS} FROM prediction_jobs WHERE prediction_id = ?",
                                    (prediction_id,))
        return None if row is None else _prediction_from_row(row)

    async def list_predictions(self, task_id: str) -> list[PredictionRecord]:
        """The task's prediction jobs, newest first."""
        rows = await self._fetch_all(
            f"SELECT {PREDICTION_COLUMNS} FROM prediction_jobs WHERE task_id = ? ORDER BY seq DESC", (task_id,))
        return [_prediction_from_row(row) for row in rows]

    async def next_queued_prediction(self) -> PredictionRecord | None:
        row = await self._fetch_one(
            f"SELECT {PREDICTION_COLUMNS} FROM prediction_jobs WHERE status = 'queued' ORDER BY seq LIMIT 1")
        return None if row is None else _prediction_from_row(row)

    async def predictions_in(self, statuses: tuple[PredictionStatus, ...], task_id: str | None = None
                             ) -> list[PredictionRecord]:
        """Prediction jobs in these statuses (of one task, or of all), oldest first."""
        where = f"status IN ({', '.join('?' for _ in statuses)})" + (" AND task_id = ?" if task_id else "")
        parameters = (*(str(status) for status in statuses), *((task_id,) if task_id else ()))
        rows = await self._fetch_all(f"SELECT {PREDICTION_COLUMNS} FROM prediction_jobs WHERE {where} ORDER BY seq",
                                     parameters)
        return [_prediction_from_row(row) for row in rows]

    async def transition_prediction(self, prediction_id: str, target: PredictionStatus, *,
                                    event_data: dict[str, Any] | None = None, **fields: Any) -> PredictionRecord | None:
        """Move a prediction job to `target` if its status allows it, setting the given columns and
        recording a "prediction" event of its task in the same transaction; None if not allowed."""
        assignments, values = _assignments(fields)
        sources = prediction_sources_of(target)
        async with self._transaction() as connection:
            cursor = await connection.execute(
                f"UPDATE prediction_jobs SET {', '.join(['status = ?', *assignments])} "
                f"WHERE prediction_id = ? AND status IN ({', '.join('?' for _ in sources)}) RETURNING task_id",
                (str(target), *values, prediction_id, *(str(source) for source in sources)))
            row = await cursor.fetchone()
            await cursor.close()
            if row is None:
                return None
            data: dict[str, Any] = {"prediction_id": prediction_id, "status": str(target)}
            data.update({name: fields[name] for name in ("error_message", "rows_total", "rows_empty",
                                                         "rows_below_threshold", "label_counts", "seconds")
                         if fields.get(name) is not None})
            data.update(event_data or {})
            await self._insert_event(connection, row["task_id"], "prediction", data)
        return await self.get_prediction(prediction_id)

    async def set_prediction_progress(self, prediction_id: str, **fields: Any) -> None:
        assignments, values = _assignments(fields)
        async with self._transaction() as connection:
            await connection.execute(f"UPDATE prediction_jobs SET {', '.join(assignments)} WHERE prediction_id = ?",
                                     (*values, prediction_id))

    async def delete_prediction(self, prediction_id: str) -> bool:
        async with self._transaction() as connection:
            cursor = await connection.execute("DELETE FROM prediction_jobs WHERE prediction_id = ?", (prediction_id,))
            return cursor.rowcount == 1


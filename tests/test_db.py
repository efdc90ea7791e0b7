"""Migrations and the database file: a fresh database, re-opening, refusing what it cannot use."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from bertd.state.db import DatabaseError, find_migrations, migrations_dir, open_database


async def test_migrations_create_the_schema_on_an_empty_database(tmp_path: Path) -> None:
    path = tmp_path / "bertd.sqlite3"
    connection = await open_database(path)
    await connection.close()
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA user_version").fetchone()[0] == len(find_migrations(migrations_dir()))
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {row[0] for row in raw.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"files", "tasks", "task_events"} <= tables
    # Opening again applies nothing and keeps the data.
    connection = await open_database(path)
    await connection.execute("INSERT INTO files VALUES ('a.csv', 1, 'x', '2026-01-01T00:00:00Z', '[]')")
    await connection.close()
    connection = await open_database(path)
    async with connection.execute("SELECT COUNT(*) FROM files") as cursor:
        assert (await cursor.fetchone())[0] == 1
    await connection.close()


async def test_a_database_from_a_newer_bertd_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bertd.sqlite3"
    with sqlite3.connect(path) as raw:
        raw.execute("PRAGMA user_version = 99")
    with pytest.raises(DatabaseError, match="schema version 99"):
        await open_database(path)


async def test_a_corrupt_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bertd.sqlite3"
    path.write_bytes(b"SQLite format 3\x00" + b"\xff" * 4096)
    with pytest.raises(DatabaseError, match="failed its integrity check: file is not a database; restore it"):
        await open_database(path)


def test_migration_files_must_be_numbered_without_gaps(tmp_path: Path) -> None:
    (tmp_path / "0001_a.sql").write_text("SELECT 1;")
    (tmp_path / "0003_c.sql").write_text("SELECT 1;")
    with pytest.raises(DatabaseError, match="without gaps"):
        find_migrations(tmp_path)
    (tmp_path / "bad name.sql").write_text("")
    with pytest.raises(DatabaseError, match="NNNN_name.sql"):
        find_migrations(tmp_path)


def test_the_wheel_carries_the_migrations(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parent.parent
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path), str(root)], check=True, capture_output=True)
    wheel = next(tmp_path.glob("bertd-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    expected = {f"bertd/migrations/{m.path.name}" for m in find_migrations(root / "migrations")}
    assert expected <= set(names)


async def test_migration_3_fills_updated_at_and_keeps_it_on_every_write(tmp_path: Path) -> None:
    """A database of the first schema, with tasks, moves on (through 0002 to 0003): updated_at is filled from what the
    row knew, then kept by the triggers whatever statement writes the row."""
    from bertd.state.db import apply_migrations

    path = tmp_path / "bertd.sqlite3"
    first_only = tmp_path / "first"
    first_only.mkdir()
    (first_only / "0001_initial.sql").write_text((migrations_dir() / "0001_initial.sql").read_text())
    import aiosqlite

    from bertd.state.records import utc_now

    async with aiosqlite.connect(path, isolation_level=None) as old:
        await apply_migrations(old, first_only)
        for task_id, created, finished in (("a", "2026-01-01T00:00:00Z", None),
                                           ("b", "2026-01-02T00:00:00Z", "2026-01-03T00:00:00Z")):
            await old.execute(
                "INSERT INTO tasks (task_id, status, model_name_cn, model_name_en, base_model, training_data_file, "
                "hyperparameters_json, created_at, finished_at) VALUES (?, 'queued', 'm', 'm', 'x', 'f.csv', '{}', ?, ?)",
                (task_id, created, finished))
    connection = await open_database(path)
    try:
        async with connection.execute("SELECT task_id, updated_at, error_json FROM tasks ORDER BY seq") as cursor:
            rows = [tuple(row) for row in await cursor.fetchall()]
        assert rows == [("a", "2026-01-01T00:00:00Z", None), ("b", "2026-01-03T00:00:00Z", None)]
        before = utc_now()
        await connection.execute("UPDATE tasks SET progress_json = '{}' WHERE task_id = 'a'")
        await connection.execute(
            "INSERT INTO tasks (task_id, status, model_name_cn, model_name_en, base_model, training_data_file, "
            "hyperparameters_json, created_at) VALUES ('c', 'queued', 'm', 'm', 'x', 'f.csv', '{}', '2026-01-04T00:00:00Z')")
        async with connection.execute("SELECT task_id, updated_at FROM tasks ORDER BY seq") as cursor:
            stamps = dict(tuple(row) for row in await cursor.fetchall())
        assert stamps["a"] >= before and stamps["c"] >= before and stamps["b"] == "2026-01-03T00:00:00Z"
        assert stamps["a"].endswith("Z") and len(stamps["a"]) == len(before)
    finally:
        await connection.close()

"""Opening the SQLite database: pragmas and numbered migrations, all in one place."""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from pathlib import Path

import aiosqlite
from loguru import logger

MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


class DatabaseError(RuntimeError):
    """The database cannot be opened or migrated; the server must not start."""


@dataclass(frozen=True)
class Migration:
    version: int
    path: Path


def migrations_dir() -> Path:
    """Where the migrations are: inside an installed wheel, or at the top of a source checkout."""
    packaged = Path(__file__).parent.parent / "migrations"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / "migrations"


def find_migrations(directory: Path) -> list[Migration]:
    migrations = []
    for path in sorted(directory.glob("*.sql")):
        match = MIGRATION_NAME.match(path.name)
        if match is None:
            raise DatabaseError(f"migration file {path.name!r} is not named NNNN_name.sql")
        migrations.append(Migration(int(match.group(1)), path))
    versions = [migration.version for migration in migrations]
    if versions != list(range(1, len(versions) + 1)):
        raise DatabaseError(f"migrations in {directory} must be numbered 1, 2, 3 ... without gaps; found {versions}")
    return migrations


async def apply_migrations(connection: aiosqlite.Connection, directory: Path | None = None) -> int:
    """Apply every migration newer than PRAGMA user_version, each in its own transaction."""
    directory = directory or migrations_dir()
    async with connection.execute("PRAGMA user_version") as cursor:
        row = await cursor.fetchone()
    current = int(row[0]) if row else 0
    migrations = find_migrations(directory)
    if current > len(migrations):
        raise DatabaseError(
            f"the database is at schema version {current} but this bertd knows only {len(migrations)}; "
            "upgrade bertd or use another DATA_DIR"
        )
    for migration in migrations[current:]:
        script = migration.path.read_text(encoding="utf-8")
        # One script so the schema change and the version bump commit together or not at all.
        try:
            await connection.executescript(
                f"BEGIN IMMEDIATE;\n{script}\nPRAGMA user_version = {migration.version};\nCOMMIT;"
            )
        except Exception as error:
            if connection.in_transaction:
                await connection.rollback()
            raise DatabaseError(f"migration {migration.path.name} failed: {error}") from error
        logger.info("database migrated to version {} ({})", migration.version, migration.path.name)
    return len(migrations)


RECOVERY_HINT = "restore it from a backup, or move it aside to start with an empty one"


async def _configure_and_check(connection: aiosqlite.Connection) -> None:
    await connection.execute("PRAGMA journal_mode = WAL")
    # FULL, not NORMAL: in WAL mode NORMAL may roll back the last commits after a power cut,
    # and bertd announces commits (2xx answers, callbacks, WebSocket messages) as facts.
    # bertd writes a few rows a second at most, so an fsync per commit costs nothing that shows.
    await connection.execute("PRAGMA synchronous = FULL")
    await connection.execute("PRAGMA busy_timeout = 5000")
    async with connection.execute("PRAGMA quick_check") as cursor:
        check = await cursor.fetchone()
    if check is None or check[0] != "ok":
        raise sqlite3.DatabaseError(check[0] if check else "no answer")


async def _enforce_foreign_keys(connection: aiosqlite.Connection, path: Path) -> None:
    """Foreign keys on, after the migrations: a migration that rebuilds a table (SQLite's way to
    change a constraint) must run with them off, or dropping the old table would delete its
    events; the check afterwards proves nothing was left dangling."""
    async with connection.execute("PRAGMA foreign_key_check") as cursor:
        dangling = await cursor.fetchall()
    if dangling:
        raise DatabaseError(f"database {path} has {len(dangling)} row(s) whose foreign keys point nowhere; "
                            f"{RECOVERY_HINT}")
    await connection.execute("PRAGMA foreign_keys = ON")


async def open_database(path: Path) -> aiosqlite.Connection:
    """Open the database in WAL mode with foreign keys, then bring its schema up to date."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # isolation_level=None: autocommit; multi-statement writes use explicit BEGIN IMMEDIATE.
    connection = await aiosqlite.connect(path, isolation_level=None)
    try:
        connection.row_factory = aiosqlite.Row
        try:
            await _configure_and_check(connection)
        except sqlite3.DatabaseError as error:  # e.g. "file is not a database"
            raise DatabaseError(f"database {path} failed its integrity check: {error}; {RECOVERY_HINT}") from error
        await apply_migrations(connection)
        await _enforce_foreign_keys(connection, path)
    except BaseException:
        await connection.close()
        raise
    return connection

"""Database conventions: naive-UTC timestamps, SQLite pragmas and the SQLite WAL checkpoint."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from typing import NamedTuple

from sqlalchemy import event
from sqlalchemy.engine import Engine

# SQLite runs in WAL mode: a commit appends pages to the write-ahead log, and a *checkpoint* copies them back into
# the database file and syncs it to disk. By default the commit that takes the log past 1,000 pages (4 MB) does
# that itself, so a batch of the sync engine (or any web request) now and then waits tens of milliseconds on the
# disk. The web process's scheduler checkpoints in the background instead (jobs.tasks.checkpoint_database, every
# CHECKPOINT_SECONDS), where it overlaps with everything else; the automatic checkpoint stays as a backstop at a
# higher mark so the log stays bounded in processes without a scheduler (CLI commands, a scheduler switched off).
MAX_INT = 2**31 - 1  # PostgreSQL's integer: every id column; pages and counts never come near it
WAL_AUTOCHECKPOINT_PAGES = 10_000  # ~40 MB of log before a commit checkpoints by itself
WAL_SIZE_LIMIT_BYTES = 64 * 2**20  # the log file is truncated back to this size when it is reset
CHECKPOINT_SECONDS = 2


def utcnow() -> datetime:
    """Naive UTC: SQLite keeps no time zone, so every timestamp is stored as naive UTC."""
    return datetime.now(UTC).replace(tzinfo=None)


@event.listens_for(Engine, "connect")
def _sqlite_pragmas(dbapi_connection, _record):
    if not isinstance(dbapi_connection, sqlite3.Connection):
        return
    cursor = dbapi_connection.cursor()
    _owner_only(cursor)  # before journal_mode=WAL creates the -wal and -shm files: they take the database's mode
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(f"PRAGMA wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}")
    cursor.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT_BYTES}")
    cursor.close()
    dbapi_connection.create_function("lower", 1, unicode_lower, deterministic=True)


def _owner_only(cursor: sqlite3.Cursor) -> None:
    """Database files are owner-only (0600), whatever the umask: SQLite creates a new file 0644. Runs on each new
    DBAPI connection (pooled, so rarely); a file this process does not own is left alone with a warning."""
    from portal.security.files import private_sqlite_files

    for _seq, name, path in cursor.execute("PRAGMA database_list").fetchall():
        if path and name == "main":
            private_sqlite_files(path)


def unicode_lower(value: object) -> object:
    """SQLite's ``lower()``, as PostgreSQL's and Python's: every letter, not only A-Z.

    SQLite's own ``lower()`` (and ``LIKE``) fold ASCII letters only, so 'ØSTFOLD' stayed 'Østfold': a CRM search
    for "østfold" missed "Østfold Bygg", and the import's duplicate rule took "ØSTFOLD BYGG AS" from the ERP for a
    new company. Overriding the built-in on every connection makes ``ilike`` (``lower(x) LIKE lower(y)`` on SQLite)
    and ``func.lower`` agree with the Python side; no index is built on ``lower()``, so none depends on the old
    results. It costs a Python call per value: a search over 10,000 companies' six columns takes ~20 ms, not ~10."""
    if value is None:
        return None
    if type(value) is str:
        return value.lower()
    if isinstance(value, bytes):  # SQLite reads a blob given to lower() as text
        return value.decode("utf-8", "replace").lower()
    return str(value).lower()


class Checkpoint(NamedTuple):
    """What ``PRAGMA wal_checkpoint`` answered: whether it was blocked, the frames in the log, and how many of
    them are now in the database file."""

    busy: bool
    log_frames: int
    checkpointed: int


def checkpoint_wal(engine: Engine) -> Checkpoint | None:
    """Copy the SQLite write-ahead log back into the database file without blocking readers or writers (a PASSIVE
    checkpoint: it copies what no reader still needs and leaves the rest for the next one). None on other
    databases."""
    if engine.dialect.name != "sqlite":
        return None
    with engine.connect() as conn:
        busy, log_frames, checkpointed = conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)").one()
    return Checkpoint(bool(busy), int(log_frames), int(checkpointed))

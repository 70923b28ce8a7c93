"""The database's floor of a measured piece of work (issue #19): the same statements with the same parameters, in
the same transactions, replayed by plain ``sqlite3`` (or ``psycopg``) code on a copy of the database as it was
before the work.

``Recorder`` listens on the portal's engine while the work runs (only the calling thread: the scheduler's WAL
checkpoint thread is not part of it) and keeps every statement the portal sends to the database — ``execute`` or
``executemany``, with the parameters exactly as the driver got them, and PostgreSQL's ``COPY``s of bulk
INSERTs with their rows — and every commit and rollback. ``replay``
runs them again on the copy, with the portal's own connection settings (``portal.database``: WAL, foreign keys,
``synchronous=NORMAL``, the Python ``lower`` the search-index triggers call), reading every row a ``SELECT``
returns, and times that. On PostgreSQL the copy is a database created from the portal's as a template, and the
replay a plain ``psycopg`` connection (implicit transactions, as SQLAlchemy's). What is left between the portal's time and the floor is the portal's own work: its
Python, SQLAlchemy, JSON, value conversion and merge — not the database's.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

from sqlalchemy import event

from portal.services.sync import bulk


class Recorder:
    def __init__(self, engine) -> None:
        self.engine, self.thread, self.ops = engine, threading.get_ident(), []
        event.listen(engine, "before_cursor_execute", self._execute)
        event.listen(engine, "commit", self._commit)
        event.listen(engine, "rollback", self._rollback)
        bulk.COPY_LISTENERS.append(self._copy)

    def _mine(self) -> bool:
        return threading.get_ident() == self.thread

    def _execute(self, _conn, _cursor, statement, parameters, _context, executemany) -> None:
        if self._mine():
            self.ops.append(("many" if executemany else "one", statement, parameters))

    def _copy(self, statement, rows) -> None:  # PostgreSQL's bulk INSERTs (portal.services.sync.bulk.copy_rows)
        if self._mine():
            self.ops.append(("copy", statement, list(rows)))

    def _commit(self, _conn) -> None:
        if self._mine():
            self.ops.append(("commit", None, None))

    def _rollback(self, _conn) -> None:
        if self._mine():
            self.ops.append(("rollback", None, None))

    def stop(self) -> list:
        event.remove(self.engine, "before_cursor_execute", self._execute)
        event.remove(self.engine, "commit", self._commit)
        event.remove(self.engine, "rollback", self._rollback)
        bulk.COPY_LISTENERS.remove(self._copy)
        return self.ops

    def summary(self) -> dict:
        return {"statements": sum(1 for kind, _s, _p in self.ops if kind in ("one", "many", "copy")),
                "commits": sum(1 for kind, _s, _p in self.ops if kind == "commit"),
                "rows_sent": sum(len(p) if kind in ("many", "copy") else 1 for kind, _s, p in self.ops
                                 if kind in ("one", "many", "copy"))}


def snapshot(engine):
    """A copy of the portal's database as it is now, for ``replay``: a file path (SQLite) or a URL (PostgreSQL)."""
    if engine.dialect.name == "sqlite":
        source = Path(engine.url.database)
        target = source.with_name("floor.db")
        copy_database(source, target)
        return target
    import psycopg

    engine.dispose()  # CREATE DATABASE … TEMPLATE needs the template without sessions
    name = engine.url.database
    copy = f"{name}_floor"
    maintenance = engine.url.set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)
    with psycopg.connect(maintenance, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{copy}"')
        conn.execute(f'CREATE DATABASE "{copy}" TEMPLATE "{name}"')
    return engine.url.set(drivername="postgresql", database=copy).render_as_string(hide_password=False)


def write_log(path: str, title: str, ops: list) -> None:
    """Append the statements of a run to ``path`` (``--sql-log``): one line each, with its row count."""
    with open(path, "a", encoding="utf-8") as log:
        log.write(f"=== {title}\n")
        for kind, statement, parameters in ops:
            text = " ".join((statement or "").split())
            log.write(f"{kind:8} {len(parameters) if kind in ('many', 'copy') else '':>5} {text[:200]}\n")


def copy_database(source: Path, target: Path) -> None:
    """A consistent copy of a (WAL) SQLite database, through SQLite's backup API."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{target}{suffix}").unlink(missing_ok=True)
    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst)


def _connect(path: Path) -> sqlite3.Connection:
    from portal.database import WAL_AUTOCHECKPOINT_PAGES, WAL_SIZE_LIMIT_BYTES, unicode_lower

    conn = sqlite3.connect(path)  # the driver's default (legacy) transaction control, as SQLAlchemy's pysqlite
    for pragma in ("journal_mode=WAL", "foreign_keys=ON", "busy_timeout=10000", "synchronous=NORMAL",
                   f"wal_autocheckpoint={WAL_AUTOCHECKPOINT_PAGES}", f"journal_size_limit={WAL_SIZE_LIMIT_BYTES}"):
        conn.execute(f"PRAGMA {pragma}")
    conn.create_function("lower", 1, unicode_lower, deterministic=True)
    return conn


def replay(target, ops: list) -> float:
    """Seconds plain sqlite3 (a path) or psycopg (a URL) takes for ``ops`` on the copy ``target`` (changed by it)."""
    if isinstance(target, str):
        import psycopg

        conn = psycopg.connect(target)
    else:
        conn = _connect(target)
    try:
        return _timed(conn, ops)
    finally:
        conn.close()


def _timed(conn, ops: list) -> float:
    cursor = conn.cursor()
    started = time.perf_counter()
    for kind, statement, parameters in ops:
        if kind == "one":
            cursor.execute(statement, parameters) if parameters else cursor.execute(statement)
            if cursor.description is not None:  # a SELECT (or RETURNING): read every row, as the portal does
                cursor.fetchall()
        elif kind == "many":
            cursor.executemany(statement, parameters)
        elif kind == "copy":
            with cursor.copy(statement) as copy:
                for row in parameters:
                    copy.write_row(row)
        elif kind == "commit":
            conn.commit()
        else:
            conn.rollback()
    return time.perf_counter() - started

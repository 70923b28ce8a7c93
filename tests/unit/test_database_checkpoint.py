"""The SQLite WAL checkpoint (portal.database.checkpoint_wal), the pragmas every SQLite connection gets, and the
scheduler job that checkpoints in the background (jobs.scheduler / jobs.tasks)."""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from types import SimpleNamespace

import pytest
from sqlalchemy import create_engine, create_mock_engine, text

from jobs import scheduler, tasks
from portal import database
from portal.database import (
    CHECKPOINT_SECONDS,
    WAL_AUTOCHECKPOINT_PAGES,
    WAL_SIZE_LIMIT_BYTES,
    Checkpoint,
    checkpoint_wal,
)


@pytest.fixture
def sqlite_file(tmp_path):
    path = tmp_path / "wal.db"
    engine = create_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE item (id INTEGER PRIMARY KEY, payload TEXT)")
    yield engine, path
    engine.dispose()


def _write(engine, rows: int, start: int = 0) -> None:
    with engine.begin() as conn:
        conn.execute(text("INSERT INTO item (id, payload) VALUES (:id, :payload)"),
                     [{"id": start + n, "payload": "x" * 500} for n in range(rows)])


def test_checkpoint_copies_the_whole_log_into_the_database_file(sqlite_file):
    engine, path = sqlite_file
    _write(engine, 200)
    assert (path.parent / "wal.db-wal").stat().st_size > 0
    size_before = path.stat().st_size
    result = checkpoint_wal(engine)
    assert isinstance(result, Checkpoint)
    assert result.busy is False
    assert result.log_frames > 10  # 200 rows of 500 bytes: dozens of 4 kB pages
    assert result.checkpointed == result.log_frames
    assert path.stat().st_size > size_before  # the pages are in the database file now
    with sqlite3.connect(path) as raw:
        assert raw.execute("SELECT count(*) FROM item").fetchone() == (200,)


def test_a_passive_checkpoint_leaves_what_an_open_reader_still_needs(sqlite_file):
    engine, path = sqlite_file
    _write(engine, 50)
    reader = sqlite3.connect(path, isolation_level=None)
    try:
        reader.execute("BEGIN")
        assert reader.execute("SELECT count(*) FROM item").fetchone() == (50,)  # a snapshot of the log so far
        _write(engine, 50, start=50)
        partial = checkpoint_wal(engine)  # does not wait for the reader
        assert partial.busy is False
        assert 0 < partial.checkpointed < partial.log_frames
        reader.execute("COMMIT")
    finally:
        reader.close()
    full = checkpoint_wal(engine)
    assert full == Checkpoint(False, partial.log_frames, partial.log_frames)


def test_checkpoint_is_none_on_other_databases():
    sent = []
    engine = create_mock_engine("postgresql://", lambda sql, *args, **kwargs: sent.append(sql))
    assert engine.dialect.name == "postgresql"
    assert checkpoint_wal(engine) is None
    assert sent == []

    def no_connection():
        raise AssertionError("checkpoint_wal connected to a database that is not SQLite")

    assert checkpoint_wal(SimpleNamespace(dialect=SimpleNamespace(name="mysql"), connect=no_connection)) is None


def test_sqlite_connections_get_the_wal_pragmas(sqlite_file):
    engine, path = sqlite_file
    assert WAL_AUTOCHECKPOINT_PAGES == 10_000
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar() == WAL_AUTOCHECKPOINT_PAGES
        assert conn.exec_driver_sql("PRAGMA journal_size_limit").scalar() == WAL_SIZE_LIMIT_BYTES
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    with sqlite3.connect(path) as raw:  # a connection the listener did not see keeps SQLite's default
        assert raw.execute("PRAGMA wal_autocheckpoint").fetchone() == (1000,)


# ------------------------------------------------------------------------------------------- the scheduler


@pytest.fixture
def fresh_scheduler_state(monkeypatch):
    """start_scheduler() with its module state reset, and the scheduler it builds never started (no threads)."""
    state = {"app": None, "scheduler": None, "lock": None}
    monkeypatch.setattr(scheduler, "_state", state)
    original = scheduler.build_scheduler

    def build_unstarted():
        sched = original()
        sched.start = lambda *args, **kwargs: None
        return sched

    monkeypatch.setattr(scheduler, "build_scheduler", build_unstarted)
    yield state
    if state["lock"] is not None:
        state["lock"].close()


def _web_app(tmp_path, **config):
    return SimpleNamespace(testing=False, debug=False, instance_path=str(tmp_path / "instance"),
                           config={"SCHEDULER": True, **config})


def test_start_scheduler_registers_the_checkpoint_job(tmp_path, fresh_scheduler_state):
    sched = scheduler.start_scheduler(_web_app(tmp_path))
    assert sched is not None and fresh_scheduler_state["scheduler"] is sched
    assert {job.id for job in sched.get_jobs()} == {"dispatch-due-syncs", "reap-stale-runs", "prune-sync-log",
                                                    "checkpoint-database", "send-alerts", "prune-rate-limits"}
    job = sched.get_job("checkpoint-database")
    assert job.func is tasks.checkpoint_database
    assert job.trigger.interval == timedelta(seconds=CHECKPOINT_SECONDS)
    assert CHECKPOINT_SECONDS == 2
    assert (tmp_path / "instance" / "scheduler.lock").exists()


@pytest.mark.parametrize("guard", [{"testing": True}, {"config": {"SCHEDULER": False}}])
def test_start_scheduler_guards_start_no_jobs(tmp_path, fresh_scheduler_state, guard):
    app = _web_app(tmp_path)
    for name, value in guard.items():
        setattr(app, name, value)
    assert scheduler.start_scheduler(app) is None
    assert fresh_scheduler_state == {"app": None, "scheduler": None, "lock": None}
    assert not (tmp_path / "instance" / "scheduler.lock").exists()


def test_the_checkpoint_job_checkpoints_the_apps_database(app, monkeypatch):
    from portal.extensions import db

    seen = []

    def spy(engine):
        result = checkpoint_wal(engine)
        seen.append((engine, result))
        return result

    monkeypatch.setattr(database, "checkpoint_wal", spy)
    monkeypatch.setattr(scheduler, "_state", {"app": app, "scheduler": None, "lock": None})
    tasks.checkpoint_database()
    with app.app_context():
        assert [engine for engine, _result in seen] == [db.engine]
        if db.engine.dialect.name == "sqlite":
            [(_engine, result)] = seen
            assert result.busy is False and result.checkpointed == result.log_frames
        else:
            assert seen[0][1] is None

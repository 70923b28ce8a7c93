"""Scheduler leadership (jobs/leader.py): one process runs the clock jobs; the others take over when it goes.
The PostgreSQL advisory lock itself is tested against a real server in tests/integration/test_multinode.py."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from jobs import leader, scheduler, tasks


def test_the_file_lock_has_one_holder_and_passes_on_when_released(tmp_path):
    first, second = leader.FileLock(str(tmp_path)), leader.FileLock(str(tmp_path))
    assert first.attempt() and first.leader
    assert not second.attempt() and not second.leader
    assert first.attempt()  # the holder keeps it
    first.release()
    assert second.attempt() and second.leader
    assert (tmp_path / "scheduler.lock").read_text().strip().isdigit()
    second.release()


def test_the_elector_reports_changes(tmp_path):
    changes = []
    holder = leader.FileLock(str(tmp_path))
    holder.attempt()
    elector = leader.Elector(leader.FileLock(str(tmp_path)), 0.05, on_change=changes.append)
    assert elector.tick() is False and changes == []
    holder.release()
    assert elector.tick() is True and changes == [True]
    elector.close()
    assert not elector.leader
    assert holder.attempt()
    holder.release()


def test_the_elector_thread_takes_over(tmp_path):
    holder = leader.FileLock(str(tmp_path))
    holder.attempt()
    elector = leader.Elector(leader.FileLock(str(tmp_path)), 0.05)
    elector.start()
    try:
        holder.release()
        import time

        deadline = time.monotonic() + 5
        while not elector.leader and time.monotonic() < deadline:
            time.sleep(0.02)
        assert elector.leader
    finally:
        elector.close()


class _Broken:
    closed = False

    def execute(self, *_args):
        raise OSError("server closed the connection unexpectedly")

    def close(self):
        self.closed = True


class _Connection:
    def __init__(self, granted: bool):
        self.granted = granted
        self.closed = False
        self.sql: list[str] = []

    def execute(self, sql, *_args):
        self.sql.append(sql)
        return SimpleNamespace(fetchone=lambda: (self.granted,) if "try_advisory" in sql else (1,))

    def close(self):
        self.closed = True


def test_the_advisory_lock_steps_down_when_its_connection_breaks():
    connections = [_Connection(True)]
    lock = leader.AdvisoryLock("postgresql+psycopg://portal@db/portal", connect=lambda: connections[-1])
    assert lock.conninfo == "postgresql://portal@db/portal"
    assert lock.attempt() and lock.leader
    assert lock.attempt() and connections[0].sql[-1] == "SELECT 1"  # the leader only checks its session
    connections.append(_Broken())
    lock._connection = connections[-1]
    assert not lock.attempt() and not lock.leader and connections[-1].closed
    connections.append(_Connection(False))  # another process took it meanwhile
    assert not lock.attempt()
    connections[-1].granted = True
    assert lock.attempt()
    lock.release()
    assert not lock.leader and connections[-1].closed


def test_the_application_name_names_the_process():
    name = leader.application_name(4242)
    assert name.startswith("portal-scheduler 4242@") and len(name) <= 63
    assert leader.parse_application_name(name)[0] == 4242
    assert leader.parse_application_name("psql") is None


def test_for_app_picks_the_lock_of_the_database(tmp_path):
    pg = SimpleNamespace(config={"SQLALCHEMY_DATABASE_URI": "postgresql+psycopg://u@h/d"}, instance_path=str(tmp_path))
    sqlite = SimpleNamespace(config={"SQLALCHEMY_DATABASE_URI": "sqlite:///x.db"}, instance_path=str(tmp_path))
    assert isinstance(leader.for_app(pg), leader.AdvisoryLock)
    assert isinstance(leader.for_app(sqlite), leader.FileLock)
    assert leader.retry_seconds(SimpleNamespace(config={"SCHEDULER_LEADER_RETRY": 600})) == leader.MAX_RETRY_SECONDS
    assert leader.retry_seconds(SimpleNamespace(config={})) == leader.RETRY_SECONDS


@pytest.mark.parametrize("job,service", [("reap_stale_runs", "runs.reap_stale"),
                                         ("prune_sync_log", "runs.prune_log"),
                                         ("dispatch_due_syncs", "runs.dispatch_due")])
def test_clock_jobs_do_nothing_outside_the_leader(monkeypatch, job, service):
    from portal.services.sync import runs

    called = []
    monkeypatch.setattr(runs, service.split(".")[1], lambda *a, **k: called.append(service) or [])
    app = SimpleNamespace(app_context=lambda: _NullContext())
    monkeypatch.setattr(scheduler, "_state", {"app": app, "scheduler": None, "lock": SimpleNamespace(leader=False),
                                              "lanes": None})
    monkeypatch.setattr(tasks, "dispatch_due_reconciles", lambda: called.append("reconciles"))
    getattr(tasks, job)()
    assert called == []
    scheduler._state["lock"] = SimpleNamespace(leader=True)
    getattr(tasks, job)()
    assert called[0] == service


class _NullContext:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

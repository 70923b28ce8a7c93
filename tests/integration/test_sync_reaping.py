"""Stale runs are reaped wherever the engine runs (docs/sync-engine.md §2, "Reaper"): a run records its owner
(host, pid); a run whose owner on this host is gone is reaped at once, other stale runs after the lease; the
``erp`` commands reap at their start (no web process needed), every web process at its start, and ``erp status``
shows a stale run as **stale** with the age of its heartbeat."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import click
import pytest
from sqlalchemy import select, update

from portal import reap_at_startup
from portal.database import utcnow
from portal.extensions import db
from portal.models import RunStatus, SyncRun
from portal.services.sync import owner, runs
from tests import sync_support as s

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def ctx(app):
    with app.app_context():
        yield


def _dead_pid() -> int:
    """The pid of a process of this host that has exited (and been waited for)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait(timeout=30)
    return child.pid


def _worker(pid: int) -> str:
    return owner.this_worker().replace(f":{os.getpid()}/", f":{pid}/")


def _running(cid: int, *, worker: str | None = None, heartbeat_age: float = 0) -> int:
    """A running run of the connection with the given owner and heartbeat age (seconds)."""
    run_id = s.run_request(cid)
    assert runs.claim(run_id)
    values = {"heartbeat_at": utcnow() - timedelta(seconds=heartbeat_age)}
    if worker is not None:
        values["worker"] = worker
    db.session.execute(update(SyncRun).where(SyncRun.id == run_id).values(**values))
    db.session.commit()
    return run_id


def test_claiming_records_the_owner(ctx, fake):
    cid = s.make_connection(fake)
    run_id = s.run_request(cid)
    assert s.get_run(run_id).worker is None
    assert runs.claim(run_id)
    worker = s.get_run(run_id).worker
    assert worker == owner.this_worker() and owner.is_local(worker) and owner.pid_of(worker) == os.getpid()
    assert owner.label(worker).endswith(f":{os.getpid()}") and not owner.owner_gone(worker)


def test_a_run_whose_owner_is_gone_is_reaped_at_once(ctx, fake):
    cid = s.make_connection(fake)
    pid = _dead_pid()
    run_id = _running(cid, worker=_worker(pid))  # its heartbeat is fresh: the lease alone would wait 5 minutes
    assert owner.staleness(s.get_run(run_id)).endswith("is gone")
    assert runs.reap_stale() == 1
    run = s.get_run(run_id)
    assert run.status == RunStatus.FAILED and run.finished_at is not None
    assert run.error == f"Abandoned: the process running it (pid {pid}) is gone. The next run completes the work."
    assert runs.reap_stale() == 0
    assert s.run(cid).status == RunStatus.SUCCEEDED  # the connection is free again


def test_a_queued_run_whose_requester_is_gone_is_cancelled(ctx, fake):
    cid = s.make_connection(fake)
    pid = _dead_pid()
    run, created = runs.request_run(cid, trigger="cli", own=True)
    assert created and run.worker == owner.this_worker()
    db.session.execute(update(SyncRun).where(SyncRun.id == run.id).values(worker=_worker(pid)))
    db.session.commit()
    [reaped] = owner.reap_abandoned()
    assert (reaped.run_id, reaped.was) == (run.id, RunStatus.QUEUED)
    assert s.get_run(run.id).error.startswith(f"Cancelled: the process that queued it (pid {pid}) is gone")


def test_live_owners_and_owners_elsewhere_wait_for_the_lease(ctx, fake):
    pid = _dead_pid()
    mine = _running(s.make_connection(fake, name="Mine"))  # this process: alive
    elsewhere = _running(s.make_connection(fake, name="Elsewhere"), worker=f"another-host:{pid}/1")
    other_container = _running(s.make_connection(fake, name="Container"),  # same host name, other pid namespace
                               worker=owner.this_worker().replace(f":{os.getpid()}/", f":{pid}/") + "9")
    unparsable = _running(s.make_connection(fake, name="Old"), worker="something else")
    assert runs.reap_stale() == 0
    assert [owner.staleness(s.get_run(r)) for r in (mine, elsewhere, other_container, unparsable)] == [None] * 4
    assert runs.reap_stale(utcnow() + timedelta(minutes=6)) == 4  # after the lease: reaped as before
    assert all(s.get_run(r).error.startswith("Abandoned: no sign of life for more than 5 minute(s)")
               for r in (mine, elsewhere, other_container, unparsable))


def test_a_zombie_owner_counts_as_gone():
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        deadline = time.monotonic() + 30
        while owner.pid_alive(child.pid):  # exited but not waited for: a zombie
            assert time.monotonic() < deadline, "the child never exited"
            time.sleep(0.02)
    finally:
        child.wait(timeout=30)
    assert not owner.pid_alive(child.pid) and owner.pid_alive(os.getpid()) and owner.pid_alive(1)


# ------------------------------------------------------------------------------------------ the command line


def test_erp_sync_reaps_a_stale_run_without_a_web_process_and_runs(app, fake):
    with app.app_context():
        cid = s.make_connection(fake)
        company_id, key, _ = s.link_company(fake, cid, name="Acme AS", phone="1")
        s.edit_company(company_id, phone="2")
        stale = _running(cid, heartbeat_age=600)  # its process hangs or died elsewhere: no sign of life for 10 min
    result = app.test_cli_runner().invoke(args=["erp", "sync", "--connection", "Fake ERP"])
    assert result.exit_code == 0, result.output
    assert f"Reaped run #{stale} of Fake ERP: Abandoned: no sign of life" in result.output
    assert "succeeded" in result.output and "is running" not in result.output
    assert fake.get_actor("Customer", key)["FieldValues"]["phone"] == "2"
    with app.app_context():
        assert s.get_run(stale).status == RunStatus.FAILED
        assert db.session.scalar(select(SyncRun).where(SyncRun.status.in_(("queued", "running")))) is None


def test_erp_sync_reaps_a_run_whose_process_is_gone_at_once(app, fake):
    with app.app_context():
        cid = s.make_connection(fake)
        pid = _dead_pid()
        dead = _running(cid, worker=_worker(pid))  # a killed `erp sync`: its heartbeat is only seconds old
    runner = app.test_cli_runner()
    result = runner.invoke(args=["erp", "sync"])
    assert result.exit_code == 0, result.output
    assert f"Reaped run #{dead} of Fake ERP: Abandoned: the process running it (pid {pid}) is gone" in result.output
    with app.app_context():
        assert s.get_run(dead).status == RunStatus.FAILED


def test_erp_status_shows_stale_runs_and_reaps_them(app, fake):
    with app.app_context():
        cid = s.make_connection(fake)
        stale = _running(cid, heartbeat_age=7 * 60 + 3)
        other = s.make_connection(fake, name="Second ERP")
        pid = _dead_pid()
        gone = _running(other, worker=_worker(pid))
    runner = app.test_cli_runner()
    look = runner.invoke(args=["erp", "status", "--no-reap"])
    assert look.exit_code == 0, look.output
    assert "Stale runs (no sign of life):" in look.output
    assert f"#{stale} Fake ERP sync: stale, heartbeat 7 min 3 s ago; not reaped" in look.output
    assert f"#{gone} Second ERP sync: stale, heartbeat " in look.output
    assert f"its process ({owner.label(_worker(pid))}) is gone" in look.output
    assert f"#{stale} sync stale" in look.output  # the connection's last run
    with app.app_context():
        assert {s.get_run(stale).status, s.get_run(gone).status} == {RunStatus.RUNNING}
    status = runner.invoke(args=["erp", "status"])
    assert status.exit_code == 0, status.output
    assert f"#{stale} Fake ERP sync: stale, heartbeat 7 min" in status.output and "reaped now: failed." in status.output
    with app.app_context():
        assert {s.get_run(stale).status, s.get_run(gone).status} == {RunStatus.FAILED}
    again = runner.invoke(args=["erp", "status"])
    assert "Stale runs" not in again.output and "was stale" not in again.output


def test_erp_status_shows_the_heartbeat_of_a_healthy_running_run(app, fake):
    with app.app_context():
        cid = s.make_connection(fake)
        run_id = _running(cid, heartbeat_age=12)
    result = app.test_cli_runner().invoke(args=["erp", "status"])
    assert result.exit_code == 0, result.output
    assert "Stale runs" not in result.output
    assert f"heartbeat 12 s ago, process {owner.label(owner.this_worker())}" in result.output
    with app.app_context():
        assert s.get_run(run_id).status == RunStatus.RUNNING


# ------------------------------------------------------------------------------------------------ web start


def test_the_startup_hook_reaps_but_not_under_other_cli_commands(app, fake):
    with app.app_context():
        cid = s.make_connection(fake)
        dead = _running(cid, worker=_worker(_dead_pid()))
    with click.Context(click.Command("init"), info_name="init"):
        assert reap_at_startup(app) == 0  # `flask --app wsgi init` may find no tables yet
    with app.app_context():
        assert s.get_run(dead).status == RunStatus.RUNNING
    with click.Context(click.Command("run"), info_name="run"):  # `flask --app wsgi run`
        assert reap_at_startup(app) == 1
    with app.app_context():
        assert s.get_run(dead).status == RunStatus.FAILED


def test_the_startup_hook_on_an_uninitialised_database_says_to_run_init(app_config, tmp_path, caplog):
    """``import wsgi`` before ``flask --app wsgi init``: one warning that says what to do, no "no such table"
    traceback, and the process goes on."""
    from portal import create_app

    empty = create_app({**app_config, "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'empty.db'}"}, environ={})
    with click.Context(click.Command("run"), info_name="run"), caplog.at_level("WARNING", logger="portal"):
        assert reap_at_startup(empty) == 0
    [warning] = [r for r in caplog.records if r.name == "portal"]
    assert "has no tables yet: run `flask --app wsgi init`" in warning.getMessage() and warning.exc_info is None
    assert "no such table" not in caplog.text


def test_the_startup_hook_on_an_unreachable_database_lets_the_web_process_start(app_config, tmp_path, caplog):
    """The database cannot be opened at all (a missing directory here; a PostgreSQL that is down): the hook logs
    and returns, it does not stop ``import wsgi``."""
    from portal import create_app

    url = f"sqlite:///{tmp_path / 'missing-directory' / 'portal.db'}"
    unreachable = create_app({**app_config, "SQLALCHEMY_DATABASE_URI": url}, environ={})
    with click.Context(click.Command("run"), info_name="run"), caplog.at_level("WARNING", logger="portal"):
        assert reap_at_startup(unreachable) == 0
    assert "could not reap abandoned sync runs at startup" in caplog.text


def test_a_web_process_reaps_at_start(app, fake, tmp_path):
    """``import wsgi`` (what gunicorn does) in a process of its own, scheduler off: the dead run is reaped."""
    url = app.config["SQLALCHEMY_DATABASE_URI"]
    with app.app_context():
        cid = s.make_connection(fake)
        pid = _dead_pid()
        dead = _running(cid, worker=_worker(pid))
        db.session.remove()
    env = {**os.environ, "PORTAL_DATABASE_URL": url, "PORTAL_ENCRYPTION_KEYS": app.config["ENCRYPTION_KEYS"][0],
           "PORTAL_SECRET_KEY": "web-start-test-secret-key", "PORTAL_SCHEDULER": "off", "PORTAL_DEMO_DATA": "off",
           "PORTAL_DEMO_ERP_DB": str(tmp_path / "demo.db"), "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", "import wsgi"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    with app.app_context():
        run = s.get_run(dead)
        assert run.status == RunStatus.FAILED and f"(pid {pid}) is gone" in run.error


def test_every_erp_command_says_when_there_is_no_connection_to_run_on(app):
    """``erp sync``, ``erp sync --dry-run`` and ``erp reconcile`` on a portal without an active connection: one line
    saying there is nothing to do, exit status 0."""
    runner = app.test_cli_runner()
    for args, doing in ((["erp", "sync"], "sync"), (["erp", "sync", "--dry-run"], "preview"),
                        (["erp", "reconcile"], "reconcile")):
        result = runner.invoke(args=args)
        assert result.exit_code == 0, result.output
        assert f"No active connection with an active actor type: nothing to {doing}." in result.output, args

"""The command line never leaves a queued or running run behind (docs/sync-engine.md §2): ``flask --app wsgi erp
sync`` as a real subprocess, against a temporary SQLite database and the fake connector over HTTP, is stopped by
SIGTERM or SIGINT mid-run, or has its output closed (``| true``, ``| head -1``) — it marks its run failed
("Cancelled: the command was interrupted (…)"), exits non-zero and prints no traceback. After ``kill -9`` (which
nothing can catch), the next command reaps the dead run at once, with no web process, and ``erp status`` shows it
as stale first. Every wait is bounded."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select

from portal import create_app
from portal.extensions import db
from portal.models import RunStatus, SyncRun
from tests import sync_support as s
from tests.fakes.connector_app import FakeConnector

ROOT = Path(__file__).resolve().parents[2]
FLASK = ROOT / ".venv" / "bin" / "flask"
FEED = "GetActorsByTimestamp"


@pytest.fixture(scope="module")
def fake():
    with FakeConnector() as server:
        yield server


@pytest.fixture
def setup(tmp_path, fake):
    """A portal database with a connection to the fake connector and one company to sync; yields (app, env,
    connection id, ERP key) — ``env`` makes ``flask --app wsgi`` use that database."""
    fake.reset()
    key = Fernet.generate_key().decode()
    config = {"TESTING": True, "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'cli.db'}",
              "INSTANCE_PATH": str(tmp_path / "instance"), "DEMO_ERP_DB": str(tmp_path / "demo.db"),
              "ENCRYPTION_KEYS": [key], "SECRET_KEY": "interrupt-test-secret-key", "SCHEDULER": False,
              "DEMO_DATA": False, "WTF_CSRF_ENABLED": False}
    app = create_app(config, environ={})
    with app.app_context():
        db.create_all()
        from portal.services.bootstrap import ensure_default_lists, sync_settings

        sync_settings()
        db.session.commit()
        ensure_default_lists()
        cid = s.make_connection(fake)
        company_id, erp_key, _ = s.link_company(fake, cid, name="Acme AS", phone="1")
        s.edit_company(company_id, phone="2")
        db.session.remove()
    env = {**os.environ, "PORTAL_DATABASE_URL": config["SQLALCHEMY_DATABASE_URI"], "PORTAL_ENCRYPTION_KEYS": key,
           "PORTAL_SECRET_KEY": config["SECRET_KEY"], "PORTAL_SCHEDULER": "off", "PORTAL_DEMO_DATA": "off",
           "PORTAL_DEMO_ERP_DB": config["DEMO_ERP_DB"], "PORTAL_CONNECTOR_TIMEOUT": "30"}
    env.pop("PYTHONWARNINGS", None)
    yield app, env, cid, erp_key
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


def _start(env, *args, stdout=subprocess.PIPE) -> subprocess.Popen:
    return subprocess.Popen([str(FLASK), "--app", "wsgi", "erp", *args], cwd=ROOT, env=env, stdout=stdout,
                            stderr=subprocess.PIPE, text=True)


def _finish(child: subprocess.Popen, seconds: float = 30) -> tuple[str, str]:
    try:
        out, err = child.communicate(timeout=seconds)
    except subprocess.TimeoutExpired:
        child.kill()
        child.communicate()
        raise
    return out or "", err or ""


def _runs(app) -> list[SyncRun]:
    with app.app_context():
        rows = db.session.scalars(select(SyncRun).order_by(SyncRun.id)).all()
        db.session.expunge_all()
        db.session.remove()
    return rows


def _wait_until_running(app, fake, child, seconds: float = 30) -> SyncRun:
    """Until the child's run is running and waiting on the (delayed) feed call."""
    deadline = time.monotonic() + seconds
    while True:
        assert child.poll() is None, _finish(child)
        running = [r for r in _runs(app) if r.status == RunStatus.RUNNING]
        if running and fake.calls_to(FEED):
            return running[0]
        assert time.monotonic() < deadline, "the sync never started"
        time.sleep(0.05)


def _nothing_active(app) -> None:
    assert [(r.id, r.status) for r in _runs(app) if r.status in (RunStatus.QUEUED, RunStatus.RUNNING)] == []


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_cancels_the_running_run(setup, fake, signum):
    app, env, _cid, erp_key = setup
    fake.delay(20, method=FEED, times=1)  # the ERP is slow: the run waits in its first connector call
    child = _start(env, "sync")
    try:
        run = _wait_until_running(app, fake, child)
        assert run.worker.split(":")[1].startswith(f"{child.pid}/")  # the command owns its run
        child.send_signal(signum)
        out, err = _finish(child, 20)
    finally:
        if child.poll() is None:
            child.kill()
    name = signal.Signals(signum).name
    assert child.returncode == 128 + signum, (out, err)
    assert "Traceback" not in err and f"Interrupted ({name}): run #{run.id} cancelled." in err
    [cancelled] = _runs(app)
    assert cancelled.status == RunStatus.FAILED
    assert cancelled.error == f"Cancelled: the command was interrupted ({name})."
    # nothing is left behind: the next sync runs at once and does the work
    fake.delay(0)
    out, err = _finish(_start(env, "sync"))
    assert "succeeded" in out and "Reaped" not in err, (out, err)
    assert fake.get_actor("Customer", erp_key)["FieldValues"]["phone"] == "2"
    _nothing_active(app)


def test_output_into_a_process_that_exited_leaves_no_queued_run(setup, fake):
    """``erp sync | true``: the reader is gone before the command writes its first line."""
    app, env, _cid, _key = setup
    read_end, write_end = os.pipe()
    reader = subprocess.Popen(["true"], stdin=read_end)
    os.close(read_end)
    reader.wait(timeout=30)
    try:
        child = _start(env, "sync", stdout=write_end)
    finally:
        os.close(write_end)
    _out, err = _finish(child)
    assert child.returncode == 141, err
    assert "Traceback" not in err and "Exception ignored" not in err
    assert "Interrupted (broken pipe: its output was closed): run #1 cancelled." in err
    [run] = _runs(app)
    assert run.status == RunStatus.FAILED and run.started_at is None  # it never started
    assert run.error == "Cancelled: the command was interrupted (broken pipe: its output was closed)."
    assert fake.calls_to(FEED) == []


def test_output_closed_while_the_run_works_cancels_it(setup, fake):
    """``erp sync | head -1``: the reader takes the first line and goes while the run is in a connector call; the
    command notices the closed pipe after that call's batch (or at its next line) and stops."""
    app, env, _cid, _key = setup
    fake.delay(1.5, method=FEED, times=1)
    child = _start(env, "sync")
    try:
        first = child.stdout.readline()
        assert first.startswith("Fake ERP: sync (run #1)"), first
        _wait_until_running(app, fake, child)
        child.stdout.close()  # head -1 exits
        deadline = time.monotonic() + 30
        while child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        err = child.stderr.read()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 141, err
    assert "Traceback" not in err and "Exception ignored" not in err
    _nothing_active(app)
    [run] = _runs(app)
    assert run.status in (RunStatus.FAILED, RunStatus.SUCCEEDED)  # stopped, or done before the pipe closed
    if run.status == RunStatus.FAILED:
        assert run.error == "Cancelled: the command was interrupted (broken pipe: its output was closed)."


def test_after_kill_9_status_shows_the_run_stale_and_the_next_sync_reaps_it(setup, fake):
    app, env, _cid, erp_key = setup
    fake.delay(20, method=FEED, times=1)
    child = _start(env, "sync")
    try:
        run = _wait_until_running(app, fake, child)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
    finally:
        if child.poll() is None:
            child.kill()
        child.communicate()
    assert child.returncode == -signal.SIGKILL
    [dead] = _runs(app)
    assert dead.status == RunStatus.RUNNING  # nothing could mark it: only the reaper can

    out, err = _finish(_start(env, "status", "--no-reap"))
    assert "Traceback" not in err
    assert f"#{run.id} Fake ERP sync: stale, heartbeat " in out and f"({child.pid}) is gone" not in out
    assert f":{child.pid}) is gone; not reaped (--no-reap)." in out
    assert [r.status for r in _runs(app)] == [RunStatus.RUNNING]

    fake.delay(0)
    sync = _start(env, "sync")
    out, err = _finish(sync)
    assert sync.returncode == 0, (out, err)
    assert (f"Reaped run #{run.id} of Fake ERP: Abandoned: the process running it (pid {child.pid}) is gone"
            in err)
    assert "is running" not in err and "succeeded" in out
    reaped, done = _runs(app)
    assert reaped.status == RunStatus.FAILED and done.status == RunStatus.SUCCEEDED
    assert fake.get_actor("Customer", erp_key)["FieldValues"]["phone"] == "2"

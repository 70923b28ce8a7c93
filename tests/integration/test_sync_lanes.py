"""Bulkheads in the scheduler (docs/sync-engine.md §2, "Scheduling"): every connection's run executes in its own
lane (job ``sync-connection-<id>`` on the ``sync`` executor), so a slow or hanging connection holds one thread and
the other connections' runs complete promptly; a connection whose lane is still busy is skipped (its run stays
queued) without APScheduler's "maximum number of running instances" — and the hub follow-ups still happen.

These tests start a real BackgroundScheduler (threads) on the test app; every wait is bounded."""

from __future__ import annotations

import logging
import threading
import time

import pytest
from apscheduler.events import EVENT_JOB_MAX_INSTANCES
from sqlalchemy import select

from jobs import scheduler
from portal.extensions import db
from portal.models import Link, RunKind, RunStatus, SyncRun
from portal.services.sync import engine, runs
from tests import sync_support as s
from tests.fakes.connector_app import FakeConnector


@pytest.fixture
def live_scheduler(app, monkeypatch):
    """``start(workers)`` -> (scheduler, max-instances events): a running scheduler with lanes, as start_scheduler
    builds it, whose jobs use the test app."""
    state = {"app": app, "scheduler": None, "lock": None, "lanes": None}
    monkeypatch.setattr(scheduler, "_state", state)
    started = []

    def start(workers: int):
        sched = scheduler.build_scheduler(workers)
        lanes = scheduler.Lanes(sched)
        events: list = []
        sched.add_listener(events.append, EVENT_JOB_MAX_INSTANCES)
        state.update(scheduler=sched, lanes=lanes)
        sched.start()
        started.append(sched)
        return sched, events

    yield start
    for sched in started:
        if sched.running:
            sched.shutdown(wait=True)


def _wait_for(app, predicate, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with app.app_context():
            if predicate():
                return True
        time.sleep(0.05)
    return False


def _status(run_id: int) -> str:
    return s.get_run(run_id).status


def _gate(monkeypatch, blocked: set[int]) -> threading.Event:
    """Runs of the ``blocked`` connections wait (in their lane, before claiming) until the returned Event is set:
    a connector that hangs."""
    release = threading.Event()
    original = engine.execute_run

    def gated(run_id, **kwargs):
        connection_id = db.session.get(SyncRun, run_id).connection_id
        db.session.commit()
        if connection_id in blocked:
            release.wait(30)
        return original(run_id, **kwargs)

    monkeypatch.setattr(engine, "execute_run", gated)
    return release


def test_hanging_connections_hold_only_their_own_lanes(app, fake, live_scheduler, monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="apscheduler")
    with FakeConnector() as second_fake, FakeConnector() as third_fake:
        with app.app_context():
            bad_one = s.make_connection(fake, name="Bad One")
            bad_two = s.make_connection(second_fake, name="Bad Two")
            good = s.make_connection(third_fake, name="Good ERP")
            company_id, key, _ = s.link_company(third_fake, good, name="Acme AS", phone="1")
            s.edit_company(company_id, phone="2")
            run_ids = [s.run_request(cid) for cid in (bad_one, bad_two, good)]
        release = _gate(monkeypatch, {bad_one, bad_two})
        sched, max_instances = live_scheduler(3)
        try:
            started = time.monotonic()
            assert scheduler.submit_cycle(run_ids)  # priority order: the two bad connections first
            assert _wait_for(app, lambda: _status(run_ids[2]) == RunStatus.SUCCEEDED, 10), \
                "the healthy connection's run was held up by the hanging ones"
            assert time.monotonic() - started < 10
            assert third_fake.get_actor("Customer", key)["FieldValues"]["phone"] == "2"
            assert scheduler.lanes().busy() == {bad_one, bad_two}
            with app.app_context():
                assert {_status(run_ids[0]), _status(run_ids[1])} == {RunStatus.QUEUED}

            # the dispatcher hands the waiting runs out again, twice: skipped (still queued), no max-instances
            assert scheduler.submit_cycle(run_ids[:2]) and scheduler.submit_cycle(run_ids[:2])
            # and the healthy connection keeps syncing meanwhile
            with app.app_context():
                s.edit_company(company_id, phone="3")
                again = s.run_request(good)
            assert scheduler.submit_cycle([again])
            assert _wait_for(app, lambda: _status(again) == RunStatus.SUCCEEDED, 10)
            assert third_fake.get_actor("Customer", key)["FieldValues"]["phone"] == "3"
            assert _wait_for(app, lambda: not [j for j in sched.get_jobs() if j.id.startswith("sync-cycle-")]
                             and len(scheduler.lanes().busy()) == 2, 5)
            with app.app_context():
                assert {_status(run_ids[0]), _status(run_ids[1])} == {RunStatus.QUEUED}
        finally:
            release.set()
        # the bad connections let go: their lanes finish the runs they held
        assert _wait_for(app, lambda: {_status(run_ids[0]), _status(run_ids[1])} == {RunStatus.SUCCEEDED}, 15)
        assert _wait_for(app, lambda: scheduler.lanes().busy() == set(), 5)
    assert max_instances == []
    assert "maximum number of running instances" not in caplog.text


def test_a_slow_connection_does_not_hold_up_the_cycle_and_still_gets_its_hub_followup(app, fake, live_scheduler,
                                                                                       monkeypatch):
    with FakeConnector() as other:
        with app.app_context():
            first = s.make_connection(fake, name="First ERP")  # highest priority, and slow
            second = s.make_connection(other, name="Second ERP")
            company_id, key1, _ = s.link_company(fake, first, name="Acme AS", phone="1", email="a@acme.example")
            _ghost, key2, link2 = s.link_company(other, second, name="Acme AS", phone="1", email="a@acme.example")
            link = db.session.get(Link, link2)
            link.crm_id = company_id
            db.session.commit()
            link.crm_synced_at = s.company(company_id).updated_at
            db.session.commit()
            for cid in (first, second):  # each connection has its CRM mark: a run reads what was saved before it
                assert s.run(cid).status == RunStatus.SUCCEEDED
            other.update_actor("Customer", key2, {"email": "second@acme.example"})
            run_ids = runs.dispatch_due()
            assert [s.get_run(r).connection_id for r in run_ids] == [first, second]
        fake.requests.clear()
        fake.delay(3, method="GetActorsByTimestamp", times=1)  # First ERP answers its feed 3 s late
        original = engine.execute_run

        def overlapping(run_id, **kwargs):  # Second's run starts once First's is reading its (slow) feed
            if db.session.get(SyncRun, run_id).connection_id == second:
                deadline = time.monotonic() + 5
                while not fake.calls_to("GetActorsByTimestamp") and time.monotonic() < deadline:
                    time.sleep(0.01)
            db.session.commit()
            return original(run_id, **kwargs)

        monkeypatch.setattr(engine, "execute_run", overlapping)
        live_scheduler(4)
        assert scheduler.submit_cycle(run_ids)
        assert _wait_for(app, lambda: _status(run_ids[1]) == RunStatus.SUCCEEDED, 2.5), \
            "the second connection waited for the slow first one"
        with app.app_context():
            assert _status(run_ids[0]) == RunStatus.RUNNING  # still reading its feed
            assert s.company(company_id).email == "second@acme.example"

        def followup_done():
            follow = db.session.scalar(select(SyncRun).where(SyncRun.connection_id == first,
                                                             SyncRun.trigger == "hub"))
            return follow is not None and follow.status == RunStatus.SUCCEEDED

        # First ERP's run started before Second's wrote into the CRM, so it could not see that change: the cycle
        # gives it a hub follow-up once it is done, which carries the e-mail on to First ERP
        assert _wait_for(app, followup_done, 20)
        with app.app_context():
            assert _status(run_ids[0]) == RunStatus.SUCCEEDED
            follow = db.session.scalar(select(SyncRun).where(SyncRun.trigger == "hub"))
            assert follow.kind == RunKind.SYNC and follow.worker  # claimed by this process, in a lane
        assert fake.get_actor("Customer", key1)["FieldValues"]["email"] == "second@acme.example"


def test_a_lane_that_never_started_leaves_its_run_queued_when_the_scheduler_stops(app, fake, live_scheduler,
                                                                                 monkeypatch):
    with FakeConnector() as other:
        with app.app_context():
            slow = s.make_connection(fake, name="Slow ERP")
            waiting = s.make_connection(other, name="Waiting ERP")
            run_ids = [s.run_request(slow), s.run_request(waiting)]
        release = _gate(monkeypatch, {slow})
        sched, _events = live_scheduler(1)  # one lane thread: the second run waits for it
        cycle_done = threading.Event()
        original_cycle = engine.execute_cycle

        def observed_cycle(*args, **kwargs):
            try:
                return original_cycle(*args, **kwargs)
            finally:
                cycle_done.set()

        monkeypatch.setattr(engine, "execute_cycle", observed_cycle)
        try:
            assert scheduler.submit_cycle(run_ids)
            assert _wait_for(app, lambda: scheduler.lanes().busy() == {slow, waiting}, 5)
            sched.shutdown(wait=False)  # the server stops while the second lane job waits for a thread
            assert scheduler.lanes().busy() == {slow}  # its Future was cancelled: the coordinator will not wait
        finally:
            release.set()
        assert cycle_done.wait(15), "the cycle waited forever for a lane job that could never run"
        assert _wait_for(app, lambda: _status(run_ids[0]) == RunStatus.SUCCEEDED, 15)
        with app.app_context():
            assert _status(run_ids[1]) == RunStatus.QUEUED  # handed out again by the next process's dispatcher

"""Many simultaneous requests for a sync of one connection make exactly one run (the partial unique index and
the conditional claim), and two dispatchers never queue the same scheduled slot twice."""

from __future__ import annotations

import threading
from collections import Counter

import pytest
from sqlalchemy import func, select

from portal.extensions import db
from portal.models import RunKind, RunStatus, SyncRun
from portal.services.sync import engine, runs
from tests import sync_support as s
from tests.conftest import login
from tests.fakes.connector_app import FakeConnector

THREADS = 20


@pytest.fixture
def linked(app, fake):
    with app.app_context():
        cid = s.make_connection(fake)
        company_id, key, link_id = s.link_company(fake, cid, name="Acme AS", phone="1")
        return {"connection": cid, "company": company_id, "key": key, "link": link_id}


def _together(app, count, work):
    """Run ``work(index)`` in ``count`` threads released at the same moment; returns results or exceptions."""
    barrier = threading.Barrier(count)
    results: list = [None] * count

    def target(index):
        with app.app_context():
            barrier.wait()
            try:
                results[index] = work(index)
            except Exception as exc:  # collected and asserted on by the test
                results[index] = exc
            finally:
                db.session.remove()

    threads = [threading.Thread(target=target, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


def test_simultaneous_requests_make_one_run(app, linked):
    results = _together(app, THREADS, lambda _i: (lambda r: (r[0].id, r[1]))(
        runs.request_run(linked["connection"], kind=RunKind.SYNC, trigger="manual")))
    assert not [r for r in results if isinstance(r, Exception)], results
    assert len({run_id for run_id, _created in results}) == 1
    assert sum(created for _run_id, created in results) == 1
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(SyncRun)) == 1


def test_simultaneous_sync_now_on_one_record_makes_one_run(app, fake, linked):
    fake.delay(0.5, method="GetActors")  # keep the first run busy while the others arrive
    with app.app_context():
        s.edit_company(linked["company"], phone="2")
    results = _together(app, THREADS, lambda _i: engine.sync_record(linked["link"]))
    fake.delay(0)
    kinds = Counter(type(r).__name__ for r in results)
    assert kinds == {"RecordSyncResult": 1, "RunBusy": THREADS - 1}, results
    [done] = [r for r in results if isinstance(r, engine.RecordSyncResult)]
    assert done.ok and [tuple(line) for line in done.to_erp] == [("Phone", "1", "2")]
    assert all("Sync now (one record)" in str(r) or "sync now" in str(r).lower()
               for r in results if isinstance(r, runs.RunBusy))
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(SyncRun)) == 1
    assert len(fake.calls_to("SaveActors")) == 1


def test_a_queued_run_is_claimed_and_executed_once(app, fake, linked):
    with app.app_context():
        s.edit_company(linked["company"], phone="3")
        run_id = s.run_request(linked["connection"])
    results = _together(app, 10, lambda _i: engine.execute_run(run_id).status)
    assert Counter(results) == {RunStatus.SUCCEEDED: 1, "not_claimed": 9}, results
    assert len(fake.calls_to("SaveActors")) == 1


def test_simultaneous_sync_all_now_posts_make_one_run_per_connection(app, users, fake, linked):
    with FakeConnector() as other:
        with app.app_context():
            second = s.make_connection(other, name="Second ERP")

        def post(_index):
            client = app.test_client()
            login(client, users["alice"])
            return client.post("/settings/sync/run-all", data={}, htmx=True).status_code

        statuses = _together(app, THREADS, post)
        assert statuses == [200] * THREADS
        with app.app_context():
            rows = db.session.scalars(select(SyncRun)).all()
            assert sorted(r.connection_id for r in rows) == sorted([linked["connection"], second])


def test_two_dispatchers_take_a_scheduled_slot_once(app, linked):
    results = _together(app, 8, lambda _i: runs.dispatch_due())
    assert not [r for r in results if isinstance(r, Exception)], results
    created = [run_id for run_ids in results for run_id in run_ids]
    assert len(created) == 1
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(SyncRun)) == 1

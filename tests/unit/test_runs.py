"""Run bookkeeping: requesting (idempotent), claiming, heartbeats, the reaper, the dispatcher, log retention —
and the small pure helpers of the engine."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select

from portal.database import utcnow
from portal.extensions import db
from portal.models import (
    ActorTypeConfig,
    Connection,
    Connector,
    RunKind,
    RunStatus,
    SyncChange,
    SyncRun,
    SyncSettings,
)
from portal.services.connectors import ServiceError
from portal.services.sync import context, runs
from portal.services.sync import plan as sync_plan


@pytest.fixture
def ctx(app):
    with app.app_context():
        yield


def _connection(name="ERP", *, active=True, actor_active=True) -> int:
    connector = Connector(name=f"{name} connector", url="http://127.0.0.1:9/erp")
    connection = Connection(connector=connector, name=name, guid=f"guid-{name}", active=active)
    connection.actor_types.append(ActorTypeConfig(erp_actor_type="Customer", crm_type="company",
                                                  is_active=actor_active))
    db.session.add(connection)
    db.session.commit()
    from portal.services.sync_settings import ensure_in_priority

    ensure_in_priority(connection.id)
    db.session.commit()
    return connection.id


# ---------------------------------------------------------------------------------------------- helpers


def test_stamp_key_orders_iso_times_and_integers():
    assert context.stamp_key("2026-11-25T17:02:06.123456Z") < context.stamp_key("2026-11-25T17:02:07Z")
    assert context.stamp_key("2026-11-25T18:00:00+01:00") == context.stamp_key("2026-11-25T17:00:00Z")
    assert context.stamp_key("9") < context.stamp_key("10")  # numerically, not as text
    assert max(["100", "99", "1000"], key=context.stamp_key) == "1000"


def test_changed_at_reads_iso_times_only():
    assert context.changed_at("2026-11-25T17:02:06.5Z") == datetime(2026, 11, 25, 17, 2, 6, 500000)
    assert context.changed_at("2026-11-25T19:02:06+02:00") == datetime(2026, 11, 25, 17, 2, 6)
    assert context.changed_at("12345") is None and context.changed_at("") is None and context.changed_at("x") is None


def test_retry_delay_grows_and_is_capped():
    for failures, ceiling in ((1, 60), (2, 120), (5, 960), (40, 6 * 3600)):
        for _ in range(20):
            delay = context.retry_delay(failures).total_seconds()
            assert ceiling / 2 <= delay <= ceiling


def test_requester_labels(ctx, users):
    from portal.models import User

    alice = db.session.get(User, users["alice"])
    assert runs.requester(alice) == (alice.id, "alice@example.com")
    assert runs.requester(users["bob"]) == (users["bob"], "bob@example.com")
    assert runs.requester("scheduler") == (None, "scheduler")
    assert runs.requester(None) == (None, "")


# ---------------------------------------------------------------------------------------------- lifecycle


def test_request_run_is_idempotent_while_a_run_is_active(ctx):
    cid = _connection()
    first, created = runs.request_run(cid, kind=RunKind.SYNC, trigger="manual", options={"no_blank": True})
    assert created and first.status == RunStatus.QUEUED and first.options == {"no_blank": True}
    again, created_again = runs.request_run(cid, kind=RunKind.RESYNC_FROM_CRM, trigger="manual")
    assert again.id == first.id and not created_again
    assert runs.claim(first.id)
    assert runs.request_run(cid, kind=RunKind.SYNC, trigger="manual") == (first, False)
    assert runs.finish(first.id, RunStatus.SUCCEEDED, message="done")
    new, created_new = runs.request_run(cid, kind=RunKind.SYNC, trigger="manual")
    assert created_new and new.id != first.id


def test_the_database_refuses_a_second_active_run(ctx):
    from sqlalchemy.exc import IntegrityError

    cid = _connection()
    runs.request_run(cid, kind=RunKind.SYNC, trigger="manual")
    db.session.add(SyncRun(connection_id=cid, kind=RunKind.SYNC, status=RunStatus.QUEUED))
    with pytest.raises(IntegrityError):
        db.session.commit()
    db.session.rollback()


def test_request_run_refuses_inactive_or_deleted_connections(ctx):
    inactive = _connection("Off", active=False)
    with pytest.raises(runs.RunRefused, match="Off is not active"):
        runs.request_run(inactive, kind=RunKind.SYNC, trigger="manual")
    run, created = runs.request_run(inactive, kind=RunKind.IMPORT, trigger="manual")
    assert created  # an import may run on an inactive connection
    with pytest.raises(runs.RunRefused, match="does not exist"):
        runs.request_run(9999, kind=RunKind.SYNC, trigger="manual")


def test_claim_heartbeat_and_finish_are_conditional(ctx):
    cid = _connection()
    run, _ = runs.request_run(cid, kind=RunKind.SYNC, trigger="manual")
    assert not runs.heartbeat(run.id)  # not running yet
    assert runs.claim(run.id) and not runs.claim(run.id)
    assert runs.heartbeat(run.id, progress_done=5, progress_total=10)
    assert runs.finish(run.id, RunStatus.PARTIAL, message="m", counts={"errors": 1})
    assert not runs.finish(run.id, RunStatus.SUCCEEDED)  # terminal stays terminal
    db.session.expire_all()
    run = db.session.get(SyncRun, run.id)
    assert (run.status, run.progress_done, run.counts) == (RunStatus.PARTIAL, 5, {"errors": 1})
    assert run.finished_at is not None and run.duration_seconds >= 0


def test_reaper_fails_runs_whose_heartbeat_stopped(ctx):
    fresh_id, stale_id = _connection("Fresh"), _connection("Stale")
    fresh, _ = runs.request_run(fresh_id, kind=RunKind.SYNC, trigger="manual")
    stale, _ = runs.request_run(stale_id, kind=RunKind.SYNC, trigger="manual")
    runs.claim(fresh.id)
    runs.claim(stale.id)
    db.session.get(SyncRun, stale.id).heartbeat_at = utcnow() - timedelta(minutes=10)
    db.session.commit()
    assert runs.reap_stale() == 1
    db.session.expire_all()
    assert db.session.get(SyncRun, fresh.id).status == RunStatus.RUNNING
    reaped = db.session.get(SyncRun, stale.id)
    assert reaped.status == RunStatus.FAILED and reaped.error.startswith("Abandoned")
    assert not runs.heartbeat(stale.id)  # the worker learns it lost the run


# ---------------------------------------------------------------------------------------------- dispatcher


def test_dispatch_due_queues_runs_in_priority_order_once_per_slot(ctx):
    first, second = _connection("First"), _connection("Second")
    _connection("No actor types", actor_active=False)
    _connection("Inactive", active=False)
    settings = db.session.get(SyncSettings, 1)
    settings.priority = [second, 0, first]
    settings.interval_seconds = 600
    db.session.commit()
    now = utcnow()
    queued = runs.dispatch_due(now)
    assert [db.session.get(SyncRun, r).connection_id for r in queued] == [second, first]
    assert all(db.session.get(SyncRun, r).trigger == "schedule" for r in queued)
    db.session.expire_all()
    assert db.session.get(SyncSettings, 1).next_due_at == now + timedelta(seconds=600)
    assert runs.dispatch_due(now + timedelta(seconds=1)) == []  # not due; the runs are fresh
    stale = runs.dispatch_due(now + timedelta(seconds=runs.STALE_QUEUED_SECONDS + 60))
    assert sorted(stale) == sorted(queued)  # queued runs nothing picked up are handed out again


def test_dispatch_due_does_nothing_when_automatic_sync_is_off(ctx):
    _connection()
    db.session.get(SyncSettings, 1).auto_sync = False
    db.session.commit()
    assert runs.dispatch_due() == []
    assert db.session.scalar(select(func.count()).select_from(SyncRun)) == 0
    assert runs.next_due_text() == "automatic sync is off"


# ---------------------------------------------------------------------------------------------- retention


def test_prune_log_deletes_old_entries_and_finished_runs(ctx):
    cid = _connection()
    old, _ = runs.request_run(cid, kind=RunKind.SYNC, trigger="manual")
    runs.claim(old.id)
    runs.finish(old.id, RunStatus.SUCCEEDED)
    long_ago = utcnow() - timedelta(days=100)
    db.session.get(SyncRun, old.id).finished_at = long_ago
    active, _ = runs.request_run(cid, kind=RunKind.SYNC, trigger="manual")
    db.session.add_all([
        SyncChange(run_id=old.id, connection_id=cid, crm_type="company", crm_id=1, direction="to_crm", at=long_ago),
        SyncChange(run_id=active.id, connection_id=cid, crm_type="company", crm_id=1, direction="to_crm"),
    ])
    db.session.commit()
    assert runs.prune_log() == 2
    assert [r.id for r in db.session.scalars(select(SyncRun))] == [active.id]
    assert db.session.scalar(select(func.count()).select_from(SyncChange)) == 1


def test_set_retention_validates(ctx):
    assert runs.set_retention(30).log_retention_days == 30
    for bad in (0, -1, 4000, "x", None):
        with pytest.raises(ServiceError):
            runs.set_retention(bad)
    assert db.session.get(SyncSettings, 1).log_retention_days == 30


# ---------------------------------------------------------------------------------------------- fast paths

from types import SimpleNamespace  # noqa: E402

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from portal.models import CrmFieldType  # noqa: E402
from portal.services.sync import fieldmap  # noqa: E402
from portal.services.sync.fieldmap import MappedField  # noqa: E402
from tests.sync_support import mapped_field  # noqa: E402

_LIST_MAP = {"NO": 1, "SE": 2, "SE2": 2, "DK": 3, "X": None, "7": 7}


_PLAN_FIELDS = [
    mapped_field("NAME", "Text", "name", CrmFieldType.TEXT),
    mapped_field("LABEL", "Label", "department", CrmFieldType.TEXT),
    mapped_field("COUNTRY", "List", "country_id", CrmFieldType.LIST, _LIST_MAP),
    mapped_field("LIMIT", "Double", "number", CrmFieldType.TEXT),
    mapped_field("STAFF", "Integer", "code", CrmFieldType.TEXT),
]
_ANY = st.one_of(st.none(), st.text(max_size=8), st.sampled_from(["", "NO", "SE", "SE2", "X", "7", "DK", "zz"]),
                 st.integers(-5, 10), st.floats(allow_nan=False, allow_infinity=False), st.booleans())


@settings(max_examples=300, deadline=None)
@given(values=st.fixed_dictionaries({f.erp_key: _ANY for f in _PLAN_FIELDS}))
def test_erp_fast_path_equals_fieldmap(values):
    plan = sync_plan.TypePlan("Customer", "company", _PLAN_FIELDS)
    assert sync_plan.erp_values(plan, values) == fieldmap.erp_side(values, _PLAN_FIELDS)
    subset = _PLAN_FIELDS[1:3]
    assert sync_plan.erp_values(plan, values, subset) == fieldmap.erp_side(values, subset)


@settings(max_examples=300, deadline=None)
@given(crm=st.fixed_dictionaries({"name": _ANY, "department": _ANY, "number": _ANY, "code": _ANY,
                                  "country_id": st.one_of(st.none(), st.integers(0, 9), st.text(max_size=2))}),
       current=st.one_of(st.none(), st.sampled_from(["NO", "SE", "SE2", "DK", "X", "7", "zz"])))
def test_crm_fast_path_equals_fieldmap(crm, current):
    plan = sync_plan.TypePlan("Customer", "company", _PLAN_FIELDS)
    row = SimpleNamespace(**crm)
    erp_now = {"COUNTRY": current}
    assert sync_plan.crm_values(plan, row, erp_now) == fieldmap.crm_side(row, _PLAN_FIELDS, erp_now)


_SIZED_FIELDS = [
    MappedField(erp_key="NAME", erp_type="Text", erp_label="Name", erp_max_length=5, crm_key="name",
                crm_type=CrmFieldType.TEXT, crm_label="Name", crm_max_length=6, to_crm=True, to_erp=True,
                read_only=False, list_map={}),
    *_PLAN_FIELDS[1:],
]


@settings(max_examples=300, deadline=None)
@given(values=st.dictionaries(st.sampled_from([f.erp_key for f in _SIZED_FIELDS] + ["OTHER"]), _ANY))
def test_write_fast_paths_equal_fieldmap(values):
    plan = sync_plan.TypePlan("Customer", "company", _SIZED_FIELDS)
    assert sync_plan.to_crm_values(plan, values) == fieldmap.to_crm_values(values, _SIZED_FIELDS)
    assert sync_plan.check_erp_values(plan, values) == fieldmap.check_erp_values(values, _SIZED_FIELDS)

"""The CRM side's mark (``Connection.crm_cursors``) against the FakeConnector over HTTP on 127.0.0.1: the first
run examines every link and stores the mark (start of the run minus ``CRM_LOOKBACK``); later runs only look at
records saved between the mark and their own start, plus links whose retry is due; the look-back catches a transaction that committed
late; a failed run leaves the mark alone; ``pending_crm_changes`` (hub follow-ups) honours it."""

from __future__ import annotations

import time
from datetime import datetime, timedelta

import pytest
from sqlalchemy import update

from portal.connectors.service import ProtocolError
from portal.database import utcnow
from portal.extensions import db
from portal.models import Company, Connection, Link, RunStatus
from portal.services.sync import crm_changes, engine
from tests import sync_support as s


@pytest.fixture
def ctx(app):
    with app.app_context():
        yield app


def _erp(fake, key, actor_type="Customer"):
    return fake.get_actor(actor_type, key)["FieldValues"]


def _marks(connection_id: int) -> dict:
    db.session.expire_all()
    return dict(db.session.get(Connection, connection_id).crm_cursors or {})


def _mark(connection_id: int, actor_type: str = "Customer") -> datetime:
    return datetime.fromisoformat(_marks(connection_id)[actor_type])


def _set_marks(connection_id: int, marks: dict) -> None:
    connection = db.session.get(Connection, connection_id)
    connection.crm_cursors = dict(marks)
    db.session.commit()


def _save_company_at(company_id: int, updated_at: datetime, **values) -> None:
    """Write a company in plain SQL with the given updated_at (a transaction that stamped it earlier)."""
    db.session.execute(update(Company).where(Company.id == company_id).values(updated_at=updated_at, **values))
    db.session.commit()


def _set_link(link_id: int, **values) -> None:
    db.session.execute(update(Link).where(Link.id == link_id).values(**values))
    db.session.commit()


def _connector_methods(fake) -> list[str]:
    return [method for method, _body in fake.calls]


def _erp_feed_past(fake, connection_id: int) -> None:
    """Move the ERP cursor past the linked actors (to a later, unlinked actor), so that the inclusive feed no
    longer repeats them and only the CRM phase can bring a link in."""
    stamp = fake.get_actor("Customer", fake.add_actor("Customer", {"name": "Unlinked AS"}))["LastModified"]
    connection = db.session.get(Connection, connection_id)
    connection.cursors = {**(connection.cursors or {}), "Customer": stamp}
    db.session.commit()


# ------------------------------------------------------------------------------------------ the first run


def test_the_lookback_is_ten_minutes():
    assert timedelta(minutes=10) == crm_changes.CRM_LOOKBACK


def test_the_first_run_examines_every_link_and_stores_the_mark(ctx, fake):
    cid = s.make_connection(fake)
    company_id, key, link_id = s.link_company(fake, cid, name="Acme AS", phone="1")
    # saved long ago, but after its link's last sync: only a full scan finds it
    long_ago = utcnow() - timedelta(days=2)
    _set_link(link_id, crm_synced_at=long_ago - timedelta(hours=1))
    _save_company_at(company_id, long_ago, phone="2")
    assert _marks(cid) == {}
    before = utcnow()
    outcome = s.run(cid)
    after = utcnow()
    assert outcome.status == RunStatus.SUCCEEDED, outcome.message
    assert _erp(fake, key)["phone"] == "2" and outcome.counts["crm_changes"] == 1
    assert list(_marks(cid)) == ["Customer"]
    mark = _mark(cid)
    assert before - crm_changes.CRM_LOOKBACK <= mark <= after - crm_changes.CRM_LOOKBACK
    assert mark == s.get_run(outcome.run_id).started_at - crm_changes.CRM_LOOKBACK


def test_every_active_actor_type_gets_its_own_mark(ctx, fake):
    cid = s.make_connection(fake, actor_types=("Customer", "Supplier"))
    s.link_company(fake, cid, name="Customer AS")
    s.link_company(fake, cid, actor_type="Supplier", name="Supplier AS")
    before = utcnow()
    assert s.run(cid).status == RunStatus.SUCCEEDED
    marks = _marks(cid)
    assert set(marks) == {"Customer", "Supplier"}
    for actor_type in marks:
        assert before - crm_changes.CRM_LOOKBACK <= _mark(cid, actor_type) <= utcnow() - crm_changes.CRM_LOOKBACK


# -------------------------------------------------------------------------------------------- with a mark


def test_with_a_mark_an_edit_after_it_flows_to_the_erp(ctx, fake):
    cid = s.make_connection(fake)
    linked = [s.link_company(fake, cid, name=f"Company {n}", phone="1") for n in range(10)]
    assert s.run(cid).status == RunStatus.SUCCEEDED
    first_mark = _mark(cid)
    company_id, key, link_id = linked[4]
    s.edit_company(company_id, phone="2")
    assert s.company(company_id).updated_at > first_mark
    outcome = s.run(cid)
    assert outcome.status == RunStatus.SUCCEEDED, outcome.message
    assert _erp(fake, key)["phone"] == "2"
    assert outcome.counts["crm_changes"] == 1 and outcome.counts["records"] == 1 and outcome.counts["to_erp"] == 1
    assert [_erp(fake, k)["phone"] for _c, k, _l in linked] == ["1"] * 4 + ["2"] + ["1"] * 5
    assert s.get_link(link_id).crm_synced_at == s.company(company_id).updated_at
    assert _mark(cid) > first_mark
    # the record was saved after the new mark too, but its link has synced it: nothing to do
    assert s.company(company_id).updated_at > _mark(cid)
    fake.requests.clear()
    again = s.run(cid)
    assert again.counts.get("records", 0) == 0 and again.counts.get("crm_changes", 0) == 0
    assert _connector_methods(fake) == ["GetActorsByTimestamp"]


def _edit_behind_the_mark(fake) -> tuple[int, str, int, datetime]:
    """A linked company synced once, then saved (phone 1 -> 2) before the connection's new CRM mark but after its
    link's last sync: the old full scan would take it, the mark does not. Returns (connection, key, link, mark)."""
    cid = s.make_connection(fake)
    company_id, key, link_id = s.link_company(fake, cid, name="Acme AS", phone="1")
    assert s.run(cid).status == RunStatus.SUCCEEDED
    mark = _mark(cid)
    _set_link(link_id, crm_synced_at=mark - timedelta(hours=1))
    _save_company_at(company_id, mark - timedelta(minutes=1), phone="2")
    return cid, key, link_id, mark


def test_the_records_a_run_writes_from_the_erp_are_not_read_back(ctx, fake, monkeypatch):
    cid = s.make_connection(fake)
    from_erp, erp_key, _l = s.link_company(fake, cid, name="From ERP AS", phone="1")
    from_crm, _k, _l = s.link_company(fake, cid, name="From CRM AS", phone="1")
    assert s.run(cid).status == RunStatus.SUCCEEDED
    fake.update_actor("Customer", erp_key, {"phone": "2"})
    s.edit_company(from_crm, phone="3")
    read: list[int] = []
    saved_since = crm_changes.records_saved_since

    def spy(*args, **kwargs):
        for ids in saved_since(*args, **kwargs):
            read.extend(ids)
            yield ids

    monkeypatch.setattr(crm_changes, "records_saved_since", spy)
    outcome = s.run(cid)
    assert outcome.status == RunStatus.SUCCEEDED, outcome.message
    assert s.company(from_erp).phone == "2" and outcome.counts["erp_changes"] == outcome.counts["crm_changes"] == 1
    assert s.company(from_erp).updated_at > s.get_run(outcome.run_id).started_at
    assert read == [from_crm]  # the company written from the ERP feed in this run is not read again


def test_a_record_saved_after_the_run_started_is_left_to_the_next_run(ctx, fake):
    cid = s.make_connection(fake)
    company_id, key, _l = s.link_company(fake, cid, phone="1")
    assert s.run(cid).status == RunStatus.SUCCEEDED
    # stamped a little after the next run starts, as by a user saving while that run works
    _save_company_at(company_id, utcnow() + timedelta(seconds=1.5), phone="2")
    first = s.run(cid)
    assert first.status == RunStatus.SUCCEEDED and first.counts.get("crm_changes", 0) == 0
    assert _erp(fake, key)["phone"] == "1" and _mark(cid) < s.company(company_id).updated_at
    while utcnow() <= s.company(company_id).updated_at:
        time.sleep(0.1)
    second = s.run(cid)
    assert second.status == RunStatus.SUCCEEDED and second.counts["crm_changes"] == 1
    assert _erp(fake, key)["phone"] == "2"


def test_a_record_saved_before_the_mark_is_not_looked_at_unless_its_retry_is_due(ctx, fake):
    cid, key, link_id, mark = _edit_behind_the_mark(fake)
    fake.requests.clear()
    outcome = s.run(cid)
    assert outcome.status == RunStatus.SUCCEEDED
    assert outcome.counts.get("crm_changes", 0) == 0 and outcome.counts.get("records", 0) == 0
    assert _erp(fake, key)["phone"] == "1"
    assert _connector_methods(fake) == ["GetActorsByTimestamp"]
    assert s.get_link(link_id).crm_synced_at == mark - timedelta(hours=1)
    # a retry that is due brings the link in regardless of the mark (in the CRM phase: the ERP feed has moved on)
    _erp_feed_past(fake, cid)
    _set_link(link_id, retry_at=utcnow() - timedelta(minutes=1), failures=1)
    outcome = s.run(cid)
    assert outcome.status == RunStatus.SUCCEEDED, outcome.message
    assert _erp(fake, key)["phone"] == "2" and outcome.counts["crm_changes"] == 1
    link = s.get_link(link_id)
    assert link.retry_at is None and link.failures == 0
    assert link.crm_synced_at == mark - timedelta(minutes=1) and link.base["phone"] == "2"


def test_a_retry_that_is_not_due_yet_waits(ctx, fake):
    cid, key, link_id, _mark_time = _edit_behind_the_mark(fake)
    _erp_feed_past(fake, cid)
    _set_link(link_id, retry_at=utcnow() + timedelta(hours=1), failures=1)
    outcome = s.run(cid)
    assert outcome.counts.get("crm_changes", 0) == 0 and _erp(fake, key)["phone"] == "1"
    assert s.get_link(link_id).failures == 1


def test_without_a_mark_the_full_scan_comes_back(ctx, fake):
    cid, key, _link_id, mark = _edit_behind_the_mark(fake)
    assert s.run(cid).counts.get("crm_changes", 0) == 0
    _set_marks(cid, {"Customer": "not a time"})  # unreadable: treated as no mark
    outcome = s.run(cid)
    assert outcome.counts["crm_changes"] == 1 and _erp(fake, key)["phone"] == "2"
    assert _mark(cid) > mark


def test_records_saved_at_the_same_moment_are_paged_without_losing_any(app, ctx, fake):
    app.config.update(SYNC_BATCH_SIZE=2)
    cid = s.make_connection(fake)
    linked = [s.link_company(fake, cid, name=f"Company {n}", phone="1") for n in range(5)]
    assert s.run(cid).status == RunStatus.SUCCEEDED
    moment = utcnow()
    unlinked = []
    for n in range(3):  # CRM records of no link, saved at the same moment, in between
        record = Company(name=f"Unlinked {n}")
        db.session.add(record)
        db.session.flush()
        unlinked.append(record.id)
    db.session.commit()
    for number, (company_id, _key, _link) in enumerate(linked):
        _save_company_at(company_id, moment, phone=f"7{number}")
        if number < len(unlinked):
            _save_company_at(unlinked[number], moment, phone="0")
    outcome = s.run(cid)
    assert outcome.status == RunStatus.SUCCEEDED, outcome.message
    assert [_erp(fake, key)["phone"] for _c, key, _l in linked] == ["70", "71", "72", "73", "74"]
    assert outcome.counts["crm_changes"] == 5 and outcome.counts["to_erp"] == 5


# ----------------------------------------------------------------------------------------------- look-back


def _late_commit_setup(fake):
    """A linked company last synced an hour ago, a first run, then a save stamped a minute before that run
    started but committed after it (a transaction that was still open while the pass read the table)."""
    cid = s.make_connection(fake)
    company_id, key, link_id = s.link_company(fake, cid, name="Acme AS", phone="1")
    an_hour_ago = utcnow() - timedelta(hours=1)
    _save_company_at(company_id, an_hour_ago)
    _set_link(link_id, crm_synced_at=an_hour_ago)
    first = s.run(cid)
    assert first.status == RunStatus.SUCCEEDED and first.counts.get("crm_changes", 0) == 0
    started = s.get_run(first.run_id).started_at
    _save_company_at(company_id, started - timedelta(minutes=1), phone="2")
    return cid, company_id, key, link_id, started


def test_a_save_that_committed_after_the_pass_started_is_caught_by_the_lookback(ctx, fake):
    cid, company_id, key, link_id, started = _late_commit_setup(fake)
    assert _mark(cid) < started - timedelta(minutes=1) < started
    outcome = s.run(cid)
    assert outcome.status == RunStatus.SUCCEEDED, outcome.message
    assert _erp(fake, key)["phone"] == "2" and outcome.counts["crm_changes"] == 1
    assert s.get_link(link_id).crm_synced_at == started - timedelta(minutes=1)


def test_without_the_lookback_that_save_would_be_missed(ctx, fake, monkeypatch):
    """The control of the test above: it is the look-back that catches the late commit."""
    monkeypatch.setattr(crm_changes, "CRM_LOOKBACK", timedelta(0))
    cid, _company_id, key, _link_id, started = _late_commit_setup(fake)
    assert _mark(cid) >= started
    outcome = s.run(cid)
    assert outcome.counts.get("crm_changes", 0) == 0 and _erp(fake, key)["phone"] == "1"


# ------------------------------------------------------------------------------------------ failed runs


def _crash_on(fake, monkeypatch, method: str, actor_type: str | None = None) -> None:
    original = getattr(fake.service, method)

    def crashing(body):
        if actor_type is None or body.get("ActorType") == actor_type:
            raise ProtocolError("The ERP crashed.", "boom", "INTERNAL_ERROR")
        return original(body)

    monkeypatch.setattr(fake.service, method, crashing)


@pytest.mark.parametrize("fault", ["read fails", "save fails"])
def test_a_run_that_fails_in_the_crm_phase_keeps_the_mark_and_the_next_run_syncs(ctx, fake, monkeypatch, fault):
    cid = s.make_connection(fake)
    company_id, key, link_id = s.link_company(fake, cid, name="Acme AS", phone="1")
    assert s.run(cid).status == RunStatus.SUCCEEDED
    # the last complete pass started an hour ago; the edit is from half an hour ago: a mark moved by the failed
    # run (to its start minus the look-back) would hide it for good
    old_mark = (utcnow() - timedelta(hours=1)).isoformat()
    _set_marks(cid, {"Customer": old_mark})
    _set_link(link_id, crm_synced_at=utcnow() - timedelta(hours=2))
    _save_company_at(company_id, utcnow() - timedelta(minutes=30), phone="2")
    if fault == "read fails":
        fake.reply_error("GetActors", "The ERP is down.", error_code="INTERNAL_ERROR")
    else:
        _crash_on(fake, monkeypatch, "SaveActors")
    outcome = s.run(cid)
    assert outcome.status == RunStatus.FAILED
    assert outcome.error == ("The ERP is down." if fault == "read fails" else "The ERP crashed.")
    assert outcome.counts["crm_changes"] == 1  # it failed in the CRM phase
    assert _erp(fake, key)["phone"] == "1"
    assert _marks(cid) == {"Customer": old_mark}
    fake.clear_faults()
    monkeypatch.undo()
    outcome = s.run(cid)
    assert outcome.status == RunStatus.SUCCEEDED, outcome.message
    assert _erp(fake, key)["phone"] == "2" and outcome.counts["crm_changes"] == 1
    assert _mark(cid) > datetime.fromisoformat(old_mark)


def test_a_run_that_fails_in_the_feed_keeps_the_mark(ctx, fake):
    cid = s.make_connection(fake)
    s.link_company(fake, cid, name="Acme AS")
    assert s.run(cid).status == RunStatus.SUCCEEDED
    marks = _marks(cid)
    fake.reply_error("GetActorsByTimestamp", "The ERP is down.", error_code="INTERNAL_ERROR")  # the first call
    outcome = s.run(cid)
    assert outcome.status == RunStatus.FAILED and outcome.error == "The ERP is down."
    assert _marks(cid) == marks


def test_a_failure_in_one_actor_type_keeps_only_its_mark(ctx, fake, monkeypatch):
    cid = s.make_connection(fake, actor_types=("Customer", "Supplier"))
    assert [c.erp_actor_type for c in db.session.get(Connection, cid).actor_types] == ["Customer", "Supplier"]
    customer, customer_key, _ = s.link_company(fake, cid, name="Customer AS", phone="1")
    supplier, supplier_key, _ = s.link_company(fake, cid, actor_type="Supplier", name="Supplier AS", phone="1")
    assert s.run(cid).status == RunStatus.SUCCEEDED
    old_mark = (utcnow() - timedelta(hours=1)).isoformat()
    _set_marks(cid, {"Customer": old_mark, "Supplier": old_mark})
    s.edit_company(customer, phone="2")
    s.edit_company(supplier, phone="2")
    _crash_on(fake, monkeypatch, "GetActors", actor_type="Supplier")
    outcome = s.run(cid)
    assert outcome.status == RunStatus.FAILED and outcome.error == "The ERP crashed."
    assert _erp(fake, customer_key)["phone"] == "2" and _erp(fake, supplier_key, "Supplier")["phone"] == "1"
    marks = _marks(cid)
    assert marks["Supplier"] == old_mark
    assert datetime.fromisoformat(marks["Customer"]) > datetime.fromisoformat(old_mark)
    monkeypatch.undo()
    outcome = s.run(cid)
    assert outcome.status == RunStatus.SUCCEEDED, outcome.message
    assert _erp(fake, supplier_key, "Supplier")["phone"] == "2" and outcome.counts["crm_changes"] == 1
    assert datetime.fromisoformat(_marks(cid)["Supplier"]) > datetime.fromisoformat(old_mark)


# ------------------------------------------------------------------------------------ pending_crm_changes


def test_pending_crm_changes_honours_the_mark(ctx, fake):
    cid = s.make_connection(fake)
    company_id, _key, link_id = s.link_company(fake, cid, name="Acme AS", phone="1")
    other_id, _other_key, _ = s.link_company(fake, cid, name="Other AS")
    assert s.run(cid).status == RunStatus.SUCCEEDED
    mark = _mark(cid)
    assert engine.pending_crm_changes(cid) is False  # nothing changed since
    # saved before the mark (newer than its link's last sync): not a change under the mark …
    _set_link(link_id, crm_synced_at=mark - timedelta(hours=1))
    _save_company_at(company_id, mark - timedelta(minutes=1), phone="2")
    assert engine.pending_crm_changes(cid) is False
    # … though it is one without a mark
    _set_marks(cid, {})
    assert engine.pending_crm_changes(cid) is True
    _set_marks(cid, {"Customer": mark.isoformat()})
    # an edit after the mark is
    s.edit_company(other_id, phone="3")
    assert engine.pending_crm_changes(cid) is True
    assert s.run(cid).counts["crm_changes"] == 1
    assert engine.pending_crm_changes(cid) is False


def test_pending_crm_changes_ignores_records_saved_after_the_mark_that_are_synced_or_unlinked(ctx, fake):
    cid = s.make_connection(fake)
    company_id, _key, _link = s.link_company(fake, cid, name="Acme AS")
    s.edit_company(company_id, phone="2")
    assert s.run(cid).counts["to_erp"] == 1
    assert s.company(company_id).updated_at > _mark(cid)  # saved after the mark, but synced
    db.session.add(Company(name="Not linked"))
    db.session.commit()
    assert engine.pending_crm_changes(cid) is False

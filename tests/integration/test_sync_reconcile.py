"""The reconcile pass (docs/sync-engine.md, "Reconcile") against the FakeConnector over HTTP: drift repaired by the
merge rules and logged, deleted actors and broken links, paging, the dry run, the run lock, the schedule, the CLI
and the Sync tab setting."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select, text

from portal.database import utcnow
from portal.extensions import db
from portal.models import (
    AuditEvent,
    Company,
    Connection,
    Link,
    RunKind,
    RunStatus,
    SyncChange,
    SyncJournal,
    SyncRun,
    SyncSettings,
)
from portal.services.connectors import ServiceError
from portal.services.sync import engine, reconcile, runs
from tests import sync_support as s


@pytest.fixture
def ctx(app):
    with app.app_context():
        yield app


def _erp(fake, key):
    return fake.get_actor("Customer", key)["FieldValues"]


def _crm_behind_the_back(company_id: int, **values) -> None:
    """Change a CRM record by SQL: its updated_at does not move, so no incremental sync will ever look at it."""
    for column, value in values.items():
        db.session.execute(text(f"UPDATE company SET {column} = :value WHERE id = :id"),
                           {"value": value, "id": company_id})
    db.session.commit()


def _erp_behind_the_back(fake, key: str, **values) -> None:
    """Change an ERP actor without moving its LastModified: the feed (GetActorsByTimestamp) never reports it."""
    with fake.service.lock:
        fake.service.actors["Customer"][key]["FieldValues"].update(values)


def _marks(cid: int) -> tuple[dict, dict]:
    db.session.expire_all()
    connection = db.session.get(Connection, cid)
    return dict(connection.cursors or {}), dict(connection.crm_cursors or {})


# ---------------------------------------------------------------------------------------------- the pass


def test_reconcile_repairs_drift_both_ways_by_the_merge_rules_and_logs_it(ctx, fake):
    cid = s.make_connection(fake)
    crm_drift, crm_key, crm_link = s.link_company(fake, cid, name="CRM drift", phone="111")
    erp_drift, erp_key, _ = s.link_company(fake, cid, name="ERP drift", email="old@erp.example")
    calm, calm_key, _ = s.link_company(fake, cid, name="Calm", phone="5")
    assert s.run(cid).counts.get("records", 0) == 0  # the normal sync: one feed call, nothing to look at
    _crm_behind_the_back(crm_drift, phone="222")
    _erp_behind_the_back(fake, erp_key, email="new@erp.example")
    assert s.run(cid).counts.get("records", 0) == 0  # … and it does not see the drift either
    marks = _marks(cid)
    fake.requests.clear()

    outcome = s.run(cid, RunKind.RECONCILE)

    assert outcome.status == RunStatus.SUCCEEDED, outcome.message
    assert _erp(fake, crm_key)["phone"] == "222"  # only the CRM moved away from the base: CRM -> ERP
    assert s.company(erp_drift).email == "new@erp.example"  # only the ERP did: ERP -> CRM
    assert s.company(calm).phone == "5" and _erp(fake, calm_key)["phone"] == "5"
    c = outcome.counts
    assert (c["records"], c["drift_repaired"], c["to_crm"], c["to_erp"]) == (3, 2, 1, 1)
    assert "Reconciled 3 links with Fake ERP: 2 records had drifted and were repaired" in outcome.message
    assert [m for m, _ in fake.calls if m != "SaveActors"] == ["GetActors"]  # one read for the batch, no feed
    run = s.get_run(outcome.run_id)
    assert run.kind == "reconcile" and run.status == RunStatus.SUCCEEDED and run.counts["drift_repaired"] == 2
    logged = {(ch.direction, ch.crm_id, ch.erp_field_key, ch.old_value, ch.new_value)
              for ch in s.changes(outcome.run_id)}
    assert logged == {("to_erp", crm_drift, "phone", "111", "222"),
                      ("to_crm", erp_drift, "email", "old@erp.example", "new@erp.example")}
    assert s.get_link(crm_link).base["phone"] == "222"
    assert _marks(cid) == marks  # neither the feed cursor nor the CRM mark moved
    again = s.run(cid, RunKind.RECONCILE)
    assert again.counts.get("drift_repaired", 0) == 0 and s.changes(again.run_id) == []
    assert again.message == "Reconciled 3 links with Fake ERP: both sides agree."


def test_drift_on_both_sides_of_one_field_is_a_conflict_settled_by_the_policy(ctx, fake):
    cid = s.make_connection(fake)
    company_id, key, _ = s.link_company(fake, cid, name="Acme AS", phone="1")
    _crm_behind_the_back(company_id, phone="2")
    _erp_behind_the_back(fake, key, phone="3")
    outcome = s.run(cid, RunKind.RECONCILE)
    assert s.company(company_id).phone == "2" and _erp(fake, key)["phone"] == "2"  # priority: the CRM is above
    [conflict] = s.changes(outcome.run_id, conflict=True)
    assert (conflict.direction, conflict.new_value, conflict.other_value) == ("to_erp", "2", "3")
    assert conflict.rule == "CRM wins (sync priority: CRM above Fake ERP)"
    assert outcome.counts["conflicts"] == 1 and "1 conflict settled" in outcome.message


def test_a_deleted_actor_becomes_a_broken_link_and_comes_back_when_the_erp_has_it_again(ctx, fake):
    cid = s.make_connection(fake)
    company_id, key, link_id = s.link_company(fake, cid, name="Acme AS", phone="1")
    s.link_company(fake, cid, name="Other AS")
    values = _erp(fake, key)
    fake.delete_actor("Customer", key)
    assert s.run(cid).counts.get("broken", 0) == 0  # the feed cannot report a deletion

    broken = s.run(cid, RunKind.RECONCILE)
    assert broken.status == RunStatus.PARTIAL and broken.counts["broken"] == 1
    assert "1 link broken (deleted in the ERP)" in broken.message
    link = s.get_link(link_id)
    assert link.status == "broken" and "no longer has Customer" in link.status_message
    assert s.company(company_id).name == "Acme AS"  # the CRM record is kept
    [logged] = s.changes(broken.run_id)
    assert logged.direction == "error" and "broken" in logged.rule

    still = s.run(cid, RunKind.RECONCILE)  # still gone: counted, not logged again
    assert still.status == RunStatus.SUCCEEDED and still.counts["still_broken"] == 1
    assert "1 link still broken" in still.message and s.changes(still.run_id) == []

    fake.add_actor("Customer", {**values, "phone": "9"}, erp_key=key)  # the ERP has it again (changed meanwhile)
    back = s.run(cid, RunKind.RECONCILE)
    assert back.status == RunStatus.SUCCEEDED and back.counts["restored"] == 1
    assert "1 broken link restored" in back.message
    link = s.get_link(link_id)
    assert link.status == "ok" and link.status_message == "" and link.base["phone"] == "9"
    assert s.company(company_id).phone == "9"


def test_reconcile_pages_by_link_with_one_get_actors_per_batch_and_reports_progress(ctx, fake, app):
    app.config.update(SYNC_BATCH_SIZE=3)
    cid = s.make_connection(fake)
    keys = [s.link_company(fake, cid, name=f"Company {n}")[1] for n in range(10)]
    fake.requests.clear()
    seen = []
    the_run = s.run_request(cid, RunKind.RECONCILE)
    outcome = engine.execute_run(the_run, on_progress=lambda done, total, counts: seen.append((done, total)))
    assert outcome.status == RunStatus.SUCCEEDED
    reads = fake.calls_to("GetActors")
    assert len(reads) == math.ceil(10 / 3) == 4 and [m for m, _ in fake.calls] == ["GetActors"] * 4
    assert all(len(body["ErpKeys"]) <= 3 for body in reads)
    assert sorted(k for body in reads for k in body["ErpKeys"]) == sorted(keys)  # each link read once
    assert seen == [(3, 10), (6, 10), (9, 10), (10, 10)]
    run = s.get_run(outcome.run_id)
    assert (run.progress_done, run.progress_total, run.counts["records"]) == (10, 10, 10)


def test_a_person_moved_in_the_erp_behind_the_feed_moves_the_contact(ctx, fake):
    from portal.models import Contact

    cid = s.make_connection(fake, actor_types=("Customer", "Person"), mappings={
        "Person": {"firstname": "first_name", "lastname": "last_name"}})
    first = s.link_company(fake, cid, name="First AS")
    second = s.link_company(fake, cid, name="Second AS")
    contact = Contact(first_name="Ada", last_name="Lovelace", company_id=first[0])
    db.session.add(contact)
    db.session.flush()
    person = fake.add_actor("Person", {"firstname": "Ada", "lastname": "Lovelace"}, parent=("Customer", first[1]))
    db.session.add(Link(connection_id=cid, crm_type="contact", crm_id=contact.id, erp_actor_type="Person",
                        erp_key=person, parent_erp_key=first[1], base={"firstname": "Ada", "lastname": "Lovelace"},
                        status="ok", last_synced_at=utcnow(), crm_synced_at=contact.updated_at,
                        erp_last_modified=fake.get_actor("Person", person)["LastModified"]))
    db.session.commit()
    contact_id = contact.id
    with fake.service.lock:  # moved without a new LastModified: the feed never reports it
        fake.service.actors["Person"][person]["ParentErpKey"] = second[1]
    entries = []
    with reconcile.reporting(entries.append):
        dry = s.run(cid, RunKind.RECONCILE, dry_run=True)
    assert dry.status == RunStatus.SUCCEEDED, dry.message
    [entry] = entries
    assert entry.lines()[1:] == ["  to the CRM: Company: 'First AS' -> 'Second AS'"]
    assert db.session.get(Contact, contact_id).company_id == first[0]
    outcome = s.run(cid, RunKind.RECONCILE)
    assert outcome.status == RunStatus.SUCCEEDED and outcome.counts["drift_repaired"] == 1
    db.session.expire_all()
    assert db.session.get(Contact, contact_id).company_id == second[0]


# ------------------------------------------------------------------------------------------------ dry run


def _state(cid: int) -> dict:
    db.session.expire_all()
    return {
        "companies": [tuple(r) for r in db.session.execute(
            select(Company.id, Company.name, Company.phone, Company.email, Company.updated_at).order_by(Company.id))],
        "links": [tuple(r) for r in db.session.execute(
            select(Link.id, Link.status, Link.status_message, Link.base, Link.crm_synced_at, Link.erp_last_modified,
                   Link.last_synced_at, Link.last_result, Link.failures, Link.retry_at, Link.updated_at)
            .order_by(Link.id))],
        "changes": db.session.scalar(select(func.count()).select_from(SyncChange)),
        "journal": db.session.scalar(select(func.count()).select_from(SyncJournal)),
        "marks": _marks(cid),
    }


def test_dry_run_reads_only_and_reports_what_would_change_each_way(ctx, fake):
    cid = s.make_connection(fake)
    to_erp, to_erp_key, _ = s.link_company(fake, cid, name="To ERP", phone="1")
    to_crm, to_crm_key, _ = s.link_company(fake, cid, name="To CRM", email="old@x.example")
    both, both_key, _ = s.link_company(fake, cid, name="Both", phone="1")
    gone, gone_key, _ = s.link_company(fake, cid, name="Gone")
    back, back_key, back_link = s.link_company(fake, cid, name="Back")
    s.link_company(fake, cid, name="Calm")
    _crm_behind_the_back(to_erp, phone="2")
    _erp_behind_the_back(fake, to_crm_key, email="new@x.example")
    _crm_behind_the_back(both, phone="2")
    _erp_behind_the_back(fake, both_key, phone="3")
    fake.delete_actor("Customer", gone_key)
    link = db.session.get(Link, back_link)
    link.status, link.status_message = "broken", "gone for a while"
    db.session.commit()
    before = _state(cid)
    erp_before = fake.service.all_actors("Customer")
    fake.requests.clear()
    entries = []

    with reconcile.reporting(entries.append):
        outcome = s.run(cid, RunKind.RECONCILE, dry_run=True)

    assert outcome.status == RunStatus.SUCCEEDED, outcome.message
    assert [m for m, _ in fake.calls] == ["GetActors"]  # no SaveActors, no CreateActor, no feed
    assert fake.service.all_actors("Customer") == erp_before
    assert _state(cid) == before  # no CRM record, link, change-log row, journal row, cursor or mark written
    report = {entry.record.split(" \u2194 ")[0]: entry for entry in entries}
    assert set(report) == {f"Company #{to_erp} To ERP", f"Company #{to_crm} To CRM", f"Company #{both} Both",
                           f"Company #{gone} Gone", f"Company #{back} Back"}
    assert report[f"Company #{to_erp} To ERP"].lines()[1:] == ["  to Fake ERP: Phone: '1' -> '2'"]
    assert report[f"Company #{to_crm} To CRM"].lines()[1:] == [
        "  to the CRM: E-mail: 'old@x.example' -> 'new@x.example'"]
    assert report[f"Company #{both} Both"].lines()[1:] == [
        "  to Fake ERP: Phone: '3' -> '2'",
        "  conflict: Telephone: CRM '2', Fake ERP '3' -> CRM wins (sync priority: CRM above Fake ERP)"]
    assert report[f"Company #{gone} Gone"].action == "break"
    assert "would be marked broken" in report[f"Company #{gone} Gone"].lines()[0]
    assert report[f"Company #{back} Back"].action == "restore"
    run = s.get_run(outcome.run_id)
    c = run.counts
    assert run.kind == "reconcile" and run.options["dry_run"] is True
    assert (c["records"], c["would_repair"], c["would_to_crm"], c["would_to_erp"], c["would_conflicts"],
            c["would_break"], c["would_restore"]) == (6, 3, 1, 2, 1, 1, 1)
    assert "to_crm" not in c and "to_erp" not in c and "broken" not in c  # nothing counted as written
    assert len(c["dry_run_sample"]) == 5 and any("'1' -> '2'" in line for line in c["dry_run_sample"])
    assert run.message.startswith("Dry run, nothing written: read 6 links of Fake ERP; 3 records would be repaired "
                                  "(1 in the CRM, 2 in Fake ERP), 1 conflict would be settled")
    assert "1 link would be marked broken, 1 broken link would come back." in run.message
    assert (run.progress_done, run.progress_total) == (6, 6)
    # the real thing afterwards does what the dry run said
    real = s.run(cid, RunKind.RECONCILE)
    assert (real.counts["to_crm"], real.counts["to_erp"], real.counts["broken"], real.counts["restored"]) == (
        1, 2, 1, 1)


def test_dry_run_is_honoured_by_every_kind_of_run(ctx, fake):
    # Once for reconcile runs only; now a normal sync's dry run previews too (tests/integration/test_sync_dry_run.py)
    cid = s.make_connection(fake)
    company_id, key, _ = s.link_company(fake, cid, name="Acme AS")
    s.edit_company(company_id, phone="7")
    outcome = s.run(cid, RunKind.SYNC, dry_run=True)
    assert outcome.counts["would_to_erp"] == 1 and "to_erp" not in outcome.counts
    assert _erp(fake, key).get("phone") != "7" and fake.calls_to("SaveActors") == []
    outcome = s.run(cid, RunKind.SYNC)  # the real thing still finds the change (no cursor or mark moved)
    assert outcome.counts["to_erp"] == 1 and _erp(fake, key)["phone"] == "7"


# ---------------------------------------------------------------------------------------------- run lock


def test_reconcile_holds_the_connection_lock(ctx, fake):
    cid = s.make_connection(fake)
    s.link_company(fake, cid, name="Acme AS")
    sync_id = s.run_request(cid)
    run, created = runs.request_run(cid, kind=RunKind.RECONCILE, trigger="manual")
    assert not created and run.id == sync_id and run.kind == RunKind.SYNC  # the active run is handed back
    runs.claim(sync_id)
    runs.finish(sync_id, RunStatus.SUCCEEDED)
    reconcile_id = s.run_request(cid, RunKind.RECONCILE)
    run, created = runs.request_run(cid, kind=RunKind.SYNC, trigger="schedule")
    assert not created and run.id == reconcile_id
    assert runs.describe_busy(run).startswith("A reconcile of Fake ERP is queued")
    assert runs.KIND_LABELS[RunKind.RECONCILE] == "Reconcile"


# ---------------------------------------------------------------------------------------------- schedule


def _due(cid: int) -> datetime | None:
    db.session.expire_all()
    return db.session.get(Connection, cid).reconcile_due_at


def _set_due(cid: int, when: datetime | None) -> None:
    db.session.get(Connection, cid).reconcile_due_at = when
    db.session.commit()


def test_nightly_by_default_one_run_per_slot(ctx, fake):
    cid = s.make_connection(fake)
    company_id, key, _ = s.link_company(fake, cid, name="Acme AS")
    settings = db.session.get(SyncSettings, 1)
    assert (settings.reconcile_every_hours, settings.reconcile_hour) == (24, 2)
    assert reconcile.schedule_text(settings) == "every night at 02:00 UTC"
    assert reconcile.dispatch_due(datetime(2026, 12, 6, 13, 5)) == []  # first tick: scheduled, not run
    assert _due(cid) == datetime(2026, 12, 7, 2, 0)
    assert reconcile.next_due_at(now=datetime(2026, 12, 6, 13, 5)) == datetime(2026, 12, 7, 2, 0)
    assert reconcile.dispatch_due(datetime(2026, 12, 7, 1, 59)) == []
    at = datetime(2026, 12, 7, 2, 0, 15)
    [run_id] = reconcile.dispatch_due(at)
    run = s.get_run(run_id)
    assert (run.kind, run.trigger, run.requested_by_label, run.status) == ("reconcile", "schedule", "scheduler",
                                                                          "queued")
    assert _due(cid) == datetime(2026, 12, 8, 2, 0)
    _erp_behind_the_back(fake, key, email="drift@erp.example")
    [outcome] = engine.execute_cycle([run_id])  # as the scheduler's job runs it
    assert outcome.status == RunStatus.SUCCEEDED and s.company(company_id).email == "drift@erp.example"
    assert reconcile.dispatch_due(at) == []  # a second dispatcher at the same moment: the slot is taken
    assert reconcile.dispatch_due(at + timedelta(minutes=1)) == []
    assert db.session.scalar(select(func.count()).select_from(SyncRun).where(SyncRun.kind == "reconcile")) == 1


def test_the_scheduler_tick_queues_due_reconciles_as_a_cycle_of_their_own(app, fake, monkeypatch):
    from jobs import tasks

    with app.app_context():
        cid = s.make_connection(fake)
        _set_due(cid, utcnow() - timedelta(minutes=1))
        db.session.get(SyncSettings, 1).next_due_at = utcnow() + timedelta(minutes=5)  # no sync due now
        db.session.commit()
    submitted = []
    monkeypatch.setattr(tasks, "current_app_for_jobs", lambda: app)
    monkeypatch.setattr(tasks, "submit_cycle", submitted.append)
    tasks.dispatch_due_syncs()
    with app.app_context():
        assert [[s.get_run(run_id).kind for run_id in cycle] for cycle in submitted] == [["reconcile"]]


def test_a_slot_is_taken_by_one_dispatcher_only(ctx, fake):
    cid = s.make_connection(fake)
    due = datetime(2026, 12, 7, 2, 0)
    _set_due(cid, due)
    assert reconcile._move_due(cid, due, due + timedelta(days=1))
    assert not reconcile._move_due(cid, due, due + timedelta(days=1))  # the other one read the same slot


def test_a_busy_connection_is_tried_again_at_the_next_tick(ctx, fake):
    cid = s.make_connection(fake)
    due = datetime(2026, 12, 7, 2, 0)
    _set_due(cid, due)
    sync_id = s.run_request(cid)
    assert reconcile.dispatch_due(due + timedelta(minutes=1)) == []
    assert _due(cid) == due  # the slot is still open
    runs.claim(sync_id)
    runs.finish(sync_id, RunStatus.SUCCEEDED)
    [run_id] = reconcile.dispatch_due(due + timedelta(minutes=2))
    assert s.get_run(run_id).kind == "reconcile" and _due(cid) == due + timedelta(days=1)


def test_a_slot_missed_by_more_than_the_grace_waits_for_the_next_one(ctx, fake):
    cid = s.make_connection(fake)
    due = datetime(2026, 12, 7, 2, 0)
    _set_due(cid, due)
    assert reconcile.dispatch_due(due + timedelta(hours=5)) != []  # late, but within the grace: runs
    _set_due(cid, due)
    db.session.execute(SyncRun.__table__.delete())
    db.session.commit()
    assert reconcile.dispatch_due(due + timedelta(days=2, hours=7)) == []  # the server was down for days
    assert _due(cid) == datetime(2026, 12, 10, 2, 0)


def test_off_and_automatic_sync_off_queue_nothing(ctx, fake):
    cid = s.make_connection(fake)
    due = datetime(2026, 12, 7, 2, 0)
    _set_due(cid, due)
    reconcile.set_schedule(0, 2)
    assert _due(cid) is None  # rescheduled by a change of the schedule
    assert reconcile.dispatch_due(due + timedelta(minutes=1)) == [] and _due(cid) is None
    assert reconcile.schedule_text() == "off" and reconcile.next_due_at() is None
    reconcile.set_schedule(24, 2)
    _set_due(cid, due)
    db.session.get(SyncSettings, 1).auto_sync = False
    db.session.commit()
    assert reconcile.dispatch_due(due + timedelta(minutes=1)) == [] and _due(cid) == due
    assert db.session.scalar(select(func.count()).select_from(SyncRun)) == 0


def test_other_intervals_and_validation(ctx, fake):
    cid = s.make_connection(fake)
    reconcile.set_schedule(6, 3)
    assert reconcile.schedule_text() == "every 6 hours from 03:00 UTC"
    reconcile.dispatch_due(datetime(2026, 12, 6, 13, 5))
    assert _due(cid) == datetime(2026, 12, 6, 15, 0)  # 03, 09, 15, 21
    reconcile.set_schedule(168, 2)
    assert reconcile.schedule_text() == "every week at 02:00 UTC"
    for every, hour, field in ((5, 2, "every_hours"), (24, 24, "hour"), (24, -1, "hour"), ("x", 2, "every_hours")):
        with pytest.raises(ServiceError) as error:
            reconcile.set_schedule(every, hour)
        assert error.value.field == field
    settings = db.session.get(SyncSettings, 1)
    assert (settings.reconcile_every_hours, settings.reconcile_hour) == (168, 2)


# ---------------------------------------------------------------------------------------------------- CLI


def test_cli_reconcile_dry_run_then_for_real(app, fake):
    with app.app_context():
        cid = s.make_connection(fake)
        company_id, key, _ = s.link_company(fake, cid, name="Acme AS", phone="1")
        _crm_behind_the_back(company_id, phone="2")
    runner = app.test_cli_runner()
    fake.requests.clear()
    dry = runner.invoke(args=["erp", "reconcile", "--connection", "Fake ERP", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "reconcile, dry run" in dry.output and "to Fake ERP: Phone: '1' -> '2'" in dry.output
    assert "reconcile (dry run)" in dry.output and "Dry run, nothing written" in dry.output
    assert fake.calls_to("SaveActors") == [] and _erp(fake, key)["phone"] == "1"
    real = runner.invoke(args=["erp", "reconcile"])
    assert real.exit_code == 0, real.output
    assert "Repaired" in real.output and "had drifted and was repaired" in real.output
    assert _erp(fake, key)["phone"] == "2"
    nothing = runner.invoke(args=["erp", "reconcile", "--dry-run"])
    assert nothing.exit_code == 0 and "Nothing would change" in nothing.output
    status = runner.invoke(args=["erp", "status"])
    assert "Reconcile: every night at 02:00 UTC; next" in status.output
    missing = runner.invoke(args=["erp", "reconcile", "--connection", "Nope"])
    assert missing.exit_code != 0 and "No active connection" in missing.output


def test_cli_reconcile_fails_when_the_connection_is_busy(app, fake):
    with app.app_context():
        cid = s.make_connection(fake)
        s.link_company(fake, cid, name="Acme AS")
        s.run_request(cid)
    result = app.test_cli_runner().invoke(args=["erp", "reconcile"])
    assert result.exit_code == 1
    assert "Skipped Fake ERP: A sync of Fake ERP is queued" in result.output
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(SyncRun).where(SyncRun.kind == "reconcile")) == 0


# -------------------------------------------------------------------------------------------- the screens


def test_reconcile_setting_on_the_sync_tab(app, admin_client, user_client):
    html = admin_client.get("/settings/sync").get_data(as_text=True)
    assert 'id="reconcile"' in html and "Reconcile every night at 02:00 UTC" in html
    assert 'name="every_hours"' in html and 'name="hour"' in html and "Every night" in html
    for data in ({"every_hours": "5", "hour": "2"}, {"every_hours": "24", "hour": "24"},
                 {"every_hours": "x", "hour": "2"}, {"hour": "2"}):
        bad = admin_client.post("/settings/sync/reconcile", data=data, htmx=True)
        body = bad.get_data(as_text=True)
        assert bad.status_code == 422, data
        assert 'id="reconcile"' in body and "<html" not in body and "field-error" in body
    ok = admin_client.post("/settings/sync/reconcile", data={"every_hours": "12", "hour": "3"}, htmx=True)
    assert ok.status_code == 200 and "Reconcile every 12 hours from 03:00 UTC" in ok.get_data(as_text=True)
    off = admin_client.post("/settings/sync/reconcile", data={"every_hours": "0", "hour": "3"}, htmx=True)
    assert off.status_code == 200 and "The scheduled reconcile is off." in off.get_data(as_text=True)
    with app.app_context():
        settings = db.session.get(SyncSettings, 1)
        assert (settings.reconcile_every_hours, settings.reconcile_hour) == (0, 3)
        events = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "sync.reconcile")).all()
        assert len(events) == 2
    assert user_client.post("/settings/sync/reconcile", data={"every_hours": "24", "hour": "2"}).status_code == 403


def test_reconcile_runs_show_as_such_in_the_log_and_on_the_run_page(app, admin_client, fake):
    with app.app_context():
        cid = s.make_connection(fake)
        company_id, _key, _ = s.link_company(fake, cid, name="Acme AS", phone="1")
        _crm_behind_the_back(company_id, phone="2")
        run_id = s.run(cid, RunKind.RECONCILE).run_id
    log = admin_client.get("/settings/sync/log").get_data(as_text=True)
    assert "<td>Reconcile</td>" in log and "had drifted and was repaired" in log
    page = admin_client.get(f"/settings/sync/runs/{run_id}").get_data(as_text=True)
    assert "Reconcile" in page and "1 record had drifted and was repaired" in page and "CRM → ERP" in page

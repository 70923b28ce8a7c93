"""The sync engine against the FakeConnector over HTTP on 127.0.0.1: what flows where, conflicts, the hub,
deletions, resyncs, Sync now, paging, and the CLI."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from portal.extensions import db
from portal.models import Connection, Link, RunKind, RunStatus, SyncChange, SyncRun, SyncSettings
from portal.services.sync import engine, erp_write, record_merge, runs
from tests import sync_support as s
from tests.fakes.connector_app import FakeConnector


@pytest.fixture
def ctx(app):
    with app.app_context():
        yield app


def _erp(fake, key):
    return fake.get_actor("Customer", key)["FieldValues"]


# ---------------------------------------------------------------------------------------------- basics


def test_nothing_changed_makes_one_connector_call_per_actor_type(ctx, fake):
    cid = s.make_connection(fake)
    for number in range(30):
        s.link_company(fake, cid, name=f"Company {number}", email=f"c{number}@example.com")
    fake.requests.clear()
    outcome = s.run(cid)
    assert outcome.status == RunStatus.SUCCEEDED
    assert outcome.message == "Nothing to sync: no changes on either side."
    assert [method for method, _ in fake.calls] == ["GetActorsByTimestamp"]
    run = s.get_run(outcome.run_id)
    assert run.started_at and run.finished_at and run.counts["connector_calls"] == 1
    assert s.changes() == []


def test_crm_edit_flows_to_the_erp_and_a_second_run_changes_nothing(ctx, fake):
    cid = s.make_connection(fake)
    company_id, key, link_id = s.link_company(fake, cid, name="Acme AS", phone="111")
    s.edit_company(company_id, phone="222", vat_no="NO123")
    outcome = s.run(cid)
    assert outcome.status == RunStatus.SUCCEEDED, outcome.message
    assert _erp(fake, key)["phone"] == "222" and _erp(fake, key)["orgnr"] == "NO123"
    logged = {(c.direction, c.erp_field_key, c.old_value, c.new_value) for c in s.changes(outcome.run_id)}
    assert logged == {("to_erp", "phone", "111", "222"), ("to_erp", "orgnr", "", "NO123")}
    link = s.get_link(link_id)
    assert link.base["phone"] == "222" and link.erp_last_modified == fake.get_actor("Customer", key)["LastModified"]
    assert link.crm_synced_at == s.company(company_id).updated_at
    fake.requests.clear()
    again = s.run(cid)
    assert again.counts.get("to_erp", 0) == 0 and again.counts.get("to_crm", 0) == 0
    assert s.changes(again.run_id) == []
    assert [m for m, _ in fake.calls] == ["GetActorsByTimestamp"]  # the echo of our own write is skipped


def test_erp_edit_flows_to_the_crm_and_moves_the_cursor(ctx, fake):
    cid = s.make_connection(fake)
    company_id, key, link_id = s.link_company(fake, cid, name="Acme AS", email="old@acme.example")
    stamp = fake.update_actor("Customer", key, {"email": "new@acme.example", "country": "SE", "employees": 42})
    outcome = s.run(cid)
    record = s.company(company_id)
    assert record.email == "new@acme.example" and record.country_id == s.country_id("Sweden") and record.code == "42"
    assert db.session.get(Connection, cid).cursors["Customer"] == stamp
    rows = {c.crm_field_key: (c.old_value, c.new_value) for c in s.changes(outcome.run_id)}
    assert rows == {"email": ("old@acme.example", "new@acme.example"), "country_id": ("", "Sweden"),
                    "code": ("", "42")}
    assert s.get_link(link_id).crm_synced_at == record.updated_at
    second = s.run(cid)
    assert s.changes(second.run_id) == [] and second.counts.get("erp_repeats") == 1


def test_changes_on_both_sides_in_different_fields_both_flow(ctx, fake):
    cid = s.make_connection(fake)
    company_id, key, _ = s.link_company(fake, cid, name="Acme AS")
    s.edit_company(company_id, phone="+47 1")
    fake.update_actor("Customer", key, {"email": "erp@acme.example"})
    s.run(cid)
    assert _erp(fake, key)["phone"] == "+47 1" and s.company(company_id).email == "erp@acme.example"
    assert _erp(fake, key)["email"] == "erp@acme.example"


@pytest.mark.parametrize("policy, winner", [("priority", "crm"), ("crm", "crm"), ("erp", "erp"),
                                            ("newest", "erp")])
def test_conflicts_are_settled_by_the_policy_and_recorded_with_both_values(ctx, fake, policy, winner):
    cid = s.make_connection(fake, policy=policy)
    company_id, key, _ = s.link_company(fake, cid, name="Acme AS", phone="100")
    s.edit_company(company_id, phone="200")  # CRM first …
    fake.update_actor("Customer", key, {"phone": "300"})  # … then the ERP: the ERP's change is the newest
    outcome = s.run(cid)
    expected = "200" if winner == "crm" else "300"
    assert s.company(company_id).phone == expected and _erp(fake, key)["phone"] == expected
    [conflict] = s.changes(outcome.run_id, conflict=True)
    assert conflict.direction == ("to_erp" if winner == "crm" else "to_crm")
    assert conflict.new_value == expected and conflict.other_value == ("300" if winner == "crm" else "200")
    assert conflict.rule.startswith("CRM wins" if winner == "crm" else "Fake ERP wins")
    assert outcome.counts["conflicts"] == 1
    assert s.run(cid).counts.get("conflicts", 0) == 0


def test_priority_list_decides_for_the_erp_when_it_is_above_the_crm(ctx, fake):
    cid = s.make_connection(fake)
    db.session.get(SyncSettings, 1).priority = [cid, 0]
    db.session.commit()
    company_id, key, _ = s.link_company(fake, cid, name="Acme AS", phone="100")
    fake.update_actor("Customer", key, {"phone": "300"})
    s.edit_company(company_id, phone="200")
    outcome = s.run(cid)
    assert s.company(company_id).phone == "300"
    assert s.changes(outcome.run_id, conflict=True)[0].rule == "Fake ERP wins (sync priority: Fake ERP above CRM)"


def test_directions_are_respected_and_equal_values_are_never_rewritten(ctx, fake):
    cid = s.make_connection(fake, directions={"phone": (True, False), "email": (False, True)})
    company_id, key, _ = s.link_company(fake, cid, name="Acme AS", phone="1", email="a@a.example", vat_no="X")
    s.edit_company(company_id, phone="2", email="b@a.example", vat_no="Y")
    fake.update_actor("Customer", key, {"orgnr": "Y"})  # the same value on both sides
    fake.requests.clear()
    outcome = s.run(cid)
    assert _erp(fake, key)["phone"] == "1"  # CRM -> ERP is not mapped for phone
    assert _erp(fake, key)["email"] == "b@a.example"
    saved = fake.calls_to("SaveActors")
    assert [a["FieldValues"] for a in saved[0]["Actors"]] == [{"email": "b@a.example"}]
    assert {c.erp_field_key for c in s.changes(outcome.run_id)} == {"email"}


def test_a_value_that_cannot_be_written_fails_that_field_only_and_is_retried(ctx, fake):
    cid = s.make_connection(fake)
    company_id, key, link_id = s.link_company(fake, cid, name="Acme AS")
    s.edit_company(company_id, vat_no="X" * 30, phone="555")  # the ERP's orgnr holds at most 20 characters
    outcome = s.run(cid)
    assert outcome.status == RunStatus.PARTIAL and outcome.counts["errors"] == 1
    assert _erp(fake, key)["phone"] == "555" and not _erp(fake, key).get("orgnr")
    [error] = s.changes(outcome.run_id, direction="error")
    assert error.erp_field_key == "orgnr" and "at most 20 characters" in error.rule
    link = s.get_link(link_id)
    assert link.retry_at is not None and link.failures == 1 and link.base["orgnr"] is None


def test_one_bad_record_is_skipped_and_the_rest_of_the_batch_is_saved(ctx, fake):
    cid = s.make_connection(fake)
    ids = [s.link_company(fake, cid, name=f"Company {n}") for n in range(5)]
    for company_id, _key, _link in ids:
        s.edit_company(company_id, phone="999")
    s.edit_company(ids[2][0], name="")  # the ERP refuses a blank mandatory name
    outcome = s.run(cid)
    assert outcome.status == RunStatus.PARTIAL and outcome.counts["errors"] == 1 and outcome.counts["to_erp"] == 4
    assert outcome.counts["isolated_batches"] == 1
    assert [_erp(fake, key).get("phone") for _c, key, _l in ids] == ["999", "999", None, "999", "999"]
    [error] = s.changes(outcome.run_id, direction="error")
    assert error.crm_id == ids[2][0] and "mandatory" in error.rule
    assert s.get_link(ids[2][2]).retry_at is not None


def test_a_failed_record_is_retried_by_a_later_run(ctx, fake):
    cid = s.make_connection(fake)
    company_id, key, link_id = s.link_company(fake, cid, name="Acme AS")
    s.edit_company(company_id, phone="1")
    fake.reply_error("SaveActors", "Record locked by another user", error_code="LOCKED")
    assert s.run(cid).status == RunStatus.PARTIAL
    link = s.get_link(link_id)
    link.retry_at = link.retry_at.replace(year=2000)  # due now
    db.session.commit()
    outcome = s.run(cid)
    assert outcome.status == RunStatus.SUCCEEDED and _erp(fake, key)["phone"] == "1"
    assert s.get_link(link_id).retry_at is None and s.get_link(link_id).failures == 0


def test_a_stale_write_conflict_is_read_again_and_merged(ctx, fake):
    cid = s.make_connection(fake)
    company_id, key, _ = s.link_company(fake, cid, name="Acme AS")
    s.edit_company(company_id, phone="1")
    fake.reply_error("SaveActors", "Changed in the ERP since it was read", error_code="CONFLICT")
    outcome = s.run(cid)
    assert outcome.status == RunStatus.SUCCEEDED and outcome.counts["stale_writes"] == 1
    assert _erp(fake, key)["phone"] == "1"
    assert "LastModified" in fake.calls_to("SaveActors")[0]["Actors"][0]


def test_the_erp_answer_becomes_the_base_and_adjusted_values_flow_back(ctx, fake, monkeypatch):
    cid = s.make_connection(fake)
    company_id, key, link_id = s.link_company(fake, cid, name="Acme AS")
    s.edit_company(company_id, name="acme as")
    service = fake.service
    original = service.SaveActors

    def uppercasing(body):
        for actor in body["Actors"]:
            if "name" in actor["FieldValues"]:
                actor["FieldValues"]["name"] = actor["FieldValues"]["name"].upper()
        return original(body)

    monkeypatch.setattr(service, "SaveActors", uppercasing)
    outcome = s.run(cid)
    assert _erp(fake, key)["name"] == "ACME AS" and s.company(company_id).name == "ACME AS"
    assert s.get_link(link_id).base["name"] == "ACME AS"
    assert outcome.counts["to_crm"] == 1 and outcome.counts["to_erp"] == 1
    assert s.run(cid).counts.get("records", 0) == 0


def test_a_crm_edit_made_while_the_engine_works_is_not_lost(ctx, fake, monkeypatch):
    cid = s.make_connection(fake)
    company_id, key, link_id = s.link_company(fake, cid, name="Acme AS", phone="1")
    fake.update_actor("Customer", key, {"phone": "2"})
    real = erp_write.save_actors

    original_process = record_merge.plan_item

    def edit_during_sync(ctx_, plan, it, mode):
        original_process(ctx_, plan, it, mode)
        s.edit_company(company_id, phone="3")  # a user saves the record while the engine is at work

    monkeypatch.setattr(record_merge, "plan_item", edit_during_sync)
    outcome = s.run(cid)
    monkeypatch.setattr(record_merge, "plan_item", original_process)
    assert real is erp_write.save_actors
    assert outcome.counts["deferred"] == 1 and s.company(company_id).phone == "3"
    second = s.run(cid)  # both changed since the agreed "1": a conflict, settled and recorded
    assert second.counts["conflicts"] == 1
    assert s.company(company_id).phone == "3" and _erp(fake, key)["phone"] == "3"


def test_paging_through_many_erp_changes_in_small_batches(ctx, fake, app):
    app.config.update(SYNC_PAGE_SIZE=7, SYNC_BATCH_SIZE=3)
    cid = s.make_connection(fake)
    linked = [s.link_company(fake, cid, name=f"Company {n}") for n in range(25)]
    fake.add_actor("Customer", {"name": "Not linked"})
    for _company, key, _link in linked:
        fake.update_actor("Customer", key, {"phone": "77"})
    fake.requests.clear()
    outcome = s.run(cid)
    assert outcome.counts["to_crm"] == 25
    assert all(s.company(c).phone == "77" for c, _k, _l in linked)
    feed = fake.calls_to("GetActorsByTimestamp")
    assert len(feed) == 4 and all(body["Limit"] == 7 for body in feed) and feed[1]["Cursor"]
    assert db.session.get(Connection, cid).cursors["Customer"] == max(
        fake.get_actor("Customer", k)["LastModified"] for _c, k, _l in linked)


# ------------------------------------------------------------------------------------------ deletions


def _cursor_writes(app, action) -> list[str]:
    """The cursor UPDATEs the engine sends while ``action`` runs."""
    from sqlalchemy import event

    seen: list[str] = []

    def listen(_conn, _cursor, statement, *_rest):
        if statement.lstrip().upper().startswith("UPDATE CONNECTION SET CURSORS"):
            seen.append(statement)

    engine_ = db.engine
    event.listen(engine_, "before_cursor_execute", listen)
    try:
        action()
    finally:
        event.remove(engine_, "before_cursor_execute", listen)
    return seen


def test_a_feed_of_echoes_stores_the_cursor_once_not_once_per_chunk(ctx, fake, app, monkeypatch):
    """The run after a sync reads back its own writes (25 echoes, 9 chunks of 3): nothing to merge, and the
    cursor is stored at the end — not with a statement pair and a commit per chunk."""
    from portal.services.sync import feed as feed_module

    app.config.update(SYNC_PAGE_SIZE=7, SYNC_BATCH_SIZE=3)
    cid = s.make_connection(fake)
    linked = [s.link_company(fake, cid, name=f"Company {n}") for n in range(25)]
    for company_id, _key, _link in linked:
        s.edit_company(company_id, phone="55")
    assert s.run(cid).counts["to_erp"] == 25
    newest = max(fake.get_actor("Customer", k)["LastModified"] for _c, k, _l in linked)

    echo = {}
    writes = _cursor_writes(app, lambda: echo.setdefault("outcome", s.run(cid)))
    assert echo["outcome"].status == RunStatus.SUCCEEDED and echo["outcome"].counts.get("erp_repeats") == 25
    assert len(writes) == 1
    assert db.session.get(Connection, cid).cursors["Customer"] == newest

    # A long feed of echoes still stores its progress every ECHO_CURSOR_CHUNKS chunks.
    monkeypatch.setattr(feed_module, "ECHO_CURSOR_CHUNKS", 4)
    db.session.execute(Connection.__table__.update().where(Connection.id == cid).values(cursors={}))
    db.session.commit()
    writes = _cursor_writes(app, lambda: s.run(cid))
    assert len(writes) == 3  # after chunks 4 and 8 of 9, then the end
    assert db.session.get(Connection, cid).cursors["Customer"] == newest


def test_a_run_that_dies_between_deferred_echo_chunks_loses_no_change(ctx, fake, app, monkeypatch):
    """The echo chunks' cursor is stored late (ECHO_CURSOR_CHUNKS). A run that dies after some echo chunks and in
    the chunk holding a real ERP edit must not have moved the cursor past that edit: the next run reads the
    echoes again, skips them again, and applies the edit once."""
    from portal.services.sync import feed as feed_module

    app.config.update(SYNC_PAGE_SIZE=7, SYNC_BATCH_SIZE=3)
    monkeypatch.setattr(feed_module, "ECHO_CURSOR_CHUNKS", 4)  # stores after chunks 4 and 8; the crash in 9
    cid = s.make_connection(fake)
    linked = [s.link_company(fake, cid, name=f"Company {n}", phone="1") for n in range(25)]
    for company_id, _key, _link in linked:
        s.edit_company(company_id, phone="55")
    assert s.run(cid).counts["to_erp"] == 25
    edited_id, edited_key, _link = linked[7]
    fake.update_actor("Customer", edited_key, {"phone": "erp-edit"})  # the newest stamp: the last chunk
    newest = fake.get_actor("Customer", edited_key)["LastModified"]
    echoes = sorted(fake.get_actor("Customer", key)["LastModified"] for _c, key, _l in linked
                    if key != edited_key)

    def killed(*_args, **_kwargs):
        raise RuntimeError("the process died here")

    monkeypatch.setattr(feed_module, "process_batch", killed)
    dying = s.run(cid)
    assert dying.status == RunStatus.FAILED
    stored = db.session.get(Connection, cid).cursors.get("Customer") or ""
    assert echoes[23] <= stored < newest  # stored after chunks 4 and 8 (24 echoes), short of the edit
    assert s.company(edited_id).phone == "55"

    monkeypatch.undo()
    app.config.update(SYNC_PAGE_SIZE=7, SYNC_BATCH_SIZE=3)
    outcome = s.run(cid)
    assert outcome.status == RunStatus.SUCCEEDED and outcome.counts.get("erp_changes") == 1
    assert outcome.counts["erp_actors_read"] <= 2  # the last echo (skipped again) and the edit, not the 24 before
    assert s.company(edited_id).phone == "erp-edit"
    assert db.session.get(Connection, cid).cursors["Customer"] == newest
    assert s.run(cid).counts.get("erp_changes", 0) == 0  # applied once


def test_an_actor_deleted_in_the_erp_breaks_the_link_and_keeps_the_crm_record(ctx, fake):
    cid = s.make_connection(fake)
    company_id, key, link_id = s.link_company(fake, cid, name="Acme AS", phone="1")
    fake.delete_actor("Customer", key)
    s.edit_company(company_id, phone="2")
    outcome = s.run(cid)
    assert outcome.status == RunStatus.PARTIAL and outcome.counts["broken"] == 1
    link = s.get_link(link_id)
    assert link.status == "broken" and "no longer has Customer" in link.status_message
    assert s.company(company_id).phone == "2"
    [logged] = s.changes(outcome.run_id)
    assert logged.direction == "error" and "broken" in logged.rule
    assert s.run(cid).counts.get("records", 0) == 0  # a broken link is not retried every run


def test_deleting_a_crm_record_removes_its_links_only(ctx, fake):
    from portal.services.crm import delete_record

    cid = s.make_connection(fake)
    company_id, key, _ = s.link_company(fake, cid, name="Acme AS")
    delete_record(s.company(company_id))
    db.session.commit()
    assert db.session.scalar(select(func.count()).select_from(Link)) == 0
    assert fake.get_actor("Customer", key) is not None
    assert s.run(cid).status == RunStatus.SUCCEEDED


# --------------------------------------------------------------------------------------------- resyncs


def _two_erps_on_one_company(fake, other):
    first = s.make_connection(fake, name="First ERP")
    second = s.make_connection(other, name="Second ERP")
    company_id, key1, _ = s.link_company(fake, first, name="Acme AS", phone="1", email="a@acme.example")
    ghost, key2, link2 = s.link_company(other, second, name="Acme AS", phone="1", email="a@acme.example")
    link = db.session.get(Link, link2)
    link.crm_id = company_id
    db.session.commit()
    link.crm_synced_at = s.company(company_id).updated_at
    db.session.commit()
    return first, second, company_id, key1, key2




def test_resync_from_crm_overwrites_the_erp_one_way_ignoring_timestamps(ctx, fake):
    cid = s.make_connection(fake)
    company_id, key, link_id = s.link_company(fake, cid, name="Acme AS", phone="1", email="crm@acme.example")
    fake.update_actor("Customer", key, {"phone": "9", "email": None})
    outcome = s.run(cid, RunKind.RESYNC_FROM_CRM)
    assert outcome.status == RunStatus.SUCCEEDED
    assert _erp(fake, key)["phone"] == "1" and _erp(fake, key)["email"] == "crm@acme.example"
    assert s.company(company_id).phone == "1"
    assert s.run(cid).counts.get("to_crm", 0) == 0  # the next normal sync agrees


def test_a_resync_of_given_links_touches_only_those_records(ctx, fake):
    """ForceResync of chosen records (the API's record resync): the run's option ``link_ids`` limits it."""
    cid = s.make_connection(fake)
    chosen_id, chosen_key, chosen_link = s.link_company(fake, cid, name="Acme AS", phone="1")
    other_id, other_key, _other_link = s.link_company(fake, cid, name="Beta AS", phone="2")
    fake.update_actor("Customer", chosen_key, {"phone": "9"})
    fake.update_actor("Customer", other_key, {"phone": "8"})
    outcome = s.run(cid, RunKind.RESYNC_FROM_CRM, link_ids=[chosen_link])
    assert outcome.status == RunStatus.SUCCEEDED and outcome.counts["records"] == 1
    assert _erp(fake, chosen_key)["phone"] == "1"  # resynced from the CRM
    assert _erp(fake, other_key)["phone"] == "8"  # not part of the run


def test_resync_from_crm_without_blank_values(ctx, fake):
    cid = s.make_connection(fake)
    company_id, key, _ = s.link_company(fake, cid, name="Acme AS", phone="1", email="a@acme.example")
    s.edit_company(company_id, email="", phone="2")
    outcome = s.run(cid, RunKind.RESYNC_FROM_CRM, no_blank=True)
    assert _erp(fake, key)["email"] == "a@acme.example" and _erp(fake, key)["phone"] == "2"
    assert outcome.counts["skipped_blank"] == 1


def test_resync_from_erp_goes_on_to_the_other_connections(ctx, fake):
    with FakeConnector() as other:
        first, second, company_id, key1, key2 = _two_erps_on_one_company(fake, other)
        fake.update_actor("Customer", key1, {"phone": "5"})
        other.update_actor("Customer", key2, {"phone": "7"})
        outcomes = engine.execute_cycle([s.run_request(first, RunKind.RESYNC_FROM_ERP)])
        assert [(o.connection_id, o.kind) for o in outcomes] == [(first, RunKind.RESYNC_FROM_ERP),
                                                                 (second, RunKind.RESYNC_FROM_CRM)]
        assert s.get_run(outcomes[1].run_id).trigger == "hub"
        assert s.company(company_id).phone == "5" and other.get_actor("Customer", key2)["FieldValues"]["phone"] == "5"


# ----------------------------------------------------------------------------------------------- the hub


def test_a_change_from_one_erp_reaches_the_other_in_the_same_cycle(ctx, fake):
    with FakeConnector() as other:
        first, second, company_id, key1, key2 = _two_erps_on_one_company(fake, other)
        other.update_actor("Customer", key2, {"email": "second@acme.example"})  # the lower-priority ERP changes
        run_ids = runs.dispatch_due()
        assert [s.get_run(r).connection_id for r in run_ids] == [first, second]
        outcomes = engine.execute_cycle(run_ids)
        assert [o.connection_id for o in outcomes] == [first, second, first]
        assert s.company(company_id).email == "second@acme.example"
        assert fake.get_actor("Customer", key1)["FieldValues"]["email"] == "second@acme.example"
        follow = s.get_run(outcomes[-1].run_id)
        assert follow.trigger == "hub" and follow.kind == RunKind.SYNC


def test_when_two_erps_change_the_same_field_the_higher_priority_wins(ctx, fake):
    with FakeConnector() as other:
        first, second, company_id, key1, key2 = _two_erps_on_one_company(fake, other)
        db.session.get(SyncSettings, 1).priority = [first, second, 0]  # both ERPs above the CRM
        db.session.commit()
        fake.update_actor("Customer", key1, {"phone": "from-first"})
        other.update_actor("Customer", key2, {"phone": "from-second"})
        engine.execute_cycle(runs.dispatch_due())
        assert s.company(company_id).phone == "from-first"
        assert other.get_actor("Customer", key2)["FieldValues"]["phone"] == "from-first"
        assert fake.get_actor("Customer", key1)["FieldValues"]["phone"] == "from-first"
        conflict = db.session.scalar(select(SyncChange).where(SyncChange.conflict.is_(True)))
        assert conflict.rule == ("CRM wins (sync priority: the CRM value came from First ERP, which is above "
                                 "Second ERP)")


def test_when_the_lower_erp_is_first_in_the_cycle_the_higher_still_wins(ctx, fake):
    with FakeConnector() as other:
        first, second, company_id, key1, key2 = _two_erps_on_one_company(fake, other)
        db.session.get(SyncSettings, 1).priority = [second, first, 0]
        db.session.commit()
        fake.update_actor("Customer", key1, {"phone": "from-first"})
        other.update_actor("Customer", key2, {"phone": "from-second"})
        engine.execute_cycle(runs.dispatch_due())
        assert s.company(company_id).phone == "from-second"
        assert fake.get_actor("Customer", key1)["FieldValues"]["phone"] == "from-second"


# ------------------------------------------------------------------------------------------- Sync now


def test_sync_record_reports_what_it_did(ctx, fake, users):
    cid = s.make_connection(fake)
    company_id, key, link_id = s.link_company(fake, cid, name="Acme AS", phone="1", email="a@acme.example")
    result = engine.sync_record(link_id, requested_by=users["bob"])
    assert result.ok and result.message == "Nothing to sync: both sides already agree." and result.run_id
    run = s.get_run(result.run_id)
    assert run.kind == RunKind.RECORD and run.trigger == "user" and run.requested_by_label == "bob@example.com"
    s.edit_company(company_id, phone="2")
    fake.update_actor("Customer", key, {"email": "b@acme.example"})
    result = engine.sync_record(link_id)
    assert result.ok and list(result.to_erp[0]) == ["Phone", "1", "2"]
    assert [tuple(line) for line in result.to_crm] == [("E-mail", "a@acme.example", "b@acme.example")]
    assert result.message == "Synced: 1 field updated in the CRM, 1 field updated in Fake ERP."


def test_sync_record_conflict_and_broken_and_failure(ctx, fake):
    cid = s.make_connection(fake)
    company_id, key, link_id = s.link_company(fake, cid, name="Acme AS", phone="1")
    s.edit_company(company_id, phone="2")
    fake.update_actor("Customer", key, {"phone": "3"})
    result = engine.sync_record(link_id)
    [conflict] = result.conflicts
    assert (conflict.crm_value, conflict.erp_value, conflict.winner) == ("2", "3", "CRM")
    fake.reply_error("GetActors", "The ERP is closed for maintenance")
    failed = engine.sync_record(link_id)
    assert not failed.ok and failed.message == "The ERP is closed for maintenance"
    assert s.get_run(failed.run_id).status == RunStatus.FAILED
    fake.delete_actor("Customer", key)
    broken = engine.sync_record(link_id)
    assert not broken.ok and broken.broken and "marked broken" in broken.message


def test_sync_record_while_another_run_is_active_raises_run_busy(ctx, fake):
    cid = s.make_connection(fake)
    _company, _key, link_id = s.link_company(fake, cid, name="Acme AS")
    run, created = runs.request_run(cid, kind=RunKind.SYNC, trigger="schedule")
    with pytest.raises(runs.RunBusy, match=r"A sync of Fake ERP is queued \(run #\d+\)") as info:
        engine.sync_record(link_id)
    assert info.value.run_id == run.id
    db.session.get(Connection, cid).active = False
    db.session.commit()
    runs.mark_failed(run.id, "cancelled")
    with pytest.raises(runs.RunRefused, match="not active"):
        engine.sync_record(link_id)


def test_sync_record_that_wrote_the_crm_queues_the_other_connections(ctx, fake):
    with FakeConnector() as other:
        first, second, company_id, key1, _key2 = _two_erps_on_one_company(fake, other)
        fake.update_actor("Customer", key1, {"phone": "9"})
        link1 = db.session.scalar(select(Link.id).where(Link.connection_id == first))
        assert engine.sync_record(link1).ok
        queued = db.session.scalar(select(SyncRun).where(SyncRun.connection_id == second))
        assert queued.status == RunStatus.QUEUED and queued.trigger == "hub"


# ------------------------------------------------------------------------------------------------ CLI


def test_cli_sync_and_status(app, fake):
    with app.app_context():
        cid = s.make_connection(fake)
        company_id, key, _ = s.link_company(fake, cid, name="Acme AS")
        s.edit_company(company_id, phone="42")
    runner = app.test_cli_runner()
    result = runner.invoke(args=["erp", "sync", "--connection", "Fake ERP"])
    assert result.exit_code == 0, result.output
    assert "Fake ERP" in result.output and "succeeded" in result.output
    assert fake.get_actor("Customer", key)["FieldValues"]["phone"] == "42"
    result = runner.invoke(args=["erp", "sync", "--connection", "Fake ERP", "--resync-from", "crm"])
    assert result.exit_code == 0 and "resync_from_crm" in result.output
    status = runner.invoke(args=["erp", "status"])
    assert status.exit_code == 0 and "Fake ERP" in status.output and "Next sync" in status.output
    missing = runner.invoke(args=["erp", "sync", "--connection", "Nope"])
    assert missing.exit_code != 0 and "No active connection" in missing.output


@pytest.mark.slow
def test_the_benchmark_still_runs(tmp_path):
    """A tiny run of bench/sync_bench.py (Demo ERP over HTTP) so the benchmark does not rot."""
    import io

    from bench.sync_bench import run_benchmark

    out = io.StringIO()
    results = run_benchmark(200, 20, [50], out=out, repeat=2)
    assert [r["status"] for r in results] == ["succeeded"] * 4, out.getvalue()
    assert results[0]["calls"] == 1 and results[0]["records"] == 0
    assert results[1]["calls"] == 1 and results[1]["records"] == 0  # without a CRM mark: every link read
    assert results[2]["records"] == 40 and results[2]["to_crm"] == 20 and results[2]["to_erp"] == 20
    assert "| Scenario" in out.getvalue() and "Portal ÷ floor" in out.getvalue()
    assert "medians of 2 invocations" in out.getvalue() and out.getvalue().count("setup:") == 2
    change = results[2]
    assert change["portal_seconds"] > 0 and change["connector_seconds"] > 0
    # the floor replayed the run's own statements (bench/floor.py): some reads and writes, in transactions
    assert change["floor_seconds"] > 0 and change["statements"] > 10 and change["commits"] > 1
    assert change["ratio"] > 0  # the median of each invocation's portal ÷ floor


def test_persons_and_projects_sync_with_dates_numbers_and_lists(ctx, fake):
    from datetime import date

    from portal.models import Contact, CrmList, ListItem, ListItemMapping, Project

    cid = s.make_connection(fake, actor_types=("Person", "Project"), mappings={
        "Person": {"firstname": "first_name", "lastname": "last_name", "birthdate": "birth_date"},
        "Project": {"name": "name", "status": "status_id", "budget": "number", "startdate": "end_date"}})
    connection = db.session.get(Connection, cid)
    statuses = {i.name: i.id for i in db.session.scalars(select(ListItem).where(
        ListItem.list_name == CrmList.PROJECT_STATUS))}
    status_field = next(f for f in connection.actor_type("Project").fields if f.field_key == "status")
    for key, name in (("planned", "Planned"), ("active", "In progress"), ("done", "Completed")):
        status_field.list_mappings.append(ListItemMapping(erp_item_key=key, erp_item_text=name,
                                                          crm_item_id=statuses[name]))
    contact = Contact(first_name="Ada", last_name="Lovelace", birth_date=date(1815, 12, 10))
    project = Project(name="Engine", number="1500", status_id=statuses["Planned"])
    db.session.add_all([contact, project])
    db.session.flush()
    person_key = fake.add_actor("Person", {"firstname": "Ada", "lastname": "Lovelace", "birthdate": "1815-12-10"})
    project_key = fake.add_actor("Project", {"name": "Engine", "status": "planned", "budget": 1500.0})
    db.session.add_all([
        Link(connection_id=cid, crm_type="contact", crm_id=contact.id, erp_actor_type="Person", erp_key=person_key,
             base={}, status="ok"),
        Link(connection_id=cid, crm_type="project", crm_id=project.id, erp_actor_type="Project",
             erp_key=project_key, base={}, status="ok")])
    db.session.commit()
    first = s.run(cid)  # no agreed base yet: equal values agree, different ones are conflicts the CRM wins
    assert first.status == RunStatus.SUCCEEDED, first.message
    assert fake.get_actor("Project", project_key)["FieldValues"].get("startdate") is None
    fake.update_actor("Person", person_key, {"birthdate": "1815-12-11T00:00:00Z"})
    fake.update_actor("Project", project_key, {"status": "done", "budget": 2500.5})
    contact_row = db.session.get(Contact, contact.id)
    contact_row.first_name = "Augusta Ada"
    db.session.commit()
    outcome = s.run(cid)
    assert outcome.status == RunStatus.SUCCEEDED, outcome.message
    db.session.expire_all()
    assert db.session.get(Contact, contact.id).birth_date == date(1815, 12, 11)
    assert fake.get_actor("Person", person_key)["FieldValues"]["firstname"] == "Augusta Ada"
    project = db.session.get(Project, project.id)
    assert project.status_id == statuses["Completed"] and project.number == "2500.5"
    assert s.run(cid).counts.get("records", 0) == 0

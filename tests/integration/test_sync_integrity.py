"""Sync integrity regressions (issue: no edit is ever lost): feed paging by offset while the run writes, an ERP
edit that repeats its LastModified, the crash window between SaveActors and the CRM transaction.

Each scenario failed before the fix it names: the ERP edits behind re-stamped actors were skipped, the repeated
stamp was taken for "already merged", the conflicts settled by a killed run left no change-log row."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select

from portal.connectors.client import ConnectorClient
from portal.database import utcnow
from portal.extensions import db
from portal.models import RunStatus, SyncChange, SyncJournal
from portal.services.sync import runs
from tests import sync_support as s
from tests.fakes.connector_app import ok_response

pytestmark = pytest.mark.db


@pytest.fixture
def ctx(app):
    with app.app_context():
        yield app


def offset_paging(service):
    """GetActorsByTimestamp paged by offset (legal): the cursor is the index into the feed as ordered *now*, so an
    actor written between two pages moves to the end and shifts the others one place forward."""
    original = service.GetActorsByTimestamp

    def paged(body: dict) -> dict:
        everything = original({**body, "Limit": None, "Cursor": None})["Actors"]
        offset = int(body.get("Cursor") or 0)
        limit = body.get("Limit") or len(everything)
        page = everything[offset:offset + limit]
        more = offset + limit < len(everything)
        return ok_response(Actors=page, NextCursor=str(offset + limit) if more else None)

    return paged


def test_offset_paging_while_the_run_writes_loses_no_erp_edit(ctx, fake, monkeypatch):
    ctx.config.update(SYNC_PAGE_SIZE=25, SYNC_BATCH_SIZE=10)
    monkeypatch.setattr(fake.service, "GetActorsByTimestamp", offset_paging(fake.service))
    cid = s.make_connection(fake)
    linked = [s.link_company(fake, cid, name=f"Company {n:03}", phone=f"{n:03}") for n in range(120)]
    for n, (_company_id, key, _link) in enumerate(linked):
        fake.update_actor("Customer", key, {"email": f"erp{n}@example.com"})
    for n, (company_id, _key, _link) in enumerate(linked[:30]):
        s.edit_company(company_id, phone=f"crm-{n}")  # written to the ERP by the run: re-stamped, moved to the end
    outcome = s.run(cid)
    assert outcome.status == RunStatus.SUCCEEDED, outcome.message
    missing = [n for n, (company_id, _key, _link) in enumerate(linked)
               if s.company(company_id).email != f"erp{n}@example.com"]
    assert missing == []
    assert all(fake.get_actor("Customer", key)["FieldValues"]["phone"] == f"crm-{n}"
               for n, (_c, key, _l) in enumerate(linked[:30]))
    second = s.run(cid)
    assert second.counts.get("to_crm", 0) == 0 and second.counts.get("to_erp", 0) == 0


def test_an_actor_written_by_someone_else_between_pages_holds_the_cursor_back(ctx, fake, monkeypatch):
    """An ERP user saves an actor already read while the run pages: the actor behind it is skipped by this read,
    so the cursor stays where the next run reads it again."""
    ctx.config.update(SYNC_PAGE_SIZE=5)
    paged = offset_paging(fake.service)
    cid = s.make_connection(fake)
    linked = [s.link_company(fake, cid, name=f"Company {n:02}") for n in range(12)]
    for n, (_company_id, key, _link) in enumerate(linked):
        fake.update_actor("Customer", key, {"email": f"erp{n}@example.com"})
    pages = []

    def interfering(body: dict) -> dict:
        answer = paged(body)
        pages.append(body.get("Cursor"))
        if len(pages) == 1:  # after the first page: somebody in the ERP edits its first actor
            fake.update_actor("Customer", linked[0][1], {"phone": "from the ERP"})
        return answer

    monkeypatch.setattr(fake.service, "GetActorsByTimestamp", interfering)
    first = s.run(cid)
    assert first.counts.get("feed_moved") == 1
    monkeypatch.setattr(fake.service, "GetActorsByTimestamp", paged)
    s.run(cid)
    wrong = [n for n, (company_id, _key, _link) in enumerate(linked)
             if s.company(company_id).email != f"erp{n}@example.com"]
    assert wrong == []
    assert s.company(linked[0][0]).phone == "from the ERP"


def test_an_erp_edit_that_repeats_the_synced_last_modified_is_picked_up(ctx, fake):
    cid = s.make_connection(fake)
    company_id, key, link_id = s.link_company(fake, cid, name="Acme AS", email="old@acme.example")
    stamp = s.get_link(link_id).erp_last_modified
    with fake.service.lock:  # a second edit within the same second: the ERP keeps the stamp
        fake.service.actors["Customer"][key]["FieldValues"]["email"] = "new@acme.example"
    assert fake.get_actor("Customer", key)["LastModified"] == stamp
    outcome = s.run(cid)
    assert s.company(company_id).email == "new@acme.example", outcome.message
    # an unchanged actor with that stamp is still recognised as already merged
    again = s.run(cid)
    assert again.counts.get("erp_repeats") == 1 and again.counts.get("to_crm", 0) == 0


class _Killed(BaseException):
    """The process dies (not an Exception: nothing in the engine may handle it)."""


def _conflicted_pair(fake, cid: int, count: int) -> list[tuple[int, str]]:
    pairs = [s.link_company(fake, cid, name=f"Company {n}", phone="100")[:2] for n in range(count)]
    for n, (company_id, key) in enumerate(pairs):
        s.edit_company(company_id, phone=f"crm-{n}")
        fake.update_actor("Customer", key, {"phone": f"erp-{n}"})
    return pairs


def _conflicts() -> list[tuple[str, str, str]]:
    rows = db.session.scalars(select(SyncChange).where(SyncChange.conflict.is_(True)).order_by(SyncChange.id))
    return sorted((row.erp_key, row.new_value, row.other_value) for row in rows)


def test_a_run_killed_after_save_actors_leaves_its_conflicts_on_record(ctx, fake, monkeypatch):
    cid = s.make_connection(fake, policy="crm")
    pairs = _conflicted_pair(fake, cid, 10)
    real = ConnectorClient.save_actors

    def save_then_die(self, *args, **kwargs):
        real(self, *args, **kwargs)  # the ERP has the CRM's values now
        raise _Killed()

    monkeypatch.setattr(ConnectorClient, "save_actors", save_then_die)
    with pytest.raises(_Killed):
        s.run(cid)
    db.session.rollback()
    monkeypatch.setattr(ConnectorClient, "save_actors", real)
    assert all(fake.get_actor("Customer", key)["FieldValues"]["phone"] == f"crm-{n}"
               for n, (_c, key) in enumerate(pairs))
    assert db.session.scalar(select(func.count()).select_from(SyncJournal)) == 1
    assert runs.reap_stale(utcnow() + timedelta(hours=1)) == 1
    after = s.run(cid)
    assert after.status == RunStatus.SUCCEEDED, after.message
    assert after.counts.get("journal_recovered") == 10
    # the uninterrupted twin logs 10 conflicts, each with the ERP's losing value
    assert _conflicts() == sorted((key, f"crm-{n}", f"erp-{n}") for n, (_c, key) in enumerate(pairs))
    recovered = db.session.scalars(select(SyncChange).where(SyncChange.conflict.is_(True))).all()
    assert all("not confirmed" in row.rule for row in recovered)
    assert db.session.scalar(select(func.count()).select_from(SyncJournal)) == 0
    again = s.run(cid)
    assert again.counts.get("to_erp", 0) == 0 and again.counts.get("to_crm", 0) == 0


def test_a_failed_run_records_its_journal_itself(ctx, fake, monkeypatch):
    """A connector failure after SaveActors (the run fails with a readable message) also leaves the record."""
    cid = s.make_connection(fake, policy="crm")
    pairs = _conflicted_pair(fake, cid, 3)
    original = fake.service.SaveActors

    def saved_but_answer_lost(body: dict) -> dict:
        original(body)
        return {"IsOk": False, "State": "Error", "UserExplanation": "Gateway lost the answer",
                "TechExplanation": "", "ErrorCode": "UNAUTHORIZED"}

    monkeypatch.setattr(fake.service, "SaveActors", saved_but_answer_lost)
    failed = s.run(cid)
    assert failed.status == RunStatus.FAILED
    assert sorted(row[0] for row in _conflicts()) == sorted(key for _c, key in pairs)
    assert db.session.scalar(select(func.count()).select_from(SyncJournal)) == 0


def test_an_uninterrupted_run_keeps_no_journal(ctx, fake):
    cid = s.make_connection(fake, policy="crm")
    _conflicted_pair(fake, cid, 4)
    outcome = s.run(cid)
    assert outcome.counts.get("conflicts") == 4
    assert len(_conflicts()) == 4 and all("not confirmed" not in row.rule for row in s.changes())
    assert db.session.scalar(select(func.count()).select_from(SyncJournal)) == 0


# ------------------------------------------------------------------------------ values the CRM refuses


def test_a_value_the_crm_form_would_refuse_is_a_recorded_error_not_stored_data(ctx, fake, admin_client):
    cid = s.make_connection(fake)
    company_id, key, link_id = s.link_company(fake, cid, name="Post AS", email="post@example.com", phone="1")
    fake.update_actor("Customer", key, {"email": "post10@erp", "phone": "2"})
    outcome = s.run(cid)
    assert outcome.status == RunStatus.PARTIAL, outcome.message
    record = s.company(company_id)
    assert record.email == "post@example.com" and record.phone == "2"  # the rest of the record synced
    errors = [c for c in s.changes(outcome.run_id) if c.direction == "error"]
    assert len(errors) == 1 and errors[0].crm_field_key == "email" and "post10@erp" in errors[0].rule
    link = s.get_link(link_id)
    assert link.base["email"] == "post@example.com" and link.retry_at is not None
    # the company is still saveable in the CRM form by someone who never touched the e-mail
    page = admin_client.get(f"/companies/{company_id}/edit")
    assert page.status_code == 200
    from tests.conftest import form_of
    form = form_of(page.get_data(as_text=True))
    form["name"] = "Post AS (renamed)"
    saved = admin_client.post(f"/companies/{company_id}/edit", data=form)
    assert saved.status_code in (302, 303), saved.get_data(as_text=True)[:500]
    assert s.company(company_id).name == "Post AS (renamed)"


# ------------------------------------------------------------------------------ a contact moved to another company


def _person_world(fake, **connection):
    from portal.models import Contact, Link

    cid = s.make_connection(fake, actor_types=("Customer", "Person"), mappings={
        "Person": {"firstname": "first_name", "lastname": "last_name"}}, **connection)
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
    return cid, first, second, contact.id, person


def _contact(contact_id):
    from portal.models import Contact

    db.session.expire_all()
    return db.session.get(Contact, contact_id)


def test_a_person_moved_in_the_erp_moves_the_contact_and_is_logged(ctx, fake):
    cid, first, second, contact_id, person = _person_world(fake)
    with fake.service.lock:
        stored = fake.service.actors["Person"][person]
        stored["ParentErpKey"], stored["LastModified"] = second[1], fake.service.clock.tick()
    outcome = s.run(cid)
    assert outcome.status == RunStatus.SUCCEEDED, outcome.message
    assert _contact(contact_id).company_id == second[0]
    moved = [c for c in s.changes(outcome.run_id) if c.crm_field_key == "company_id"]
    assert [(c.direction, c.old_value, c.new_value) for c in moved] == [("to_crm", "First AS", "Second AS")]
    again = s.run(cid)
    assert again.counts.get("to_crm", 0) == 0 and again.counts.get("to_erp", 0) == 0


def test_a_contact_moved_in_the_crm_moves_the_person_in_the_erp(ctx, fake):
    cid, first, second, contact_id, person = _person_world(fake)
    contact = _contact(contact_id)
    contact.company_id = second[0]
    db.session.commit()
    outcome = s.run(cid)
    assert outcome.status == RunStatus.SUCCEEDED, outcome.message
    stored = fake.get_actor("Person", person)
    assert (stored["ParentActorType"], stored["ParentErpKey"]) == ("Customer", second[1])
    moved = [c for c in s.changes(outcome.run_id) if c.erp_field_key == "ParentErpKey"]
    assert [(c.direction, c.new_value) for c in moved] == [("to_erp", f"Customer {second[1]} (Second AS)")]
    again = s.run(cid)
    assert again.counts.get("to_crm", 0) == 0 and again.counts.get("to_erp", 0) == 0


def test_a_move_to_an_unlinked_parent_leaves_both_sides_and_says_so(ctx, fake):
    cid, first, _second, contact_id, person = _person_world(fake)
    stray = fake.add_actor("Customer", {"name": "Not linked AS"})
    with fake.service.lock:
        stored = fake.service.actors["Person"][person]
        stored["ParentErpKey"], stored["LastModified"] = stray, fake.service.clock.tick()
    outcome = s.run(cid)
    assert outcome.status == RunStatus.PARTIAL
    assert _contact(contact_id).company_id == first[0]
    errors = [c.rule for c in s.changes(outcome.run_id) if c.direction == "error"]
    assert len(errors) == 1 and stray in errors[0] and "not linked to a CRM company" in errors[0]


# ------------------------------------------------------------------------------ partial SaveActors


def test_a_per_entry_error_of_save_actors_fails_only_that_record_and_keeps_its_edit(ctx, fake, monkeypatch):
    cid = s.make_connection(fake)
    linked = [s.link_company(fake, cid, name=f"Company {n}", phone="100") for n in range(3)]
    for n, (company_id, _key, _link) in enumerate(linked):
        s.edit_company(company_id, phone=f"crm-{n}")
    refused_key = linked[1][1]
    original = fake.service.SaveActors

    def partial(body: dict) -> dict:
        kept = [a for a in body["Actors"] if a["ErpKey"] != refused_key]
        answer = original({**body, "Actors": kept})
        answer["Actors"].append({"ErpKey": refused_key, "ActorType": "Customer", "IsOk": False,
                                 "ErrorCode": "LOCKED", "UserExplanation": "Record locked by another user"})
        return answer

    monkeypatch.setattr(fake.service, "SaveActors", partial)
    outcome = s.run(cid)
    assert outcome.status == RunStatus.PARTIAL
    assert fake.get_actor("Customer", refused_key)["FieldValues"]["phone"] == "100"
    errors = [c.rule for c in s.changes(outcome.run_id) if c.direction == "error"]
    assert len(errors) == 1 and "Record locked by another user" in errors[0]
    assert not [c for c in s.changes(outcome.run_id) if c.direction == "to_erp" and c.erp_key == refused_key]
    link = s.get_link(linked[1][2])
    assert link.base["phone"] == "100" and link.retry_at is not None
    # the record is merged again once the ERP takes it: the CRM edit was never dropped
    monkeypatch.setattr(fake.service, "SaveActors", original)
    link.retry_at = utcnow() - timedelta(seconds=1)
    db.session.commit()
    s.run(cid)
    assert fake.get_actor("Customer", refused_key)["FieldValues"]["phone"] == "crm-1"
    assert s.company(linked[1][0]).phone == "crm-1"


def test_get_actors_answered_not_found_for_one_deleted_key_breaks_only_that_link(ctx, fake, monkeypatch):
    """The contract's NOT_FOUND: a connector may refuse a whole GetActors for one unknown key."""
    cid = s.make_connection(fake)
    linked = [s.link_company(fake, cid, name=f"Company {n}", phone="100") for n in range(4)]
    for n, (company_id, _key, _link) in enumerate(linked):
        s.edit_company(company_id, phone=f"crm-{n}")
    fake.delete_actor("Customer", linked[2][1])
    original = fake.service.GetActors

    def strict(body: dict) -> dict:
        unknown = [key for key in body["ErpKeys"] if fake.get_actor("Customer", key) is None]
        if unknown:
            return {"IsOk": False, "State": "Error", "UserExplanation": f"No such customer: {unknown[0]}",
                    "TechExplanation": "", "ErrorCode": "NOT_FOUND"}
        return original(body)

    monkeypatch.setattr(fake.service, "GetActors", strict)
    outcome = s.run(cid)
    assert outcome.status == RunStatus.PARTIAL, outcome.message
    assert outcome.counts.get("broken") == 1
    assert s.get_link(linked[2][2]).status == "broken"
    assert [fake.get_actor("Customer", key)["FieldValues"]["phone"] for n, (_c, key, _l) in enumerate(linked)
            if n != 2] == ["crm-0", "crm-1", "crm-3"]

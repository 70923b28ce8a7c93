"""A batch's transaction checks, through the guards of its own writes, that no link was deleted and no record
changed since the batch read them (``apply._apply_once``): the usual batch makes no extra query; a batch that
finds a change is rolled back and applied again with everything checked first, where the changed record is left
for the next run and the rest is written. Forcing the checked path gives the same results."""

from __future__ import annotations

import pytest
from sqlalchemy import delete, event
from sqlalchemy.exc import OperationalError

from portal.extensions import db
from portal.models import Link, RunStatus
from portal.services.sync import apply, record_merge
from tests import sync_support as s


@pytest.fixture
def ctx(app):
    with app.app_context():
        yield app


@pytest.fixture(params=["guarded", "checked"])
def mode(request, monkeypatch):
    """Both ways of finding changes: the guarded writes, and the check query (a driver without executemany
    rowcounts)."""
    if request.param == "checked":
        monkeypatch.setattr(type(db.engine.dialect), "supports_sane_multi_rowcount", False)
    return request.param


def _erp(fake, key):
    return fake.get_actor("Customer", key)["FieldValues"]


def _while_merging(monkeypatch, crm_id: int, action) -> None:
    """Run ``action`` once, right after the engine merged the record ``crm_id`` (read, not yet written)."""
    original = record_merge.plan_item
    done = []

    def plan_item(ctx_, plan, it, mode_):
        original(ctx_, plan, it, mode_)
        if it.crm_id == crm_id and not done:
            done.append(True)
            action()

    monkeypatch.setattr(record_merge, "plan_item", plan_item)


def _three_changed_in_the_erp(fake) -> tuple[int, list[tuple[int, str, int]]]:
    """A connection and three linked companies (phone "1") whose phone the ERP then changed to "2"."""
    cid = s.make_connection(fake)
    linked = [s.link_company(fake, cid, name=f"Company {n}", phone="1") for n in range(3)]
    for _company, key, _link in linked:
        fake.update_actor("Customer", key, {"phone": "2"})
    return cid, linked


def _check_queries() -> list[str]:
    statements: list[str] = []

    def seen(_conn, _cursor, statement, *_args):
        if statement.startswith("SELECT link.id, company.updated_at"):
            statements.append(statement)

    event.listen(db.engine, "before_cursor_execute", seen)
    return statements


def test_a_batch_without_changes_meanwhile_makes_no_check_query(ctx, fake, mode):
    cid = s.make_connection(fake)
    linked = [s.link_company(fake, cid, name=f"Company {n}", phone="1") for n in range(4)]
    for company_id, _key, _link in linked[:2]:
        s.edit_company(company_id, phone="2")
    for _company, key, _link in linked[2:]:
        fake.update_actor("Customer", key, {"phone": "3"})
    checks = _check_queries()
    outcome = s.run(cid)
    assert outcome.status == RunStatus.SUCCEEDED, outcome.message
    assert [_erp(fake, k)["phone"] for _c, k, _l in linked] == ["2", "2", "3", "3"]
    assert [s.company(c).phone for c, _k, _l in linked] == ["2", "2", "3", "3"]
    assert "contended_batches" not in outcome.counts and "deferred" not in outcome.counts
    assert len(checks) == (0 if mode == "guarded" else 2)  # one batch from each side


def test_a_record_edited_while_its_erp_change_is_merged_keeps_the_edit(ctx, fake, monkeypatch, mode):
    cid, linked = _three_changed_in_the_erp(fake)
    edited = linked[1][0]
    _while_merging(monkeypatch, edited, lambda: s.edit_company(edited, name="Renamed by a user"))
    outcome = s.run(cid)
    assert outcome.status == RunStatus.SUCCEEDED, outcome.message
    assert outcome.counts["deferred"] == 1 and outcome.counts["to_crm"] == 2
    assert outcome.counts.get("contended_batches", 0) == (1 if mode == "guarded" else 0)
    assert [s.company(c).phone for c, _k, _l in linked] == ["2", "1", "2"]
    assert s.company(edited).name == "Renamed by a user"
    assert [c.crm_id for c in s.changes(outcome.run_id)] == [linked[0][0], linked[2][0]]
    again = s.run(cid)  # the deferred record: both sides' changes merge
    assert again.counts["records"] == 1
    assert s.company(edited).phone == "2" and _erp(fake, linked[1][1])["name"] == "Renamed by a user"


def test_a_record_edited_while_its_crm_change_goes_to_the_erp_is_merged_again(ctx, fake, monkeypatch, mode):
    cid = s.make_connection(fake)
    linked = [s.link_company(fake, cid, name=f"Company {n}", phone="1") for n in range(3)]
    for company_id, _key, _link in linked:
        s.edit_company(company_id, phone="2")
    edited, edited_key, edited_link = linked[0]
    _while_merging(monkeypatch, edited, lambda: s.edit_company(edited, phone="5"))
    outcome = s.run(cid)
    assert outcome.status == RunStatus.SUCCEEDED, outcome.message
    assert outcome.counts["deferred"] == 1
    assert s.get_link(edited_link).base["phone"] == "1"  # not marked as agreed on "2"
    again = s.run(cid)
    assert again.counts["records"] == 1
    assert _erp(fake, edited_key)["phone"] == "5" and s.company(edited).phone == "5"
    assert [_erp(fake, k)["phone"] for _c, k, _l in linked[1:]] == ["2", "2"]


def test_a_link_deleted_while_the_batch_is_merged_is_left_alone(ctx, fake, monkeypatch, mode):
    cid, linked = _three_changed_in_the_erp(fake)
    gone_company, _key, gone_link = linked[2]

    def disconnect():
        db.session.execute(delete(Link).where(Link.id == gone_link))
        db.session.commit()

    _while_merging(monkeypatch, gone_company, disconnect)
    outcome = s.run(cid)
    assert outcome.status == RunStatus.SUCCEEDED, outcome.message
    assert outcome.counts["to_crm"] == 2
    assert [s.company(c).phone for c, _k, _l in linked] == ["2", "2", "1"]
    assert db.session.get(Link, gone_link) is None
    assert gone_company not in [c.crm_id for c in s.changes(outcome.run_id)]


def test_a_locked_database_after_a_contended_batch_is_waited_for(ctx, fake, monkeypatch):
    cid, linked = _three_changed_in_the_erp(fake)
    edited = linked[1][0]
    _while_merging(monkeypatch, edited, lambda: s.edit_company(edited, name="Renamed by a user"))
    original = apply._apply_once
    attempts: list[bool] = []

    def apply_once(ctx_, plan, items, one_way, cursor=None, checked=False):
        attempts.append(checked)
        if checked and attempts.count(True) == 1:  # another writer holds the lock at the first checked attempt
            raise OperationalError("UPDATE sync_run …", {}, Exception("database is locked"))
        return original(ctx_, plan, items, one_way, cursor, checked)

    monkeypatch.setattr(apply, "_apply_once", apply_once)
    monkeypatch.setattr(apply.time, "sleep", lambda _seconds: None)
    outcome = s.run(cid)
    assert outcome.status == RunStatus.SUCCEEDED, outcome.message
    assert attempts == [False, True, True]
    assert outcome.counts["deferred"] == 1 and outcome.counts["to_crm"] == 2
    assert [s.company(c).phone for c, _k, _l in linked] == ["2", "1", "2"]

# ruff: noqa: F811 (the fixture connection_id comes from test_import.py)
"""Undo of an import run (issue #18 point 3): the preview of what would be removed and kept (with the reason),
the confirm that checks again, the ERP left alone, the audit, once only, finished runs only, admins only.

The ERP is tests/fakes/connector_app.FakeConnector over real HTTP (the fixtures of test_import.py).
"""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from portal.extensions import db
from portal.models import AuditEvent, Company, Contact, RunKind, RunStatus, SyncChange, SyncRun
from portal.services import import_undo
from tests.conftest import add_record, form_of
from tests.integration.test_import import (  # noqa: F401 (fixtures)
    companies,
    connection_id,
    contacts,
    links,
    run_import,
)


def _world(app, fake, connection_id):
    """Acme (2 persons), Beta (1 person), Gamma, and Old AS already in the CRM (matched by name, merged)."""
    acme = fake.add_actor("Customer", {"name": "Acme AS"})
    beta = fake.add_actor("Customer", {"name": "Beta AS"})
    gamma = fake.add_actor("Customer", {"name": "Gamma AS"})
    old = fake.add_actor("Customer", {"name": "Old AS", "email": "post@old.example"})
    fake.add_actor("Person", {"firstname": "Kari", "lastname": "Nordmann"}, parent=("Customer", acme))
    fake.add_actor("Person", {"firstname": "Ola", "lastname": "Hansen"}, parent=("Customer", acme))
    fake.add_actor("Person", {"firstname": "Per", "lastname": "Berg"}, parent=("Customer", beta))
    old_id = add_record(app, Company, name="Old AS", email="")
    run = run_import(app, connection_id, keys=[acme, beta, gamma, old], include_persons=True,
                     company_match="name", company_action="merge")
    assert run.status == RunStatus.SUCCEEDED, run.message
    assert run.counts["new"] == 6 and run.counts["updated"] == 1 and run.counts["linked_existing"] == 1
    ids = {c.name: c.id for c in companies(app)}
    assert ids["Old AS"] == old_id
    return run, ids


def _edit_and_add_contact(app, ids):
    with app.app_context():
        db.session.get(Company, ids["Gamma AS"]).phone = "+47 99 99 99 99"  # edited in the CRM after the import
        db.session.commit()
    return add_record(app, Contact, first_name="Hand", last_name="Made", company_id=ids["Beta AS"])


def _plan(app, run_id):
    with app.app_context():
        return import_undo.plan(db.session.get(SyncRun, run_id))


def test_the_import_stamps_the_links_it_makes(app, fake, connection_id):
    run, ids = _world(app, fake, connection_id)
    assert {link.import_run_id for link in links(app)} == {run.id}
    assert len(links(app)) == 7  # 4 companies (Old AS linked) + 3 persons


def test_preview_lists_created_records_and_keeps_changed_ones_with_the_reason(app, admin_client, fake,
                                                                              connection_id, monkeypatch):
    run, ids = _world(app, fake, connection_id)
    _edit_and_add_contact(app, ids)
    plan = _plan(app, run.id)
    assert not plan.refusal and plan.possible
    removed = {(i.crm_type, i.name) for i in plan.remove}
    assert removed == {("company", "Acme AS"), ("contact", "Kari Nordmann"), ("contact", "Ola Hansen"),
                       ("contact", "Per Berg")}
    assert [(i.name, i.only_link) for i in plan.unlink] == [("Old AS", True)]
    kept = {i.name: i.reason for i in plan.kept}
    assert kept.keys() == {"Gamma AS", "Beta AS"}
    assert kept["Gamma AS"].startswith("changed in the CRM on")
    assert kept["Beta AS"] == "has 1 contact(s) not added by this import"
    assert plan.updated == 1  # Old AS: not rolled back

    page = admin_client.get(f"/settings/import/runs/{run.id}/undo")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "Acme AS" in html and "Per Berg" in html and "Gamma AS" in html
    assert "has 1 contact(s) not added by this import" in html and "changed in the CRM on" in html
    assert "Nothing is deleted in the ERP" in html and "not rolled back" in html
    assert 'id="import-undo-form"' in html
    # two pagers, each keeping the other's page (with pages of 2 records)
    monkeypatch.setattr("portal.admin.routes_import_undo.PER_PAGE", 2)
    paged = admin_client.get(f"/settings/import/runs/{run.id}/undo?page=2&kept_page=1").get_data(as_text=True)
    assert "Page 2 of 3" in paged and "Page 1 of 1" not in paged  # 5 to remove (4 records + 1 link), 2 kept
    assert f"/settings/import/runs/{run.id}/undo?page=3&amp;kept_page=1" in paged
    assert f"/settings/import/runs/{run.id}/undo?page=1&amp;kept_page=1" in paged
    # the run page links to it
    assert f"/settings/import/runs/{run.id}/undo" in admin_client.get(
        f"/settings/import/runs/{run.id}").get_data(as_text=True)


def test_a_record_written_by_a_later_sync_is_kept(app, fake, connection_id):
    run, ids = _world(app, fake, connection_id)
    with app.app_context():
        later = SyncRun(connection_id=connection_id, kind=RunKind.SYNC, status=RunStatus.SUCCEEDED)
        db.session.add(later)
        db.session.flush()
        db.session.add(SyncChange(run_id=later.id, connection_id=connection_id, crm_type="company",
                                  crm_id=ids["Acme AS"], direction="to_erp", erp_field_key="name",
                                  crm_field_key="name", new_value="Acme AS"))
        db.session.commit()
        later_id = later.id
    plan = _plan(app, run.id)
    kept = {i.name: i.reason for i in plan.kept}
    assert kept["Acme AS"].startswith(f"written by run #{later_id} on")
    assert {i.name for i in plan.remove} >= {"Kari Nordmann", "Ola Hansen"}


def test_undo_removes_the_rest_and_their_links_keeps_the_erp_and_is_audited(app, admin_client, fake,
                                                                            connection_id):
    run, ids = _world(app, fake, connection_id)
    hand = _edit_and_add_contact(app, ids)
    with app.app_context():
        old_email = db.session.get(Company, ids["Old AS"]).email
    erp_before = {t: fake.service.all_actors(t) for t in ("Customer", "Person")}
    calls_before = len(fake.calls)

    data = form_of(admin_client.get(f"/settings/import/runs/{run.id}/undo").get_data(as_text=True))
    answer = admin_client.post(f"/settings/import/runs/{run.id}/undo", data=data)
    assert answer.status_code == 303, answer.get_data(as_text=True)

    assert sorted(c.name for c in companies(app)) == ["Beta AS", "Gamma AS", "Old AS"]
    assert [c.id for c in contacts(app)] == [hand]
    assert sorted((link.crm_type, link.crm_id) for link in links(app)) == [
        ("company", ids["Beta AS"]), ("company", ids["Gamma AS"])]
    with app.app_context():
        assert db.session.get(Company, ids["Old AS"]).email == old_email == "post@old.example"  # not restored
        done = db.session.get(SyncRun, run.id)
        undo = done.counts["undo"]
        assert undo["records_removed"] == 4 and undo["links_removed"] == 5 and undo["kept"] == 2
        assert undo["by"] and undo["kept_since_preview"] == 0
        event = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "import.undo"))
        assert event is not None and event.object_id == run.id and event.after["records_removed"] == 4
    assert {t: fake.service.all_actors(t) for t in ("Customer", "Person")} == erp_before
    assert len(fake.calls) == calls_before  # undo never calls the connector

    page = admin_client.get(f"/settings/import/runs/{run.id}").get_data(as_text=True)
    assert "This import was undone on" in page and f"/settings/import/runs/{run.id}/undo" not in page
    again = admin_client.post(f"/settings/import/runs/{run.id}/undo", data=data)
    assert again.status_code == 409 and "already undone" in again.get_data(as_text=True)
    assert len(companies(app)) == 3


def test_what_changed_between_preview_and_confirm_is_kept(app, admin_client, fake, connection_id):
    run, ids = _world(app, fake, connection_id)
    data = form_of(admin_client.get(f"/settings/import/runs/{run.id}/undo").get_data(as_text=True))
    with app.app_context():
        db.session.get(Company, ids["Acme AS"]).email = "new@acme.example"
        db.session.commit()
    add_record(app, Contact, first_name="Late", last_name="Comer", company_id=ids["Beta AS"])
    assert admin_client.post(f"/settings/import/runs/{run.id}/undo", data=data).status_code == 303
    assert sorted(c.name for c in companies(app)) == ["Acme AS", "Beta AS", "Old AS"]
    assert [c.last_name for c in contacts(app)] == ["Comer"]  # Acme's persons were unchanged: removed
    with app.app_context():
        assert db.session.get(SyncRun, run.id).counts["undo"]["kept_since_preview"] == 2


def test_what_the_preview_did_not_list_is_not_removed(app, fake, connection_id):
    run, ids = _world(app, fake, connection_id)
    with app.app_context():
        result = import_undo.undo(run.id, expected=[f"r:company:{ids['Gamma AS']}"])
    assert [i.name for i in result.remove] == ["Gamma AS"] and not result.unlink
    assert sorted(c.name for c in companies(app)) == ["Acme AS", "Beta AS", "Old AS"]
    assert len(contacts(app)) == 3


def test_undo_is_refused_while_the_import_runs_or_a_run_is_active(app, fake, connection_id):
    run, _ids = _world(app, fake, connection_id)
    with app.app_context():
        running = SyncRun(connection_id=connection_id, kind=RunKind.SYNC, status=RunStatus.RUNNING)
        db.session.add(running)
        db.session.commit()
        plan = import_undo.plan(db.session.get(SyncRun, run.id))
        assert "is running" in plan.refusal and not plan.possible
        with pytest.raises(import_undo.UndoProblem, match="is running"):
            import_undo.undo(run.id)
        running.status = RunStatus.SUCCEEDED
        active_import = SyncRun(connection_id=connection_id, kind=RunKind.IMPORT, status=RunStatus.RUNNING)
        db.session.add(active_import)
        db.session.commit()
        with pytest.raises(import_undo.UndoProblem, match="still running"):
            import_undo.undo(active_import.id)
    assert len(companies(app)) == 4


def test_a_running_import_has_no_undo_and_its_confirm_answers_409(app, admin_client, fake, connection_id):
    with app.app_context():
        active = SyncRun(connection_id=connection_id, kind=RunKind.IMPORT, status=RunStatus.RUNNING)
        db.session.add(active)
        db.session.commit()
        run_id = active.id
    page = admin_client.get(f"/settings/import/runs/{run_id}/undo").get_data(as_text=True)
    assert "still running" in page and 'id="import-undo-form"' not in page
    with app.app_context():
        token = import_undo_token(app, run_id)
    answer = admin_client.post(f"/settings/import/runs/{run_id}/undo", data={"previewed": token})
    assert answer.status_code == 409


def import_undo_token(app, run_id):
    from itsdangerous import URLSafeTimedSerializer

    return URLSafeTimedSerializer(app.config["SECRET_KEY"], salt="import-undo").dumps({"run": run_id, "items": []})


def test_a_tampered_preview_is_refused(app, admin_client, fake, connection_id):
    run, _ids = _world(app, fake, connection_id)
    answer = admin_client.post(f"/settings/import/runs/{run.id}/undo", data={"previewed": "forged"})
    assert answer.status_code == 400
    with app.app_context():
        other = import_undo_token(app, run.id + 1)
    assert admin_client.post(f"/settings/import/runs/{run.id}/undo", data={"previewed": other}).status_code == 400
    assert len(companies(app)) == 4


def test_undo_is_for_admins_only(app, user_client, fake, connection_id):
    run, _ids = _world(app, fake, connection_id)
    assert user_client.get(f"/settings/import/runs/{run.id}/undo").status_code == 403
    with app.app_context():
        token = import_undo_token(app, run.id)
    assert user_client.post(f"/settings/import/runs/{run.id}/undo", data={"previewed": token}).status_code == 403
    assert len(companies(app)) == 4


@pytest.fixture
def csrf_on(app_config):
    app_config["WTF_CSRF_ENABLED"] = True


def test_the_confirm_needs_the_csrf_token(csrf_on, app, admin_client, fake, connection_id):
    run, _ids = _world(app, fake, connection_id)
    data = form_of(admin_client.get(f"/settings/import/runs/{run.id}/undo").get_data(as_text=True))
    assert data.get("csrf_token")
    without = {k: v for k, v in data.items() if k != "csrf_token"}
    assert admin_client.post(f"/settings/import/runs/{run.id}/undo", data=without).status_code == 400
    assert len(companies(app)) == 4
    assert admin_client.post(f"/settings/import/runs/{run.id}/undo", data=data).status_code == 303


def test_the_start_page_cautions_to_back_up_first(admin_client, connection_id):
    html = admin_client.get(f"/settings/import/erp?connection_id={connection_id}").get_data(as_text=True)
    assert re.search(r"Back up first.*backup of the portal's database", html, re.S)
    assert "undo only removes the records it created" in html


def test_a_link_reused_by_a_later_import_belongs_to_that_run(app, fake, connection_id):
    key = fake.add_actor("Customer", {"name": "Acme AS"})
    first = run_import(app, connection_id, keys=[key])
    with app.app_context():  # the record vanishes without the delete hook; the next import reuses the link
        db.session.execute(Company.__table__.delete())
        db.session.commit()
    second = run_import(app, connection_id, keys=[key])
    [link] = links(app)
    assert link.import_run_id == second.id != first.id
    assert [i.name for i in _plan(app, second.id).remove] == ["Acme AS"]
    assert not _plan(app, first.id).possible  # its record is gone: nothing left to undo


def test_a_link_made_on_the_erp_tab_while_an_import_runs_is_not_the_imports(app, fake, connection_id):
    from portal.services.links import create_link

    record = add_record(app, Company, name="Tab AS")
    key = fake.add_actor("Customer", {"name": "Tab AS"})
    with app.app_context():
        db.session.add(SyncRun(connection_id=connection_id, kind=RunKind.IMPORT, status=RunStatus.RUNNING))
        db.session.commit()
        create_link(connection_id=connection_id, crm_type="company", crm_id=record,
                    actor={"ActorType": "Customer", "ErpKey": key}, base={}, crm_updated_at=None)
        db.session.commit()
    [link] = links(app)
    assert link.import_run_id is None

"""Settings → Sync → Show log: runs with live progress, the change log (filters, paging), retention, and the
manual triggers (Sync all now, Resync from CRM, Resync from ERP connection)."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import select

from portal.database import utcnow
from portal.extensions import db
from portal.models import AuditEvent, RunKind, RunStatus, SyncChange, SyncRun, SyncSettings
from portal.services.sync import engine, runs
from tests import sync_support as s
from tests.conftest import csrf_token_from
from tests.fakes.connector_app import FakeConnector


@pytest.fixture
def synced(app, fake):
    """A connection with three linked companies, a run that wrote to both sides and had a conflict."""
    with app.app_context():
        cid = s.make_connection(fake)
        linked = [s.link_company(fake, cid, name=f"Company {n}", phone="1") for n in range(3)]
        s.edit_company(linked[0][0], phone="2")
        fake.update_actor("Customer", linked[1][1], {"email": "erp@example.com"})
        s.edit_company(linked[2][0], phone="3")
        fake.update_actor("Customer", linked[2][1], {"phone": "4"})
        outcome = s.run(cid)
        return {"connection": cid, "run": outcome.run_id, "linked": linked}


def test_show_log_link_appears_on_the_sync_tab(admin_client):
    html = admin_client.get("/settings/sync").get_data(as_text=True)
    assert 'href="/settings/sync/log"' in html and "Show log" in html


def test_log_page_lists_runs_and_field_changes_with_conflicts(admin_client, synced):
    html = admin_client.get("/settings/sync/log").get_data(as_text=True)
    assert f'href="/settings/sync/runs/{synced["run"]}"' in html
    assert "succeeded" in html and "Command line" in html and "Fake ERP" in html
    assert "CRM → ERP" in html and "ERP → CRM" in html
    assert "conflict" in html and "CRM “3” beat ERP “4”" in html and "sync priority: CRM above Fake ERP" in html
    assert "Company 0" in html and "Sync all now" in html and "Resync from ERP connection" in html
    assert 'name="log_retention_days"' in html


def test_plain_users_cannot_see_the_log_or_trigger_syncs(user_client, synced):
    assert user_client.get("/settings/sync/log").status_code == 403
    assert user_client.post("/settings/sync/run-all").status_code == 403
    assert user_client.get(f"/settings/sync/runs/{synced['run']}/progress").status_code == 403


def test_change_log_filters(app, admin_client, synced):
    base = "/settings/sync/log?section=changes"
    rows = lambda html: html.count("<tr class=")  # noqa: E731
    everything = admin_client.get(base, htmx=True).get_data(as_text=True)
    assert "<html" not in everything and 'id="changes-table"' in everything
    assert rows(everything) == 3  # phone to ERP, email to CRM, the conflict (to ERP)
    company_id = synced["linked"][1][0]
    one = admin_client.get(f"{base}&record={company_id}", htmx=True).get_data(as_text=True)
    assert rows(one) == 1 and "erp@example.com" in one
    by_key = admin_client.get(f"{base}&record={synced['linked'][1][1]}", htmx=True).get_data(as_text=True)
    assert rows(by_key) == 1
    conflicts = admin_client.get(f"{base}&only=conflicts", htmx=True).get_data(as_text=True)
    assert rows(conflicts) == 1 and "beat" in conflicts
    tomorrow = (utcnow() + timedelta(days=1)).date().isoformat()
    assert rows(admin_client.get(f"{base}&since={tomorrow}", htmx=True).get_data(as_text=True)) == 0
    assert rows(admin_client.get(f"{base}&until={tomorrow}", htmx=True).get_data(as_text=True)) == 3
    other = admin_client.get(f"{base}&connection=999", htmx=True).get_data(as_text=True)
    assert rows(other) == 3  # an unknown connection is not a valid choice: the filter is ignored
    assert rows(admin_client.get(f"{base}&connection={synced['connection']}&crm_type=contact",
                                 htmx=True).get_data(as_text=True)) == 0
    assert admin_client.get(f"{base}&since=not-a-date", htmx=True).status_code == 200


def test_change_log_is_paged_fifty_a_page(app, admin_client, synced):
    with app.app_context():
        now = utcnow()
        db.session.execute(db.insert(SyncChange), [
            {"run_id": synced["run"], "connection_id": synced["connection"], "crm_type": "company", "crm_id": 1,
             "direction": "to_crm", "crm_field_key": "phone", "old_value": str(n), "new_value": str(n + 1),
             "at": now - timedelta(seconds=n)} for n in range(120)])
        db.session.commit()
    first = admin_client.get("/settings/sync/log?section=changes", htmx=True).get_data(as_text=True)
    assert first.count("<tr class=") == 50 and "Page 1 of 3" in first
    last = admin_client.get("/settings/sync/log?section=changes&page=3", htmx=True).get_data(as_text=True)
    assert last.count("<tr class=") == 23 and "Page 3 of 3" in last  # 120 + 3


def test_run_detail_and_progress_polling_stops_when_the_run_is_done(app, admin_client, synced, fake):
    detail = admin_client.get(f"/settings/sync/runs/{synced['run']}").get_data(as_text=True)
    assert "Sync run #" in detail and "waiting on the connector" in detail and "Field changes of this run" in detail
    done = admin_client.get(f"/settings/sync/runs/{synced['run']}/progress", htmx=True)
    assert done.status_code == 286 and "hx-trigger" not in done.get_data(as_text=True)
    triggers = json.loads(done.headers["HX-Trigger"])
    assert triggers["sync-finished"] == {"run_id": synced["run"]} and triggers["toast"][0]["level"] == "success"
    with app.app_context():
        run, _ = runs.request_run(synced["connection"], kind=RunKind.SYNC, trigger="manual")
        runs.claim(run.id)
        runs.heartbeat(run.id, progress_done=40, progress_total=100)
        run_id = run.id
    active = admin_client.get(f"/settings/sync/runs/{run_id}/progress", htmx=True)
    html = active.get_data(as_text=True)
    assert active.status_code == 200 and 'hx-trigger="every 1s"' in html
    assert '<progress value="40" max="100"' in html and "40 of 100 records" in html
    log = admin_client.get("/settings/sync/log").get_data(as_text=True)
    assert "Running now" in log and f'id="run-{run_id}"' in log
    assert admin_client.get("/settings/sync/runs/99999").status_code == 404


def test_sync_all_now_enqueues_one_run_per_active_connection(app, admin_client, synced, fake):
    with FakeConnector() as other:
        with app.app_context():
            second = s.make_connection(other, name="Second ERP")
        response = admin_client.post("/settings/sync/run-all", data={"no_blank": "y"}, htmx=True)
        assert response.status_code == 200 and 'id="active-runs"' in response.get_data(as_text=True)
        assert "Sync started for 2 connection(s)." in response.headers["HX-Trigger"]
        again = admin_client.post("/settings/sync/run-all", data={}, htmx=True)
        assert "already syncing" in again.headers["HX-Trigger"]
        with app.app_context():
            queued = db.session.scalars(select(SyncRun).where(SyncRun.status == RunStatus.QUEUED)).all()
            assert sorted(r.connection_id for r in queued) == sorted([synced["connection"], second])
            assert all(r.options == {"no_blank": True} and r.trigger == "manual" for r in queued)
            assert all(r.requested_by_label == "alice@example.com" for r in queued)
            assert db.session.scalar(select(AuditEvent).where(AuditEvent.action == "sync.run_all")) is not None
            outcomes = engine.execute_cycle([r.id for r in queued])
            assert all(o.status == RunStatus.SUCCEEDED for o in outcomes)


def test_sync_all_now_works_with_csrf_and_refuses_without(app, users, synced):
    from tests.conftest import login

    app.config["WTF_CSRF_ENABLED"] = True
    client = app.test_client()
    login(client, users["alice"])
    token = csrf_token_from(client.get("/settings/sync/log").get_data(as_text=True))
    assert client.post("/settings/sync/run-all", htmx=True).status_code == 400
    ok = client.post("/settings/sync/run-all", htmx=True, headers={"X-CSRFToken": token})
    assert ok.status_code == 200 and "Sync started for 1 connection(s)." in ok.headers["HX-Trigger"]


def test_resync_from_crm_confirms_then_enqueues(app, admin_client, synced):
    page = admin_client.get(f"/settings/connections/{synced['connection']}/resync")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "one way" in html and "Don&#39;t overwrite with blank values" in html
    assert "hx-confirm=" in html
    response = admin_client.post(f"/settings/connections/{synced['connection']}/resync", data={"no_blank": "y"},
                                 htmx=True)
    assert response.status_code == 200 and response.headers["HX-Redirect"].startswith("/settings/sync/runs/")
    with app.app_context():
        run = db.session.scalar(select(SyncRun).where(SyncRun.kind == RunKind.RESYNC_FROM_CRM))
        assert run.status == RunStatus.QUEUED and run.options == {"no_blank": True}
    busy = admin_client.post(f"/settings/connections/{synced['connection']}/resync-from-erp", data={}, htmx=True)
    assert busy.status_code == 409 and "is queued" in busy.headers["HX-Trigger"]
    with app.app_context():
        engine.execute_run(run.id)
    started = admin_client.post(f"/settings/connections/{synced['connection']}/resync-from-erp", data={})
    assert started.status_code == 302 and "/settings/sync/runs/" in started.headers["Location"]
    assert admin_client.get("/settings/connections/999/resync").status_code == 404


def test_retention_setting_saves_and_rejects_bad_values(app, admin_client):
    ok = admin_client.post("/settings/sync/log/retention", data={"log_retention_days": "30"}, htmx=True)
    assert ok.status_code == 200 and "kept for 30 days" in ok.headers["HX-Trigger"]
    for bad in ("0", "abc", "99999", ""):
        response = admin_client.post("/settings/sync/log/retention", data={"log_retention_days": bad}, htmx=True)
        assert response.status_code == 422, bad
        assert 'aria-invalid="true"' in response.get_data(as_text=True)
    with app.app_context():
        assert db.session.get(SyncSettings, 1).log_retention_days == 30

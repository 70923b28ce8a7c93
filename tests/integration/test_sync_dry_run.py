"""Dry-run previews (portal/services/sync/preview.py, docs/sync-engine.md §8) against the FakeConnector over HTTP:
for Sync all, Sync now on a connection, Resync from CRM, Resync from ERP and ``erp sync --dry-run`` the preview
lists per record and field what would change each way, the conflicts (winner and losing value) and the records
that would fail — with read calls only (no SaveActors, CreateActor or SaveConnection) and nothing written to CRM
records, links, the change log, the journal, the ERP cursors or the CRM marks. **Run it** executes the plan when
the data did not change since the preview, and refuses with the difference (and a fresh preview) when it did."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select

from portal.database import utcnow
from portal.extensions import db
from portal.models import AuditEvent, Company, Connection, Link, RunKind, RunStatus, SyncChange, SyncJournal, SyncRun
from portal.services.sync import engine, preview, runs
from portal.services.sync.context import RunContext
from tests import sync_support as s
from tests.fakes.connector_app import FakeConnector

WRITES = ("SaveActors", "CreateActor", "SaveConnection", "DeleteConnection")
READS = {"GetActorsByTimestamp", "GetActors", "GetList", "GetListItems"}


@pytest.fixture
def ctx(app):
    with app.app_context():
        yield app


def _state(*connection_ids: int) -> dict:
    """Everything a run may write: CRM records, links, the change log, the journal, cursors and CRM marks."""
    db.session.expire_all()
    connections = db.session.scalars(select(Connection).where(Connection.id.in_(connection_ids))
                                     .order_by(Connection.id)).all()
    state = {
        "companies": [tuple(r) for r in db.session.execute(
            select(Company.id, Company.name, Company.phone, Company.email, Company.vat_no, Company.updated_at)
            .order_by(Company.id))],
        "links": [tuple(r) for r in db.session.execute(
            select(Link.id, Link.status, Link.status_message, Link.base, Link.crm_synced_at, Link.erp_last_modified,
                   Link.last_synced_at, Link.last_result, Link.failures, Link.retry_at, Link.updated_at)
            .order_by(Link.id))],
        "changes": db.session.scalar(select(func.count()).select_from(SyncChange)),
        "journal": db.session.scalar(select(func.count()).select_from(SyncJournal)),
        "marks": [(dict(c.cursors or {}), dict(c.crm_cursors or {})) for c in connections],
    }
    db.session.commit()
    return state


def _writes(fake) -> list[str]:
    return [method for method, _body in fake.calls if method in WRITES]


def _erp(fake, key: str) -> dict:
    return fake.get_actor("Customer", key)["FieldValues"]


def _world(fake) -> dict:
    """A connection with a first real sync behind it (so it has ERP cursors and a CRM mark), then: a CRM edit, an
    ERP edit, a conflict on the phone (CRM wins: sync priority), an ERP e-mail the CRM refuses, and a calm one."""
    cid = s.make_connection(fake)
    to_erp = s.link_company(fake, cid, name="To ERP", phone="1")
    to_crm = s.link_company(fake, cid, name="To CRM", email="old@x.example")
    both = s.link_company(fake, cid, name="Both", phone="1")
    bad = s.link_company(fake, cid, name="Bad mail", email="ok@x.example")
    s.link_company(fake, cid, name="Calm")
    first = s.run(cid)
    assert first.status == RunStatus.SUCCEEDED, first.message
    s.edit_company(to_erp[0], phone="2")
    fake.update_actor("Customer", to_crm[1], {"email": "new@x.example"})
    s.edit_company(both[0], phone="2")
    fake.update_actor("Customer", both[1], {"phone": "3"})
    fake.update_actor("Customer", bad[1], {"email": "not an e-mail"})
    return {"cid": cid, "to_erp": to_erp, "to_crm": to_crm, "both": both, "bad": bad}


def _by_record(entries) -> dict[str, preview.PreviewEntry]:
    return {entry.record.split(" \u2194 ")[0].split(" ", 2)[-1]: entry for entry in entries}


# --------------------------------------------------------------------------------------------------- engine


def test_sync_preview_lists_each_way_conflicts_and_failures_and_writes_nothing(ctx, fake):
    w = _world(fake)
    cid = w["cid"]
    before, erp_before = _state(cid), fake.service.all_actors("Customer")
    fake.requests.clear()
    entries = []

    with preview.reporting(entries.append):
        outcome = s.run(cid, RunKind.SYNC, dry_run=True)

    assert outcome.status == RunStatus.SUCCEEDED, outcome.message
    assert _writes(fake) == [] and {m for m, _ in fake.calls} <= READS
    assert fake.service.all_actors("Customer") == erp_before
    assert _state(cid) == before  # no CRM record, link, change-log or journal row, cursor or CRM mark written
    report = _by_record(entries)
    assert set(report) == {"To ERP", "To CRM", "Both", "Bad mail"}
    assert report["To ERP"].lines()[1:] == ["  to Fake ERP: Phone: '1' -> '2'"]
    assert report["To CRM"].lines()[1:] == ["  to the CRM: E-mail: 'old@x.example' -> 'new@x.example'"]
    assert report["Both"].lines()[1:] == [
        "  to Fake ERP: Phone: '3' -> '2'",
        "  conflict: Telephone: CRM '2', Fake ERP '3' -> CRM wins (sync priority: CRM above Fake ERP)"]
    [error] = report["Bad mail"].detail.errors
    assert "E-mail could not be written to the CRM" in error and "not a valid e-mail" in error
    conflict = next(line for line in report["Both"].plan_lines() if line["dir"] == "conflict")
    assert (conflict["winner"], conflict["new"], conflict["loser"]) == ("CRM", "2", "3")

    run = s.get_run(outcome.run_id)
    c = run.counts
    assert runs.is_preview(run) and run.kind == RunKind.SYNC
    assert (c["would_to_crm"], c["would_to_erp"], c["would_conflicts"], c["would_errors"]) == (1, 2, 1, 1)
    assert "to_crm" not in c and "to_erp" not in c  # nothing counted as written
    assert c["plan_records"] == 4 and len(c["plan"]) == 4 and c["plan_lines"] == 5
    assert len(c["plan_fingerprint"]) == 64 and len(c["plan_digests"]) == 5
    plan = {entry["record"].split(" \u2194 ")[0].split(" ", 2)[-1]: entry for entry in c["plan"]}
    assert [(line["dir"], line["field"], line["old"], line["new"]) for line in plan["To ERP"]["lines"]] == [
        ("to_erp", "Phone", "1", "2")]
    assert run.message.startswith("Preview, nothing written: checked 4 records of Fake ERP; 3 records would be "
                                  "updated (1 in the CRM, 2 in Fake ERP), 1 conflict would be settled, 1 record "
                                  "with errors.")

    # the same data gives the same plan; the real sync then does what the preview said
    again = s.run(cid, RunKind.SYNC, dry_run=True)
    assert s.get_run(again.run_id).counts["plan_fingerprint"] == c["plan_fingerprint"]
    real = s.run(cid)
    assert (real.counts["to_crm"], real.counts["to_erp"], real.counts["conflicts"], real.counts["errors"]) == (
        1, 2, 1, 1)
    assert _erp(fake, w["to_erp"][1])["phone"] == "2" and s.company(w["to_crm"][0]).email == "new@x.example"


def test_a_preview_leaves_the_journal_of_a_stopped_run_alone_and_never_calls_a_write(ctx, fake):
    cid = s.make_connection(fake)
    company_id, key, link_id = s.link_company(fake, cid, name="Acme AS", phone="1")
    s.edit_company(company_id, phone="2")
    db.session.add(SyncJournal(run_id=None, connection_id=cid, rows=[{
        "link_id": link_id, "crm_type": "company", "crm_id": company_id, "direction": "to_erp",
        "erp_field_key": "phone", "crm_field_key": "phone", "old_value": "0", "new_value": "1"}], at=utcnow()))
    db.session.commit()
    before = _state(cid)
    outcome = s.run(cid, RunKind.SYNC, dry_run=True)
    assert outcome.status == RunStatus.SUCCEEDED and _state(cid) == before  # the journal is recovered by real runs
    run = s.get_run(outcome.run_id)
    connection = db.session.get(Connection, cid)
    dry = RunContext(run, connection, dry_run=True)
    try:
        with pytest.raises(RuntimeError, match="never calls save_actors"):
            dry.call(dry.client.save_actors, dry.guid, [])
        assert dry.client.resend_config is None  # no SaveConnection re-send either
    finally:
        dry.client.close()
    db.session.commit()
    assert _writes(fake) == []


def test_resync_from_crm_preview_one_way_and_a_deleted_actor(ctx, fake):
    cid = s.make_connection(fake)
    differs = s.link_company(fake, cid, name="Differs", phone="1", email="crm@x.example")
    gone = s.link_company(fake, cid, name="Gone", phone="1")
    s.link_company(fake, cid, name="Same", phone="1")
    fake.update_actor("Customer", differs[1], {"phone": "9", "email": "erp@x.example"})
    fake.delete_actor("Customer", gone[1])
    before, erp_before = _state(cid), fake.service.all_actors("Customer")
    fake.requests.clear()
    entries = []
    with preview.reporting(entries.append):
        outcome = s.run(cid, RunKind.RESYNC_FROM_CRM, dry_run=True)
    assert outcome.status == RunStatus.SUCCEEDED, outcome.message
    assert _writes(fake) == [] and [m for m, _ in fake.calls] == ["GetActors"]
    assert _state(cid) == before and fake.service.all_actors("Customer") == erp_before
    report = _by_record(entries)
    assert set(report) == {"Differs", "Gone"}
    assert report["Differs"].lines()[1:] == ["  to Fake ERP: E-mail: 'erp@x.example' -> 'crm@x.example'",
                                             "  to Fake ERP: Phone: '9' -> '1'"]
    assert report["Gone"].action == "break" and "would be marked broken" in report["Gone"].lines()[0]
    c = s.get_run(outcome.run_id).counts
    assert (c["would_to_erp"], c["would_fields_to_erp"], c["would_break"], c.get("would_to_crm", 0)) == (1, 2, 1, 0)
    assert s.get_link(gone[2]).status == "ok"


def test_resync_from_erp_preview_one_way(ctx, fake):
    cid = s.make_connection(fake)
    company_id, key, _ = s.link_company(fake, cid, name="Acme AS", phone="1")
    fake.update_actor("Customer", key, {"phone": "5"})
    s.edit_company(company_id, email="crm@x.example")
    before = _state(cid)
    entries = []
    with preview.reporting(entries.append):
        outcome = s.run(cid, RunKind.RESYNC_FROM_ERP, dry_run=True)
    assert outcome.status == RunStatus.SUCCEEDED and _state(cid) == before and _writes(fake) == []
    [entry] = entries
    assert entry.lines()[1:] == ["  to the CRM: E-mail: 'crm@x.example' -> (blank)",
                                 "  to the CRM: Telephone: '1' -> '5'"]
    assert s.company(company_id).phone == "1"


# ----------------------------------------------------------------------------------------------- the screens


def _preview_page(admin_client, response) -> tuple[int, str]:
    location = response.headers.get("HX-Redirect") or response.headers["Location"]
    run_id = int(re.search(r"/previews/(\d+)", location).group(1))
    page = admin_client.get(location)
    assert page.status_code == 200
    return run_id, page.get_data(as_text=True)


def test_sync_now_preview_of_a_connection_then_run_it(app, admin_client, fake):
    with app.app_context():
        w = _world(fake)
        cid = w["cid"]
        before = _state(cid)
    html = admin_client.get("/settings/sync/log").get_data(as_text=True)
    assert "Sync now" in html and f'name="connection" value="{cid}"' in html and ">Preview</button>" in html
    fake.requests.clear()
    response = admin_client.post("/settings/sync/preview", data={"kind": "sync", "connection": cid}, htmx=True)
    assert response.status_code == 200 and "HX-Redirect" in response.headers
    run_id, page = _preview_page(admin_client, response)
    assert "Preview: Sync of Fake ERP" in page and "Run it" in page
    assert "Phone" in page and "CRM → ERP" in page and "ERP → CRM" in page and "new@x.example" in page
    assert "CRM wins" in page and "conflict" in page and "could not be written to the CRM" in page
    with app.app_context():
        assert _state(cid) == before and _writes(fake) == []
        assert runs.last_runs(cid, 1)[0].id != run_id  # a preview is not the connection's last sync
    log = admin_client.get("/settings/sync/log").get_data(as_text=True)
    assert f'href="/settings/sync/previews/{run_id}" class="badge"' in log  # "Preview" in the run list

    ran = admin_client.post(f"/settings/sync/previews/{run_id}/run", data={}, htmx=True)
    location = ran.headers["HX-Redirect"]
    with app.app_context():
        real = db.session.scalars(select(SyncRun).order_by(SyncRun.id.desc())).first()
        assert real.status == RunStatus.PARTIAL and not runs.is_preview(real), real.message  # the bad e-mail
        assert real.options["plan"]["run_id"] == run_id and real.counts["plan_checked"] == 5
        assert (real.counts["to_crm"], real.counts["to_erp"], real.counts["conflicts"]) == (1, 2, 1)
        assert _erp(fake, w["to_erp"][1])["phone"] == "2" and s.company(w["to_crm"][0]).email == "new@x.example"
        assert s.get_run(run_id).options["ran_as"] == real.id
        assert db.session.scalar(select(AuditEvent).where(AuditEvent.action == "sync.run_it")) is not None
    detail = admin_client.get(location, follow_redirects=True).get_data(as_text=True)
    assert f"preview #{run_id}" in detail
    again = admin_client.post(f"/settings/sync/previews/{run_id}/run", data={}, htmx=True)
    assert "has not been run yet" in again.headers["HX-Trigger"]  # a plan runs once


def test_resync_from_crm_preview_refuses_run_it_when_the_data_changed(app, admin_client, fake):
    with app.app_context():
        cid = s.make_connection(fake)
        company_id, key, _ = s.link_company(fake, cid, name="Acme AS", phone="1", email="a@x.example")
        fake.update_actor("Customer", key, {"phone": "9"})
        erp_before = fake.service.all_actors("Customer")
    page = admin_client.get(f"/settings/connections/{cid}/resync").get_data(as_text=True)
    assert ">Preview</button>" in page and 'name="kind" value="resync_from_crm"' in page
    fake.requests.clear()
    response = admin_client.post("/settings/sync/preview", data={"kind": "resync_from_crm", "connection": cid})
    assert response.status_code == 302
    run_id, html = _preview_page(admin_client, response)
    assert "Preview: Resync from CRM of Fake ERP" in html and "Phone" in html and "CRM → ERP" in html

    with app.app_context():  # someone edits the record between the preview and Run it
        s.edit_company(company_id, email="b@x.example")
    ran = admin_client.post(f"/settings/sync/previews/{run_id}/run", data={})
    refused_id, html = _preview_page(admin_client, ran)
    assert "the data changed since the preview: 1 change differs" in html
    assert "changed since the preview" in html and "b@x.example" in html and "Run it" in html
    with app.app_context():
        refused = s.get_run(refused_id)
        assert refused.status == RunStatus.FAILED and runs.is_preview(refused)
        assert refused.counts["plan_differs"] == 1 and refused.counts["plan_new"]
        assert "Nothing was written" in refused.error
        assert _writes(fake) == [] and fake.service.all_actors("Customer") == erp_before

    ran = admin_client.post(f"/settings/sync/previews/{refused_id}/run", data={})  # the fresh preview: runs
    with app.app_context():
        real = db.session.scalars(select(SyncRun).order_by(SyncRun.id.desc())).first()
        assert real.status == RunStatus.SUCCEEDED and real.kind == RunKind.RESYNC_FROM_CRM, real.message
        assert _erp(fake, key)["phone"] == "1" and _erp(fake, key)["email"] == "b@x.example"


def test_resync_from_erp_preview_page(app, admin_client, fake):
    with app.app_context():
        cid = s.make_connection(fake)
        company_id, key, _ = s.link_company(fake, cid, name="Acme AS", phone="1")
        fake.update_actor("Customer", key, {"phone": "5"})
        before = _state(cid)
    response = admin_client.post("/settings/sync/preview", data={"kind": "resync_from_erp", "connection": cid},
                                 htmx=True)
    _run_id, html = _preview_page(admin_client, response)
    assert "Resync from ERP of Fake ERP" in html and "Telephone" in html and "ERP → CRM" in html and ">5<" in html
    with app.app_context():
        assert _state(cid) == before and _writes(fake) == []


def test_sync_all_preview_covers_every_connection_and_run_it_runs_them(app, admin_client, fake):
    with FakeConnector() as other:
        with app.app_context():
            first = s.make_connection(fake)
            a = s.link_company(fake, first, name="First AS", phone="1")
            second = s.make_connection(other, name="Second ERP")
            b = s.link_company(other, second, name="Second AS", phone="1")
            s.edit_company(a[0], phone="2")
            other.update_actor("Customer", b[1], {"phone": "7"})
            before = _state(first, second)
        html = admin_client.get("/settings/sync/log").get_data(as_text=True)
        assert 'hx-post="/settings/sync/preview"' in html
        response = admin_client.post("/settings/sync/preview", data={"kind": "sync"}, htmx=True)
        run_id, html = _preview_page(admin_client, response)
        assert "Preview: Sync (2 connections)" in html and "First AS" in html and "Second AS" in html
        with app.app_context():
            assert _state(first, second) == before and _writes(fake) == [] and _writes(other) == []
            previews = db.session.scalars(select(SyncRun).where(runs.preview_run())).all()
            assert len(previews) == 2 and len({p.options["group"] for p in previews}) == 1
        admin_client.post(f"/settings/sync/previews/{run_id}/run", data={}, htmx=True)
        with app.app_context():
            assert _erp(fake, a[1])["phone"] == "2" and s.company(b[0]).phone == "7"
            real = db.session.scalars(select(SyncRun).where(runs.real_run(), SyncRun.kind == RunKind.SYNC,
                                                            SyncRun.trigger == "manual")).all()
            assert len(real) == 2 and all(r.status == RunStatus.SUCCEEDED for r in real)


def test_a_large_preview_is_queued_and_its_page_follows_it(app, admin_client, fake):
    app.config["SYNC_PREVIEW_INLINE_LINKS"] = 0  # every preview "large": queued for the scheduler
    with app.app_context():
        cid = s.make_connection(fake)
        company_id, key, _ = s.link_company(fake, cid, name="Acme AS", phone="1")
        s.edit_company(company_id, phone="2")
    tab = admin_client.get(f"/settings/sync?connection={cid}").get_data(as_text=True)
    assert f'action="/settings/connections/{cid}/sync-now"' in tab and 'action="/settings/sync/preview"' in tab
    response = admin_client.post("/settings/sync/preview", data={"kind": "sync", "connection": cid}, htmx=True)
    run_id, html = _preview_page(admin_client, response)
    assert "Waiting for the background worker" in html and 'hx-trigger="every 1s"' in html
    assert "Run it</button>" not in html and 'hx-trigger="sync-finished from:body"' in html
    with app.app_context():
        assert s.get_run(run_id).status == RunStatus.QUEUED
        engine.execute_run(run_id)  # what the scheduler does
    html = admin_client.get(f"/settings/sync/previews/{run_id}").get_data(as_text=True)
    assert "Run it</button>" in html and "CRM → ERP" in html and "Phone" in html
    admin_client.post(f"/settings/sync/previews/{run_id}/run", data={}, htmx=True)
    with app.app_context():
        real = db.session.scalars(select(SyncRun).order_by(SyncRun.id.desc())).first()
        assert real.status == RunStatus.QUEUED and _erp(fake, key).get("phone") == "1"
        assert engine.execute_run(real.id).status == RunStatus.SUCCEEDED
        assert _erp(fake, key)["phone"] == "2"


def test_a_long_plan_is_paged_and_capped(app, admin_client, fake, monkeypatch):
    monkeypatch.setattr(preview, "PLAN_RECORDS", 3)
    with app.app_context():
        cid = s.make_connection(fake)
        for n in range(5):
            company_id, _key, _ = s.link_company(fake, cid, name=f"Company {n}", phone="1")
            s.edit_company(company_id, phone=f"2{n}")
        outcome = s.run(cid, RunKind.SYNC, dry_run=True)
        c = s.get_run(outcome.run_id).counts
        assert (c["plan_records"], len(c["plan"]), c["plan_lines"], len(c["plan_digests"])) == (5, 3, 5, 5)
    html = admin_client.get(f"/settings/sync/previews/{outcome.run_id}").get_data(as_text=True)
    assert "2 more records would change; the preview keeps the first 3." in html
    import portal.admin.routes_runs as routes

    monkeypatch.setattr(routes, "PLAN_PAGE_SIZE", 2)
    first = admin_client.get(f"/settings/sync/previews/{outcome.run_id}").get_data(as_text=True)
    assert "Page 1 of 2" in first and first.count("CRM → ERP") == 2
    second = admin_client.get(f"/settings/sync/previews/{outcome.run_id}?section=plan&run={outcome.run_id}&page=2",
                              htmx=True).get_data(as_text=True)
    assert "<html" not in second and "Page 2 of 2" in second and second.count("CRM → ERP") == 1


def test_preview_requests_are_refused_when_busy_or_malformed(app, admin_client, fake):
    with app.app_context():
        cid = s.make_connection(fake)
        busy = s.run_request(cid)
    response = admin_client.post("/settings/sync/preview", data={"kind": "sync", "connection": cid}, htmx=True)
    assert "is queued" in response.headers["HX-Trigger"]
    assert admin_client.post("/settings/sync/preview", data={"kind": "resync_from_crm"}).status_code == 400
    assert admin_client.post("/settings/sync/preview", data={"kind": "drop"}).status_code == 400
    assert admin_client.post("/settings/sync/preview", data={"kind": "sync", "connection": 999}).status_code == 404
    # a real run's page is its run page; Run it is for previews
    assert admin_client.get(f"/settings/sync/previews/{busy}").status_code == 302
    ran = admin_client.post(f"/settings/sync/previews/{busy}/run", data={}, htmx=True)
    assert "still running" in ran.headers["HX-Trigger"]


def test_sync_now_on_a_connection_queues_a_sync(app, admin_client, fake):
    with app.app_context():
        cid = s.make_connection(fake)
    response = admin_client.post(f"/settings/connections/{cid}/sync-now", data={}, htmx=True)
    assert "Sync of Fake ERP started." in response.headers["HX-Trigger"]
    with app.app_context():
        [run] = db.session.scalars(select(SyncRun)).all()
        assert (run.kind, run.status, run.trigger) == (RunKind.SYNC, RunStatus.QUEUED, "manual")
        assert engine.execute_run(run.id).status == RunStatus.SUCCEEDED


# ---------------------------------------------------------------------------------------------------- CLI


def test_cli_sync_dry_run_prints_the_plan_and_writes_nothing(app, fake):
    with app.app_context():
        w = _world(fake)
        cid = w["cid"]
        before = _state(cid)
    runner = app.test_cli_runner()
    fake.requests.clear()
    result = runner.invoke(args=["erp", "sync", "--connection", "Fake ERP", "--dry-run"])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "Fake ERP: sync, dry run (run #" in out
    assert re.search(r"Record\s+Field\s+Direction\s+Old\s+New\s+Conflict / error", out)
    assert re.search(r"To ERP .*Phone\s+CRM → ERP\s+'1'\s+'2'", out)
    assert re.search(r"E-mail\s+ERP → CRM\s+'old@x\.example'\s+'new@x\.example'", out)
    assert re.search(r"Telephone\s+conflict\s+'3'\s+'2'\s+CRM wins \(sync priority: CRM above Fake ERP\)", out)
    assert "error" in out and "not a valid e-mail" in out
    assert "Preview, nothing written: checked 4 records of Fake ERP" in out and "Nothing was written" in out
    with app.app_context():
        assert _state(cid) == before and _writes(fake) == []
    resync = runner.invoke(args=["erp", "sync", "--connection", "Fake ERP", "--resync-from", "crm", "--dry-run"])
    assert resync.exit_code == 0 and "resync_from_crm, dry run" in resync.output
    status = runner.invoke(args=["erp", "status"])
    assert "(preview)" in status.output
    with app.app_context():
        assert _state(cid) == before and _writes(fake) == []
    real = runner.invoke(args=["erp", "sync", "--connection", "Fake ERP"])
    assert real.exit_code == 0, real.output
    retried = runner.invoke(args=["erp", "sync", "--dry-run"])  # the refused e-mail is tried again, nothing else
    assert retried.exit_code == 0 and "not a valid e-mail" in retried.output and "CRM → ERP" not in retried.output
    fake.update_actor("Customer", w["bad"][1], {"email": "fixed@x.example"})
    assert runner.invoke(args=["erp", "sync"]).exit_code == 0
    nothing = runner.invoke(args=["erp", "sync", "--dry-run"])
    assert nothing.exit_code == 0 and "Nothing would change" in nothing.output, nothing.output


def test_reconcile_dry_run_keeps_working_and_has_a_plan(ctx, fake):
    cid = s.make_connection(fake)
    company_id, key, _ = s.link_company(fake, cid, name="Acme AS", phone="1")
    with fake.service.lock:  # drift: the feed never reports it
        fake.service.actors["Customer"][key]["FieldValues"]["phone"] = "4"
    before = _state(cid)
    outcome = s.run(cid, RunKind.RECONCILE, dry_run=True)
    run = s.get_run(outcome.run_id)
    assert run.message.startswith("Dry run, nothing written: read 1 link of Fake ERP; 1 record would be repaired")
    assert run.counts["plan_lines"] == 1 and run.counts["plan"][0]["lines"][0]["dir"] == "to_crm"
    assert _state(cid) == before and _writes(fake) == []

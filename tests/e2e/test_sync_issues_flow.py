"""Browser: a record the Demo ERP sends with a value the CRM refuses shows on the Sync tab's health block and in the
issues inbox; the value is fixed on the Demo ERP page, Retry now clears the issue, and the record's ERP tab says
"In sync". Saves docs/screenshots/sync-health.png and docs/screenshots/sync-issues.png on the way."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

pytest.importorskip("playwright")
from playwright.sync_api import expect  # noqa: E402

pytestmark = pytest.mark.e2e

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
BAD_EMAIL = "accounts at nordlys"
GOOD_EMAIL = "accounts@nordlys.example"


def _history(connection_id: int) -> None:
    """A fortnight of earlier runs and field changes, so the chart has something to show (added before any real
    run: the health block takes the run with the largest id as the latest)."""
    from portal.database import utcnow
    from portal.extensions import db
    from portal.models import SyncChange, SyncRun

    now = utcnow()
    for days_ago in range(13, 0, -1):
        moment = now - timedelta(days=days_ago)
        for n in range(2 + days_ago % 3):
            at = moment + timedelta(hours=n)
            status = "failed" if (days_ago, n) == (9, 0) else "succeeded"
            run = SyncRun(connection_id=connection_id, kind="sync", trigger="schedule", status=status,
                          created_at=at, started_at=at, finished_at=at + timedelta(seconds=3),
                          error="Demo ERP did not answer." if status == "failed" else "")
            db.session.add(run)
            db.session.flush()
            for k in range((days_ago * 7 + n) % 5):
                db.session.add(SyncChange(run_id=run.id, connection_id=connection_id, crm_type="company", crm_id=1,
                                          direction="to_crm" if k % 2 else "to_erp", erp_field_key="PHONE",
                                          crm_field_key="phone", old_value="1", new_value="2",
                                          conflict=k == 3, at=at))
    db.session.commit()


def _setup(app) -> dict:
    """A Demo ERP connection (Customer ↔ Company: name, phone, e-mail both ways) with three linked companies, then
    the ERP gives one an e-mail the CRM refuses and deletes another's customer, and a sync runs."""
    from portal.connectors.builtin.demo import DemoErpConnector
    from portal.database import utcnow
    from portal.extensions import db
    from portal.models import Company, Connection, Connector, Link, SyncSettings
    from portal.services.connections import apply_catalogue, fetch_catalogue
    from portal.services.connectors import client_for
    from portal.services.sync import engine, runs
    from portal.services.sync_settings import ensure_in_priority

    with app.app_context():
        settings = db.session.get(SyncSettings, 1)
        settings.next_due_at = utcnow() + timedelta(hours=1)
        db.session.commit()
        connector = db.session.scalar(select(Connector).where(Connector.url == "builtin:demo"))
        connection = Connection(connector=connector, name="Demo ERP", guid="0b5e7c1a-2d3f-4a6b-8c9d-0e1f2a3b4c5d",
                                active=True, last_test_ok=True, config_values={"CompanyDb": "demo"})
        db.session.add(connection)
        db.session.flush()
        client_for(connector).save_connection(connection.guid, {"CompanyDb": "demo"})
        apply_catalogue(connection, fetch_catalogue(connector, connection.guid))
        config = connection.actor_type("Customer")
        config.is_active = True
        for erp_field in config.fields:
            wanted = {"NAME": "name", "PHONE": "phone", "EMAIL": "email"}.get(erp_field.field_key)
            erp_field.crm_field = wanted
            erp_field.sync_to_crm = erp_field.sync_to_erp = wanted is not None
        ensure_in_priority(connection.id)
        db.session.commit()
        connection_id = connection.id
        _history(connection_id)
        demo = DemoErpConnector.for_path(app.config["DEMO_ERP_DB"])
        _total, customers = demo.browse("Customer", limit=3)
        companies = db.session.scalars(select(Company).order_by(Company.id).limit(3)).all()
        for company, actor in zip(companies, customers, strict=True):
            db.session.add(Link(connection_id=connection_id, crm_type="company", crm_id=company.id,
                                erp_actor_type="Customer", erp_key=actor["ErpKey"], base={},
                                erp_last_modified=actor["LastModified"], status="ok"))
        connection = db.session.get(Connection, connection_id)
        connection.cursors = {"Customer": max(a["LastModified"] for a in demo.browse("Customer", limit=500)[1])}
        db.session.commit()
        link_ids = db.session.scalars(select(Link.id).where(Link.connection_id == connection_id)
                                      .order_by(Link.id)).all()
        for link_id in link_ids:
            assert engine.sync_record(link_id).ok  # the first sync agrees on a base
        bad, gone = customers[0]["ErpKey"], customers[1]["ErpKey"]
        demo.update_fields("Customer", bad, {"EMAIL": BAD_EMAIL})
        demo.delete_actor("Customer", gone)
        db.session.get(Company, companies[1].id).phone = "+47 22 00 00 00"  # the run reads its customer: gone
        db.session.commit()
        run, _created = runs.request_run(connection_id, kind="sync", trigger="manual", requested_by="test")
        assert engine.execute_run(run.id).status == "partial"
        return {"connection": connection_id, "company": companies[0].id, "company_name": companies[0].name,
                "bad": bad, "broken_company": companies[1].name}


def test_a_failing_record_in_the_inbox_retry_after_fixing_it_and_the_badge_turns_in_sync(live_server, admin_page):
    app, url, page = live_server.app, live_server.url, admin_page
    world = _setup(app)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    # 1. The Sync tab: the connection is degraded, with one record with errors and one broken link.
    page.goto(f"{url}/settings/sync")
    health = page.locator("#sync-health")
    card = health.locator("article", has=page.get_by_role("heading", name=re.compile("^Demo ERP")))
    expect(card.locator(".badge").first).to_have_text("Degraded")
    expect(card).to_contain_text("1 record with errors")
    expect(card).to_contain_text("1 broken link")
    expect(card.get_by_role("img", name=re.compile("sync activity, last 14 days"))).to_be_visible()
    health.screenshot(path=str(SCREENSHOTS / "sync-health.png"))

    # 2. The inbox, from the health block's link: the record with its reason.
    card.get_by_role("link", name="1 record with errors").click()
    page.wait_for_url(re.compile(r"/settings/sync/issues\?connection=\d+"))
    expect(page.get_by_role("heading", name="Sync issues", level=1)).to_be_visible()
    row = page.locator("tr", has=page.get_by_role("link", name=world["company_name"], exact=True))
    expect(row).to_contain_text("E-mail could not be written to the CRM")
    group = page.locator("tbody.issue-group", has=row)
    expect(group.get_by_role("rowheader")).to_contain_text("Value the CRM refuses")
    expect(page.locator("tbody.issue-group", has_text=world["broken_company"])).to_contain_text("Broken link")
    page.locator("main").screenshot(path=str(SCREENSHOTS / "sync-issues.png"))

    # 3. Retry now while the value is still wrong: the issue stays, and says so.
    row.get_by_role("button", name=f"Retry now: {world['company_name']}").click()
    expect(page.locator("#toasts")).to_contain_text("Some fields could not be synced", timeout=15000)
    expect(page.locator("tr", has=page.get_by_role("link", name=world["company_name"], exact=True))).to_have_count(1)

    # 4. Fix the value on the Demo ERP page, then Retry now: the issue closes.
    page.goto(f"{url}/demo-erp/customers/{world['bad']}/edit")
    page.locator("#EMAIL").fill(GOOD_EMAIL)
    page.get_by_role("button", name="Save in ERP").click()
    expect(page.locator("main")).to_contain_text(GOOD_EMAIL)
    page.goto(f"{url}/settings/sync/issues")
    page.get_by_role("button", name=f"Retry now: {world['company_name']}").click()
    expect(page.locator("#toasts")).to_contain_text("Synced", timeout=15000)
    expect(page.get_by_role("link", name=world["company_name"], exact=True)).to_have_count(0)
    expect(page.locator("#issue-summary")).to_contain_text("1 issue.")  # the broken link stays

    # 5. The record's ERP tab: In sync, and the CRM took the fixed e-mail.
    page.goto(f"{url}/companies/{world['company']}?tab=erp")
    section = page.locator(f"#erp-conn-{world['connection']}")
    expect(section.locator(".sync-status")).to_have_text("In sync")
    expect(section).to_contain_text("Sync status:")
    page.goto(f"{url}/companies/{world['company']}")
    expect(page.locator("main")).to_contain_text(GOOD_EMAIL)
    # and the company list says so too
    page.goto(f"{url}/companies?sync=errors")
    expect(page.locator("#results")).to_contain_text(world["broken_company"])
    expect(page.locator("#results")).not_to_contain_text(world["company_name"])

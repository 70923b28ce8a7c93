"""No stale fragments (issue #17, item 4): every htmx action updates each part of the page it affects, without a
reload."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import select

pytest.importorskip("playwright")
from playwright.sync_api import expect  # noqa: E402

from tests.e2e.worlds import sync_issue_world  # noqa: E402

pytestmark = pytest.mark.e2e


def test_sync_now_updates_the_record_headers_updated_time(live_server, admin_page):
    from portal.connectors.builtin.demo import DemoErpConnector
    from portal.database import utcnow
    from portal.extensions import db
    from portal.models import Company, Link

    app, page, url = live_server.app, admin_page, live_server.url
    world = sync_issue_world(app)
    with app.app_context():
        link = db.session.scalars(select(Link).where(Link.status == "ok").order_by(Link.id.desc())).first()
        company = db.session.get(Company, link.crm_id)
        company.updated_at = utcnow() - timedelta(days=3)
        db.session.commit()
        company_id, erp_key, old = company.id, link.erp_key, company.updated_at.strftime("%Y-%m-%d %H:%M")
        DemoErpConnector.for_path(app.config["DEMO_ERP_DB"]).update_fields("Customer", erp_key,
                                                                           {"PHONE": "+47 99 88 77 66"})
    page.goto(f"{url}/companies/{company_id}?tab=erp")
    expect(page.locator("#record-meta")).to_contain_text(f"updated {old}")
    page.locator(f"#erp-conn-{world['connection']}").get_by_role("button", name="Sync now").click()
    expect(page.locator("#toasts")).to_contain_text("Synced")
    expect(page.locator("#record-meta")).not_to_contain_text(f"updated {old}")
    with app.app_context():
        fresh = db.session.get(Company, company_id).updated_at.strftime("%Y-%m-%d %H:%M")
    expect(page.locator("#record-meta")).to_contain_text(f"updated {fresh}")


def test_automatic_sync_keeps_saying_when_it_runs_next(live_server, admin_page):
    page, url = admin_page, live_server.url
    sync_issue_world(live_server.app)  # automatic sync on, next run in an hour
    page.goto(f"{url}/settings/sync")
    status = page.locator("#auto-sync-next")
    expect(status).to_contain_text(re.compile(r"next at \d{4}-\d\d-\d\d"))

    page.get_by_label("Sync interval (seconds)").fill("900")
    page.get_by_role("button", name="Save interval").click()
    expect(page.locator("#toasts")).to_contain_text("Sync interval set to 900 seconds")
    expect(page.locator("#auto-sync-next")).to_contain_text("Runs every 900 seconds; next at ")

    page.get_by_role("group", name="Automatic sync").get_by_role("button", name="Off").click()
    expect(page.locator("#auto-sync")).to_contain_text("Automatic sync is turned off.")
    page.get_by_role("group", name="Automatic sync").get_by_role("button", name="On").click()
    expect(page.locator("#auto-sync-next")).to_contain_text("next run is due now")

"""Browser: Preview of Resync from CRM on the Demo ERP lists per field what would change and writes nothing; Run it
then does exactly that (docs/sync-engine.md §8). Saves docs/screenshots/dry-run.png."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from sqlalchemy import func, select

pytest.importorskip("playwright")
from playwright.sync_api import expect  # noqa: E402

from tests.e2e.test_sync_flow import _demo_connection_with_a_link  # noqa: E402

pytestmark = pytest.mark.e2e

SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "screenshots" / "dry-run.png"
NEW_PHONE = "+47 555 09 09"


def _state(app, connection_id: int, erp_key: str) -> dict:
    from portal.connectors.builtin.demo import DemoErpConnector
    from portal.extensions import db
    from portal.models import Company, Connection, Link, SyncChange, SyncJournal

    with app.app_context():
        demo = DemoErpConnector.for_path(app.config["DEMO_ERP_DB"])
        actor = next(a for a in demo.browse("Customer", limit=500)[1] if a["ErpKey"] == erp_key)
        connection = db.session.get(Connection, connection_id)
        state = {
            "erp": (actor["FieldValues"], actor["LastModified"]),
            "companies": [tuple(r) for r in db.session.execute(
                select(Company.id, Company.name, Company.phone, Company.updated_at).order_by(Company.id))],
            "links": [tuple(r) for r in db.session.execute(
                select(Link.id, Link.status, Link.base, Link.erp_last_modified, Link.last_synced_at,
                       Link.crm_synced_at, Link.updated_at).order_by(Link.id))],
            "changes": db.session.scalar(select(func.count()).select_from(SyncChange)),
            "journal": db.session.scalar(select(func.count()).select_from(SyncJournal)),
            "marks": (dict(connection.cursors or {}), dict(connection.crm_cursors or {})),
        }
        db.session.commit()
        return state


def test_preview_of_resync_from_crm_lists_the_changes_and_writes_nothing(live_server, admin_page):
    from portal.extensions import db
    from portal.models import Company, SyncRun
    from portal.services.sync import runs

    app, url, page = live_server.app, live_server.url, admin_page
    company_id, erp_key, connection_id = _demo_connection_with_a_link(app)
    with app.app_context():
        company = db.session.get(Company, company_id)
        old_phone, company.phone = company.phone, NEW_PHONE
        db.session.commit()
    before = _state(app, connection_id, erp_key)
    assert before["erp"][0].get("PHONE") != NEW_PHONE

    page.goto(f"{url}/settings/connections/{connection_id}/resync")
    expect(page.get_by_role("heading", name=re.compile("Resync from CRM"))).to_be_visible()
    page.get_by_role("button", name="Preview", exact=True).click()
    page.wait_for_url(re.compile(r"/settings/sync/previews/\d+$"))
    main = page.locator("main")
    expect(main).to_contain_text("Preview: Resync from CRM of Demo ERP connection")
    plan = page.locator(".preview-table")
    expect(plan).to_contain_text("CRM → ERP")
    expect(plan).to_contain_text(NEW_PHONE)
    row = plan.locator("tr", has_text=NEW_PHONE)
    expect(row).to_contain_text(re.compile("phone", re.IGNORECASE))
    if old_phone:
        expect(row).to_contain_text(old_phone)
    expect(page.get_by_role("button", name="Run it")).to_be_visible()
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOT), full_page=True)

    assert _state(app, connection_id, erp_key) == before  # nothing written: ERP, CRM, links, log, cursors
    with app.app_context():
        [preview_run] = db.session.scalars(select(SyncRun).where(runs.preview_run())).all()
        assert preview_run.kind == "resync_from_crm" and preview_run.status == "succeeded"
        assert preview_run.counts["would_to_erp"] == 1 and "to_erp" not in preview_run.counts

    # Run it: the same plan, for real
    page.get_by_role("button", name="Run it").click()
    page.wait_for_url(re.compile(r"/settings/sync/runs/\d+$"))
    expect(page.locator("main")).to_contain_text("the plan was checked again")
    after = _state(app, connection_id, erp_key)
    assert after["erp"][0].get("PHONE") == NEW_PHONE

"""Browser: edit a company in the CRM, Sync now on its ERP tab, see the value on the Demo ERP page; edit it on the
Demo ERP page, wait for the scheduled sync, see it in the CRM — and watch the runs on Show log."""

from __future__ import annotations

import re
import time
from datetime import timedelta

import pytest
from sqlalchemy import select

pytest.importorskip("playwright")
from playwright.sync_api import expect  # noqa: E402

pytestmark = pytest.mark.e2e

CRM_PHONE = "+47 555 01 01"
ERP_PHONE = "+47 555 02 02"


def _demo_connection_with_a_link(app) -> tuple[int, str, int]:
    """A Demo ERP connection (Customer ↔ Company, phone and name both ways) and one linked company.
    Returns (company id, ErpKey, connection id)."""
    from portal.connectors.builtin.demo import DemoErpConnector
    from portal.database import utcnow
    from portal.extensions import db
    from portal.models import Company, Connection, Connector, Link, SyncSettings
    from portal.services.connections import apply_catalogue, fetch_catalogue
    from portal.services.connectors import client_for
    from portal.services.sync import engine
    from portal.services.sync_settings import ensure_in_priority

    with app.app_context():
        settings = db.session.get(SyncSettings, 1)
        settings.next_due_at = utcnow() + timedelta(hours=1)  # nothing scheduled while we set up
        db.session.commit()
        connector = db.session.scalar(select(Connector).where(Connector.url == "builtin:demo"))
        connection = Connection(connector=connector, name="Demo ERP connection", guid="6f1c3a52-9a0e-4c56-a1d3-"
                                "0e5b6d7c8f90", active=True, last_test_ok=True, config_values={"CompanyDb": "demo"})
        db.session.add(connection)
        db.session.flush()
        client_for(connector).save_connection(connection.guid, {"CompanyDb": "demo"})
        apply_catalogue(connection, fetch_catalogue(connector, connection.guid))
        config = connection.actor_type("Customer")
        config.is_active = True
        for erp_field in config.fields:
            wanted = {"NAME": "name", "PHONE": "phone"}.get(erp_field.field_key)
            erp_field.crm_field = wanted
            erp_field.sync_to_crm = erp_field.sync_to_erp = wanted is not None
        ensure_in_priority(connection.id)
        db.session.commit()
        demo = DemoErpConnector.for_path(app.config["DEMO_ERP_DB"])
        _total, customers = demo.browse("Customer", limit=1)
        actor = customers[0]
        company = db.session.scalars(select(Company).order_by(Company.id)).first()
        db.session.add(Link(connection_id=connection.id, crm_type="company", crm_id=company.id,
                            erp_actor_type="Customer", erp_key=actor["ErpKey"], base={},
                            erp_last_modified=actor["LastModified"], status="ok"))
        connection.cursors = {"Customer": max(a["LastModified"] for a in demo.browse("Customer", limit=500)[1])}
        db.session.commit()
        link_id = db.session.scalar(select(Link.id).where(Link.connection_id == connection.id))
        first = engine.sync_record(link_id)  # the first sync agrees on a base (the CRM wins: no agreed value)
        assert first.ok, first.message
        return company.id, actor["ErpKey"], connection.id


@pytest.mark.live_server(scheduler=True, dispatch_seconds=1)
def test_edit_in_crm_sync_now_then_edit_in_erp_and_the_schedule_brings_it_back(live_server, admin_page):
    from portal.database import utcnow
    from portal.extensions import db
    from portal.models import SyncRun, SyncSettings

    app, url, page = live_server.app, live_server.url, admin_page
    company_id, erp_key, connection_id = _demo_connection_with_a_link(app)

    # 1. Edit the company in the CRM.
    page.goto(f"{url}/companies/{company_id}/edit")
    page.get_by_label("Telephone").fill(CRM_PHONE)
    page.get_by_role("button", name="Save", exact=True).click()
    page.wait_for_url(re.compile(rf"/companies/{company_id}(\?.*)?$"))

    # 2. Sync now on its ERP tab.
    page.goto(f"{url}/companies/{company_id}?tab=erp")
    section = page.locator(f"#erp-conn-{connection_id}")
    section.get_by_role("button", name="Sync now").click()
    expect(page.locator("#toasts")).to_contain_text("Synced", timeout=15000)

    # 3. The Demo ERP page shows the value.
    page.goto(f"{url}/demo-erp/customers/{erp_key}")
    expect(page.locator("main")).to_contain_text(CRM_PHONE)

    # 4. Edit it on the Demo ERP page.
    page.goto(f"{url}/demo-erp/customers/{erp_key}/edit")
    page.locator("#PHONE").fill(ERP_PHONE)
    page.get_by_role("button", name="Save in ERP").click()
    expect(page.locator("main")).to_contain_text(ERP_PHONE)

    # 5. Wait for the scheduled sync (automatic sync On; the slot made due now, short interval).
    with app.app_context():
        settings = db.session.get(SyncSettings, 1)
        settings.auto_sync, settings.interval_seconds, settings.next_due_at = True, 5, utcnow()
        db.session.commit()
    deadline = time.monotonic() + 45
    while True:
        page.goto(f"{url}/companies/{company_id}")
        if ERP_PHONE in page.locator("main").inner_text():
            break
        assert time.monotonic() < deadline, "the scheduled sync never brought the ERP edit into the CRM"
        page.wait_for_timeout(1000)
    with app.app_context():
        run = db.session.scalars(select(SyncRun).where(SyncRun.connection_id == connection_id)
                                 .order_by(SyncRun.id.desc())).first()
        assert run.trigger == "schedule" and run.status == "succeeded" and run.counts.get("to_crm") == 1

    # 6. Show log lists both runs and the field changes.
    page.goto(f"{url}/settings/sync/log")
    expect(page.locator("#runs-table")).to_contain_text("Scheduled")
    changes = page.locator("#changes-table")
    expect(changes).to_contain_text(CRM_PHONE)
    expect(changes).to_contain_text(ERP_PHONE)
    expect(changes).to_contain_text("ERP → CRM")

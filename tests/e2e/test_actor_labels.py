"""The admin names the Demo ERP's Supplier "Vendor" on its mapping tab; a company's ERP tab then offers "Connect
to: Vendor" and the Connect dialog says Vendor too (issue #17, connector-defined labels)."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.e2e.htmx import settled
from tests.e2e.worlds import free_company, save_demo_connection

pytestmark = pytest.mark.e2e


def _active_demo_connection(app) -> int:
    """A Demo ERP connection (saved as the Define dialog saves it) with Customer and Supplier switched on, their
    names mapped both ways and searchable, and active (set directly, as tests/e2e/test_erp_tab_flow.py does)."""
    from portal.extensions import db
    from portal.models import Connection
    from portal.services.sync_settings import ensure_in_priority

    with app.app_context():
        connection_id = save_demo_connection("Demo ERP").id
        connection = db.session.get(Connection, connection_id)
        for actor_type in ("Customer", "Supplier"):
            config = connection.actor_type(actor_type)
            config.is_active = True
            for f in config.fields:
                if f.field_key == "NAME":
                    f.crm_field, f.sync_to_crm, f.sync_to_erp, f.show_in_search = "name", True, True, True
        connection.active = True
        ensure_in_priority(connection_id)
        db.session.commit()
        return connection_id


def test_admin_names_supplier_vendor_and_the_erp_tab_says_vendor(admin_page, live_server):
    page, base = admin_page, live_server.url
    connection_id = _active_demo_connection(live_server.app)
    company = free_company(live_server.app)
    with live_server.app.app_context():
        from portal.extensions import db
        from portal.models import Company

        name = db.session.get(Company, company).name

    # 1. Settings → Sync → the connection's mappings, Supplier tab: name it Vendor.
    page.goto(f"{base}/settings/connections/{connection_id}/mappings?actor=Supplier")
    expect(page.get_by_role("tab", name="Supplier")).to_have_attribute("aria-selected", "true")
    page.get_by_label("Name shown to users").fill("Vendor")
    page.get_by_role("button", name="Save name").click()
    settled(page)
    expect(page.get_by_role("tab", name="Vendor")).to_have_attribute("aria-selected", "true")
    expect(page.get_by_role("tab", name="Supplier")).to_have_count(0)
    expect(page.get_by_role("switch", name='Sync ERP "Vendor" to CRM "Company"')).to_be_checked()
    expect(page.get_by_label("Name shown to users")).to_have_value("Vendor")
    expect(page.get_by_role("button", name="Save name")).to_be_focused()  # focus survives the panel's swap

    # 2. A company's ERP tab: the Connect link reads Vendor, and so does the dialog's title.
    page.goto(f"{base}/companies/{company}")
    page.get_by_role("tab", name="ERP").click()
    expect(page.locator("#erp-tab")).to_be_visible()
    section = page.locator("section", has=page.get_by_role("heading", name="Demo ERP: not connected"))
    vendor = section.get_by_role("button", name="Connect to Vendor in Demo ERP")
    expect(vendor).to_have_text("Vendor")
    expect(section.get_by_role("button", name="Connect to Customer in Demo ERP")).to_have_text("Customer")
    expect(section.get_by_role("button", name="Supplier")).to_have_count(0)
    vendor.click()
    dialog = page.get_by_role("dialog", name=f"Connect “{name}” to Demo ERP — Vendor", exact=True)
    expect(dialog).to_be_visible()
    expect(dialog.locator("#erp-dialog-title")).to_have_text(f"Connect “{name}” to Demo ERP — Vendor")
    expect(dialog).to_contain_text("Find the Vendor in the ERP.")

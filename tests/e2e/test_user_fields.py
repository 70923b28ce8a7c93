"""Browser (issue #18, point 1): an admin defines a user-defined checkbox on companies, maps the Demo ERP's
Checkbox "Blocked" to it on the Mappings screen, and the value syncs both ways; the field shows in the company
form, details and list."""

from __future__ import annotations

import pytest
from sqlalchemy import select

pytest.importorskip("playwright")
from playwright.sync_api import expect  # noqa: E402

from tests.e2e.test_mapping_flow import press  # noqa: E402
from tests.e2e.worlds import sync_issue_world  # noqa: E402

pytestmark = pytest.mark.e2e


def _sync_now(page, url, company_id, connection_id, says="Synced") -> None:
    page.goto(f"{url}/companies/{company_id}?tab=erp")
    page.locator(f"#erp-conn-{connection_id}").get_by_role("button", name="Sync now").click()
    expect(page.locator("#toasts")).to_contain_text(says)


def test_a_user_defined_checkbox_maps_to_an_erp_checkbox_and_syncs_both_ways(live_server, admin_page):
    from portal.connectors.builtin.demo import DemoErpConnector
    from portal.extensions import db
    from portal.models import Company, Link

    app, page, url = live_server.app, admin_page, live_server.url
    world = sync_issue_world(app)
    with app.app_context():
        link = db.session.scalars(select(Link).where(Link.status == "ok").order_by(Link.id.desc())).first()
        company_id, erp_key = link.crm_id, link.erp_key
        company_name = db.session.get(Company, company_id).name
    demo = DemoErpConnector.for_path(app.config["DEMO_ERP_DB"])

    # Settings → Fields: define it
    page.goto(f"{url}/settings/sync")
    page.get_by_role("navigation", name="Settings").get_by_role("link", name="Fields").click()
    expect(page.get_by_role("heading", name="User-defined fields")).to_be_visible()
    page.get_by_label("Label", exact=True).fill("Key account")
    page.get_by_label("Type", exact=True).select_option(label="Checkbox")
    page.get_by_label("Show as a column in the list and search results").check()
    page.get_by_role("button", name="Add field").click()
    expect(page.locator("#toasts")).to_contain_text("Field “Key account” added to company records.")
    expect(page.get_by_role("row", name="Key account")).to_contain_text("Checkbox")

    # Mappings: the ERP Checkbox "Blocked" → the new field, both directions
    page.goto(f"{url}/settings/connections/{world['connection']}/mappings?actor=Customer")
    page.get_by_label("CRM field for Blocked", exact=True).select_option(label="Key account")
    press(page, "Sync Blocked to the CRM")
    press(page, "Sync Blocked to the ERP")
    # a first sync agrees on a base: both sides are unticked
    _sync_now(page, url, company_id, world["connection"], says="both sides already agree")

    # ERP → CRM
    demo.update_fields("Customer", erp_key, {"BLOCKED": True})
    _sync_now(page, url, company_id, world["connection"])
    page.goto(f"{url}/companies/{company_id}")
    details = page.locator("#tab-panel")
    expect(details.get_by_role("heading", name="More fields")).to_be_visible()
    expect(details.locator("dt", has_text="Key account").locator("xpath=following-sibling::dd[1]")).to_have_text("Yes")
    page.goto(f"{url}/companies?q={company_name}")
    expect(page.get_by_role("columnheader", name="Key account")).to_be_visible()

    # CRM → ERP
    page.goto(f"{url}/companies/{company_id}/edit")
    page.get_by_label("Key account").uncheck()
    page.get_by_role("button", name="Save").click()
    page.wait_for_url(f"{url}/companies/{company_id}")
    _sync_now(page, url, company_id, world["connection"])
    assert demo.get_actor("Customer", erp_key)["FieldValues"]["BLOCKED"] is False
    with app.app_context():
        assert db.session.get(Company, company_id).udf_checkbox_1 is False

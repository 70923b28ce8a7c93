"""Browser (issue #18, point 2): an admin maps the Demo ERP's Checkbox "Blocked" and Double "Credit limit" to the
CRM's checkbox "No mailings" and decimal "Credit limit" on the Mappings screen, and the values sync both ways."""

from __future__ import annotations

import pytest
from sqlalchemy import select

pytest.importorskip("playwright")
from playwright.sync_api import expect  # noqa: E402

from tests.e2e.test_mapping_flow import press  # noqa: E402
from tests.e2e.worlds import sync_issue_world  # noqa: E402

pytestmark = pytest.mark.e2e


def test_an_erp_checkbox_and_double_map_to_crm_fields_and_sync_both_ways(live_server, admin_page):
    from portal.connectors.builtin.demo import DemoErpConnector
    from portal.extensions import db
    from portal.models import Company, Link

    app, page, url = live_server.app, admin_page, live_server.url
    world = sync_issue_world(app)
    with app.app_context():
        link = db.session.scalars(select(Link).where(Link.status == "ok").order_by(Link.id.desc())).first()
        company_id, erp_key = link.crm_id, link.erp_key
    demo = DemoErpConnector.for_path(app.config["DEMO_ERP_DB"])

    page.goto(f"{url}/settings/connections/{world['connection']}/mappings?actor=Customer")
    page.get_by_label("CRM field for Blocked", exact=True).select_option("no_mailings")
    press(page, "Sync Blocked to the CRM")
    press(page, "Sync Blocked to the ERP")
    page.get_by_label("CRM field for Credit limit", exact=True).select_option("credit_limit")
    press(page, "Sync Credit limit to the CRM")
    press(page, "Sync Credit limit to the ERP")

    # a first sync agrees on a base for the newly mapped fields (fields that never agreed are a conflict)
    page.goto(f"{url}/companies/{company_id}?tab=erp")
    sync_now = page.locator(f"#erp-conn-{world['connection']}").get_by_role("button", name="Sync now")
    sync_now.click()
    expect(page.locator("#toasts")).to_contain_text("ynced")

    # ERP → CRM
    demo.update_fields("Customer", erp_key, {"BLOCKED": True, "CREDITLIMIT": 2500.5})
    page.goto(f"{url}/companies/{company_id}?tab=erp")
    page.locator(f"#erp-conn-{world['connection']}").get_by_role("button", name="Sync now").click()
    expect(page.locator("#toasts")).to_contain_text("Synced")
    page.goto(f"{url}/companies/{company_id}")
    details = page.locator("#tab-panel")
    expect(details.locator("dt", has_text="No mailings").locator("xpath=following-sibling::dd[1]")).to_have_text("Yes")
    expect(details.locator("dt", has_text="Credit limit").locator("xpath=following-sibling::dd[1]")).to_have_text(
        "2500.5")

    # CRM → ERP
    page.goto(f"{url}/companies/{company_id}/edit")
    page.get_by_label("No mailings").uncheck()
    page.get_by_label("Credit limit").fill("1200,75")  # a decimal comma is understood
    page.get_by_role("button", name="Save").click()
    page.wait_for_url(f"{url}/companies/{company_id}")
    page.goto(f"{url}/companies/{company_id}?tab=erp")
    page.locator(f"#erp-conn-{world['connection']}").get_by_role("button", name="Sync now").click()
    expect(page.locator("#toasts")).to_contain_text("Synced")
    values = demo.get_actor("Customer", erp_key)["FieldValues"]
    assert (values["BLOCKED"], values["CREDITLIMIT"]) == (False, 1200.75)
    with app.app_context():
        company = db.session.get(Company, company_id)
        assert (company.no_mailings, company.credit_limit) == (False, 1200.75)

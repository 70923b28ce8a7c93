"""Browser flows of the Sync tab (issue #2): a new admin defines an ERP connection on the Demo ERP connector,
tests it, configures the one mapping activation needs and activates it; a plain user cannot open settings."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.e2e


def test_admin_defines_tests_and_activates_a_demo_erp_connection(admin_page, live_server):
    page = admin_page
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Settings").click()
    expect(page.get_by_role("heading", name="Quote/Sync — Sync")).to_be_visible()
    expect(page.locator("#connectors")).to_contain_text("builtin:demo")

    page.locator("#connections").get_by_role("button", name="Add").click()
    expect(page.get_by_role("heading", name="Define new ERP connection")).to_be_visible()
    page.get_by_label("Name").fill("Demo production")
    expect(page.get_by_label("Company database")).to_have_value("DEMO")  # the connector's DefaultValue
    ok = page.get_by_role("button", name="OK")
    expect(ok).to_be_disabled()

    # a wrong password fails the test with the connector's explanation, OK stays disabled
    page.get_by_label("API user").fill("erp-sync")
    page.get_by_label("API password").fill("wrong")
    page.get_by_role("button", name="Test ERP connection").click()
    expect(page.locator("#test-result")).to_contain_text("Test failed")
    expect(page.get_by_role("button", name="OK")).to_be_disabled()

    page.get_by_label("API password").fill("demo")
    page.get_by_role("button", name="Test ERP connection").click()
    expect(page.locator("#test-result")).to_contain_text("Test passed")
    expect(page.get_by_label("API password")).to_have_value("")  # the secret never comes back
    page.get_by_role("button", name="OK").click()

    page.wait_for_url(re.compile(r"/settings/sync\?connection=\d+"))
    row = page.locator("#connections tbody", has_text="Demo production")
    expect(row).to_contain_text("Inactive")

    # activation is refused while nothing is mapped, and the reasons are listed
    row.get_by_role("button", name="Activate").click()
    expect(page.locator("#connections")).to_contain_text("cannot be activated")
    expect(page.locator("#connections")).to_contain_text("No actor type is switched on")

    # map the one mandatory field of Customer both ways, then activate
    page.get_by_role("link", name="Mappings", exact=True).click()
    page.get_by_label('Sync ERP "Customer" to CRM "Company"').check()
    for name in ("Sync Name to the CRM", "Sync Name to the ERP"):
        page.get_by_role("button", name=name, exact=True).click()
        expect(page.get_by_role("button", name=name, exact=True)).to_have_attribute("aria-pressed", "true")
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Settings").click()
    row = page.locator("#connections tbody", has_text="Demo production")
    row.get_by_role("button", name="Test").click()
    expect(page.locator("#connections")).to_contain_text("Test of Demo production: OK")
    page.locator("#connections tbody", has_text="Demo production").get_by_role("button", name="Activate").click()
    expect(page.locator("#connections tbody", has_text="Demo production")).to_contain_text("Active")

    # the audit log shows who did it
    page.goto(f"{live_server.url}/settings/audit")
    expect(page.locator("#audit-table")).to_contain_text("connection.activate")


def test_plain_user_cannot_open_settings(page, live_server, sign_in, make_portal_user):
    make_portal_user("sam@example.com")
    sign_in(page, "sam@example.com")
    expect(page.get_by_role("navigation", name="Main").get_by_role("link", name="Settings")).to_have_count(0)
    response = page.goto(f"{live_server.url}/settings/sync")
    assert response.status == 403
    expect(page.get_by_role("heading", name=re.compile("403"))).to_be_visible()

"""Browser test of multi-language connector texts (issue #18, point 5): the Demo ERP gives the config field
SimulateOffline and the Customer field CUSTOMERGROUP as US:"…";NO:"…"; the Account page's language (else the
browser's) picks the text shown on the connection form and the Mappings screen. The server's side is
tests/integration/test_multilang.py."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.e2e.worlds import save_demo_connection

pytestmark = pytest.mark.e2e

US_LABEL, NO_LABEL = "Simulate offline ERP", "Simuler at ERP-et er frakoblet"


def _demo_connection(live_server) -> int:
    """A saved (inactive) "Demo ERP" connection with its fields read."""
    from portal.extensions import db

    with live_server.app.app_context():
        connection = save_demo_connection()
        db.session.commit()
        return connection.id


def test_the_account_language_and_the_browser_language_pick_the_connector_texts(
        admin_page, live_server, browser, sign_in, make_portal_user):
    page = admin_page
    connection_id = _demo_connection(live_server)

    # the browser says en-US and nothing is chosen: US
    page.goto(f"{live_server.url}/settings/connections/new")
    expect(page.get_by_label(US_LABEL)).to_be_visible()
    expect(page.locator("#config-fields")).not_to_contain_text('US:"')

    # choose Norsk on the Account page
    page.goto(f"{live_server.url}/account")
    page.get_by_label("Language of ERP texts").select_option("NO")
    page.get_by_role("button", name="Save language").click()
    expect(page.get_by_text("ERP texts are now shown in Norsk.")).to_be_visible()
    expect(page.get_by_label("Language of ERP texts")).to_have_value("NO")

    page.goto(f"{live_server.url}/settings/connections/new")
    switch = page.get_by_label(NO_LABEL)
    expect(switch).to_be_visible()
    expect(page.locator("#cfg_SimulateOffline-hint")).to_have_text(
        'Svar på hvert kall med en advarsel ("ERP er frakoblet") for å prøve redusert modus')
    switch.check()  # the field still posts under its key
    expect(switch).to_be_checked()

    page.goto(f"{live_server.url}/settings/connections/{connection_id}/mappings?actor=Customer")
    row = page.locator("tr[data-field-key='CUSTOMERGROUP']")
    expect(row.locator(".field-name")).to_have_text("Kundegruppe")
    expect(row).to_contain_text("Pris- og rabattgruppe")
    expect(page.get_by_label("CRM field for Kundegruppe")).to_be_visible()

    # another admin without a choice, in a browser that asks for Norwegian Bokmål
    make_portal_user("nora@example.com", role="admin", name="Nora Admin")
    context = browser.new_context(locale="nb-NO", viewport={"width": 1400, "height": 1000})
    try:
        other = sign_in(context.new_page(), "nora@example.com")
        other.goto(f"{live_server.url}/settings/connections/{connection_id}/mappings?actor=Customer")
        expect(other.locator("tr[data-field-key='CUSTOMERGROUP'] .field-name")).to_have_text("Kundegruppe")
        other.goto(f"{live_server.url}/account")
        expect(other.get_by_text("From the browser: now Norsk.")).to_be_visible()
    finally:
        context.close()

    # back to "From the browser" (en-US here): US again
    page.goto(f"{live_server.url}/account")
    page.get_by_label("Language of ERP texts").select_option("")
    page.get_by_role("button", name="Save language").click()
    expect(page.get_by_text("ERP texts are now shown in your browser's language.")).to_be_visible()
    page.goto(f"{live_server.url}/settings/connections/{connection_id}/mappings?actor=Customer")
    expect(page.locator("tr[data-field-key='CUSTOMERGROUP'] .field-name")).to_have_text("Customer group")

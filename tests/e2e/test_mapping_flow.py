"""Browser flows of the connection configuration screens, on the built-in Demo ERP connector:

* an admin maps Customer fields both ways, sets a default with Ask user, maps a list, ranks fields and activates
  the connection;
* activation is refused and every reason is shown.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

pytestmark = pytest.mark.e2e


def demo_connection(live_server, *, name: str = "Demo production", tested: bool = True) -> int:
    """A saved connection on the Demo ERP connector (fields cached and pre-mapped), as the Define dialog makes it."""
    from portal.extensions import db
    from portal.models import Connection, Connector
    from portal.services import connections as service

    with live_server.app.app_context():
        connector = db.session.scalar(select(Connector).where(Connector.url == "builtin:demo"))
        fields = service.config_fields(connector)
        values, errors = service.collect_config(fields, {"cfg_CompanyDb": "DEMO", "cfg_Currency": "EUR"}, {},
                                                service.config_lists(connector, fields))
        assert not errors, errors
        connection = service.save_connection(
            None, connector=connector, name=name, description="", values=values, fields=fields,
            scope=service.Scope(), conflict_policy="priority",
            test_token_value=service.test_token(connector.id, values))
        if not tested:
            db.session.get(Connection, connection.id).last_test_ok = False
            db.session.commit()
        return connection.id


def field_id(live_server, cid: int, key: str, actor_type: str = "Customer") -> int:
    from portal.extensions import db
    from portal.models import Connection

    with live_server.app.app_context():
        config = db.session.get(Connection, cid).actor_type(actor_type)
        return next(f.id for f in config.fields if f.field_key == key)


def press(page, name: str) -> None:
    """Press a direction button and wait until the row came back with it pressed."""
    page.get_by_role("button", name=name, exact=True).click()
    expect(page.get_by_role("button", name=name, exact=True)).to_have_attribute("aria-pressed", "true")


def test_admin_maps_customer_sets_defaults_maps_a_list_ranks_and_activates(admin_page, live_server):
    cid = demo_connection(live_server)
    page = admin_page
    base = f"{live_server.url}/settings/connections/{cid}"

    # Mappings: switch Customer on, map fields both ways (each click swaps only its row)
    page.goto(f"{base}/mappings?actor=Customer")
    expect(page.get_by_role("heading", name="Configure field mapping for Demo production")).to_be_visible()
    switch = page.get_by_label('Sync ERP "Customer" to CRM "Company"')
    switch.check()
    expect(page.locator("#activation-status")).to_contain_text("“Name” is Mandatory in the ERP")
    expect(page.locator("tr", has_text="Customer number").get_by_role(
        "button", name="Sync Customer number to the ERP", exact=True)).to_be_disabled()
    press(page, "Sync Name to the CRM")
    press(page, "Sync Name to the ERP")
    expect(page.locator("#activation-status")).to_contain_text("Nothing stops this connection")
    page.get_by_label("CRM field for Notes", exact=True).select_option("street_address2")
    expect(page.get_by_role("button", name="Sync Notes to the CRM", exact=True)).to_be_enabled()
    press(page, "Sync Notes to the CRM")
    press(page, "Sync Notes to the ERP")
    press(page, "Sync Country to the CRM")
    press(page, "Sync Country to the ERP")
    page.get_by_label("Show E-mail in the ERP tab", exact=True).check()
    expect(page.get_by_label("Show E-mail in the ERP tab", exact=True)).to_be_checked()
    # a bad choice on a row is refused on that row: a Date field cannot map onto a text field
    invoice = page.get_by_label("CRM field for Last invoice date", exact=True)
    expect(invoice.locator("option[value='name']")).to_be_disabled()

    # Defaults: Currency = Norwegian krone, and ask the user
    page.get_by_role("link", name="Defaults", exact=True).click()
    page.get_by_label("Add a default value for").select_option(label="Currency (List)")
    page.get_by_label("Set default value").check()
    page.get_by_label("Default value", exact=True).select_option("NOK")
    page.get_by_label("Ask user for value").check()
    page.get_by_role("button", name="Save").click()
    currency_row = page.locator(f"#default-{field_id(live_server, cid, 'CURRENCY')}")
    expect(currency_row).to_contain_text("Norwegian krone")
    expect(currency_row.locator("td").nth(2)).to_have_text("Yes")

    # List mapping: Country items onto the CRM's countries
    page.get_by_role("link", name="List mapping", exact=True).click()
    expect(page.get_by_role("heading", name=re.compile("Customer: Country"))).to_be_visible()
    page.get_by_label("CRM item for Norway", exact=True).select_option(label="Norway")
    expect(page.get_by_label("CRM item for Norway", exact=True)).to_have_value(re.compile(r"\d+"))
    page.get_by_label("CRM item for Sweden", exact=True).select_option(label="Sweden")
    # a duplicate is flagged on both rows (the other one out of band), and cleared the same way
    page.get_by_label("CRM item for Denmark", exact=True).select_option(label="Norway")
    expect(page.locator("tr.duplicate")).to_have_count(2)
    expect(page.locator("#list-rows")).to_contain_text("Duplicate: Denmark also maps to Norway.")  # NO's row
    expect(page.locator("#list-rows")).to_contain_text("Duplicate: Norway also maps to Norway.")  # DK's row
    page.get_by_label("CRM item for Denmark", exact=True).select_option(label="(No selection)")
    expect(page.locator("tr.duplicate")).to_have_count(0)

    # Rank fields: E-mail up above Phone
    page.get_by_role("link", name="Rank fields", exact=True).click()
    rows = page.locator("#rank-table tbody tr th")
    expect(rows.nth(4)).to_contain_text("Phone")
    expect(rows.nth(6)).to_contain_text("E-mail")
    page.get_by_role("button", name="Move E-mail up", exact=True).click()
    expect(rows.nth(5)).to_contain_text("E-mail")
    page.get_by_role("button", name="Move E-mail up", exact=True).click()
    expect(rows.nth(4)).to_contain_text("E-mail")
    expect(rows.nth(5)).to_contain_text("Phone")

    # Activate on the Sync tab
    page.goto(f"{live_server.url}/settings/sync?connection={cid}")
    row = page.locator(f"#connection-{cid}")
    row.get_by_role("button", name="Activate", exact=True).click()
    expect(page.locator(f"#connection-{cid} .badge-active")).to_have_text("Active")

    # while active, an edit that would make the connection invalid is refused on its row (422, row swapped)
    page.goto(f"{base}/mappings?actor=Customer")
    page.get_by_role("button", name="Sync Name to the ERP", exact=True).click()
    name_row = page.locator(f"#mapping-{field_id(live_server, cid, 'NAME')}")
    expect(name_row.get_by_role("alert")).to_contain_text("The connection is active")
    expect(page.get_by_role("button", name="Sync Name to the ERP", exact=True)).to_have_attribute(
        "aria-pressed", "true")

    from portal.extensions import db
    from portal.models import AuditEvent, Connection

    with live_server.app.app_context():
        connection = db.session.get(Connection, cid)
        customer = connection.actor_type("Customer")
        by_key = {f.field_key: f for f in customer.fields}
        assert connection.active and customer.is_active
        assert by_key["NAME"].sync_to_crm and by_key["NAME"].sync_to_erp
        assert by_key["NOTES"].crm_field == "street_address2" and by_key["NOTES"].sync_to_erp
        assert by_key["CURRENCY"].default_value == "NOK" and by_key["CURRENCY"].ask_user
        assert {m.erp_item_key for m in by_key["COUNTRY"].list_mappings} == {"NO", "SE"}
        assert by_key["EMAIL"].rank < by_key["PHONE"].rank
        actions = set(db.session.scalars(select(AuditEvent.action)))
        assert {"mapping.actor_type", "mapping.update", "default.update", "list_mapping.update", "rank.move",
                "connection.activate"} <= actions


def test_activation_is_refused_and_every_reason_is_shown(admin_page, live_server):
    cid = demo_connection(live_server, tested=False)
    page = admin_page
    page.goto(f"{live_server.url}/settings/connections/{cid}/mappings?actor=Person")
    page.get_by_label('Sync ERP "Person" to CRM "Contact"').check()
    expect(page.locator("#activation-status")).to_contain_text("“Last name” is Mandatory")
    page.get_by_role("button", name="Activate connection").click()
    alert = page.locator("#activation-status [role=alert]")
    expect(alert).to_contain_text("Demo production cannot be activated:")
    expect(alert.locator("li")).to_have_count(3)
    expect(alert).to_contain_text("The connection has not passed a test.")
    expect(alert).to_contain_text("Person: “First name” is Mandatory in the ERP but has neither a direction to the "
                                  "ERP nor a default value.")
    expect(alert).to_contain_text("Person: “Last name” is Mandatory")

    # fixing one reason takes it off the list; the connection stays inactive
    press(page, "Sync First name to the ERP")
    expect(page.locator("#activation-status li")).to_have_count(2)
    page.get_by_role("button", name="Activate connection").click()
    expect(page.locator("#activation-status [role=alert] li")).to_have_count(2)

    from portal.extensions import db
    from portal.models import Connection

    with live_server.app.app_context():
        assert db.session.get(Connection, cid).active is False

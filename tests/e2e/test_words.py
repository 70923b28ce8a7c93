"""Browser: the ERP tab's words (issue #17, "The screens as people use them") against the built-in Demo ERP.

* the Create dialog names list items (Italy, Norwegian krone), not their keys (IT, NOK);
* a user who may connect but not create is told why there is no Create;
* a broken link says so in its heading and explains it once.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from portal.extensions import db
from portal.models import Company, Connection, CrmList, ListItem, ListItemMapping, User
from tests.e2e.test_erp_tab_flow import _map, _open_erp_tab
from tests.e2e.worlds import save_demo_connection, sync_issue_world

CUSTOMER_MAP = {  # ERP key -> (CRM field, two-way, show in tab, show in search, rank)
    "NAME": ("name", True, True, True, 1),
    "COUNTRY": ("country_id", True, True, True, 2),
    "POSTALZIP": ("postal_zip", True, True, False, 3),
}


@pytest.fixture
def demo(live_server, make_portal_user):
    """"Demo ERP": the admin may create, bob may only connect; Customer ↔ Company with the country list mapped
    (ERP item names from the Demo ERP) and a default currency (a list not mapped to the CRM)."""
    from portal.connectors.builtin.demo_seed import LISTS
    from portal.services.connections import Scope
    from portal.services.sync_settings import ensure_in_priority

    app = live_server.app
    bob = make_portal_user("bob@example.com", name="Bob User")
    with app.app_context():
        admin_id = db.session.scalar(select(User.id).where(User.email == "admin@example.com"))
        connection_id = save_demo_connection("Demo ERP", Scope(
            all_access=False, all_can_create=False, entries={("user", admin_id): "create", ("user", bob): "connect"})).id
        connection = db.session.get(Connection, connection_id)
        _map(connection, "Customer", CUSTOMER_MAP, CURRENCY={"has_default": True, "default_value": "NOK"})
        for actor_type in ("Supplier", "Person", "Project"):
            _map(connection, actor_type, {}, active=False)
        crm_items = {item.name: item.id for item in db.session.scalars(
            select(ListItem).where(ListItem.list_name == CrmList.COUNTRY))}
        country = next(f for f in connection.actor_type("Customer").fields if f.field_key == "COUNTRY")
        for key, text in LISTS["countries"]:
            if text in crm_items:
                country.list_mappings.append(ListItemMapping(erp_item_key=key, erp_item_text=text,
                                                             crm_item_id=crm_items[text]))
        connection.active = True
        ensure_in_priority(connection_id)
        company = db.session.scalar(select(Company).where(Company.name == "Lago Verde Srl"))
        company.country_id, company.postal_zip = crm_items["Italy"], "22100"
        db.session.commit()
        return {"company": company.id}


def test_the_create_dialog_names_list_items_not_their_keys(live_server, admin_page, demo):
    page = admin_page
    _open_erp_tab(page, live_server.url, f"/companies/{demo['company']}")
    section = page.locator("section", has=page.get_by_role("heading", name="Demo ERP: not connected"))
    expect(section.locator(".erp-no-create")).to_have_count(0)  # the admin may create
    section.get_by_role("button", name="Customer").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_role("button", name=re.compile("create in ERP")).click()
    expect(dialog.get_by_role("heading", name="Create in ERP “Demo ERP”")).to_be_visible()
    dialog.get_by_text("Values sent from the CRM and the defaults").click()
    values = dict(zip(dialog.locator("dl.fields dt").all_inner_texts(),
                      dialog.locator("dl.fields dd").all_inner_texts(), strict=True))
    assert values["Country"] == "Italy"  # not "IT"
    assert values["Currency"] == "Norwegian krone"  # not "NOK": a default, named by the Demo ERP
    assert values["Postal code"] == "22100"


def test_a_user_who_may_only_connect_reads_why_there_is_no_create(live_server, page, sign_in, demo):
    sign_in(page, "bob@example.com")
    _open_erp_tab(page, live_server.url, f"/companies/{demo['company']}")
    section = page.locator("section", has=page.get_by_role("heading", name="Demo ERP: not connected"))
    expect(section.locator(".erp-no-create")).to_have_text(
        "You may connect records to Demo ERP but not create new Customer records in it; ask an administrator if "
        "one is missing.")
    section.get_by_role("button", name="Customer").click()
    dialog = page.get_by_role("dialog")
    expect(dialog.locator("#erp-results")).not_to_be_empty()
    expect(dialog.get_by_role("button", name=re.compile("create in ERP"))).to_have_count(0)
    expect(dialog.locator(".erp-no-create")).to_contain_text("but not create new Customer records")  # and says why


def test_a_broken_link_says_so_in_its_heading_and_once_below(live_server, admin_page):
    page = admin_page
    world = sync_issue_world(live_server.app)
    with live_server.app.app_context():
        company_id = db.session.scalar(select(Company.id).where(Company.name == world["broken_company"]))
    _open_erp_tab(page, live_server.url, f"/companies/{company_id}")
    section = page.locator("section.erp-section")
    heading = section.get_by_role("heading", level=3)
    expect(heading).to_have_text(re.compile(r"^Demo ERP: link broken — Customer \S+$"))
    expect(section.locator(".erp-values[aria-busy]")).to_have_count(0)  # the live values have answered
    expect(section.get_by_text(re.compile("no longer has"))).to_have_count(1)
    expect(section.locator(".sync-status")).to_have_text("Broken")
    expect(section.get_by_role("button", name="Disconnect")).to_be_visible()

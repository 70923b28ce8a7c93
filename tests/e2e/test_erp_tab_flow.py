"""Browser tests of the ERP tab (issue #5) against the built-in Demo ERP.

Set-up happens in the live server's database (connections saved through the connection service, mappings set
directly — the mapping screens are another issue): "Demo ERP" (everyone may connect and create) and
"Demo ERP finance" (only the admin). The Demo ERP gets one customer that matches the CRM company
"Nordlys Shipping AS" except for its phone and e-mail.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from portal.extensions import db
from portal.models import Company, Connection, Link, User
from tests.e2e.worlds import save_demo_connection

ERP_PHONE = "+47 55 00 11 22"
ERP_EMAIL = "accounts@nordlys-shipping.example"
CUSTOMER_MAP = {  # ERP key -> (CRM field, two-way, show in tab, show in search, rank)
    "NAME": ("name", True, True, True, 1),
    "NUMBER1": (None, False, True, True, 2),
    "PHONE": ("phone", True, True, False, 3),
    "EMAIL": ("email", True, True, False, 4),
    "POSTALCITY": ("postal_city", True, False, True, 5),
    "CUSTOMERGROUP": (None, False, True, False, 6),
}
PERSON_MAP = {
    "FIRSTNAME": ("first_name", True, True, True, 1),
    "LASTNAME": ("last_name", True, True, True, 2),
    "EMAIL": ("email", True, True, False, 3),
}


def _map(connection: Connection, actor_type: str, mapping: dict, active: bool = True, **options) -> None:
    config = connection.actor_type(actor_type)
    config.is_active = active
    for f in config.fields:
        crm, two_way, gui, search, rank = mapping.get(f.field_key, (None, False, False, False, 100 + f.id))
        f.crm_field, f.sync_to_crm, f.sync_to_erp = crm, two_way, two_way and not f.read_only
        f.show_in_gui, f.show_in_search, f.rank = gui, search, rank
        for attr, value in options.get(f.field_key, {}).items():
            setattr(f, attr, value)


@pytest.fixture
def demo(live_server, make_portal_user):
    """Two active Demo ERP connections with mappings, one matching ERP customer, and users bob and carol."""
    from portal.connectors.builtin import get_builtin
    from portal.services.connections import Scope
    from portal.services.sync_settings import ensure_in_priority

    app = live_server.app
    bob = make_portal_user("bob@example.com", name="Bob User")
    make_portal_user("carol@example.com", licence=False, name="Carol Outsider")
    with app.app_context():
        everyone = save_demo_connection("Demo ERP", Scope(all_access=True, all_can_create=True)).id
        admin_id = db.session.scalar(select(User.id).where(User.email == "admin@example.com"))
        finance = save_demo_connection("Demo ERP finance", Scope(all_access=False, all_can_create=False,
                                                                 entries={("user", admin_id): "create"})).id
        for connection_id in (everyone, finance):
            connection = db.session.get(Connection, connection_id)
            _map(connection, "Customer", CUSTOMER_MAP,
                 CUSTOMERGROUP={"ask_user": True, "mandatory": True, "has_default": False})
            _map(connection, "Supplier", {}, active=False)
            _map(connection, "Person", PERSON_MAP)
            _map(connection, "Project", {}, active=False)
            connection.active = True
            ensure_in_priority(connection_id)
        db.session.commit()
        nordlys = db.session.scalar(select(Company).where(Company.name == "Nordlys Shipping AS"))
        erp = get_builtin("demo", app.config)
        customer = erp.create("Customer", {"NAME": "Nordlys Shipping AS", "PHONE": ERP_PHONE, "EMAIL": ERP_EMAIL,
                                           "POSTALCITY": nordlys.postal_city})
        return {"everyone": everyone, "finance": finance, "bob": bob, "customer": customer["ErpKey"],
                "nordlys": nordlys.id, "crm_phone": nordlys.phone, "erp": erp}


def _open_erp_tab(page, base_url: str, path: str) -> None:
    page.goto(f"{base_url}{path}")
    page.get_by_role("tab", name="ERP").click()
    expect(page.locator("#erp-tab")).to_be_visible()


def test_licensed_user_links_creates_connects_a_contact_and_disconnects(page, live_server, sign_in, demo):
    page.on("dialog", lambda dialog: dialog.accept())  # the Disconnect confirmation
    sign_in(page, "bob@example.com")
    app, base = live_server.app, live_server.url

    # 1. Link Nordlys Shipping AS to the existing Demo ERP customer, resolving the two differing fields.
    _open_erp_tab(page, base, f"/companies/{demo['nordlys']}")
    section = page.locator("section", has=page.get_by_role("heading", name="Demo ERP: not connected"))
    section.get_by_role("button", name="Customer").click()
    dialog = page.get_by_role("dialog", name="Connect “Nordlys Shipping AS” to Demo ERP")
    expect(dialog).to_be_visible()
    expect(dialog.get_by_label("Search ERP")).to_have_value("Nordlys Shipping AS")
    row = dialog.get_by_role("row", name=re.compile(demo["customer"]))
    row.get_by_role("button", name=f"Select {demo['customer']}").click()
    dialog = page.get_by_role("dialog", name="Select correct field values for linked company")
    expect(dialog).to_be_visible()
    rows = dialog.locator("table.erp-compare tbody tr")
    expect(rows).to_have_count(2)
    dialog.get_by_role("radio", name=re.compile(r"^Phone, CRM value")).check()
    dialog.get_by_role("radio", name=re.compile(r"^E-mail, ERP value")).check()
    dialog.get_by_label("Customer group").select_option(label="Wholesale")  # the ask-user field (mandatory)
    dialog.get_by_role("button", name="Connect", exact=True).click()
    expect(page.get_by_role("dialog")).to_be_hidden()
    expect(page.get_by_role("heading", name=f"Demo ERP: connected Customer {demo['customer']}")).to_be_visible()
    expect(page.locator("dl.fields").first).to_contain_text(demo["crm_phone"])
    expect(page.locator("dl.fields").first).to_contain_text(ERP_EMAIL)
    linked = demo["erp"].get_actor("Customer", demo["customer"])["FieldValues"]
    assert (linked["PHONE"], linked["EMAIL"], linked["CUSTOMERGROUP"]) == (demo["crm_phone"], ERP_EMAIL, "WHOLESALE")
    with app.app_context():
        assert db.session.get(Company, demo["nordlys"]).email == ERP_EMAIL

    # 2. Create a new customer for another company, answering the ask-user field.
    with app.app_context():
        other = db.session.scalar(select(Company).where(Company.name == "Fjordkraft Engineering"))
        other_id, contact = other.id, other.contacts[0]
        contact_id, contact_name = contact.id, contact.display_name
    _open_erp_tab(page, base, f"/companies/{other_id}")
    page.get_by_role("button", name="Connect to Customer in Demo ERP").click()
    page.get_by_role("dialog").get_by_role("button", name="Can't find a match — create in ERP").click()
    dialog = page.get_by_role("dialog", name="Create in ERP “Demo ERP”")
    expect(dialog).to_be_visible()
    dialog.get_by_label("Customer group").select_option(label="Key account")
    dialog.get_by_role("button", name="Create", exact=True).click()
    expect(page.get_by_role("dialog")).to_be_hidden()
    heading = page.get_by_role("heading", name=re.compile(r"^Demo ERP: connected Customer C\d+"))
    expect(heading).to_be_visible()
    expect(page.locator("dl.fields").first).to_contain_text("Key account")
    with app.app_context():
        new_key = db.session.scalar(select(Link.erp_key).where(Link.crm_type == "company", Link.crm_id == other_id,
                                                               Link.connection_id == demo["everyone"]))
    created = demo["erp"].get_actor("Customer", new_key)
    assert created["FieldValues"]["NAME"] == "Fjordkraft Engineering"
    assert created["FieldValues"]["CUSTOMERGROUP"] == "KEYACCOUNT"

    # 3. Link a contact of that company under the new customer (a Person created in the ERP).
    _open_erp_tab(page, base, f"/contacts/{contact_id}")
    page.get_by_role("button", name="Connect to Person in Demo ERP").click()
    dialog = page.get_by_role("dialog", name=f"Connect “{contact_name}” to Demo ERP")
    expect(dialog).to_contain_text(f"under Customer {new_key}")
    expect(dialog.get_by_text(re.compile("No Person in Demo ERP matches"))).to_be_visible()
    dialog.get_by_role("button", name="Can't find a match — create in ERP").click()
    page.get_by_role("dialog", name="Create in ERP “Demo ERP”").get_by_role("button", name="Create", exact=True).click()
    expect(page.get_by_role("heading", name=re.compile(r"^Demo ERP: connected Person P\d+"))).to_be_visible()
    with app.app_context():
        person_key = db.session.scalar(select(Link.erp_key).where(Link.crm_type == "contact",
                                                                  Link.crm_id == contact_id))
    person = demo["erp"].get_actor("Person", person_key)
    assert (person["ParentActorType"], person["ParentErpKey"]) == ("Customer", new_key)

    # 4. Disconnect the contact: only the link goes.
    page.get_by_role("button", name="Disconnect").click()
    expect(page.get_by_role("heading", name="Demo ERP: not connected")).to_be_visible()
    assert demo["erp"].get_actor("Person", person_key) is not None
    with app.app_context():
        assert db.session.scalar(select(Link).where(Link.crm_type == "contact", Link.crm_id == contact_id)) is None


def test_a_user_without_a_licence_sees_no_erp_tab(page, live_server, sign_in, demo):
    sign_in(page, "carol@example.com")
    page.goto(f"{live_server.url}/companies/{demo['nordlys']}")
    expect(page.get_by_role("tab", name="Details")).to_be_visible()
    expect(page.get_by_role("tab", name="ERP")).to_have_count(0)


def test_a_user_outside_the_scope_sees_no_section_for_that_connection(live_server, sign_in, demo, admin_page):
    _open_erp_tab(admin_page, live_server.url, f"/companies/{demo['nordlys']}")
    expect(admin_page.get_by_role("heading", name="Demo ERP finance: not connected")).to_be_visible()

    page = sign_in(admin_page, "bob@example.com")  # the same browser, now as bob (in scope of "Demo ERP" only)
    _open_erp_tab(page, live_server.url, f"/companies/{demo['nordlys']}")
    expect(page.get_by_role("heading", name="Demo ERP: not connected")).to_be_visible()
    expect(page.get_by_role("heading", name=re.compile("Demo ERP finance"))).to_have_count(0)

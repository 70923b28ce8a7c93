"""Browser test of Import from ERP (issue #6) against the built-in Demo ERP, with the scheduler running.

An admin opens Import from ERP from the Sync tab, finds customers, ticks ten, imports them with their persons
(search → settings → preview → import → done), opens one imported company and sees its ERP tab connected.
Automatic sync stays on (the next periodic sync is just not due during the test).
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from playwright.sync_api import expect
from sqlalchemy import func, select

from portal.database import utcnow
from portal.extensions import db
from portal.models import Company, Connection, Contact, Link, SyncRun, SyncSettings
from tests.e2e.worlds import save_demo_connection

CUSTOMER_FIELDS = {"NAME": "name", "PHONE": "phone", "EMAIL": "email", "POSTALCITY": "postal_city",
                   "COUNTRY": "country_id"}
PERSON_FIELDS = {"FIRSTNAME": "first_name", "LASTNAME": "last_name", "EMAIL": "email"}


def _map(connection: Connection, actor_type: str, mapping: dict[str, str], *, active: bool = True) -> None:
    config = connection.actor_type(actor_type)
    config.is_active = active
    for rank, f in enumerate(config.fields, start=1):
        crm = mapping.get(f.field_key)
        f.crm_field, f.sync_to_crm, f.sync_to_erp = crm, crm is not None, crm is not None and not f.read_only
        f.show_in_gui = crm is not None
        f.rank = rank


@pytest.fixture
def demo_connection(live_server) -> int:
    """An active "Demo ERP" connection: Customer → company and Person → contact mapped both ways."""
    from portal.services.sync_settings import ensure_in_priority

    app = live_server.app
    with app.app_context():
        connection = save_demo_connection()
        _map(connection, "Customer", CUSTOMER_FIELDS)
        _map(connection, "Person", PERSON_FIELDS)
        for actor_type in ("Supplier", "Project"):
            _map(connection, actor_type, {}, active=False)
        connection.active = True
        ensure_in_priority(connection.id)
        settings = db.session.get(SyncSettings, 1)
        settings.next_due_at = utcnow() + timedelta(hours=1)  # automatic sync stays on, just not due now
        db.session.commit()
        return connection.id


@pytest.mark.live_server(scheduler=True)
def test_admin_imports_ten_customers_with_their_persons(admin_page, live_server, demo_connection):
    page, base, app = admin_page, live_server.url, live_server.app
    with app.app_context():
        companies_before = db.session.scalar(select(func.count()).select_from(Company))
        contacts_before = db.session.scalar(select(func.count()).select_from(Contact))

    # Sync tab → the selected connection → Import from ERP.
    page.goto(f"{base}/settings/sync?connection={demo_connection}")
    page.get_by_role("link", name="Import from ERP").click()
    steps = page.get_by_role("navigation", name="Import steps")
    expect(steps.locator('[aria-current="step"]')).to_have_text(re.compile("Connection and actor type"))
    expect(page.get_by_label("ERP connection")).to_have_value(str(demo_connection))
    page.get_by_label("Actor type").select_option("Customer")
    page.get_by_role("button", name="Next: search").click()

    # Search: every customer (no criteria), then tick the first ten rows.
    expect(steps.locator('[aria-current="step"]')).to_have_text(re.compile("Search"))
    page.get_by_role("button", name="Delete criterion 1").click()
    expect(page.get_by_text(re.compile("No criteria: Find lists every Customer"))).to_be_visible()
    page.get_by_role("button", name="Find", exact=True).click()
    expect(page.get_by_text(re.compile(r"\d+ Customer actor\(s\) found"))).to_be_visible()
    boxes = page.locator("#results tbody input[name='keys']")
    keys = []
    for index in range(10):
        box = boxes.nth(index)
        box.check()
        keys.append(box.get_attribute("value"))
    page.get_by_role("button", name="Next: settings").click()

    # Settings: duplicates by name, merge; with their persons.
    expect(steps.locator('[aria-current="step"]')).to_have_text(re.compile("Settings"))
    expect(page.get_by_text("10 selected Customer actor(s)")).to_be_visible()
    page.get_by_label("Find duplicate companies by").select_option("name")
    page.get_by_label("Also import the persons of these companies").check()
    page.get_by_role("button", name="Next: preview").click()

    # Preview: ten customers, all new, their persons under them.
    expect(steps.locator('[aria-current="step"]')).to_have_text(re.compile("Preview"))
    table = page.locator("table.preview-table")
    for key in keys:
        expect(table.get_by_text(f"Customer {key}", exact=True)).to_be_visible()
    expect(table.locator("tr.child-row").first).to_be_visible()
    persons = table.locator("tr.child-row").count()
    assert persons >= 10
    expect(page.get_by_text("10 Customer actor(s) selected.")).to_be_visible()
    page.get_by_role("button", name="Import", exact=True).click()

    # Live progress, then Done with the new records.
    expect(page.get_by_role("heading", name=re.compile("^Done"))).to_be_visible(timeout=30000)
    expect(page.get_by_role("heading", name=f"New records ({10 + persons})")).to_be_visible()
    expect(page.locator("section#import-run")).not_to_have_attribute("hx-trigger", re.compile("."))
    with app.app_context():
        run = db.session.scalar(select(SyncRun).order_by(SyncRun.id.desc()))
        assert run.kind == "import" and run.status == "succeeded", run.message
        assert db.session.scalar(select(func.count()).select_from(Company)) == companies_before + 10
        assert db.session.scalar(select(func.count()).select_from(Contact)) == contacts_before + persons
        first = db.session.scalar(select(Link).where(Link.erp_actor_type == "Customer", Link.erp_key == keys[0]))
        company = db.session.get(Company, first.crm_id)
        company_id, company_name = company.id, company.name
        assert len(company.contacts) >= 1

    # Open one imported company: its ERP tab shows it connected to the customer.
    page.locator("#records-new").get_by_role("link", name=company_name, exact=True).click()
    expect(page).to_have_url(re.compile(f"/companies/{company_id}"))
    page.get_by_role("tab", name="ERP").click()
    expect(page.get_by_role("heading", name=f"Demo ERP: connected Customer {keys[0]}")).to_be_visible()


@pytest.mark.live_server(scheduler=True)
def test_phone_policy_add_keeps_the_crm_number_and_adds_the_erp_one(admin_page, live_server, demo_connection):
    """Issue #18 point 3: "Phone numbers: Add" on a matched company is told in the preview and done by the run."""
    page, base, app = admin_page, live_server.url, live_server.app
    with app.app_context():
        connection = db.session.get(Connection, demo_connection)
        from portal.services.connectors import client_for

        with client_for(connection.connector) as client:
            [actor] = client.search_actors_advanced(connection.guid, "Customer", [], ["NAME", "PHONE"])[:1]
        name, erp_phone = actor["FieldValues"]["NAME"], actor["FieldValues"].get("PHONE") or ""
        company = Company(name=name, phone="+47 00 00 00 00")
        db.session.add(company)
        db.session.commit()
        company_id = company.id
    page.goto(f"{base}/settings/import/erp/search?connection_id={demo_connection}&actor_type=Customer")
    page.get_by_role("button", name="Delete criterion 1").click()
    page.get_by_role("button", name="Find", exact=True).click()
    page.locator(f"#results tbody input[name='keys'][value='{actor['ErpKey']}']").check()
    page.get_by_role("button", name="Next: settings").click()
    page.get_by_label("Find duplicate companies by").select_option("name")
    page.get_by_label("Phone numbers").select_option("add")
    page.get_by_role("button", name="Next: preview").click()
    table = page.locator("table.preview-table")
    expect(table.get_by_text(re.compile("Telephone: keeps \\+47 00 00 00 00.*phone numbers: add"))).to_be_visible()
    page.get_by_text("Options of this import").click()
    expect(page.locator("#import-options")).to_contain_text("Add: fill an empty field")
    page.get_by_role("button", name="Import", exact=True).click()
    expect(page.get_by_role("heading", name=re.compile("^Done"))).to_be_visible(timeout=30000)
    with app.app_context():
        company = db.session.get(Company, company_id)
        assert company.phone == "+47 00 00 00 00"
        run = db.session.scalar(select(SyncRun).order_by(SyncRun.id.desc()))
        assert run.options["settings"]["phone_policy"] == "add" and erp_phone

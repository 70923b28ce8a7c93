"""Browser: the settings screens' words (issue #17, item 8), as an admin reads them (the ERP tab's are in
tests/e2e/test_words.py; the same rules at the HTTP level in tests/integration/test_words_issue17.py).

* the toast after deleting a sync connector names the box to tick as the box is named;
* a mapping's reason for Country states the real rule;
* the change log names fields by their labels, not their keys (``postal_zip``);
* a run that settled a conflict does not report "0 changed";
* the audit log shows a readable before → after, not raw JSON with ``\\u2022`` escapes;
* the settings navigation marks Sync on List mapping and Defaults.
"""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

pytest.importorskip("playwright")
from playwright.sync_api import expect  # noqa: E402

from tests.e2e.worlds import sync_issue_world  # noqa: E402

pytestmark = pytest.mark.e2e


def test_the_deleted_connectors_toast_names_the_box_as_it_is_named(live_server, admin_page):
    page = admin_page
    page.goto(f"{live_server.url}/settings/sync")
    connectors = page.locator("#connectors")
    connectors.get_by_role("row", name=re.compile("Demo ERP")).get_by_role("button", name="Delete").click()
    toast = page.locator("#toasts")
    expect(toast).to_contain_text("Sync connector Demo ERP deleted.")
    box = re.search(r"Tick “([^”]+)”", toast.inner_text()).group(1)
    # the box the toast names is there, under that name, in both lists
    expect(page.locator("#connections").get_by_role("checkbox", name=box, exact=True)).to_have_count(1)
    connectors.get_by_role("checkbox", name=box, exact=True).check()
    restore = page.locator("#connectors").get_by_role("row", name=re.compile("Demo ERP"))
    expect(restore.get_by_role("button", name="Restore")).to_be_visible()


def test_a_mapping_says_why_a_text_field_cannot_go_to_country(live_server, admin_page):
    page = admin_page
    world = sync_issue_world(live_server.app)
    page.goto(f"{live_server.url}/settings/connections/{world['connection']}/mappings?actor=Customer")
    name_row = page.locator("tr.mapping-row[data-field-key='NAME']")
    country = name_row.get_by_role("combobox").locator("option", has_text=re.compile("^Country"))
    expect(country).to_be_disabled()
    expect(country).to_have_text("Country (not possible: Country is a list in the CRM; an ERP Text field can only be "
                                 "mapped to a CRM text or long text field)")


def _sync(app, connection_id: int) -> int:
    from portal.services.sync import engine, runs

    with app.app_context():
        run, _created = runs.request_run(connection_id, kind="sync", trigger="manual", requested_by="test")
        run_id = run.id
        engine.execute_run(run_id)
        return run_id


def _records_checked(page) -> str:
    return page.locator("dt", has_text="Records checked").locator("xpath=following-sibling::dd[1]").inner_text()


def test_the_change_log_names_fields_and_a_settled_conflict_counts_as_a_change(live_server, admin_page):
    from portal.connectors.builtin.demo import DemoErpConnector
    from portal.extensions import db
    from portal.models import Company, Connection, Link

    app, page, url = live_server.app, admin_page, live_server.url
    world = sync_issue_world(app)
    demo = DemoErpConnector.for_path(app.config["DEMO_ERP_DB"])
    with app.app_context():
        connection = db.session.get(Connection, world["connection"])
        postal_zip = next(f for f in connection.actor_type("Customer").fields if f.field_key == "POSTALZIP")
        postal_zip.crm_field, postal_zip.sync_to_crm, postal_zip.sync_to_erp = "postal_zip", True, True
        link = db.session.scalars(select(Link).where(Link.connection_id == connection.id, Link.status == "ok")
                                  .order_by(Link.id.desc())).first()
        company_id, erp_key = link.crm_id, link.erp_key
        db.session.get(Company, company_id).postal_zip = "0150"
        db.session.commit()

    # a postal code goes to the ERP: the change log says "Postal zip code", not postal_zip
    run_id = _sync(app, world["connection"])
    page.goto(f"{url}/settings/sync/runs/{run_id}")
    changes = page.locator("table.change-log tbody tr")
    expect(changes.filter(has_text="0150")).to_contain_text("Postal zip code")
    fields = changes.locator("td:nth-child(4)").all_inner_texts()  # When, Connection, Record, Field, …
    assert not [text for text in fields if re.search(r"\b[a-z]+_[a-z_]+\b", text)], fields  # no stored keys

    # both sides change the phone: the rule settles it, and the run counts that record as changed
    with app.app_context():
        db.session.get(Company, company_id).phone = "+47 21 00 00 01"
        db.session.commit()
    demo.update_fields("Customer", erp_key, {"PHONE": "+47 21 00 00 02"})
    run_id = _sync(app, world["connection"])
    page.goto(f"{url}/settings/sync/runs/{run_id}")
    expect(page.locator("table.change-log")).to_contain_text("conflict")
    checked = _records_checked(page)
    assert not re.search(r"\b0 changed", checked), checked
    assert re.search(r"\b1 changed \(settled conflicts included\)", checked), checked


def test_the_audit_log_shows_a_readable_before_and_after(live_server, admin_page, make_portal_user):
    page, url = admin_page, live_server.url
    user_id = make_portal_user("bob@example.com", name="Bob User")
    page.goto(f"{url}/settings/users/{user_id}/edit")
    page.get_by_label("Name").fill("Bob • Sales")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_text("User bob@example.com saved.")).to_be_visible()
    page.goto(f"{url}/settings/audit")
    entry = page.get_by_role("row").filter(has_text="user.update").first
    expect(entry.locator(".audit-diff")).to_contain_text("name: Bob User → Bob • Sales")
    text = page.locator("main").inner_text()
    assert "\\u2022" not in text and '{"' not in text  # no escapes, no raw JSON


@pytest.mark.parametrize("screen", ["list-mapping", "defaults"])
def test_the_settings_navigation_marks_sync_on_the_connection_screens(live_server, admin_page, screen):
    page = admin_page
    world = sync_issue_world(live_server.app)
    page.goto(f"{live_server.url}/settings/connections/{world['connection']}/{screen}")
    nav = page.get_by_role("navigation", name="Settings")
    expect(nav.locator("[aria-current]")).to_have_count(1)
    expect(nav.get_by_role("link", name="Sync", exact=True)).to_have_attribute("aria-current", "page")

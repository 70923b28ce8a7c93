"""No stale fragments (issue #17, item 4): every htmx action updates each part of the page it affects, without a
reload."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import select

pytest.importorskip("playwright")
from playwright.sync_api import expect  # noqa: E402

from tests.e2e.worlds import free_company, sync_issue_world  # noqa: E402

pytestmark = pytest.mark.e2e


def _age_record(app, company_id: int) -> str:
    """Date the company's last change three days back, so a fresh "updated" time in its header is told apart;
    returns the old time as the header shows it."""
    from portal.database import utcnow
    from portal.extensions import db
    from portal.models import Company

    with app.app_context():
        company = db.session.get(Company, company_id)
        company.updated_at = utcnow() - timedelta(days=3)
        db.session.commit()
        return company.updated_at.strftime("%Y-%m-%d %H:%M")


def _expect_header_updated(page, app, company_id: int, old: str) -> None:
    """The header (#record-meta, outside the ERP tab's section) shows the company's new "updated" time."""
    from portal.extensions import db
    from portal.models import Company

    expect(page.locator("#record-meta")).not_to_contain_text(f"updated {old}")
    with app.app_context():
        fresh = db.session.get(Company, company_id).updated_at.strftime("%Y-%m-%d %H:%M")
    assert fresh != old  # the action did write the record
    expect(page.locator("#record-meta")).to_contain_text(f"updated {fresh}")


def test_sync_now_updates_the_record_headers_updated_time(live_server, admin_page):
    from portal.connectors.builtin.demo import DemoErpConnector
    from portal.extensions import db
    from portal.models import Link

    app, page, url = live_server.app, admin_page, live_server.url
    world = sync_issue_world(app)
    with app.app_context():
        link = db.session.scalars(select(Link).where(Link.status == "ok").order_by(Link.id.desc())).first()
        company_id, erp_key = link.crm_id, link.erp_key
    old = _age_record(app, company_id)
    DemoErpConnector.for_path(app.config["DEMO_ERP_DB"]).update_fields("Customer", erp_key,
                                                                       {"PHONE": "+47 99 88 77 66"})
    page.goto(f"{url}/companies/{company_id}?tab=erp")
    expect(page.locator("#record-meta")).to_contain_text(f"updated {old}")
    page.locator(f"#erp-conn-{world['connection']}").get_by_role("button", name="Sync now").click()
    expect(page.locator("#toasts")).to_contain_text("Synced")
    _expect_header_updated(page, app, company_id, old)


def test_connect_updates_the_record_headers_updated_time(live_server, admin_page):
    app, page, url = live_server.app, admin_page, live_server.url
    world = sync_issue_world(app)
    company_id = free_company(app)
    old = _age_record(app, company_id)
    page.goto(f"{url}/companies/{company_id}?tab=erp")
    expect(page.locator("#record-meta")).to_contain_text(f"updated {old}")
    page.get_by_role("button", name="Connect to Customer in Demo ERP").click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("Search ERP").fill("")
    dialog.get_by_role("button", name="Search", exact=True).click()
    dialog.get_by_role("button", name=re.compile(r"^Select ")).first.click()
    dialog = page.get_by_role("dialog", name="Select correct field values for linked company")
    dialog.get_by_role("button", name="Use all ERP values").click()  # the ERP's name and phone: the CRM is written
    dialog.get_by_role("button", name="Connect", exact=True).click()
    expect(page.get_by_role("dialog")).to_be_hidden()
    expect(page.locator(f"#erp-conn-{world['connection']}")).to_contain_text("connected Customer")
    _expect_header_updated(page, app, company_id, old)


def test_create_updates_the_record_headers_updated_time(live_server, admin_page):
    from portal.extensions import db
    from portal.models import Connection

    app, page, url = live_server.app, admin_page, live_server.url
    world = sync_issue_world(app)
    with app.app_context():  # the customer number the ERP assigns comes back to the company: Create writes the CRM
        number = next(f for f in db.session.get(Connection, world["connection"]).actor_type("Customer").fields
                      if f.field_key == "NUMBER1")
        number.crm_field, number.sync_to_crm = "number", True
        db.session.commit()
    company_id = free_company(app)
    old = _age_record(app, company_id)
    page.goto(f"{url}/companies/{company_id}?tab=erp")
    expect(page.locator("#record-meta")).to_contain_text(f"updated {old}")
    page.get_by_role("button", name="Connect to Customer in Demo ERP").click()
    page.get_by_role("dialog").get_by_role("button", name="Can't find a match — create in ERP").click()
    dialog = page.get_by_role("dialog", name="Create in ERP “Demo ERP”")
    dialog.get_by_role("button", name="Create", exact=True).click()
    expect(page.get_by_role("dialog")).to_be_hidden()
    expect(page.locator(f"#erp-conn-{world['connection']}")).to_contain_text("connected Customer")
    _expect_header_updated(page, app, company_id, old)


def test_automatic_sync_keeps_saying_when_it_runs_next(live_server, admin_page):
    page, url = admin_page, live_server.url
    sync_issue_world(live_server.app)  # automatic sync on, next run in an hour
    page.goto(f"{url}/settings/sync")
    status = page.locator("#auto-sync-next")
    expect(status).to_contain_text(re.compile(r"next at \d{4}-\d\d-\d\d"))

    page.get_by_label("Sync interval (seconds)").fill("900")
    page.get_by_role("button", name="Save interval").click()
    expect(page.locator("#toasts")).to_contain_text("Sync interval set to 900 seconds")
    expect(page.locator("#auto-sync-next")).to_contain_text("Runs every 900 seconds; next at ")

    page.get_by_role("group", name="Automatic sync").get_by_role("button", name="Off").click()
    expect(page.locator("#auto-sync")).to_contain_text("Automatic sync is turned off.")
    page.get_by_role("group", name="Automatic sync").get_by_role("button", name="On").click()
    expect(page.locator("#auto-sync-next")).to_contain_text("next run is due now")


def test_testing_and_deleting_the_selected_connection_update_its_panel(live_server, admin_page):
    page, url = admin_page, live_server.url
    world = sync_issue_world(live_server.app)
    page.goto(f"{url}/settings/sync?connection={world['connection']}")
    facts = page.locator("#connection-facts")
    expect(facts).not_to_contain_text("Last test")  # never tested in this world
    row = page.locator(f"#connection-{world['connection']}")
    row.get_by_role("button", name="Test").click()
    expect(row).to_contain_text("Test of Demo ERP: OK")
    expect(facts).to_contain_text(re.compile(r"Last test passed \d{4}-\d\d-\d\d"))
    expect(row.locator("tr").first).to_have_class(re.compile("selected"))  # still the selected row

    row.get_by_role("button", name="Deactivate").click()
    expect(row).to_contain_text("Inactive")
    expect(page.locator("#selected-connection").get_by_role("button", name="Sync now")).to_have_count(0)

    page.on("dialog", lambda dialog: dialog.accept())
    row.get_by_role("button", name="Delete").click()
    expect(page.locator(f"#connection-{world['connection']}")).to_have_count(0)
    expect(page.locator("#selected-connection")).to_have_count(0)


def test_the_defaults_count_follows_adds_and_removes(live_server, admin_page):
    page, url = admin_page, live_server.url
    world = sync_issue_world(live_server.app)
    page.goto(f"{url}/settings/connections/{world['connection']}/defaults?actor=Customer")
    count = page.locator("#default-count")
    start = int(count.inner_text().split(":")[1])
    names = []
    for _ in range(3):
        # htmx wires new content up when it settles (20 ms after the swap): wait for that before choosing
        expect(page.locator("#default-add")).not_to_have_class(re.compile("htmx-added"))
        picker = page.get_by_label("Add a default value for")
        option = picker.locator("option").nth(1)
        names.append(option.inner_text().rsplit(" (", 1)[0])
        picker.select_option(index=1)
        editor = page.locator("#default-add.editing")
        editor.get_by_label("Ask user").check()
        editor.get_by_role("button", name=re.compile("^Save")).click()
        expect(count).to_have_text(f"count : {start + len(names)}")
    page.get_by_role("button", name=f"Remove the default of {names[0]}").click()
    expect(count).to_have_text(f"count : {start + 2}")


def test_a_run_page_says_how_the_run_ended_without_a_reload(live_server, admin_page):
    import threading

    from portal.services.sync import engine, runs

    app, page, url = live_server.app, admin_page, live_server.url
    world = sync_issue_world(app)
    with app.app_context():
        run, _created = runs.request_run(world["connection"], kind="sync", trigger="manual", requested_by="test")
        run_id = run.id
    page.goto(f"{url}/settings/sync/runs/{run_id}")
    heading = page.get_by_role("heading", level=1)
    expect(heading).to_contain_text("queued")

    def execute():
        with app.app_context():
            engine.execute_run(run_id)

    worker = threading.Thread(target=execute)
    worker.start()
    worker.join(timeout=30)
    expect(heading).not_to_contain_text("queued", timeout=10000)
    expect(heading).not_to_contain_text("running")
    expect(heading.locator(".badge")).to_have_text(re.compile("succeeded|partial"))
    expect(page.locator("#run-summary")).to_contain_text("Finished")

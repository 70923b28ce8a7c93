"""Browser test of the undo of an import (issue #18 point 3) against the built-in Demo ERP: an admin imports three
customers, opens the run, follows "Undo this import…", reads the preview and confirms: the companies are gone and
the run page says it was undone."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect
from sqlalchemy import func, select

from portal.extensions import db
from portal.models import Company, Link, SyncRun
from tests.e2e.test_import_flow import demo_connection  # noqa: F401 (fixture)


@pytest.mark.live_server(scheduler=True)
def test_admin_undoes_an_import_of_three_customers(admin_page, live_server, demo_connection):  # noqa: F811
    page, base, app = admin_page, live_server.url, live_server.app
    with app.app_context():
        companies_before = db.session.scalar(select(func.count()).select_from(Company))

    # The start page cautions to back up first; import three customers.
    page.goto(f"{base}/settings/import/erp?connection_id={demo_connection}")
    expect(page.locator("#import-backup-caution")).to_contain_text("Back up first")
    page.get_by_label("Actor type").select_option("Customer")
    page.get_by_role("button", name="Next: search").click()
    page.get_by_role("button", name="Delete criterion 1").click()
    page.get_by_role("button", name="Find", exact=True).click()
    expect(page.get_by_text(re.compile(r"\d+ Customer actor\(s\) found"))).to_be_visible()
    boxes = page.locator("#results tbody input[name='keys']")
    keys = []
    for index in range(3):
        boxes.nth(index).check()
        keys.append(boxes.nth(index).get_attribute("value"))
    page.get_by_role("button", name="Next: settings").click()
    page.get_by_role("button", name="Next: preview").click()
    page.get_by_role("button", name="Import", exact=True).click()
    expect(page.get_by_role("heading", name=re.compile("^Done"))).to_be_visible(timeout=30000)
    expect(page.get_by_role("heading", name="New records (3)")).to_be_visible()
    with app.app_context():
        run = db.session.scalar(select(SyncRun).order_by(SyncRun.id.desc()))
        run_id = run.id
        assert db.session.scalar(select(func.count()).select_from(Company)) == companies_before + 3
        names = [db.session.get(Company, link.crm_id).name for link in db.session.scalars(
            select(Link).where(Link.erp_actor_type == "Customer", Link.erp_key.in_(keys)))]
        assert len(names) == 3

    # Undo → the preview lists the three companies → confirm.
    page.reload()  # the run page as opened later (the Done view was swapped in by polling)
    page.get_by_role("button", name="Undo this import…").click()
    expect(page).to_have_url(re.compile(f"/settings/import/runs/{run_id}/undo$"))
    expect(page.get_by_role("heading", name=f"Undo import #{run_id}")).to_be_visible()
    expect(page.locator("#undo-remove-count")).to_have_text("3")
    removal = page.locator("#undo-remove")
    for name in names:
        expect(removal.get_by_text(name, exact=True)).to_be_visible()
    expect(page.get_by_text(re.compile("Nothing is deleted in the ERP"))).to_be_visible()
    page.get_by_role("button", name=re.compile("^Undo the import")).click()

    # Back on the run page: undone, and the companies are gone.
    expect(page).to_have_url(re.compile(f"/settings/import/runs/{run_id}$"))
    expect(page.locator("#import-undone")).to_contain_text("This import was undone on")
    expect(page.get_by_role("button", name="Undo this import…")).to_have_count(0)
    expect(page.locator("#records-new")).to_contain_text("None.")  # the imported companies are gone
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Company)) == companies_before
        assert not db.session.scalars(select(Link).where(Link.erp_key.in_(keys))).all()

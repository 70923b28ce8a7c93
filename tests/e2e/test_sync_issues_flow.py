"""Browser: a record the Demo ERP sends with a value the CRM refuses shows on the Sync tab's health block and in the
issues inbox; the value is fixed on the Demo ERP page, Retry now clears the issue, and the record's ERP tab says
"In sync". Saves docs/screenshots/sync-health.png and docs/screenshots/sync-issues.png on the way."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest.importorskip("playwright")
from playwright.sync_api import expect  # noqa: E402

from tests.e2e.worlds import sync_issue_world  # noqa: E402

pytestmark = pytest.mark.e2e

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
GOOD_EMAIL = "accounts@nordlys.example"


def test_a_failing_record_in_the_inbox_retry_after_fixing_it_and_the_badge_turns_in_sync(live_server, admin_page):
    app, url, page = live_server.app, live_server.url, admin_page
    world = sync_issue_world(app)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    # 1. The Sync tab: the connection is degraded, with one record with errors and one broken link.
    page.goto(f"{url}/settings/sync")
    health = page.locator("#sync-health")
    card = health.locator("article", has=page.get_by_role("heading", name=re.compile("^Demo ERP")))
    expect(card.locator(".badge").first).to_have_text("Degraded")
    expect(card).to_contain_text("1 record with errors")
    expect(card).to_contain_text("1 broken link")
    expect(card.get_by_role("img", name=re.compile("sync activity, last 14 days"))).to_be_visible()
    health.screenshot(path=str(SCREENSHOTS / "sync-health.png"))

    # 2. The inbox, from the health block's link: the record with its reason.
    card.get_by_role("link", name="1 record with errors").click()
    page.wait_for_url(re.compile(r"/settings/sync/issues\?connection=\d+"))
    expect(page.get_by_role("heading", name="Sync issues", level=1)).to_be_visible()
    row = page.locator("tr", has=page.get_by_role("link", name=world["company_name"], exact=True))
    expect(row).to_contain_text("E-mail could not be written to the CRM")
    group = page.locator("tbody.issue-group", has=row)
    expect(group.get_by_role("rowheader")).to_contain_text("Value the CRM refuses")
    expect(page.locator("tbody.issue-group", has_text=world["broken_company"])).to_contain_text("Broken link")
    page.locator("main").screenshot(path=str(SCREENSHOTS / "sync-issues.png"))

    # 3. Retry now while the value is still wrong: the issue stays, and says so.
    row.get_by_role("button", name=f"Retry now: {world['company_name']}").click()
    expect(page.locator("#toasts")).to_contain_text("Some fields could not be synced", timeout=15000)
    expect(page.locator("tr", has=page.get_by_role("link", name=world["company_name"], exact=True))).to_have_count(1)

    # 4. Fix the value on the Demo ERP page, then Retry now: the issue closes.
    page.goto(f"{url}/demo-erp/customers/{world['bad']}/edit")
    page.locator("#EMAIL").fill(GOOD_EMAIL)
    page.get_by_role("button", name="Save in ERP").click()
    expect(page.locator("main")).to_contain_text(GOOD_EMAIL)
    page.goto(f"{url}/settings/sync/issues")
    page.get_by_role("button", name=f"Retry now: {world['company_name']}").click()
    expect(page.locator("#toasts")).to_contain_text("Synced", timeout=15000)
    expect(page.get_by_role("link", name=world["company_name"], exact=True)).to_have_count(0)
    expect(page.locator("#issue-summary")).to_contain_text("1 issue.")  # the broken link stays

    # 5. The record's ERP tab: In sync, and the CRM took the fixed e-mail.
    page.goto(f"{url}/companies/{world['company']}?tab=erp")
    section = page.locator(f"#erp-conn-{world['connection']}")
    expect(section.locator(".sync-status")).to_have_text("In sync")
    expect(section).to_contain_text("Sync status:")
    page.goto(f"{url}/companies/{world['company']}")
    expect(page.locator("main")).to_contain_text(GOOD_EMAIL)
    # and the company list says so too
    page.goto(f"{url}/companies?sync=errors")
    expect(page.locator("#results")).to_contain_text(world["broken_company"])
    expect(page.locator("#results")).not_to_contain_text(world["company_name"])

"""Keyboard use (issue #17, item 7): record tabs follow the WAI-ARIA tabs pattern (one tab stop, arrow keys, Home and
End, manual activation), the ERP dialog gives focus back to the control that opened it, and a rank move keeps focus on the moved
field's buttons."""

from __future__ import annotations

import re

import pytest

pytest.importorskip("playwright")
from playwright.sync_api import expect  # noqa: E402

from tests.e2e.htmx import settled  # noqa: E402
from tests.e2e.worlds import sync_issue_world  # noqa: E402

pytestmark = pytest.mark.e2e


def _focused(page) -> str:
    return page.evaluate("() => { const el = document.activeElement;"
                         " return el ? (el.id || el.getAttribute('aria-label') || el.textContent.trim()) : ''; }")


def test_record_tabs_move_with_arrow_keys_and_keep_one_tab_stop(live_server, admin_page):
    page, url = admin_page, live_server.url
    sync_issue_world(live_server.app)  # an active connection, so the record has an ERP tab
    page.goto(f"{url}/companies/1")
    tabs = page.get_by_role("tablist", name=re.compile("sections"))
    expect(tabs.get_by_role("tab", name="Details")).to_have_attribute("tabindex", "0")
    expect(tabs.get_by_role("tab", name="Contacts")).to_have_attribute("tabindex", "-1")
    tabs.get_by_role("tab", name="Details").focus()

    page.keyboard.press("ArrowRight")  # moves focus only: a panel is fetched, so activation is manual
    expect(page.get_by_role("tab", name="Contacts")).to_be_focused()
    expect(page.get_by_role("tab", name="Details")).to_have_attribute("aria-selected", "true")
    page.keyboard.press("Enter")
    expect(page.get_by_role("tab", name="Contacts")).to_have_attribute("aria-selected", "true")
    expect(page.get_by_role("tab", name="Contacts")).to_be_focused()  # the strip was swapped; focus stays
    expect(page).to_have_url(re.compile(r"tab=contacts"))

    page.keyboard.press("End")
    expect(page.get_by_role("tab", name="ERP")).to_be_focused()
    page.keyboard.press(" ")
    expect(page.get_by_role("tab", name="ERP")).to_have_attribute("aria-selected", "true")
    expect(page.get_by_role("tab", name="ERP")).to_be_focused()
    expect(page.locator("#erp-tab")).to_be_visible()
    page.keyboard.press("ArrowRight")  # wraps round to the first tab
    expect(page.get_by_role("tab", name="Details")).to_be_focused()
    page.keyboard.press("ArrowLeft")
    expect(page.get_by_role("tab", name="ERP")).to_be_focused()
    page.keyboard.press("Home")
    expect(page.get_by_role("tab", name="Details")).to_be_focused()
    page.keyboard.press("End")
    # Tab from the selected tab goes into the panel, not to the next tab
    page.keyboard.press("Tab")
    assert page.evaluate("() => document.activeElement.getAttribute('role')") != "tab"


def test_closing_the_erp_dialog_gives_focus_back_to_the_button_that_opened_it(live_server, admin_page):
    page, url = admin_page, live_server.url
    sync_issue_world(live_server.app)  # links companies 1-3
    page.goto(f"{url}/companies/4?tab=erp")  # not linked: offers Connect
    opener = page.get_by_role("button", name=re.compile(r"^Connect to Customer in"))
    expect(opener).to_be_visible()
    settled(page)  # the ERP panel is fetched by htmx; a key press before it settles is lost
    opener.focus()
    page.keyboard.press("Enter")
    dialog = page.get_by_role("dialog")
    expect(dialog).to_be_visible()
    page.keyboard.press("Escape")
    expect(dialog).to_be_hidden()
    expect(opener).to_be_focused()

    # the same through the dialog's Cancel button
    opener.click()
    expect(dialog).to_be_visible()
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_be_hidden()
    expect(opener).to_be_focused()
    assert _focused(page) != ""


def test_rank_moves_to_the_top_and_bottom_keep_focus_on_the_moved_field(live_server, admin_page):
    page, url = admin_page, live_server.url
    world = sync_issue_world(live_server.app)
    page.goto(f"{url}/settings/connections/{world['connection']}/rank?actor=Customer")
    rows = page.locator("#rank-table tbody tr")
    count = rows.count()
    assert count > 4
    third = rows.nth(2)
    name = third.locator("th").evaluate("th => th.firstChild.textContent.trim()")
    third.get_by_role("button", name=f"Move {name} to the top").focus()
    page.keyboard.press("Enter")
    expect(rows.first.locator("th")).to_contain_text(name)
    # "to the top" and "up" are disabled now; focus stays in the moved field's row, on "down"
    expect(page.get_by_role("button", name=f"Move {name} down")).to_be_focused()
    expect(page.get_by_role("button", name=f"Move {name} to the top")).to_be_disabled()

    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name=f"Move {name} to the bottom")).to_be_focused()
    page.keyboard.press("Enter")
    expect(rows.nth(count - 1).locator("th")).to_contain_text(name)
    expect(rows.nth(count - 1).locator("td").first).to_have_text(str(count))
    expect(page.get_by_role("button", name=f"Move {name} to the top")).to_be_focused()

    page.keyboard.press("Tab")  # ↑: one place up keeps focus on the same button
    expect(page.get_by_role("button", name=f"Move {name} up")).to_be_focused()
    page.keyboard.press("Enter")
    expect(rows.nth(count - 2).locator("th")).to_contain_text(name)
    expect(page.get_by_role("button", name=f"Move {name} up")).to_be_focused()

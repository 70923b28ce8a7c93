"""The Sync tab, a record's ERP tab and the Connect dialog at 1280 and 390 px (issue #17): the header keeps its
controls on a phone, tables scroll in their own box, the selected connection's summary reads as a paragraph, and
the Select buttons of ERP search results are reachable. Saves docs/screenshots/<screen>-<width>.png.

At 1024, 1280 and 1920 px the selected connection's links sit on one line, its summary takes a line or two, and
its row's Test and Delete look like every other outline button (item 2)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

pytest.importorskip("playwright")
from playwright.sync_api import expect  # noqa: E402

from tests.e2e.a11y import layout_problems  # noqa: E402
from tests.e2e.conftest import ADMIN_EMAIL  # noqa: E402
from tests.e2e.worlds import free_company, sync_issue_world  # noqa: E402

pytestmark = pytest.mark.e2e

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
SUFFIX = os.environ.get("PORTAL_SCREENSHOT_SUFFIX", "")  # "-before" was used once, for the issue's closing note


@pytest.mark.parametrize("width", [1280, 390])
def test_sync_tab_erp_tab_and_connect_dialog_fit_the_screen(browser, live_server, sign_in, width):
    world = sync_issue_world(live_server.app)
    free = free_company(live_server.app)
    context = browser.new_context(viewport={"width": width, "height": 900})
    page = context.new_page()
    url = live_server.url
    sign_in(page, ADMIN_EMAIL)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    page.goto(f"{url}/settings/sync?connection={world['connection']}")
    summary = page.locator("#selected-connection")
    expect(summary).to_contain_text("Connector: Demo ERP")
    page.wait_for_load_state("networkidle")
    page.screenshot(path=str(SCREENSHOTS / f"sync-tab-{width}{SUFFIX}.png"), full_page=True)
    problems = {"sync tab": layout_problems(page)}
    # the summary paragraph is as wide as its text wants, not one character per line
    paragraph = page.locator("#connection-facts")
    line_height = paragraph.evaluate("p => parseFloat(getComputedStyle(p).lineHeight)")
    if paragraph.bounding_box()["height"] > line_height * 4:
        problems["sync tab"].append("the connection summary is squeezed")

    page.goto(f"{url}/companies/{world['company']}?tab=erp")
    expect(page.locator(f"#erp-conn-{world['connection']}")).to_be_visible()
    page.wait_for_load_state("networkidle")
    page.screenshot(path=str(SCREENSHOTS / f"erp-tab-{width}{SUFFIX}.png"), full_page=True)
    problems["ERP tab"] = layout_problems(page)

    page.goto(f"{url}/companies/{free}?tab=erp")
    page.get_by_role("button", name=re.compile(r"^Connect to Customer in")).click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("Search ERP").fill("")
    dialog.get_by_role("button", name="Search", exact=True).click()
    select_buttons = dialog.get_by_role("button", name=re.compile(r"^Select "))
    expect(select_buttons).not_to_have_count(0)
    page.wait_for_load_state("networkidle")
    expect(page.locator("#erp-searching")).to_have_css("opacity", "0")
    page.screenshot(path=str(SCREENSHOTS / f"connect-dialog-{width}{SUFFIX}.png"))
    box = select_buttons.first.bounding_box()  # visible without scrolling anything sideways
    problems["Connect dialog"] = layout_problems(page)
    if not (box["x"] >= 0 and box["x"] + box["width"] <= width):
        problems["Connect dialog"].append("the first Select button is off-screen")
    context.close()
    assert not any(problems.values()), problems


def _lines(locator) -> int:
    """How many lines the elements of ``locator`` take: the distinct tops of their boxes (a px of slack for
    baseline rounding)."""
    tops: list[float] = []
    for box in (element.bounding_box() for element in locator.all()):
        if box and not any(abs(box["y"] - top) <= 1 for top in tops):
            tops.append(box["y"])
    return len(tops)


def _looks(button) -> dict:
    return button.evaluate("b => { const s = getComputedStyle(b);"
                           " return {color: s.color, background: s.backgroundColor, border: s.borderColor,"
                           " opacity: s.opacity, cursor: s.cursor}; }")


@pytest.mark.parametrize("width", [1024, 1280, 1920])
def test_the_selected_connections_links_and_summary_read_on_a_desktop(browser, live_server, sign_in, width):
    """Item 2: the action links sit on one line, the summary is a paragraph of a line or two (not one word per
    line), and the selected row's Test and Delete look like every other outline button, not disabled."""
    from portal.database import utcnow
    from portal.extensions import db
    from portal.models import Connection

    world = sync_issue_world(live_server.app)
    with live_server.app.app_context():  # "Last test passed …": the summary at its longest
        connection = db.session.get(Connection, world["connection"])
        connection.last_test_ok, connection.last_test_at = True, utcnow()
        db.session.commit()
    context = browser.new_context(viewport={"width": width, "height": 900})
    page = context.new_page()
    sign_in(page, ADMIN_EMAIL)
    page.goto(f"{live_server.url}/settings/sync?connection={world['connection']}")
    panel = page.locator("#selected-connection")
    expect(panel.locator("#connection-facts")).to_contain_text("Last test passed")

    links = panel.get_by_role("navigation", name="Configure Demo ERP").get_by_role("link")
    expect(links).to_have_count(7)
    assert _lines(links) == 1, f"the connection's links take {_lines(links)} lines at {width} px"
    # and the list is not pulled out of the panel (Pico's nav lists have a negative margin that cut the first link;
    # the items are measured, as Pico pads each link's box out past its text)
    assert panel.locator(".connection-links li").first.bounding_box()["x"] >= panel.bounding_box()["x"]
    facts = panel.locator("#connection-facts")
    line_height = facts.evaluate("p => parseFloat(getComputedStyle(p).lineHeight)")
    facts_lines = round(facts.bounding_box()["height"] / line_height)
    assert facts_lines <= 2, f"the connection summary takes {facts_lines} lines at {width} px"

    row = page.locator(f"#connection-{world['connection']} tr.selected")
    unselected = page.locator("#connectors").get_by_role("button", name="Delete")  # the same outline button
    for name in ("Test", "Delete"):
        button = row.get_by_role("button", name=name)
        expect(button).to_be_enabled()
        assert _looks(button) == _looks(unselected), f"{name} in the selected row looks unlike its peers"
    context.close()

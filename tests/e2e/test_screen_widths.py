"""The Sync tab, a record's ERP tab and the Connect dialog at 1280 and 390 px (issue #17): the header keeps its
controls on a phone, tables scroll in their own box, the selected connection's summary reads as a paragraph, and
the Select buttons of ERP search results are reachable. Saves docs/screenshots/<screen>-<width>.png."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from sqlalchemy import select

pytest.importorskip("playwright")
from playwright.sync_api import expect  # noqa: E402

from tests.e2e.a11y import layout_problems  # noqa: E402
from tests.e2e.conftest import ADMIN_EMAIL  # noqa: E402
from tests.e2e.worlds import sync_issue_world  # noqa: E402

pytestmark = pytest.mark.e2e

SCREENSHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
SUFFIX = os.environ.get("PORTAL_SCREENSHOT_SUFFIX", "")  # "-before" was used once, for the issue's closing note


def _free_company(app) -> int:
    from portal.extensions import db
    from portal.models import Company, Link

    with app.app_context():
        linked = set(db.session.scalars(select(Link.crm_id).where(Link.crm_type == "company")))
        return db.session.scalar(select(Company.id).where(Company.id.not_in(linked)).order_by(Company.id))


@pytest.mark.parametrize("width", [1280, 390])
def test_sync_tab_erp_tab_and_connect_dialog_fit_the_screen(browser, live_server, sign_in, width):
    world = sync_issue_world(live_server.app)
    free = _free_company(live_server.app)
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

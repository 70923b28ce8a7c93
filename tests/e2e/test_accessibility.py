"""Every main page, at 1280 and 390 px: axe-core finds no serious or critical violation, and at 390 px nothing but a
table's own scroll box scrolls sideways and the header keeps every control on screen (issue #17)."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

pytest.importorskip("playwright")
from playwright.sync_api import expect  # noqa: E402

from tests.e2e.a11y import axe_violations, layout_problems  # noqa: E402
from tests.e2e.conftest import ADMIN_EMAIL  # noqa: E402
from tests.e2e.worlds import sync_issue_world  # noqa: E402

pytestmark = pytest.mark.e2e

WIDTHS = {"desktop": (1280, 900), "phone": (390, 844)}


def _ids(app, world) -> dict:
    from portal.extensions import db
    from portal.models import Company, Contact, Link, Project, SyncRun

    with app.app_context():
        from portal.services import user_fields

        # user-defined fields: the Fields page's table, a list column and a "More fields" section on companies
        user_fields.create("company", label="Key account", field_type="checkbox", show_in_list=True)
        user_fields.create("company", label="Tier", field_type="list", list_name="category")
        linked = set(db.session.scalars(select(Link.crm_id).where(Link.crm_type == "company")))
        free = db.session.scalar(select(Company.id).where(Company.id.not_in(linked)).order_by(Company.id))
        return {"connection": world["connection"], "company": world["company"], "free_company": free,
                "contact": db.session.scalar(select(Contact.id).order_by(Contact.id)),
                "project": db.session.scalar(select(Project.id).order_by(Project.id)),
                "run": db.session.scalar(select(SyncRun.id).order_by(SyncRun.id.desc()))}


def _pages(ids: dict) -> list[str]:
    c = ids["connection"]
    return [
        "/", "/companies", f"/companies/{ids['company']}", f"/companies/{ids['company']}?tab=erp",
        f"/companies/{ids['company']}/edit", "/contacts", f"/contacts/{ids['contact']}?tab=erp", "/projects",
        f"/projects/{ids['project']}", "/settings/sync", f"/settings/sync?connection={c}",
        "/settings/connections/new", f"/settings/connections/{c}/edit", f"/settings/connections/{c}/mappings",
        f"/settings/connections/{c}/list-mapping", f"/settings/connections/{c}/defaults",
        f"/settings/connections/{c}/rank", "/settings/lists", "/settings/fields", "/settings/fields/1/edit", "/settings/fields/1/delete",
        "/settings/sync/log",
        f"/settings/sync/runs/{ids['run']}", "/settings/sync/issues", "/settings/sync/alerts",
        "/settings/sync/alerts/new", "/settings/import", "/settings/users", "/settings/users/new",
        "/settings/groups", "/settings/audit", "/account", "/demo-erp/", "/demo-erp/customers/",
    ]


def _check(page, where: str, problems: dict, *, layout: bool) -> None:
    found = axe_violations(page)
    if layout:
        found += layout_problems(page)
    if found:
        problems[where] = found


@pytest.mark.parametrize("size", sorted(WIDTHS))
def test_main_pages_have_no_serious_accessibility_or_layout_problems(browser, live_server, sign_in, size):
    width, height = WIDTHS[size]
    world = sync_issue_world(live_server.app)
    ids = _ids(live_server.app, world)
    context = browser.new_context(viewport={"width": width, "height": height}, bypass_csp=True)
    page = context.new_page()
    page.on("dialog", lambda dialog: dialog.accept())
    url = live_server.url
    problems: dict[str, list[str]] = {}
    phone = width < 600

    page.goto(f"{url}/login")
    _check(page, "/login", problems, layout=phone)
    sign_in(page, ADMIN_EMAIL)

    for path in _pages(ids):
        response = page.goto(f"{url}{path}")
        assert response.status == 200, path
        page.wait_for_load_state("networkidle")
        _check(page, path, problems, layout=phone)

    # the Connect dialog with its search results
    page.goto(f"{url}/companies/{ids['free_company']}?tab=erp")
    page.get_by_role("button", name=re.compile(r"^Connect to Customer in")).click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("Search ERP").fill("")
    dialog.get_by_role("button", name="Search", exact=True).click()
    expect(dialog.get_by_role("button", name=re.compile(r"^Select "))).not_to_have_count(0)
    _check(page, "Connect dialog", problems, layout=phone)
    if phone:
        for button in dialog.get_by_role("button", name=re.compile(r"^Select ")).all():
            button.scroll_into_view_if_needed()  # inside the results' own scroll box is fine; off the page is not
            box = button.bounding_box()
            if not box or box["x"] + box["width"] > width:
                problems.setdefault("Connect dialog", []).append("a Select button is off-screen")
    context.close()
    assert not problems, "\n".join(f"{where}:\n  " + "\n  ".join(lines) for where, lines in problems.items())


def test_no_console_errors_on_pages_and_htmx_swaps(live_server, admin_page):
    """Item 9: no CSP violation (htmx's own indicator styles are off), no missing favicon, no script error — on page
    loads and on htmx swaps (tabs, the ERP dialog, search, Test, toggles)."""
    page, url = admin_page, live_server.url
    world = sync_issue_world(live_server.app)
    ids = _ids(live_server.app, world)
    errors: list[str] = []
    page.on("console", lambda message: errors.append(f"{page.url}: {message.text}") if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(f"{page.url}: {error}"))
    for path in _pages(ids):
        page.goto(f"{url}{path}")
        page.wait_for_load_state("networkidle")
    page.goto(f"{url}/companies/{ids['free_company']}")
    page.get_by_role("tab", name="Contacts").click()
    page.get_by_role("tab", name="ERP").click()
    page.get_by_role("button", name=re.compile(r"^Connect to Customer in")).click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("Search ERP").fill("a")
    dialog.get_by_role("button", name="Search", exact=True).click()
    expect(dialog.get_by_role("button", name=re.compile(r"^Select "))).not_to_have_count(0)
    dialog.get_by_role("button", name="Cancel").click()
    page.goto(f"{url}/settings/sync?connection={ids['connection']}")
    page.locator(f"#connection-{ids['connection']}").get_by_role("button", name="Test").click()
    expect(page.locator(f"#connection-{ids['connection']}")).to_contain_text("Test of Demo ERP")
    page.goto(f"{url}/companies?q=a")
    page.wait_for_load_state("networkidle")
    assert errors == []

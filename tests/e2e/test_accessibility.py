"""Every page, at 1280 and 390 px: axe-core finds no serious or critical violation, and at 390 px nothing but a
table's own scroll box scrolls sideways and the header keeps every control on screen (issue #17). "Every page": the
lists, records and their forms, every settings screen (the import wizard, previews and alerts included), the Demo
ERP's pages, and the ERP tab's dialogs (Connect, Advanced search, Compare, Create)."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

pytest.importorskip("playwright")
from playwright.sync_api import expect  # noqa: E402

from tests.e2e.a11y import axe_violations, layout_problems  # noqa: E402
from tests.e2e.conftest import ADMIN_EMAIL  # noqa: E402
from tests.e2e.htmx import settled  # noqa: E402
from tests.e2e.worlds import free_company, sync_issue_world  # noqa: E402

pytestmark = pytest.mark.e2e

WIDTHS = {"desktop": (1280, 900), "phone": (390, 844)}


def _ids(app, world) -> dict:
    """Beside the sync issue world: user-defined fields, a second user in a group, an alert rule, a preview, an
    import of two customers, searchable ERP fields (the Connect dialog's Advanced search) and synced Person and
    Project actor types (the ERP tab of a contact and of a project); returns the ids the pages need."""
    from portal.connectors.builtin.demo import DemoErpConnector
    from portal.extensions import db
    from portal.models import AlertRule, Connection, Contact, Link, Project, SyncRun
    from portal.services import user_fields, users
    from portal.services.import_run import execute_import, start_import
    from portal.services.import_settings import ImportRequest
    from portal.services.sync import engine, runs
    from tests.conftest import make_user

    c = world["connection"]
    demo = DemoErpConnector.for_path(app.config["DEMO_ERP_DB"])
    with app.app_context():
        # user-defined fields: the Fields page's table, a list column and a "More fields" section on companies
        user_fields.create("company", label="Key account", field_type="checkbox", show_in_list=True)
        user_fields.create("company", label="Tier", field_type="list", list_name="category")
        run = db.session.scalar(select(SyncRun.id).order_by(SyncRun.id.desc()))  # the world's sync run
        connection = db.session.get(Connection, c)
        for f in connection.actor_type("Customer").fields:
            f.show_in_search = f.field_key in ("NAME", "PHONE")
        for actor_type, mapping in (("Person", {"FIRSTNAME": "first_name", "LASTNAME": "last_name"}),
                                    ("Project", {"NAME": "name"})):
            config = connection.actor_type(actor_type)
            config.is_active = True
            for f in config.fields:
                f.crm_field = mapping.get(f.field_key)
                f.sync_to_crm = f.sync_to_erp = f.show_in_gui = f.crm_field is not None
        bob = make_user("bob@example.com", licence=True, name="Bob User")
        group = users.save_group(None, name="Sales", description="The sales team", members=[bob])
        rule = AlertRule(name="Operations", connection_id=c, channel="email", recipients="ops@example.com")
        db.session.add(rule)
        db.session.commit()
        ids = {"connection": c, "connector": connection.connector_id, "company": world["company"],
               "contact": db.session.scalar(select(Contact.id).order_by(Contact.id)),
               "project": db.session.scalar(select(Project.id).order_by(Project.id)),
               "run": run, "user": bob.id, "group": group.id, "alert": rule.id}
        preview, _created = runs.request_run(c, kind="sync", trigger="manual", requested_by="test",
                                             options={"dry_run": True, "group": "a11y"})
        ids["preview"] = preview.id
        engine.execute_cycle([preview.id], followups=False)
    with app.app_context():
        linked = set(db.session.scalars(select(Link.erp_key)))
        keys = [a["ErpKey"] for a in demo.browse("Customer", limit=20)[1] if a["ErpKey"] not in linked][:2]
        import_run = start_import(db.session.get(Connection, c), ImportRequest(c, "Customer", keys=keys))
        ids["import"] = import_run.id
    with app.app_context():
        execute_import(ids["import"])
    ids["free_company"] = free_company(app)
    ids.update({f"erp_{kind}": demo.browse(actor_type, limit=1)[1][0]["ErpKey"]
                for kind, actor_type in (("customer", "Customer"), ("person", "Person"), ("project", "Project"))})
    return ids


def _pages(ids: dict) -> list[str]:
    c, customer = ids["connection"], ids["erp_customer"]
    return [
        "/", "/companies", "/companies/new", f"/companies/{ids['company']}", f"/companies/{ids['company']}?tab=erp",
        f"/companies/{ids['company']}/edit",
        "/contacts", "/contacts/new", f"/contacts/{ids['contact']}", f"/contacts/{ids['contact']}?tab=erp",
        f"/contacts/{ids['contact']}/edit",
        "/projects", "/projects/new", f"/projects/{ids['project']}", f"/projects/{ids['project']}?tab=erp",
        f"/projects/{ids['project']}/edit",
        "/settings/sync", f"/settings/sync?connection={c}", "/settings/sync/priority",
        "/settings/connectors/new", f"/settings/connectors/{ids['connector']}/edit",
        "/settings/connections/new", f"/settings/connections/{c}/edit", f"/settings/connections/{c}/mappings",
        f"/settings/connections/{c}/list-mapping", f"/settings/connections/{c}/defaults",
        f"/settings/connections/{c}/rank", f"/settings/connections/{c}/resync",
        f"/settings/connections/{c}/resync-from-erp", f"/settings/sync/previews/{ids['preview']}",
        "/settings/lists", "/settings/fields", "/settings/fields/1/edit", "/settings/fields/1/delete",
        "/settings/sync/log", f"/settings/sync/runs/{ids['run']}", "/settings/sync/issues", "/settings/sync/alerts",
        "/settings/sync/alerts/new", f"/settings/sync/alerts/{ids['alert']}/edit",
        "/settings/import", f"/settings/import/erp?connection_id={c}",
        f"/settings/import/erp/search?connection_id={c}&actor_type=Customer",
        f"/settings/import/runs/{ids['import']}", f"/settings/import/runs/{ids['import']}/undo",
        "/settings/users", "/settings/users/new", f"/settings/users/{ids['user']}/edit",
        "/settings/groups", "/settings/groups/new", f"/settings/groups/{ids['group']}/edit",
        "/settings/audit", "/account",
        "/demo-erp/", "/demo-erp/customers/", f"/demo-erp/customers/{customer}", "/demo-erp/customers/new",
        f"/demo-erp/customers/{customer}/edit", f"/demo-erp/customers/{customer}/delete",
        f"/demo-erp/persons/{ids['erp_person']}", f"/demo-erp/projects/{ids['erp_project']}",
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

    # the import wizard's search results
    page.goto(f"{url}/settings/import/erp/search?connection_id={ids['connection']}&actor_type=Customer")
    page.get_by_role("button", name="Delete criterion 1").click()
    page.get_by_role("button", name="Find", exact=True).click()
    expect(page.get_by_text(re.compile(r"\d+ Customer actor\(s\) found"))).to_be_visible()
    _check(page, "Import search results", problems, layout=phone)

    # the Connect dialog with its search results, its Advanced search and the value choice (Compare)
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
    dialog.get_by_role("button", name="Advanced search").click()
    expect(dialog.locator("#erp-advanced")).not_to_be_empty()
    settled(page)
    _check(page, "Advanced search", problems, layout=phone)
    dialog.get_by_role("button", name=re.compile(r"^Select ")).first.click()
    expect(page.get_by_role("dialog", name="Select correct field values for linked company")).to_be_visible()
    settled(page)
    _check(page, "Compare dialog", problems, layout=phone)

    # the Create dialog
    page.goto(f"{url}/companies/{ids['free_company']}?tab=erp")
    page.get_by_role("button", name=re.compile(r"^Connect to Customer in")).click()
    page.get_by_role("dialog").get_by_role("button", name="Can't find a match — create in ERP").click()
    expect(page.get_by_role("dialog", name="Create in ERP “Demo ERP”")).to_be_visible()
    settled(page)
    _check(page, "Create dialog", problems, layout=phone)
    context.close()
    assert not problems, "\n".join(f"{where}:\n  " + "\n  ".join(lines) for where, lines in problems.items())


def test_no_console_errors_on_pages_and_htmx_swaps(live_server, admin_page):
    """Item 9: no CSP violation (htmx's own indicator styles are off), no missing favicon, no script error — on page
    loads and on htmx swaps: tabs, the ERP dialog and its search, Test, the Show deleted box, automatic sync Off and
    On, Save interval, a rank move and adding a default. The page's CSP is enforced (no bypass_csp here)."""
    page, url = admin_page, live_server.url
    world = sync_issue_world(live_server.app)
    ids = _ids(live_server.app, world)
    c = ids["connection"]
    errors: list[str] = []
    page.on("console", lambda message: errors.append(f"{page.url}: {message.text}") if message.type == "error" else None)
    page.on("pageerror", lambda error: errors.append(f"{page.url}: {error}"))
    for path in _pages(ids):
        page.goto(f"{url}{path}")
        page.wait_for_load_state("networkidle")
    page.goto(f"{url}/companies/{ids['free_company']}")
    # (each swap settles before the next click: a request cut short by the next one is logged by htmx as an error)
    page.get_by_role("tab", name="Contacts").click()
    expect(page.get_by_role("tab", name="Contacts")).to_have_attribute("aria-selected", "true")
    settled(page)
    page.get_by_role("tab", name="ERP").click()
    page.get_by_role("button", name=re.compile(r"^Connect to Customer in")).click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_label("Search ERP").fill("a")
    dialog.get_by_role("button", name="Search", exact=True).click()
    expect(dialog.get_by_role("button", name=re.compile(r"^Select "))).not_to_have_count(0)
    settled(page)
    dialog.get_by_role("button", name="Cancel").click()
    settled(page)

    # the Sync tab's swaps
    page.goto(f"{url}/settings/sync?connection={c}")
    page.locator(f"#connection-{c}").get_by_role("button", name="Test").click()
    expect(page.locator(f"#connection-{c}")).to_contain_text("Test of Demo ERP")
    page.locator("#connections").get_by_role("checkbox", name="Show deleted").check()
    expect(page.locator("#connections").get_by_role("checkbox", name="Show deleted")).to_be_checked()
    settled(page)
    automatic = page.get_by_role("group", name="Automatic sync")
    automatic.get_by_role("button", name="Off").click()
    expect(page.locator("#auto-sync")).to_contain_text("Automatic sync is turned off.")
    settled(page)
    automatic.get_by_role("button", name="On").click()
    expect(page.locator("#auto-sync-next")).to_contain_text("next run is due now")
    page.get_by_label("Sync interval (seconds)").fill("900")
    page.get_by_role("button", name="Save interval").click()
    expect(page.locator("#toasts")).to_contain_text("Sync interval set to 900 seconds")

    # a rank move
    page.goto(f"{url}/settings/connections/{c}/rank?actor=Customer")
    second = page.locator("#rank-table tbody tr").nth(1)
    name = second.locator("th").evaluate("th => th.firstChild.textContent.trim()")
    second.get_by_role("button", name=f"Move {name} up").click()
    expect(page.locator("#rank-table tbody tr").first.locator("th")).to_contain_text(name)

    # adding a default
    page.goto(f"{url}/settings/connections/{c}/defaults?actor=Customer")
    count = page.locator("#default-count")
    before = count.inner_text()
    settled(page)
    page.get_by_label("Add a default value for").select_option(index=1)
    editor = page.locator("#default-add.editing")
    editor.get_by_label("Ask user").check()
    editor.get_by_role("button", name=re.compile("^Save")).click()
    expect(count).not_to_have_text(before)

    page.goto(f"{url}/companies?q=a")
    page.wait_for_load_state("networkidle")
    assert errors == []

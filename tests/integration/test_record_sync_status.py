"""A record's sync status (portal/services/record_sync_status.py): the badge on its ERP tab section, and the Sync
column and filter of the Company, Contact and Project lists, computed with the list query."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import event

from portal.extensions import db
from portal.models import Company, Link, Project, RunStatus
from tests import sync_support as s

pytestmark = pytest.mark.db


@pytest.fixture
def world(app, fake):
    """Acme: in sync. Bad AS: an ERP e-mail the CRM refuses (error). Gone AS: broken. Loose AS: not linked."""
    with app.app_context():
        cid = s.make_connection(fake, name="Fake ERP")
        acme, _key, acme_link = s.link_company(fake, cid, name="Acme AS")
        bad, bad_key, bad_link = s.link_company(fake, cid, name="Bad AS")
        gone, gone_key, gone_link = s.link_company(fake, cid, name="Gone AS")
        loose = Company(name="Loose AS")
        db.session.add_all([loose, Project(name="Roll-out")])
        db.session.commit()
        fake.update_actor("Customer", bad_key, {"email": "not an e-mail"})
        fake.delete_actor("Customer", gone_key)
        s.edit_company(gone, phone="1")
        assert s.run(cid).status == RunStatus.PARTIAL
        return {"connection": cid, "acme": acme, "bad": bad, "bad_key": bad_key, "gone": gone, "loose": loose.id,
                "acme_link": acme_link}


def section(client, company_id: int, cid: int) -> str:
    response = client.get(f"/erp/company/{company_id}/connections/{cid}", htmx=True)
    assert response.status_code == 200
    return response.get_data(as_text=True)


def badge(html: str) -> str:
    match = re.search(r'Sync status:</small>\s*<span class="badge badge-(\w+) sync-status"[^>]*>([^<]+)</span>', html)
    return f"{match.group(2)} ({match.group(1)})"


def test_the_erp_tab_badge_in_colour_and_words(app, user_client, fake, world):
    cid = world["connection"]
    assert badge(section(user_client, world["acme"], cid)) == "In sync (ok)"
    assert badge(section(user_client, world["bad"], cid)) == "Error (error)"
    assert badge(section(user_client, world["gone"], cid)) == "Broken (broken)"
    assert badge(section(user_client, world["loose"], cid)) == "Not linked (none)"
    with app.app_context():
        s.edit_company(world["acme"], phone="555")
    assert badge(section(user_client, world["acme"], cid)) == "Pending (queued)"
    # Sync now: the section comes back in sync
    response = user_client.post(f"/erp/company/{world['acme']}/connections/{cid}/sync", htmx=True)
    assert badge(response.get_data(as_text=True)) == "In sync (ok)"
    # the bad value fixed in the ERP, Sync now: in sync
    fake.update_actor("Customer", world["bad_key"], {"email": "ok@bad.example"})
    response = user_client.post(f"/erp/company/{world['bad']}/connections/{cid}/sync", htmx=True)
    assert badge(response.get_data(as_text=True)) == "In sync (ok)"


def list_rows(html: str) -> dict[str, str]:
    """{record name: the Sync cell's status} of a list page."""
    found = {}
    for row in re.findall(r"<tr>(.*?)</tr>", html, re.S):
        name = re.search(r'<a href="/companies/\d+">([^<]+)</a>', row)
        status = re.search(r'class="badge badge-\w+ sync-status"[^>]*>([^<]+)<', row)
        if name:
            found[name.group(1)] = status.group(1) if status else None
    return found


def test_the_company_list_shows_the_sync_column(admin_client, world):
    html = admin_client.get("/companies").get_data(as_text=True)
    assert '<th scope="col">Sync</th>' in html
    assert list_rows(html) == {"Acme AS": "In sync", "Bad AS": "Error", "Gone AS": "Broken",
                               "Loose AS": "Not linked"}
    assert '<label for="sync-filter" class="sr-only">Sync status</label>' in html


def test_the_list_filters_has_sync_errors_and_not_linked_to_a_connection(app, admin_client, fake, world):
    cid = world["connection"]
    html = admin_client.get("/companies?sync=errors", htmx=True).get_data(as_text=True)
    assert set(list_rows(html)) == {"Bad AS", "Gone AS"}
    assert "(has sync errors)" in html
    html = admin_client.get(f"/companies?sync=unlinked-{cid}", htmx=True).get_data(as_text=True)
    assert set(list_rows(html)) == {"Loose AS"}
    page = admin_client.get("/companies").get_data(as_text=True)
    assert f'<option value="unlinked-{cid}">Not linked to Fake ERP</option>' in page
    # with the search text too
    html = admin_client.get("/companies?sync=errors&q=bad", htmx=True).get_data(as_text=True)
    assert set(list_rows(html)) == {"Bad AS"}
    # an unknown filter filters nothing
    assert len(list_rows(admin_client.get("/companies?sync=unlinked-x", htmx=True).get_data(as_text=True))) == 4
    # contacts and projects have the column and filter too
    projects = admin_client.get("/projects").get_data(as_text=True)
    assert '<th scope="col">Sync</th>' in projects and ">Not linked</span>" in projects
    assert "No projects (has sync errors)." in admin_client.get("/projects?sync=errors").get_data(as_text=True)
    contacts = admin_client.get("/contacts").get_data(as_text=True)
    assert 'name="sync"' in contacts


def test_the_column_costs_no_query_per_row(app, admin_client, fake, world):
    def queries(url: str) -> int:
        seen = []

        def count(*_args):
            seen.append(1)

        with app.app_context():
            event.listen(db.engine, "before_cursor_execute", count)
        try:
            assert admin_client.get(url, htmx=True).status_code == 200
        finally:
            with app.app_context():
                event.remove(db.engine, "before_cursor_execute", count)
        return len(seen)

    before = queries("/companies")
    with app.app_context():
        for n in range(6):
            s.link_company(fake, world["connection"], name=f"More {n}")
    assert queries("/companies") == before


def test_users_without_a_licence_get_no_sync_column(outsider_client, world):
    html = outsider_client.get("/companies").get_data(as_text=True)
    assert '<th scope="col">Sync</th>' not in html and 'name="sync"' not in html
    # and the filter is not applied for them
    assert len(list_rows(outsider_client.get("/companies?sync=errors", htmx=True).get_data(as_text=True))) == 4


def test_a_link_on_a_deleted_connection_does_not_count(app, admin_client, world):
    from portal.models import Connection

    with app.app_context():
        db.session.get(Connection, world["connection"]).deleted = True
        db.session.commit()
        assert db.session.get(Link, world["acme_link"]) is not None
    html = admin_client.get("/companies").get_data(as_text=True)
    assert set(list_rows(html).values()) == {"Not linked"}

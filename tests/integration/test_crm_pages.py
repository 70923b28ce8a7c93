"""CRM screens: start page, lists with active search and paging, detail tabs, create/edit/delete."""

from __future__ import annotations

import re
import sys
import types

import pytest
from sqlalchemy import func, insert, select

from portal.extensions import db
from portal.models import Company, Contact, CrmList, ListItem, Project

pytestmark = pytest.mark.db



@pytest.fixture
def records(app):
    """Acme (Oslo, Norway) with two contacts, Globex without contacts, one loose contact, one project."""
    with app.app_context():
        norway = db.session.scalar(select(ListItem).where(ListItem.list_name == CrmList.COUNTRY,
                                                          ListItem.name == "Norway"))
        acme = Company(name="Acme Industries", number="1001", code="ACM", postal_city="Oslo", country_id=norway.id,
                       email="post@acme.example", url="https://acme.example")
        globex = Company(name="Globex", postal_city="Bergen")
        ingrid = Contact(first_name="Ingrid", last_name="Hansen", email="ingrid@acme.example", company=acme)
        lars = Contact(first_name="Lars", last_name="Olsen", company=acme)
        loose = Contact(first_name="Per", last_name="Loose")
        project = Project(name="Roll-out", number="P-1", description="Line one\nLine two")
        db.session.add_all([acme, globex, ingrid, lars, loose, project])
        db.session.commit()
        return {"acme": acme.id, "globex": globex.id, "ingrid": ingrid.id, "lars": lars.id, "loose": loose.id,
                "project": project.id, "norway": norway.id}


def _item_id(app, list_name: str, name: str) -> int:
    with app.app_context():
        return db.session.scalar(select(ListItem.id).where(ListItem.list_name == list_name, ListItem.name == name))


def _count(app, model) -> int:
    with app.app_context():
        return db.session.scalar(select(func.count()).select_from(model))


def _get(app, model, ident):
    with app.app_context():
        obj = db.session.get(model, ident)
        if obj is not None:
            db.session.expunge(obj)
        return obj


def _text(response) -> str:
    return response.get_data(as_text=True)


# --- access ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["/", "/companies", "/contacts", "/projects", "/companies/1", "/companies/new",
                                 "/companies/options"])
def test_anonymous_is_sent_to_login(client, url):
    response = client.get(url)
    assert response.status_code == 302
    assert "/login" in response.headers["Location"]


def test_anonymous_htmx_gets_401_with_hx_redirect(client):
    response = client.get("/companies?q=a", htmx={"current_url": "http://localhost/companies"})
    assert response.status_code == 401
    assert response.headers["HX-Redirect"].startswith("/login")


def test_anonymous_post_is_refused(client, records):
    response = client.post(f"/companies/{records['acme']}/delete")
    assert response.status_code == 302 and "/login" in response.headers["Location"]


# --- start page --------------------------------------------------------------------------------------------


def test_home_shows_counts_and_quick_links(user_client, records):
    page = _text(user_client.get("/"))
    assert re.search(r'id="count-company">2<', page)
    assert re.search(r'id="count-contact">3<', page)
    assert re.search(r'id="count-project">1<', page)
    assert 'href="/companies/new"' in page and 'href="/contacts/new"' in page and 'href="/projects/new"' in page
    assert "Settings → Sync" not in page


def test_home_links_admins_to_sync_settings(admin_client):
    page = _text(admin_client.get("/"))
    assert "Settings → Sync" in page and 'href="/settings/sync"' in page


# --- lists: active search and paging ----------------------------------------------------------------------


def test_company_list_full_page_has_active_search(user_client, records):
    response = user_client.get("/companies")
    page = _text(response)
    assert response.status_code == 200 and "<html" in page
    search = re.search(r'<input type="search" id="q"[^>]*>', page, re.S).group(0)
    assert 'hx-get="/companies"' in search
    assert 'hx-trigger="input changed delay:300ms, search"' in search
    assert 'hx-target="#results"' in search and 'hx-push-url="true"' in search
    assert '<label for="q"' in page
    assert "Acme Industries" in page and "Globex" in page and "Norway" in page
    assert "HX-Request" in response.headers.get("Vary", "")


def test_company_search_htmx_returns_results_partial(user_client, records):
    response = user_client.get("/companies?q=OSLO", htmx=True)
    body = _text(response)
    assert response.status_code == 200
    assert "<html" not in body and 'id="q"' not in body
    assert "Acme Industries" in body and "Globex" not in body
    assert "1 companies matching “OSLO”" in body or "of 1 companies" in body


def test_boosted_request_gets_a_full_page(user_client, records):
    assert "<html" in _text(user_client.get("/companies", htmx={"boosted": True}))


def test_search_without_htmx_renders_the_page_with_the_query(user_client, records):
    page = _text(user_client.get("/companies?q=glob"))
    assert "<html" in page and 'value="glob"' in page
    assert "Globex" in page and "Acme Industries" not in page


def test_contact_and_project_search(user_client, records):
    contacts = _text(user_client.get("/contacts?q=acme", htmx=True))
    assert "Ingrid Hansen" in contacts and "Lars Olsen" in contacts and "Per Loose" not in contacts
    projects = _text(user_client.get("/projects?q=p-1", htmx=True))
    assert "Roll-out" in projects and "<html" not in projects


def test_no_results_message(user_client, records):
    assert "No companies match “zzz”" in _text(user_client.get("/companies?q=zzz", htmx=True))


def test_paging_25_per_page(app, user_client):
    with app.app_context():
        db.session.execute(insert(Company), [{"name": f"Firm {i:03d}"} for i in range(60)])
        db.session.commit()
    first = _text(user_client.get("/companies"))
    assert first.count('href="/companies/') - first.count('href="/companies/new"') == 25
    assert "Page 1 of 3" in first and 'rel="next"' in first and "page=2" in first
    third = _text(user_client.get("/companies?page=3&q=firm", htmx=True))
    assert "Firm 059" in third and "Firm 049" not in third
    assert "Showing 51–60 of 60" in third
    assert 'rel="prev"' in third and "q=firm" in third
    # Beyond the last page: the last page, not an error.
    assert "Firm 059" in _text(user_client.get("/companies?page=40"))


# --- detail pages and tabs ---------------------------------------------------------------------------------


def test_company_detail_shows_details_and_timestamps(user_client, records):
    page = _text(user_client.get(f"/companies/{records['acme']}"))
    assert "<html" in page and "Acme Industries" in page
    assert 'role="tablist"' in page
    assert re.search(r'id="tab-details"[^>]*aria-selected="true"', page, re.S)
    assert re.search(r'id="tab-contacts"[^>]*aria-selected="false"', page, re.S)
    assert 'role="tabpanel"' in page
    assert "Norway" in page and 'href="mailto:post@acme.example"' in page
    assert "Created" in page and "Last updated" in page and " UTC" in page


def test_company_contacts_tab_deep_link(user_client, records):
    page = _text(user_client.get(f"/companies/{records['acme']}?tab=contacts"))
    assert "<html" in page
    assert re.search(r'id="tab-contacts"[^>]*aria-selected="true"', page, re.S)
    assert "Ingrid Hansen" in page and "Lars Olsen" in page and "Per Loose" not in page
    assert f'href="/contacts/new?company_id={records["acme"]}"' in page


def test_tab_htmx_request_returns_panel_and_oob_tab_strip(user_client, records):
    response = user_client.get(f"/companies/{records['acme']}?tab=contacts", htmx=True)
    body = _text(response)
    assert response.status_code == 200
    assert "<html" not in body
    assert body.lstrip().startswith('<div id="tab-panel"')
    assert "Ingrid Hansen" in body
    assert re.search(r'id="record-tabs" hx-swap-oob="true"', body)
    assert re.search(r'id="tab-contacts"[^>]*aria-selected="true"', body, re.S)
    tab_link = re.search(r'<a role="tab" id="tab-details"[^>]*>', body, re.S).group(0)
    assert 'hx-target="#tab-panel"' in tab_link and 'hx-push-url="true"' in tab_link


def test_unknown_tab_falls_back_to_details(user_client, records):
    page = _text(user_client.get(f"/contacts/{records['ingrid']}?tab=nope"))
    assert re.search(r'id="tab-details"[^>]*aria-selected="true"', page, re.S)
    assert 'id="tab-contacts"' not in page  # only companies have a contacts tab


def test_erp_tab_hidden_without_visibility(user_client, records, monkeypatch):
    monkeypatch.setitem(sys.modules, "portal.services.erp_visibility", None)
    page = _text(user_client.get(f"/companies/{records['acme']}?tab=erp"))
    assert 'id="tab-erp"' not in page and "erp-panel" not in page
    assert re.search(r'id="tab-details"[^>]*aria-selected="true"', page, re.S)


def _visibility(monkeypatch, answer):
    calls = []
    module = types.ModuleType("portal.services.erp_visibility")

    def erp_tab_visible(user, crm_type, record_id):
        calls.append((getattr(user, "email", None), crm_type, record_id))
        if isinstance(answer, Exception):
            raise answer
        return answer

    module.erp_tab_visible = erp_tab_visible
    monkeypatch.setitem(sys.modules, "portal.services.erp_visibility", module)
    import portal.services

    monkeypatch.setattr(portal.services, "erp_visibility", module, raising=False)
    return calls


def test_erp_tab_lazy_loads_when_visible(user_client, records, monkeypatch):
    calls = _visibility(monkeypatch, True)
    page = _text(user_client.get(f"/projects/{records['project']}"))
    assert 'id="tab-erp"' in page and "erp-panel" not in page
    assert calls == [("bob@example.com", "project", records["project"])]
    panel = _text(user_client.get(f"/projects/{records['project']}?tab=erp", htmx=True))
    assert "<html" not in panel
    assert f'hx-get="/erp/project/{records["project"]}"' in panel
    assert 'hx-trigger="load"' in panel and "Loading ERP data…" in panel


def test_erp_visibility_errors_hide_the_tab(user_client, records, monkeypatch):
    _visibility(monkeypatch, RuntimeError("connector down"))
    response = user_client.get(f"/contacts/{records['ingrid']}?tab=erp")
    assert response.status_code == 200 and 'id="tab-erp"' not in _text(response)


def test_contact_and_project_details(user_client, records):
    contact = _text(user_client.get(f"/contacts/{records['ingrid']}"))
    assert "Ingrid Hansen" in contact and f'href="/companies/{records["acme"]}"' in contact
    project = _text(user_client.get(f"/projects/{records['project']}"))
    assert "Line one<br>Line two" in project


def test_missing_record_is_404(user_client, records):
    assert user_client.get("/companies/999999").status_code == 404
    assert user_client.get("/projects/999999/edit").status_code == 404
    assert user_client.post("/contacts/999999/delete").status_code == 404


# --- create / edit -----------------------------------------------------------------------------------------


def test_create_company_htmx_redirects_to_detail(app, user_client):
    country = _item_id(app, CrmList.COUNTRY, "Sweden")
    response = user_client.post("/companies/new", htmx=True, data={
        "name": "  Nordic Tools  ", "email": "hello@nordic.example", "url": "https://nordic.example",
        "country_id": str(country), "business_id": "", "category_id": "",
    })
    assert response.status_code == 200
    with app.app_context():
        company = db.session.scalar(select(Company))
        assert (company.name, company.country_id) == ("Nordic Tools", country)
        assert response.headers["HX-Redirect"] == f"/companies/{company.id}"


def test_create_company_plain_post_redirects(app, user_client):
    response = user_client.post("/companies/new", data={"name": "Plain Co"})
    assert response.status_code == 302 and re.match(r"/companies/\d+$", response.headers["Location"])
    assert "created" in _text(user_client.get(response.headers["Location"]))


def test_create_company_invalid_is_422_with_field_errors(app, user_client):
    response = user_client.post("/companies/new", htmx=True, data={"name": "", "email": "not-an-email",
                                                                     "url": "ftp://files.example"})
    body = _text(response)
    assert response.status_code == 422
    assert "<html" not in body and 'id="record-form-wrap"' in body
    assert "Name is required." in body
    assert "Enter a valid e-mail address" in body
    assert "Enter a web address starting with http:// or https://." in body
    assert 'aria-invalid="true"' in body
    assert 'value="not-an-email"' in body  # the input is kept
    assert _count(app, Company) == 0


def test_invalid_plain_post_renders_the_page_with_422(app, user_client):
    response = user_client.post("/projects/new", data={"name": "P", "end_date": "31/12/2030"})
    assert response.status_code == 422 and "<html" in _text(response)
    assert _count(app, Project) == 0


def test_list_field_from_another_list_is_refused(app, user_client):
    business = _item_id(app, CrmList.BUSINESS, "Retail")
    response = user_client.post("/companies/new", data={"name": "Mixup", "country_id": str(business)})
    assert response.status_code == 422
    assert "Choose a country from the list." in _text(response)
    assert _count(app, Company) == 0
    status = _item_id(app, CrmList.COUNTRY, "Norway")
    response = user_client.post("/projects/new", data={"name": "P", "status_id": str(status)})
    assert response.status_code == 422 and "Choose a status from the list." in _text(response)


def test_company_form_offers_only_live_items_of_the_list(app, user_client, records):
    with app.app_context():
        denmark = db.session.scalar(select(ListItem).where(ListItem.name == "Denmark"))
        denmark.deleted = True
        db.session.get(ListItem, records["norway"]).deleted = True
        db.session.commit()
    new_form = _text(user_client.get("/companies/new"))
    country_select = re.search(r'<select[^>]*name="country_id".*?</select>', new_form, re.S).group(0)
    assert "Sweden" in country_select and "Denmark" not in country_select and "Norway" not in country_select
    assert "Retail" not in country_select
    assert '<option selected value="">(none)</option>' in country_select
    # Acme still has Norway: its edit form shows it (marked deleted) and saving keeps it.
    edit_form = _text(user_client.get(f"/companies/{records['acme']}/edit"))
    assert re.search(rf'<option selected value="{records["norway"]}">Norway \(deleted\)</option>', edit_form)
    response = user_client.post(f"/companies/{records['acme']}/edit",
                                data={"name": "Acme Industries", "country_id": str(records["norway"])})
    assert response.status_code == 302


def test_edit_company_valid_and_invalid(app, user_client, records):
    url = f"/companies/{records['acme']}/edit"
    form = _text(user_client.get(url))
    assert 'value="Acme Industries"' in form and f'action="{url}"' in form and f'hx-post="{url}"' in form
    response = user_client.post(url, htmx=True, data={"name": "", "postal_city": "Trondheim"})
    assert response.status_code == 422 and "Name is required." in _text(response)
    assert _get(app, Company, records["acme"]).postal_city == "Oslo"
    response = user_client.post(url, htmx=True, data={"name": "Acme Group", "postal_city": "Trondheim",
                                                       "country_id": str(records["norway"])})
    assert response.headers["HX-Redirect"] == f"/companies/{records['acme']}"
    saved = _get(app, Company, records["acme"])
    assert (saved.name, saved.postal_city) == ("Acme Group", "Trondheim")


def test_new_contact_prefilled_from_company_page(user_client, records):
    form = _text(user_client.get(f"/contacts/new?company_id={records['acme']}"))
    assert re.search(rf'<option selected value="{records["acme"]}">Acme Industries</option>', form)
    assert f'action="/contacts/new?company_id={records["acme"]}"' in form
    assert 'hx-get="/companies/options"' in form and '<label for="company-q">' in form


def test_create_contact_rules(app, user_client, records):
    response = user_client.post("/contacts/new", htmx=True, data={"first_name": "", "last_name": "",
                                                                    "company_id": str(records["acme"])})
    assert response.status_code == 422 and "Enter a first name or a last name." in _text(response)
    response = user_client.post("/contacts/new", data={"last_name": "Ghost", "company_id": "987654"})
    assert response.status_code == 422 and "Choose an existing company." in _text(response)
    response = user_client.post("/contacts/new", data={"last_name": "Late", "birth_date": "2999-01-01"})
    assert response.status_code == 422 and "cannot be in the future" in _text(response)
    assert _count(app, Contact) == 3
    response = user_client.post("/contacts/new", htmx=True, data={
        "first_name": "Nora", "last_name": "Berg", "birth_date": "1990-05-17", "company_id": str(records["globex"])})
    assert response.status_code == 200 and response.headers["HX-Redirect"].startswith("/contacts/")
    with app.app_context():
        nora = db.session.scalar(select(Contact).where(Contact.last_name == "Berg"))
        assert nora.company_id == records["globex"] and nora.birth_date.isoformat() == "1990-05-17"


def test_a_contact_has_a_postal_address_a_country_and_a_web_site(app, user_client, records):
    form = _text(user_client.get("/contacts/new"))
    for label in ("Web site", "Postal address 1", "Postal zip code", "Postal city", "Country"):
        assert f">{label}</label>" in form or f">{label} " in form, label
    assert re.search(r'<select[^>]*name="country_id"[^>]*>.*?>Norway</option>', form, re.S)
    with app.app_context():
        sweden = db.session.scalar(select(ListItem.id).where(ListItem.list_name == CrmList.COUNTRY,
                                                             ListItem.name == "Sweden"))
    refused = user_client.post("/contacts/new", htmx=True, data={"last_name": "Lind", "url": "javascript:alert(1)"})
    assert refused.status_code == 422 and "Enter a web address starting with http:// or https://." in _text(refused)
    saved = user_client.post("/contacts/new", htmx=True, data={
        "last_name": "Lind", "url": "https://lind.example", "postal_address1": "Storgatan 1", "postal_zip": "111 22",
        "postal_city": "Stockholm", "country_id": str(sweden)})
    assert saved.status_code == 200
    detail = _text(user_client.get(saved.headers["HX-Redirect"]))
    for text in ("https://lind.example", "Storgatan 1", "111 22", "Stockholm", "Sweden"):
        assert text in detail


def test_company_options_for_the_contact_picker(user_client, records):
    response = user_client.get(f"/companies/options?q=glob&company_id={records['acme']}", htmx=True)
    body = _text(response)
    assert response.status_code == 200 and "<html" not in body
    assert body.lstrip().startswith('<option value="">(none)</option>')
    assert f'<option value="{records["acme"]}" selected>Acme Industries</option>' in body  # kept selected
    assert f'<option value="{records["globex"]}">Globex — Bergen</option>' in body
    assert "No company matches" in _text(user_client.get("/companies/options?q=zzz"))


def test_project_create_and_edit(app, user_client):
    status = _item_id(app, CrmList.PROJECT_STATUS, "Planned")
    response = user_client.post("/projects/new", data={"name": "Launch", "number": "P-9", "end_date": "2030-06-30",
                                                       "status_id": str(status), "url": "http://launch.example",
                                                       "description": "a\r\nb"})
    assert response.status_code == 302
    with app.app_context():
        project = db.session.scalar(select(Project))
        assert (project.status_id, project.end_date.isoformat(), project.description) == (status, "2030-06-30", "a\nb")
        project_id = project.id
    response = user_client.post(f"/projects/{project_id}/edit", data={"name": "Launch", "url": "launch.example"})
    assert response.status_code == 422 and "http:// or https://" in _text(response)


# --- delete ------------------------------------------------------------------------------------------------


def test_company_delete_confirmation_mentions_kept_contacts(user_client, records):
    page = _text(user_client.get(f"/companies/{records['acme']}"))
    form = re.search(rf'<form method="post" action="/companies/{records["acme"]}/delete".*?</form>', page, re.S)
    assert form and "hx-confirm=" in form.group(0)
    assert "Its 2 contacts are kept, without a company." in form.group(0)


def test_delete_company_keeps_contacts(app, user_client, records):
    response = user_client.post(f"/companies/{records['acme']}/delete", htmx=True)
    assert response.status_code == 200 and response.headers["HX-Redirect"] == "/companies"
    assert _get(app, Company, records["acme"]) is None
    assert _get(app, Contact, records["ingrid"]).company_id is None
    assert _get(app, Contact, records["lars"]).company_id is None
    page = _text(user_client.get("/companies"))
    assert "Company “Acme Industries” deleted. Its 2 contacts were kept." in page


def test_delete_contact_and_project(app, user_client, records):
    response = user_client.post(f"/contacts/{records['loose']}/delete")
    assert response.status_code == 302 and response.headers["Location"] == "/contacts"
    assert _get(app, Contact, records["loose"]) is None
    assert user_client.post(f"/projects/{records['project']}/delete", htmx=True).headers["HX-Redirect"] == "/projects"
    assert _get(app, Project, records["project"]) is None


def test_delete_needs_post(user_client, records):
    assert user_client.get(f"/companies/{records['acme']}/delete").status_code == 405
    assert _count_companies_ok(user_client)


def _count_companies_ok(client) -> bool:
    return "Acme Industries" in _text(client.get("/companies"))

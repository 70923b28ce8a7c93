"""The Demo ERP's own pages (/demo-erp/): browse, detail, edit, create, mark as changed, delete.

They exist only while the demo is on (PORTAL_DEMO_DATA) and are for admins only; tests/integration/
test_security_findings.py covers the demo being off."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest

from portal.connectors.builtin.demo import FIELDS, DemoErpConnector, format_timestamp, parse_timestamp
from tests.conftest import login

pytestmark = pytest.mark.db

GUID = "0b7e2f43-9d1a-4a8e-8f0e-3c5d7a9b1e2f"


@pytest.fixture
def app_config(app_config):
    return {**app_config, "DEMO_DATA": True}


@pytest.fixture
def erp(app) -> DemoErpConnector:
    return DemoErpConnector.for_path(app.config["DEMO_ERP_DB"])


@pytest.fixture
def web(app, users):
    client = app.test_client()
    login(client, users["alice"])
    return client


def _form_data(actor: dict, **changes) -> dict:
    """What the edit form would post for ``actor`` unchanged, plus ``changes`` (booleans as checkbox state)."""
    data = {}
    for meta in FIELDS[actor["ActorType"]]:
        if meta["Access"] == "ReadOnly":
            continue
        value = actor["FieldValues"].get(meta["FieldKey"])
        if meta["FieldType"] == "Checkbox":
            if value:
                data[meta["FieldKey"]] = "y"
            continue
        data[meta["FieldKey"]] = "" if value is None else str(value)
    for key, value in changes.items():
        if value is False:
            data.pop(key, None)
        elif value is True:
            data[key] = "y"
        else:
            data[key] = value
    return data


class _Controls(HTMLParser):
    """Collects form controls and which of them a <label> names (for= or wrapping)."""

    def __init__(self):
        super().__init__()
        self.controls: list[dict] = []
        self.label_for: set[str] = set()
        self._open_labels = 0
        self.buttons = 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "label":
            self._open_labels += 1
            if attrs.get("for"):
                self.label_for.add(attrs["for"])
        elif tag in ("input", "select", "textarea"):
            if attrs.get("type") not in ("hidden", "submit", "button"):
                self.controls.append({**attrs, "_wrapped": self._open_labels > 0})
        elif tag == "button":
            self.buttons += 1

    def handle_endtag(self, tag):
        if tag == "label":
            self._open_labels -= 1


def _controls(html: str) -> _Controls:
    parser = _Controls()
    parser.feed(html)
    return parser


def _unlabelled(html: str) -> list[str]:
    parsed = _controls(html)
    return [c.get("name") or c.get("id") or "?" for c in parsed.controls
            if not c["_wrapped"] and (c.get("aria-label") is None) and c.get("id") not in parsed.label_for]


# -- access ------------------------------------------------------------------------------------------------------


def test_pages_need_a_signed_in_user(client):
    response = client.get("/demo-erp/")
    assert response.status_code == 302 and "/login" in response.headers["Location"]


def test_only_admins_may_use_the_demo_erp(app, users, erp):
    admin = app.test_client()
    login(admin, users["alice"])
    assert admin.get("/demo-erp/").status_code == 200
    assert admin.get("/demo-erp/customers/C10001/edit").status_code == 200
    for persona in ("bob", "carol"):  # a licensed user and one without a licence
        client = app.test_client()
        login(client, users[persona])
        assert client.get("/demo-erp/").status_code == 403
        assert client.get("/demo-erp/customers/C10001/edit").status_code == 403
        before = erp.get_actor("Customer", "C10001")
        assert client.post("/demo-erp/customers/C10001/delete").status_code == 403
        assert client.post("/demo-erp/customers/new", data={"NAME": "Sneaky AS"}).status_code == 403
        assert erp.get_actor("Customer", "C10001") == before
        assert "Demo ERP</a>" not in client.get("/").get_data(as_text=True)  # no link to pages they may not open
    assert "Demo ERP</a>" in admin.get("/").get_data(as_text=True)


# -- browsing ----------------------------------------------------------------------------------------------------


def test_list_has_tabs_search_and_paging(web, erp):
    page = web.get("/demo-erp/").get_data(as_text=True)
    assert 'role="tablist"' in page and page.count('role="tab"') == 4
    assert re.search(r'id="tab-customers"[^>]*aria-selected="true"', page)
    assert re.search(r'id="tab-persons"[^>]*aria-selected="false"', page)
    assert "Customers (40)" in page and "Persons (80)" in page
    _, everyone = erp.browse("Customer", limit=100)
    names = [a["FieldValues"]["NAME"] for a in everyone]

    def shown(html):
        return {name for name in names if f">{name}</a>" in html.replace("&amp;", "&")}

    first = shown(page)
    second_html = web.get("/demo-erp/customers/?page=2").get_data(as_text=True)
    second = shown(second_html)
    assert len(first) == 25 and len(second) == 15 and first | second == set(names)
    assert "Page 2 of 2" in second_html

    target = erp.get_actor("Customer", "C10001")["FieldValues"]["NAME"]
    word = target.split()[0]
    found = web.get(f"/demo-erp/customers/?q={word.lower()}").get_data(as_text=True)
    assert target in found and shown(found) == {n for n in names if word.casefold() in n.casefold()}
    nothing = web.get("/demo-erp/customers/?q=zzzzzz").get_data(as_text=True)
    assert "No customers match" in nothing


def test_search_answers_a_partial_for_htmx(web):
    partial = web.get("/demo-erp/projects/?q=budget", htmx=True)
    html = partial.get_data(as_text=True)
    assert partial.status_code == 200 and "<html" not in html and "Budget 2027" in html and "<table" in html
    boosted = web.get("/demo-erp/projects/?q=budget", htmx={"boosted": True}).get_data(as_text=True)
    assert "<html" in boosted


def test_persons_tab_shows_their_company(web, erp):
    html = web.get("/demo-erp/persons/").get_data(as_text=True)
    assert re.search(r'id="tab-persons"[^>]*aria-selected="true"', html)
    _, persons = erp.browse("Person", limit=1)
    parent = persons[0]["ParentErpKey"]
    parent_name = erp.display_names([parent])[parent]
    assert f'href="/demo-erp/{persons[0]["ParentActorType"].lower()}s/{parent}"' in html
    assert parent_name in html.replace("&amp;", "&")


def test_unknown_kind_or_record_is_404(web):
    assert web.get("/demo-erp/partners/").status_code == 404
    assert web.get("/demo-erp/customers/C99999").status_code == 404
    assert web.get("/demo-erp/suppliers/C10001").status_code == 404
    assert web.get("/demo-erp/customers/C99999/edit").status_code == 404


def test_detail_shows_every_field_persons_and_last_modified(web, erp):
    actor = erp.get_actor("Customer", "C10001")
    html = web.get("/demo-erp/customers/C10001").get_data(as_text=True).replace("&#39;", "'")
    for meta in FIELDS["Customer"]:
        assert f"<dt>{meta['DisplayName']}" in html
    assert actor["LastModified"] in html and actor["FieldValues"]["NAME"] in html
    _, persons = erp.browse("Person", parent_key="C10001")
    assert persons and all(p["ErpKey"] in html for p in persons)
    assert "/demo-erp/persons/new?parent=C10001" in html
    person = web.get(f"/demo-erp/persons/{persons[0]['ErpKey']}").get_data(as_text=True)
    assert 'href="/demo-erp/customers/C10001"' in person


# -- editing -----------------------------------------------------------------------------------------------------


def test_edit_form_lists_choices_and_keeps_read_only_fields_out(web):
    html = web.get("/demo-erp/customers/C10001/edit").get_data(as_text=True)
    assert '<select id="COUNTRY" name="COUNTRY">' in html and 'value="SE">Sweden</option>' in html
    assert 'name="NUMBER1"' not in html and 'name="BALANCE"' not in html
    assert "Customer number" in html  # shown as text instead
    assert 'type="checkbox"' in html and 'type="date"' not in html  # customers have only ReadOnly dates
    assert 'type="date"' in web.get("/demo-erp/projects/PR40001/edit").get_data(as_text=True)


def test_edit_saves_through_the_erp_so_the_sync_sees_it(web, erp):
    erp.handle("SaveConnection", {"ConnectionGuid": GUID, "ConnectionInfo": {"CompanyDb": "DEMO"}})
    before = erp.get_actor("Customer", "C10001")
    latest = max(a["LastModified"] for a in erp.browse("Customer", limit=1000)[1])
    data = _form_data(before, NAME="Renamed In ERP AS", COUNTRY="SE", BLOCKED=True, CREDITLIMIT="1234.5",
                      LASTINVOICEDATE="2000-01-01")
    response = web.post("/demo-erp/customers/C10001/edit", data=data)
    assert response.status_code == 302 and response.headers["Location"].endswith("/demo-erp/customers/C10001")
    after = erp.get_actor("Customer", "C10001")
    values = after["FieldValues"]
    assert (values["NAME"], values["COUNTRY"], values["BLOCKED"], values["CREDITLIMIT"]) == (
        "Renamed In ERP AS", "SE", True, 1234.5)
    assert values["LASTINVOICEDATE"] == before["FieldValues"]["LASTINVOICEDATE"]
    assert values["VATNO"] == before["FieldValues"]["VATNO"]
    assert after["LastModified"] > before["LastModified"]
    feed = erp.handle("GetActorsByTimestamp", {
        "ConnectionGuid": GUID, "ActorType": "Customer",
        "UpdatedOnOrAfter": format_timestamp(parse_timestamp(latest) + 1), "FieldKeys": ["NAME"]})
    assert [(a["ErpKey"], a["FieldValues"]["NAME"]) for a in feed["Actors"]] == [("C10001", "Renamed In ERP AS")]
    page = web.get("/demo-erp/customers/C10001").get_data(as_text=True)
    assert "Saved Renamed In ERP AS in the Demo ERP" in page


def test_invalid_edit_answers_422_with_field_errors_and_writes_nothing(web, erp):
    before = erp.get_actor("Customer", "C10002")
    response = web.post("/demo-erp/customers/C10002/edit",
                        data=_form_data(before, NAME="  ", CREDITLIMIT="lots", COUNTRY="XX", EMPLOYEES="1.5"))
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    assert "Name is mandatory." in html and 'aria-invalid="true"' in html
    assert html.count('class="field-error"') == 4
    assert erp.get_actor("Customer", "C10002") == before
    too_long = web.post("/demo-erp/customers/C10002/edit", data=_form_data(before, NAME="x" * 101))
    assert too_long.status_code == 422 and erp.get_actor("Customer", "C10002") == before


def test_saving_without_changes_writes_nothing(web, erp):
    before = erp.get_actor("Person", "P30001")
    response = web.post("/demo-erp/persons/P30001/edit", data=_form_data(before))
    assert response.status_code == 302
    assert erp.get_actor("Person", "P30001")["LastModified"] == before["LastModified"]
    assert "Nothing changed" in web.get("/demo-erp/persons/P30001").get_data(as_text=True)


def test_edit_a_project_date_and_status(web, erp):
    before = erp.get_actor("Project", "PR40001")
    response = web.post("/demo-erp/projects/PR40001/edit",
                        data=_form_data(before, ENDDATE="2030-12-31", STATUS="ONHOLD", BUDGET=""))
    assert response.status_code == 302
    values = erp.get_actor("Project", "PR40001")["FieldValues"]
    assert (values["ENDDATE"], values["STATUS"], values["BUDGET"]) == ("2030-12-31", "ONHOLD", None)
    assert values["NUMBER"] == before["FieldValues"]["NUMBER"]


# -- creating, touching, deleting --------------------------------------------------------------------------------


def test_create_customer_and_person(web, erp):
    form = web.get("/demo-erp/customers/new").get_data(as_text=True)
    assert '<option selected value="EUR">' in form  # catalogue defaults
    response = web.post("/demo-erp/customers/new", data={"NAME": "Fresh Start AS", "COUNTRY": "NO",
                                                         "CURRENCY": "NOK", "CREDITLIMIT": "5000"})
    assert response.status_code == 302
    key = response.headers["Location"].rsplit("/", 1)[1]
    created = erp.get_actor("Customer", key)
    assert created["FieldValues"]["NAME"] == "Fresh Start AS" and created["FieldValues"]["NUMBER1"]
    assert erp.counts()["Customer"] == 41

    assert web.get(f"/demo-erp/persons/new?parent={key}").status_code == 200
    response = web.post(f"/demo-erp/persons/new?parent={key}", data={"FIRSTNAME": "Nora", "LASTNAME": "Berg",
                                                                      "BIRTHDATE": "1990-05-17"})
    assert response.status_code == 302
    person = erp.get_actor("Person", response.headers["Location"].rsplit("/", 1)[1])
    assert (person["ParentActorType"], person["ParentErpKey"]) == ("Customer", key)
    assert person["FieldValues"]["BIRTHDATE"] == "1990-05-17"

    assert web.get("/demo-erp/persons/new?parent=PR40001").status_code == 404
    assert web.get("/demo-erp/persons/new").status_code == 404
    invalid = web.post("/demo-erp/customers/new", data={"NAME": ""})
    assert invalid.status_code == 422 and erp.counts()["Customer"] == 41


def test_mark_as_changed_bumps_last_modified(web, erp):
    before = erp.get_actor("Supplier", "S20001")["LastModified"]
    response = web.post("/demo-erp/suppliers/S20001/touch")
    assert response.status_code == 302
    assert erp.get_actor("Supplier", "S20001")["LastModified"] > before
    assert web.get("/demo-erp/suppliers/S20001/touch").status_code == 405


def test_delete_asks_for_confirmation_then_soft_deletes(web, erp):
    erp.handle("SaveConnection", {"ConnectionGuid": GUID, "ConnectionInfo": {"CompanyDb": "DEMO"}})
    confirm = web.get("/demo-erp/customers/C10003/delete")
    html = confirm.get_data(as_text=True)
    assert confirm.status_code == 200 and re.search(r"<button type=\"submit\"[^>]*>Delete in ERP</button>", html)
    assert erp.get_actor("Customer", "C10003") is not None

    response = web.post("/demo-erp/customers/C10003/delete")
    assert response.status_code == 302 and response.headers["Location"].endswith("/demo-erp/customers/")
    assert erp.get_actor("Customer", "C10003") is None
    answer = erp.handle("GetActors", {"ConnectionGuid": GUID, "ActorType": "Customer",
                                      "ErpKeys": ["C10003", "C10004"], "FieldKeys": ["NAME"]})
    assert [a["ErpKey"] for a in answer["Actors"]] == ["C10004"]
    assert web.get("/demo-erp/customers/C10003").status_code == 404
    assert "Customers (39)" in web.get("/demo-erp/").get_data(as_text=True)

    htmx = web.post("/demo-erp/projects/PR40002/delete", htmx=True)
    assert htmx.status_code == 200 and htmx.headers["HX-Redirect"].endswith("/demo-erp/projects/")
    assert erp.get_actor("Project", "PR40002") is None


# -- accessibility -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["/demo-erp/", "/demo-erp/customers/C10001/edit", "/demo-erp/suppliers/S20001/edit",
                                 "/demo-erp/persons/P30001/edit", "/demo-erp/projects/PR40001/edit",
                                 "/demo-erp/customers/new", "/demo-erp/persons/new?parent=C10001",
                                 "/demo-erp/customers/C10001", "/demo-erp/customers/C10001/delete"])
def test_every_input_has_a_label_and_actions_are_buttons(web, url):
    html = web.get(url).get_data(as_text=True)
    parsed = _controls(html)
    assert _unlabelled(html) == []
    main = html.split('<main', 1)[1]
    assert "<script" not in main and "style=" not in main
    if "/edit" in url or "/new" in url or "/delete" in url:
        assert parsed.buttons >= 1 and '<button type="submit"' in main

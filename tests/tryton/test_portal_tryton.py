"""The portal against a live Tryton (issue #7): the whole path a customer takes, through the portal's own HTTP
endpoints where a user or an admin would use them.

Every test defines its connection the way an admin does (Sync tab: a ``builtin:tryton`` connector row, the
Define connection dialog with Test before Save, the Mappings screens, Activate), so the portal database is fresh
per test (the ``app`` fixture) while Tryton is the session's server on a copy of the template database (see
conftest.py). Tests share that server: every record they create in Tryton has a unique name.

Edits "behind the portal's back" go through Tryton's own JSON-RPC (``tryton.rpc``); sync runs go through the
engine as the scheduler would run them (``runs.request_run`` + ``engine.execute_run``).
"""

from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select

from portal.extensions import db
from portal.models import (
    Company,
    Connection,
    Connector,
    Contact,
    Link,
    RunKind,
    RunStatus,
    SyncChange,
    SyncRun,
)
from portal.services.import_run import execute_import, start_import
from portal.services.import_settings import ImportRequest, ImportSettings
from portal.services.sync import engine, runs
from tests.conftest import add_record, form_of

pytestmark = pytest.mark.tryton

# ERP field key -> CRM attribute, both ways
COMPANY_MAP = {"NAME": "name", "EMAIL": "email", "PHONE": "phone", "POSTALCITY": "postal_city"}
PERSON_MAP = {"FIRSTNAME": "first_name", "LASTNAME": "last_name", "EMAIL": "email"}
SHOWN = {"NAME", "POSTALCITY", "FIRSTNAME", "LASTNAME", "EMAIL"}  # Show in search / Show in ERP tab
# an ERP key in search results: the cell after the action cell (Select, or "Linked to …")
KEY_CELL = r"</(?:button|small)>\s*</td>\s*<td>(\d+)</td>"


# ------------------------------------------------------------------------------------------ helpers: HTTP


def text(response) -> str:
    return response.get_data(as_text=True)


def _token(html: str) -> str:
    marker = 'name="test_token" type="hidden" value="'
    start = html.index(marker) + len(marker)
    return html[start:html.index('"', start)]


def erp_url(crm_type: str, record_id: int, connection_id: int, tail: str = "") -> str:
    return f"/erp/{crm_type}/{record_id}/connections/{connection_id}{tail}"


# ------------------------------------------------------------------------------------------ helpers: Tryton


def tryton_customer(tryton, name: str, *, email: str | None = None, phone: str | None = None,
                    city: str | None = None, category: str = "Customer") -> int:
    """A party created directly in Tryton (as a Tryton user would): category, contact mechanisms, address."""
    values: dict = {"name": name, "categories": [["add", [tryton.demo["categories"][category]]]]}
    mechanisms = [{"type": kind, "value": value} for kind, value in (("email", email), ("phone", phone)) if value]
    if mechanisms:
        values["contact_mechanisms"] = [["create", mechanisms]]
    if city:
        values["addresses"] = [["create", [{"city": city}]]]
    return tryton.rpc.model("party.party", "create", [values])[0]


def tryton_person(tryton, name: str, employer: int, *, email: str | None = None) -> int:
    values: dict = {"name": name, "relations": [["create", [
        {"to": employer, "type": tryton.demo["relation_types"]["Employee of"]}]]]}
    if email:
        values["contact_mechanisms"] = [["create", [{"type": "email", "value": email}]]]
    return tryton.rpc.model("party.party", "create", [values])[0]


def tryton_party(tryton, party_id: int) -> dict:
    """What Tryton holds for a party, read through its own API: name, categories, first e-mail/phone, city,
    employers (the parties it is "Employee of")."""
    rpc = tryton.rpc
    [party] = rpc.read("party.party", [party_id], ["name", "categories", "active"])
    mechanisms = rpc.search_read("party.contact_mechanism", [["party", "=", party_id]], ["type", "value"],
                                 order=[["sequence", "ASC"], ["id", "ASC"]])
    addresses = rpc.search_read("party.address", [["party", "=", party_id]], ["city"],
                                order=[["sequence", "ASC"], ["id", "ASC"]])
    relations = rpc.search_read("party.relation.all", [["from_", "=", party_id]], ["to", "type"])
    first = {}
    for mechanism in mechanisms:
        first.setdefault(mechanism["type"], mechanism["value"])
    employee_of = tryton.demo["relation_types"]["Employee of"]
    return {"name": party["name"], "categories": set(party["categories"]), "email": first.get("email"),
            "phone": first.get("phone"), "city": addresses[0]["city"] if addresses else None,
            "employers": [r["to"] for r in relations if r["type"] == employee_of]}


def set_mechanism(tryton, party_id: int, kind: str, value: str) -> None:
    """Edit a contact mechanism on its own (this does not touch the party's own timestamp in Tryton)."""
    [mechanism_id] = tryton.rpc.search("party.contact_mechanism", [["party", "=", party_id], ["type", "=", kind]],
                                       limit=1, order=[["sequence", "ASC"], ["id", "ASC"]])
    tryton.rpc.model("party.contact_mechanism", "write", [mechanism_id], {"value": value})


# ------------------------------------------------------------------------------------------ helpers: portal


def get_company(app, company_id: int) -> Company:
    with app.app_context():
        company = db.session.get(Company, company_id)
        db.session.expunge(company)
        return company


def link_of(app, crm_type: str, crm_id: int) -> Link | None:
    with app.app_context():
        link = db.session.scalar(select(Link).where(Link.crm_type == crm_type, Link.crm_id == crm_id))
        if link is not None:
            db.session.expunge(link)
        return link


def sync(app, connection_id: int) -> engine.RunOutcome:
    """One normal sync run of the connection, executed as the scheduler would."""
    with app.app_context():
        run, created = runs.request_run(connection_id, kind=RunKind.SYNC, trigger="cli", requested_by="test")
        assert created, "another run is active"
        outcome = engine.execute_run(run.id)
    assert outcome.status == RunStatus.SUCCEEDED, (outcome.status, outcome.message)
    return outcome


def changes(app, run_id: int) -> list[SyncChange]:
    with app.app_context():
        rows = db.session.scalars(select(SyncChange).where(SyncChange.run_id == run_id)
                                  .order_by(SyncChange.id)).all()
        db.session.expunge_all()
        return rows


def edit_company(client, company_id: int, **changes) -> None:
    """Edit a company through the CRM's edit form: the form as rendered, with ``changes`` typed in."""
    url = f"/companies/{company_id}/edit"
    data = form_of(text(client.get(url)))
    data.update(changes)
    response = client.post(url, data=data, htmx=True)
    assert response.headers.get("HX-Redirect") == f"/companies/{company_id}", text(response)


def edit_contact(client, contact_id: int, **changes) -> None:
    url = f"/contacts/{contact_id}/edit"
    html = text(client.get(url))
    data = form_of(html)
    company = re.search(r'<option selected value="(\d+)"', html)
    data["company_id"] = company.group(1) if company else ""
    data.update(changes)
    response = client.post(url, data=data, htmx=True)
    assert response.headers.get("HX-Redirect") == f"/contacts/{contact_id}", text(response)


# ------------------------------------------------------------------------------ defining the connection


class Portal:
    """A connection to the session's Tryton defined through the Sync tab, its mappings set through the Mappings
    screens and activated: ``id``, ``fields[(actor type, field key)]`` → ErpField id."""

    def __init__(self, app, admin_client, tryton, policy: str = "priority"):
        self.app, self.admin, self.tryton = app, admin_client, tryton
        self.connector_id = self._add_connector()
        self.id = self._define(policy)
        self.fields = self._field_ids()

    def _add_connector(self) -> int:
        response = self.admin.post("/settings/connectors/new", data={"name": "Tryton", "url": "builtin:tryton"},
                                   htmx=True)
        assert response.status_code == 200 and response.headers["HX-Redirect"] == "/settings/sync", text(response)
        with self.app.app_context():
            return db.session.scalar(select(Connector.id).where(Connector.url == "builtin:tryton"))

    def form(self, policy: str, **overrides) -> dict:
        info = self.tryton.connection_info(**overrides)
        return {"name": "Tryton ERP", "connector_id": str(self.connector_id), "description": "Tryton 8.0 LTS",
                "scope": "everyone", "all_can_create": "1", "conflict_policy": policy,
                **{f"cfg_{key}": value for key, value in info.items()}}

    def _define(self, policy: str) -> int:
        data = self.form(policy)
        tested = self.admin.post("/settings/connections/new", data={**data, "action": "test"}, htmx=True)
        assert tested.status_code == 200, text(tested)
        assert "Tryton 8.0" in text(tested)  # the connector's TestConfigData explanation
        saved = self.admin.post("/settings/connections/new",
                                data={**data, "action": "save", "test_token": _token(text(tested))}, htmx=True)
        assert saved.status_code == 200 and "HX-Redirect" in saved.headers, text(saved)
        return int(saved.headers["HX-Redirect"].split("connection=")[1])

    def _field_ids(self) -> dict[tuple[str, str], int]:
        with self.app.app_context():
            connection = db.session.get(Connection, self.id)
            return {(config.erp_actor_type, f.field_key): f.id for config in connection.actor_types
                    for f in config.fields}

    def map_field(self, actor_type: str, key: str, crm_field: str, *, to_crm=True, to_erp=True):
        shown = "1" if key in SHOWN else ""
        response = self.admin.post(
            f"/settings/connections/{self.id}/mappings/fields/{self.fields[(actor_type, key)]}",
            data={"crm_field": crm_field, "to_crm": "1" if to_crm else "", "to_erp": "1" if to_erp else "",
                  "show_in_search": shown, "show_in_gui": shown}, htmx=True)
        assert response.status_code == 200, text(response)

    def switch(self, actor_type: str, on: bool = True):
        response = self.admin.post(f"/settings/connections/{self.id}/mappings/{actor_type}/switch",
                                   data={"on": "1" if on else "0"}, htmx=True)
        assert response.status_code == 200, text(response)

    def activate(self):
        return self.admin.post(f"/settings/connections/{self.id}/mappings/activation", data={"active": "1"},
                               htmx=True)

    def configure(self) -> Portal:
        """Customer ⇄ company (NAME, EMAIL, PHONE, POSTALCITY) and Person ⇄ contact (FIRSTNAME, LASTNAME, EMAIL),
        both ways; then activate."""
        self.switch("Customer")
        self.switch("Person")
        for key, crm in COMPANY_MAP.items():
            self.map_field("Customer", key, crm)
        for key, crm in PERSON_MAP.items():
            self.map_field("Person", key, crm)
        response = self.activate()
        assert response.status_code == 200, text(response)
        return self


@pytest.fixture(scope="module", autouse=True)
def _archive_our_parties(tryton):
    """The session's Tryton is shared: afterwards, archive the parties this module created (archived parties count
    as deleted), so the connector tests that walk every customer see what they saw before."""
    everyone = {"active_test": False}
    before = tryton.rpc.search("party.party", [], order=[["id", "DESC"]], limit=1, context=everyone)
    yield
    ours = tryton.rpc.search("party.party", [["id", ">", before[0] if before else 0]], context=everyone)
    if ours:
        tryton.rpc.model("party.party", "write", ours, {"active": False})


@pytest.fixture
def portal(app, admin_client, tryton) -> Portal:
    return Portal(app, admin_client, tryton).configure()


def connect_customer(client, portal: Portal, company_id: int, erp_key: str, picks: dict | None = None):
    """The ERP tab's connect flow: compare, pick the values of the differing fields, Connect."""
    compared = client.get(erp_url("company", company_id, portal.id, "/connect/Customer/compare"),
                          query_string={"erp_key": erp_key}, htmx=True)
    assert compared.status_code == 200, text(compared)
    data = form_of(text(compared))
    for key, side in (picks or {}).items():
        data[f"pick_{portal.fields[('Customer', key)]}"] = side
    return compared, client.post(erp_url("company", company_id, portal.id, "/connect/Customer"), data=data,
                                 htmx=True)


def linked_pair(app, client, tryton, portal: Portal, unique, **values) -> tuple[int, int]:
    """A Tryton customer and a CRM company with the same values, linked through the ERP tab. (company, party)"""
    values.setdefault("name", unique("Linked Oy"))
    values.setdefault("email", "post@linked.example")
    values.setdefault("phone", "+358 9 000 0000")
    values.setdefault("postal_city", "Helsinki")
    party = tryton_customer(tryton, values["name"], email=values["email"], phone=values["phone"],
                            city=values["postal_city"])
    company = add_record(app, Company, **values)
    _compared, linked = connect_customer(client, portal, company, str(party))
    assert linked.status_code == 200, text(linked)
    assert link_of(app, "company", company).erp_key == str(party)
    return company, party


# ======================================================================================================= tests


def test_define_the_connection_on_the_sync_tab_mandatory_fields_gate_activation(app, admin_client, tryton):
    portal = Portal(app, admin_client, tryton)
    with app.app_context():
        connection = db.session.get(Connection, portal.id)
        assert connection.connector.url == "builtin:tryton" and connection.last_test_ok and not connection.active
        assert connection.config_values["database"] == tryton.database
        assert tryton.password not in (connection.secrets_encrypted or "")  # the password is stored encrypted
        assert {c.erp_actor_type for c in connection.actor_types} == {"Customer", "Supplier", "Person", "Project"}
        customer = connection.actor_type("Customer")
        # the connector's field keys pre-map by name (without a direction), its searchable fields are cached
        assert {f.field_key: f.crm_field for f in customer.fields if f.field_key in COMPANY_MAP} == COMPANY_MAP
        assert not any(f.sync_to_crm or f.sync_to_erp for f in customer.fields)
        assert {"NAME", "POSTALCITY", "EMAIL"} <= set(customer.searchable_fields)
    # Customer on, but Tryton's mandatory NAME has no value source yet: activation is refused with the reason
    portal.switch("Customer")
    refused = portal.activate()
    assert refused.status_code == 422
    assert "Customer: “Name” is Mandatory in the ERP" in text(refused)
    portal.configure()
    with app.app_context():
        connection = db.session.get(Connection, portal.id)
        assert connection.active
        person = connection.actor_type("Person")
        assert person.is_active and not connection.actor_type("Supplier").is_active
        assert {f.field_key for f in person.fields if f.sync_to_crm and f.sync_to_erp} == set(PERSON_MAP)
    # a licensed user now gets a Tryton section on a company's ERP tab
    company = add_record(app, Company, name="Tab Test AS")
    panel = admin_client.get(f"/erp/company/{company}", htmx=True)
    assert panel.status_code == 200 and f'id="erp-conn-{portal.id}"' in text(panel)


def test_link_an_existing_tryton_customer_through_the_erp_tab(app, user_client, tryton, portal, unique):
    name = unique("Fjord Logistics AS")
    party = tryton_customer(tryton, name, email="invoice@fjord.example", phone="+47 55 00 00 00", city="Bergen")
    company = add_record(app, Company, name=name, email="post@fjord.example", phone="+47 55 00 00 00",
                         postal_city="Stavanger")
    # the ERP tab offers Connect; the simple search finds the Tryton customer by name
    section = text(user_client.get(erp_url("company", company, portal.id), htmx=True))
    assert "Tryton ERP" in section
    found = user_client.get(erp_url("company", company, portal.id, "/connect/Customer/search"),
                            query_string={"q": name}, htmx=True)
    assert found.status_code == 200
    assert re.findall(KEY_CELL, text(found)) == [str(party)]
    # compare: e-mail and city differ; keep Tryton's e-mail and the CRM's city
    compared, linked = connect_customer(user_client, portal, company, str(party),
                                        {"EMAIL": "erp", "POSTALCITY": "crm"})
    html = text(compared)
    assert "invoice@fjord.example" in html and "post@fjord.example" in html and "Bergen" in html
    assert f'name="pick_{portal.fields[("Customer", "PHONE")]}"' not in html  # phone agrees: no choice
    assert linked.status_code == 200, text(linked)
    assert linked.headers["HX-Retarget"] == f"#erp-conn-{portal.id}"
    assert f"Connected to Customer {party} on Tryton ERP." in linked.headers["HX-Trigger"]
    assert get_company(app, company).email == "invoice@fjord.example"
    assert tryton_party(tryton, party)["city"] == "Stavanger"
    assert tryton_party(tryton, party)["email"] == "invoice@fjord.example"
    link = link_of(app, "company", company)
    assert (link.erp_actor_type, link.erp_key, link.status) == ("Customer", str(party), "ok")
    assert link.base == {"NAME": name, "EMAIL": "invoice@fjord.example", "PHONE": "+47 55 00 00 00",
                         "POSTALCITY": "Stavanger"}
    # the first sync after linking has nothing to do: both sides already agree
    outcome = sync(app, portal.id)
    assert not outcome.counts.get("to_crm") and not outcome.counts.get("to_erp")
    # the linked section shows Tryton's values, read live
    values = text(user_client.get(erp_url("company", company, portal.id, "/values"), htmx=True))
    assert name in values and "Stavanger" in values




def _proof_in(html: str) -> str:
    """The search proof the results' Create button carries (Create needs a search of the record first)."""
    found = re.search(r"[?&;]proof=([A-Za-z0-9_.-]+)", html)
    assert found, "the search offered no Create"
    return found.group(1)


def search_proof(client, crm_type: str, record_id: int, connection_id: int, actor_type: str, nonce: str) -> str:
    response = client.get(erp_url(crm_type, record_id, connection_id, f"/connect/{actor_type}/search"),
                          query_string={"q": "", "nonce": nonce}, htmx=True)
    return _proof_in(text(response))


def test_create_a_customer_and_its_contacts_from_the_crm(app, user_client, tryton, portal, unique):
    name = unique("Nordlys Energi AS")
    company = add_record(app, Company, name=name, email="post@nordlys.example", phone="+47 77 60 00 00",
                         postal_city="Tromsø")
    proof = search_proof(user_client, "company", company, portal.id, "Customer", "n" * 24)
    form = user_client.get(erp_url("company", company, portal.id, "/create/Customer"),
                           query_string={"nonce": "n" * 24, "proof": proof}, htmx=True)
    assert form.status_code == 200 and name in text(form)
    created = user_client.post(erp_url("company", company, portal.id, "/create/Customer"),
                               data={"nonce": "n" * 24, "proof": proof}, htmx=True)
    assert created.status_code == 200, text(created)
    link = link_of(app, "company", company)
    assert link is not None and link.erp_actor_type == "Customer"
    party = int(link.erp_key)
    stored = tryton_party(tryton, party)
    assert stored["name"] == name and tryton.demo["categories"]["Customer"] in stored["categories"]
    assert (stored["email"], stored["phone"], stored["city"]) == ("post@nordlys.example", "+47 77 60 00 00",
                                                                  "Tromsø")
    # submitting the same dialog again answers the link that is there (no second party)
    again = user_client.post(erp_url("company", company, portal.id, "/create/Customer"),
                             data={"nonce": "n" * 24, "proof": proof}, htmx=True)
    assert again.status_code == 200 and "Already connected" in again.headers["HX-Trigger"]
    assert tryton.rpc.search("party.party", [["name", "=", name]]) == [party]

    # a contact: no person under the new customer yet (SearchActorByParent) → create one in Tryton
    kari = add_record(app, Contact, company_id=company, first_name="Kari", last_name="Nordlie",
                      email="kari@nordlys.example")
    search = user_client.get(erp_url("contact", kari, portal.id, "/connect/Person/search"),
                             query_string={"q": "", "nonce": "k" * 24}, htmx=True)
    assert search.status_code == 200 and "No Person in Tryton ERP matches" in text(search)
    made = user_client.post(erp_url("contact", kari, portal.id, "/create/Person"),
                            data={"nonce": "k" * 24, "proof": _proof_in(text(search))}, htmx=True)
    assert made.status_code == 200, text(made)
    kari_party = int(link_of(app, "contact", kari).erp_key)
    stored = tryton_party(tryton, kari_party)
    assert (stored["name"], stored["email"], stored["employers"]) == ("Kari Nordlie", "kari@nordlys.example",
                                                                      [party])
    assert not stored["categories"]  # a person is no customer

    # a person who already works there in Tryton: found under the company, linked, the CRM's e-mail kept
    ola_party = tryton_person(tryton, "Ola Svensson", party, email="ola.old@nordlys.example")
    ola = add_record(app, Contact, company_id=company, first_name="Ola", last_name="Svensson",
                     email="ola@nordlys.example")
    search = text(user_client.get(erp_url("contact", ola, portal.id, "/connect/Person/search"),
                                  query_string={"q": "Svensson"}, htmx=True))
    assert re.findall(KEY_CELL, search) == [str(ola_party)]
    compared = user_client.get(erp_url("contact", ola, portal.id, "/connect/Person/compare"),
                               query_string={"erp_key": str(ola_party)}, htmx=True)
    data = {**form_of(text(compared)), f"pick_{portal.fields[('Person', 'EMAIL')]}": "crm"}
    linked = user_client.post(erp_url("contact", ola, portal.id, "/connect/Person"), data=data, htmx=True)
    assert linked.status_code == 200 and link_of(app, "contact", ola).erp_key == str(ola_party), text(linked)
    assert tryton_party(tryton, ola_party)["email"] == "ola@nordlys.example"
    # a person of another customer is not offered under this company
    other = tryton_customer(tryton, unique("Other AB"))
    stranger = tryton_person(tryton, "Sven Svensson", other)
    search = text(user_client.get(erp_url("contact", ola, portal.id, "/connect/Person/search"),
                                  query_string={"q": "Svensson"}, htmx=True))
    assert str(stranger) not in re.findall(KEY_CELL, search)

    # the contact edited in the CRM; "Sync now" on its ERP tab writes it to Tryton at once
    edit_contact(user_client, kari, email="kari.nordlie@nordlys.example")
    synced = user_client.post(erp_url("contact", kari, portal.id, "/sync"), htmx=True)
    assert synced.status_code == 200 and "1 field updated in Tryton ERP" in synced.headers["HX-Trigger"]
    assert tryton_party(tryton, kari_party)["email"] == "kari.nordlie@nordlys.example"


def test_an_edit_in_tryton_reaches_the_crm_after_a_sync(app, user_client, tryton, portal, unique):
    company, party = linked_pair(app, user_client, tryton, portal, unique)
    person = tryton_person(tryton, "Mari Virtanen", party, email="mari@linked.example")
    contact = add_record(app, Contact, company_id=company, first_name="Mari", last_name="Virtanen",
                         email="mari@linked.example")
    compared = user_client.get(erp_url("contact", contact, portal.id, "/connect/Person/compare"),
                               query_string={"erp_key": str(person)}, htmx=True)
    assert "already have the same values" in text(compared)
    linked = user_client.post(erp_url("contact", contact, portal.id, "/connect/Person"), data=form_of(text(compared)),
                              htmx=True)
    assert linked.status_code == 200 and link_of(app, "contact", contact).erp_key == str(person), text(linked)
    # edits through Tryton's own API: a party renamed, a contact mechanism edited on its own, a person renamed
    new_name = unique("Renamed Oy")
    tryton.rpc.model("party.party", "write", [party], {"name": new_name})
    set_mechanism(tryton, party, "email", "finance@renamed.example")
    tryton.rpc.model("party.party", "write", [person], {"name": "Mari Korhonen"})
    outcome = sync(app, portal.id)
    assert outcome.counts["to_crm"] == 2 and not outcome.counts.get("to_erp")
    saved = get_company(app, company)
    assert (saved.name, saved.email, saved.phone) == (new_name, "finance@renamed.example", "+358 9 000 0000")
    with app.app_context():
        mari = db.session.get(Contact, contact)
        assert (mari.first_name, mari.last_name, mari.email) == ("Mari", "Korhonen", "mari@linked.example")
    logged = {(c.direction, c.crm_type, c.crm_field_key, c.new_value) for c in changes(app, outcome.run_id)}
    assert logged == {("to_crm", "company", "name", new_name),
                      ("to_crm", "company", "email", "finance@renamed.example"),
                      ("to_crm", "contact", "last_name", "Korhonen")}
    assert link_of(app, "company", company).base["EMAIL"] == "finance@renamed.example"
    # the next run skips what it already merged: nothing is written back to Tryton
    again = sync(app, portal.id)
    assert not again.counts.get("to_crm") and not again.counts.get("to_erp")
    assert tryton_party(tryton, party)["name"] == new_name


def test_an_edit_in_the_crm_reaches_tryton_after_a_sync(app, user_client, tryton, portal, unique):
    company, party = linked_pair(app, user_client, tryton, portal, unique)
    edit_company(user_client, company, phone="+358 40 123 4567", postal_city="Espoo")
    outcome = sync(app, portal.id)
    assert outcome.counts["to_erp"] == 1 and not outcome.counts.get("to_crm")
    stored = tryton_party(tryton, party)
    assert (stored["phone"], stored["city"], stored["email"]) == ("+358 40 123 4567", "Espoo", "post@linked.example")
    logged = {(c.direction, c.erp_field_key, c.old_value, c.new_value) for c in changes(app, outcome.run_id)}
    assert logged == {("to_erp", "PHONE", "+358 9 000 0000", "+358 40 123 4567"),
                      ("to_erp", "POSTALCITY", "Helsinki", "Espoo")}
    # Tryton's answer (its new LastModified) is remembered: the next run does not read our own write back
    again = sync(app, portal.id)
    assert not again.counts.get("to_crm") and not again.counts.get("to_erp")
    assert get_company(app, company).phone == "+358 40 123 4567"


def test_a_conflicting_edit_on_both_sides_is_settled_by_the_sync_priority(app, admin_client, user_client, tryton,
                                                                       portal, unique):
    company, party = linked_pair(app, user_client, tryton, portal, unique)
    # policy "priority" with the CRM above Tryton: the CRM's phone wins; the other fields merge normally
    set_mechanism(tryton, party, "phone", "+358 9 111 1111")
    tryton.rpc.model("party.party", "write", [party], {"name": unique("Tryton Side Oy")})
    edit_company(user_client, company, phone="+358 9 222 2222")
    outcome = sync(app, portal.id)
    assert outcome.counts["conflicts"] == 1
    assert tryton_party(tryton, party)["phone"] == "+358 9 222 2222"
    saved = get_company(app, company)
    assert saved.phone == "+358 9 222 2222" and saved.name.startswith("Tryton Side Oy")
    [conflict] = [c for c in changes(app, outcome.run_id) if c.conflict]
    assert (conflict.direction, conflict.erp_field_key, conflict.new_value, conflict.other_value) == (
        "to_erp", "PHONE", "+358 9 222 2222", "+358 9 111 1111")
    assert conflict.rule == "CRM wins (sync priority: CRM above Tryton ERP)"
    # move Tryton above the CRM on the Set sync priority list: now Tryton's value wins a conflict
    moved = admin_client.post(f"/settings/sync/priority/{portal.id}/up", htmx=True)
    assert moved.status_code == 200, text(moved)
    set_mechanism(tryton, party, "phone", "+358 9 333 3333")
    edit_company(user_client, company, phone="+358 9 444 4444")
    outcome = sync(app, portal.id)
    assert outcome.counts["conflicts"] == 1
    assert get_company(app, company).phone == "+358 9 333 3333"
    assert tryton_party(tryton, party)["phone"] == "+358 9 333 3333"
    [conflict] = [c for c in changes(app, outcome.run_id) if c.conflict]
    assert (conflict.direction, conflict.crm_field_key, conflict.new_value, conflict.other_value) == (
        "to_crm", "phone", "+358 9 333 3333", "+358 9 444 4444")
    assert conflict.rule == "Tryton ERP wins (sync priority: Tryton ERP above CRM)"
    # the conflicts show on the record's ERP tab
    section = text(user_client.get(erp_url("company", company, portal.id), htmx=True))
    assert "+358 9 444 4444" in section


def test_import_customers_with_their_persons_from_tryton_twice_without_duplicates(app, tryton, portal, unique):
    prefix = unique("Import")
    alpha = tryton_customer(tryton, f"{prefix} Alpha GmbH", email="alpha@import.example", city="Hamburg")
    beta = tryton_customer(tryton, f"{prefix} Beta GmbH", phone="+49 40 000000")
    gamma = tryton_customer(tryton, f"{prefix} Gamma GmbH")
    tryton_customer(tryton, f"{prefix} Supplier GmbH", category="Supplier")  # not a customer: not imported
    eva = tryton_person(tryton, "Eva Lund", alpha, email="eva@import.example")
    request = ImportRequest(portal.id, "Customer", all_results=True,
                            restrictions=[{"FieldKey": "NAME", "Operator": "begins", "Values": [prefix]}],
                            settings=ImportSettings(include_persons=True))

    def run_import() -> SyncRun:
        with app.app_context():
            run_id = start_import(db.session.get(Connection, portal.id), request).id
        with app.app_context():
            assert execute_import(run_id) == RunStatus.SUCCEEDED
            run = db.session.get(SyncRun, run_id)
            db.session.expunge(run)
            return run

    first = run_import()
    assert first.counts["new"] == 4  # 3 companies + 1 person
    with app.app_context():
        companies = {c.name: c for c in db.session.scalars(select(Company).where(Company.name.startswith(prefix)))}
        assert set(companies) == {f"{prefix} Alpha GmbH", f"{prefix} Beta GmbH", f"{prefix} Gamma GmbH"}
        a = companies[f"{prefix} Alpha GmbH"]
        assert (a.email, a.postal_city, a.phone) == ("alpha@import.example", "Hamburg", "")  # blank text is ""
        assert companies[f"{prefix} Beta GmbH"].phone == "+49 40 000000"
        keys = dict(db.session.execute(select(Link.crm_id, Link.erp_key).where(Link.crm_type == "company")).all())
        assert {keys[c.id] for c in companies.values()} == {str(alpha), str(beta), str(gamma)}
        [contact] = db.session.scalars(select(Contact)).all()
        assert (contact.first_name, contact.last_name, contact.email, contact.company_id) == (
            "Eva", "Lund", "eva@import.example", a.id)
        assert link_of(app, "contact", contact.id).erp_key == str(eva)
    second = run_import()
    assert second.counts["new"] == 0 and second.counts["unchanged"] == 4
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(Company)) == 3
        assert db.session.scalar(select(func.count()).select_from(Contact)) == 1
        assert db.session.scalar(select(func.count()).select_from(Link)) == 4
    # imported records keep syncing, and an import never writes to Tryton
    outcome = sync(app, portal.id)
    assert not outcome.counts.get("to_erp") and not outcome.counts.get("to_crm")
    set_mechanism(tryton, alpha, "email", "info@alpha.example")
    sync(app, portal.id)
    with app.app_context():
        assert db.session.get(Company, a.id).email == "info@alpha.example"


def test_the_tryton_benchmark_still_runs(tryton, tmp_path):
    """A small run of bench/tryton_bench.py on the session's server, so the benchmark does not rot."""
    import io

    from bench.tryton_bench import TrytonServer, measure

    server = TrytonServer(tryton.url, tryton.database, tryton.user, tryton.password,
                          tryton.demo["categories"]["Customer"])
    out = io.StringIO()
    results = measure(server, tmp_path, 20, 8, out=out, app_config={"LOG_LEVEL": "INFO"})
    assert [r["status"] for r in results] == ["succeeded"] * 3, out.getvalue()
    assert (results[1]["records"], results[1]["to_crm"], results[1]["to_erp"]) == (8, 4, 4), out.getvalue()
    assert results[1]["problems"] == [] and results[2]["records"] == 0, out.getvalue()
    assert "| Run" in out.getvalue()

"""Connect and Create in ERP never blank a value the other side cannot hold (the "Connect blanks ERP data" bug).

A value one side holds and the other side cannot hold — a list item without a list mapping, a text too long for
the other side — is left as it is on both sides: the compare dialog says so next to the field instead of offering
"(blank)", nothing is written to either side for it, and the link's base lets the next sync carry it over when it
can but never write the other side's value (a blank) over it. Create in ERP leaves such a CRM value out of the
new actor and says so.

Set-up as in tests/integration/test_erp_tab.py: the fake connector over HTTP, its Countries list (NO, SE, DK, FI,
DE) of which only NO ↔ Norway and SE ↔ Sweden are mapped. Every dialog is driven with and without the htmx
headers.
"""

from __future__ import annotations

import html as htmllib
import re

import pytest
from sqlalchemy import select

from portal.extensions import db
from portal.models import Company, Connection, CrmList, Link
from portal.services.sync.fieldmap import crm_side, erp_side, mapped_fields, rules
from portal.services.sync.merge import merge
from tests.conftest import add_record, form_of
from tests.integration import helpers_mapping
from tests.integration.test_erp_tab import (
    CUSTOMER_MAP,
    activate,
    configure,
    define_connection,
    link_of,
    list_id,
    map_countries,
    pick_names,
    search_proof,
    set_mapping,
    text,
    url,
)

connector_id = helpers_mapping.connector  # a connector row for the fake (the ``fake`` fixtures: tests/conftest.py)

BOTH = pytest.mark.parametrize("htmx", [True, False], ids=["htmx", "plain"])


@pytest.fixture
def conn(app, admin_client, connector_id, fake):
    return configure(app, admin_client, connector_id, ask_credit=False)


def company(app, name: str = "Acme AS", country: str | None = None, **values) -> int:
    with app.app_context():
        country_id = list_id(CrmList.COUNTRY, country) if country else None
    return add_record(app, Company, name=name, email="post@acme.example", phone="+47 22 00 00 00",
                      country_id=country_id, **values)


def customer(fake, **values) -> str:
    return fake.add_actor("Customer", {"name": "Acme AS", "email": "post@acme.example", "phone": "+47 22 00 00 00",
                                       **values})


def plain(response) -> str:
    return htmllib.unescape(text(response))


def open_compare(client, record_id, connection_id, erp_key, htmx):
    response = client.get(url("company", record_id, connection_id, "/connect/Customer/compare"),
                          query_string={"erp_key": erp_key}, htmx=htmx)
    assert response.status_code == 200, text(response)
    return response


def post_connect(client, record_id, connection_id, data, htmx):
    return client.post(url("company", record_id, connection_id, "/connect/Customer"), data=data, htmx=htmx)


def saved_values(fake) -> list[dict]:
    """The FieldValues of every SaveActors entry the ERP received."""
    return [actor.get("FieldValues") or {} for body in fake.calls_to("SaveActors") for actor in body["Actors"]]


def country_of(app, record_id: int) -> str | None:
    with app.app_context():
        item = db.session.get(Company, record_id).country
        return item.name if item is not None else None


def next_merge(app, connection_id: int, record_id: int, erp_values: dict, crm_rank: int = 0, erp_rank: int = 1):
    """What the sync engine's three-way merge would plan next for this link (CRM on top of the sync priority
    unless told otherwise): the link's base against the record and the ERP values as they are now."""
    with app.app_context():
        config = db.session.get(Connection, connection_id).actor_type("Customer")
        fields = mapped_fields(config, synced_only=True)
        link = db.session.scalar(select(Link).where(Link.crm_id == record_id))
        record = db.session.get(Company, record_id)
        crm, crm_errors = crm_side(record, fields, erp_now=erp_values)
        erp, _erp_errors = erp_side(erp_values, fields)
        usable = [rule for rule in rules(fields) if rule.key not in crm_errors]  # the engine skips those fields
        return link.base, merge(usable, link.base, crm, erp, policy="priority", crm_rank=crm_rank,
                                erp_rank=erp_rank)


# ------------------------------------------------------------------------------------------- ERP -> CRM


@BOTH
def test_an_unmapped_erp_item_is_left_as_it_is_on_both_sides_and_the_dialog_says_so(app, user_client, conn, fake,
                                                                                    htmx):
    record_id = company(app)  # no country in the CRM
    erp_key = customer(fake, country="DK")  # Denmark: no list mapping
    response = open_compare(user_client, record_id, conn, erp_key, htmx)
    body = plain(response)
    assert "Country “Denmark” has no list mapping: left as it is on both sides" in body
    country_pick = pick_names(app, conn)["country"]
    assert f'name="{country_pick}"' not in body  # no choice offered for it, and certainly not "(blank)"
    assert "(blank)" not in body and "Use all CRM values" not in body

    response = post_connect(user_client, record_id, conn, form_of(text(response)), htmx)
    assert response.status_code == 200, text(response)
    assert f"Connected to Customer {erp_key}" in text(response)
    assert fake.get_actor("Customer", erp_key)["FieldValues"]["country"] == "DK"  # the ERP keeps Denmark
    assert all("country" not in values for values in saved_values(fake))  # never sent, as blank or otherwise
    assert country_of(app, record_id) is None  # the CRM is not touched either
    link = link_of(app, "company", record_id, conn)
    assert link is not None and link.base["country"] is None  # the CRM's value: Denmark is an ERP-side change

    base, planned = next_merge(app, conn, record_id, fake.get_actor("Customer", erp_key)["FieldValues"])
    assert "country" not in planned.to_erp and planned.to_crm == {"country": "DK"}  # tried (and refused) one way
    assert not planned.conflicts


@BOTH
def test_an_unmapped_erp_item_is_not_replaced_by_a_mapped_crm_value_either(app, user_client, conn, fake, htmx):
    record_id = company(app, country="Norway")
    erp_key = customer(fake, country="FI")
    response = open_compare(user_client, record_id, conn, erp_key, htmx)
    assert "Country “Finland” has no list mapping: left as it is on both sides" in plain(response)
    response = post_connect(user_client, record_id, conn, form_of(text(response)), htmx)
    assert response.status_code == 200, text(response)
    assert fake.get_actor("Customer", erp_key)["FieldValues"]["country"] == "FI"
    assert country_of(app, record_id) == "Norway"
    assert link_of(app, "company", record_id, conn).base["country"] == "NO"


def test_a_posted_pick_for_a_field_left_as_it_is_writes_nothing(app, user_client, conn, fake):
    record_id = company(app)
    erp_key = customer(fake, country="DK")
    data = form_of(text(open_compare(user_client, record_id, conn, erp_key, True)))
    data[pick_names(app, conn)["country"]] = "crm"  # a stale or hand-made form asking for the CRM's blank
    response = post_connect(user_client, record_id, conn, data, True)
    assert response.status_code == 200, text(response)
    assert fake.get_actor("Customer", erp_key)["FieldValues"]["country"] == "DK"
    assert all("country" not in values for values in saved_values(fake))


def test_a_mappable_value_may_still_be_cleared_by_choice_but_not_by_default(app, user_client, conn, fake):
    record_id = company(app)  # blank in the CRM, Norway (mapped) in the ERP
    erp_key = customer(fake, country="NO")
    html = text(open_compare(user_client, record_id, conn, erp_key, True))
    country_pick = pick_names(app, conn)["country"]
    radios = re.findall(rf'<input type="radio" name="{country_pick}"[^>]*>', html)
    assert len(radios) == 2 and not any("checked" in radio for radio in radios)  # a choice, nothing pre-picked
    data = form_of(html)
    refused = post_connect(user_client, record_id, conn, data, True)
    assert refused.status_code == 422 and "Choose the value to keep for Country" in text(refused)
    data[country_pick] = "crm"  # the user chooses the blank
    response = post_connect(user_client, record_id, conn, data, True)
    assert response.status_code == 200, text(response)
    assert fake.get_actor("Customer", erp_key)["FieldValues"]["country"] is None


# ------------------------------------------------------------------------------------------- CRM -> ERP


@BOTH
@pytest.mark.parametrize("erp_country", [None, "NO"], ids=["erp-blank", "erp-norway"])
def test_an_unmapped_crm_item_is_left_as_it_is_on_both_sides(app, user_client, conn, fake, htmx, erp_country):
    record_id = company(app, country="Germany")  # no list mapping for the CRM's Germany
    erp_key = customer(fake, country=erp_country)
    response = open_compare(user_client, record_id, conn, erp_key, htmx)
    body = plain(response)
    assert "Country “Germany” has no list mapping: left as it is on both sides" in body
    assert f'name="{pick_names(app, conn)["country"]}"' not in body
    response = post_connect(user_client, record_id, conn, form_of(text(response)), htmx)
    assert response.status_code == 200, text(response)
    assert country_of(app, record_id) == "Germany"  # the CRM keeps Germany
    assert fake.get_actor("Customer", erp_key)["FieldValues"]["country"] == erp_country  # the ERP is untouched
    assert all("country" not in values for values in saved_values(fake))
    assert link_of(app, "company", record_id, conn).base["country"] == erp_country  # the ERP's value

    # Once the CRM holds a mappable value again, it flows to the ERP as a CRM edit (no conflict, nothing lost).
    with app.app_context():
        db.session.get(Company, record_id).country_id = list_id(CrmList.COUNTRY, "Sweden")
        db.session.commit()
    _base, planned = next_merge(app, conn, record_id, fake.get_actor("Customer", erp_key)["FieldValues"],
                                crm_rank=1, erp_rank=0)
    assert planned.to_erp == {"country": "SE"} and not planned.conflicts


@BOTH
def test_a_crm_text_too_long_for_the_erp_is_not_blanked_by_the_erps_blank(app, user_client, conn, fake, htmx):
    long_number = "NO 912 345 678 MVA-ACME-1"  # 25 characters; the ERP's organisation number holds 20
    record_id = company(app, country="Norway", vat_no=long_number)
    erp_key = customer(fake, country="NO")  # no organisation number in the ERP
    response = open_compare(user_client, record_id, conn, erp_key, htmx)
    body = plain(response)
    assert f"Organisation number “{long_number}” cannot be stored in the ERP" in body
    assert "left as it is on both sides" in body
    response = post_connect(user_client, record_id, conn, form_of(text(response)), htmx)
    assert response.status_code == 200, text(response)
    with app.app_context():
        assert db.session.get(Company, record_id).vat_no == long_number
    assert fake.get_actor("Customer", erp_key)["FieldValues"].get("orgnr") is None
    assert not saved_values(fake)
    assert link_of(app, "company", record_id, conn).base["orgnr"] is None  # the ERP's value


# ------------------------------------------------------------------------------------------- create in ERP


@BOTH
def test_create_leaves_an_unmapped_crm_item_out_of_the_new_actor_and_says_so(app, user_client, conn, fake, htmx):
    record_id = company(app, "Dansk Handel AS", country="Germany")
    proof = search_proof(user_client, "company", record_id, conn, nonce="c" * 24)  # Create comes after a search
    dialog = user_client.get(url("company", record_id, conn, "/create/Customer"),
                             query_string={"nonce": "c" * 24, "proof": proof}, htmx=htmx)
    body = plain(dialog)
    assert dialog.status_code == 200
    assert "Country “Germany” has no list mapping: left out of the new Customer; the CRM keeps it." in body
    assert re.search(r'<button type="submit"\s*>Create</button>', text(dialog))  # not disabled

    response = user_client.post(url("company", record_id, conn, "/create/Customer"), data=form_of(text(dialog)),
                                htmx=htmx)
    assert response.status_code == 200, text(response)
    [sent] = fake.calls_to("CreateActor")
    assert "country" not in sent["Actor"]["FieldValues"]  # left out, not sent as a blank
    created = fake.get_actor("Customer", fake.service.created[0]["ErpKey"])
    assert created["FieldValues"].get("country") is None and created["FieldValues"]["name"] == "Dansk Handel AS"
    assert country_of(app, record_id) == "Germany"  # the CRM keeps it
    link = link_of(app, "company", record_id, conn)
    assert link is not None and "country" in link.base and link.base["country"] is None  # the ERP's value


def test_create_with_an_asked_mapped_field_never_blanks_the_crms_unmapped_item(app, admin_client, user_client,
                                                                                connector_id, fake):
    cid = define_connection(admin_client, connector_id, "Asks the country")
    with app.app_context():
        set_mapping(cid, "Customer", CUSTOMER_MAP, country={"ask_user": True})
        set_mapping(cid, "Person", {}, active=False)
        set_mapping(cid, "Supplier", {}, active=False)
        set_mapping(cid, "Project", {}, active=False)
        map_countries(cid)
        db.session.commit()
        activate(cid)
    record_id = company(app, "Dansk Handel AS", country="Germany")
    proof = search_proof(user_client, "company", record_id, cid, nonce="d" * 24)  # Create comes after a search
    dialog = user_client.get(url("company", record_id, cid, "/create/Customer"),
                             query_string={"nonce": "d" * 24, "proof": proof}, htmx=True)
    assert "Country “Germany” has no list mapping: the new Customer gets the value you enter below; the CRM keeps " \
           "it." in plain(dialog)
    response = user_client.post(url("company", record_id, cid, "/create/Customer"), data=form_of(text(dialog)),
                                htmx=True)  # the country answer left blank
    assert response.status_code == 200, text(response)
    assert country_of(app, record_id) == "Germany"


@BOTH
def test_connect_leaves_an_erp_value_the_crm_refuses_as_it_is_and_says_so(app, user_client, conn, fake, htmx):
    """The CRM's own rules (crm_rules) apply to Connect as to the forms, the import and the sync."""
    record_id = company(app)  # e-mail post@acme.example
    erp_key = customer(fake, email="post10@erp")
    response = open_compare(user_client, record_id, conn, erp_key, htmx)
    body = plain(response)
    assert "post10@erp" in body and "not a valid e-mail address" in body and "left as it is on both sides" in body
    response = post_connect(user_client, record_id, conn, form_of(text(response)), htmx)
    assert response.status_code == 200, text(response)
    with app.app_context():
        assert db.session.get(Company, record_id).email == "post@acme.example"
    assert fake.get_actor("Customer", erp_key)["FieldValues"]["email"] == "post10@erp"
    assert all("email" not in values for values in saved_values(fake))

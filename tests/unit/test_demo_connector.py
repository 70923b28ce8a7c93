"""The built-in Demo ERP connector, through ``service.handle(method, body)`` with JSON round trips."""

from __future__ import annotations

import json
import re
import threading
import uuid
from datetime import date

import pytest
import requests
from flask import Flask
from werkzeug.serving import make_server

from portal.connectors.builtin.demo import (
    FIELDS,
    SEARCHABLE_FIELDS,
    DemoErpConnector,
    DemoErpValidationError,
    format_timestamp,
    parse_timestamp,
)
from portal.connectors.builtin.demo import storage as demo_storage
from portal.connectors.protocol import ZERO_GUID
from portal.connectors.service import make_wsgi_app
from portal.demo_erp.cli import demo_erp_group

GUID = "6f1c2a9e-4b7d-4c1e-9a55-0d2f3b4c5d6e"
STAMP_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")
GUID_METHODS = ("TestConnection", "DeleteConnection", "GetSupportedActorTypes", "GetSupportedActorTypeFields",
                "GetSearchableFields", "GetActors", "SearchActors", "SearchActorByParent", "SearchActorsAdvanced",
                "CreateActor", "SaveActors", "GetList", "GetListItems", "GetActorsByTimestamp")


@pytest.fixture
def erp(tmp_path):
    return DemoErpConnector(tmp_path / "demo_erp.db")


def call(service: DemoErpConnector, method: str, body: dict | None = None) -> dict:
    """What an HTTP client would see: the body and the answer both travel as JSON."""
    answer = service.handle(method, json.loads(json.dumps(body or {})))
    return json.loads(json.dumps(answer))


def ok(service: DemoErpConnector, method: str, body: dict | None = None) -> dict:
    answer = call(service, method, body)
    assert answer["IsOk"] is True and answer["State"] == "Ok", answer
    return answer


@pytest.fixture
def guid(erp):
    ok(erp, "SaveConnection", {"ConnectionGuid": GUID, "ConnectionInfo": {"CompanyDb": "DEMO", "Currency": "EUR"}})
    return GUID


def all_actors(erp, actor_type: str) -> list[dict]:
    return ok(erp, "SearchActors", {"ConnectionGuid": GUID, "ActorType": actor_type, "SearchText": ""})["Actors"]


def get_one(erp, actor_type: str, key: str, field_keys: list[str] | None = None) -> dict | None:
    actors = ok(erp, "GetActors", {"ConnectionGuid": GUID, "ActorType": actor_type, "ErpKeys": [key],
                                   "FieldKeys": field_keys or []})["Actors"]
    return actors[0] if actors else None


# -- configuration and connections ------------------------------------------------------------------------------


def test_get_config_data_describes_the_connection_fields(erp):
    fields = {f["FieldKey"]: f for f in ok(erp, "GetConfigData")["FieldMetaDataObjects"]}
    assert fields["CompanyDb"]["Access"] == "Mandatory" and fields["CompanyDb"]["DefaultValue"] == "DEMO"
    assert fields["ApiUser"]["FieldType"] == "Text"
    assert fields["ApiPassword"]["FieldType"] == "Password"
    assert (fields["Currency"]["FieldType"], fields["Currency"]["ListName"]) == ("List", "currencies")
    assert fields["Currency"]["DefaultValue"] == "EUR"
    assert fields["SimulateOffline"]["FieldType"] == "Checkbox"
    assert any(f["FieldType"] == "Label" and f["DefaultValue"] for f in fields.values())
    ranks = [f["Rank"] for f in fields.values()]
    assert ranks == sorted(ranks)


@pytest.mark.parametrize("method", GUID_METHODS)
def test_unknown_connection_guid_answers_unknown_connection_id(erp, guid, method):
    body = {"ConnectionGuid": str(uuid.uuid4()), "ActorType": "Customer", "ErpKeys": ["C10001"], "FieldKeys": [],
            "SearchText": "", "ParentActorType": "Customer", "ParentErpKey": "C10001", "Restrictions": [],
            "Actor": {"ActorType": "Customer", "FieldValues": {"NAME": "X"}}, "Actors": [], "ListName": "countries",
            "ListItemKeys": ["NO"], "UpdatedOnOrAfter": ""}
    answer = call(erp, method, body)
    assert answer["IsOk"] is False and answer["State"] == "Error"
    assert answer["ErrorCode"] == "UNKNOWN_CONNECTION_ID"
    assert answer["UserExplanation"]


def test_zero_guid_may_look_up_lists_but_nothing_else(erp):
    countries = ok(erp, "GetList", {"ConnectionGuid": ZERO_GUID, "ListName": "countries"})["ListItems"]
    assert countries["NO"] == "Norway" and len(countries) >= 30
    items = ok(erp, "GetListItems", {"ConnectionGuid": ZERO_GUID, "ListName": "currencies",
                                     "ListItemKeys": ["EUR", "XXX", "NOK"]})["ListItems"]
    assert items == {"EUR": "Euro", "NOK": "Norwegian krone"}
    answer = call(erp, "GetActors", {"ConnectionGuid": ZERO_GUID, "ActorType": "Customer", "ErpKeys": ["C10001"]})
    assert answer["ErrorCode"] == "UNKNOWN_CONNECTION_ID"


def test_test_config_data_checks_company_and_password(erp):
    assert ok(erp, "TestConfigData", {"ConnectionInfo": {"CompanyDb": "DEMO"}})["UserExplanation"]
    ok(erp, "TestConfigData", {"ConnectionInfo": {"CompanyDb": "DEMO", "ApiUser": "sync", "ApiPassword": "demo"}})

    wrong = call(erp, "TestConfigData", {"ConnectionInfo": {"CompanyDb": "DEMO", "ApiUser": "sync",
                                                            "ApiPassword": "letmein"}})
    assert wrong["IsOk"] is False and wrong["State"] == "Error"
    assert "password" in wrong["UserExplanation"].lower() and "sync" in wrong["UserExplanation"]

    missing = call(erp, "TestConfigData", {"ConnectionInfo": {"CompanyDb": "  "}})
    assert missing["IsOk"] is False and "Company database" in missing["UserExplanation"]
    assert call(erp, "TestConfigData", {"ConnectionInfo": {"CompanyDb": "D", "Currency": "XYZ"}})["IsOk"] is False


def test_connection_lifecycle_save_test_delete(erp):
    other = str(uuid.uuid4())
    ok(erp, "SaveConnection", {"ConnectionGuid": other.upper(), "ConnectionInfo": {"CompanyDb": "DEMO"}})
    ok(erp, "TestConnection", {"ConnectionGuid": other})
    # Saving again replaces the config: now the stored password is wrong.
    ok(erp, "SaveConnection", {"ConnectionGuid": other, "ConnectionInfo": {"CompanyDb": "DEMO", "ApiUser": "u",
                                                                           "ApiPassword": "nope"}})
    failed = call(erp, "TestConnection", {"ConnectionGuid": other})
    assert failed["IsOk"] is False and failed["ErrorCode"] == "AUTHENTICATION_FAILED"
    ok(erp, "DeleteConnection", {"ConnectionGuid": other})
    assert call(erp, "TestConnection", {"ConnectionGuid": other})["ErrorCode"] == "UNKNOWN_CONNECTION_ID"
    assert call(erp, "SaveConnection", {"ConnectionGuid": ZERO_GUID, "ConnectionInfo": {}})["IsOk"] is False
    assert call(erp, "SaveConnection", {"ConnectionGuid": "not-a-guid", "ConnectionInfo": {}})["IsOk"] is False


def test_simulate_offline_answers_warning_with_data(erp):
    ok(erp, "SaveConnection", {"ConnectionGuid": GUID, "ConnectionInfo": {"CompanyDb": "DEMO",
                                                                          "SimulateOffline": True}})
    answer = call(erp, "GetActors", {"ConnectionGuid": GUID, "ActorType": "Customer", "ErpKeys": ["C10001"]})
    assert answer["IsOk"] is True and answer["State"] == "Warning"
    assert answer["UserExplanation"] == "ERP is offline, showing cached data"
    assert [a["ErpKey"] for a in answer["Actors"]] == ["C10001"]
    assert call(erp, "TestConnection", {"ConnectionGuid": GUID})["State"] == "Warning"
    # A string "true" from a form works too; turning it off gives clean answers again.
    ok(erp, "SaveConnection", {"ConnectionGuid": GUID, "ConnectionInfo": {"CompanyDb": "DEMO",
                                                                          "SimulateOffline": "false"}})
    ok(erp, "GetSupportedActorTypes", {"ConnectionGuid": GUID})


# -- catalogue and lists -----------------------------------------------------------------------------------------


def test_actor_types_fields_and_searchable_fields(erp, guid):
    types = ok(erp, "GetSupportedActorTypes", {"ConnectionGuid": guid})["Items"]
    assert types == ["Customer", "Supplier", "Person", "Project"]
    for actor_type in types:
        fields = ok(erp, "GetSupportedActorTypeFields", {"ConnectionGuid": guid, "ActorType": actor_type})
        by_key = {f["FieldKey"]: f for f in fields["FieldMetaDataObjects"]}
        searchable = ok(erp, "GetSearchableFields", {"ConnectionGuid": guid, "ActorType": actor_type})["Items"]
        assert searchable and set(searchable) <= set(by_key)
        for meta in by_key.values():
            assert meta["FieldType"] in ("Text", "Integer", "Double", "Checkbox", "List", "Date")
            assert meta["FieldType"] != "List" or meta["ListName"]
    customer = {f["FieldKey"]: f for f in FIELDS["Customer"]}
    assert customer["NAME"]["Access"] == "Mandatory" and customer["NAME"]["MaxLength"] == 100
    assert customer["NUMBER1"]["Access"] == "ReadOnly"
    assert {"POSTALAD1", "POSTALZIP", "POSTALCITY", "STREETAD1", "VATNO", "COUNTRY", "URL"} <= set(customer)
    assert {customer[k]["FieldType"] for k in SEARCHABLE_FIELDS["Customer"]} == {
        "Text", "Integer", "Double", "Checkbox", "List", "Date"}
    assert "CUSTOMERGROUP" not in {f["FieldKey"] for f in FIELDS["Supplier"]}
    person = {f["FieldKey"]: f for f in FIELDS["Person"]}
    assert person["FIRSTNAME"]["Access"] == person["LASTNAME"]["Access"] == "Mandatory"
    assert person["BIRTHDATE"]["FieldType"] == "Date"
    project = {f["FieldKey"]: f for f in FIELDS["Project"]}
    assert project["NUMBER"]["Access"] == "ReadOnly" and project["STATUS"]["ListName"] == "projectstatus"
    partner = call(erp, "GetSupportedActorTypeFields", {"ConnectionGuid": guid, "ActorType": "Partner"})
    assert partner["IsOk"] is False and "Partner" in partner["UserExplanation"]


def test_lists(erp, guid):
    for name, expected in (("currencies", {"EUR", "USD", "GBP", "NOK", "SEK", "DKK", "CHF"}),
                           ("paymentterms", {"NET14", "NET30", "NET60", "PREPAID"}),
                           ("customergroups", {"RETAIL", "WHOLESALE", "PUBLIC", "PARTNER"}),
                           ("projectstatus", {"PLANNED", "ACTIVE", "ONHOLD", "DONE"})):
        items = ok(erp, "GetList", {"ConnectionGuid": guid, "ListName": name})["ListItems"]
        assert expected <= set(items) and all(items.values())
    unknown = call(erp, "GetList", {"ConnectionGuid": guid, "ListName": "planets"})
    assert unknown["IsOk"] is False and "planets" in unknown["UserExplanation"]


# -- seed --------------------------------------------------------------------------------------------------------


def test_seed_has_realistic_companies_people_and_projects(erp, guid):
    customers, suppliers = all_actors(erp, "Customer"), all_actors(erp, "Supplier")
    persons, projects = all_actors(erp, "Person"), all_actors(erp, "Project")
    assert (len(customers), len(suppliers), len(persons), len(projects)) >= (40, 20, 80, 20)
    assert len(customers) >= 40 and len(suppliers) >= 20 and len(persons) >= 80 and len(projects) >= 20
    companies = {a["ErpKey"]: a["ActorType"] for a in customers + suppliers}
    for person in persons:
        assert companies[person["ParentErpKey"]] == person["ParentActorType"]
        assert "@" in person["FieldValues"]["EMAIL"]
    assert len({c["FieldValues"]["COUNTRY"] for c in customers}) >= 8
    assert len({c["FieldValues"]["NAME"] for c in customers + suppliers}) == len(companies)
    for customer in customers:
        values = customer["FieldValues"]
        assert values["NAME"] and values["NUMBER1"] and values["PHONE"].startswith("+")
        assert values["CURRENCY"] and isinstance(values["BLOCKED"], bool)
        assert isinstance(values["CREDITLIMIT"], float) and isinstance(values["EMPLOYEES"], int)
    assert all(p["FieldValues"]["NUMBER"] and p["FieldValues"]["STATUS"] for p in projects)
    keys = [a["ErpKey"] for a in customers + suppliers + persons + projects]
    assert len(keys) == len(set(keys)) and "C10001" in keys and "PR40001" in keys


def test_seed_is_deterministic(tmp_path):
    first, second = DemoErpConnector(tmp_path / "a.db"), DemoErpConnector(tmp_path / "b.db")
    assert first.get_actor("Customer", "C10001")["FieldValues"] == second.get_actor("Customer", "C10001")["FieldValues"]
    assert first.get_actor("Person", "P30080")["FieldValues"] == second.get_actor("Person", "P30080")["FieldValues"]


# -- reading -----------------------------------------------------------------------------------------------------


def test_get_actors_returns_requested_fields_and_leaves_out_unknown_and_deleted(erp, guid):
    assert erp.delete_actor("Customer", "C10003") is True
    answer = ok(erp, "GetActors", {"ConnectionGuid": guid, "ActorType": "Customer",
                                   "ErpKeys": ["C10002", "C99999", "C10003", "S20001", "C10001", "C10002"],
                                   "FieldKeys": ["NAME", "NOT_A_FIELD", "BLOCKED"]})
    assert [a["ErpKey"] for a in answer["Actors"]] == ["C10002", "C10001"]
    actor = answer["Actors"][0]
    assert set(actor["FieldValues"]) == {"NAME", "BLOCKED"}
    assert actor["ActorType"] == "Customer" and STAMP_RE.match(actor["LastModified"])
    assert actor["ParentErpKey"] == ""
    everything = get_one(erp, "Customer", "C10001")
    assert set(everything["FieldValues"]) == {f["FieldKey"] for f in FIELDS["Customer"]}


def test_search_actors_blank_lists_all_and_text_matches_case_insensitively(erp, guid):
    customers = all_actors(erp, "Customer")
    name = customers[5]["FieldValues"]["NAME"]
    word = name.split()[0]
    found = ok(erp, "SearchActors", {"ConnectionGuid": guid, "ActorType": "Customer", "SearchText": word.upper(),
                                     "FieldKeys": ["NAME"]})["Actors"]
    expected = {c["ErpKey"] for c in customers if word.casefold() in c["FieldValues"]["NAME"].casefold()}
    assert {a["ErpKey"] for a in found} == expected and customers[5]["ErpKey"] in expected
    by_number = ok(erp, "SearchActors", {"ConnectionGuid": guid, "ActorType": "Customer",
                                         "SearchText": customers[0]["FieldValues"]["NUMBER1"]})["Actors"]
    assert customers[0]["ErpKey"] in {a["ErpKey"] for a in by_number}
    limited = ok(erp, "SearchActors", {"ConnectionGuid": guid, "ActorType": "Customer", "SearchText": "",
                                       "Limit": 7})["Actors"]
    assert len(limited) == 7
    person = all_actors(erp, "Person")[0]["FieldValues"]
    full_name = f"{person['FIRSTNAME']} {person['LASTNAME']}".lower()
    people = ok(erp, "SearchActors", {"ConnectionGuid": guid, "ActorType": "Person", "SearchText": full_name})
    assert people["Actors"]


def test_search_actor_by_parent_lists_the_persons_of_a_company(erp, guid):
    persons = all_actors(erp, "Person")
    parent = persons[0]["ParentErpKey"]
    expected = {p["ErpKey"] for p in persons if p["ParentErpKey"] == parent}
    answer = ok(erp, "SearchActorByParent", {"ConnectionGuid": guid, "ActorType": "Person", "SearchText": "",
                                             "ParentActorType": persons[0]["ParentActorType"],
                                             "ParentErpKey": parent, "FieldKeys": ["FIRSTNAME"]})
    assert {a["ErpKey"] for a in answer["Actors"]} == expected
    first = persons[0]["FieldValues"]["FIRSTNAME"]
    narrowed = ok(erp, "SearchActorByParent", {"ConnectionGuid": guid, "ActorType": "Person", "SearchText": first,
                                               "ParentActorType": "", "ParentErpKey": parent})["Actors"]
    assert persons[0]["ErpKey"] in {a["ErpKey"] for a in narrowed}
    none = ok(erp, "SearchActorByParent", {"ConnectionGuid": guid, "ActorType": "Person", "SearchText": "",
                                           "ParentActorType": "Customer", "ParentErpKey": "C99999"})
    assert none["Actors"] == []


# -- advanced search ---------------------------------------------------------------------------------------------


def _text(v):
    return (v or "").casefold()


def _advanced_cases(customers, persons):
    """(actor type, restrictions, predicate over (actor, values)) with predicates written independently."""
    name = customers[3]["FieldValues"]["NAME"]
    some_person = persons[0]
    return [
        ("Customer", [("NAME", "=", [name.upper()])], lambda a, v: _text(v["NAME"]) == name.casefold()),
        ("Customer", [("NAME", "isnot", [name])], lambda a, v: _text(v["NAME"]) != name.casefold()),
        ("Customer", [("NAME", "begins", ["m"])], lambda a, v: _text(v["NAME"]).startswith("m")),
        ("Customer", [("NAME", "contains", ["AS"])], lambda a, v: "as" in _text(v["NAME"])),
        ("Customer", [("NAME", "ends", ["GMBH"])], lambda a, v: _text(v["NAME"]).endswith("gmbh")),
        ("Customer", [("NAME", "notbegins", ["m"])], lambda a, v: not _text(v["NAME"]).startswith("m")),
        ("Customer", [("NAME", "notcontains", ["as"])], lambda a, v: "as" not in _text(v["NAME"])),
        ("Customer", [("NAME", "notends", ["ltd"])], lambda a, v: not _text(v["NAME"]).endswith("ltd")),
        ("Customer", [("NAME", "between", ["b", "h"])], lambda a, v: "b" <= _text(v["NAME"]) <= "h"),
        ("Customer", [("EMPLOYEES", "=", [48])], lambda a, v: v["EMPLOYEES"] == 48),
        ("Customer", [("EMPLOYEES", ">", [100])], lambda a, v: v["EMPLOYEES"] > 100),
        ("Customer", [("EMPLOYEES", "<", [100])], lambda a, v: v["EMPLOYEES"] < 100),
        ("Customer", [("EMPLOYEES", ">=", ["150"])], lambda a, v: v["EMPLOYEES"] >= 150),
        ("Customer", [("EMPLOYEES", "<=", [25])], lambda a, v: v["EMPLOYEES"] <= 25),
        ("Customer", [("EMPLOYEES", "!=", [48])], lambda a, v: v["EMPLOYEES"] != 48),
        ("Customer", [("EMPLOYEES", "between", [150, 25])], lambda a, v: 25 <= v["EMPLOYEES"] <= 150),
        ("Customer", [("CREDITLIMIT", ">", [10000.5])], lambda a, v: v["CREDITLIMIT"] > 10000.5),
        ("Customer", [("CREDITLIMIT", "between", [5000, 50000])], lambda a, v: 5000 <= v["CREDITLIMIT"] <= 50000),
        ("Customer", [("BLOCKED", "=", [True])], lambda a, v: v["BLOCKED"] is True),
        ("Customer", [("BLOCKED", "=", ["false"])], lambda a, v: v["BLOCKED"] is False),
        ("Customer", [("COUNTRY", "oneof", ["NO", "SE", "DK"])], lambda a, v: v["COUNTRY"] in ("NO", "SE", "DK")),
        ("Customer", [("COUNTRY", "notoneof", ["NO", "SE"])], lambda a, v: v["COUNTRY"] not in ("NO", "SE")),
        ("Customer", [("LASTINVOICEDATE", "=", [customers[0]["FieldValues"]["LASTINVOICEDATE"]])],
         lambda a, v: v["LASTINVOICEDATE"] == customers[0]["FieldValues"]["LASTINVOICEDATE"]),
        ("Customer", [("LASTINVOICEDATE", "before", ["2026-06-01"])],
         lambda a, v: v["LASTINVOICEDATE"] is not None and v["LASTINVOICEDATE"] < "2026-06-01"),
        ("Customer", [("LASTINVOICEDATE", "after", ["2026-06-01T12:00:00Z"])],
         lambda a, v: v["LASTINVOICEDATE"] is not None and v["LASTINVOICEDATE"] > "2026-06-01"),
        ("Customer", [("LASTINVOICEDATE", "beforeOrEqual", ["2026-03-15"])],
         lambda a, v: v["LASTINVOICEDATE"] is not None and v["LASTINVOICEDATE"] <= "2026-03-15"),
        ("Customer", [("LASTINVOICEDATE", "afterOrEqual", ["2026-03-15"])],
         lambda a, v: v["LASTINVOICEDATE"] is not None and v["LASTINVOICEDATE"] >= "2026-03-15"),
        ("Customer", [("LASTINVOICEDATE", "between", ["2026-01-01", "2026-08-31"])],
         lambda a, v: v["LASTINVOICEDATE"] is not None and "2026-01-01" <= v["LASTINVOICEDATE"] <= "2026-08-31"),
        ("Customer", [("COUNTRY", "oneof", ["DE", "NL", "FR", "GB"]), ("BLOCKED", "=", [False]),
                      ("CREDITLIMIT", ">=", [10000])],
         lambda a, v: v["COUNTRY"] in ("DE", "NL", "FR", "GB") and not v["BLOCKED"] and v["CREDITLIMIT"] >= 10000),
        ("Person", [("ParentErpKey", "=", [some_person["ParentErpKey"]])],
         lambda a, v: a["ParentErpKey"] == some_person["ParentErpKey"]),
        ("Person", [("ParentActorType", "=", ["supplier"])], lambda a, v: a["ParentActorType"] == "Supplier"),
        ("Person", [("ParentErpKey", "oneof", ["C10001", "C10002", "S20001"])],
         lambda a, v: a["ParentErpKey"] in ("C10001", "C10002", "S20001")),
        ("Person", [("BIRTHDATE", "before", ["1975-01-01"])],
         lambda a, v: v["BIRTHDATE"] is not None and v["BIRTHDATE"] < "1975-01-01"),
    ]


def test_search_actors_advanced_supports_every_operator(erp, guid):
    customers, persons = all_actors(erp, "Customer"), all_actors(erp, "Person")
    population = {"Customer": customers, "Person": persons}
    for actor_type, restrictions, predicate in _advanced_cases(customers, persons):
        body = {"ConnectionGuid": guid, "ActorType": actor_type, "FieldKeys": ["NAME"],
                "Restrictions": [{"FieldKey": k, "Operator": op, "Values": values} for k, op, values in restrictions]}
        found = {a["ErpKey"] for a in ok(erp, "SearchActorsAdvanced", body)["Actors"]}
        expected = {a["ErpKey"] for a in population[actor_type] if predicate(a, a["FieldValues"])}
        assert found == expected, restrictions
        assert 0 < len(expected) < len(population[actor_type]), f"weak case {restrictions}"


def test_search_actors_advanced_explains_bad_restrictions(erp, guid):
    def search(*restrictions):
        return call(erp, "SearchActorsAdvanced", {
            "ConnectionGuid": guid, "ActorType": "Customer",
            "Restrictions": [{"FieldKey": k, "Operator": op, "Values": v} for k, op, v in restrictions]})

    unknown = search(("SHOE_SIZE", "=", ["42"]))
    assert unknown["IsOk"] is False and "SHOE_SIZE" in unknown["UserExplanation"]
    wrong_op = search(("BLOCKED", ">", [True]))
    assert wrong_op["IsOk"] is False and "BLOCKED" in wrong_op["UserExplanation"]
    assert search(("EMPLOYEES", "between", [1]))["IsOk"] is False
    assert search(("EMPLOYEES", "=", ["many"]))["IsOk"] is False
    assert search(("LASTINVOICEDATE", "after", ["yesterday"]))["IsOk"] is False
    everything = ok(erp, "SearchActorsAdvanced", {"ConnectionGuid": guid, "ActorType": "Customer",
                                                  "Restrictions": []})["Actors"]
    assert len(everything) == len(all_actors(erp, "Customer"))


# -- creating ----------------------------------------------------------------------------------------------------


def test_create_actor_assigns_key_number_and_ignores_read_only(erp, guid):
    answer = ok(erp, "CreateActor", {"ConnectionGuid": guid, "Actor": {
        "ActorType": "Customer",
        "FieldValues": {"NAME": "Ny Kunde AS", "NUMBER1": "HACK", "BALANCE": 1e9, "COUNTRY": "NO",
                        "CREDITLIMIT": 2500, "BLOCKED": False, "EMPLOYEES": 12.0, "SHOE_SIZE": 44,
                        "LASTINVOICEDATE": "2020-01-01"}}})
    actor = answer["Actor"]
    assert actor["ErpKey"].startswith("C") and STAMP_RE.match(actor["LastModified"])
    values = actor["FieldValues"]
    assert values["NUMBER1"] == actor["ErpKey"][1:] and values["BALANCE"] is None
    assert values["LASTINVOICEDATE"] is None and "SHOE_SIZE" not in values
    assert values["CREDITLIMIT"] == 2500.0 and values["EMPLOYEES"] == 12
    assert get_one(erp, "Customer", actor["ErpKey"])["FieldValues"] == values
    project = ok(erp, "CreateActor", {"ConnectionGuid": guid, "Actor": {
        "ActorType": "Project", "FieldValues": {"NAME": "Pilot", "ENDDATE": "2027-01-31T00:00:00Z",
                                                "STATUS": "PLANNED"}}})["Actor"]
    assert project["ErpKey"].startswith("PR") and project["FieldValues"]["NUMBER"]
    assert project["FieldValues"]["ENDDATE"] == "2027-01-31"


@pytest.mark.parametrize("values, fragment", [
    ({"COUNTRY": "NO"}, "Name"),
    ({"NAME": "   "}, "Name"),
    ({"NAME": "x" * 101}, "100"),
    ({"NAME": "A", "CREDITLIMIT": "lots"}, "CREDITLIMIT"),
    ({"NAME": "A", "EMPLOYEES": 1.5}, "EMPLOYEES"),
    ({"NAME": "A", "BLOCKED": "maybe"}, "BLOCKED"),
    ({"NAME": "A", "COUNTRY": "XX"}, "XX"),
    ({"NAME": "A", "CUSTOMERGROUP": 7}, "CUSTOMERGROUP"),
    ({"NAME": ["A"]}, "NAME"),
])
def test_create_actor_validates(erp, guid, values, fragment):
    before = len(all_actors(erp, "Customer"))
    answer = call(erp, "CreateActor", {"ConnectionGuid": guid, "Actor": {"ActorType": "Customer",
                                                                         "FieldValues": values}})
    assert answer["IsOk"] is False and fragment in answer["UserExplanation"]
    assert len(all_actors(erp, "Customer")) == before


def test_create_person_needs_an_existing_company_parent(erp, guid):
    person = {"ActorType": "Person", "FieldValues": {"FIRSTNAME": "Kari", "LASTNAME": "Nordmann",
                                                     "BIRTHDATE": "1980-02-29"}}
    assert call(erp, "CreateActor", {"ConnectionGuid": guid, "Actor": person})["IsOk"] is False
    for bad in ("PR40001", "C99999"):
        answer = call(erp, "CreateActor", {"ConnectionGuid": guid, "Actor": {**person, "ParentErpKey": bad}})
        assert answer["IsOk"] is False and bad in answer["UserExplanation"]
    mismatch = call(erp, "CreateActor", {"ConnectionGuid": guid, "Actor": {
        **person, "ParentErpKey": "C10001", "ParentActorType": "Supplier"}})
    assert mismatch["IsOk"] is False
    created = ok(erp, "CreateActor", {"ConnectionGuid": guid, "Actor": {**person, "ParentErpKey": "S20002"}})
    assert (created["Actor"]["ParentActorType"], created["Actor"]["ParentErpKey"]) == ("Supplier", "S20002")
    assert created["Actor"]["FieldValues"]["BIRTHDATE"] == "1980-02-29"


def test_create_actor_is_idempotent_per_key(erp, guid):
    body = {"ConnectionGuid": guid, "IdempotencyKey": "run-7/company-12",
            "Actor": {"ActorType": "Customer", "FieldValues": {"NAME": "Once Only Ltd"}}}
    before = len(all_actors(erp, "Customer"))
    first = ok(erp, "CreateActor", body)["Actor"]
    again = ok(erp, "CreateActor", {**body, "Actor": {"ActorType": "Customer",
                                                       "FieldValues": {"NAME": "Changed Name"}}})["Actor"]
    assert again == first
    assert len(all_actors(erp, "Customer")) == before + 1
    other = ok(erp, "CreateActor", {**body, "IdempotencyKey": "another"})["Actor"]
    assert other["ErpKey"] != first["ErpKey"]
    clash = call(erp, "CreateActor", {**body, "Actor": {"ActorType": "Project", "FieldValues": {"NAME": "P"}}})
    assert clash["IsOk"] is False


# -- saving ------------------------------------------------------------------------------------------------------


def test_save_actors_updates_and_answers_actors_as_stored(erp, guid):
    before = get_one(erp, "Customer", "C10001")
    saved = ok(erp, "SaveActors", {"ConnectionGuid": guid, "Actors": [{
        "ActorType": "Customer", "ErpKey": "C10001",
        "FieldValues": {"PHONE": "+47 22 00 00 00", "NUMBER1": "HACK", "BALANCE": 0, "BLOCKED": True,
                        "UNKNOWN": "x"}}]})["Actors"]
    assert len(saved) == 1
    after = saved[0]
    assert after["FieldValues"]["PHONE"] == "+47 22 00 00 00" and after["FieldValues"]["BLOCKED"] is True
    assert after["FieldValues"]["NUMBER1"] == before["FieldValues"]["NUMBER1"]
    assert after["FieldValues"]["BALANCE"] == before["FieldValues"]["BALANCE"]
    assert after["FieldValues"]["NAME"] == before["FieldValues"]["NAME"]  # fields not sent are kept
    assert after["LastModified"] > before["LastModified"]
    assert get_one(erp, "Customer", "C10001") == after


def test_save_actors_is_all_or_nothing(erp, guid):
    keys = ["C10001", "C10002", "C10003"]
    before = {k: get_one(erp, "Customer", k) for k in keys}
    actors = [{"ActorType": "Customer", "ErpKey": "C10001", "FieldValues": {"NAME": "Renamed One"}},
              {"ActorType": "Customer", "ErpKey": "C10002", "FieldValues": {"NAME": ""}},
              {"ActorType": "Customer", "ErpKey": "C10003", "FieldValues": {"NAME": "Renamed Three"}}]
    invalid = call(erp, "SaveActors", {"ConnectionGuid": guid, "Actors": actors})
    assert invalid["IsOk"] is False and "C10002" in invalid["UserExplanation"]
    unknown = call(erp, "SaveActors", {"ConnectionGuid": guid, "Actors": [
        actors[0], {"ActorType": "Customer", "ErpKey": "C77777", "FieldValues": {"NAME": "Ghost"}}]})
    assert unknown["IsOk"] is False and "C77777" in unknown["UserExplanation"]
    wrong_type = call(erp, "SaveActors", {"ConnectionGuid": guid, "Actors": [
        {"ActorType": "Supplier", "ErpKey": "C10001", "FieldValues": {"NAME": "X"}}]})
    assert wrong_type["IsOk"] is False
    assert {k: get_one(erp, "Customer", k) for k in keys} == before


def test_save_actors_writes_a_thousand_actors_in_one_call(erp, guid):
    keys = erp.bulk_create("Supplier", [{"NAME": f"Bulk Supplier {i}", "COUNTRY": "SE"} for i in range(1000)])
    actors = [{"ActorType": "Supplier", "ErpKey": k, "FieldValues": {"CREDITLIMIT": i}} for i, k in enumerate(keys)]
    saved = ok(erp, "SaveActors", {"ConnectionGuid": guid, "Actors": actors})["Actors"]
    assert [a["ErpKey"] for a in saved] == keys
    assert len({a["LastModified"] for a in saved}) == 1000
    fetched = ok(erp, "GetActors", {"ConnectionGuid": guid, "ActorType": "Supplier", "ErpKeys": keys,
                                    "FieldKeys": ["CREDITLIMIT"]})["Actors"]
    assert [a["FieldValues"]["CREDITLIMIT"] for a in fetched] == [float(i) for i in range(1000)]


def test_person_can_move_to_another_company(erp, guid):
    saved = ok(erp, "SaveActors", {"ConnectionGuid": guid, "Actors": [{
        "ActorType": "Person", "ErpKey": "P30001", "ParentActorType": "Supplier", "ParentErpKey": "S20003",
        "FieldValues": {"POSITION": "Buyer"}}]})["Actors"][0]
    assert (saved["ParentActorType"], saved["ParentErpKey"]) == ("Supplier", "S20003")
    bad = call(erp, "SaveActors", {"ConnectionGuid": guid, "Actors": [{
        "ActorType": "Person", "ErpKey": "P30001", "ParentErpKey": "PR40001", "FieldValues": {}}]})
    assert bad["IsOk"] is False


# -- change feed -------------------------------------------------------------------------------------------------


def test_get_actors_by_timestamp_is_inclusive(erp, guid):
    stamp = erp.touch("Customer", "C10005")
    body = {"ConnectionGuid": guid, "ActorType": "Customer", "UpdatedOnOrAfter": stamp, "FieldKeys": ["NAME"]}
    assert [a["ErpKey"] for a in ok(erp, "GetActorsByTimestamp", body)["Actors"]] == ["C10005"]
    later = format_timestamp(parse_timestamp(stamp) + 1)
    assert ok(erp, "GetActorsByTimestamp", {**body, "UpdatedOnOrAfter": later})["Actors"] == []
    everything = ok(erp, "GetActorsByTimestamp", {**body, "UpdatedOnOrAfter": ""})
    assert len(everything["Actors"]) == len(all_actors(erp, "Customer")) and everything["NextCursor"] is None
    assert erp.delete_actor("Customer", "C10005")
    assert ok(erp, "GetActorsByTimestamp", body)["Actors"] == []
    bad = call(erp, "GetActorsByTimestamp", {**body, "UpdatedOnOrAfter": "last tuesday"})
    assert bad["IsOk"] is False


def test_last_modified_is_global_and_strictly_increasing(erp, guid, monkeypatch):
    stamps = [erp.touch("Customer", "C10001"), erp.touch("Supplier", "S20001"), erp.touch("Project", "PR40001")]
    # A clock stuck on one microsecond (or stepping back) must not break the order.
    # (patched where LastModified is allocated: DemoErpStorage._allocate_timestamps)
    monkeypatch.setattr(demo_storage, "_now_micros", lambda: 1_000_000)
    for _ in range(50):
        stamps.append(erp.touch("Person", "P30001"))
    monkeypatch.undo()
    assert all(STAMP_RE.match(s) for s in stamps)
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)

    results, errors = [], []

    def writer(n):
        try:
            for i in range(10):
                answer = call(erp, "SaveActors", {"ConnectionGuid": guid, "Actors": [
                    {"ActorType": "Customer", "ErpKey": f"C100{10 + n}", "FieldValues": {"EMPLOYEES": i}}]})
                assert answer["IsOk"], answer
                results.append(answer["Actors"][0]["LastModified"])
                created = call(erp, "CreateActor", {"ConnectionGuid": guid, "Actor": {
                    "ActorType": "Project", "FieldValues": {"NAME": f"T{n}-{i}"}}})
                assert created["IsOk"], created
                results.append(created["Actor"]["LastModified"])
        except AssertionError as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert len(results) == 120 and len(set(results)) == 120
    assert min(results) > stamps[-1]


def test_get_actors_by_timestamp_pages_return_each_actor_once(erp, guid):
    erp.bulk_create("Customer", [{"NAME": f"Paged {i:03d}"} for i in range(250)])
    total = len(all_actors(erp, "Customer"))
    seen, cursor, pages = [], None, 0
    while True:
        answer = ok(erp, "GetActorsByTimestamp", {"ConnectionGuid": guid, "ActorType": "Customer",
                                                  "UpdatedOnOrAfter": "", "FieldKeys": ["NAME"], "Limit": 37,
                                                  "Cursor": cursor})
        pages += 1
        assert len(answer["Actors"]) <= 37
        seen += [(a["LastModified"], a["ErpKey"]) for a in answer["Actors"]]
        cursor = answer["NextCursor"]
        if cursor is None:
            break
        assert isinstance(cursor, str)
    assert len(seen) == total == len({key for _, key in seen}) and seen == sorted(seen)
    assert pages == -(-total // 37)
    bad = call(erp, "GetActorsByTimestamp", {"ConnectionGuid": guid, "ActorType": "Customer",
                                             "UpdatedOnOrAfter": "", "Limit": 10, "Cursor": "garbage!"})
    assert bad["IsOk"] is False and bad["ErrorCode"] == "BAD_CURSOR"


def test_actor_changed_while_paging_is_not_lost(erp, guid):
    body = {"ConnectionGuid": guid, "ActorType": "Customer", "UpdatedOnOrAfter": "", "Limit": 10}
    first = ok(erp, "GetActorsByTimestamp", body)
    seen = {a["ErpKey"] for a in first["Actors"]}
    changed = erp.update_fields("Customer", "C10001", {"NOTES": "edited mid-sync"})  # already seen: moves to the end
    cursor, rest = first["NextCursor"], []
    while cursor:
        page = ok(erp, "GetActorsByTimestamp", {**body, "Cursor": cursor})
        rest += page["Actors"]
        cursor = page["NextCursor"]
    assert rest[-1]["ErpKey"] == "C10001" and rest[-1]["LastModified"] == changed["LastModified"]
    assert seen | {a["ErpKey"] for a in rest} == {a["ErpKey"] for a in all_actors(erp, "Customer")}


# -- the ERP's own API -------------------------------------------------------------------------------------------


def test_bulk_create_validates_everything_before_writing(erp):
    before = erp.counts()["Customer"]
    with pytest.raises(DemoErpValidationError) as raised:
        erp.bulk_create("Customer", [{"NAME": "Fine"}, {"NAME": ""}, {"NAME": "Bad", "COUNTRY": "ZZ"}])
    assert len(raised.value.errors) == 2
    with pytest.raises(DemoErpValidationError):
        erp.bulk_create("Person", [{"FIRSTNAME": "A", "LASTNAME": "B"}])
    assert erp.counts()["Customer"] == before
    keys = erp.bulk_create("Person", [{"FIRSTNAME": "A", "LASTNAME": "B"}, {"FIRSTNAME": "C", "LASTNAME": "D"}],
                           parent=("Customer", "C10001"))
    assert [erp.get_actor("Person", k)["ParentErpKey"] for k in keys] == ["C10001", "C10001"]
    mixed = erp.bulk_create("Person", [{"FIRSTNAME": "E", "LASTNAME": "F"}, {"FIRSTNAME": "G", "LASTNAME": "H"}],
                            parent=[("Customer", "C10002"), ("Supplier", "S20001")])
    assert [erp.get_actor("Person", k)["ParentErpKey"] for k in mixed] == ["C10002", "S20001"]
    # The ERP itself may set ReadOnly fields (balances, invoice dates).
    key = erp.bulk_create("Customer", [{"NAME": "Ledger", "BALANCE": 12.5, "LASTINVOICEDATE": "2026-01-02"}])[0]
    assert erp.get_actor("Customer", key)["FieldValues"]["BALANCE"] == 12.5


def test_update_fields_touch_and_delete(erp, guid):
    before = erp.get_actor("Customer", "C10001")
    updated = erp.update_fields("Customer", "C10001", {"NAME": "Edited In ERP AS", "BALANCE": 5.0})
    assert updated["FieldValues"]["NAME"] == "Edited In ERP AS"
    assert updated["FieldValues"]["BALANCE"] == before["FieldValues"]["BALANCE"]
    assert updated["LastModified"] > before["LastModified"]
    ledger = erp.update_fields("Customer", "C10001", {"BALANCE": 5.0, "NUMBER1": "X"}, include_read_only=True)
    assert ledger["FieldValues"]["BALANCE"] == 5.0 and ledger["FieldValues"]["NUMBER1"] == "10001"
    with pytest.raises(DemoErpValidationError) as raised:
        erp.update_fields("Customer", "C10001", {"NAME": "", "CREDITLIMIT": "x"})
    assert set(raised.value.errors) == {"NAME", "CREDITLIMIT"}
    with pytest.raises(KeyError):
        erp.update_fields("Supplier", "C10001", {"NAME": "wrong type"})
    assert erp.touch("Customer", "C10001") > ledger["LastModified"]

    assert erp.delete_actor("Customer", "C10001") is True
    assert erp.delete_actor("Customer", "C10001") is False
    assert erp.get_actor("Customer", "C10001") is None
    assert "C10001" not in {a["ErpKey"] for a in all_actors(erp, "Customer")}
    with pytest.raises(KeyError):
        erp.touch("Customer", "C10001")
    saved = call(erp, "SaveActors", {"ConnectionGuid": guid, "Actors": [
        {"ActorType": "Customer", "ErpKey": "C10001", "FieldValues": {"NAME": "Back"}}]})
    assert saved["IsOk"] is False and "C10001" in saved["UserExplanation"]


def test_reset_restores_the_seed_and_forgets_connections(erp, guid):
    original = erp.get_actor("Customer", "C10002")
    stamp = erp.touch("Customer", "C10002")
    erp.delete_actor("Customer", "C10001")
    erp.bulk_create("Customer", [{"NAME": "Extra"}])
    erp.reset()
    assert erp.counts() == {"Customer": 40, "Supplier": 20, "Person": 80, "Project": 20}
    again = erp.get_actor("Customer", "C10002")
    assert again["FieldValues"] == original["FieldValues"] and again["LastModified"] > stamp
    assert erp.get_actor("Customer", "C10001") is not None
    assert call(erp, "TestConnection", {"ConnectionGuid": guid})["ErrorCode"] == "UNKNOWN_CONNECTION_ID"
    erp.reset(seed=False)
    assert erp.counts() == {"Customer": 0, "Supplier": 0, "Person": 0, "Project": 0}
    assert erp.list_items("countries")["SE"] == "Sweden"


def test_registered_factory_shares_one_instance_per_database(tmp_path):
    from portal.connectors.builtin import _FACTORIES

    config = {"DEMO_ERP_DB": str(tmp_path / "shared.db")}
    first = _FACTORIES["demo"](config)
    assert isinstance(first, DemoErpConnector) and _FACTORIES["demo"](config) is first
    assert DemoErpConnector.for_path(tmp_path / "shared.db") is first


def test_timestamps_round_trip():
    micros = parse_timestamp("2026-11-25T17:02:06.123456Z")
    assert format_timestamp(micros) == "2026-11-25T17:02:06.123456Z"
    assert parse_timestamp("2026-11-25T18:02:06.123456+01:00") == micros
    assert parse_timestamp("2026-11-25") < micros
    assert format_timestamp(parse_timestamp(str(micros))) == "2026-11-25T17:02:06.123456Z"


# -- HTTP and CLI ------------------------------------------------------------------------------------------------


def test_served_over_http_with_a_token(erp):
    server = make_server("127.0.0.1", 0, make_wsgi_app(erp, token="s3cret"), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_port}"
    auth = {"Authorization": "Bearer s3cret"}
    try:
        with requests.Session() as http:
            denied = http.post(f"{base}/GetConfigData", json={}, timeout=5)
            assert denied.status_code == 401
            config = http.post(f"{base}/GetConfigData", json={}, headers=auth, timeout=5)
            assert config.status_code == 200 and config.json()["IsOk"] is True
            lists = http.post(f"{base}/GetList", json={"ConnectionGuid": ZERO_GUID, "ListName": "countries"},
                              headers=auth, timeout=5).json()
            assert lists["ListItems"]["DE"] == "Germany"
            saved = http.post(f"{base}/SaveConnection", headers=auth, timeout=5,
                              json={"ConnectionGuid": GUID, "ConnectionInfo": {"CompanyDb": "DEMO"}}).json()
            assert saved["IsOk"] is True
            actors = http.post(f"{base}/GetActors", headers=auth, timeout=5, json={
                "ConnectionGuid": GUID, "ActorType": "Customer", "ErpKeys": ["C10001", "nope"],
                "FieldKeys": ["NAME"]}).json()
            assert [a["ErpKey"] for a in actors["Actors"]] == ["C10001"]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _cli_app(tmp_path) -> Flask:
    app = Flask("demo_cli_test")
    app.config["DEMO_ERP_DB"] = str(tmp_path / "cli.db")
    app.cli.add_command(demo_erp_group)
    return app


def test_cli_reset_and_serve(tmp_path, monkeypatch):
    app = _cli_app(tmp_path)
    erp = DemoErpConnector(tmp_path / "cli.db")
    erp.delete_actor("Customer", "C10001")
    runner = app.test_cli_runner()
    result = runner.invoke(args=["demo-erp", "reset", "--yes"])
    assert result.exit_code == 0, result.output
    assert "40 customers" in result.output
    assert erp.get_actor("Customer", "C10001") is not None

    served = {}
    monkeypatch.setattr("portal.demo_erp.cli.serve",
                        lambda service, **kwargs: served.update(service=service, **kwargs))
    other = tmp_path / "other.db"
    result = runner.invoke(args=["demo-erp", "serve", "--port", "8123", "--db", str(other), "--token", "t0k"])
    assert result.exit_code == 0, result.output
    assert served["port"] == 8123 and served["host"] == "127.0.0.1" and served["token"] == "t0k"
    assert served["service"].path == str(other) and other.exists()
    assert "http://127.0.0.1:8123/" in result.output


def test_seed_dates_are_fixed_not_today(erp, guid):
    invoice_dates = [c["FieldValues"]["LASTINVOICEDATE"] for c in all_actors(erp, "Customer")]
    assert max(d for d in invoice_dates if d) <= date(2026, 11, 1).isoformat()

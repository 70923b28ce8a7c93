"""The Tryton connector against a live trytond (see conftest.py for the fixtures).

Everything goes through ``TrytonConnector.handle(method, body)`` with JSON round-tripped bodies, as the portal
does; direct edits "behind the connector's back" go through Tryton's own JSON-RPC (``tryton.rpc``).
"""

from __future__ import annotations

import datetime as dt
import json
import re
import socket
import sqlite3
import time
import uuid
from decimal import Decimal

import pytest
from cryptography.fernet import Fernet
from werkzeug.test import Client

from portal import tryton_admin
from portal.connectors.builtin.tryton import TrytonConnector, iso_utc, split_person_name
from portal.connectors.builtin.tryton_rpc import dumps, loads
from portal.connectors.protocol import ZERO_GUID
from portal.connectors.service import make_wsgi_app

pytestmark = pytest.mark.tryton

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


def ok(answer: dict) -> dict:
    assert answer["IsOk"], answer
    return answer


def one(answer: dict) -> dict:
    ok(answer)
    assert len(answer["Actors"]) == 1, answer["Actors"]
    return answer["Actors"][0]


def keys(answer: dict) -> list[str]:
    return [a["ErpKey"] for a in ok(answer)["Actors"]]


def create(call, actor_type: str, values: dict, **extra) -> dict:
    answer = ok(call("CreateActor", Actor={"ActorType": actor_type, "FieldValues": values, **extra}))
    return answer["Actor"]


def demo_id(tryton, name: str) -> str:
    return str(tryton.demo["parties"][name])


# ------------------------------------------------------------------------------------------ config
def test_config_fields(tryton_connector):
    fields = {f["FieldKey"]: f for f in ok(tryton_connector.handle("GetConfigData", {}))["FieldMetaDataObjects"]}
    assert fields["url"]["DefaultValue"] == "http://127.0.0.1:8765"
    assert fields["url"]["Access"] == fields["database"]["Access"] == fields["user"]["Access"] == "Mandatory"
    assert fields["password"]["FieldType"] == "Password"
    assert "company" in fields


def test_config_ok(tryton, tryton_connector):
    answer = ok(tryton_connector.handle("TestConfigData", {"ConnectionInfo": tryton.connection_info()}))
    assert "Tryton 8.0" in answer["UserExplanation"]


def test_config_wrong_password(tryton, tryton_connector):
    answer = tryton_connector.handle("TestConfigData",
                                     {"ConnectionInfo": tryton.connection_info(password="not-the-password")})
    assert not answer["IsOk"]
    assert answer["ErrorCode"] == "ERP_AUTH_FAILED"
    assert "refused the user name or password" in answer["UserExplanation"]


def test_config_server_down(tryton_connector):
    url = f"http://127.0.0.1:{tryton_admin.free_port()}"
    answer = tryton_connector.handle("TestConfigData", {"ConnectionInfo": {
        "url": url, "database": "erp", "user": "admin", "password": "x"}})
    assert not answer["IsOk"]
    assert answer["ErrorCode"] == "ERP_UNREACHABLE"
    assert f"Tryton at {url} is not reachable" in answer["UserExplanation"]


def test_config_unknown_database(tryton, tryton_connector):
    answer = tryton_connector.handle("TestConfigData", {"ConnectionInfo": tryton.connection_info(database="nope")})
    assert not answer["IsOk"]
    assert answer["ErrorCode"] == "ERP_UNKNOWN_DATABASE"
    assert "no database 'nope'" in answer["UserExplanation"]


def test_config_incomplete(tryton_connector):
    answer = tryton_connector.handle("TestConfigData", {"ConnectionInfo": {"url": "ftp://x", "user": "admin"}})
    assert not answer["IsOk"] and answer["ErrorCode"] == "INVALID_CONFIG"
    assert "database name is missing" in answer["UserExplanation"]


def test_test_config_and_save_connection_refuse_a_config_alike(tryton_connector):
    guid = str(uuid.uuid4())
    for info, code in (("not an object", "BAD_REQUEST"), ({"url": "ftp://x", "user": "admin"}, "INVALID_CONFIG")):
        for method in ("TestConfigData", "SaveConnection"):
            answer = tryton_connector.handle(method, {"ConnectionGuid": guid, "ConnectionInfo": info})
            assert not answer["IsOk"] and answer["ErrorCode"] == code, (method, info, answer)


def test_save_connection_unknown_guid_and_persistence(tryton, tmp_path):
    path = tmp_path / "state.sqlite"
    key = Fernet.generate_key().decode()
    service = TrytonConnector(path, secret_keys=[key])
    guid = str(uuid.uuid4())
    for method in ("GetSupportedActorTypes", "TestConnection", "GetActors", "GetList", "SearchActors"):
        answer = service.handle(method, {"ConnectionGuid": guid, "ActorType": "Customer", "ListName": "countries"})
        assert answer["ErrorCode"] == "UNKNOWN_CONNECTION_ID", (method, answer)
    assert service.handle("GetActors", {"ConnectionGuid": "not-a-guid"})["ErrorCode"] == "UNKNOWN_CONNECTION_ID"
    ok(service.handle("SaveConnection", {"ConnectionGuid": guid, "ConnectionInfo": tryton.connection_info()}))
    assert "Connected to Tryton" in ok(service.handle("TestConnection", {"ConnectionGuid": guid}))["UserExplanation"]
    # a second instance (a restart) on the same file knows the connection; the password is not stored in clear
    again = TrytonConnector(path, secret_keys=[key])
    ok(again.handle("TestConnection", {"ConnectionGuid": guid}))
    with sqlite3.connect(path) as db:
        stored = db.execute("SELECT config FROM connection").fetchone()[0]
    assert tryton.password not in stored and "fernet:" in stored
    # other keys cannot decrypt it → the connection counts as unknown, so the portal re-sends its config
    other = TrytonConnector(path, secret_keys=[Fernet.generate_key().decode()])
    assert other.handle("TestConnection", {"ConnectionGuid": guid})["ErrorCode"] == "UNKNOWN_CONNECTION_ID"
    ok(again.handle("DeleteConnection", {"ConnectionGuid": guid}))
    assert again.handle("TestConnection", {"ConnectionGuid": guid})["ErrorCode"] == "UNKNOWN_CONNECTION_ID"


# ------------------------------------------------------------------------------------- metadata
def test_actor_types_fields_and_searchable(call):
    assert ok(call("GetSupportedActorTypes"))["Items"] == ["Customer", "Supplier", "Person", "Project"]
    customer = {f["FieldKey"]: f for f in ok(call("GetSupportedActorTypeFields", ActorType="Customer"))[
        "FieldMetaDataObjects"]}
    assert customer["NAME"]["Access"] == "Mandatory"
    assert customer["NUMBER1"]["Access"] == customer["CATEGORIES"]["Access"] == "ReadOnly"
    assert customer["COUNTRY"]["FieldType"] == "List" and customer["COUNTRY"]["ListName"] == "countries"
    assert customer["LANGUAGE"]["ListName"] == "languages"
    assert {"VATNO", "EMAIL", "PHONE", "MOBILE", "URL", "POSTALAD1", "POSTALAD2", "POSTALZIP", "POSTALCITY",
            "POSTALSTATE"} <= set(customer)
    assert all(f["MaxLength"] == 0 for f in customer.values())  # Tryton's Char fields have no size here
    person = {f["FieldKey"] for f in ok(call("GetSupportedActorTypeFields", ActorType="Person"))[
        "FieldMetaDataObjects"]}
    assert {"FIRSTNAME", "LASTNAME", "EMAIL", "PHONE_DIRECT", "PHONE_MOBILE"} <= person
    project = {f["FieldKey"]: f for f in ok(call("GetSupportedActorTypeFields", ActorType="Project"))[
        "FieldMetaDataObjects"]}
    assert project["STARTDATE"]["FieldType"] == project["ENDDATE"]["FieldType"] == "Date"
    assert project["STATE"]["ListName"] == "project_states"
    assert {"NAME", "NUMBER1", "POSTALCITY", "COUNTRY", "EMAIL"} <= set(
        ok(call("GetSearchableFields", ActorType="Customer"))["Items"])
    assert call("GetSupportedActorTypeFields", ActorType="Partner")["ErrorCode"] == "UNSUPPORTED_ACTOR_TYPE"


def test_lists(call):
    countries = ok(call("GetList", ListName="countries"))["ListItems"]
    assert countries["DE"] == "Germany" and countries["NO"] == "Norway" and len(countries) > 200
    languages = ok(call("GetList", ListName="languages"))["ListItems"]
    assert languages["de"] == "German" and languages["en"] == "English"
    assert ok(call("GetList", ListName="project_states"))["ListItems"] == {"opened": "Open", "done": "Done"}
    assert ok(call("GetListItems", ListName="countries", ListItemKeys=["SE", "XX"]))["ListItems"] == {
        "SE": "Sweden"}
    # before a connection exists (all-zero GUID) the list look-ups answer without Tryton
    assert ok(call("GetList", ConnectionGuid=ZERO_GUID, ListName="countries"))["ListItems"] == {}
    assert ok(call("GetList", ConnectionGuid=ZERO_GUID, ListName="project_states"))["ListItems"]["done"] == "Done"
    assert call("GetList", ListName="colours")["ErrorCode"] == "UNKNOWN_LIST"


# ------------------------------------------------------------------------------------------ reading
def test_get_demo_customer(tryton, call):
    acme = one(call("GetActors", ActorType="Customer", ErpKeys=[demo_id(tryton, "Acme Industries GmbH")]))
    assert ISO.match(acme["LastModified"])
    assert acme["ParentErpKey"] == "" and acme["ActorType"] == "Customer"
    values = acme["FieldValues"]
    assert values["NAME"] == "Acme Industries GmbH"
    assert values["NUMBER1"]  # Tryton's party code
    assert values["EMAIL"] == "info@acme.example" and values["PHONE"] == "+49 30 1234567"
    assert values["URL"] == "https://acme.example" and values["MOBILE"] is None
    assert (values["POSTALAD1"], values["POSTALAD2"]) == ("Hauptstraße 1", "Hinterhaus")
    assert (values["POSTALZIP"], values["POSTALCITY"], values["COUNTRY"]) == ("10115", "Berlin", "DE")
    assert values["POSTALSTATE"] == "Berlin" and values["LANGUAGE"] == "de"
    assert values["CATEGORIES"] == "Customer" and values["VATNO"] is None
    only = one(call("GetActors", ActorType="Customer", ErpKeys=[acme["ErpKey"]], FieldKeys=["NAME", "NOPE"]))
    assert only["FieldValues"] == {"NAME": "Acme Industries GmbH"}


def test_get_actors_leaves_out_unknown_wrong_type_and_archived(tryton, call, unique):
    supplier = demo_id(tryton, "Northwind Traders Inc")
    acme = demo_id(tryton, "Acme Industries GmbH")
    assert keys(call("GetActors", ActorType="Customer", ErpKeys=[acme, supplier, "999999", "abc", ""])) == [acme]
    assert keys(call("GetActors", ActorType="Supplier", ErpKeys=[supplier])) == [supplier]
    created = create(call, "Customer", {"NAME": unique("Archived Ltd")})
    tryton.rpc.model("party.party", "write", [int(created["ErpKey"])], {"active": False})
    assert keys(call("GetActors", ActorType="Customer", ErpKeys=[created["ErpKey"], acme])) == [acme]
    assert keys(call("SearchActors", ActorType="Customer", SearchText=created["FieldValues"]["NAME"])) == []


def test_person_and_projects(tryton, call):
    anna = one(call("GetActors", ActorType="Person", ErpKeys=[demo_id(tryton, "Anna Schmidt")]))
    assert anna["FieldValues"]["FIRSTNAME"] == "Anna" and anna["FieldValues"]["LASTNAME"] == "Schmidt"
    assert anna["FieldValues"]["EMAIL"] == "anna.schmidt@acme.example"
    assert (anna["ParentActorType"], anna["ParentErpKey"]) == ("Customer", demo_id(tryton, "Acme Industries GmbH"))
    jane = one(call("GetActors", ActorType="Person", ErpKeys=[demo_id(tryton, "Jane Doe")]))
    assert jane["ParentActorType"] == "Supplier"
    # a company is no person
    assert keys(call("GetActors", ActorType="Person", ErpKeys=[demo_id(tryton, "Acme Industries GmbH")])) == []
    projects = tryton.demo["projects"]
    web, erp = (one(call("GetActors", ActorType="Project", ErpKeys=[str(projects[n])]))
                for n in ("Website relaunch", "ERP rollout"))
    assert web["FieldValues"]["NAME"] == "Website relaunch" and web["FieldValues"]["STATE"] == "opened"
    assert web["FieldValues"]["TEXT"] == "New public website." and web["FieldValues"]["NUMBER"]
    assert erp["FieldValues"]["STATE"] == "done"


def test_person_name_split():
    assert split_person_name("Anna Maria Schmidt") == ("Anna Maria", "Schmidt")
    assert split_person_name("  Madonna ") == (None, "Madonna")
    assert split_person_name("") == (None, None)


# ------------------------------------------------------------------------------------------ search
def test_search_blank_text_and_limit(tryton, call):
    everyone = keys(call("SearchActors", ActorType="Customer", SearchText=""))
    assert {demo_id(tryton, n) for n in ("Acme Industries GmbH", "Globex Nordic AS", "Initech Ltd")} <= set(everyone)
    assert demo_id(tryton, "Northwind Traders Inc") not in everyone
    assert len(keys(call("SearchActors", ActorType="Customer", SearchText="", Limit=2))) == 2
    assert keys(call("SearchActors", ActorType="Customer", SearchText="acme")) == [
        demo_id(tryton, "Acme Industries GmbH")]
    code = one(call("GetActors", ActorType="Customer", ErpKeys=[demo_id(tryton, "Initech Ltd")]))[
        "FieldValues"]["NUMBER1"]
    assert demo_id(tryton, "Initech Ltd") in keys(call("SearchActors", ActorType="Customer", SearchText=code))
    assert keys(call("SearchActors", ActorType="Project", SearchText="relaunch")) == [
        str(tryton.demo["projects"]["Website relaunch"])]


def test_search_by_parent(tryton, call):
    acme = demo_id(tryton, "Acme Industries GmbH")
    found = ok(call("SearchActorByParent", ActorType="Person", SearchText="", ParentActorType="Customer",
                    ParentErpKey=acme))["Actors"]
    assert demo_id(tryton, "Anna Schmidt") in [a["ErpKey"] for a in found]
    assert all(a["ParentErpKey"] == acme for a in found)
    assert keys(call("SearchActorByParent", ActorType="Person", SearchText="nobody-like-this",
                     ParentActorType="Customer", ParentErpKey=acme)) == []


def test_search_advanced(tryton, call):
    def search(actor_type, *restrictions):
        return keys(call("SearchActorsAdvanced", ActorType=actor_type, Restrictions=[
            {"FieldKey": k, "Operator": o, "Values": v} for k, o, v in restrictions]))

    acme, mueller = demo_id(tryton, "Acme Industries GmbH"), demo_id(tryton, "Müller & Söhne KG")
    assert search("Customer", ("NAME", "begins", ["acme"])) == [acme]
    assert search("Customer", ("POSTALCITY", "=", ["berlin"])) == [acme]
    assert set(search("Customer", ("COUNTRY", "oneof", ["DE"]))) >= {acme, mueller}
    assert acme not in search("Customer", ("COUNTRY", "notoneof", ["DE"]))
    assert search("Customer", ("EMAIL", "ends", ["@mueller.example"])) == [mueller]
    assert acme not in search("Customer", ("NAME", "notcontains", ["acme"]))
    assert search("Customer", ("NAME", "contains", ["industries"]), ("COUNTRY", "oneof", ["NO"])) == []
    assert search("Supplier", ("EMAIL", "contains", ["contoso"])) == [demo_id(tryton, "Contoso Supplies BV")]
    assert search("Person", ("ParentErpKey", "=", [acme])) == [demo_id(tryton, "Anna Schmidt")]
    assert search("Person", ("LASTNAME", "=", ["nordmann"])) == [demo_id(tryton, "Ola Nordmann")]
    assert demo_id(tryton, "Jane Doe") in search("Person", ("ParentActorType", "=", ["Supplier"]))
    assert search("Project", ("STATE", "oneof", ["done"])) == [str(tryton.demo["projects"]["ERP rollout"])]
    answer = call("SearchActorsAdvanced", ActorType="Customer",
                  Restrictions=[{"FieldKey": "BIRTHDAY", "Operator": "=", "Values": ["x"]}])
    assert not answer["IsOk"] and answer["ErrorCode"] == "UNSUPPORTED_SEARCH"


# -------------------------------------------------------------------------------------- create
def test_create_customer_with_idempotency(tryton, call, tryton_connector, tryton_guid, unique):
    name = unique("Initrode AG")
    values = {"NAME": name, "EMAIL": "hello@initrode.example", "PHONE": "+41 44 000 00 00", "URL": "initrode.example",
              "POSTALAD1": "Bahnhofstrasse 1", "POSTALZIP": "8001", "POSTALCITY": "Zürich", "COUNTRY": "CH",
              "POSTALSTATE": "ZH", "LANGUAGE": "de", "VATNO": "CHE-123.456.789", "NUMBER1": "ignored: read-only",
              "SOMETHING_ELSE": "ignored"}
    first = ok(call("CreateActor", Actor={"ActorType": "Customer", "FieldValues": values}, IdempotencyKey="k-1"))
    actor = first["Actor"]
    assert ISO.match(actor["LastModified"]) and actor["ErpKey"]
    got = actor["FieldValues"]
    assert got["NAME"] == name and got["EMAIL"] == "hello@initrode.example" and got["COUNTRY"] == "CH"
    assert got["POSTALCITY"] == "Zürich" and got["POSTALSTATE"] == "Zürich" and got["VATNO"] == "CHE-123.456.789"
    assert got["CATEGORIES"] == "Customer" and got["NUMBER1"] != "ignored: read-only"
    again = ok(call("CreateActor", Actor={"ActorType": "Customer", "FieldValues": values}, IdempotencyKey="k-1"))
    assert again["Actor"]["ErpKey"] == actor["ErpKey"]
    # the key survives a restart of the connector (same state file)
    restarted = TrytonConnector(tryton_connector.store.path)
    third = restarted.handle("CreateActor", {"ConnectionGuid": tryton_guid, "IdempotencyKey": "k-1",
                                             "Actor": {"ActorType": "Customer", "FieldValues": values}})
    assert third["Actor"]["ErpKey"] == actor["ErpKey"]
    assert len(tryton.rpc.search("party.party", [["name", "=", name]])) == 1
    other = ok(call("CreateActor", Actor={"ActorType": "Customer", "FieldValues": values}, IdempotencyKey="k-2"))
    assert other["Actor"]["ErpKey"] != actor["ErpKey"]


def test_create_validation(call, unique):
    answer = call("CreateActor", Actor={"ActorType": "Customer", "FieldValues": {"NAME": "  "}})
    assert not answer["IsOk"] and answer["ErrorCode"] == "INVALID_VALUE" and "Name (NAME)" in answer["UserExplanation"]
    answer = call("CreateActor", Actor={"ActorType": "Customer", "FieldValues": {
        "NAME": unique("Bad"), "COUNTRY": "XX", "EMAIL": "no-at-sign", "LANGUAGE": "klingon"}})
    assert not answer["IsOk"] and answer["ErrorCode"] == "INVALID_VALUE"
    for text in ("'XX'", "no-at-sign", "klingon"):
        assert text in answer["UserExplanation"]
    answer = call("CreateActor", Actor={"ActorType": "Customer", "FieldValues": {
        "NAME": unique("Bad"), "COUNTRY": "DE", "POSTALSTATE": "Atlantis"}})
    assert not answer["IsOk"] and "Atlantis" in answer["UserExplanation"]
    answer = call("CreateActor", Actor={"ActorType": "Customer", "FieldValues": {"NAME": "Line\nbreak"}})
    assert not answer["IsOk"] and "line breaks" in answer["UserExplanation"]


def test_create_person_and_project(tryton, call, unique):
    acme = demo_id(tryton, "Acme Industries GmbH")
    answer = call("CreateActor", Actor={"ActorType": "Person", "FieldValues": {"FIRSTNAME": "No", "LASTNAME": "Parent"}})
    assert not answer["IsOk"] and "ParentErpKey" in answer["UserExplanation"]
    last = unique("Weiß").replace(" ", "-")  # one word: a last name with spaces would not split back
    person = create(call, "Person", {"FIRSTNAME": "Eva Maria", "LASTNAME": last, "EMAIL": "eva@acme.example",
                                     "PHONE_MOBILE": "+49 170 0000000"},
                    ParentActorType="Customer", ParentErpKey=acme)
    assert person["FieldValues"]["FIRSTNAME"] == "Eva Maria" and person["FieldValues"]["PHONE_MOBILE"]
    assert (person["ParentActorType"], person["ParentErpKey"]) == ("Customer", acme)
    assert tryton.rpc.model("party.party", "read", [int(person["ErpKey"])], ["name"])[0]["name"] == f"Eva Maria {last}"
    assert person["ErpKey"] in keys(call("SearchActorByParent", ActorType="Person", SearchText="eva",
                                         ParentActorType="Customer", ParentErpKey=acme))
    project = create(call, "Project", {"NAME": unique("Migration"), "TEXT": "Move to Tryton",
                                       "STARTDATE": "2026-01-15", "ENDDATE": "2026-06-30", "STATE": "opened"})
    assert project["FieldValues"]["STARTDATE"] == "2026-01-15" and project["FieldValues"]["ENDDATE"] == "2026-06-30"
    assert project["FieldValues"]["STATE"] == "opened" and project["FieldValues"]["TEXT"] == "Move to Tryton"
    done = ok(call("SaveActors", Actors=[{**project, "FieldValues": {"STATE": "done"}}]))["Actors"][0]
    assert done["FieldValues"]["STATE"] == "done"
    answer = call("CreateActor", Actor={"ActorType": "Project", "FieldValues": {
        "NAME": "Backwards", "STARTDATE": "2026-02-01", "ENDDATE": "2026-01-01"}})
    assert not answer["IsOk"] and "before the start date" in answer["UserExplanation"]


# ----------------------------------------------------------------------------------------- save
def test_save_actors(tryton, call, unique):
    created = create(call, "Customer", {"NAME": unique("Hooli"), "EMAIL": "a@hooli.example", "PHONE": "+1 555 0100",
                                        "POSTALCITY": "Palo Alto", "COUNTRY": "US"})
    time.sleep(0.01)
    new_name = unique("Hooli XYZ")
    saved = one(call("SaveActors", Actors=[{**created, "FieldValues": {
        "NAME": new_name, "EMAIL": "b@hooli.example", "PHONE": None, "POSTALAD1": "1 Hacker Way",
        "POSTALSTATE": "CA", "MOBILE": "+1 555 0199"}}]))
    values = saved["FieldValues"]
    assert values["NAME"] == new_name and values["EMAIL"] == "b@hooli.example" and values["PHONE"] is None
    assert values["POSTALAD1"] == "1 Hacker Way" and values["POSTALCITY"] == "Palo Alto"
    assert values["POSTALSTATE"] == "California" and values["MOBILE"] == "+1 555 0199"
    assert saved["LastModified"] > created["LastModified"]
    # the same values again change nothing in Tryton, so LastModified stays
    unchanged = one(call("SaveActors", Actors=[{**saved, "FieldValues": {"NAME": new_name,
                                                                          "EMAIL": "b@hooli.example"}}]))
    assert unchanged["LastModified"] == saved["LastModified"]
    # the person's name is split and joined again; a new parent moves the relation
    person = one(call("GetActors", ActorType="Person", ErpKeys=[demo_id(tryton, "Peter Gibbons")]))
    moved = one(call("SaveActors", Actors=[{**person, "ParentErpKey": saved["ErpKey"],
                                            "FieldValues": {"LASTNAME": "Gibbons-Smith"}}]))
    assert moved["FieldValues"]["FIRSTNAME"] == "Peter" and moved["FieldValues"]["LASTNAME"] == "Gibbons-Smith"
    assert moved["ParentErpKey"] == saved["ErpKey"]


def test_stale_write_is_a_conflict(tryton, call, unique):
    created = create(call, "Customer", {"NAME": unique("Stale Corp"), "POSTALCITY": "Oslo", "COUNTRY": "NO"})
    read = one(call("GetActors", ActorType="Customer", ErpKeys=[created["ErpKey"]]))
    # someone edits the party in Tryton after the portal read it
    time.sleep(0.01)
    tryton.rpc.model("party.party", "write", [int(read["ErpKey"])], {"name": "Changed in Tryton"})
    answer = call("SaveActors", Actors=[{**read, "FieldValues": {"NAME": "Portal wins?"}}])
    assert not answer["IsOk"] and answer["ErrorCode"] == "CONFLICT"
    assert "changed in Tryton" in answer["UserExplanation"]
    assert tryton.rpc.model("party.party", "read", [int(read["ErpKey"])], ["name"])[0]["name"] == "Changed in Tryton"
    # an edit of the address only (not the party itself) is a change too
    fresh = one(call("GetActors", ActorType="Customer", ErpKeys=[created["ErpKey"]]))
    address = tryton.rpc.model("party.party", "read", [int(fresh["ErpKey"])], ["addresses"])[0]["addresses"][0]
    time.sleep(0.01)
    tryton.rpc.model("party.address", "write", [address], {"city": "Bergen"})
    answer = call("SaveActors", Actors=[{**fresh, "FieldValues": {"POSTALCITY": "Trondheim"}}])
    assert answer["ErrorCode"] == "CONFLICT"
    # with the current LastModified the save goes through
    current = one(call("GetActors", ActorType="Customer", ErpKeys=[created["ErpKey"]]))
    assert current["FieldValues"]["POSTALCITY"] == "Bergen"
    saved = one(call("SaveActors", Actors=[{**current, "FieldValues": {"POSTALCITY": "Trondheim"}}]))
    assert saved["FieldValues"]["POSTALCITY"] == "Trondheim"


def test_save_is_all_or_nothing(tryton, call, unique):
    first = create(call, "Customer", {"NAME": unique("Alpha")})
    second = create(call, "Customer", {"NAME": unique("Beta")})
    answer = call("SaveActors", Actors=[{**first, "FieldValues": {"NAME": "Alpha renamed"}},
                                        {**second, "FieldValues": {"COUNTRY": "XX"}}])
    assert not answer["IsOk"] and answer["ErrorCode"] == "INVALID_VALUE"
    assert one(call("GetActors", ActorType="Customer", ErpKeys=[first["ErpKey"]]))["FieldValues"]["NAME"] == \
        first["FieldValues"]["NAME"]
    answer = call("SaveActors", Actors=[{**first, "ErpKey": "999999", "FieldValues": {"NAME": "Ghost"}}])
    assert answer["ErrorCode"] == "NOT_FOUND"


# ----------------------------------------------------------------------------------- change feed
def test_get_actors_by_timestamp(tryton, call, unique):
    created = create(call, "Customer", {"NAME": unique("Feed GmbH"), "EMAIL": "feed@feed.example",
                                        "POSTALCITY": "Hamburg", "COUNTRY": "DE"})
    mark = created["LastModified"]
    assert created["ErpKey"] in keys(call("GetActorsByTimestamp", ActorType="Customer", UpdatedOnOrAfter=mark))
    later = iso_utc(dt.datetime.strptime(mark, "%Y-%m-%dT%H:%M:%S.%fZ") + dt.timedelta(microseconds=1))
    assert created["ErpKey"] not in keys(call("GetActorsByTimestamp", ActorType="Customer", UpdatedOnOrAfter=later))
    # an address edited directly in Tryton does not touch the party's own timestamp — the connector sees it
    pid = int(created["ErpKey"])
    time.sleep(0.01)
    address = tryton.rpc.model("party.party", "read", [pid], ["addresses"])[0]["addresses"][0]
    tryton.rpc.model("party.address", "write", [address], {"city": "Bremen"})
    feed = ok(call("GetActorsByTimestamp", ActorType="Customer", UpdatedOnOrAfter=later))["Actors"]
    mine = [a for a in feed if a["ErpKey"] == created["ErpKey"]]
    assert mine and mine[0]["FieldValues"]["POSTALCITY"] == "Bremen" and mine[0]["LastModified"] > mark
    # and so does a contact mechanism
    after_address = iso_utc(dt.datetime.strptime(mine[0]["LastModified"], "%Y-%m-%dT%H:%M:%S.%fZ")
                            + dt.timedelta(microseconds=1))
    time.sleep(0.01)
    mechanism = tryton.rpc.model("party.party", "read", [pid], ["contact_mechanisms"])[0]["contact_mechanisms"][0]
    tryton.rpc.model("party.contact_mechanism", "write", [mechanism], {"value": "new@feed.example"})
    feed = keys(call("GetActorsByTimestamp", ActorType="Customer", UpdatedOnOrAfter=after_address))
    assert created["ErpKey"] in feed
    # ordered by LastModified; blank = everything
    everything = ok(call("GetActorsByTimestamp", ActorType="Customer", UpdatedOnOrAfter=""))["Actors"]
    stamps = [a["LastModified"] for a in everything]
    assert stamps == sorted(stamps) and len(everything) >= 4
    assert call("GetActorsByTimestamp", ActorType="Customer", UpdatedOnOrAfter="yesterday")["ErrorCode"] == \
        "INVALID_VALUE"


def test_timestamp_paging(call):
    everything = keys(call("GetActorsByTimestamp", ActorType="Customer", UpdatedOnOrAfter=""))
    pages, cursor = [], None
    for _ in range(50):
        answer = ok(call("GetActorsByTimestamp", ActorType="Customer", UpdatedOnOrAfter="", Limit=2,
                         **({"Cursor": cursor} if cursor else {})))
        assert len(answer["Actors"]) <= 2
        pages += [a["ErpKey"] for a in answer["Actors"]]
        cursor = answer.get("NextCursor")
        if not cursor:
            break
    assert pages == everything


def test_projects_by_timestamp(tryton, call, unique):
    project = create(call, "Project", {"NAME": unique("Feed project")})
    found = ok(call("GetActorsByTimestamp", ActorType="Project", UpdatedOnOrAfter=project["LastModified"]))
    assert project["ErpKey"] in [a["ErpKey"] for a in found["Actors"]]


# ------------------------------------------------------------------------------ sessions & errors
def test_session_expiry_is_handled(tryton, call, tryton_connector, tryton_guid):
    acme = demo_id(tryton, "Acme Industries GmbH")
    one(call("GetActors", ActorType="Customer", ErpKeys=[acme]))
    client = tryton_connector.client(tryton_guid)
    logins = client.logins
    client.call("common.db.logout")  # Tryton forgets the session (as after the idle timeout) …
    one(call("GetActors", ActorType="Customer", ErpKeys=[acme]))  # … and the connector logs in again
    assert client.logins == logins + 1
    client.corrupt_session()
    one(call("SearchActors", ActorType="Customer", SearchText="acme"))
    assert client.logins == logins + 2


def test_tryton_down_gives_readable_errors(tryton_connector):
    guid = str(uuid.uuid4())
    url = f"http://127.0.0.1:{tryton_admin.free_port()}"
    ok(tryton_connector.handle("SaveConnection", {"ConnectionGuid": guid, "ConnectionInfo": {
        "url": url, "database": "erp", "user": "admin", "password": "x", "timeout": "2"}}))
    for method in ("GetActors", "SearchActors", "GetActorsByTimestamp", "TestConnection", "GetList"):
        answer = tryton_connector.handle(method, {"ConnectionGuid": guid, "ActorType": "Customer",
                                                  "ErpKeys": ["1"], "SearchText": "", "ListName": "countries"})
        assert not answer["IsOk"] and answer["ErrorCode"] == "ERP_UNREACHABLE", (method, answer)
        assert f"Tryton at {url} is not reachable" in answer["UserExplanation"]


def test_slow_tryton_times_out(tryton_connector):
    with socket.socket() as silent:  # accepts connections (backlog) but never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        guid = str(uuid.uuid4())
        ok(tryton_connector.handle("SaveConnection", {"ConnectionGuid": guid, "ConnectionInfo": {
            "url": url, "database": "erp", "user": "admin", "password": "x", "timeout": "1"}}))
        started = time.monotonic()
        answer = tryton_connector.handle("GetActors", {"ConnectionGuid": guid, "ActorType": "Customer",
                                                       "ErpKeys": ["1"]})
        assert time.monotonic() - started < 5
    # the same code and text as a closed port (no port-scan oracle); the read timeout is in the technical text
    assert not answer["IsOk"] and answer["ErrorCode"] == "ERP_UNREACHABLE"
    assert f"Tryton at {url} is not reachable or did not answer within 1 seconds" in answer["UserExplanation"]
    assert "read timeout" in answer["TechExplanation"]


def test_tryton_json_values():
    values = {"at": dt.datetime(2026, 11, 25, 17, 2, 6, 123456), "on": dt.date(2026, 1, 2),
              "amount": Decimal("12.30"), "raw": b"\x00\xff", "took": dt.timedelta(seconds=90),
              "when": dt.time(8, 30), "nested": [{"d": dt.date(2026, 2, 3)}]}
    wire = json.loads(dumps(values))
    assert wire["at"]["__class__"] == "datetime" and wire["amount"] == {"__class__": "Decimal", "decimal": "12.30"}
    assert loads(dumps(values)) == values
    aware = dt.datetime(2026, 11, 25, 18, 0, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    assert loads(dumps(aware)) == dt.datetime(2026, 11, 25, 17, 0)  # Tryton's timestamps are naive UTC


# ---------------------------------------------------------------------------------------- odd data
def test_odd_data(tryton, call, unique):
    initech = one(call("GetActors", ActorType="Customer", ErpKeys=[demo_id(tryton, "Initech Ltd")]))["FieldValues"]
    assert all(initech[k] is None for k in ("POSTALAD1", "POSTALAD2", "POSTALZIP", "POSTALCITY", "COUNTRY"))
    assert initech["MOBILE"] == "+44 7700 900000"
    # two e-mails: the first (by Tryton's order) is reported
    created = create(call, "Customer", {"NAME": unique("Two Mails"), "EMAIL": "first@two.example"})
    tryton.rpc.model("party.contact_mechanism", "create", [{"party": int(created["ErpKey"]), "type": "email",
                                                            "value": "second@two.example"}])
    again = one(call("GetActors", ActorType="Customer", ErpKeys=[created["ErpKey"]]))
    assert again["FieldValues"]["EMAIL"] == "first@two.example"
    # non-ASCII: stored as sent; found case-insensitively even on SQLite
    name = unique("Ærøskøbing Ølbryggeri ÅS")
    norse = create(call, "Customer", {"NAME": name, "POSTALCITY": "Ærøskøbing"})
    assert norse["FieldValues"]["NAME"] == name
    assert norse["ErpKey"] in keys(call("SearchActors", ActorType="Customer", SearchText="ølbryggeri"))
    assert demo_id(tryton, "Müller & Söhne KG") in keys(call("SearchActors", ActorType="Customer",
                                                             SearchText="müller"))
    # very long names: Tryton has no limit on party names (MaxLength 0)
    long_name = "Very Long Name " + "x" * 2000
    long = create(call, "Customer", {"NAME": long_name})
    assert one(call("GetActors", ActorType="Customer", ErpKeys=[long["ErpKey"]]))["FieldValues"]["NAME"] == long_name
    # wildcards in search text are literal
    pct = create(call, "Customer", {"NAME": unique("100% Pure_Org")})
    assert keys(call("SearchActors", ActorType="Customer", SearchText="100% Pure_")) == [pct["ErpKey"]]


def test_served_over_http(tryton, tryton_connector, tryton_guid):
    client = Client(make_wsgi_app(tryton_connector, token="s3cret"))
    assert client.post("/GetSupportedActorTypes", json={"ConnectionGuid": tryton_guid}).status_code == 401
    response = client.post("/GetActors", json={"ConnectionGuid": tryton_guid, "ActorType": "Customer",
                                               "ErpKeys": [demo_id(tryton, "Acme Industries GmbH")]},
                           headers={"Authorization": "Bearer s3cret"})
    assert response.status_code == 200
    assert json.loads(response.data)["Actors"][0]["FieldValues"]["NAME"] == "Acme Industries GmbH"


def test_cli_start_status_stop(tryton_home, tmp_path):
    """`flask tryton start/status/stop` on a private home (the venv is shared through a symlink)."""
    from flask import Flask

    from portal.tryton_admin import tryton_group

    home = tryton_admin.TrytonHome(tmp_path / "home")
    home.root.mkdir()
    home.venv.symlink_to(tryton_home.venv)
    tryton_admin.write_config(home)
    home.passfile.write_text(tryton_home.passfile.read_text())
    home.state_file.write_text(tryton_home.state_file.read_text())
    tryton_admin.copy_template(tryton_home, home.db_dir, "erp")
    app = Flask("cli-test", instance_path=str(tmp_path))
    app.cli.add_command(tryton_group)
    runner = app.test_cli_runner()
    port = tryton_admin.free_port()
    started = runner.invoke(args=["tryton", "start", "--home", str(home.root), "--port", str(port)])
    try:
        assert started.exit_code == 0, started.output
        assert f"http://127.0.0.1:{port}" in started.output and home.pidfile.exists()
        status = runner.invoke(args=["tryton", "status", "--home", str(home.root), "--port", str(port)])
        assert "answers (Tryton 8.0)" in status.output
        again = runner.invoke(args=["tryton", "start", "--home", str(home.root), "--port", str(port)])
        assert again.exit_code != 0 and "already running" in again.output
    finally:
        stopped = runner.invoke(args=["tryton", "stop", "--home", str(home.root)])
    assert "Stopped Tryton" in stopped.output, stopped.output
    assert not home.pidfile.exists()
    assert tryton_admin.ping(tryton_admin.server_url(port)) is None

"""Unit tests of portal.connectors.client: HTTP mocked with `responses`, and the builtin: transport."""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
from email.utils import format_datetime

import pytest
import requests
import responses

from portal.connectors import builtin
from portal.connectors.client import ConnectorClient, ConnectorError, Reply, connector_client, is_transient
from portal.connectors.protocol import UNKNOWN_CONNECTION_ID, ok_response, warning_response
from portal.connectors.service import ConnectorService, ProtocolError
from portal.security.urlguard import UrlNotAllowed

BASE = "http://10.20.30.40:8100/erp"  # never contacted: `responses` intercepts every request


def ok(**payload) -> dict:
    return ok_response(**payload)


@pytest.fixture
def mocked():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield rsps


@pytest.fixture
def sleeps():
    return []


@pytest.fixture
def cc(sleeps):
    with ConnectorClient(BASE, token="tkn", sleep=sleeps.append) as c:
        yield c


def sent(mocked, index: int = -1) -> dict:
    return json.loads(mocked.calls[index].request.body)


# --- request shape -----------------------------------------------------------------------------------------


HELPERS = [
    (lambda c: c.get_config_data(), "GetConfigData", {}, ok(FieldMetaDataObjects=[])),
    (lambda c: c.test_config_data({"A": 1}), "TestConfigData", {"ConnectionInfo": {"A": 1}}, ok()),
    (lambda c: c.save_connection("g", {"A": 1}), "SaveConnection", {"ConnectionGuid": "g", "ConnectionInfo": {"A": 1}},
     ok()),
    (lambda c: c.test_connection("g"), "TestConnection", {"ConnectionGuid": "g"}, ok()),
    (lambda c: c.delete_connection("g"), "DeleteConnection", {"ConnectionGuid": "g"}, ok()),
    (lambda c: c.get_supported_actor_types("g"), "GetSupportedActorTypes", {"ConnectionGuid": "g"}, ok(Items=[])),
    (lambda c: c.get_supported_actor_type_fields("g", "Person"), "GetSupportedActorTypeFields",
     {"ConnectionGuid": "g", "ActorType": "Person"}, ok(FieldMetaDataObjects=[])),
    (lambda c: c.get_searchable_fields("g", "Person"), "GetSearchableFields",
     {"ConnectionGuid": "g", "ActorType": "Person"}, ok(Items=[])),
    (lambda c: c.get_actors("g", "Person", ("k1",), ("f1",)), "GetActors",
     {"ConnectionGuid": "g", "ActorType": "Person", "ErpKeys": ["k1"], "FieldKeys": ["f1"]}, ok(Actors=[])),
    (lambda c: c.search_actors("g", "Person", "x", ["f1"]), "SearchActors",
     {"ConnectionGuid": "g", "ActorType": "Person", "SearchText": "x", "FieldKeys": ["f1"]}, ok(Actors=[])),
    (lambda c: c.search_actors("g", "Person", "x", ["f1"], limit=5), "SearchActors",
     {"ConnectionGuid": "g", "ActorType": "Person", "SearchText": "x", "FieldKeys": ["f1"], "Limit": 5},
     ok(Actors=[])),
    (lambda c: c.search_actor_by_parent("g", "Person", "x", "Customer", "C1", ["f1"]), "SearchActorByParent",
     {"ConnectionGuid": "g", "ActorType": "Person", "SearchText": "x", "ParentActorType": "Customer",
      "ParentErpKey": "C1", "FieldKeys": ["f1"]}, ok(Actors=[])),
    (lambda c: c.search_actors_advanced("g", "Person", [{"FieldKey": "f1", "Operator": "=", "Values": [1]}], []),
     "SearchActorsAdvanced", {"ConnectionGuid": "g", "ActorType": "Person",
                              "Restrictions": [{"FieldKey": "f1", "Operator": "=", "Values": [1]}], "FieldKeys": []},
     ok(Actors=[])),
    (lambda c: c.create_actor("g", {"ActorType": "Person"}), "CreateActor",
     {"ConnectionGuid": "g", "Actor": {"ActorType": "Person"}}, ok(Actor={"ErpKey": "P1"})),
    (lambda c: c.create_actor("g", {"ActorType": "Person"}, "idem"), "CreateActor",
     {"ConnectionGuid": "g", "Actor": {"ActorType": "Person"}, "IdempotencyKey": "idem"}, ok(Actor={"ErpKey": "P1"})),
    (lambda c: c.save_actors("g", [{"ErpKey": "P1"}]), "SaveActors",
     {"ConnectionGuid": "g", "Actors": [{"ErpKey": "P1"}]}, ok(Actors=[])),
    (lambda c: c.get_list("g", "L"), "GetList", {"ConnectionGuid": "g", "ListName": "L"}, ok(ListItems={})),
    (lambda c: c.get_list_items("g", "L", ["a"]), "GetListItems",
     {"ConnectionGuid": "g", "ListName": "L", "ListItemKeys": ["a"]}, ok(ListItems={})),
    (lambda c: c.get_actors_by_timestamp("g", "2026-01-01T00:00:00Z", "Person", ["f1"]), "GetActorsByTimestamp",
     {"ConnectionGuid": "g", "UpdatedOnOrAfter": "2026-01-01T00:00:00Z", "ActorType": "Person", "FieldKeys": ["f1"]},
     ok(Actors=[])),
    (lambda c: c.get_actors_by_timestamp("g", "", "Person", [], limit=10, cursor="abc"), "GetActorsByTimestamp",
     {"ConnectionGuid": "g", "UpdatedOnOrAfter": "", "ActorType": "Person", "FieldKeys": [], "Limit": 10,
      "Cursor": "abc"}, ok(Actors=[], NextCursor=None)),
]


@pytest.mark.parametrize("invoke, method, expected_body, answer", HELPERS)
def test_helpers_send_exact_protocol_members(mocked, cc, invoke, method, expected_body, answer):
    mocked.post(f"{BASE}/{method}", json=answer)
    invoke(cc)
    assert mocked.calls[0].request.url == f"{BASE}/{method}"
    assert sent(mocked) == expected_body
    headers = mocked.calls[0].request.headers
    assert headers["Content-Type"] == "application/json"
    assert headers["Authorization"] == "Bearer tkn"


def test_idempotency_key_is_also_sent_as_header(mocked, cc):
    mocked.post(f"{BASE}/CreateActor", json=ok(Actor={"ErpKey": "C1"}))
    cc.create_actor("g", {"ActorType": "Customer"}, idempotency_key="k-123")
    assert mocked.calls[0].request.headers["Idempotency-Key"] == "k-123"
    cc.create_actor("g", {"ActorType": "Customer"})
    assert "Idempotency-Key" not in mocked.calls[1].request.headers


def test_no_authorization_header_without_token(mocked):
    mocked.post(f"{BASE}/GetConfigData", json=ok(FieldMetaDataObjects=[]))
    ConnectorClient(BASE).get_config_data()
    assert "Authorization" not in mocked.calls[0].request.headers


def test_base_url_trailing_slash_is_tolerated(mocked):
    mocked.post(f"{BASE}/GetConfigData", json=ok(FieldMetaDataObjects=[]))
    ConnectorClient(BASE + "/").get_config_data()
    assert mocked.calls[0].request.url == f"{BASE}/GetConfigData"


def test_unknown_method_and_bad_body_are_programming_errors(cc):
    with pytest.raises(ValueError):
        cc.call("DropDatabase")
    with pytest.raises(TypeError):
        cc.call("GetConfigData", ["not", "a", "dict"])
    with pytest.raises(ValueError):  # NaN is not JSON
        cc.call("TestConfigData", {"ConnectionInfo": {"x": math.nan}})


def test_typed_helpers_return_payload_members(mocked, cc):
    actor = {"ActorType": "Person", "ErpKey": "P1", "FieldValues": {"a": 1}}
    mocked.post(f"{BASE}/GetActorsByTimestamp", json=ok(Actors=[actor], NextCursor="next"))
    mocked.post(f"{BASE}/GetList", json=ok(ListItems={"a": "A"}))
    mocked.post(f"{BASE}/GetSupportedActorTypes", json=ok(Items=["Person"]))
    assert cc.get_actors_by_timestamp("g", "", "Person", []) == ([actor], "next")
    assert cc.get_list("g", "L") == {"a": "A"}
    assert cc.get_supported_actor_types("g") == ["Person"]


# --- replies and errors ------------------------------------------------------------------------------------


def test_reply_properties():
    reply = Reply("GetList", {"IsOk": True, "ListItems": {"a": "A"}})
    assert reply.state == "Ok" and reply.warning is None
    assert reply["ListItems"] == {"a": "A"} and reply.get("Nope", 3) == 3
    warn = Reply("GetList", warning_response("ERP offline", "socket closed"))
    assert warn.state == "Warning" and warn.warning == "ERP offline"
    assert warn.user_explanation == "ERP offline" and warn.tech_explanation == "socket closed"
    assert Reply("X", {"IsOk": True, "State": "Warning"}).warning.startswith("The connector reported a warning")
    with pytest.raises(KeyError):
        reply["Nope"]


def test_is_ok_false_becomes_a_permanent_connector_error(mocked, cc, sleeps):
    mocked.post(f"{BASE}/TestConnection", json={"IsOk": False, "State": "Error", "UserExplanation": "ERP says no",
                                                "TechExplanation": "SQL error 42", "ErrorCode": "ERP_DOWN"})
    with pytest.raises(ConnectorError) as err:
        cc.test_connection("g")
    exc = err.value
    assert str(exc) == "ERP says no" and exc.user_message == "ERP says no"
    assert "SQL error 42" in exc.tech_message and exc.error_code == "ERP_DOWN"
    assert not exc.transient and exc.method == "TestConnection" and sleeps == []
    assert not is_transient(exc)


def test_is_ok_false_without_explanation_gets_a_default_text(mocked, cc):
    mocked.post(f"{BASE}/TestConnection", json={"IsOk": False, "UserExplanation": "  "})
    with pytest.raises(ConnectorError) as err:
        cc.test_connection("g")
    assert err.value.user_message == "The connector reported an error."


def test_tech_message_is_truncated(mocked, cc):
    mocked.post(f"{BASE}/TestConnection", json={"IsOk": False, "TechExplanation": "x" * 10_000})
    with pytest.raises(ConnectorError) as err:
        cc.test_connection("g")
    assert len(err.value.tech_message) <= 2000


def test_connector_error_defaults_and_repr():
    exc = ConnectorError("Readable", tech_message="t", error_code="E")
    assert str(exc) == "Readable" and exc.method == "" and not exc.transient
    assert "Readable" in repr(exc) and "E" in repr(exc)
    assert ConnectorError("x", transient=True).transient and is_transient(ConnectorError("x", transient=True))
    assert is_transient(requests.ConnectTimeout()) and not is_transient(ValueError())
    assert not is_transient(UrlNotAllowed("no"))


@pytest.mark.parametrize("status, transient", [
    (500, True), (502, True), (503, True), (504, True), (408, True), (429, True),
    (400, False), (401, False), (403, False), (404, False), (409, False), (422, False), (204, False),
])
def test_http_status_classification(mocked, sleeps, status, transient):
    mocked.post(f"{BASE}/GetConfigData", body="nope", status=status)
    c = ConnectorClient(BASE, retries=2, sleep=sleeps.append)
    with pytest.raises(ConnectorError) as err:
        c.get_config_data()
    assert err.value.error_code == f"HTTP_{status}" and err.value.transient is transient
    assert c.attempts == (3 if transient else 1) and len(sleeps) == (2 if transient else 0)


def test_error_body_explanations_reach_the_tech_message(mocked, cc):
    mocked.post(f"{BASE}/GetConfigData", status=403,
                json={"IsOk": False, "UserExplanation": "Not authorised.", "ErrorCode": "UNAUTHORIZED"})
    with pytest.raises(ConnectorError) as err:
        cc.get_config_data()
    assert "UNAUTHORIZED" in err.value.tech_message and "HTTP 403" in err.value.tech_message


def test_backoff_is_exponential_with_full_jitter(mocked, monkeypatch, sleeps):
    bounds = []
    monkeypatch.setattr(connector_client.random, "uniform", lambda lo, hi: bounds.append((lo, hi)) or hi / 2)
    mocked.post(f"{BASE}/GetConfigData", status=503)
    c = ConnectorClient(BASE, retries=3, backoff=0.5, sleep=sleeps.append)
    with pytest.raises(ConnectorError):
        c.get_config_data()
    assert bounds == [(0, 0.5), (0, 1.0), (0, 2.0)]
    assert sleeps == [0.25, 0.5, 1.0]


def test_retry_after_http_date_is_honoured(mocked, cc, sleeps):
    when = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=20)
    mocked.post(f"{BASE}/GetConfigData", status=429, headers={"Retry-After": format_datetime(when, usegmt=True)})
    mocked.post(f"{BASE}/GetConfigData", json=ok(FieldMetaDataObjects=[]))
    cc.get_config_data()
    assert len(sleeps) == 1 and 17 <= sleeps[0] <= 20


def test_retry_after_garbage_falls_back_to_backoff(mocked, sleeps):
    mocked.post(f"{BASE}/GetConfigData", status=503, headers={"Retry-After": "soon"})
    mocked.post(f"{BASE}/GetConfigData", json=ok(FieldMetaDataObjects=[]))
    ConnectorClient(BASE, backoff=0.5, sleep=sleeps.append).get_config_data()
    assert len(sleeps) == 1 and 0 <= sleeps[0] <= 0.5


def test_connection_errors_and_timeouts_are_transient(mocked, sleeps):
    mocked.post(f"{BASE}/GetConfigData", body=requests.ConnectionError("boom"))
    mocked.post(f"{BASE}/GetList", body=requests.ReadTimeout("slow"))
    c = ConnectorClient(BASE, retries=1, sleep=sleeps.append)
    with pytest.raises(ConnectorError) as err:
        c.get_config_data()
    assert err.value.error_code == "UNREACHABLE" and err.value.transient
    with pytest.raises(ConnectorError) as err:
        c.get_list("g", "L")
    assert err.value.error_code == "TIMEOUT" and err.value.transient
    assert c.attempts == 4 and len(sleeps) == 2


def test_ssl_errors_are_permanent(mocked, sleeps):
    mocked.post(f"{BASE}/GetConfigData", body=requests.exceptions.SSLError("certificate verify failed"))
    with pytest.raises(ConnectorError) as err:
        ConnectorClient(BASE, sleep=sleeps.append).get_config_data()
    assert not err.value.transient and "certificate" in err.value.user_message and sleeps == []


def test_create_without_idempotency_key_is_retried_only_when_it_never_arrived(mocked, sleeps):
    mocked.post(f"{BASE}/CreateActor", status=503)
    c = ConnectorClient(BASE, retries=3, sleep=sleeps.append)
    with pytest.raises(ConnectorError):
        c.create_actor("g", {"ActorType": "Customer"})
    assert c.attempts == 1  # a 503 may come after the ERP did the work
    mocked.replace(responses.POST, f"{BASE}/CreateActor", status=429)
    with pytest.raises(ConnectorError):
        c.create_actor("g", {"ActorType": "Customer"})
    assert c.attempts == 1 + 4  # rate-limited requests were not processed


def test_redirects_are_never_followed(mocked, cc):
    mocked.post(f"{BASE}/GetConfigData", status=301, headers={"Location": "http://169.254.169.254/latest"})
    with pytest.raises(ConnectorError) as err:
        cc.get_config_data()
    assert err.value.error_code == "REDIRECT" and len(mocked.calls) == 1
    assert "169.254.169.254" in err.value.tech_message


def test_oversized_answer_is_refused(mocked):
    mocked.post(f"{BASE}/GetConfigData", body=json.dumps({"IsOk": True, "Pad": "x" * 2000}))
    with pytest.raises(ConnectorError) as err:
        ConnectorClient(BASE, max_bytes=100).get_config_data()
    assert err.value.error_code == "TOO_LARGE" and "100 bytes" in err.value.user_message


def test_unknown_connection_id_on_save_connection_is_not_resent(mocked):
    mocked.post(f"{BASE}/SaveConnection", json={"IsOk": False, "ErrorCode": UNKNOWN_CONNECTION_ID})
    asked = []
    with pytest.raises(ConnectorError):
        ConnectorClient(BASE, resend_config=asked.append).save_connection("g", {})
    assert asked == [] and len(mocked.calls) == 1


def test_failed_resend_raises_the_save_connection_error(mocked):
    mocked.post(f"{BASE}/TestConnection", json={"IsOk": False, "ErrorCode": UNKNOWN_CONNECTION_ID})
    mocked.post(f"{BASE}/SaveConnection", json={"IsOk": False, "UserExplanation": "Bad settings",
                                                "ErrorCode": "INVALID"})
    with pytest.raises(ConnectorError) as err:
        ConnectorClient(BASE, resend_config=lambda g: {"A": 1}).test_connection("g")
    assert err.value.error_code == "INVALID" and len(mocked.calls) == 2


def test_warning_is_logged_and_collected(mocked, cc, caplog):
    mocked.post(f"{BASE}/TestConnection", json=warning_response("ERP offline"))
    with caplog.at_level(logging.WARNING, logger="portal.connectors.client"):
        reply = cc.test_connection("g")
    assert reply.warning == "ERP offline" and cc.warnings == [("TestConnection", "ERP offline")]
    assert any(r.levelno == logging.WARNING and "ERP offline" in r.getMessage() for r in caplog.records)


def test_calls_are_logged_at_debug_without_secrets(mocked, caplog):
    mocked.post(f"{BASE}/SaveConnection", json=ok())
    mocked.post(f"{BASE}/TestConnection", status=500)
    c = ConnectorClient(BASE, token="tok-XYZ", retries=0)
    with caplog.at_level(logging.DEBUG, logger="portal.connectors.client"):
        c.save_connection("g", {"ApiKey": "pw-ABC"})
        with pytest.raises(ConnectorError):
            c.test_connection("g")
    debug = [r for r in caplog.records if r.levelno == logging.DEBUG]
    assert debug and "SaveConnection" in debug[0].getMessage() and "answered in" in debug[0].getMessage()
    assert any(r.levelno == logging.WARNING and "TestConnection" in r.getMessage() for r in caplog.records)
    assert "tok-XYZ" not in caplog.text and "pw-ABC" not in caplog.text and "tok-XYZ" not in repr(c)


def test_invalid_urls_fail_on_call_with_address_not_allowed():
    for url in ("ftp://host/erp", "http://u:p@host/erp", "http:///erp", "builtin:Bad Name", "", "http://h/erp#x"):
        c = ConnectorClient(url)
        with pytest.raises(ConnectorError) as err:
            c.get_config_data()
        assert err.value.error_code == "ADDRESS_NOT_ALLOWED", url
        assert not err.value.transient


# --- builtin: transport ------------------------------------------------------------------------------------


class TinyService(ConnectorService):
    """A minimal in-process connector for the builtin: transport tests."""

    def __init__(self, config):
        self.config = dict(config)
        self.bodies = []
        self.lost = False

    def GetConfigData(self, body):
        return ok_response(FieldMetaDataObjects=[{"FieldKey": "Path", "DisplayName": self.config.get("LABEL", "")}])

    def SaveConnection(self, body):
        self.bodies.append(("SaveConnection", body))
        self.lost = False
        return ok_response()

    def TestConnection(self, body):
        self.bodies.append(("TestConnection", body))
        if self.lost:
            raise ProtocolError("Who?", "no such connection", UNKNOWN_CONNECTION_ID)
        return warning_response("Half-way there")

    def GetActors(self, body):
        body["ErpKeys"].append("mutated")  # must not leak back into the caller's objects
        return ok_response(Actors=[{"ErpKey": k, "FieldValues": {}} for k in body["ErpKeys"]])

    def GetList(self, body):
        if body["ListName"] == "dates":
            return ok_response(ListItems={"a": dt.date(2026, 1, 1)})
        if body["ListName"] == "nan":
            return ok_response(ListItems={"a": math.nan})
        if body["ListName"] == "big":
            return ok_response(ListItems={"a": "x" * 5000})
        raise ProtocolError("No such list", error_code="UNKNOWN_LIST")

    def DeleteConnection(self, body):
        raise RuntimeError("disk on fire")


@pytest.fixture
def tiny(monkeypatch):
    """Registers builtin:unit-tiny (and a failing factory) and removes them afterwards."""
    monkeypatch.setattr(builtin, "_load", lambda: None)  # the real built-ins may not exist yet
    created = []

    def factory(config):
        service = TinyService(config)
        created.append(service)
        return service

    def broken(config):
        raise KeyError("DEMO_ERP_DB")

    builtin.register("unit-tiny")(factory)
    builtin.register("unit-broken")(broken)
    yield created
    for name in ("unit-tiny", "unit-broken"):
        builtin._FACTORIES.pop(name, None)
    for key in [k for k in builtin._INSTANCES if k[0] in ("unit-tiny", "unit-broken")]:
        builtin._INSTANCES.pop(key, None)


def test_builtin_transport_calls_the_service_in_process(tiny):
    c = ConnectorClient("builtin:unit-tiny", app_config={"LABEL": "Where", "INSTANCE_PATH": "/tmp/unit-tiny"})
    assert c.get_config_data() == [{"FieldKey": "Path", "DisplayName": "Where"}]
    assert tiny[0].config["LABEL"] == "Where"
    assert c.calls == 1 and c.attempts == 1 and c.seconds >= 0


def test_builtin_round_trips_through_json(tiny):
    keys = ("k1", "k2")  # a tuple becomes a JSON array; the service's mutation stays on its copy
    c = ConnectorClient("builtin:unit-tiny", app_config={"INSTANCE_PATH": "/tmp/unit-tiny-2"})
    actors = c.get_actors("g", "Person", keys, [])
    assert [a["ErpKey"] for a in actors] == ["k1", "k2", "mutated"]
    assert keys == ("k1", "k2")


@pytest.mark.parametrize("list_name, code", [("dates", "BAD_RESPONSE"), ("nan", "BAD_RESPONSE"),
                                             ("big", "TOO_LARGE"), ("other", "UNKNOWN_LIST")])
def test_builtin_answers_obey_the_same_rules_as_http(tiny, list_name, code):
    c = ConnectorClient("builtin:unit-tiny", max_bytes=1000, app_config={"INSTANCE_PATH": "/tmp/unit-tiny-3"})
    with pytest.raises(ConnectorError) as err:
        c.get_list("g", list_name)
    assert err.value.error_code == code and not err.value.transient
    if list_name == "dates":
        assert "cannot be encoded as JSON" in err.value.user_message


def test_builtin_service_crash_is_an_error_response(tiny):
    c = ConnectorClient("builtin:unit-tiny", app_config={"INSTANCE_PATH": "/tmp/unit-tiny-4"})
    with pytest.raises(ConnectorError) as err:
        c.delete_connection("g")
    assert err.value.error_code == "INTERNAL_ERROR" and "disk on fire" in err.value.tech_message


def test_builtin_warning_and_resend(tiny):
    c = ConnectorClient("builtin:unit-tiny", app_config={"INSTANCE_PATH": "/tmp/unit-tiny-5"},
                        resend_config=lambda g: {"Path": "/x"})
    assert c.test_connection("g").warning == "Half-way there"
    tiny[0].lost = True
    assert c.test_connection("g").state == "Warning"
    assert [m for m, _ in tiny[0].bodies][-3:] == ["TestConnection", "SaveConnection", "TestConnection"]
    assert tiny[0].bodies[-2][1] == {"ConnectionGuid": "g", "ConnectionInfo": {"Path": "/x"}}
    assert c.warnings == [("TestConnection", "Half-way there")] * 2


def test_unknown_builtin_is_permanent(tiny):
    with pytest.raises(ConnectorError) as err:
        ConnectorClient("builtin:no-such-thing").get_config_data()
    assert err.value.error_code == "UNKNOWN_BUILTIN" and not err.value.transient
    assert "no-such-thing" in err.value.user_message


def test_builtin_factory_failure_is_reported(tiny):
    with pytest.raises(ConnectorError) as err:
        ConnectorClient("builtin:unit-broken").get_config_data()
    assert err.value.error_code == "UNREACHABLE" and not err.value.transient
    assert "DEMO_ERP_DB" in err.value.tech_message

"""ConnectorClient against the fake connector really served on 127.0.0.1 (every method, every error path)."""

from __future__ import annotations

import json
import logging
import socket

import pytest

from portal.connectors.client import ConnectorClient, ConnectorError
from portal.connectors.protocol import UNKNOWN_CONNECTION_ID, ZERO_GUID
from tests.fakes.connector_app import FakeConnector

INFO = {"Company": "Acme ERP", "ApiKey": "secret-api-key"}


@pytest.fixture
def fake(fake_server):
    """tests/conftest.py's ``fake`` (the module's server, reset), also reset after the test."""
    fake_server.reset()
    yield fake_server
    fake_server.reset()


@pytest.fixture
def sleeps():
    return []


@pytest.fixture
def make_client(fake, sleeps):
    clients = []

    def make(url: str | None = None, **kwargs) -> ConnectorClient:
        kwargs.setdefault("sleep", sleeps.append)
        kwargs.setdefault("timeout", 5)
        client = ConnectorClient(url or fake.url, **kwargs)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def guid(fake):
    return fake.add_connection(info=INFO)


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- every method ------------------------------------------------------------------------------------------


def test_get_config_data_returns_field_metadata(make_client):
    fields = make_client().get_config_data()
    assert [f["FieldKey"] for f in fields] == ["Company", "ApiKey", "Region", "PageSize"]
    assert fields[1]["FieldType"] == "Password"


def test_test_config_data_accepts_good_settings_and_reports_bad_ones(make_client, fake):
    client = make_client()
    assert client.test_config_data(INFO).user_explanation == "The settings work."
    with pytest.raises(ConnectorError) as err:
        client.test_config_data({"Company": "Acme", "ApiKey": "wrong"})
    assert err.value.user_message == "The ERP refused the API key."
    assert err.value.error_code == "BAD_CREDENTIALS"
    assert not err.value.transient and err.value.method == "TestConfigData"
    assert fake.calls_to("TestConfigData")[0] == {"ConnectionInfo": INFO}


def test_save_test_and_delete_connection(make_client, fake):
    client = make_client()
    client.save_connection("guid-1", INFO)
    assert fake.connections == {"guid-1": INFO}
    assert client.test_connection("guid-1").state == "Ok"
    client.delete_connection("guid-1")
    assert fake.connections == {}
    with pytest.raises(ConnectorError) as err:
        client.test_connection("guid-1")
    assert err.value.error_code == UNKNOWN_CONNECTION_ID


def test_actor_types_fields_and_searchable_fields(make_client, guid):
    client = make_client()
    assert client.get_supported_actor_types(guid) == ["Customer", "Supplier", "Person", "Project"]
    fields = client.get_supported_actor_type_fields(guid, "Project")
    assert {f["FieldKey"]: f["FieldType"] for f in fields}["status"] == "List"
    assert "name" in client.get_searchable_fields(guid, "Customer")
    with pytest.raises(ConnectorError) as err:
        client.get_supported_actor_type_fields(guid, "Spaceship")
    assert err.value.error_code == "UNKNOWN_ACTOR_TYPE"


def test_get_actors_leaves_out_unknown_keys(make_client, fake, guid):
    acme = fake.add_actor("Customer", {"name": "Acme", "email": "a@example.com"})
    actors = make_client().get_actors(guid, "Customer", [acme, "C-gone"], ["name"])
    assert [a["ErpKey"] for a in actors] == [acme]
    assert actors[0]["FieldValues"] == {"name": "Acme"}
    assert fake.calls_to("GetActors")[0] == {"ConnectionGuid": guid, "ActorType": "Customer",
                                             "ErpKeys": [acme, "C-gone"], "FieldKeys": ["name"]}


def test_search_actors_by_text_with_limit(make_client, fake, guid):
    for name in ("Acme", "Acme Nord", "Beta"):
        fake.add_actor("Customer", {"name": name})
    client = make_client()
    assert [a["FieldValues"]["name"] for a in client.search_actors(guid, "Customer", "acme", ["name"])] == [
        "Acme", "Acme Nord"]
    assert len(client.search_actors(guid, "Customer", "", ["name"])) == 3
    assert len(client.search_actors(guid, "Customer", "", ["name"], limit=2)) == 2
    assert "Limit" not in fake.calls_to("SearchActors")[0]
    assert fake.calls_to("SearchActors")[2]["Limit"] == 2


def test_search_actor_by_parent(make_client, fake, guid):
    acme = fake.add_actor("Customer", {"name": "Acme"})
    beta = fake.add_actor("Customer", {"name": "Beta"})
    fake.add_actor("Person", {"lastname": "Nordmann"}, parent=("Customer", acme))
    fake.add_actor("Person", {"lastname": "Hansen"}, parent=("Customer", beta))
    people = make_client().search_actor_by_parent(guid, "Person", "", "Customer", acme, ["lastname"])
    assert [p["FieldValues"]["lastname"] for p in people] == ["Nordmann"]
    assert people[0]["ParentErpKey"] == acme


def test_search_actors_advanced(make_client, fake, guid):
    fake.add_actor("Customer", {"name": "Acme", "employees": 50, "country": "NO", "founded": "2001-05-01"})
    fake.add_actor("Customer", {"name": "Beta", "employees": 5, "country": "SE", "founded": "2020-01-01"})
    client = make_client()

    def names(restrictions):
        return [a["FieldValues"]["name"] for a in client.search_actors_advanced(guid, "Customer", restrictions,
                                                                                 ["name"])]

    assert names([{"FieldKey": "employees", "Operator": ">=", "Values": [10]}]) == ["Acme"]
    assert names([{"FieldKey": "country", "Operator": "oneof", "Values": ["SE", "DK"]}]) == ["Beta"]
    assert names([{"FieldKey": "name", "Operator": "begins", "Values": ["a"]},
                  {"FieldKey": "founded", "Operator": "before", "Values": ["2010-01-01"]}]) == ["Acme"]
    with pytest.raises(ConnectorError) as err:
        names([{"FieldKey": "employees", "Operator": "contains", "Values": ["5"]}])
    assert err.value.error_code == "BAD_RESTRICTION"


def test_create_actor_with_idempotency_key_creates_once(make_client, fake, guid):
    client = make_client()
    actor = {"ActorType": "Customer", "FieldValues": {"name": "Acme", "country": "NO"}}
    first = client.create_actor(guid, actor, idempotency_key="key-1")
    again = client.create_actor(guid, actor, idempotency_key="key-1")
    assert first["ErpKey"] and again["ErpKey"] == first["ErpKey"]
    assert first["LastModified"].endswith("Z")
    assert len(fake.service.created) == 1
    assert fake.requests[0].headers["Idempotency-Key"] == "key-1"
    assert fake.calls_to("CreateActor")[0]["IdempotencyKey"] == "key-1"
    client.create_actor(guid, actor)
    assert "IdempotencyKey" not in fake.calls_to("CreateActor")[2]
    assert len(fake.service.created) == 2


def test_create_actor_reports_connector_validation_errors(make_client, guid):
    with pytest.raises(ConnectorError) as err:
        make_client().create_actor(guid, {"ActorType": "Customer", "FieldValues": {"name": "X", "employees": "7"}})
    assert err.value.error_code == "INVALID_VALUE"
    assert "Employees" in err.value.user_message


def test_save_actors_updates_values_and_last_modified(make_client, fake, guid):
    key = fake.add_actor("Customer", {"name": "Acme", "phone": "1"})
    before = fake.get_actor("Customer", key)["LastModified"]
    saved = make_client().save_actors(guid, [{"ActorType": "Customer", "ErpKey": key,
                                              "FieldValues": {"phone": "2"}}])
    assert saved[0]["FieldValues"]["phone"] == "2" and saved[0]["FieldValues"]["name"] == "Acme"
    assert saved[0]["LastModified"] > before
    with pytest.raises(ConnectorError) as err:
        make_client().save_actors(guid, [{"ActorType": "Customer", "ErpKey": "nope", "FieldValues": {}}])
    assert err.value.error_code == "UNKNOWN_ERP_KEY"


def test_get_list_and_list_items_work_with_the_zero_guid(make_client, fake):
    client = make_client()
    assert client.get_list(ZERO_GUID, "Countries")["NO"] == "Norway"
    assert client.get_list_items(ZERO_GUID, "Countries", ["SE", "XX"]) == {"SE": "Sweden"}
    assert fake.calls_to("GetListItems")[0]["ListItemKeys"] == ["SE", "XX"]


def test_get_actors_by_timestamp_is_inclusive_and_pages_with_a_cursor(make_client, fake, guid):
    keys = [fake.add_actor("Customer", {"name": f"N{i}"}) for i in range(5)]
    stamps = [fake.get_actor("Customer", k)["LastModified"] for k in keys]
    client = make_client()
    since_third, cursor = client.get_actors_by_timestamp(guid, stamps[2], "Customer", ["name"])
    assert [a["ErpKey"] for a in since_third] == keys[2:] and cursor is None
    seen, cursor, pages = [], None, 0
    while True:
        page, cursor = client.get_actors_by_timestamp(guid, "", "Customer", ["name"], limit=2, cursor=cursor)
        seen += [a["ErpKey"] for a in page]
        pages += 1
        if cursor is None:
            break
    assert seen == keys and pages == 3
    bodies = fake.calls_to("GetActorsByTimestamp")
    assert "Cursor" not in bodies[1] and bodies[2]["Cursor"] and bodies[2]["Limit"] == 2


# --- error paths -------------------------------------------------------------------------------------------


def test_connection_refused_is_transient_and_retried(make_client, sleeps):
    client = make_client(f"http://127.0.0.1:{unused_port()}/erp", retries=2, backoff=0.1)
    with pytest.raises(ConnectorError) as err:
        client.get_config_data()
    assert err.value.error_code == "UNREACHABLE" and err.value.transient
    assert "could not be reached" in err.value.user_message
    assert client.attempts == 3 and client.calls == 1
    assert len(sleeps) == 2 and 0 <= sleeps[0] <= 0.1 and 0 <= sleeps[1] <= 0.2


def test_slow_answer_times_out(make_client, fake):
    fake.delay(1.0)
    client = make_client(timeout=0.2, retries=0)
    with pytest.raises(ConnectorError) as err:
        client.get_list(ZERO_GUID, "Countries")
    assert err.value.error_code == "TIMEOUT" and err.value.transient
    assert "did not answer within 0.2 s" in err.value.user_message
    assert 0.15 < client.seconds < 0.9


def test_timeout_then_success_is_retried(make_client, fake, sleeps):
    fake.delay(1.0, times=1)
    client = make_client(timeout=0.2, retries=1)
    assert client.get_list(ZERO_GUID, "Countries")["SE"] == "Sweden"
    assert client.attempts == 2 and len(sleeps) == 1


def test_server_error_then_success_is_retried(make_client, fake, sleeps):
    fake.fail_next(1, status=500)
    client = make_client(backoff=0.5)
    assert client.get_config_data()
    assert client.attempts == 2 and client.calls == 1
    assert len(sleeps) == 1 and 0 <= sleeps[0] <= 0.5
    assert [c[0] for c in fake.calls] == ["GetConfigData", "GetConfigData"]


def test_retries_give_up_with_the_last_error(make_client, fake, sleeps):
    fake.fail_next(10, status=502)
    client = make_client(retries=3)
    with pytest.raises(ConnectorError) as err:
        client.get_config_data()
    assert err.value.error_code == "HTTP_502" and err.value.transient
    assert client.attempts == 4 and len(sleeps) == 3 and len(fake.calls) == 4


def test_retry_after_is_honoured_and_capped(make_client, fake, sleeps):
    fake.fail_next(1, status=429, retry_after=2)
    fake.fail_next(1, status=503, retry_after=3600)
    make_client().get_config_data()
    assert sleeps == [2.0, 30.0]


def test_not_found_is_permanent_and_not_retried(make_client, fake, sleeps):
    fake.fail_next(1, status=404)
    client = make_client()
    with pytest.raises(ConnectorError) as err:
        client.get_config_data()
    assert err.value.error_code == "HTTP_404" and not err.value.transient
    assert len(fake.calls) == 1 and sleeps == [] and client.attempts == 1


def test_unknown_path_of_a_real_server_is_a_404(make_client, fake):
    # a base URL pointing at the wrong place: make_wsgi_app answers 404 for a path that is no method
    with pytest.raises(ConnectorError) as err:
        make_client(fake.url + "/nested").get_config_data()
    assert err.value.error_code == "HTTP_404"
    assert "UNKNOWN_METHOD" in err.value.tech_message


def test_html_answer_is_a_bad_response(make_client, fake):
    fake.reply_raw("<html><body>" + "Welcome to nginx! " * 100 + "</body></html>", content_type="text/html")
    with pytest.raises(ConnectorError) as err:
        make_client().get_config_data()
    exc = err.value
    assert exc.error_code == "BAD_RESPONSE" and not exc.transient
    assert "could not understand" in exc.user_message and "<html>" not in exc.user_message
    assert "<html>" in exc.tech_message
    assert len(exc.tech_message) < 800  # the raw body is quoted up to 500 characters only


@pytest.mark.parametrize("raw, detail", [
    (b"[1, 2, 3]", "not a JSON object"),
    (b'"IsOk"', "not a JSON object"),
    (b"{}", "no IsOk"),
    (b'{"IsOk": "true"}', "no IsOk"),
    (b'{"IsOk": true, "X": NaN}', "not valid JSON"),
    (b"", "not valid JSON"),
])
def test_answers_that_are_not_protocol_objects_are_bad_responses(make_client, fake, raw, detail):
    fake.reply_raw(raw)
    with pytest.raises(ConnectorError) as err:
        make_client().call("GetConfigData")
    assert err.value.error_code == "BAD_RESPONSE"
    assert detail in err.value.user_message


def test_oversized_answer_with_content_length_is_refused(make_client, fake):
    fake.reply_raw(json.dumps({"IsOk": True, "Pad": "x" * 5000}))
    with pytest.raises(ConnectorError) as err:
        make_client(max_bytes=1024).call("GetConfigData")
    assert err.value.error_code == "TOO_LARGE" and not err.value.transient
    assert "1 KB" in err.value.user_message


def test_oversized_streamed_answer_is_cut_off(make_client, fake):
    fake.reply_raw([b'{"IsOk": true, "Pad": "', b"x" * 4000, b"x" * 4000, b'"}'])
    with pytest.raises(ConnectorError) as err:
        make_client(max_bytes=3000).call("GetConfigData")
    assert err.value.error_code == "TOO_LARGE"
    fake.reply_raw([b'{"IsOk": true, ', b'"Pad": "x"}'])
    assert make_client(max_bytes=3000).call("GetConfigData")["Pad"] == "x"


def test_redirect_is_refused_not_followed(make_client, fake, sleeps):
    fake.redirect_next(fake.url + "/GetConfigData", status=307)
    with pytest.raises(ConnectorError) as err:
        make_client().get_config_data()
    assert err.value.error_code == "REDIRECT" and not err.value.transient
    assert len(fake.calls) == 1 and sleeps == []


def test_unknown_connection_id_resends_the_config_and_retries_once(make_client, fake, guid):
    fake.add_actor("Customer", {"name": "Acme"})
    fake.forget_connections()
    asked = []

    def resend(g):
        asked.append(g)
        return INFO

    client = make_client(resend_config=resend)
    actors = client.search_actors(guid, "Customer", "", ["name"])
    assert [a["FieldValues"]["name"] for a in actors] == ["Acme"]
    assert asked == [guid]
    assert [m for m, _ in fake.calls] == ["SearchActors", "SaveConnection", "SearchActors"]
    assert fake.calls[1][1] == {"ConnectionGuid": guid, "ConnectionInfo": INFO}
    assert fake.connections == {guid: INFO}
    assert client.calls == 3


def test_unknown_connection_id_twice_gives_up(make_client, fake, guid):
    fake.reply_error("GetSupportedActorTypes", "Lost it", error_code=UNKNOWN_CONNECTION_ID, times=2)
    client = make_client(resend_config=lambda g: INFO)
    with pytest.raises(ConnectorError) as err:
        client.get_supported_actor_types(guid)
    assert err.value.error_code == UNKNOWN_CONNECTION_ID and err.value.user_message == "Lost it"
    assert [m for m, _ in fake.calls] == ["GetSupportedActorTypes", "SaveConnection", "GetSupportedActorTypes"]


def test_unknown_connection_id_without_stored_config_is_an_error(make_client, fake, guid):
    fake.forget_connections()
    with pytest.raises(ConnectorError) as err:
        make_client(resend_config=lambda g: None).test_connection(guid)
    assert err.value.error_code == UNKNOWN_CONNECTION_ID
    assert [m for m, _ in fake.calls] == ["TestConnection"]


def test_warning_state_is_surfaced(make_client, fake, guid, caplog):
    key = fake.add_actor("Customer", {"name": "Acme"})
    fake.reply_warning("GetActors", "The ERP is offline; data may be stale.")
    client = make_client()
    with caplog.at_level(logging.WARNING, logger="portal.connectors.client"):
        actors = client.get_actors(guid, "Customer", [key], ["name"])
    assert actors[0]["ErpKey"] == key
    assert client.warnings == [("GetActors", "The ERP is offline; data may be stale.")]
    assert "The ERP is offline" in caplog.text
    fake.reply_warning("TestConnection", "")
    reply = client.test_connection(guid)
    assert reply.state == "Warning" and reply.warning and "warning" in reply.warning.lower()
    assert len(client.warnings) == 2
    assert client.test_connection(guid).warning is None


def test_bearer_token_is_sent_and_never_logged(caplog):
    with FakeConnector(token="s3cret-token") as fake:
        with caplog.at_level(logging.DEBUG):
            with ConnectorClient(fake.url, token="s3cret-token", sleep=lambda s: None) as client:
                assert client.get_config_data()
            assert fake.requests[0].headers["Authorization"] == "Bearer s3cret-token"
            assert fake.requests[0].headers["Content-Type"] == "application/json"
            wrong = ConnectorClient(fake.url, token="not-it", sleep=lambda s: None)
            with wrong, pytest.raises(ConnectorError) as err:
                wrong.save_connection("g", {"Company": "X", "ApiKey": "hush-hush"})
            assert err.value.error_code == "HTTP_401" and not err.value.transient
            assert "token" in err.value.user_message
            assert len(fake.requests) == 2  # 401 is not retried
        assert "s3cret-token" not in caplog.text and "not-it" not in caplog.text
        assert "hush-hush" not in caplog.text
        assert "s3cret-token" not in repr(client)


def test_connect_time_check_refuses_a_peer_outside_the_allowlist(make_client, fake):
    url = f"http://localhost:{fake.port}/erp"  # a host name that resolves to 127.0.0.1
    client = make_client(url, allowed_networks=["10.0.0.0/8"])
    with pytest.raises(ConnectorError) as err:
        client.get_config_data()
    assert err.value.error_code == "ADDRESS_NOT_ALLOWED" and not err.value.transient
    assert "127.0.0.1" in err.value.user_message
    assert fake.calls == []  # not one byte of the request was sent
    assert make_client(url, allowed_networks=["127.0.0.1/32"]).get_config_data()


def test_invalid_url_is_reported_by_call_not_the_constructor(make_client, fake):
    client = make_client("ftp://127.0.0.1/erp")
    with pytest.raises(ConnectorError) as err:
        client.get_config_data()
    assert err.value.error_code == "ADDRESS_NOT_ALLOWED"
    with pytest.raises(ConnectorError):
        make_client(f"http://user:pw@127.0.0.1:{fake.port}/erp").get_config_data()
    assert fake.calls == []


def test_create_without_idempotency_key_is_not_repeated_after_a_timeout(make_client, fake, guid, sleeps):
    fake.delay(1.0, method="CreateActor", times=1, after_processing=True)
    client = make_client(timeout=0.2, retries=3)
    with pytest.raises(ConnectorError) as err:
        client.create_actor(guid, {"ActorType": "Customer", "FieldValues": {"name": "Acme"}})
    assert err.value.error_code == "TIMEOUT" and err.value.transient  # the outbox decides what to do
    assert client.attempts == 1 and sleeps == []
    assert len(fake.service.created) == 1  # the create happened; only the answer was lost


def test_create_with_idempotency_key_is_retried_safely_after_a_timeout(make_client, fake, guid, sleeps):
    fake.delay(1.0, method="CreateActor", times=1, after_processing=True)
    client = make_client(timeout=0.2, retries=3)
    actor = client.create_actor(guid, {"ActorType": "Customer", "FieldValues": {"name": "Acme"}}, "idem-7")
    assert client.attempts == 2 and len(sleeps) == 1
    assert len(fake.service.created) == 1 and fake.service.created[0]["ErpKey"] == actor["ErpKey"]


def test_counters_and_connector_time(make_client, fake):
    fake.delay(0.1, times=1)
    client = make_client()
    client.get_config_data()
    client.get_list(ZERO_GUID, "Countries")
    assert client.calls == 2 and client.attempts == 2
    assert 0.09 <= client.seconds < 2


@pytest.mark.parametrize("method, payload, call", [
    ("GetConfigData", {"FieldMetaDataObjects": [{"DisplayName": "no key"}]}, lambda c: c.get_config_data()),
    ("GetConfigData", {}, lambda c: c.get_config_data()),
    ("GetSupportedActorTypes", {"Items": ["Customer", 7]}, lambda c: c.get_supported_actor_types("g")),
    ("GetSearchableFields", {"Items": "name"}, lambda c: c.get_searchable_fields("g", "Customer")),
    ("GetActors", {"Actors": {"ErpKey": "1"}}, lambda c: c.get_actors("g", "Customer", ["1"], [])),
    ("SearchActors", {"Actors": ["C1"]}, lambda c: c.search_actors("g", "Customer", "", [])),
    ("SearchActors", {"Actors": [{"ErpKey": "C1", "FieldValues": ["x"]}]},
     lambda c: c.search_actors("g", "Customer", "", [])),
    ("CreateActor", {"Actor": {"ActorType": "Customer"}}, lambda c: c.create_actor("g", {"ActorType": "Customer"})),
    ("CreateActor", {"Actor": "C1"}, lambda c: c.create_actor("g", {"ActorType": "Customer"})),
    ("GetList", {"ListItems": [["NO", "Norway"]]}, lambda c: c.get_list("g", "Countries")),
    ("GetListItems", {"ListItems": {"NO": 1}}, lambda c: c.get_list_items("g", "Countries", ["NO"])),
    ("GetActorsByTimestamp", {"Actors": [], "NextCursor": 5},
     lambda c: c.get_actors_by_timestamp("g", "", "Customer", [], limit=1)),
])
def test_garbage_payloads_are_bad_responses(make_client, fake, method, payload, call):
    fake.reply_raw(json.dumps({"IsOk": True, "State": "Ok", **payload}), method=method)
    with pytest.raises(ConnectorError) as err:
        call(make_client())
    assert err.value.error_code == "BAD_RESPONSE" and err.value.method == method
    assert "could not understand" in err.value.user_message

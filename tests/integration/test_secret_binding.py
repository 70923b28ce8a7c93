"""Stored secrets cannot be exfiltrated by an admin (security review finding).

* A secret carried between the steps of the connection form is *sealed*: bound to that connection (or that
  new-connection form), its field, the connector and the addresses it was typed for, for 30 minutes. A ciphertext
  from the database, from another connection's form or an expired one is refused with "Enter the password again"
  and never decrypted nor sent to a connector.
* A new address gets no stored secret: a connector saved with a new URL needs its token typed again (or removed)
  and clears the stored passwords of its connections; a connection whose own URL field changes needs its
  passwords typed again.

Every test looks at what the loopback fake connector(s) really received.
"""

from __future__ import annotations

import copy
import json
import re

import pytest
from sqlalchemy import select

from portal.connectors.protocol import field_metadata, ok_response
from portal.extensions import db
from portal.models import AuditEvent, Connection, Connector
from portal.security import crypto
from portal.services import connections as service
from tests.conftest import form_of
from tests.fakes.connector_app import CONFIG_FIELDS, FakeConnector, FakeConnectorService
from tests.integration import helpers_mapping

connector = helpers_mapping.connector
connection_form = helpers_mapping.connection_form
define_connection = helpers_mapping.define_connection

NEW = "/settings/connections/new"
AGAIN = "Enter the password again"


def _hidden(html: str, name: str) -> str:
    match = re.search(rf'name="{re.escape(name)}"[^>]*value="([^"]*)"', html) or \
        re.search(rf'value="([^"]*)"[^>]*name="{re.escape(name)}"', html)
    assert match, f"no {name} in the form"
    return match.group(1)


def _edit(connection_id: int) -> str:
    return f"/settings/connections/{connection_id}/edit"


def _secret_sent(fake: FakeConnector, secret: str) -> bool:
    """Did ``secret`` reach the fake in any body or header?"""
    return any(secret in json.dumps(r.body) or secret in json.dumps(r.headers) for r in fake.requests)


def _typed_then_sealed(admin_client, url: str, data: dict) -> tuple[str, str]:
    """Test with the secret typed; returns (sealed ApiKey, test token) of the answer."""
    tested = admin_client.post(url, data={**data, "action": "test"}, htmx=True)
    html = tested.get_data(as_text=True)
    assert tested.status_code == 200, html
    return _hidden(html, "sealed_ApiKey"), _hidden(html, "test_token")


def _audit(app, action: str) -> list[AuditEvent]:
    with app.app_context():
        return list(db.session.scalars(select(AuditEvent).where(AuditEvent.action == action)))


# --- the honest flows still work ----------------------------------------------------------------------------------

def test_test_then_ok_carries_the_typed_secret_sealed(app, admin_client, connector, fake):
    data = connection_form(connector)
    tested = admin_client.post(NEW, data={**data, "action": "test"}, htmx=True)
    html = tested.get_data(as_text=True)
    assert "s3cret-key" not in html and _hidden(html, "sealed_ApiKey")
    hidden = {k: v for k, v in form_of(html).items() if k == "test_token" or not k.startswith(("cfg_", "scope"))}
    saved = admin_client.post(NEW, htmx=True, data={**data, **hidden, "cfg_ApiKey": "", "action": "save"})
    assert "HX-Redirect" in saved.headers, saved.get_data(as_text=True)
    assert fake.calls_to("SaveConnection")[-1]["ConnectionInfo"]["ApiKey"] == "s3cret-key"


def test_editing_an_existing_connection_test_then_ok_with_a_new_secret(app, admin_client, connector, fake):
    connection_id = define_connection(admin_client, connector)
    data = connection_form(connector, cfg_ApiKey="rotated-key")
    sealed, token = _typed_then_sealed(admin_client, _edit(connection_id), data)
    saved = admin_client.post(_edit(connection_id), htmx=True, data={
        **data, "cfg_ApiKey": "", "sealed_ApiKey": sealed, "test_token": token, "action": "save"})
    assert "HX-Redirect" in saved.headers, saved.get_data(as_text=True)
    with app.app_context():
        assert service.full_config(db.session.get(Connection, connection_id))["ApiKey"] == "rotated-key"


def test_editing_without_touching_secrets_keeps_them(app, admin_client, connector, fake):
    connection_id = define_connection(admin_client, connector)
    data = {**connection_form(connector, cfg_ApiKey=""), "action": "test"}
    tested = admin_client.post(_edit(connection_id), data=data, htmx=True)
    assert tested.status_code == 200, tested.get_data(as_text=True)
    assert fake.calls_to("TestConfigData")[-1]["ConnectionInfo"]["ApiKey"] == "s3cret-key"  # same address
    renamed = admin_client.post(_edit(connection_id), htmx=True,
                                data={**connection_form(connector, name="Renamed", cfg_ApiKey=""), "action": "save"})
    assert "HX-Redirect" in renamed.headers, renamed.get_data(as_text=True)
    with app.app_context():
        assert service.full_config(db.session.get(Connection, connection_id))["ApiKey"] == "s3cret-key"


# --- 1. sealed values are bound -----------------------------------------------------------------------------------

def test_a_database_ciphertext_posted_as_sealed_value_is_refused_and_never_sent(app, admin_client, connector, fake):
    connection_id = define_connection(admin_client, connector)
    with app.app_context():
        stored = db.session.get(Connection, connection_id).secrets_encrypted
        other = Connector(name="Other", url=fake.url, token_encrypted=crypto.encrypt("connector-t0ken"))
        db.session.add(other)
        db.session.commit()
        ciphertexts = [stored, other.token_encrypted, crypto.encrypt("s3cret-key"),
                       crypto.encrypt(json.dumps({"purpose": "connection-secret", "value": "s3cret-key"}))]
    before = len(fake.requests)
    for ciphertext in ciphertexts:
        for url in (NEW, _edit(connection_id)):
            data = {**connection_form(connector, name="Thief", cfg_ApiKey=""), "sealed_ApiKey": ciphertext,
                    "action": "test"}
            response = admin_client.post(url, data=data, htmx=True)
            html = response.get_data(as_text=True)
            assert response.status_code == 422 and AGAIN in html, html
            assert "connector-t0ken" not in html and "s3cret-key" not in html
    sent = fake.requests[before:]
    assert not [r for r in sent if r.method in ("TestConfigData", "SaveConnection", "TestConnection")]
    assert not any("connector-t0ken" in json.dumps(r.body) for r in sent)


def test_a_sealed_value_from_connection_a_is_refused_in_connection_b(app, admin_client, connector, fake):
    first = define_connection(admin_client, connector, name="A")
    second = define_connection(admin_client, connector, name="B", cfg_ApiKey="b-key")
    sealed, _ = _typed_then_sealed(admin_client, _edit(first), connection_form(connector, name="A",
                                                                                cfg_ApiKey="a-only-key"))
    before = len(fake.requests)
    data = {**connection_form(connector, name="B", cfg_ApiKey=""), "sealed_ApiKey": sealed, "action": "test"}
    response = admin_client.post(_edit(second), data=data, htmx=True)
    assert response.status_code == 422 and AGAIN in response.get_data(as_text=True)
    # nor in a new-connection form
    response = admin_client.post(NEW, data={**data, "name": "C"}, htmx=True)
    assert response.status_code == 422 and AGAIN in response.get_data(as_text=True)
    assert all(r.method in ("GetConfigData", "GetList") for r in fake.requests[before:])
    assert not any("a-only-key" in json.dumps(r.body) for r in fake.requests[before:])
    # the same sealed value in its own form still works
    ok = admin_client.post(_edit(first), htmx=True, data={
        **connection_form(connector, name="A", cfg_ApiKey=""), "sealed_ApiKey": sealed, "action": "test"})
    assert ok.status_code == 200 and fake.calls_to("TestConfigData")[-1]["ConnectionInfo"]["ApiKey"] == "a-only-key"


def test_a_sealed_value_from_another_new_connection_form_is_refused(admin_client, connector, fake):
    data = connection_form(connector, cfg_ApiKey="first-form-key")
    tested = admin_client.post(NEW, data={**data, "action": "test"}, htmx=True).get_data(as_text=True)
    sealed = _hidden(tested, "sealed_ApiKey")
    before = len(fake.requests)
    other_form = {**data, "cfg_ApiKey": "", "sealed_ApiKey": sealed, "form_nonce": "x" * 24, "action": "test"}
    response = admin_client.post(NEW, data=other_form, htmx=True)
    assert response.status_code == 422 and AGAIN in response.get_data(as_text=True)
    assert all(r.method != "TestConfigData" for r in fake.requests[before:])


def test_an_expired_sealed_value_is_refused(app, admin_client, connector, fake, monkeypatch):
    data = connection_form(connector)
    tested = admin_client.post(NEW, data={**data, "action": "test"}, htmx=True).get_data(as_text=True)
    carried = {**data, "cfg_ApiKey": "", "sealed_ApiKey": _hidden(tested, "sealed_ApiKey"),
               "form_nonce": _hidden(tested, "form_nonce"), "test_token": _hidden(tested, "test_token")}
    real_now = crypto._now
    monkeypatch.setattr(crypto, "_now", lambda: real_now() + 31 * 60)
    before = len(fake.requests)
    response = admin_client.post(NEW, data={**carried, "action": "save"}, htmx=True)
    html = response.get_data(as_text=True)
    assert response.status_code == 422 and AGAIN in html and "30 minutes" in html
    assert all(r.method not in ("TestConfigData", "SaveConnection") for r in fake.requests[before:])
    with app.app_context():
        assert db.session.scalars(select(Connection)).all() == []
    # a shorter time to live from the app's settings
    monkeypatch.setattr(crypto, "_now", lambda: real_now() + 5)
    app.config["SEALED_SECRET_TTL"] = 2
    response = admin_client.post(NEW, data={**carried, "action": "test"}, htmx=True)
    assert response.status_code == 422 and AGAIN in response.get_data(as_text=True)


def test_sealed_values_open_only_with_their_binding():
    keys = [crypto.Fernet.generate_key().decode()]
    binding = {"connection": "g", "connector": 1, "connector_url": "http://a", "addresses": {}, "user": 1}
    token = crypto.seal("pw", purpose="connection-secret", binding=binding, keys=keys)
    assert crypto.unseal(token, purpose="connection-secret", binding=binding, ttl=60, keys=keys) == "pw"
    for purpose, other in (("other", binding), ("connection-secret", {**binding, "connector_url": "http://b"}),
                           ("connection-secret", {**binding, "connection": "h"})):
        with pytest.raises(crypto.SealedValueRefused):
            crypto.unseal(token, purpose=purpose, binding=other, ttl=60, keys=keys)
    with pytest.raises(crypto.SecretError):  # not a storage ciphertext either: keys derived for sealing only
        crypto.decrypt(token, keys)
    with pytest.raises(crypto.SealedValueRefused):  # a storage ciphertext under the same key
        crypto.unseal(crypto.encrypt(json.dumps({"purpose": "connection-secret", "binding": binding, "value": "x"}),
                                     keys), purpose="connection-secret", binding=binding, ttl=60, keys=keys)


# --- 2a. a connector moved to a new URL ---------------------------------------------------------------------------

@pytest.fixture
def guarded_old():
    with FakeConnector(token="old-t0ken") as old:
        yield old


@pytest.fixture
def new_host():
    with FakeConnector() as new:
        yield new


def _connector_with_token(app, fake: FakeConnector, token: str) -> int:
    with app.app_context():
        row = Connector(name="Fake ERP", url=fake.url, token_encrypted=crypto.encrypt(token))
        db.session.add(row)
        db.session.commit()
        return row.id


def test_connector_url_change_needs_the_token_again_and_clears_connection_secrets(app, admin_client, guarded_old,
                                                                                 new_host):
    connector_id = _connector_with_token(app, guarded_old, "old-t0ken")
    connection_id = define_connection(admin_client, connector_id)
    with app.app_context():
        db.session.get(Connection, connection_id).active = True
        db.session.commit()
    url = f"/settings/connectors/{connector_id}/edit"

    # a new URL with the token left blank: refused on the token field, nothing sent anywhere
    refused = admin_client.post(url, data={"name": "Fake ERP", "url": new_host.url, "token": ""}, htmx=True)
    html = refused.get_data(as_text=True)
    assert refused.status_code == 422 and "enter the access token again" in html
    assert new_host.requests == []
    with app.app_context():
        row = db.session.get(Connector, connector_id)
        assert row.url == guarded_old.url and row.token_encrypted
        assert service.full_config(db.session.get(Connection, connection_id))["ApiKey"] == "s3cret-key"

    # removing the token explicitly: saved; the connections' passwords are cleared
    moved = admin_client.post(url, data={"name": "Fake ERP", "url": new_host.url, "token": "", "clear_token": "y"},
                              htmx=True)
    assert "HX-Redirect" in moved.headers, moved.get_data(as_text=True)
    toast = json.loads(moved.headers["HX-Trigger"])["toast"][0]
    assert toast["level"] == "warning" and "Fake production" in toast["message"]
    assert [r.method for r in new_host.requests] == ["GetConfigData"]  # the probe, without the old token
    assert not _secret_sent(new_host, "old-t0ken") and "Authorization" not in new_host.requests[0].headers
    with app.app_context():
        row = db.session.get(Connector, connector_id)
        connection = db.session.get(Connection, connection_id)
        assert row.url == new_host.url and row.token_encrypted is None
        assert "ApiKey" not in service.full_config(connection)
        assert service.secrets_to_reenter(connection) == ["ApiKey"]
        assert connection.active is False and connection.last_test_ok is False
    cleared = _audit(app, "connection.secrets_cleared")
    assert len(cleared) == 1 and cleared[0].after["reenter"] == ["ApiKey"] and "s3cret" not in json.dumps(
        [cleared[0].before, cleared[0].after])

    # Test (list button) and activation are refused and send nothing secret to the new host
    tested = admin_client.post(f"/settings/connections/{connection_id}/test", htmx=True)
    assert "enter them again" in json.loads(tested.headers["HX-Trigger"])["toast"][0]["message"]
    activate = admin_client.post(f"/settings/connections/{connection_id}/activate", htmx=True)
    assert activate.status_code == 422 and "enter them again" in activate.get_data(as_text=True)
    # the form asks for the password again; a blank one is refused before any call
    page = admin_client.get(_edit(connection_id)).get_data(as_text=True)
    assert "enter it again" in page
    blank = admin_client.post(_edit(connection_id), htmx=True,
                              data={**connection_form(connector_id, cfg_ApiKey=""), "action": "test"})
    assert blank.status_code == 422 and AGAIN in blank.get_data(as_text=True)
    assert not _secret_sent(new_host, "s3cret-key")
    assert not new_host.calls_to("TestConfigData")
    # (rendering the form asks the new host for list items; it re-sends the config it lacks, without secrets)
    assert all("ApiKey" not in body["ConnectionInfo"] for body in new_host.calls_to("SaveConnection"))

    # typed again: tested and saved at the new address, the mark is gone
    data = connection_form(connector_id, cfg_ApiKey="new-host-key")
    sealed, token = _typed_then_sealed(admin_client, _edit(connection_id), data)
    saved = admin_client.post(_edit(connection_id), htmx=True, data={
        **data, "cfg_ApiKey": "", "sealed_ApiKey": sealed, "test_token": token, "action": "save"})
    assert "HX-Redirect" in saved.headers, saved.get_data(as_text=True)
    assert new_host.calls_to("SaveConnection")[-1]["ConnectionInfo"]["ApiKey"] == "new-host-key"
    assert not _secret_sent(new_host, "s3cret-key")
    with app.app_context():
        connection = db.session.get(Connection, connection_id)
        assert service.secrets_to_reenter(connection) == [] and connection.last_test_ok is True


def test_connector_url_change_with_a_new_token_clears_connection_secrets(app, admin_client, guarded_old):
    connector_id = _connector_with_token(app, guarded_old, "old-t0ken")
    connection_id = define_connection(admin_client, connector_id)
    with FakeConnector(token="new-t0ken") as new_host:
        moved = admin_client.post(f"/settings/connectors/{connector_id}/edit", htmx=True,
                                  data={"name": "Fake ERP", "url": new_host.url, "token": "new-t0ken"})
        assert "HX-Redirect" in moved.headers, moved.get_data(as_text=True)
        assert new_host.requests[0].headers["Authorization"] == "Bearer new-t0ken"
        new_host.forget_connections()
        admin_client.post(f"/settings/connections/{connection_id}/test", htmx=True)
        assert not _secret_sent(new_host, "s3cret-key") and not _secret_sent(new_host, "old-t0ken")
    with app.app_context():
        assert crypto.decrypt(db.session.get(Connector, connector_id).token_encrypted) == "new-t0ken"
        assert "ApiKey" not in service.full_config(db.session.get(Connection, connection_id))


def test_connector_saved_with_the_same_url_keeps_token_and_secrets(app, admin_client, guarded_old):
    connector_id = _connector_with_token(app, guarded_old, "old-t0ken")
    connection_id = define_connection(admin_client, connector_id)
    same = guarded_old.url.replace("http://", "HTTP://") + "/"
    saved = admin_client.post(f"/settings/connectors/{connector_id}/edit", htmx=True,
                              data={"name": "Renamed ERP", "url": same, "token": ""})
    assert "HX-Redirect" in saved.headers, saved.get_data(as_text=True)
    assert json.loads(saved.headers["HX-Trigger"])["toast"][0]["level"] == "success"
    with app.app_context():
        assert crypto.decrypt(db.session.get(Connector, connector_id).token_encrypted) == "old-t0ken"
        connection = db.session.get(Connection, connection_id)
        assert service.full_config(connection)["ApiKey"] == "s3cret-key" and connection.last_test_ok
    assert _audit(app, "connection.secrets_cleared") == []


def test_a_sealed_value_is_refused_after_the_connector_moved(app, admin_client, connector, fake, new_host):
    connection_id = define_connection(admin_client, connector)
    data = connection_form(connector, cfg_ApiKey="typed-for-old")
    sealed, _ = _typed_then_sealed(admin_client, _edit(connection_id), data)
    with app.app_context():
        db.session.get(Connector, connector).url = new_host.url  # moved meanwhile (by another admin)
        db.session.commit()
    response = admin_client.post(_edit(connection_id), htmx=True, data={
        **data, "cfg_ApiKey": "", "sealed_ApiKey": sealed, "action": "test"})
    assert response.status_code == 422 and AGAIN in response.get_data(as_text=True)
    assert not _secret_sent(new_host, "typed-for-old")


# --- 2b. a connection's own URL field -----------------------------------------------------------------------------

class UrlFieldService(FakeConnectorService):
    """The fake ERP with an extra "ERP server URL" config field (like the Tryton connector's)."""

    def GetConfigData(self, body: dict) -> dict:
        fields = copy.deepcopy(CONFIG_FIELDS) + [field_metadata("ServerUrl", "ERP server URL", rank=5)]
        return ok_response(FieldMetaDataObjects=fields)


@pytest.fixture(scope="module")
def url_fake_server():
    with FakeConnector(service=UrlFieldService()) as server:
        yield server


@pytest.fixture
def url_fake(url_fake_server):
    url_fake_server.reset()
    return url_fake_server


@pytest.fixture
def url_connector(app, url_fake):
    with app.app_context():
        row = Connector(name="Url ERP", url=url_fake.url)
        db.session.add(row)
        db.session.commit()
        return row.id


def test_changing_the_connection_url_needs_the_password_again(app, admin_client, url_connector, url_fake):
    connection_id = define_connection(admin_client, url_connector, cfg_ServerUrl="https://erp.example.com/api")
    before = len(url_fake.requests)
    moved = connection_form(url_connector, cfg_ServerUrl="https://evil.example.net/api", cfg_ApiKey="")
    for action in ("test", "save"):
        response = admin_client.post(_edit(connection_id), data={**moved, "action": action}, htmx=True)
        html = response.get_data(as_text=True)
        assert response.status_code == 422 and AGAIN in html and "ERP server URL changed" in html
    sent = url_fake.requests[before:]
    assert not any("s3cret-key" in json.dumps(r.body) for r in sent)
    assert all(r.method not in ("TestConfigData", "SaveConnection") for r in sent)
    with app.app_context():
        config = service.full_config(db.session.get(Connection, connection_id))
        assert config["ServerUrl"] == "https://erp.example.com/api" and config["ApiKey"] == "s3cret-key"

    # a cosmetic difference is the same address: the stored password is used
    same = connection_form(url_connector, cfg_ServerUrl="HTTPS://ERP.example.com:443/api/", cfg_ApiKey="")
    response = admin_client.post(_edit(connection_id), data={**same, "action": "test"}, htmx=True)
    assert response.status_code == 200 and url_fake.calls_to("TestConfigData")[-1]["ConnectionInfo"]["ApiKey"] == \
        "s3cret-key"

    # typed again in the same save: tested and saved with the new password only
    data = connection_form(url_connector, cfg_ServerUrl="https://erp2.example.com/api", cfg_ApiKey="erp2-key")
    sealed, token = _typed_then_sealed(admin_client, _edit(connection_id), data)
    saved = admin_client.post(_edit(connection_id), htmx=True, data={
        **data, "cfg_ApiKey": "", "sealed_ApiKey": sealed, "test_token": token, "action": "save"})
    assert "HX-Redirect" in saved.headers, saved.get_data(as_text=True)
    info = url_fake.calls_to("SaveConnection")[-1]["ConnectionInfo"]
    assert info["ServerUrl"] == "https://erp2.example.com/api" and info["ApiKey"] == "erp2-key"


def test_a_sealed_value_typed_for_one_connection_url_is_refused_for_another(admin_client, url_connector, url_fake):
    data = connection_form(url_connector, cfg_ServerUrl="https://erp.example.com/api", cfg_ApiKey="typed-key")
    tested = admin_client.post(NEW, data={**data, "action": "test"}, htmx=True).get_data(as_text=True)
    carried = {**data, "cfg_ApiKey": "", "sealed_ApiKey": _hidden(tested, "sealed_ApiKey"),
               "form_nonce": _hidden(tested, "form_nonce")}
    before = len(url_fake.requests)
    response = admin_client.post(NEW, htmx=True, data={**carried, "cfg_ServerUrl": "https://evil.example.net/api",
                                                       "action": "test"})
    assert response.status_code == 422 and AGAIN in response.get_data(as_text=True)
    assert not any("typed-key" in json.dumps(r.body) for r in url_fake.requests[before:])
    response = admin_client.post(NEW, data={**carried, "action": "test"}, htmx=True)
    assert response.status_code == 200
    assert url_fake.calls_to("TestConfigData")[-1]["ConnectionInfo"]["ApiKey"] == "typed-key"


def test_address_fields_are_recognised_by_name_or_value():
    from portal.connectors.builtin.tryton import CONFIG_FIELDS as TRYTON_FIELDS

    assert service.address_keys(TRYTON_FIELDS) == ["url"]
    assert service.address_keys(CONFIG_FIELDS) == []
    assert service.address_keys(CONFIG_FIELDS, {"Company": "https://x.example"}) == ["Company"]
    assert service.moved_addresses(TRYTON_FIELDS, {"url": "http://a:8000"}, {"url": "http://A:8000/"}) == []
    assert service.moved_addresses(TRYTON_FIELDS, {"url": "http://a:8000"}, {"url": "http://b:8000"}) == ["url"]

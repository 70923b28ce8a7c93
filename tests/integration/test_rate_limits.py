"""Rate limits (portal/security/limits.py): sign-in per account+address and per address, ERP search and Test
connection per user — 429 with Retry-After and a readable message — and a throttled audit of failed sign-ins.

The tests set low limits through the config (``LIMIT_*``); every app has its own counters."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from portal import create_app
from portal.config import ConfigError, load_config
from portal.extensions import db
from portal.models import AuditEvent
from portal.security import limits
from tests.conftest import PASSWORD, login
from tests.integration import security_world

pytestmark = pytest.mark.db


@pytest.fixture
def app_config(app_config):
    return {**app_config, "LIMIT_LOGIN": "3/minute", "LIMIT_LOGIN_ADDRESS": "5/minute",
            "LIMIT_ERP_SEARCH": "3/minute", "LIMIT_TEST_CONNECTION": "2/minute"}


def _client(app, address: str = "198.51.100.7"):
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    return client


def _wrong(client, email: str = "alice@example.com", **kwargs):
    return client.post("/login", data={"email": email, "password": "not-the-password"}, **kwargs)


def _failed_rows(app) -> list[AuditEvent]:
    with app.app_context():
        rows = list(db.session.scalars(select(AuditEvent).where(AuditEvent.action == "auth.login_failed")
                                       .order_by(AuditEvent.id)))
        for row in rows:
            db.session.expunge(row)
        return rows


def _assert_too_many(response, text: str):
    assert response.status_code == 429, response.status_code
    retry = int(response.headers["Retry-After"])
    assert 1 <= retry <= 60
    body = response.get_data(as_text=True)
    assert text in body and f"wait {retry} second" in body
    return body


# --- sign-in ------------------------------------------------------------------------------------------------------


def test_sign_in_brute_force_gets_429_with_retry_after_and_no_audit_flood(app, users):
    client = _client(app)
    for _ in range(3):
        assert _wrong(client).status_code == 422
    body = _assert_too_many(_wrong(client), "Too many sign-in attempts.")
    assert 'name="email"' in body  # the sign-in page again, the message above the form
    # even the right password waits: the limit is checked before the password
    _assert_too_many(client.post("/login", data={"email": "alice@example.com", "password": PASSWORD}),
                     "Too many sign-in attempts.")
    for _ in range(20):
        assert _wrong(client).status_code == 429
    rows = _failed_rows(app)
    assert len(rows) == 1 and rows[0].object_repr == "alice@example.com" and rows[0].ip == "198.51.100.7"


def test_the_account_limit_is_per_address(app, users):
    attacker = _client(app, "198.51.100.7")
    for _ in range(4):
        _wrong(attacker)
    assert _wrong(attacker).status_code == 429
    owner = _client(app, "203.0.113.9")  # alice from her own office
    response = owner.post("/login", data={"email": "alice@example.com", "password": PASSWORD})
    assert response.status_code == 302


def test_the_address_limit_stops_spraying_many_accounts(app, users):
    client = _client(app)
    for number in range(5):
        assert _wrong(client, f"user{number}@example.com").status_code == 422
    _assert_too_many(_wrong(client, "someone-else@example.com"), "Too many sign-in attempts.")
    # another address is not affected
    assert _wrong(_client(app, "203.0.113.9"), "someone-else@example.com").status_code == 422


def test_a_429_for_htmx_is_a_partial_with_a_toast(app, users):
    client = _client(app)
    for _ in range(3):
        _wrong(client)
    response = _wrong(client, htmx=True)
    body = _assert_too_many(response, "Too many sign-in attempts.")
    assert "<html" not in body and "Too many sign-in attempts." in response.headers["HX-Trigger"]


def test_failed_sign_ins_are_audited_once_a_minute_counting_the_rest(app, users):
    """The audit throttle, below the rate limit: the next row counts the failures it did not write."""
    app.config["LIMIT_LOGIN"] = "100/minute"  # read on every request
    client = _client(app)
    for _ in range(3):
        assert _wrong(client).status_code == 422
    assert [row.after for row in _failed_rows(app)] == [{"attempts": 1}]
    with app.app_context():  # the minute is over
        key = f"{limits._digest('alice@example.com')}@198.51.100.7"
        limits.limiter.limiter.clear(limits._AUDIT_EVERY, "login-failed-audit", key)
    _wrong(client)  # this row stands for itself and the two not written
    assert [row.after for row in _failed_rows(app)] == [{"attempts": 1}, {"attempts": 3}]
    assert len(_failed_rows(app)) == 2


def test_an_unknown_email_is_throttled_like_a_real_one(app, users):
    client = _client(app)
    for _ in range(3):
        assert _wrong(client, "nobody@example.com").status_code == 422
    assert _wrong(client, "nobody@example.com").status_code == 429
    assert len(_failed_rows(app)) == 1


def test_every_app_has_its_own_counters(app, app_config, users):
    client = _client(app)
    for _ in range(3):
        _wrong(client)
    assert _wrong(client).status_code == 429
    other = create_app(app_config, environ={})  # the same database, its own counters
    try:
        assert _wrong(_client(other)).status_code == 422
        assert _wrong(client).status_code == 429  # the first app still counts its own
    finally:
        with other.app_context():
            db.session.remove()
            db.engine.dispose()


def test_the_own_password_change_is_limited_too(app, users):
    client = _client(app)
    login(client, users["bob"])
    data = {"current_password": "guess", "new_password": "violet lantern orchard 42",
            "confirm_password": "violet lantern orchard 42"}
    for _ in range(3):
        assert client.post("/account/password", data=data).status_code == 422
    _assert_too_many(client.post("/account/password", data=data), "Too many password changes.")


# --- ERP search and Test connection -----------------------------------------------------------------------------


@pytest.fixture
def world(app, fake, users):
    with app.app_context():
        return security_world.build(fake)


def _url(app, world, endpoint: str) -> str:
    rule = next(rule for rule in app.url_map.iter_rules() if rule.endpoint == endpoint)
    with app.app_context():
        return world.url(rule)


def test_erp_search_is_limited_per_user(app, world):
    search, advanced = _url(app, world, "erp_tab.search"), _url(app, world, "erp_tab.advanced_search")
    user = app.test_client()
    login(user, world.users["can_connect"])
    assert user.get(search + "?q=Free", htmx=True).status_code == 200
    assert user.get(advanced, htmx=True).status_code == 422  # no criteria: refused, but it counted
    assert user.get(search + "?q=Free", htmx=True).status_code == 200
    response = user.get(search + "?q=Free", htmx=True)  # simple and advanced share one budget
    _assert_too_many(response, "Too many ERP searches.")
    assert "Too many ERP searches." in response.headers["HX-Trigger"]
    other = app.test_client()  # another user, same address: their own budget
    login(other, world.users["can_create"])
    assert other.get(search + "?q=Free", htmx=True).status_code == 200


def test_test_connection_is_limited_per_user(app, world):
    test = _url(app, world, "admin.connection_test")
    admin = app.test_client()
    login(admin, world.users["admin"])
    assert admin.post(test, htmx=True).status_code == 200
    assert admin.post(test, htmx=True).status_code == 200
    _assert_too_many(admin.post(test, htmx=True), "Too many connection tests.")
    plain = admin.post(test)
    _assert_too_many(plain, "Too many connection tests.")
    assert "<html" in plain.get_data(as_text=True)  # a page for a plain request


def test_the_connection_forms_test_shares_the_budget(app, world):
    with app.app_context():
        connector_id = world._connector_id()
    admin = app.test_client()
    login(admin, world.users["admin"])
    data = {"name": "Another", "connector_id": str(connector_id), "description": "", "scope": "everyone",
            "conflict_policy": "priority", "cfg_Company": "ACME", "cfg_ApiKey": "s3cret-key",
            "cfg_Region": "north", "cfg_PageSize": "50", "action": "test"}
    assert admin.post("/settings/connections/new", data=data, htmx=True).status_code == 200
    assert admin.post(_url(app, world, "admin.connection_test"), htmx=True).status_code == 200
    _assert_too_many(admin.post("/settings/connections/new", data=data, htmx=True), "Too many connection tests.")
    # saving is not a test: not limited
    assert admin.post("/settings/connections/new", data={**data, "action": "save"}, htmx=True).status_code != 429


# --- configuration ----------------------------------------------------------------------------------------------


def test_the_default_limits_are_far_above_honest_use(tmp_path):
    config = load_config(str(tmp_path), {})
    assert config["LIMIT_LOGIN"] == "10/minute" and config["LIMIT_LOGIN_ADDRESS"] == "30/minute"
    assert config["LIMIT_ERP_SEARCH"] == "60/minute" and config["LIMIT_TEST_CONNECTION"] == "10/minute"
    assert config["RATELIMIT_STORAGE_URI"] == "memory://"


@pytest.mark.parametrize("name,value", [("PORTAL_RATELIMIT_LOGIN", "ten a minute"),
                                        ("PORTAL_RATELIMIT_ERP_SEARCH", "60/fortnight"),
                                        ("PORTAL_RATELIMIT_STORAGE_URI", "postgres://db/limits")])
def test_bad_limit_settings_stop_the_start(tmp_path, name, value):
    with pytest.raises(ConfigError, match=name):
        load_config(str(tmp_path), {name: value})


def test_the_limits_are_read_from_the_environment(tmp_path):
    config = load_config(str(tmp_path), {"PORTAL_RATELIMIT_LOGIN": "5 per minute",
                                         "PORTAL_RATELIMIT_STORAGE_URI": "redis://localhost:6379"})
    assert config["LIMIT_LOGIN"] == "5 per minute" and config["RATELIMIT_STORAGE_URI"] == "redis://localhost:6379"

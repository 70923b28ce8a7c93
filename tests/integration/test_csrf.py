"""CSRF is enforced on every mutation; htmx sends the token from <body hx-headers>."""

from __future__ import annotations

import pytest

from tests.conftest import PASSWORD, csrf_token_from, login


@pytest.fixture
def app_config(app_config):
    return {**app_config, "WTF_CSRF_ENABLED": True}


def test_posts_without_a_token_are_refused(app, users):
    client = app.test_client()
    login(client, users["alice"])
    assert client.post("/settings/sync/auto", data={"on": "0"}).status_code == 400
    refused = client.post("/settings/sync/auto", data={"on": "0"}, htmx=True)
    assert refused.status_code == 400 and "HX-Redirect" in refused.headers


def test_htmx_header_token_from_the_page_is_accepted(app, users):
    client = app.test_client()
    login(client, users["alice"])
    token = csrf_token_from(client.get("/settings/sync").get_data(as_text=True))
    response = client.post("/settings/sync/auto", data={"on": "0"}, htmx=True, headers={"X-CSRFToken": token})
    assert response.status_code == 200


def test_login_needs_a_token_and_rotates_it(app, users):
    client = app.test_client()
    page = client.get("/login").get_data(as_text=True)
    assert client.post("/login", data={"email": "alice@example.com", "password": PASSWORD}).status_code == 400
    token = csrf_token_from(page)
    signed_in = client.post("/login", data={"email": "alice@example.com", "password": PASSWORD,
                                            "csrf_token": token})
    assert signed_in.status_code == 302
    # the session was cleared on login, so the old token no longer works
    stale = client.post("/settings/sync/auto", data={"on": "0"}, headers={"X-CSRFToken": token}, htmx=True)
    assert stale.status_code == 400

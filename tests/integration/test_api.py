"""The automation API (/api/v1/, portal/api/): personal tokens, bearer auth, scopes and rights, the endpoints,
rate limit, JSON errors, CSRF, and the generated OpenAPI document."""

from __future__ import annotations

import hashlib
import re
from datetime import timedelta

import pytest
from sqlalchemy import select, text

from portal.database import utcnow
from portal.extensions import db
from portal.models import ApiToken, AuditEvent, Link, SyncRun, User
from tests.conftest import login
from tests.integration import security_world

pytestmark = pytest.mark.db
ALL = ("read", "sync", "link")


@pytest.fixture
def app_config(app_config):
    return {**app_config, "WTF_CSRF_ENABLED": True}


@pytest.fixture
def world(app, fake):
    with app.app_context():
        return security_world.build(fake)


def mint(app, user_id: int, scopes=ALL, days: int = 90) -> str:
    """A token for the user straight through the service (the account page is tested on its own)."""
    from portal.api import tokens

    with app.app_context():
        user = db.session.get(User, user_id)
        if not tokens.may_hold_tokens(user):  # make one anyway: the per-request check must refuse it
            user.erp_licence = True
            _token, secret = tokens.create(user, "t", scopes, days)
            user.erp_licence = False
            db.session.commit()
            return secret
        return tokens.create(user, "t", list(scopes), days)[1]


def call(client, method: str, url: str, secret: str | None = None, **kwargs):
    headers = kwargs.pop("headers", {})
    if secret:
        headers["Authorization"] = f"Bearer {secret}"
    return client.open(url, method=method, headers=headers, **kwargs)


# ------------------------------------------------------------------------------------------------ tokens


def _account_csrf(client) -> str:
    page = client.get("/account").get_data(as_text=True)
    return re.search(r'"X-CSRFToken": "([^"]+)"', page).group(1)


def test_token_lifecycle_on_the_account_page(app, world):
    client = app.test_client()
    login(client, world.users["can_connect"])
    csrf = _account_csrf(client)
    made = client.post("/account/tokens", data={"name": "script", "scopes": ["read", "link"], "days": "30",
                                                "csrf_token": csrf}, htmx=True)
    assert made.status_code == 201
    secret = re.search(r'<code id="new-api-token">(esp_[A-Za-z0-9_-]+)</code>', made.get_data(as_text=True)).group(1)
    assert len(secret) == 4 + 43
    with app.app_context():
        token = db.session.scalar(select(ApiToken))
        assert token.token_hash == hashlib.sha256(secret.encode()).hexdigest()
        assert token.prefix == secret[:8] and token.scopes == ["read", "link"]
        assert timedelta(days=29) < token.expires_at - utcnow() <= timedelta(days=30)
        dump = "\n".join(str(row) for row in db.session.execute(text("SELECT * FROM api_token")))
        assert secret not in dump and secret[8:] not in dump
        assert db.session.scalar(select(AuditEvent).where(AuditEvent.action == "token.create")) is not None
        token_id = token.id
    page = client.get("/account").get_data(as_text=True)
    assert secret[:8] in page and secret not in page  # listed by its prefix, never shown again
    assert call(client, "GET", "/api/v1/connections", secret).status_code == 200
    with app.app_context():
        assert db.session.get(ApiToken, token_id).last_used_at is not None
    revoked = client.post(f"/account/tokens/{token_id}/revoke", data={"csrf_token": csrf}, htmx=True)
    assert revoked.status_code == 200 and "Revoked" in revoked.get_data(as_text=True)
    answer = call(client, "GET", "/api/v1/connections", secret)
    assert answer.status_code == 401 and answer.json["error"] == "unauthorized"
    assert "Bearer" in answer.headers["WWW-Authenticate"]
    with app.app_context():
        assert db.session.scalar(select(AuditEvent).where(AuditEvent.action == "token.revoke")) is not None


def test_only_licensed_users_and_admins_make_tokens_and_expiry_is_bounded(app, world):
    client = app.test_client()
    login(client, world.users["no_licence"])
    csrf = _account_csrf(client)
    refused = client.post("/account/tokens", data={"name": "x", "scopes": ["read"], "days": "90",
                                                   "csrf_token": csrf}, htmx=True)
    assert refused.status_code == 403
    login(client, world.users["admin"])
    csrf = _account_csrf(client)
    too_long = client.post("/account/tokens", data={"name": "x", "scopes": ["read"], "days": "400",
                                                    "csrf_token": csrf}, htmx=True)
    assert too_long.status_code == 422
    with app.app_context():
        assert db.session.scalar(select(ApiToken)) is None


@pytest.mark.parametrize("how", ["expired", "deactivated", "password", "garbage", "missing", "cookie"])
def test_dead_tokens_answer_401(app, world, how):
    secret = mint(app, world.users["admin"])
    client = app.test_client()
    with app.app_context():
        token = db.session.scalar(select(ApiToken))
        user = db.session.get(User, world.users["admin"])
        if how == "expired":
            token.expires_at = utcnow() - timedelta(seconds=1)
        elif how == "deactivated":
            user.is_active = False
        elif how == "password":
            user.set_password("Another long passphrase 42!")
        db.session.commit()
    if how == "garbage":
        secret = "esp_" + "x" * 43
    if how in ("missing", "cookie"):
        secret = None
    if how == "cookie":
        login(client, world.users["admin"])
    answer = call(client, "GET", "/api/v1/connections", secret)
    assert answer.status_code == 401 and answer.is_json


# ------------------------------------------------------------------------------------------------ authorization


def test_scopes_and_rights_per_endpoint(app, world):
    client = app.test_client()
    read_only = mint(app, world.users["admin"], ("read",))
    admin = mint(app, world.users["admin"])
    user = mint(app, world.users["can_connect"])
    no_licence = mint(app, world.users["no_licence"])
    cid = world.connection
    # wrong scope
    assert call(client, "POST", f"/api/v1/connections/{cid}/sync", read_only).status_code == 403
    assert call(client, "POST", f"/api/v1/records/company/{world.free_company}/link", read_only,
                json={"connection_id": cid, "erp_key": "x", "actor_type": "Customer"}).status_code == 403
    # plain user on admin endpoints
    for method, url in [("POST", f"/api/v1/connections/{cid}/sync"), ("POST", f"/api/v1/connections/{cid}/resync"),
                        ("GET", "/api/v1/runs"), ("GET", f"/api/v1/runs/{world.sync_run}"), ("GET", "/api/v1/changes")]:
        answer = call(client, method, url, user)
        assert answer.status_code == 403 and answer.json["error"] == "forbidden", url
        assert call(client, method, url, admin).status_code in (200, 202, 409), url  # 409: the sync above runs
    # a user who lost the licence: the token is refused whatever it says
    assert call(client, "GET", "/api/v1/connections", no_licence).status_code == 403
    # the connection list follows the scope
    outside = mint(app, world.users["out_of_scope"])
    assert call(client, "GET", "/api/v1/connections", outside).json == {"connections": []}
    mine = call(client, "GET", "/api/v1/connections", user).json["connections"]
    assert [(c["id"], c["can_connect"], c["can_create"]) for c in mine] == [(cid, True, False)]
    assert mine[0]["health"]["state"]
    assert [c["id"] for c in call(client, "GET", "/api/v1/connections", admin).json["connections"]] == [cid]


def test_sync_queues_a_run_and_runs_and_changes_read_it(app, world):
    client = app.test_client()
    admin = mint(app, world.users["admin"])
    answer = call(client, "POST", f"/api/v1/connections/{world.connection}/sync", admin, json={"no_blank": True})
    assert answer.status_code == 202, answer.json
    run_id = answer.json["run_id"]
    assert answer.json["url"].endswith(f"/api/v1/runs/{run_id}") and answer.headers["Location"] == answer.json["url"]
    run = call(client, "GET", f"/api/v1/runs/{run_id}", admin).json
    assert run["status"] == "queued" and run["trigger"] == "api" and run["options"] == {"no_blank": True}
    busy = call(client, "POST", f"/api/v1/connections/{world.connection}/sync", admin)
    assert busy.status_code == 409
    listed = call(client, "GET", f"/api/v1/runs?connection_id={world.connection}&limit=1", admin).json["runs"]
    assert [r["id"] for r in listed] == [run_id]
    assert call(client, "GET", "/api/v1/runs/999999", admin).status_code == 404
    assert call(client, "POST", "/api/v1/connections/999999/sync", admin).status_code == 404
    assert call(client, "GET", f"/api/v1/changes?run_id={run_id}&crm_type=company&crm_id=1", admin).json == {
        "changes": []}
    assert call(client, "GET", "/api/v1/changes?limit=abc", admin).status_code == 422
    with app.app_context():
        assert db.session.scalar(select(AuditEvent).where(AuditEvent.action == "sync.connection_sync")) is not None


def test_resync(app, world):
    client = app.test_client()
    admin = mint(app, world.users["admin"])
    url = f"/api/v1/connections/{world.connection}/resync"
    unlinked = call(client, "POST", url, admin, json={"crm_type": "company", "crm_ids": [world.free_company]})
    assert unlinked.status_code == 422 and str(world.free_company) in unlinked.json["message"]
    mixed = call(client, "POST", url, admin, json={"crm_type": "company", "crm_ids": [1], "erp_keys": ["a"],
                                                   "erp_actor_type": "Customer"})
    assert mixed.status_code == 422
    answer = call(client, "POST", url, admin, json={"erp_actor_type": "Customer", "erp_keys": [world.erp_key]})
    assert answer.status_code == 202 and answer.json["records"] == 1
    with app.app_context():
        run = db.session.get(SyncRun, answer.json["run_id"])
        link = db.session.scalar(select(Link).where(Link.crm_id == world.company))
        assert run.kind == "resync_from_erp" and run.options == {"no_blank": False, "link_ids": [link.id]}
        run.status = "succeeded"
        db.session.commit()
    whole = call(client, "POST", url, admin)  # no body: the whole connection, like Settings → Resync
    assert whole.status_code == 202
    with app.app_context():
        run = db.session.get(SyncRun, whole.json["run_id"])
        assert run.kind == "resync_from_crm" and run.options == {"no_blank": False}


def test_link_and_unlink_follow_the_erp_tab_rules(app, world):
    client = app.test_client()
    url = f"/api/v1/records/company/{world.free_company}/link"
    body = {"connection_id": world.connection, "erp_key": world.free_erp_key, "actor_type": "Customer"}
    for role, status in [("no_licence", 403), ("out_of_scope", 403), ("admin", 403)]:
        answer = call(client, "POST", url, mint(app, world.users[role]), json=body)
        assert answer.status_code == status, (role, answer.json)
    secret = mint(app, world.users["can_connect"])
    linked = call(client, "POST", url, secret, json=body)
    assert linked.status_code == 201, linked.json
    assert linked.json["erp_key"] == world.free_erp_key and linked.json["already"] is False
    assert call(client, "POST", url, secret, json=body).status_code == 200  # repeated: already linked
    assert call(client, "DELETE", f"{url}?connection_id={world.connection}", secret).status_code == 204
    assert call(client, "DELETE", f"{url}?connection_id={world.connection}", secret).status_code == 404
    assert call(client, "DELETE", url, secret).status_code == 422  # connection_id missing
    with app.app_context():
        assert db.session.scalar(select(Link).where(Link.crm_id == world.free_company)) is None


def test_bad_input_is_json_never_html_nor_500(app, world):
    client = app.test_client()
    secret = mint(app, world.users["can_connect"])
    url = f"/api/v1/records/company/{world.free_company}/link"
    for data in ["{not json", "[1, 2]", "", '"text"']:
        answer = call(client, "POST", url, secret, data=data, content_type="application/json")
        assert answer.status_code == 400 and answer.is_json, data
    invalid = call(client, "POST", url, secret, json={"connection_id": "x", "erp_key": "", "actor_type": "C"})
    assert invalid.status_code == 422 and set(invalid.json["details"]) >= {"connection_id", "erp_key"}
    huge = call(client, "POST", url, secret, json={"connection_id": 2**70, "erp_key": "k", "actor_type": "C"})
    assert huge.status_code == 422
    nowhere = call(client, "GET", "/api/v1/nowhere", secret)
    assert nowhere.status_code == 404 and nowhere.is_json
    wrong_method = call(client, "PUT", "/api/v1/connections", secret)
    assert wrong_method.status_code == 404 and wrong_method.is_json


def test_rate_limit_per_token(app, world):
    app.config["LIMIT_API"] = "3/minute"  # read on every request
    first, second = mint(app, world.users["admin"]), mint(app, world.users["can_connect"])
    client = app.test_client()
    assert [call(client, "GET", "/api/v1/connections", first).status_code for _ in range(3)] == [200] * 3
    refused = call(client, "GET", "/api/v1/connections", first)
    assert refused.status_code == 429 and refused.is_json and int(refused.headers["Retry-After"]) >= 1
    assert call(client, "GET", "/api/v1/connections", second).status_code == 200  # per token


def test_csrf_does_not_apply_to_tokens_and_cookies_do_not_authenticate(app, world):
    secret = mint(app, world.users["admin"])
    client = app.test_client()
    answer = call(client, "POST", f"/api/v1/connections/{world.connection}/sync", secret, json={})
    assert answer.status_code == 202  # no CSRF token, and none needed
    browser = app.test_client()
    login(browser, world.users["admin"])
    refused = browser.post(f"/api/v1/connections/{world.connection}/resync", json={})
    assert refused.status_code == 401 and refused.is_json


def test_openapi_document_is_valid_and_lists_every_route(app):
    from openapi_spec_validator import validate

    client = app.test_client()
    answer = client.get("/api/v1/openapi.json")  # no token needed
    assert answer.status_code == 200
    document = answer.json
    validate(document)
    listed = {(path, method.upper()) for path, item in document["paths"].items() for method in item}
    for rule in app.url_map.iter_rules():
        if not rule.endpoint.startswith("api.") or rule.endpoint == "api.not_found":
            continue
        path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule.rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            assert (path, method) in listed, (path, method)


def test_deactivating_a_user_revokes_their_tokens_for_good(app, world):
    """Reactivating the user does not bring the tokens back (they were revoked, not only refused)."""
    from portal.services import users

    secret = mint(app, world.users["can_connect"])
    client = app.test_client()
    assert call(client, "GET", "/api/v1/connections", secret).status_code == 200
    with app.app_context():
        user = db.session.get(User, world.users["can_connect"])
        fields = {"email": user.email, "name": user.name, "role": user.role, "erp_licence": user.erp_licence,
                  "groups": list(user.groups)}
        users.update_user(user, is_active=False, **fields)
        users.update_user(db.session.get(User, world.users["can_connect"]), is_active=True, **fields)
        assert db.session.scalar(select(ApiToken).where(ApiToken.user_id == user.id)).revoked_at is not None
    assert call(client, "GET", "/api/v1/connections", secret).status_code == 401

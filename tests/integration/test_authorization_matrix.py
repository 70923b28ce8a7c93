"""The authorization matrix, generated from ``app.url_map``: every endpoint × every role × every method.

``RULES`` declares, in one table, who may use each endpoint; a route added without a declared rule (or a rule left
for a route that is gone) fails ``test_every_route_has_exactly_one_declared_rule``. Each cell is one request with
real ids from a seeded world (tests/integration/security_world.py), sent as htmx (how the pages call each other),
with a valid CSRF token and no form data: the point is *refused* (401 anonymous, 403 signed in) versus *let
through* (anything else below 500 — a 422 for the empty form, a 409 for a rule — but never a 500, and never the
CSRF or routing errors that would mean the cell did not test anything).

Rules (what the role must hold, see ``security_world.CAPABILITIES``):

``public``       anyone, signed in or not
``login``        any signed-in user
``licensed``     a signed-in user with an ERP Sync licence
``in-scope``     licensed and in the connection's scope
``can-connect``  in scope with *can connect*
``can-create``   in scope with *can connect* and *can create in ERP*
``admin``        an admin
``demo-admin``   an admin, and only registered while the demo is on (PORTAL_DEMO_DATA; off → 404)
``token``        the automation API (/api/v1/): a browser session is never enough (401 for every role); with a
                 bearer token the endpoint needs ``API_RULES[endpoint]`` (test_api_token_matrix)
``not-found``    the API's JSON 404 for any other path under /api/v1/ (with or without a token)
"""

from __future__ import annotations

import pytest

from portal.extensions import db
from tests.integration import security_world
from tests.integration.security_world import CAPABILITIES, ROLES

pytestmark = pytest.mark.db

NEEDS = {"public": None, "login": "login", "licensed": "licensed", "in-scope": "in_scope",
         "can-connect": "can_connect", "can-create": "can_create", "admin": "admin", "demo-admin": "admin",
         "token": "bearer-token", "not-found": None}  # no persona holds a bearer token through a cookie

RULES: dict[str, str] = {
    # sign-in and static files
    "static": "public",
    "auth.login": "public",
    "auth.logout": "login",
    "auth.account": "login",
    "auth.change_password": "login",
    "auth.sign_out_everywhere": "login",
    "auth.token_create": "licensed",  # or admin (every admin persona is licensed here)
    "auth.token_revoke": "login",  # one's own tokens only; another's id changes nothing
    # the CRM
    "crm.home": "login",
    "crm.company_list": "login",
    "crm.company_options": "login",
    "crm.company_create": "login",
    "crm.company_detail": "login",
    "crm.company_edit": "login",
    "crm.company_delete": "login",
    "crm.contact_list": "login",
    "crm.contact_create": "login",
    "crm.contact_detail": "login",
    "crm.contact_edit": "login",
    "crm.contact_delete": "login",
    "crm.project_list": "login",
    "crm.project_create": "login",
    "crm.project_detail": "login",
    "crm.project_edit": "login",
    "crm.project_delete": "login",
    # the ERP tab: the panel lists the sections a licensed user is in scope for (none: an empty panel)
    "erp_tab.panel": "licensed",
    "erp_tab.section": "in-scope",
    "erp_tab.values": "in-scope",
    "erp_tab.sync_now": "in-scope",
    "erp_tab.connect_dialog": "can-connect",
    "erp_tab.search": "can-connect",
    "erp_tab.advanced": "can-connect",
    "erp_tab.advanced_search": "can-connect",
    "erp_tab.compare": "can-connect",
    "erp_tab.connect": "can-connect",
    "erp_tab.disconnect": "can-connect",
    "erp_tab.create_form": "can-create",
    "erp_tab.create": "can-create",
    # the Demo ERP's own screens
    "demo_erp.index": "demo-admin",
    "demo_erp.actor_list": "demo-admin",
    "demo_erp.actor_detail": "demo-admin",
    "demo_erp.actor_new": "demo-admin",
    "demo_erp.actor_edit": "demo-admin",
    "demo_erp.actor_touch": "demo-admin",
    "demo_erp.actor_delete": "demo-admin",
    # the automation API: bearer tokens only (API_RULES below); its OpenAPI document is public
    "api.openapi": "public",
    "api.connections": "token",
    "api.connection_sync": "token",
    "api.connection_resync": "token",
    "api.record_link": "token",
    "api.record_unlink": "token",
    "api.run_list": "token",
    "api.run": "token",
    "api.changes": "token",
    "api.not_found": "not-found",
    # Settings
    "admin.index": "admin",
    "admin.sync": "admin",
    "admin.sync_auto": "admin",
    "admin.sync_interval": "admin",
    "admin.sync_reconcile": "admin",
    "admin.sync_priority": "admin",
    "admin.sync_priority_move": "admin",
    "admin.sync_log": "admin",
    "admin.sync_log_retention": "admin",
    "admin.run_all": "admin",
    "admin.run_detail": "admin",
    "admin.run_progress": "admin",
    "admin.sync_issues_inbox": "admin",
    "admin.sync_issues_retry": "admin",
    "admin.sync_issues_uncouple": "admin",
    "admin.sync_issues_ignore": "admin",
    "admin.sync_issues_unignore": "admin",
    "admin.connection_sync": "admin",
    "admin.sync_preview": "admin",
    "admin.preview_page": "admin",
    "admin.preview_run": "admin",
    "admin.audit_log": "admin",
    "admin.alert_list": "admin",
    "admin.alert_create": "admin",
    "admin.alert_edit": "admin",
    "admin.alert_delete": "admin",
    "admin.alert_test": "admin",
    "admin.connector_new": "admin",
    "admin.connector_edit": "admin",
    "admin.connector_delete": "admin",
    "admin.connector_restore": "admin",
    "admin.connection_new": "admin",
    "admin.connection_edit": "admin",
    "admin.connection_test": "admin",
    "admin.connection_activate": "admin",
    "admin.connection_deactivate": "admin",
    "admin.connection_refresh_fields": "admin",
    "admin.connection_delete": "admin",
    "admin.connection_restore": "admin",
    "admin.mappings": "admin",
    "admin.mappings_status": "admin",
    "admin.mappings_switch": "admin",
    "admin.mappings_label": "admin",
    "admin.mappings_refresh": "admin",
    "admin.mappings_activation": "admin",
    "admin.mapping_row": "admin",
    "admin.mapping_unmap": "admin",
    "admin.list_mapping": "admin",
    "admin.list_mapping_item": "admin",
    "admin.list_mapping_match": "admin",
    "admin.defaults": "admin",
    "admin.default_new": "admin",
    "admin.default_add_row": "admin",
    "admin.default_edit": "admin",
    "admin.default_row": "admin",
    "admin.default_remove": "admin",
    "admin.rank_fields": "admin",
    "admin.rank_move": "admin",
    "admin.resync": "admin",
    "admin.resync_erp": "admin",
    "admin.import_index": "admin",
    "admin.import_start": "admin",
    "admin.import_actor_types": "admin",
    "admin.import_search": "admin",
    "admin.import_settings": "admin",
    "admin.import_preview": "admin",
    "admin.import_run": "admin",
    "admin.import_run_detail": "admin",
    "admin.import_run_progress": "admin",
    "admin.import_run_records": "admin",
    "admin.import_rerun": "admin",
    "admin.import_undo_preview": "admin",
    "admin.import_undo": "admin",
    "admin.lists": "admin",
    "admin.list_item_add": "admin",
    "admin.list_item_row": "admin",
    "admin.list_item_edit": "admin",
    "admin.list_item_move": "admin",
    "admin.list_item_delete": "admin",
    "admin.list_item_restore": "admin",
    "admin.fields": "admin",
    "admin.field_add": "admin",
    "admin.field_edit": "admin",
    "admin.field_move": "admin",
    "admin.field_delete": "admin",
    "admin.user_list": "admin",
    "admin.user_create": "admin",
    "admin.user_edit": "admin",
    "admin.user_licence": "admin",
    "admin.user_licence_count": "admin",
    "admin.user_sign_out": "admin",
    "admin.group_list": "admin",
    "admin.group_create": "admin",
    "admin.group_edit": "admin",
    "admin.group_delete": "admin",
}

# What a bearer token's user must hold (the token has every scope), in the words of RULES.
API_RULES: dict[str, str] = {
    "api.connections": "licensed",
    "api.connection_sync": "admin",
    "api.connection_resync": "admin",
    "api.record_link": "can-connect",
    "api.record_unlink": "can-connect",
    "api.run_list": "admin",
    "api.run": "admin",
    "api.changes": "admin",
}

# Statuses that mean a let-through cell did not really test the endpoint: the URL was wrong (a 400 with
# HX-Redirect is the CSRF refusal, see is_csrf_refusal; other 400s are the endpoint refusing empty data).
NOT_A_TEST = {404, 405}
# POSTs that change the world the later cells see (with empty data: switch off, deactivate, delete …) run last, in
# this order (a sign-out last of all).
LAST = ("erp_tab.disconnect", "demo_erp.actor_delete", "admin.default_remove", "admin.mapping_unmap",
        "admin.list_item_delete", "admin.field_delete", "admin.group_delete", "admin.alert_delete", "crm.contact_delete", "crm.project_delete",
        "crm.company_delete", "admin.mappings_switch", "admin.mappings_activation", "admin.connection_deactivate",
        "admin.connection_delete", "admin.connector_delete", "auth.logout")


@pytest.fixture
def app_config(app_config):
    # CSRF on (every POST carries a valid token), the demo on (its pages are routes too)
    return {**app_config, "WTF_CSRF_ENABLED": True, "DEMO_DATA": True}


def cells(app) -> list[tuple]:
    """(rule, method) for every route: GETs first, then POSTs, those in LAST at the end in that order."""
    found = [(rule, method) for rule in app.url_map.iter_rules()
             for method in sorted(rule.methods - {"HEAD", "OPTIONS"})]

    def order(cell):
        rule, method = cell
        last = LAST.index(rule.endpoint) + 1 if method != "GET" and rule.endpoint in LAST else 0
        return method != "GET", last, rule.endpoint, method

    return sorted(found, key=order)


def is_csrf_refusal(response) -> bool:
    return response.status_code == 400 and "HX-Redirect" in response.headers


def expected(endpoint: str, role: str) -> str:
    need = NEEDS[RULES[endpoint]]
    return "allowed" if need is None or need in CAPABILITIES[role] else "refused"


def test_every_route_has_exactly_one_declared_rule(app):
    endpoints = {rule.endpoint for rule in app.url_map.iter_rules()}
    assert sorted(endpoints - RULES.keys()) == [], "declare who may use these routes in RULES"
    assert sorted(RULES.keys() - endpoints) == [], "these routes are gone: drop them from RULES"
    assert set(RULES.values()) <= NEEDS.keys()


def test_the_matrix_covers_every_endpoint_role_and_method(app):
    assert {rule.endpoint for rule, _ in cells(app)} == RULES.keys()
    # 137 (endpoint, method) cells × 6 roles: a drop means routes vanished from the sweep
    assert len(cells(app)) >= 130 and len(ROLES) == 6


@pytest.mark.parametrize("role", ROLES)
def test_authorization_matrix(app, fake, role):
    with app.app_context():
        world = security_world.build(fake)
    client = security_world.signed_in_client(app, world, role)
    wrong = []
    for rule, method in cells(app):
        client.relogin()
        with app.app_context():
            url = world.url(rule)
        response = client.open(url, method=method, htmx=True)
        status = response.status_code
        if RULES[rule.endpoint] == "not-found":
            if status != 404 or not response.is_json:
                wrong.append(f"{method} {url}: {status}, expected a JSON 404")
            continue
        want = expected(rule.endpoint, role)
        if want == "refused":
            denied = 401 if role == "anonymous" or RULES[rule.endpoint] == "token" else 403
            if status != denied:
                wrong.append(f"{method} {url} ({RULES[rule.endpoint]}): {status}, expected {denied}")
        elif status >= 500 or status in (401, 403) or status in NOT_A_TEST or is_csrf_refusal(response):
            wrong.append(f"{method} {url} ({RULES[rule.endpoint]}): {status}, expected it let through")
    assert not wrong, f"{role}: {len(wrong)} wrong cells\n" + "\n".join(wrong)


def test_anonymous_plain_requests_are_sent_to_the_login_page(app, fake):
    """The same sweep without htmx: a full-page request is redirected to the login page."""
    with app.app_context():
        world = security_world.build(fake)
    client = security_world.signed_in_client(app, world, "anonymous")
    for rule, method in cells(app):
        if RULES[rule.endpoint] in ("public", "token", "not-found"):  # the API answers JSON 401, never a redirect
            continue
        with app.app_context():
            url = world.url(rule)
        response = client.open(url, method=method)
        assert response.status_code == 302 and "/login" in response.headers["Location"], (method, url)


@pytest.mark.parametrize("role", ROLES)
def test_api_token_matrix(app, fake, role):
    """The API swept with a bearer token of every persona (all scopes): refused is 401 without a token, 403 when
    the user's rights do not allow; let through is anything else below 500."""
    from portal.api import tokens
    from portal.models import User

    assert {e for e, r in RULES.items() if r == "token"} == API_RULES.keys()
    with app.app_context():
        world = security_world.build(fake)
        secret = None
        if role != "anonymous":
            user = db.session.get(User, world.users[role])
            licence = user.erp_licence
            user.erp_licence = True  # minted even for the unlicensed persona: each request must refuse it
            _token, secret = tokens.create(user, "matrix", ["read", "sync", "link"])
            user.erp_licence = licence
            db.session.commit()
    client = app.test_client()
    headers = {"Authorization": f"Bearer {secret}"} if secret else {}
    bodies = {"api.record_link": {"connection_id": world.connection, "erp_key": world.free_erp_key,
                                  "actor_type": "Customer"}}
    api_cells = sorted(((rule, method) for rule, method in cells(app) if rule.endpoint in API_RULES),
                       key=lambda cell: (cell[0].endpoint == "api.record_unlink", cell[0].endpoint, cell[1]))
    wrong = []
    for rule, method in api_cells:
        with app.app_context():
            url = world.url(rule)
        response = client.open(url, method=method, headers=headers, json=bodies.get(rule.endpoint))
        status = response.status_code
        need = NEEDS[API_RULES[rule.endpoint]]
        if role == "anonymous":
            if status != 401:
                wrong.append(f"{method} {url}: {status}, expected 401")
        elif need not in CAPABILITIES[role]:
            if status != 403:
                wrong.append(f"{method} {url} ({API_RULES[rule.endpoint]}): {status}, expected 403")
        elif status >= 500 or status in (401, 403) or status in NOT_A_TEST:
            wrong.append(f"{method} {url} ({API_RULES[rule.endpoint]}): {status}, expected it let through")
        assert status == 204 or response.is_json, (method, url)
    assert not wrong, f"{role}: {len(wrong)} wrong cells\n" + "\n".join(wrong)


def test_demo_routes_are_not_registered_when_the_demo_is_off(app_config):
    from portal import create_app

    app = create_app({**app_config, "DEMO_DATA": False}, environ={})
    endpoints = {rule.endpoint for rule in app.url_map.iter_rules()}
    assert not any(endpoint.startswith("demo_erp.") for endpoint in endpoints)
    assert {e for e, r in RULES.items() if r == "demo-admin"} == {
        e for e in RULES if e.startswith("demo_erp.")}

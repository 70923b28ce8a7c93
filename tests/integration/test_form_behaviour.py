"""The server's side of issue #17's screen fixes (the browser side is tests/e2e/test_form_behaviour.py):

1. The connection form: only the connector's config values need a passed Test; the form carries the tested (and the
   saved) values — never a secret — so the page can enable OK whenever they are typed again; untested config values
   are still refused.
2. Import criteria: a row's field or operator change answers with only what it decides (the row, or the operator's
   part of the value cell), never the whole grid.
3. Mappings: switching an actor type off on an active connection asks first, saying how many linked records stop
   syncing; an inactive connection switches at once.
"""

from __future__ import annotations

import html as htmllib
import json
import re

import pytest
from sqlalchemy import select

from portal.extensions import db
from portal.models import AuditEvent, Connection, Link
from tests.integration import helpers_mapping
from tests.integration.test_import import connection_id  # noqa: F401 (the import tests' fixture)

connector = helpers_mapping.connector
connection_form = helpers_mapping.connection_form
define_connection = helpers_mapping.define_connection

NEW = "/settings/connections/new"


def _text(response) -> str:
    return response.get_data(as_text=True)


def _token(html: str) -> str:
    return re.search(r'name="test_token" type="hidden" value="([^"]*)"', html).group(1)


def _data_json(html: str, name: str) -> dict | None:
    match = re.search(rf"data-{name}='([^']*)'", html)
    return json.loads(htmllib.unescape(match.group(1))) if match else None


def _ok_disabled(html: str) -> bool:
    button = re.search(r'<button[^>]*id="connection-save"[^>]*>', html).group(0)
    return re.search(r"\sdisabled[\s>]", button) is not None


def _tested(admin_client, url: str, data: dict) -> str:
    response = admin_client.post(url, data={**data, "action": "test"}, htmx=True)
    assert response.status_code == 200, _text(response)
    return _text(response)


# ============================================================================== 1. connection form

def test_after_a_test_the_form_carries_the_tested_values_but_never_the_secret(admin_client, connector):
    html = _tested(admin_client, NEW, connection_form(connector))
    assert _data_json(html, "tested-config") == {"cfg_Company": "ACME", "cfg_Region": "north", "cfg_PageSize": "50"}
    assert _data_json(html, "saved-config") is None  # nothing is saved yet
    assert "s3cret-key" not in html and _token(html) and not _ok_disabled(html)


def test_scope_conflict_rule_name_and_description_need_no_new_test(app, admin_client, connector, users, fake):
    data = connection_form(connector)
    token = _token(_tested(admin_client, NEW, data))
    changed = {**data, "name": "Renamed", "description": "Other words", "conflict_policy": "erp",
               "scope": "specific", f"scope_user_{users['bob']}": "create", "all_can_create": "",
               "cfg_ApiKey": "s3cret-key", "test_token": token, "action": "save"}
    saved = admin_client.post(NEW, data=changed, htmx=True)
    assert "HX-Redirect" in saved.headers, _text(saved)
    with app.app_context():
        connection = db.session.scalar(select(Connection))
        assert (connection.name, connection.description, connection.conflict_policy) == \
            ("Renamed", "Other words", "erp")
        assert connection.all_access is False
        assert [(row.user_id, row.can_create) for row in connection.access] == [(users["bob"], True)]


def test_untested_config_values_are_refused_and_reverting_them_needs_no_new_test(app, admin_client, connector,
                                                                                fake):
    data = connection_form(connector)
    token = _token(_tested(admin_client, NEW, data))
    refused = admin_client.post(NEW, data={**data, "cfg_Company": "OTHER", "test_token": token, "action": "save"},
                                htmx=True)
    html = _text(refused)
    assert refused.status_code == 422 and "Test the connection with these values before saving" in html
    # the token does not vouch for what is shown now: it is not rendered again, and OK is disabled
    assert _token(html) == "" and _data_json(html, "tested-config") is None and _ok_disabled(html)
    assert not fake.calls_to("SaveConnection")
    with app.app_context():
        assert db.session.scalars(select(Connection)).all() == []
    # the values the token was made for are accepted again with it
    saved = admin_client.post(NEW, data={**data, "test_token": token, "action": "save"}, htmx=True)
    assert "HX-Redirect" in saved.headers, _text(saved)


def test_a_token_is_refused_for_other_secret_values(admin_client, connector, fake):
    data = connection_form(connector)
    token = _token(_tested(admin_client, NEW, data))
    refused = admin_client.post(NEW, data={**data, "cfg_ApiKey": "other-key", "test_token": token, "action": "save"},
                                htmx=True)
    assert refused.status_code == 422 and "Test the connection with these values before saving" in _text(refused)
    assert not fake.calls_to("SaveConnection")


def test_the_edit_form_carries_the_saved_values_and_ok_follows_them(admin_client, connector):
    cid = define_connection(admin_client, connector)
    url = f"/settings/connections/{cid}/edit"
    page = _text(admin_client.get(url))
    assert _data_json(page, "saved-config") == {"cfg_Company": "ACME", "cfg_Region": "north", "cfg_PageSize": "50"}
    assert "s3cret-key" not in page and not _ok_disabled(page)
    # changed config values without a test: refused, and the re-rendered form's OK is disabled
    data = connection_form(connector, cfg_ApiKey="", cfg_Company="OTHER")
    refused = admin_client.post(url, data={**data, "action": "save"}, htmx=True)
    assert refused.status_code == 422 and _ok_disabled(_text(refused))
    # a test of them vouches for them; the saved values stay acceptable too
    tested = _tested(admin_client, url, data)
    assert _data_json(tested, "tested-config")["cfg_Company"] == "OTHER"
    assert _data_json(tested, "saved-config")["cfg_Company"] == "ACME"
    assert not _ok_disabled(tested)
    # with a new secret tested (carried sealed behind a blank input), the saved values are no longer what OK sends
    rotated = _tested(admin_client, url, {**data, "cfg_ApiKey": "rotated-key"})
    assert _data_json(rotated, "saved-config") is None and _data_json(rotated, "tested-config")
    assert "rotated-key" not in rotated


# ============================================================================== 2. import criteria

SEARCH = "/settings/import/erp/search"


def _criteria(cid: int, **rows) -> dict:
    return {"connection_id": cid, "actor_type": "Customer", **rows}


def test_an_operator_change_answers_with_only_the_operators_part_of_the_value_cell(admin_client, connection_id):  # noqa: F811
    data = _criteria(connection_id, **{"crit-0-field": "name", "crit-0-op": "between", "crit-0-value": "",
                                       "crit-0-active": "1", "crit-1-field": "name", "crit-1-op": "=",
                                       "crit-1-value": "Acme", "crit-1-active": "1"})
    response = admin_client.post(SEARCH, data={**data, "action": "operator-0"}, htmx=True)
    html = _text(response).strip()
    assert response.status_code == 200 and html.startswith('<span id="crit-0-op-part">'), html[:200]
    assert 'name="crit-0-value2"' in html and 'aria-label="To (criterion 1)"' in html
    assert "From of criterion 1" in html
    # no other input comes back: nothing typed elsewhere (or in this row's first value) can be replaced
    assert 'name="crit-0-value"' not in html and "crit-1" not in html and 'id="criteria"' not in html
    other = admin_client.post(SEARCH, data={**data, "crit-0-op": "contains", "action": "operator-0"}, htmx=True)
    assert "crit-0-value2" not in _text(other) and "Value of criterion 1" in _text(other)


def test_a_field_change_answers_with_only_its_row(app, admin_client, connection_id):  # noqa: F811
    with app.app_context():
        db.session.get(Connection, connection_id).actor_type("Customer").searchable_fields = ["name", "employees"]
        db.session.commit()
    data = _criteria(connection_id, **{"crit-0-field": "name", "crit-0-op": "=", "crit-0-value": "Acme",
                                       "crit-0-active": "1", "crit-1-field": "employees", "crit-1-op": "=",
                                       "crit-1-active": "1"})
    response = admin_client.post(SEARCH, data={**data, "action": "field-1"}, htmx=True)
    html = _text(response).strip()
    assert response.status_code == 200 and html.startswith('<tr id="crit-1">') and html.count("<tr") == 1
    assert 'name="crit-1-op"' in html and 'value="&gt;"' in html  # the operators of an Integer field
    assert "crit-0" not in html


def test_row_changes_out_of_range_or_without_htmx_get_the_whole_grid_or_page(admin_client, connection_id):  # noqa: F811
    data = _criteria(connection_id, **{"crit-0-field": "name", "crit-0-op": "=", "crit-0-active": "1"})
    stale = _text(admin_client.post(SEARCH, data={**data, "action": "operator-5"}, htmx=True))
    assert 'id="criteria"' in stale and "<html" not in stale
    page = _text(admin_client.post(SEARCH, data={**data, "action": "operator-0"}))
    assert "<html" in page and 'id="criteria"' in page


# ============================================================================== 3. mappings switch

@pytest.fixture
def active_world(app, admin_client, connector):
    """An active connection with Customer and Person switched on and one company linked to a customer."""
    cid = define_connection(admin_client, connector)
    with app.app_context():
        connection = db.session.get(Connection, cid)
        for actor_type in ("Customer", "Person"):
            connection.actor_type(actor_type).is_active = True
        connection.active = True
        db.session.add(Link(connection_id=cid, crm_type="company", crm_id=1, erp_actor_type="Customer",
                            erp_key="C-1", base={}, status="ok"))
        db.session.commit()
    return cid


def _switch(cid: int) -> str:
    return f"/settings/connections/{cid}/mappings/Customer/switch"


def _customer_on(app, cid: int) -> bool:
    with app.app_context():
        return db.session.get(Connection, cid).actor_type("Customer").is_active


def _switch_audits(app) -> int:
    with app.app_context():
        return len(db.session.scalars(select(AuditEvent).where(AuditEvent.action == "mapping.actor_type")).all())


def test_switching_off_on_an_active_connection_asks_first_then_switches(app, admin_client, active_world):
    before = _switch_audits(app)
    asked = admin_client.post(_switch(active_world), data={}, htmx=True)
    html = htmllib.unescape(_text(asked))
    assert asked.status_code == 200 and html.lstrip().startswith('<form id="actor-switch"')
    assert "Stop syncing ERP “Customer” to CRM “Company”?" in html
    assert "1 linked CRM Company record stops syncing" in html
    assert 'name="confirmed" value="1"' in html and "Cancel" in html
    assert "mapping-changed" not in asked.headers.get("HX-Trigger", "")
    assert _customer_on(app, active_world) and _switch_audits(app) == before
    # Cancel is the page again: the switch is still on
    page = _text(admin_client.get(f"/settings/connections/{active_world}/mappings?actor=Customer"))
    assert re.search(r'<input type="checkbox" role="switch" id="switch-Customer"[^>]*checked', page)
    confirmed = admin_client.post(_switch(active_world), data={"confirmed": "1"}, htmx=True)
    assert confirmed.status_code == 200 and 'id="switch-Customer"' in _text(confirmed)
    assert "mapping-changed" in confirmed.headers["HX-Trigger"]
    assert not _customer_on(app, active_world) and _switch_audits(app) == before + 1


def test_switching_on_and_off_an_inactive_connection_needs_no_confirmation(app, admin_client, connector):
    cid = define_connection(admin_client, connector)
    admin_client.post(f"/settings/connections/{cid}/mappings/Customer/switch", data={"on": "1"}, htmx=True)
    off = admin_client.post(_switch(cid), data={}, htmx=True)
    assert off.status_code == 200 and "Stop syncing" not in _text(off)
    assert not _customer_on(app, cid)


def test_switching_on_an_active_connection_needs_no_confirmation(app, admin_client, active_world):
    on = admin_client.post(_switch(active_world), data={"on": "1"}, htmx=True)
    assert on.status_code == 200 and "Stop syncing" not in _text(on) and _customer_on(app, active_world)


def test_without_htmx_the_confirmation_is_a_page_and_confirm_redirects(app, admin_client, active_world):
    asked = admin_client.post(_switch(active_world), data={})
    html = htmllib.unescape(_text(asked))
    assert asked.status_code == 200 and "<html" in html and "Stop syncing ERP “Customer”" in html
    assert 'id="mapping-rows"' in html  # the whole Mappings page, with the panel in the switch's place
    assert _customer_on(app, active_world)
    confirmed = admin_client.post(_switch(active_world), data={"confirmed": "1"})
    assert confirmed.status_code == 302 and not _customer_on(app, active_world)


def test_the_confirmation_still_refuses_what_would_invalidate_the_connection(app, admin_client, active_world):
    with app.app_context():
        db.session.get(Connection, active_world).actor_type("Person").is_active = False
        db.session.commit()
    refused = admin_client.post(_switch(active_world), data={"confirmed": "1"}, htmx=True)
    assert refused.status_code == 422 and "The connection is active" in _text(refused)
    assert _customer_on(app, active_world)

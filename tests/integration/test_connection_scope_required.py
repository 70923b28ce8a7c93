"""A "Specific users and groups" scope with nobody in it is refused (issue #18, point 6.1; spec §1.4: OK stays
dimmed while the scope is missing) — by the service, so no caller stores a connection nobody can use, and on the
connection form as an error on the scope (422 for htmx), with nothing saved and nothing sent to the connector."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from portal.extensions import db
from portal.models import Connection, Connector
from portal.services import connections as service
from portal.services.connectors import ServiceError
from tests.integration import helpers_mapping

connector = helpers_mapping.connector

NOBODY = "Choose at least one user or group for “Specific users and groups”, or choose Everyone"


def _tested(admin_client, url: str, data: dict) -> dict:
    """``data`` with the test token of a passed Test of its config values."""
    tested = admin_client.post(url, data={**data, "action": "test"}, htmx=True)
    assert tested.status_code == 200, tested.get_data(as_text=True)
    html = tested.get_data(as_text=True)
    marker = 'name="test_token" type="hidden" value="'
    start = html.index(marker) + len(marker)
    return {**data, "test_token": html[start:html.index('"', start)]}


def _save(connector_id: int, scope: service.Scope, connection: Connection | None = None) -> Connection:
    """save_connection as the CLI or a script would call it (a valid test token, so only the scope can fail)."""
    row = db.session.get(Connector, connector_id)
    fields = service.config_fields(row)
    values = {"Company": "ACME", "ApiKey": "s3cret-key", "Region": "north", "PageSize": 50}
    return service.save_connection(connection, connector=row, name="Scripted", description="", values=values,
                                   fields=fields, scope=scope, conflict_policy="priority",
                                   test_token_value=service.test_token(row, values), actor=None)


@pytest.mark.parametrize("entries", [{}, {("user", 999_999): "connect", ("group", 999_999): "create"}],
                         ids=["nobody", "only-unknown-ids"])
def test_the_service_refuses_a_specific_scope_with_nobody(app, connector, fake, entries):
    with app.app_context():
        with pytest.raises(ServiceError) as refused:
            _save(connector, service.Scope(all_access=False, all_can_create=False, entries=entries))
        assert refused.value.field == "scope" and NOBODY in refused.value.message
        db.session.rollback()
        assert db.session.scalars(select(Connection)).all() == []
    assert not fake.calls_to("SaveConnection")  # refused before the connector is called


def test_the_service_accepts_everyone_and_a_scope_with_someone(app, connector, fake, users):
    with app.app_context():
        assert _save(connector, service.Scope()).all_access is True
        db.session.query(Connection).delete()
        db.session.commit()
        saved = _save(connector, service.Scope(all_access=False, entries={("user", users["bob"]): "connect"}))
        assert [(row.user_id, row.can_create) for row in saved.access] == [(users["bob"], False)]
        assert service.scope_problem(service.Scope(all_access=False)) is not None
        assert service.scope_problem(service.Scope(all_access=True)) is None


def test_the_form_shows_the_error_on_the_scope_and_saves_nothing(app, admin_client, connector, fake, users):
    data = _tested(admin_client, "/settings/connections/new",
                   helpers_mapping.connection_form(connector, scope="specific",
                                                   **{f"scope_user_{users['bob']}": ""}))  # "No access"
    saves_before = len(fake.calls_to("SaveConnection"))
    response = admin_client.post("/settings/connections/new", data={**data, "action": "save"}, htmx=True)
    html = response.get_data(as_text=True)
    assert response.status_code == 422 and "<html" not in html  # the htmx partial
    assert f'<small id="scope-error" class="field-error">{NOBODY}' in html
    assert 'aria-describedby="scope-error"' in html and 'value="specific" checked' in html
    assert f'name="test_token" type="hidden" value="{data["test_token"]}"' in html  # the passed test is kept
    with app.app_context():
        assert db.session.scalars(select(Connection)).all() == []
    assert len(fake.calls_to("SaveConnection")) == saves_before
    # choosing someone is enough: the same (tested) values save
    data[f"scope_user_{users['bob']}"] = "connect"
    saved = admin_client.post("/settings/connections/new", data={**data, "action": "save"}, htmx=True)
    assert saved.status_code == 200 and "HX-Redirect" in saved.headers, saved.get_data(as_text=True)


def test_a_test_of_the_values_is_not_held_up_by_the_scope(admin_client, connector):
    data = helpers_mapping.connection_form(connector, scope="specific")
    tested = admin_client.post("/settings/connections/new", data={**data, "action": "test"}, htmx=True)
    assert tested.status_code == 200 and "scope-error" not in tested.get_data(as_text=True)


def test_an_edit_to_a_specific_scope_with_nobody_is_refused_and_changes_nothing(app, admin_client, connector):
    connection_id = helpers_mapping.define_connection(admin_client, connector)
    data = helpers_mapping.connection_form(connector, name="Renamed", scope="specific", cfg_ApiKey="")
    response = admin_client.post(f"/settings/connections/{connection_id}/edit", data={**data, "action": "save"},
                                 htmx=True)
    assert response.status_code == 422 and NOBODY in response.get_data(as_text=True)
    with app.app_context():
        connection = db.session.get(Connection, connection_id)
        assert (connection.name, connection.all_access) == ("Fake production", True)


def test_a_plain_post_rerenders_the_whole_page_with_the_error(admin_client, connector):
    data = _tested(admin_client, "/settings/connections/new",
                   helpers_mapping.connection_form(connector, scope="specific"))
    response = admin_client.post("/settings/connections/new", data={**data, "action": "save"})
    assert response.status_code == 422 and "<html" in response.get_data(as_text=True)
    assert NOBODY in response.get_data(as_text=True)

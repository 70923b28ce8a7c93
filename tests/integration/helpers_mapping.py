"""Shared set-up for the mapping tests: a FakeConnector, a connector row and a defined (saved, tested)
connection, following the pattern of tests/integration/test_sync_tab.py.

Bind the fixtures in a test module with
``connector = helpers_mapping.connector`` (the ``fake`` fixtures come from tests/conftest.py).
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

from portal.extensions import db
from portal.models import AuditEvent, Connection, Connector, ErpField

CONFIG = {"cfg_Company": "ACME", "cfg_ApiKey": "s3cret-key", "cfg_Region": "north", "cfg_PageSize": "50"}


@pytest.fixture
def connector(app, fake):
    with app.app_context():
        row = Connector(name="Fake ERP", url=fake.url)
        db.session.add(row)
        db.session.commit()
        return row.id


def connection_form(connector_id, **extra) -> dict:
    data = {"name": "Fake production", "connector_id": str(connector_id), "description": "Main ERP",
            "scope": "everyone", "all_can_create": "1", "conflict_policy": "priority", **CONFIG}
    data.update(extra)
    return data


def define_connection(admin_client, connector_id, **extra) -> int:
    """Test and save a connection through the Define dialog; returns its id (fields cached, pre-mapped)."""
    data = connection_form(connector_id, **extra)
    tested = admin_client.post("/settings/connections/new", data={**data, "action": "test"}, htmx=True)
    assert tested.status_code == 200, tested.get_data(as_text=True)
    html = tested.get_data(as_text=True)
    marker = 'name="test_token" type="hidden" value="'
    start = html.index(marker) + len(marker)
    token = html[start:html.index('"', start)]
    saved = admin_client.post("/settings/connections/new", data={**data, "action": "save", "test_token": token},
                              htmx=True)
    assert saved.status_code == 200 and "HX-Redirect" in saved.headers, saved.get_data(as_text=True)
    return int(saved.headers["HX-Redirect"].split("connection=")[1])


def field_id(app, connection_id: int, actor_type: str, field_key: str) -> int:
    with app.app_context():
        connection = db.session.get(Connection, connection_id)
        config = connection.actor_type(actor_type)
        return next(f.id for f in config.fields if f.field_key == field_key)


def erp_field(connection_id: int, actor_type: str, field_key: str) -> ErpField:
    """The field (call inside an app context)."""
    connection = db.session.get(Connection, connection_id)
    return next(f for f in connection.actor_type(actor_type).fields if f.field_key == field_key)


def audit_actions(app) -> list[str]:
    with app.app_context():
        return [e.action for e in db.session.scalars(select(AuditEvent).order_by(AuditEvent.id))]

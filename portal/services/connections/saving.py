"""Saving a connection (OK in the dialog): the checks, SaveConnection → TestConnection → catalogue at the
connector, then one database transaction; and the snapshot the audit trail keeps of a connection."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select

from portal.connectors.client import ConnectorError
from portal.database import utcnow
from portal.extensions import db
from portal.models import Connection, Connector
from portal.security import crypto
from portal.services import audit
from portal.services.connections.catalogue import apply_catalogue, fetch_catalogue
from portal.services.connections.config import secret_keys
from portal.services.connections.config_check import token_matches
from portal.services.connections.scope import Scope, _apply_scope, scope_of, scope_problem
from portal.services.connections.secret_binding import full_config, secrets_to_reenter, stored_secrets
from portal.services.connectors import ServiceError, client_for

# ---------------------------------------------------------------------------------------------- save

def snapshot(connection: Connection) -> dict:
    scope = scope_of(connection)
    return {
        "name": connection.name, "description": connection.description, "connector": connection.connector_id,
        "active": connection.active, "deleted": connection.deleted, "config": dict(connection.config_values or {}),
        "secrets": {k: "set" for k in stored_secrets(connection)},
        "secrets_to_reenter": secrets_to_reenter(connection),
        "scope": "everyone" if scope.all_access else sorted(f"{k}:{i}:{v}" for (k, i), v in scope.entries.items()),
        "all_can_create": scope.all_can_create, "conflict_policy": connection.conflict_policy,
    }


def save_connection(connection: Connection | None, *, connector: Connector, name: str, description: str,
                    values: dict, fields: list[dict], scope: Scope, conflict_policy: str,
                    test_token_value: str | None, actor=None, **ctx) -> Connection:
    """Create or update a connection (OK in the dialog).

    New connections, and any change of config values, need a passed Test of exactly those values. Config
    values can change only while the connection is inactive. Then SaveConnection → TestConnection → catalogue
    refresh at the connector, and only if all of that worked, one database transaction. A "Specific users and
    groups" scope must name someone (:func:`scope_problem`; ServiceError field "scope"), checked before any call.
    """
    name = (name or "").strip()
    if not name:
        raise ServiceError("Give the connection a name.", "name")
    if len(name) > 120:
        raise ServiceError("The name can be at most 120 characters.", "name")
    clash = db.session.scalar(select(Connection).where(func.lower(Connection.name) == name.lower(),
                                                       Connection.deleted.is_(False)))
    if clash is not None and (connection is None or clash.id != connection.id):
        raise ServiceError("Another ERP connection already has this name.", "name")
    if connector.deleted:
        raise ServiceError("This sync connector is deleted; restore it first.", "connector")
    if connection is not None and connection.connector_id != connector.id:
        raise ServiceError("The connector of a saved connection cannot be changed.", "connector")
    problem = scope_problem(scope)
    if problem:
        raise ServiceError(problem, "scope")

    stored = full_config(connection) if connection is not None else None
    config_changed = connection is None or stored != values
    if config_changed and connection is not None and connection.active:
        raise ServiceError("Configuration fields can only be changed while the connection is inactive. "
                           "Deactivate it first.")
    if config_changed and not token_matches(test_token_value, connector, values):
        raise ServiceError("Test the connection with these values before saving.", "test")

    guid = connection.guid if connection is not None else str(uuid.uuid4())
    catalogue = None
    if config_changed:
        client = client_for(connector)
        try:
            client.save_connection(guid, values)
            client.test_connection(guid)
        except ConnectorError as exc:
            raise ServiceError(f"The connector did not accept the connection: {exc.user_message}") from exc
        catalogue = fetch_catalogue(connector, guid)

    before = snapshot(connection) if connection is not None else None
    secrets = secret_keys(fields)
    if connection is None:
        connection = Connection(connector_id=connector.id, guid=guid, active=False)
        db.session.add(connection)
    connection.name, connection.description = name, (description or "").strip()
    connection.conflict_policy = conflict_policy
    if config_changed:
        connection.config_values = {k: v for k, v in values.items() if k not in secrets}
        connection.secrets_encrypted = crypto.encrypt_json({k: v for k, v in values.items() if k in secrets})
        connection.last_test_ok, connection.last_test_at = True, utcnow()
        connection.last_test_message = "Tested when saved."
    _apply_scope(connection, scope)
    db.session.flush()
    if catalogue is not None:
        apply_catalogue(connection, catalogue)
    audit.record("connection.create" if before is None else "connection.update", connection, before=before,
                 after=snapshot(connection), actor=actor, **ctx)
    db.session.commit()
    return connection

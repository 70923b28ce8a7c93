"""A saved connection's lifecycle: activation (refused with reasons) and deactivation, the Test button, soft
delete and restore."""

from __future__ import annotations

from sqlalchemy import func, select

from portal.connectors.client import ConnectorError
from portal.database import utcnow
from portal.extensions import db
from portal.models import Connection
from portal.services import audit
from portal.services.connections.config_check import TestResult
from portal.services.connections.secret_binding import full_config, secrets_to_reenter
from portal.services.connectors import ServiceError, client_for

# ---------------------------------------------------------------------------------------------- lifecycle

def activation_problems(connection: Connection) -> list[str]:
    """Every reason why the connection cannot be activated (empty = it can). Extended by mapping rules."""
    problems = []
    if connection.deleted:
        problems.append("The connection is deleted.")
    if connection.connector.deleted:
        problems.append("Its sync connector is deleted.")
    if secrets_to_reenter(connection):
        problems.append("Its stored password(s) were cleared when its address changed: enter them again in "
                        "Configure and test the connection.")
    elif not connection.last_test_ok:
        problems.append("The connection has not passed a test.")
    try:
        from portal.services.mapping import mapping_problems
    except ImportError:  # mapping rules arrive with the mapping screens
        mapping_problems = None
    if mapping_problems is not None:
        problems.extend(mapping_problems(connection))
    return problems


def set_active(connection: Connection, active: bool, actor=None, **ctx) -> list[str]:
    """Activate (refused with reasons) or deactivate (always allowed). Returns the reasons, [] on success."""
    if active:
        problems = activation_problems(connection)
        if problems:
            return problems
    if connection.active != active:
        connection.active = active
        audit.record("connection.activate" if active else "connection.deactivate", connection,
                     before={"active": not active}, after={"active": active}, actor=actor, **ctx)
        if active:
            from portal.services.sync_settings import ensure_in_priority

            ensure_in_priority(connection.id)
        db.session.commit()
    return []


def test_saved_connection(connection: Connection, actor=None, **ctx) -> TestResult:
    """Test ERP connection (the list button): TestConnection on the stored config. Refused without a call while
    cleared secrets wait to be entered again (the connector would get the config without them)."""
    if secrets_to_reenter(connection):
        result = TestResult(False, "Its password(s) were cleared when its address changed: enter them again in "
                                   "Configure (Test there, then OK).")
        connection.last_test_ok, connection.last_test_at = False, utcnow()
        connection.last_test_message = result.message
        audit.record("connection.test", connection, after={"ok": False, "message": result.message[:200]},
                     actor=actor, **ctx)
        db.session.commit()
        return result
    try:
        reply = client_for(connection.connector).test_connection(connection.guid)
        result = TestResult(True, reply.user_explanation or "The connection works.", reply.warning)
    except ConnectorError as exc:
        result = TestResult(False, exc.user_message)
    connection.last_test_ok = result.ok
    connection.last_test_at = utcnow()
    connection.last_test_message = result.warning or result.message
    audit.record("connection.test", connection, after={"ok": result.ok, "message": result.message[:200]},
                 actor=actor, **ctx)
    db.session.commit()
    return result


def delete_connection(connection: Connection, actor=None, **ctx) -> str | None:
    """Soft delete. The connector is told (DeleteConnection) so it can clean up; if it cannot be reached the
    deletion still happens and the returned warning says so."""
    warning = None
    try:
        client_for(connection.connector, retries=0).delete_connection(connection.guid)
    except ConnectorError as exc:
        warning = f"The connector was not told about the deletion ({exc.user_message})."
    before = {"active": connection.active, "deleted": connection.deleted}
    connection.active, connection.deleted = False, True
    audit.record("connection.delete", connection, before=before, after={"active": False, "deleted": True},
                 actor=actor, **ctx)
    db.session.commit()
    return warning


def restore_connection(connection: Connection, actor=None, **ctx) -> str | None:
    """Undelete (inactive). The stored config is sent to the connector again; if that fails the connection
    still comes back, needing a test before activation."""
    clash = db.session.scalar(select(Connection).where(func.lower(Connection.name) == connection.name.lower(),
                                                       Connection.deleted.is_(False)))
    if clash is not None:
        raise ServiceError(f"Another ERP connection is called {connection.name}; rename it first.")
    if connection.connector.deleted:
        raise ServiceError("Its sync connector is deleted; restore the connector first.")
    warning = None
    try:
        client_for(connection.connector).save_connection(connection.guid, full_config(connection))
    except ConnectorError as exc:
        connection.last_test_ok = False
        warning = f"The connector did not take the configuration back ({exc.user_message}); test it again."
    connection.deleted = False
    audit.record("connection.restore", connection, before={"deleted": True}, after={"deleted": False},
                 actor=actor, **ctx)
    db.session.commit()
    return warning

"""Sync connectors: registering them, probing their URL, and building protocol clients for them."""

from __future__ import annotations

import logging

from flask import current_app
from sqlalchemy import func, select

from portal.connectors.client import ConnectorClient, ConnectorError
from portal.extensions import db
from portal.models import Connection, Connector
from portal.security import crypto
from portal.security.urlguard import UrlNotAllowed, check_connector_url
from portal.services import audit

log = logging.getLogger(__name__)


class ServiceError(ValueError):
    """A rule was broken or a connector failed; ``message`` is for the admin, ``field`` names the input."""

    def __init__(self, message: str, field: str | None = None, details: list[str] | None = None):
        super().__init__(message)
        self.message = message
        self.field = field
        self.details = details or []


def make_client(url: str, token: str | None = None, *, resend_config=None, timeout: float | None = None,
                retries: int = 3) -> ConnectorClient:
    config = current_app.config
    return ConnectorClient(
        url,
        token=token,
        timeout=timeout or config["CONNECTOR_TIMEOUT"],
        max_bytes=config["CONNECTOR_MAX_BYTES"],
        retries=retries,
        allowed_networks=config["CONNECTOR_ALLOWED_NETWORKS"],
        app_config=config,
        resend_config=resend_config,
    )


def connector_token(connector: Connector) -> str | None:
    return crypto.decrypt(connector.token_encrypted) if connector.token_encrypted else None


def client_for(connector: Connector, *, timeout: float | None = None, retries: int = 3) -> ConnectorClient:
    """A client for ``connector`` that re-sends a connection's stored config on UNKNOWN_CONNECTION_ID."""
    connector_id = connector.id

    def resend(guid: str) -> dict | None:
        from portal.services.connections import full_config

        connection = db.session.scalar(
            select(Connection).where(Connection.guid == guid, Connection.connector_id == connector_id)
        )
        return full_config(connection) if connection is not None else None

    return make_client(connector.url, connector_token(connector), resend_config=resend, timeout=timeout,
                       retries=retries)


def validate_url(url: str) -> str:
    url = (url or "").strip()
    if not url:
        raise ServiceError("Enter the URL of the sync connector.", "url")
    try:
        check_connector_url(url, current_app.config["CONNECTOR_ALLOWED_NETWORKS"])
    except UrlNotAllowed as exc:
        raise ServiceError(str(exc), "url") from exc
    return url


def probe(url: str, token: str | None = None) -> list[dict]:
    """Ask the URL for its config fields: proves it is reachable and speaks the protocol."""
    client = make_client(url, token, timeout=min(current_app.config["CONNECTOR_TIMEOUT"], 15), retries=1)
    try:
        return client.get_config_data()
    except ConnectorError as exc:
        log.warning("probe of %s failed: %s (%s)", url, exc.user_message, exc.tech_message)
        raise ServiceError(f"The connector at this URL did not answer as a sync connector: {exc.user_message}",
                           "url") from exc


def _snapshot(connector: Connector) -> dict:
    return {"name": connector.name, "url": connector.url, "token": "set" if connector.token_encrypted else "",
            "deleted": connector.deleted}


def save_connector(connector: Connector | None, *, name: str, url: str, token: str | None,
                   clear_token: bool = False, actor=None, **ctx) -> Connector:
    """Create or update a connector. A blank ``token`` keeps the stored one (unless clear_token)."""
    name = (name or "").strip()
    if not name:
        raise ServiceError("Give the connector a name.", "name")
    if len(name) > 120:
        raise ServiceError("The name can be at most 120 characters.", "name")
    clash = db.session.scalar(select(Connector).where(func.lower(Connector.name) == name.lower(),
                                                      Connector.deleted.is_(False)))
    if clash is not None and (connector is None or clash.id != connector.id):
        raise ServiceError("Another connector already has this name.", "name")
    url = validate_url(url)
    new_token = token.strip() if token and token.strip() else None
    effective_token = None if clear_token else (new_token or (connector_token(connector) if connector else None))
    if connector is None or url != connector.url or new_token or clear_token:
        probe(url, effective_token)  # outside any write transaction
    before = _snapshot(connector) if connector else None
    if connector is None:
        connector = Connector(name=name, url=url)
        db.session.add(connector)
    connector.name, connector.url = name, url
    if clear_token:
        connector.token_encrypted = None
    elif new_token:
        connector.token_encrypted = crypto.encrypt(new_token)
    db.session.flush()
    audit.record("connector.create" if before is None else "connector.update", connector, before=before,
                 after=_snapshot(connector), actor=actor, **ctx)
    db.session.commit()
    return connector


def live_connection_count(connector: Connector) -> int:
    return db.session.scalar(select(func.count()).select_from(Connection).where(
        Connection.connector_id == connector.id, Connection.deleted.is_(False)))


def delete_connector(connector: Connector, actor=None, **ctx) -> None:
    """Soft delete; refused while the connector still has (non-deleted) connections."""
    count = live_connection_count(connector)
    if count:
        raise ServiceError(f"{connector.name} still has {count} ERP connection(s); delete them first.")
    connector.deleted = True
    audit.record("connector.delete", connector, before={"deleted": False}, after={"deleted": True}, actor=actor,
                 **ctx)
    db.session.commit()


def restore_connector(connector: Connector, actor=None, **ctx) -> None:
    connector.deleted = False
    audit.record("connector.restore", connector, before={"deleted": True}, after={"deleted": False}, actor=actor,
                 **ctx)
    db.session.commit()

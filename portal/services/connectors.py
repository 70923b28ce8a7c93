"""Sync connectors: registering them, probing their URL, and building protocol clients for them."""

from __future__ import annotations

import logging
from urllib.parse import urlsplit, urlunsplit

from flask import current_app
from sqlalchemy import func, select

from portal.connectors.client import ConnectorClient, ConnectorError
from portal.connectors.guard import CallGuard, GuardSettings, Lane
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
                retries: int = 3, lane: Lane = Lane.SYNC, name: str | None = None) -> ConnectorClient:
    """A client with the app's limits, guarded by the process's breakers and bulkheads (:func:`call_guard`);
    ``lane`` WEB for calls a web request waits on (the ERP tab), ``name`` how messages call the connection."""
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
        guard=call_guard(),
        lane=lane,
        name=name,
    )


def call_guard() -> CallGuard:
    """The process's :class:`CallGuard`, made from the app's settings on first use."""
    guard = current_app.extensions.get("call_guard")
    if guard is None:
        config = current_app.config
        # setdefault: requests racing to make it all get the one stored (else each its own breakers)
        guard = current_app.extensions.setdefault("call_guard", CallGuard(GuardSettings(
            failures=config["BREAKER_FAILURES"], cooldown=float(config["BREAKER_COOLDOWN"]),
            per_connection=config["ERP_TAB_CONCURRENCY"], total=config["ERP_TAB_MAX_INFLIGHT"])))
    return guard


def connector_token(connector: Connector) -> str | None:
    return crypto.decrypt(connector.token_encrypted) if connector.token_encrypted else None


def not_answering(connection: Connection) -> str:
    """"Demo ERP is not answering since 10:42 UTC; retrying at 10:43 UTC." while the connection's breaker is open
    in this process, else ""."""
    return call_guard().status(connection.guid).message(connection.name)


def client_for(connector: Connector, *, timeout: float | None = None, retries: int = 3, lane: Lane = Lane.SYNC,
               name: str | None = None) -> ConnectorClient:
    """A client for ``connector`` that re-sends a connection's stored config on UNKNOWN_CONNECTION_ID."""
    connector_id = connector.id

    def resend(guid: str) -> dict | None:
        from portal.services.connections import full_config

        connection = db.session.scalar(
            select(Connection).where(Connection.guid == guid, Connection.connector_id == connector_id)
        )
        return full_config(connection) if connection is not None else None

    return make_client(connector.url, connector_token(connector), resend_config=resend, timeout=timeout,
                       retries=retries, lane=lane, name=name)


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


def normalise_url(url: str | None) -> str:
    """``url`` as an address to compare: blanks trimmed, scheme and host lower-case, the default port and a
    trailing slash dropped. Two URLs that normalise alike reach the same place; anything else is a new address
    (a different path or query included: another application may live there)."""
    text = (url or "").strip()
    if "://" not in text:
        return text.lower().rstrip("/")
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        return text.lower().rstrip("/")
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    if port is not None and (scheme, port) not in (("http", 80), ("https", 443)):
        host = f"{host}:{port}"
    if parts.username is not None or parts.password is not None:
        host = f"{parts.username or ''}:{parts.password or ''}@{host}"
    return urlunsplit((scheme, host, parts.path.rstrip("/"), parts.query, ""))


def url_changed(old: str | None, new: str | None) -> bool:
    return normalise_url(old) != normalise_url(new)


TOKEN_AGAIN = ("The URL changed: enter the access token again (it is never sent to a new address without being "
               "typed), or tick “Remove the stored token”.")


def save_connector(connector: Connector | None, *, name: str, url: str, token: str | None,
                   clear_token: bool = False, actor=None, **ctx) -> Connector:
    """Create or update a connector. A blank ``token`` keeps the stored one (unless clear_token).

    A new address (:func:`url_changed`) gets no stored secret: with a stored token and a blank ``token`` the save
    is refused (field ``token``: type it again or remove it), the probe of the new address carries only a token
    typed in this save, and the stored secrets of every connection of the connector are cleared
    (``connections.clear_secrets``): they are entered again, and tested, before a connection works again.
    """
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
    moved = connector is not None and url_changed(connector.url, url)
    if moved and connector.token_encrypted and not new_token and not clear_token:
        raise ServiceError(TOKEN_AGAIN, "token")
    stored_token = connector_token(connector) if connector is not None and not moved else None
    effective_token = None if clear_token else (new_token or stored_token)
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
    if moved:
        from portal.services.connections import clear_secrets

        for connection in db.session.scalars(select(Connection).where(Connection.connector_id == connector.id)
                                             .order_by(Connection.id)):
            clear_secrets(connection, reason=f"The URL of the sync connector {connector.name} changed.",
                          actor=actor, **ctx)
    db.session.commit()
    return connector


def connections_needing_secrets(connector: Connector) -> list[Connection]:
    """The connector's (non-deleted) connections whose secrets were cleared and wait to be entered again."""
    from portal.services.connections import secrets_to_reenter

    rows = db.session.scalars(select(Connection).where(Connection.connector_id == connector.id,
                                                       Connection.deleted.is_(False)).order_by(Connection.name))
    return [c for c in rows if secrets_to_reenter(c)]


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

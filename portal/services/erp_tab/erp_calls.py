"""Calling the connector from a web request: the client (the WEB lane, a short timeout), the released read
transaction before each call, connector failures as :class:`ConnectorFailed`, and the ERP's list texts.

Transactions: no database transaction is held open while a connector is called. Before every connector call the
session is committed (``_release``: that ends the read transaction SQLite/PostgreSQL opened for the preceding
queries; nothing is pending at that point), and the writes that follow a successful call happen in one short
transaction (see connecting.py, create_in_erp.py).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

from flask import current_app

from portal.connectors.client import ConnectorClient, ConnectorError
from portal.connectors.guard import Lane
from portal.extensions import db
from portal.models import Connection, ErpField, FieldType
from portal.services.connectors import client_for
from portal.services.erp_tab.errors import ConnectorFailed

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 10.0  # seconds: the tab must answer quickly even when a connector hangs


def _release() -> None:
    """End the current (read) transaction before a connector call; nothing is pending here.

    The commit does not expire the loaded objects, so reading their attributes during the call issues no SQL
    (which would open a new transaction). Callers load what they need before calling this.
    """
    session = db.session()
    expire = session.expire_on_commit
    session.expire_on_commit = False
    try:
        session.commit()
    finally:
        session.expire_on_commit = expire


def _timeout() -> float:
    config = current_app.config
    return float(min(config.get("ERP_TAB_TIMEOUT", DEFAULT_TIMEOUT), config.get("CONNECTOR_TIMEOUT", 30)))


def _client(connection: Connection, retries: int = 1) -> ConnectorClient:
    """A web request waits on it: the WEB lane's bulkheads apply (never all web threads on one ERP)."""
    return client_for(connection.connector, timeout=_timeout(), retries=retries, lane=Lane.WEB,
                      name=connection.name)


def _failed(exc: ConnectorError, what: str) -> ConnectorFailed:
    return ConnectorFailed(f"{what}: {exc.user_message}")


def _warnings(client: ConnectorClient) -> list[str]:
    return list(dict.fromkeys(text for _method, text in client.warnings))


def _list_texts(client: ConnectorClient, guid: str, fields: Iterable[ErpField],
                actors: Iterable[Mapping]) -> dict[str, dict[str, str]]:
    """Texts of the list item keys the actors hold, per ERP field key (GetListItems; on failure: the keys)."""
    by_list: dict[str, set[str]] = {}
    list_of: dict[str, str] = {}
    for f in fields:
        if f.field_type == FieldType.LIST and f.list_name:
            list_of[f.field_key] = f.list_name
    for actor in actors:
        values = actor.get("FieldValues") or {}
        for key, list_name in list_of.items():
            value = values.get(key)
            if value not in (None, ""):
                by_list.setdefault(list_name, set()).add(str(value))
    texts: dict[str, dict[str, str]] = {}
    for list_name, keys in by_list.items():
        try:
            texts[list_name] = client.get_list_items(guid, list_name, sorted(keys))
        except ConnectorError as exc:
            log.warning("GetListItems %s failed: %s", list_name, exc.tech_message or exc.user_message)
            texts[list_name] = {}
    return {key: texts.get(list_name, {}) for key, list_name in list_of.items()}


def get_lists(connection: Connection, fields: Iterable[ErpField], client: ConnectorClient | None = None
              ) -> dict[str, dict[str, str]]:
    """Whole lists (GetList) for the list fields among ``fields``, by list name. Raises ConnectorFailed."""
    names = sorted({f.list_name for f in fields if f.field_type == FieldType.LIST and f.list_name})
    if not names:
        return {}
    guid = connection.guid
    own = client is None
    if own:
        client = _client(connection)
        _release()
    try:
        return {name: client.get_list(guid, name) for name in names}
    except ConnectorError as exc:
        raise _failed(exc, "The ERP's lists could not be read") from exc
    finally:
        if own:
            client.close()

"""The ERP tab's business rules (spec §2, §3.4; issue #5): who sees which connection, live values, search,
compare, connect, create in ERP, disconnect and Sync now.

Plain values and models in, dataclasses out; never ``request``. Every rule failure raises an
:class:`ErpTabError` whose ``message`` can be shown to the user as is and whose ``status`` is the HTTP status
the blueprint answers with.

Transactions: no database transaction is held open while a connector is called. Before every connector call the
session is committed (that ends the read transaction SQLite/PostgreSQL opened for the preceding queries; nothing
is pending at that point), and the writes that follow a successful call happen in one short transaction:

* connect: rules checked (read) → ``GetActors`` → ``SaveActors`` with the chosen values → one transaction that
  writes the CRM record, stores the link (its base = the values both sides now agree on, see ``link_base`` for the
  fields left as they are) and the audit row. If that transaction fails, the ERP holds the agreed values, which is
  harmless. A value one side holds and the other cannot hold is never written over, by a blank or otherwise;
* create: rules checked → ``CreateActor`` carrying an idempotency key derived from (connection GUID, CRM type,
  CRM id, the dialog's nonce), so a repeated click returns the actor created the first time → one transaction
  for the CRM write-back, the link and the audit row. A second submit that finds the link answers it;
* disconnect never calls the connector and only deletes the link.

Scope: a connection with ``all_access`` lets every licensed user connect, and create in the ERP when
``all_can_create``; otherwise the user's own scope entry and the entries of all their groups are combined
(any entry that allows something allows it). Creating in the ERP also links, so it needs ``can_connect`` too.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime

from flask import current_app
from sqlalchemy import select

from portal.connectors.client import ConnectorClient, ConnectorError
from portal.connectors.guard import Lane
from portal.connectors.protocol import OPERATORS
from portal.database import utcnow
from portal.extensions import db
from portal.models import (
    CRM_MODELS,
    CRM_TYPE_LABELS,
    ActorType,
    ActorTypeConfig,
    Connection,
    Connector,
    CrmFieldType,
    CrmType,
    ErpField,
    FieldType,
    Link,
    LinkStatus,
    ListItem,
    SyncChange,
    crm_field,
)
from portal.services import audit
from portal.services.actor_labels import actor_label
from portal.services.connectors import client_for
from portal.services.crm_rules import check_crm_value, check_crm_values
from portal.services.labels import ChangeText, ItemNames, change_texts, value_texts
from portal.services.links import LinkError, check_free, create_link, holder_descriptions, link_for, mark_broken
from portal.services.links import remove_link as _remove_link
from portal.services.live_cache import live_cache
from portal.services.sync.fieldmap import (
    MappedField,
    check_erp_values,
    crm_side,
    erp_side,
    mapped_fields,
    to_crm_values,
    write_crm,
)
from portal.services.sync_now_text import conflict_text
from portal.services.sync_now_text import triples as _triples
from portal.services.values import ConversionError, display, is_blank, normalize_erp, number_text, same_value

log = logging.getLogger(__name__)

# seconds a request waits for another request's read of the same actor: longer would park web threads outside
# the guard's caps (portal.connectors.guard) whenever that ERP is slow
SHARED_READ_WAIT = 2.0
DEFAULT_TIMEOUT = 10.0  # seconds: the tab must answer quickly even when a connector hangs
SEARCH_LIMIT = 100  # result rows shown in the search dialog
MAX_SEARCH_TEXT = 100
NONCE_RE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
ACTOR_ORDER = {name: index for index, name in enumerate(ActorType)}
PARENT_KEYS = ("ParentErpKey", "ParentActorType")

OPERATOR_LABELS = {
    "=": "is", "isnot": "is not", "begins": "begins with", "notbegins": "does not begin with",
    "contains": "contains", "notcontains": "does not contain", "ends": "ends with", "notends": "does not end with",
    "between": "is between", "!=": "is not", ">": "is greater than", "<": "is less than", ">=": "is at least",
    "<=": "is at most", "oneof": "is one of", "notoneof": "is not one of", "before": "is before",
    "after": "is after", "beforeOrEqual": "is on or before", "afterOrEqual": "is on or after",
}


# ------------------------------------------------------------------------------------------------- errors


class ErpTabError(Exception):
    """A rule refused the action or a connector failed; ``message`` is for the user."""

    status = 400

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.message = message
        if status is not None:
            self.status = status


class Refused(ErpTabError):
    """The user may not do this (no licence, outside the scope, no right to connect/create)."""

    status = 403


class NotFound(ErpTabError):
    status = 404


class RuleBroken(ErpTabError):
    """A link rule (one link per record / per actor, contacts under a linked company) refused the action."""

    status = 409


class ConnectorFailed(ErpTabError):
    """The connector could not do what was asked; nothing was stored."""

    status = 502


class StaleComparison(ErpTabError):
    """The CRM record or the ERP actor changed after the comparison was shown."""

    status = 409


class InvalidInput(ErpTabError):
    """Field-level problems (``errors``: form field name or ERP key -> message)."""

    status = 422

    def __init__(self, message: str, errors: Mapping[str, str] | None = None):
        super().__init__(message)
        self.errors = dict(errors or {})


# ------------------------------------------------------------------------------------------------- scope


@dataclass(frozen=True)
class Access:
    """What a user may do on one connection (ErpConnectionAccess.CanConnect / CanCreateERP)."""

    can_connect: bool
    can_create: bool


def user_access(user, connection: Connection) -> Access | None:
    """The user's rights on ``connection``, or None when the user is outside its scope (or unlicensed)."""
    if user is None or not user.erp_licence or not user.is_active:
        return None
    if connection.all_access:
        return Access(True, bool(connection.all_can_create))
    group_ids = {group.id for group in user.groups}
    entries = [row for row in connection.access
               if row.user_id == user.id or (row.group_id is not None and row.group_id in group_ids)]
    if not entries:
        return None
    can_connect = any(row.can_connect for row in entries)
    return Access(can_connect, can_connect and any(row.can_create for row in entries))


def tab_actor_types(connection: Connection, crm_type: str) -> list[ActorTypeConfig]:
    """The active actor types of ``connection`` that link to ``crm_type`` records, Customer before Supplier…"""
    configs = [c for c in connection.actor_types if c.is_active and c.supported and c.crm_type == crm_type]
    return sorted(configs, key=lambda c: (ACTOR_ORDER.get(c.erp_actor_type, 99), c.erp_actor_type))


def _priority_index() -> dict[int, int]:
    from portal.services.sync_settings import priority_entries

    return {entry_id: index for index, (entry_id, _label) in enumerate(priority_entries())}


def _live_connections() -> list[Connection]:
    return list(db.session.scalars(
        select(Connection).join(Connector, Connection.connector_id == Connector.id)
        .where(Connection.active.is_(True), Connection.deleted.is_(False), Connector.deleted.is_(False))))


def visible_connections(user, crm_type: str) -> list[tuple[Connection, Access, list[ActorTypeConfig]]]:
    """The connections that get a section on the ERP tab of a ``crm_type`` record, in sync-priority order."""
    if user is None or not user.erp_licence:
        return []
    connections = _live_connections()
    if not connections:
        return []
    rank = _priority_index()
    connections.sort(key=lambda c: (rank.get(c.id, len(rank)), c.name.lower(), c.id))
    result = []
    for connection in connections:
        configs = tab_actor_types(connection, crm_type)
        if not configs:
            continue
        access = user_access(user, connection)
        if access is not None:
            result.append((connection, access, configs))
    return result


# ------------------------------------------------------------------------------------------------ sections


@dataclass
class Section:
    """One connection's part of a record's ERP tab."""

    connection: Connection
    access: Access
    crm_type: str
    record: object
    actor_types: list[ActorTypeConfig]
    link: Link | None
    parent_link: Link | None = None
    blocked: str = ""  # why the record cannot be connected on this connection right now
    conflicts: list[ChangeText] = field(default_factory=list)

    @property
    def connected(self) -> bool:
        return self.link is not None

    @property
    def broken(self) -> bool:
        return self.link is not None and self.link.status == LinkStatus.BROKEN

    @property
    def link_config(self) -> ActorTypeConfig | None:
        return self.connection.actor_type(self.link.erp_actor_type) if self.link is not None else None

    @property
    def can_connect(self) -> bool:
        return self.access.can_connect and not self.blocked

    @property
    def can_create(self) -> bool:
        return self.access.can_create and self.can_connect

    def actor_type(self, name: str) -> ActorTypeConfig:
        for config in self.actor_types:
            if config.erp_actor_type == name:
                return config
        raise NotFound(f"{self.connection.name} does not connect {CRM_TYPE_LABELS[self.crm_type].lower()}s "
                       f"to {name}.")


def sync_status(section: Section):
    """The record's sync status on this connection, for the section's badge (``record_sync_status.link_status``:
    In sync / Pending / Error / Broken / Not linked)."""
    from portal.services.record_sync_status import link_status

    return link_status(section.link, getattr(section.record, "updated_at", None))


def crm_type_of(value: str) -> CrmType:
    try:
        return CrmType(value)
    except ValueError:
        raise NotFound("There is no such kind of record.") from None


def load_record(crm_type: str, record_id: int):
    record = db.session.get(CRM_MODELS[crm_type_of(crm_type)], record_id)
    if record is None:
        raise NotFound(f"That {CRM_TYPE_LABELS[CrmType(crm_type)].lower()} does not exist.")
    return record


def _require_licence(user) -> None:
    if user is None:
        raise Refused("Sign in to use the ERP tab.", 401)
    if not user.erp_licence:
        raise Refused("You need an ERP Sync licence to use the ERP tab.")


def _conflicts(link: Link) -> list[ChangeText]:
    """The conflicts recorded by the most recent sync run that touched this link, as people read them."""
    # By the record first (the change log's record index), then the link: the log may hold millions of rows
    this_link = (SyncChange.crm_type == link.crm_type, SyncChange.crm_id == link.crm_id,
                 SyncChange.connection_id == link.connection_id, SyncChange.link_id == link.id)
    latest = db.session.scalar(select(SyncChange.run_id).where(*this_link, SyncChange.run_id.is_not(None))
                               .order_by(SyncChange.id.desc()).limit(1))
    if latest is None:
        return []
    return list(change_texts(db.session.scalars(select(SyncChange).where(
        *this_link, SyncChange.run_id == latest, SyncChange.conflict.is_(True)).order_by(SyncChange.id))).values())


def _build_section(connection: Connection, access: Access, configs: list[ActorTypeConfig], crm_type: str,
                   record) -> Section:
    link = link_for(connection.id, crm_type, record.id)
    section = Section(connection, access, crm_type, record, configs, link)
    if link is not None:
        section.conflicts = _conflicts(link)
    elif crm_type == CrmType.CONTACT:
        company = record.company
        if company is None:
            section.blocked = (f"This contact has no company. Contacts can be connected to {connection.name} "
                               "only under a company that is connected there.")
        else:
            section.parent_link = link_for(connection.id, CrmType.COMPANY, company.id)
            if section.parent_link is None:
                section.blocked = (f"Connect the company {company.display_name} to {connection.name} first: "
                                   "contacts can be connected only under a connected company.")
            elif section.parent_link.status == LinkStatus.BROKEN:
                section.blocked = (f"The company {company.display_name} is linked to an ERP record that no longer "
                                   "exists; fix the company's link first.")
    return section


def sections_for(user, crm_type: str, record) -> list[Section]:
    """Every section the user gets on this record's ERP tab (empty when the tab must not show)."""
    return [_build_section(connection, access, configs, crm_type, record)
            for connection, access, configs in visible_connections(user, crm_type)]


def section_for(user, crm_type: str, record, connection_id: int) -> Section:
    """One section, re-checking licence and scope (every action goes through here)."""
    _require_licence(user)
    connection = db.session.get(Connection, connection_id)
    if connection is None or connection.deleted or connection.connector.deleted:
        raise NotFound("That ERP connection does not exist.")
    if not connection.active:
        raise NotFound(f"The ERP connection {connection.name} is not active.")
    configs = tab_actor_types(connection, crm_type)
    if not configs:
        raise NotFound(f"{connection.name} does not sync {CRM_TYPE_LABELS[CrmType(crm_type)].lower()}s.")
    access = user_access(user, connection)
    if access is None:
        raise Refused(f"You do not have access to the ERP connection {connection.name}.")
    return _build_section(connection, access, configs, crm_type, record)


def require_connect(section: Section) -> None:
    if not section.access.can_connect:
        raise Refused(f"You may not connect or disconnect records on {section.connection.name}.")
    if section.blocked:
        raise RuleBroken(section.blocked)


def require_create(section: Section) -> None:
    require_connect(section)
    if not section.access.can_create:
        raise Refused(f"You may not create records in the ERP on {section.connection.name}.")


# ------------------------------------------------------------------------------------------------ helpers


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


def _stamp(moment) -> str:
    return moment.isoformat() if isinstance(moment, datetime | date) else str(moment or "")


def fields_by_key(config: ActorTypeConfig) -> dict[str, ErpField]:
    return {f.field_key: f for f in config.fields if not f.missing_in_erp}


def _ranked(fields: Iterable[ErpField]) -> list[ErpField]:
    return sorted(fields, key=lambda f: (f.rank, f.connector_rank, f.id or 0))


def tab_fields(config: ActorTypeConfig | None) -> list[ErpField]:
    """Show in ERP tab fields, rank order."""
    if config is None:
        return []
    return _ranked(f for f in config.fields if f.show_in_gui and not f.missing_in_erp)


def search_fields(config: ActorTypeConfig) -> list[ErpField]:
    """Show in search fields (the result columns), rank order."""
    return _ranked(f for f in config.fields if f.show_in_search and not f.missing_in_erp)


def ask_fields(config: ActorTypeConfig) -> list[ErpField]:
    """The admin's "ask user" default-value fields, rank order (Label and read-only fields cannot be asked)."""
    return _ranked(f for f in config.fields if f.ask_user and not f.missing_in_erp and not f.read_only
                   and f.field_type != FieldType.LABEL)


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


def display_value(erp_field: ErpField | None, value: object, list_texts: Mapping[str, str] | None = None) -> str:
    field_type = erp_field.field_type if erp_field is not None else FieldType.TEXT
    return display(field_type, value, list_texts)


def value_text(field_type: str, value: object) -> str:
    """A normalized ERP value as the text an input shows (for prefilling forms)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "y" if value else ""
    if isinstance(value, int | float):
        return number_text(value)
    if field_type == FieldType.DATE:
        return str(value)[:10]
    return str(value)


def crm_value_text(record, f: MappedField) -> str:
    raw = getattr(record, f.crm_key, None)
    if raw is None:
        return ""
    if f.crm_type == CrmFieldType.LIST:
        item = db.session.get(ListItem, raw)
        return item.name if item is not None else f"#{raw}"
    if isinstance(raw, date):
        return raw.isoformat()
    if isinstance(raw, bool):  # a CRM checkbox
        return "Yes" if raw else "No"
    if isinstance(raw, int | float):  # a CRM whole or decimal number, without needless zeros
        return number_text(raw)
    return str(raw)


# ---------------------------------------------------------------------------------------------- live values


@dataclass
class LiveValues:
    fields: list[tuple[str, str]] = field(default_factory=list)  # (label, text), rank order
    broken: bool = False
    error: str = ""
    warnings: list[str] = field(default_factory=list)
    reload: bool = False  # this read broke or restored the link: the section (heading, message) is shown anew


@dataclass(frozen=True)
class _ActorRead:
    """One live read of an actor (shared by the requests that waited on it, kept a few seconds when it worked)."""

    actor: dict | None = None
    texts: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    error: str = ""


def forget_live_values(connection_id: int, actor_type: str, erp_key: str) -> None:
    """The tab changed the actor or its link (Connect, Create, Disconnect, Sync now): read it live next time."""
    live_cache().forget(lambda key: key[:3] == (connection_id, actor_type, erp_key))


def live_values(section: Section) -> LiveValues:
    """The Show in ERP tab values of the linked actor, read live (GetActors + GetListItems).

    A missing actor marks the link broken ("the ERP no longer has …"); an actor that is back clears it.
    Connector failures come back as ``error`` (the section offers Retry), never as an exception.
    """
    link = section.link
    if link is None:
        return LiveValues()
    link_id, actor_type, erp_key = link.id, link.erp_actor_type, link.erp_key
    fields = tab_fields(section.link_config)
    keys = [f.field_key for f in fields]
    connection = section.connection
    connection_id, guid = connection.id, connection.guid
    # a sync of the link changes last_synced_at: the next look reads the ERP again (portal.services.live_cache)
    cache_key = (connection_id, actor_type, erp_key, tuple(keys), link.last_synced_at)

    def read() -> _ActorRead:
        client = _client(connection, retries=0)
        try:
            try:
                actors = client.get_actors(guid, actor_type, [erp_key], keys)
            except ConnectorError as exc:
                return _ActorRead(error=exc.user_message, warnings=_warnings(client))
            actor = next((a for a in actors if a.get("ErpKey") == erp_key), None)
            texts = _list_texts(client, guid, fields, [actor]) if actor is not None and fields else {}
            return _ActorRead(actor=actor, texts=texts, warnings=_warnings(client))
        finally:
            client.close()

    _release()
    # only a found actor is kept: a missing one is looked up again at once (it may be back)
    answer = live_cache().get(
        cache_key, read, wait=SHARED_READ_WAIT, keep=lambda r: not r.error and r.actor is not None,
        waited_too_long=lambda: _ActorRead(error=f"{connection.name} is slow: another request for this record is "
                                                 "still waiting for it. Try again in a moment."))
    if answer.error:
        return LiveValues(error=answer.error, warnings=answer.warnings)
    actor, texts, warnings = answer.actor, answer.texts, answer.warnings
    link = db.session.get(Link, link_id)
    if link is None:  # disconnected meanwhile
        return LiveValues(warnings=warnings)
    if actor is None:
        if link.status != LinkStatus.BROKEN:
            mark_broken(link, f"The ERP no longer has {actor_type} {erp_key}.")
            db.session.commit()
            return LiveValues(broken=True, warnings=warnings, reload=True)
        return LiveValues(broken=True, warnings=warnings)
    restored = link.status == LinkStatus.BROKEN
    if restored:
        # The ERP has the actor again: the next sync merges the record in full (a retry due now), so CRM edits
        # made while the link was broken are not left behind the connection's CRM mark; the last result (the broken
        # message) no longer holds.
        link.status, link.status_message, link.last_result, link.retry_at = LinkStatus.OK, "", "", utcnow()
        db.session.commit()
    values = actor.get("FieldValues") or {}
    shown = [(f.display_name or f.field_key, display_value(f, values.get(f.field_key), texts.get(f.field_key)))
             for f in fields]
    return LiveValues(fields=shown, warnings=warnings, reload=restored)


# ------------------------------------------------------------------------------------------------- search


@dataclass
class ResultRow:
    erp_key: str
    cells: list[str]
    holder: str = ""  # "the company Acme" when the actor is already linked to another record
    this_record: bool = False


@dataclass
class SearchResult:
    columns: list[str]
    rows: list[ResultRow]
    truncated: bool = False
    warnings: list[str] = field(default_factory=list)
    text: str = ""
    advanced: bool = False


def _parent_of(section: Section) -> tuple[str, str] | None:
    if section.crm_type != CrmType.CONTACT:
        return None
    link = section.parent_link
    if link is None:
        raise RuleBroken(section.blocked or "Connect the contact's company first.")
    return link.erp_actor_type, link.erp_key


def _result(section: Section, config: ActorTypeConfig, client: ConnectorClient, actors: list[dict],
            columns: list[ErpField], text: str = "", advanced: bool = False) -> SearchResult:
    truncated = len(actors) > SEARCH_LIMIT
    actors = [a for a in actors if isinstance(a.get("ErpKey"), str) and a["ErpKey"]][:SEARCH_LIMIT]
    texts = _list_texts(client, section.connection.guid, columns, actors) if actors else {}
    warnings = _warnings(client)
    keys = [a["ErpKey"] for a in actors]
    holders: dict[str, Link] = {}
    if keys:
        for link in db.session.scalars(select(Link).where(Link.connection_id == section.connection.id,
                                                          Link.erp_actor_type == config.erp_actor_type,
                                                          Link.erp_key.in_(keys))):
            holders[link.erp_key] = link
    others = [link for link in holders.values()
              if not (link.crm_type == section.crm_type and link.crm_id == section.record.id)]
    described = holder_descriptions(others)  # their records read in one query per CRM type, not one per row
    rows = []
    for actor in actors:
        values = actor.get("FieldValues") or {}
        row = ResultRow(actor["ErpKey"], [display_value(f, values.get(f.field_key), texts.get(f.field_key))
                                          for f in columns])
        holder = holders.get(actor["ErpKey"])
        if holder is not None:
            if holder.crm_type == section.crm_type and holder.crm_id == section.record.id:
                row.this_record = True
            else:
                row.holder = described[holder.id]
        rows.append(row)
    return SearchResult([f.display_name or f.field_key for f in columns], rows, truncated, warnings, text,
                        advanced)


def search(section: Section, config: ActorTypeConfig, text: str) -> SearchResult:
    """Simple search (SearchActors; contacts: SearchActorByParent under the company's actor). Blank lists all."""
    require_connect(section)
    text = (text or "").strip()[:MAX_SEARCH_TEXT]
    parent = _parent_of(section)
    columns = search_fields(config)
    keys = [f.field_key for f in columns]
    guid, actor_type = section.connection.guid, config.erp_actor_type
    client = _client(section.connection)
    _release()
    try:
        try:
            if parent is not None:
                actors = client.search_actor_by_parent(guid, actor_type, text, parent[0], parent[1], keys)
            else:
                actors = client.search_actors(guid, actor_type, text, keys, limit=SEARCH_LIMIT + 1)
        except ConnectorError as exc:
            raise _failed(exc, "The ERP search failed") from exc
        return _result(section, config, client, actors, columns, text=text)
    finally:
        client.close()


@dataclass
class Criterion:
    """One searchable field of the advanced search form."""

    erp_field: ErpField
    operators: list[tuple[str, str]]  # (operator, label)
    choices: list[tuple[str, str]] = field(default_factory=list)  # list fields: (key, text)

    @property
    def key(self) -> str:
        return self.erp_field.field_key

    @property
    def ident(self) -> int:
        return self.erp_field.id


def criteria(section: Section, config: ActorTypeConfig) -> list[Criterion]:
    """The advanced search form: one row per searchable field, with the operators of its type and, for list
    fields, the list items (GetList). Empty when the actor type has no searchable fields."""
    require_connect(section)
    known = fields_by_key(config)
    fields = [known[key] for key in config.searchable_fields or [] if key in known]
    lists = get_lists(section.connection, fields) if fields else {}
    result = []
    for f in fields:
        ops = OPERATORS.get(f.field_type) or OPERATORS["Text"]
        choices = list(lists.get(f.list_name, {}).items()) if f.field_type == FieldType.LIST else []
        result.append(Criterion(f, [(op, OPERATOR_LABELS.get(op, op)) for op in ops], choices))
    return result


def parse_restrictions(config: ActorTypeConfig, form: Mapping[str, list[str]]) -> list[dict]:
    """SearchRestrictions from the advanced search form (``use_<id>``, ``op_<id>``, ``v_<id>``, ``v2_<id>``;
    ``form`` maps a name to all its submitted values). Raises InvalidInput naming each bad row."""
    known = fields_by_key(config)
    errors: dict[str, str] = {}
    restrictions = []
    for key in config.searchable_fields or []:
        f = known.get(key)
        if f is None or not form.get(f"use_{f.id}"):
            continue
        label = f.display_name or f.field_key
        op = (form.get(f"op_{f.id}") or [""])[0]
        if op not in (OPERATORS.get(f.field_type) or OPERATORS["Text"]):
            errors[f"op_{f.id}"] = f"Choose how to compare {label}."
            continue
        raw = [v for v in form.get(f"v_{f.id}", []) if v.strip()]
        if op == "between":
            raw = raw[:1] + [v for v in form.get(f"v2_{f.id}", []) if v.strip()][:1]
            if len(raw) < 2:
                errors[f"v_{f.id}"] = f"Enter both values for {label}."
                continue
        elif f.field_type != FieldType.LIST:
            raw = raw[:1]
        if not raw:
            errors[f"v_{f.id}"] = f"Enter a value for {label}."
            continue
        try:
            values = [normalize_erp(f.field_type, v) for v in raw]
        except ConversionError as exc:
            errors[f"v_{f.id}"] = f"{label}: {exc}."
            continue
        restrictions.append({"FieldKey": key, "Operator": op, "Values": values})
    if errors:
        raise InvalidInput("Some search criteria are not valid.", errors)
    if not restrictions:
        raise InvalidInput("Tick at least one criterion to search with.")
    return restrictions


def advanced_search(section: Section, config: ActorTypeConfig, restrictions: list[dict]) -> SearchResult:
    """SearchActorsAdvanced; for contacts restricted to the company's ERP actor (ParentErpKey/ParentActorType)."""
    require_connect(section)
    parent = _parent_of(section)
    if parent is not None:
        restrictions = [r for r in restrictions if r.get("FieldKey") not in PARENT_KEYS] + [
            {"FieldKey": "ParentActorType", "Operator": "=", "Values": [parent[0]]},
            {"FieldKey": "ParentErpKey", "Operator": "=", "Values": [parent[1]]},
        ]
    columns = search_fields(config)
    guid, actor_type = section.connection.guid, config.erp_actor_type
    client = _client(section.connection)
    _release()
    try:
        try:
            actors = client.search_actors_advanced(guid, actor_type, restrictions, [f.field_key for f in columns])
        except ConnectorError as exc:
            raise _failed(exc, "The ERP search failed") from exc
        return _result(section, config, client, actors, columns, advanced=True)
    finally:
        client.close()


# ------------------------------------------------------------------------------------------------ compare


@dataclass
class CompareRow:
    """A mapped field whose CRM and ERP values differ; the user picks the value both sides get."""

    field_id: int
    key: str
    label: str
    crm_text: str
    erp_text: str
    crm_value: object
    erp_value: object
    crm_blocked: str = ""  # why the CRM value cannot be chosen ('' = it can)
    erp_blocked: str = ""
    # Why the field is left as it is on both sides ('' = the user picks a value): one side holds a value the other
    # side cannot hold (a list item without a list mapping, too long, the wrong type). Such a row offers no choice,
    # so neither a blank nor any other value is ever written over that value by Connect.
    kept: str = ""

    @property
    def name(self) -> str:
        return f"pick_{self.field_id}"

    @property
    def only(self) -> str | None:
        if self.crm_blocked and not self.erp_blocked:
            return "erp"
        if self.erp_blocked and not self.crm_blocked:
            return "crm"
        return None


@dataclass
class Comparison:
    actor: dict
    rows: list[CompareRow]
    unsyncable: list[tuple[str, str]]  # (label, reason): differing fields neither value of which can be used
    same: int  # mapped fields that already agree
    ask: list[ErpField]
    lists: dict[str, dict[str, str]]  # ERP lists of the ask fields, by list name
    prefill: dict[str, object]  # ask field key -> value to show
    erp_stamp: str
    crm_stamp: str
    warnings: list[str] = field(default_factory=list)

    @property
    def choices(self) -> list[CompareRow]:
        """The rows the user picks a value for (the others are left as they are on both sides)."""
        return [row for row in self.rows if not row.kept]


SHOWN_LENGTH = 60  # characters of a value quoted in an explanation


def _shown(text: str) -> str:
    text = text if len(text) <= SHOWN_LENGTH else text[:SHOWN_LENGTH - 1] + "…"
    return f"“{text}”"


@dataclass(frozen=True)
class Unmappable:
    """Why one field's CRM value cannot be held by the ERP and why its ERP value cannot be held by the CRM
    ('' = it can), whatever the sync directions: a list item without a list mapping, a value too long for the
    other side or of a type it cannot take. A blank is never unmappable."""

    crm: str = ""
    erp: str = ""
    crm_list: bool = False  # the CRM value is a list item without a list mapping
    erp_list: bool = False

    def __bool__(self) -> bool:
        return bool(self.crm or self.erp)


def _crm_refuses(crm_type: str, f: MappedField, erp_value: object) -> str:
    """Why the CRM cannot hold the ERP's value in ``f`` — its conversion, or the CRM's own rules (crm_rules, the
    same as the forms, the import and the sync); '' when it can."""
    converted, problems = to_crm_values({f.erp_key: erp_value}, [f])
    if f.erp_key in problems:
        return problems[f.erp_key]
    if f.crm_key not in converted:
        return ""
    return check_crm_value(crm_type, f.crm_key, converted[f.crm_key]) or ""


def _unmappable(f: MappedField, crm_value: object, crm_error: str | None, erp_value: object,
                erp_error: str | None, crm_type: str) -> Unmappable:
    """``crm_value``/``erp_value`` as crm_side/erp_side gave them, ``crm_error``/``erp_error`` what they said."""
    crm_bad = crm_error or ""
    if not crm_bad and not is_blank(crm_value):
        crm_bad = check_erp_values({f.erp_key: crm_value}, [f]).get(f.erp_key, "")
    erp_bad = erp_error or ""
    if not erp_bad and not is_blank(erp_value):
        erp_bad = _crm_refuses(crm_type, f, erp_value)
    return Unmappable(crm_bad, erp_bad, bool(crm_bad) and f.crm_type == CrmFieldType.LIST,
                      bool(erp_bad) and not erp_error and f.erp_type == FieldType.LIST)


def _why_unmappable(label: str, shown: str, reason: str, *, listed: bool, target: str) -> str:
    """One side's value the other side (``target``) cannot hold, in a sentence."""
    if listed:
        return f"{label} {_shown(shown)} has no list mapping"
    return f"{label} {_shown(shown)} cannot be stored in {target} ({reason})"


def _why_kept(label: str, crm_text: str, erp_text: str, bad: Unmappable) -> str:
    """The explanation of a field Connect leaves as it is on both sides."""
    if bad.crm_list and bad.erp_list:
        why = f"{label} {_shown(crm_text)} and {_shown(erp_text)} have no list mapping"
    else:
        parts = []
        if bad.crm:
            parts.append(_why_unmappable(label, crm_text, bad.crm, listed=bad.crm_list, target="the ERP"))
        if bad.erp:
            parts.append(_why_unmappable(label, erp_text, bad.erp, listed=bad.erp_list, target="the CRM"))
        why = "; ".join(parts)
    return f"{why}: left as it is on both sides"


def _plan(record, config: ActorTypeConfig, actor: Mapping, texts: Mapping[str, Mapping[str, str]] | None = None,
          exclude: Iterable[str] = ()) -> tuple[list[CompareRow], list[tuple[str, str]], int]:
    """Compare the record with the actor over the synced mapped fields (minus ``exclude``).

    A differing field where either side holds a value the other side cannot hold (``_unmappable``) becomes a row
    with ``kept`` set: it is left as it is on both sides, whatever the directions, and never offers a blank."""
    excluded = set(exclude)
    by_key = fields_by_key(config)
    fields = [f for f in mapped_fields(config, synced_only=True) if f.erp_key not in excluded]
    raw = actor.get("FieldValues") or {}
    crm_values, crm_errors = crm_side(record, fields, erp_now=raw)
    erp_values, erp_errors = erp_side(raw, fields)
    too_long = check_erp_values(crm_values, fields)
    rows, unsyncable, same = [], [], 0
    for f in fields:
        key = f.erp_key
        c, e = crm_values.get(key), erp_values.get(key)
        if key not in crm_errors and key not in erp_errors and same_value(c, e):
            same += 1
            continue
        label = f.erp_label or f.crm_label
        crm_blocked = crm_errors.get(key) or too_long.get(key) or ""
        if not crm_blocked and not f.to_erp:
            crm_blocked = ("the field is read-only in the ERP" if f.read_only
                           else f"only ERP → CRM is mapped for {label}")
        erp_blocked = erp_errors.get(key, "")
        if not erp_blocked and not f.to_crm:
            erp_blocked = f"only CRM → ERP is mapped for {label}"
        if not erp_blocked and not is_blank(e):
            erp_blocked = _crm_refuses(config.crm_type, f, e)
        if not erp_blocked and is_blank(e):
            spec = crm_field(config.crm_type, f.crm_key)
            if spec is not None and spec.required:
                erp_blocked = f"the CRM needs a value for {f.crm_label}"
        erp_field = by_key.get(key)
        bad = _unmappable(f, c, crm_errors.get(key) or too_long.get(key), e, erp_errors.get(key), config.crm_type)
        if crm_blocked and erp_blocked and not bad:
            unsyncable.append((label, f"{crm_blocked}; {erp_blocked}"))
            continue
        crm_text = crm_value_text(record, f)
        erp_text = display_value(erp_field, raw.get(key), (texts or {}).get(key))
        rows.append(CompareRow(
            field_id=erp_field.id if erp_field is not None else 0, key=key, label=label, crm_text=crm_text,
            erp_text=erp_text, crm_value=c, erp_value=e, crm_blocked=crm_blocked, erp_blocked=erp_blocked,
            kept=_why_kept(label, crm_text, erp_text, bad) if bad else ""))
    return rows, unsyncable, same


def _fetch_actor(client: ConnectorClient, section: Section, config: ActorTypeConfig, erp_key: str,
                 keys: list[str]) -> dict:
    try:
        actors = client.get_actors(section.connection.guid, config.erp_actor_type, [erp_key], keys)
    except ConnectorError as exc:
        raise _failed(exc, "The ERP record could not be read") from exc
    actor = next((a for a in actors if a.get("ErpKey") == erp_key), None)
    if actor is None:
        raise RuleBroken(f"The ERP has no {actor_label(config)} {erp_key}.")
    parent = _parent_of(section)
    if parent is not None and (actor.get("ParentErpKey") or "") != parent[1]:
        raise RuleBroken(f"{actor_label(config)} {erp_key} is not under "
                         f"{actor_label(section.connection, parent[0])} {parent[1]}, the ERP record "
                         "of this contact's company.")
    return actor


def _check_target(section: Section, config: ActorTypeConfig, erp_key: str) -> None:
    try:
        check_free(section.connection.id, section.crm_type, section.record.id, config.erp_actor_type, erp_key)
    except LinkError as exc:
        raise RuleBroken(str(exc)) from exc


def _wanted_keys(config: ActorTypeConfig) -> list[str]:
    keys = [f.erp_key for f in mapped_fields(config, synced_only=True)]
    keys += [f.field_key for f in ask_fields(config)]
    return list(dict.fromkeys(keys))


def _ask_prefill(config: ActorTypeConfig, actor_values: Mapping | None, record=None) -> dict[str, object]:
    """Ask-user fields start with the ERP's current value (connect) or the CRM's mapped value (create), else the
    admin's default."""
    prefill = {}
    mapped = {f.erp_key: f for f in mapped_fields(config)}
    for f in ask_fields(config):
        value = None
        if actor_values is not None:
            try:
                value = normalize_erp(f.field_type, actor_values.get(f.field_key))
            except ConversionError:
                value = None
        elif record is not None and f.field_key in mapped and mapped[f.field_key].to_erp:
            values, _errors = crm_side(record, [mapped[f.field_key]])
            value = values.get(f.field_key)
        if value is None and f.has_default:
            try:
                value = normalize_erp(f.field_type, f.default_value)
            except ConversionError:
                value = None
        prefill[f.field_key] = value
    return prefill


def compare(section: Section, config: ActorTypeConfig, erp_key: str) -> Comparison:
    """The "select correct field values" step: GetActors (full), then every synced mapped field that differs."""
    require_connect(section)
    erp_key = (erp_key or "").strip()
    if not erp_key:
        raise InvalidInput("Pick an ERP record first.")
    _check_target(section, config, erp_key)
    ask = ask_fields(config)
    by_key = fields_by_key(config)
    wanted = _wanted_keys(config)
    _parent_of(section)
    client = _client(section.connection)
    _release()
    try:
        actor = _fetch_actor(client, section, config, erp_key, wanted)
        texts = _list_texts(client, section.connection.guid, by_key.values(), [actor])
        lists = get_lists(section.connection, ask, client)
        warnings = _warnings(client)
    finally:
        client.close()
    record = section.record
    rows, unsyncable, same = _plan(record, config, actor, texts, exclude=[f.field_key for f in ask])
    return Comparison(actor=actor, rows=rows, unsyncable=unsyncable, same=same, ask=ask, lists=lists,
                      prefill=_ask_prefill(config, actor.get("FieldValues") or {}), erp_stamp=str(
                          actor.get("LastModified") or ""), crm_stamp=_stamp(record.updated_at), warnings=warnings)


# ------------------------------------------------------------------------------------------- link / create


@dataclass
class LinkOutcome:
    link: Link
    already: bool = False  # a repeated submit found the link in place
    to_erp: list[str] = field(default_factory=list)  # labels written to the ERP
    to_crm: list[str] = field(default_factory=list)  # labels written to the CRM
    warnings: list[str] = field(default_factory=list)


def _check_answers(ask: list[ErpField], answers: Mapping[str, object]) -> dict[str, object]:
    errors = {}
    clean = {}
    for f in ask:
        value = answers.get(f.field_key)
        label = f.display_name or f.field_key
        try:
            value = normalize_erp(f.field_type, value)
        except ConversionError as exc:
            errors[f"ask_{f.id}"] = f"{label}: {exc}."
            continue
        if f.mandatory and f.field_type != FieldType.CHECKBOX and is_blank(value):
            errors[f"ask_{f.id}"] = f"{label} is required."
            continue
        if f.max_length and isinstance(value, str) and len(value) > f.max_length:
            errors[f"ask_{f.id}"] = f"{label} can be at most {f.max_length} characters."
            continue
        clean[f.field_key] = value
    if errors:
        raise InvalidInput("Please correct the highlighted fields.", errors)
    return clean


def _checked_answers(config: ActorTypeConfig, answers: Mapping[str, object]
                     ) -> tuple[list[ErpField], dict[str, object], dict]:
    """The ask-user fields, the normalized answers and the CRM values they map to; raises InvalidInput."""
    ask = ask_fields(config)
    answers = _check_answers(ask, answers)
    ask_crm, problems = _ask_to_crm(config, answers)
    if problems:
        raise InvalidInput("Please correct the highlighted fields.", problems)
    return ask, answers, ask_crm


def _ask_to_crm(config: ActorTypeConfig, answers: Mapping[str, object]) -> tuple[dict, dict[str, str]]:
    """CRM values for the answers of ask-user fields that are mapped ERP → CRM; errors by form field name."""
    by_key = fields_by_key(config)
    mapped = [f for f in mapped_fields(config, synced_only=True) if f.to_crm and f.erp_key in answers]
    values, errors = to_crm_values({f.erp_key: answers[f.erp_key] for f in mapped}, mapped)
    return values, {f"ask_{by_key[key].id}": f"{by_key[key].display_name}: {text}." for key, text in errors.items()}


def _agreed(record, config: ActorTypeConfig, erp_values: Mapping) -> dict:
    """The base of future three-way merges: every synced mapped field on which both sides now agree."""
    fields = mapped_fields(config, synced_only=True)
    crm_values, crm_errors = crm_side(record, fields, erp_now=erp_values)
    erp_now, erp_errors = erp_side(erp_values, fields)
    return {f.erp_key: crm_values[f.erp_key] for f in fields
            if f.erp_key not in crm_errors and f.erp_key not in erp_errors
            and same_value(crm_values.get(f.erp_key), erp_now.get(f.erp_key))}


def link_base(record, config: ActorTypeConfig, erp_values: Mapping) -> dict:
    """The base a new link starts from (Connect, Create in ERP): the agreed fields (``_agreed``) and, for a field
    left as it is because one side holds a value the other cannot hold, the value of the *other* side.

    The sync merge (portal/services/sync/merge.py) reads a field missing from the base as "never agreed": the
    next sync would call the differing values a conflict and let the conflict rule pick a winner — a blank CRM
    value winning (CRM on top of the sync priority) would blank the ERP's unmapped item after all. With the base
    set to the side that can be carried over, the unmappable value reads as that side's pending change: the
    engine tries to carry it over, reports that it cannot (an error of the record, the field keeping its base),
    and never writes the other side's value over it — until someone edits that side (an edit flows as usual) or
    the admin maps the item (then the value flows). When neither side can be carried over, the field stays
    without a base ("never agreed"); the engine leaves it alone while the CRM value is unmappable.
    """
    base = _agreed(record, config, erp_values)
    fields = [f for f in mapped_fields(config, synced_only=True) if f.erp_key not in base]
    if not fields:
        return base
    crm_values, crm_errors = crm_side(record, fields, erp_now=erp_values)
    erp_now, erp_errors = erp_side(erp_values, fields)
    for f in fields:
        key = f.erp_key
        bad = _unmappable(f, crm_values.get(key), crm_errors.get(key), erp_now.get(key), erp_errors.get(key),
                          config.crm_type)
        if bad.crm and not bad.erp:
            base[key] = erp_now.get(key)
        elif bad.erp and not bad.crm:
            base[key] = crm_values.get(key)
    return base


def _crm_unmappable(record, fields: list[MappedField]) -> dict[str, str]:
    """The fields (by ERP key) whose CRM value the ERP cannot hold, with the reason."""
    values, errors = crm_side(record, fields)
    errors.update({key: text for key, text in check_erp_values(values, fields).items() if key not in errors})
    return errors


def _keeping_unmappable(record, config: ActorTypeConfig, crm_values: Mapping) -> dict:
    """``crm_values`` (CRM attribute -> value, from ask-user answers) without the fields whose CRM value the ERP
    cannot hold: an answer for the ERP never replaces (or blanks) such a value in the CRM."""
    fields = [f for f in mapped_fields(config, synced_only=True) if f.crm_key in crm_values]
    kept = {f.crm_key for f in fields if f.erp_key in _crm_unmappable(record, fields)}
    return {key: value for key, value in crm_values.items() if key not in kept}


def _labels(config: ActorTypeConfig, keys: Iterable[str]) -> list[str]:
    by_key = fields_by_key(config)
    return [(by_key[k].display_name or k) if k in by_key else k for k in keys]


def _crm_labels(crm_type: str, changes: Iterable[tuple[str, object, object]]) -> list[str]:
    labels = []
    for key, _old, _new in changes:
        spec = crm_field(crm_type, key)
        labels.append(spec.label if spec is not None else key)
    return labels


def _audit_repr(section: Section, actor_type: str, erp_key: str) -> str:
    return f"{section.record.display_name} ↔ {actor_type} {erp_key} ({section.connection.name})"


def _existing(section: Section, actor_type: str, erp_key: str) -> Link | None:
    """After create_link refused: the record's link when it is to this very actor (a repeated or concurrent
    submit got there first), else None."""
    db.session.rollback()
    link = link_for(section.connection.id, section.crm_type, section.record.id)
    if link is not None and link.erp_actor_type == actor_type and link.erp_key == erp_key:
        return link
    return None


def connect(section: Section, config: ActorTypeConfig, erp_key: str, picks: Mapping[str, str],
            answers: Mapping[str, object], *, erp_stamp: str, crm_stamp: str, user=None, **ctx) -> LinkOutcome:
    """Link the record to an existing actor with the values the user picked (written to both sides).

    ``picks`` maps an ERP field key to ``'crm'`` or ``'erp'``; ``answers`` holds the ask-user values (normalized
    ERP values). Raises StaleComparison when either side changed since the comparison was shown.
    """
    require_connect(section)
    erp_key = (erp_key or "").strip()
    link = section.link
    if link is not None:
        if link.erp_actor_type == config.erp_actor_type and link.erp_key == erp_key:
            return LinkOutcome(link, already=True)
        raise RuleBroken(f"This record is already linked to {actor_label(section.connection, link.erp_actor_type)} "
                         f"{link.erp_key} on "
                         f"{section.connection.name}.")
    _check_target(section, config, erp_key)
    ask, answers, ask_crm = _checked_answers(config, answers)
    connection_id, crm_type, record_id = section.connection.id, section.crm_type, section.record.id
    guid, actor_type, connection_name = section.connection.guid, config.erp_actor_type, section.connection.name
    config_id = config.id
    wanted = _wanted_keys(config)
    _parent_of(section)
    client = _client(section.connection)
    _release()
    try:
        actor = _fetch_actor(client, section, config, erp_key, wanted)
        record = section.record
        if str(actor.get("LastModified") or "") != erp_stamp or _stamp(record.updated_at) != crm_stamp:
            raise StaleComparison("The record changed in the CRM or the ERP while you were choosing. "
                                  "Check the values again.")
        rows, _unsyncable, _same_count = _plan(record, config, actor, exclude=answers.keys())
        errors, to_erp, to_crm = {}, {}, {}
        for row in rows:
            if row.kept:  # a value the other side cannot hold: left as it is on both sides, whatever was posted
                continue
            pick = picks.get(row.key) or row.only
            if pick not in ("crm", "erp"):
                errors[row.name] = f"Choose the value to keep for {row.label}."
            elif pick == "crm" and row.crm_blocked:
                errors[row.name] = f"The CRM value of {row.label} cannot be used: {row.crm_blocked}."
            elif pick == "erp" and row.erp_blocked:
                errors[row.name] = f"The ERP value of {row.label} cannot be used: {row.erp_blocked}."
            elif pick == "crm":
                to_erp[row.key] = row.crm_value
            else:
                to_crm[row.key] = row.erp_value
        if errors:
            raise InvalidInput("Choose a value for every field that differs.", errors)
        current = actor.get("FieldValues") or {}
        for f in ask:
            value = answers.get(f.field_key)
            try:
                now = normalize_erp(f.field_type, current.get(f.field_key))
            except ConversionError:
                now = None
            if not same_value(value, now):
                to_erp[f.field_key] = value
        crm_values, crm_problems = to_crm_values(to_crm, mapped_fields(config, synced_only=True))
        if crm_problems:  # checked in _plan already; a safety net before anything is written
            raise InvalidInput("Some ERP values cannot be stored in the CRM.",
                               {f"pick_{fields_by_key(config)[k].id}": t for k, t in crm_problems.items()})
        crm_values.update(_keeping_unmappable(record, config, ask_crm))
        final = dict(actor)
        if to_erp:
            payload = {"ActorType": actor_type, "ErpKey": erp_key, "LastModified": actor.get("LastModified") or "",
                       "FieldValues": to_erp}
            _release()
            try:
                saved = client.save_actors(guid, [payload])
            except ConnectorError as exc:
                raise _failed(exc, "The ERP record could not be updated, so nothing was linked") from exc
            stored = next((a for a in saved if a.get("ErpKey") == erp_key), None)
            final["FieldValues"] = {**current, **to_erp, **((stored or {}).get("FieldValues") or {})}
            if stored is not None and stored.get("LastModified"):
                final["LastModified"] = stored["LastModified"]
        warnings = _warnings(client)
    finally:
        client.close()

    # One transaction: the CRM write, the link (with the agreed base) and the audit row.
    record = db.session.get(CRM_MODELS[crm_type], record_id)
    config = db.session.get(ActorTypeConfig, config_id)
    if record is None:
        raise NotFound("The record was deleted meanwhile; nothing was linked.")
    changes = write_crm(record, crm_values)
    db.session.flush()
    base = link_base(record, config, final.get("FieldValues") or {})
    try:
        link = create_link(connection_id=connection_id, crm_type=crm_type, crm_id=record_id, actor=final, base=base,
                           crm_updated_at=record.updated_at, created_by_id=getattr(user, "id", None),
                           result=f"Linked by {getattr(user, 'name', 'a user')}")
    except LinkError as exc:
        existing = _existing(section, actor_type, erp_key)
        if existing is not None:
            return LinkOutcome(existing, already=True)
        raise RuleBroken(str(exc)) from exc
    audit.record("erp.link", object_type=crm_type, object_id=record_id,
                 object_repr=_audit_repr(section, actor_type, erp_key),
                 after={"connection": connection_name, "actor": f"{actor_type} {erp_key}",
                        "to_erp": sorted(to_erp), "to_crm": sorted(key for key, _old, _new in changes)},
                 actor=user, **ctx)
    db.session.commit()
    forget_live_values(section.connection.id, actor_type, erp_key)  # Connect may have written to it
    return LinkOutcome(link, to_erp=_labels(config, to_erp), to_crm=_crm_labels(crm_type, changes),
                       warnings=warnings)


def idempotency_key(guid: str, crm_type: str, crm_id: int, nonce: str) -> str:
    """The CreateActor idempotency key: the same dialog (nonce) for the same record always sends the same key."""
    digest = hashlib.sha256(f"erp-tab|{guid}|{crm_type}|{crm_id}|{nonce}".encode()).hexdigest()
    return f"erp-tab-{digest[:40]}"


@dataclass
class NewActor:
    """What "Create in ERP" will send (for the dialog) — or the problems that stop it."""

    values: dict
    problems: list[str]
    prefill: dict[str, object]
    ask: list[ErpField]
    lists: dict[str, dict[str, str]]
    notes: list[str] = field(default_factory=list)  # CRM values left out of the new actor, and why
    texts: dict[str, dict[str, str]] = field(default_factory=dict)  # names of the list items in ``values``


def _new_values(record, config: ActorTypeConfig, notes: list[str] | None = None) -> tuple[dict, list[str]]:
    """Admin defaults overlaid with the record's mapped CRM values (CRM → ERP fields); problems as sentences.

    A CRM value the ERP cannot hold (a list item without a list mapping, too long, unconvertible) is left out of
    the new actor — never sent as a blank — and the CRM keeps it; the sentence saying so is appended to ``notes``.
    Only when the ERP needs a value for that field and nothing else supplies one (an admin default, an ask-user
    answer) is it a problem that stops the create.
    """
    values: dict = {}
    problems: list[str] = []
    for f in config.fields:
        if f.has_default and not f.ask_user and not f.missing_in_erp and not f.read_only:
            try:
                default = normalize_erp(f.field_type, f.default_value)
            except ConversionError:
                continue
            if default is not None:
                values[f.field_key] = default
    fields = [f for f in mapped_fields(config, synced_only=True) if f.to_erp]
    crm_values, errors = crm_side(record, fields)
    errors.update(check_erp_values(crm_values, fields))
    by_key = {f.erp_key: f for f in fields}
    erp_fields = fields_by_key(config)
    asked = {f.field_key for f in ask_fields(config)}
    for key, text in errors.items():
        f, erp_field = by_key[key], erp_fields.get(key)
        label = f.erp_label or f.crm_label
        why = _why_unmappable(label, crm_value_text(record, f), text, listed=f.crm_type == CrmFieldType.LIST,
                              target="the ERP")
        if key in asked:
            outcome = f"the new {actor_label(config)} gets the value you enter below"
        elif key in values:
            outcome = f"the new {actor_label(config)} gets the default value instead"
        elif erp_field is not None and (erp_field.mandatory or erp_field.connector_mandatory):
            problems.append(f"{why}, and the ERP needs a value for {label}.")
            continue
        else:
            outcome = f"left out of the new {actor_label(config)}"
        if notes is not None:
            notes.append(f"{why}: {outcome}; the CRM keeps it.")
    for key, value in crm_values.items():
        if key not in errors and value is not None:
            values[key] = value
    return values, problems


def new_actor(section: Section, config: ActorTypeConfig, lists: dict[str, dict[str, str]] | None = None
              ) -> NewActor:
    """The Create in ERP dialog: the ask-user fields (with their lists, read unless given) and what the CRM will
    send."""
    require_create(section)
    _parent_of(section)
    ask = ask_fields(config)
    notes: list[str] = []
    values, problems = _new_values(section.record, config, notes)
    prefill = _ask_prefill(config, None, section.record)
    if lists is None:
        lists = get_lists(section.connection, ask)
    texts = value_texts(config.fields, values, lists, lambda unnamed: _read_texts(section.connection, unnamed, values))
    return NewActor(values, problems, prefill, ask, lists, notes, texts)


def _read_texts(connection: Connection, fields: list[ErpField], values: Mapping) -> dict[str, dict[str, str]]:
    """GetListItems for the list items among ``values`` (on failure: none, the keys are shown)."""
    client = _client(connection, retries=0)
    _release()
    try:
        return _list_texts(client, connection.guid, fields, [{"FieldValues": values}])
    finally:
        client.close()


def create(section: Section, config: ActorTypeConfig, nonce: str, answers: Mapping[str, object], *, user=None,
           **ctx) -> LinkOutcome:
    """CreateActor with the mapped CRM values, the admin defaults and the answers, then the link."""
    require_create(section)
    if section.link is not None:  # a second submit (or someone else) got there first: answer the link
        return LinkOutcome(section.link, already=True)
    if not NONCE_RE.match(nonce or ""):
        raise InvalidInput("The dialog expired. Close it and search again.")
    parent = _parent_of(section)
    _ask, answers, ask_crm = _checked_answers(config, answers)
    values, value_problems = _new_values(section.record, config)
    if value_problems:
        raise InvalidInput("The record cannot be sent to the ERP: " + " ".join(value_problems))
    values.update({k: v for k, v in answers.items() if v is not None})
    connection_id, crm_type, record_id = section.connection.id, section.crm_type, section.record.id
    guid, actor_type, connection_name = section.connection.guid, config.erp_actor_type, section.connection.name
    config_id = config.id
    shown = actor_label(config)  # the name users see (read now: the session is released below)
    actor = {"ActorType": actor_type, "ErpKey": "", "LastModified": "", "FieldValues": values}
    if parent is not None:
        actor["ParentActorType"], actor["ParentErpKey"] = parent
    key = idempotency_key(guid, crm_type, record_id, nonce)
    client = _client(section.connection)
    _release()
    try:
        try:
            created = client.create_actor(guid, actor, idempotency_key=key)
        except ConnectorError as exc:
            raise _failed(exc, f"The {shown} could not be created in the ERP") from exc
        warnings = _warnings(client)
    finally:
        client.close()
    erp_key = created["ErpKey"]
    erp_values = {**values, **(created.get("FieldValues") or {})}
    created = {**created, "ActorType": created.get("ActorType") or actor_type, "FieldValues": erp_values}

    record = db.session.get(CRM_MODELS[crm_type], record_id)
    config = db.session.get(ActorTypeConfig, config_id)
    if record is None:
        raise NotFound(f"The record was deleted meanwhile; {shown} {erp_key} was created in the ERP but not "
                       "linked.")
    # Values the ERP holds that the CRM does not (its own numbers, defaults, the answers) flow back where mapped —
    # never over a CRM value the ERP could not take (left out of the new actor, so the CRM keeps it).
    back = [f for f in mapped_fields(config, synced_only=True) if f.to_crm]
    crm_now, _ = crm_side(record, back, erp_now=erp_values)
    erp_now, erp_errors = erp_side(erp_values, back)
    kept = _crm_unmappable(record, back)
    incoming = {f.erp_key: erp_now[f.erp_key] for f in back
                if f.erp_key not in erp_errors and f.erp_key not in kept
                and not same_value(crm_now.get(f.erp_key), erp_now.get(f.erp_key))}
    crm_values, _skipped = to_crm_values(incoming, back)
    for crm_key in check_crm_values(crm_type, crm_values, record=record):
        crm_values.pop(crm_key)  # a value the CRM's own rules refuse is not stored (the CRM keeps its own)
    crm_values.update(_keeping_unmappable(record, config, ask_crm))
    changes = write_crm(record, crm_values)
    db.session.flush()
    base = link_base(record, config, erp_values)
    try:
        link = create_link(connection_id=connection_id, crm_type=crm_type, crm_id=record_id, actor=created,
                           base=base, crm_updated_at=record.updated_at, created_by_id=getattr(user, "id", None),
                           result=f"Created in the ERP by {getattr(user, 'name', 'a user')}")
    except LinkError as exc:
        existing = _existing(section, actor_type, erp_key)
        if existing is not None:
            return LinkOutcome(existing, already=True)
        raise RuleBroken(f"{shown} {erp_key} was created in the ERP but could not be linked: {exc}") from exc
    audit.record("erp.create", object_type=crm_type, object_id=record_id,
                 object_repr=_audit_repr(section, actor_type, erp_key),
                 after={"connection": connection_name, "actor": f"{actor_type} {erp_key}", "sent": sorted(values),
                        "to_crm": sorted(key for key, _old, _new in changes)},
                 actor=user, **ctx)
    db.session.commit()
    return LinkOutcome(link, to_erp=_labels(config, values), to_crm=_crm_labels(crm_type, changes),
                       warnings=warnings)


# ----------------------------------------------------------------------------------------------- disconnect


def disconnect(section: Section, *, user=None, **ctx) -> tuple[str, str] | None:
    """Delete the link only: the connector is not called and ERP data is untouched. Returns the (actor type,
    ERP key) that was linked, or None when there was no link (a repeated click)."""
    require_disconnect(section)
    link = section.link
    if link is None:
        return None
    actor_type, erp_key = link.erp_actor_type, link.erp_key
    _remove_link(link)
    audit.record("erp.disconnect", object_type=section.crm_type, object_id=section.record.id,
                 object_repr=_audit_repr(section, actor_type, erp_key),
                 before={"actor": f"{actor_type} {erp_key}", "connection": section.connection.name},
                 after={"actor": None, "connection": section.connection.name}, actor=user, **ctx)
    db.session.commit()
    section.link = None
    forget_live_values(section.connection.id, actor_type, erp_key)
    return actor_type, erp_key


def require_disconnect(section: Section) -> None:
    """Disconnect needs the right to connect (the company-link rule of contacts does not apply to it)."""
    if not section.access.can_connect:
        raise Refused(f"You may not connect or disconnect records on {section.connection.name}.")


# ---------------------------------------------------------------------------------------------------- sync


@dataclass
class SyncOutcome:
    to_erp: list[tuple[str, str, str]] = field(default_factory=list)
    to_crm: list[tuple[str, str, str]] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    message: str = ""
    ok: bool = True
    warning: str = ""
    run_id: int | None = None

    @property
    def nothing(self) -> bool:
        return self.ok and not (self.to_erp or self.to_crm or self.conflicts)


def sync_now(section: Section, *, user=None, **ctx) -> SyncOutcome:
    """Sync this record on this connection at once through the sync engine (synchronous)."""
    link = section.link
    if link is None:
        raise RuleBroken(f"This record is not connected to {section.connection.name}.")
    from portal.services.sync import engine
    from portal.services.sync.runs import RunError

    link_id, connection_name = link.id, section.connection.name
    actor_type, erp_key = link.erp_actor_type, link.erp_key
    _release()
    try:
        result = engine.sync_record(link_id, requested_by=user)
    except ConnectorError as exc:
        db.session.rollback()
        raise _failed(exc, "The sync failed") from exc
    except RunError as exc:  # RunBusy: another run is active; RunRefused: not linked, inactive …
        db.session.rollback()
        raise RuleBroken(str(exc) or "Another sync is running on this connection; try again shortly.") from exc
    names = ItemNames(section.link_config.fields if section.link_config else [], section.crm_type)
    outcome = SyncOutcome(
        to_erp=_triples(names.sent(getattr(result, "to_erp", []))), to_crm=_triples(getattr(result, "to_crm", [])),
        conflicts=[conflict_text(c) for c in names.conflicts(getattr(result, "conflicts", None))],
        message=str(getattr(result, "message", "") or ""), ok=bool(getattr(result, "ok", True)),
        warning=str(getattr(result, "warning", "") or ""), run_id=getattr(result, "run_id", None))
    db.session.rollback()  # whatever the engine left in this session is its business; start clean
    audit.record("erp.sync_now", object_type=section.crm_type, object_id=section.record.id,
                 object_repr=_audit_repr(section, actor_type, erp_key),
                 after={"connection": connection_name, "run_id": outcome.run_id, "ok": outcome.ok,
                        "to_erp": [label for label, _o, _n in outcome.to_erp],
                        "to_crm": [label for label, _o, _n in outcome.to_crm], "conflicts": len(outcome.conflicts)},
                 actor=user, **ctx)
    db.session.commit()
    forget_live_values(section.connection.id, actor_type, erp_key)
    return outcome


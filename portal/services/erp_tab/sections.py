"""Who sees which connection on a record's ERP tab, and what they may do there (spec §2, §3.4).

Scope: a connection with ``all_access`` lets every licensed user connect, and create in the ERP when
``all_can_create``; otherwise the user's own scope entry and the entries of all their groups are combined
(any entry that allows something allows it). Creating in the ERP also links, so it needs ``can_connect`` too.

A :class:`Section` is one connection's part of a record's tab: its link, the link of a contact's company, why the
record cannot be connected right now, and the conflicts of the last sync. Every action starts from
``section_for`` (licence and scope re-checked) and the ``require_*`` rule checks.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select

from portal.extensions import db
from portal.models import (
    CRM_MODELS,
    CRM_TYPE_LABELS,
    ActorType,
    ActorTypeConfig,
    Connection,
    Connector,
    CrmType,
    Link,
    LinkStatus,
    SyncChange,
)
from portal.services.erp_tab.errors import NotFound, Refused, RuleBroken
from portal.services.labels import ChangeText, change_texts
from portal.services.links import link_for

ACTOR_ORDER = {name: index for index, name in enumerate(ActorType)}


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


def require_disconnect(section: Section) -> None:
    """Disconnect needs the right to connect (the company-link rule of contacts does not apply to it)."""
    if not section.access.can_connect:
        raise Refused(f"You may not connect or disconnect records on {section.connection.name}.")


def _parent_of(section: Section) -> tuple[str, str] | None:
    if section.crm_type != CrmType.CONTACT:
        return None
    link = section.parent_link
    if link is None:
        raise RuleBroken(section.blocked or "Connect the contact's company first.")
    return link.erp_actor_type, link.erp_key

"""A CRM record's sync status: the badge on its ERP tab section (one connection) and the Sync column and filter of
the Company, Contact and Project lists (all connections, computed in SQL with the list query).

Per link, the first that applies:

* **Broken** — the ERP no longer returns the linked actor;
* **Error** — the record's last sync failed or reported errors (an open issue, ``sync_issues``; ignoring the issue
  in the inbox does not change the badge);
* **Pending** — the record was edited in the CRM after its last sync (``updated_at`` later than the link's
  ``crm_synced_at``), or a retry of the record is due;
* **In sync** — otherwise.

A record without a link is **Not linked**. In the lists a record linked on several connections shows the worst of
its links (Broken, Error, Pending, In sync). Nothing here calls a connector.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import case, exists, func, or_, select

from portal.extensions import db
from portal.models import ActorTypeConfig, Connection, Link, LinkStatus
from portal.security.params import bounded_int
from portal.services import sync_issues


@dataclass(frozen=True)
class Status:
    key: str
    label: str
    tone: str  # the badge class: badge-<tone>
    rank: int  # the worst of several links wins

    def __str__(self) -> str:
        return self.label


NOT_LINKED = Status("not_linked", "Not linked", "none", 0)
IN_SYNC = Status("in_sync", "In sync", "ok", 1)
PENDING = Status("pending", "Pending", "queued", 2)
ERROR = Status("error", "Error", "error", 3)
BROKEN = Status("broken", "Broken", "broken", 4)
BY_RANK = {status.rank: status for status in (NOT_LINKED, IN_SYNC, PENDING, ERROR, BROKEN)}

FILTER_ERRORS = "errors"
FILTER_UNLINKED = "unlinked-"  # + connection id


def link_status(link: Link | None, record_updated_at: datetime | None) -> Status:
    """The status of one record on one connection (``link`` None: not linked)."""
    if link is None:
        return NOT_LINKED
    if link.status == LinkStatus.BROKEN:
        return BROKEN
    if sync_issues.is_open(link):
        return ERROR
    synced = link.crm_synced_at
    if synced is None or (record_updated_at is not None and record_updated_at > synced) or link.retry_at is not None:
        return PENDING
    return IN_SYNC


def _live_links(model, crm_type: str):
    return (Link.crm_type == crm_type, Link.crm_id == model.id,
            Link.connection_id.in_(select(Connection.id).where(Connection.deleted.is_(False)).correlate(None)))


def rank_column(model, crm_type: str):
    """SQL (a column of the list query): the rank of the record's worst link status; NULL when not linked."""
    rank = case((Link.status == LinkStatus.BROKEN, BROKEN.rank),
                (sync_issues.has_error_condition(), ERROR.rank),
                (or_(Link.crm_synced_at.is_(None), model.updated_at > Link.crm_synced_at, Link.retry_at.is_not(None)),
                 PENDING.rank),
                else_=IN_SYNC.rank)
    return (select(func.max(rank)).where(*_live_links(model, crm_type)).correlate(model)
            .scalar_subquery().label("sync_rank"))


def from_rank(rank: int | None) -> Status:
    return BY_RANK.get(rank or 0, NOT_LINKED)


def filter_choices(crm_type: str) -> list[tuple[str, str]]:
    """The Sync filter's options for a list: any, has sync errors, and "not linked to" each connection that syncs
    this record type."""
    connections = db.session.execute(
        select(Connection.id, Connection.name).where(
            Connection.deleted.is_(False),
            Connection.id.in_(select(ActorTypeConfig.connection_id).where(ActorTypeConfig.crm_type == crm_type,
                                                                          ActorTypeConfig.is_active.is_(True))))
        .order_by(Connection.name, Connection.id)).all()
    return ([("", "Any sync status"), (FILTER_ERRORS, "Has sync errors")]
            + [(f"{FILTER_UNLINKED}{cid}", f"Not linked to {name}") for cid, name in connections])


def filter_condition(model, crm_type: str, value: str | None):
    """SQL WHERE of the list's Sync filter, or None for no (or an unknown) filter."""
    value = (value or "").strip()
    if value == FILTER_ERRORS:
        return exists().where(*_live_links(model, crm_type), sync_issues.open_condition())
    if value.startswith(FILTER_UNLINKED):
        try:
            connection_id = bounded_int(value[len(FILTER_UNLINKED):])
        except ValueError:
            return None
        return ~exists().where(Link.connection_id == connection_id, Link.crm_type == crm_type,
                               Link.crm_id == model.id)
    return None

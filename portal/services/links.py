"""Links between CRM records and ERP actors (one per CRM record per connection, one CRM record per ERP actor
per connection — the database enforces both)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from portal.database import utcnow
from portal.extensions import db
from portal.models import CRM_MODELS, CRM_TYPE_LABELS, Link, LinkStatus
from portal.services.actor_labels import actor_label


class LinkError(ValueError):
    """A link rule was broken; the message says which record already holds what."""


def link_for(connection_id: int, crm_type: str, crm_id: int) -> Link | None:
    return db.session.scalar(select(Link).where(Link.connection_id == connection_id, Link.crm_type == crm_type,
                                                Link.crm_id == crm_id))


def link_for_actor(connection_id: int, actor_type: str, erp_key: str) -> Link | None:
    return db.session.scalar(select(Link).where(Link.connection_id == connection_id,
                                                Link.erp_actor_type == actor_type, Link.erp_key == erp_key))


def _describe(link: Link, record) -> str:
    name = getattr(record, "display_name", None) or f"#{link.crm_id}"
    return f"{CRM_TYPE_LABELS[link.crm_type].lower()} {name}"


def holder_description(link: Link) -> str:
    """The CRM record that holds ``link``, e.g. "company Acme"."""
    return _describe(link, db.session.get(CRM_MODELS[link.crm_type], link.crm_id))


def holder_descriptions(links: Iterable[Link]) -> dict[int, str]:
    """:func:`holder_description` of many links (by link id), reading their records with one query per CRM type."""
    links = list(links)
    ids: dict[str, set[int]] = {}
    for link in links:
        ids.setdefault(link.crm_type, set()).add(link.crm_id)
    records = {}
    for crm_type, crm_ids in ids.items():
        model = CRM_MODELS[crm_type]
        for record in db.session.scalars(select(model).where(model.id.in_(crm_ids))):
            records[(crm_type, record.id)] = record
    return {link.id: _describe(link, records.get((link.crm_type, link.crm_id))) for link in links}


def check_free(connection_id: int, crm_type: str, crm_id: int, actor_type: str, erp_key: str) -> None:
    """Raise LinkError when the record is already linked on this connection, or the actor is linked to
    another record."""
    existing = link_for(connection_id, crm_type, crm_id)
    if existing is not None:
        raise LinkError(f"This record is already linked to {actor_label(connection_id, existing.erp_actor_type)} "
                        f"{existing.erp_key} on this "
                        "connection.")
    holder = link_for_actor(connection_id, actor_type, erp_key)
    if holder is not None:
        raise LinkError(f"{actor_label(connection_id, actor_type)} {erp_key} is already linked to the "
                        f"{holder_description(holder)}.")


def create_link(*, connection_id: int, crm_type: str, crm_id: int, actor: dict, base: dict,
                crm_updated_at: datetime | None, created_by_id: int | None = None, result: str = "Linked") -> Link:
    """Add the link to the session (the caller commits, together with the record writes it belongs to).
    Raises LinkError if either side is taken (also when a concurrent request won the race)."""
    check_free(connection_id, crm_type, crm_id, actor["ActorType"], actor["ErpKey"])
    now = utcnow()
    link = Link(connection_id=connection_id, crm_type=crm_type, crm_id=crm_id, erp_actor_type=actor["ActorType"],
                erp_key=actor["ErpKey"], parent_erp_key=actor.get("ParentErpKey") or None,
                erp_last_modified=actor.get("LastModified") or None, base=dict(base), status=LinkStatus.OK,
                last_synced_at=now, crm_synced_at=crm_updated_at, last_result=result, created_by_id=created_by_id)
    db.session.add(link)
    try:
        db.session.flush()
    except IntegrityError as exc:
        db.session.rollback()
        raise LinkError("This record or ERP actor was linked by someone else a moment ago. Reload and try "
                        "again.") from exc
    return link


def remove_link(link: Link) -> None:
    """Disconnect: deletes only the link; the connector is not called and ERP data is untouched."""
    db.session.delete(link)


def on_crm_record_deleted(crm_type: str, crm_id: int) -> int:
    """Deleting a CRM record removes its links (ERP data is never deleted). Same transaction as the delete."""
    result = db.session.execute(delete(Link).where(Link.crm_type == crm_type, Link.crm_id == crm_id))
    return result.rowcount or 0


def mark_broken(link: Link, message: str) -> None:
    link.status = LinkStatus.BROKEN
    link.status_message = message
    link.last_result = message

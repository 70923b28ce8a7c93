"""Global sync settings: automatic sync On/Off, interval, sync priority (with the CRM as one entry)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from portal.database import utcnow
from portal.extensions import db
from portal.models import CRM_PRIORITY_ID, Connection, SyncSettings
from portal.services import audit
from portal.services.bootstrap import sync_settings
from portal.services.connectors import ServiceError

MIN_INTERVAL_SECONDS = 60


def set_auto_sync(on: bool, actor=None, **ctx) -> SyncSettings:
    settings = sync_settings()
    if settings.auto_sync != on:
        audit.record("sync.auto", object_type="sync_settings", object_id=1, object_repr="Automatic sync",
                     before={"auto_sync": settings.auto_sync}, after={"auto_sync": on}, actor=actor, **ctx)
        settings.auto_sync = on
        settings.next_due_at = utcnow() if on else None  # due at once when turned on
    db.session.commit()
    return settings


def set_interval(seconds: int, actor=None, **ctx) -> SyncSettings:
    if seconds < MIN_INTERVAL_SECONDS:
        raise ServiceError(f"The interval must be at least {MIN_INTERVAL_SECONDS} seconds.", "interval_seconds")
    if seconds > 366 * 24 * 3600:
        raise ServiceError("The interval can be at most a year.", "interval_seconds")
    settings = sync_settings()
    if settings.interval_seconds != seconds:
        audit.record("sync.interval", object_type="sync_settings", object_id=1, object_repr="Sync interval",
                     before={"interval_seconds": settings.interval_seconds}, after={"interval_seconds": seconds},
                     actor=actor, **ctx)
        settings.interval_seconds = seconds
        settings.next_due_at = utcnow() + timedelta(seconds=seconds)  # a new interval counts from now
    db.session.commit()
    return settings


def priority_entries() -> list[tuple[int, str]]:
    """The sync-priority list: (connection id or 0 for the CRM, label), highest priority first.
    Active connections missing from the stored order are appended; stale ids are dropped."""
    settings = sync_settings()
    active = {c.id: c.name for c in db.session.scalars(
        select(Connection).where(Connection.active.is_(True), Connection.deleted.is_(False)))}
    order = [i for i in (settings.priority or []) if i == CRM_PRIORITY_ID or i in active]
    if CRM_PRIORITY_ID not in order:
        order.insert(0, CRM_PRIORITY_ID)
    order += sorted(i for i in active if i not in order)
    return [(i, "CRM (this portal)" if i == CRM_PRIORITY_ID else active[i]) for i in order]


def priority_rank(entry_id: int) -> int:
    """Position on the priority list (0 = highest); unknown connections rank last."""
    ids = [i for i, _ in priority_entries()]
    return ids.index(entry_id) if entry_id in ids else len(ids)


def ensure_in_priority(connection_id: int) -> None:
    settings = sync_settings()
    order = list(settings.priority or [CRM_PRIORITY_ID])
    if connection_id not in order:
        settings.priority = order + [connection_id]


def move_priority(entry_id: int, direction: int, actor=None, **ctx) -> list[tuple[int, str]]:
    entries = priority_entries()
    ids = [i for i, _ in entries]
    if entry_id not in ids:
        raise ServiceError("That entry is not on the priority list.")
    index = ids.index(entry_id)
    target = index - 1 if direction < 0 else index + 1
    if 0 <= target < len(ids):
        before = list(ids)
        ids[index], ids[target] = ids[target], ids[index]
        settings = sync_settings()
        settings.priority = ids
        audit.record("sync.priority", object_type="sync_settings", object_id=1, object_repr="Sync priority",
                     before={"priority": before}, after={"priority": ids}, actor=actor, **ctx)
        db.session.commit()
    return priority_entries()

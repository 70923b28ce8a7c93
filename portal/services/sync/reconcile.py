"""Reconcile: defence in depth against drift (docs/sync-engine.md, "Reconcile").

The incremental sync only looks at what the ERP feed and the CRM's ``updated_at`` report as changed. A value
changed behind their backs — an ERP that does not move ``LastModified`` on some path, a database restore, an
SQL fix in the CRM, a lost feed page — is never looked at again. A reconcile run (``kind='reconcile'``) reads
**every** link of the connection, broken ones included, keyset-paged by link id: one ``GetActors`` per batch of
links, and merges each record exactly as a normal sync does (mode ``sync``, three ways with the link's base,
``process_batch`` with the actor left to be read). So drift is repaired by the normal merge rules and logged in
the change log under the reconcile run, an actor the ERP no longer returns marks its link broken, and a broken
link whose actor is back returns to ok. It never moves the ERP feed cursor or the CRM mark.

**Dry run** (option ``dry_run``; ``flask --app wsgi erp reconcile --dry-run``): the same reads and merges, then
``batch.py`` hands every merged batch to ``preview.report`` instead of writing — no SaveActors, nothing written to
CRM records, links or the change log (the dry run of every kind of run: ``preview.py``). What would change (per
record and field, each way, and how each conflict would be settled) goes to the caller's ``reporting`` callback
(the CLI prints it) and, bounded, into the run's counts and message.

**Schedule**: ``SyncSettings.reconcile_every_hours`` (0 = Off; default 24) and ``reconcile_hour`` (UTC; default 2):
every night at 02:00 UTC. ``dispatch_due`` (ticked by the scheduler) queues a reconcile run for each syncable
connection whose ``Connection.reconcile_due_at`` has passed, taking the slot with a conditional UPDATE.
"""

from __future__ import annotations

import logging
from datetime import datetime, time, timedelta

from sqlalchemy import func, select, update

from portal.database import utcnow
from portal.extensions import db
from portal.models import Connection, Link, LinkStatus, RunKind, RunStatus, SyncSettings
from portal.services.bootstrap import sync_settings
from portal.services.connectors import ServiceError
from portal.services.sync import runs
from portal.services.sync.batch import process_batch
from portal.services.sync.bulk import core_connection
from portal.services.sync.context import RunContext, plural
from portal.services.sync.crm_changes import pages_by_link
from portal.services.sync.plan import BatchItem, TypePlan
from portal.services.sync.preview import PreviewEntry as DriftEntry  # the reconcile's name for a preview entry
from portal.services.sync.preview import reporting

log = logging.getLogger(__name__)

# How often (hours -> label); 0 is Off. Intervals under a day divide it, so the slots fall at the same hours daily.
EVERY_CHOICES = {0: "Off", 6: "Every 6 hours", 12: "Every 12 hours", 24: "Every night", 168: "Every week"}
DEFAULT_EVERY_HOURS = 24
DEFAULT_HOUR = 2  # UTC: a quiet hour
MAX_GRACE = timedelta(hours=6)  # a slot missed by more than this (or half the interval) waits for the next one

# ---------------------------------------------------------------------------------------------- the pass


def reconcile(ctx: RunContext) -> None:
    """Every link of every active actor type of the connection, merged with the actor as GetActors reads it."""
    for plan in ctx.plans:
        _reconcile_type(ctx, plan)


def _reconcile_type(ctx: RunContext, plan: TypePlan) -> None:
    links = (Link.connection_id == ctx.connection_id, Link.erp_actor_type == plan.actor_type,
             Link.crm_type == plan.crm_type)
    ctx.total += core_connection().scalar(select(func.count()).select_from(Link).where(*links)) or 0
    db.session.commit()
    # ok and broken links alike (a broken one comes back when the ERP has its actor again), with their CRM rows
    for rows in pages_by_link(ctx, plan.sql_linked.where(Link.connection_id == ctx.connection_id)):
        items = [BatchItem(row, plan) for row in rows]  # no actor yet: process_batch reads them, one GetActors
        was_broken = {it.link_id for it in items if it.status == LinkStatus.BROKEN}
        process_batch(ctx, plan, items, "sync")  # no cursor: the feed cursor and the CRM mark stay where they are
        if not ctx.dry_run:
            _tally(ctx, items, was_broken)


def _wrote(it: BatchItem) -> bool:
    parent = getattr(it, "parent", None)
    return bool(it.crm_write or it.sent or (parent is not None and getattr(parent, "sent", False)))


def _tally(ctx: RunContext, items: list[BatchItem], was_broken: set[int]) -> None:
    """What the batch path counted (to_crm, to_erp, conflicts, broken …) plus the reconcile's own counts."""
    for it in items:
        if it.outcome == "still_broken":
            ctx.count("still_broken")
        elif it.outcome is None:
            if it.link_id in was_broken:
                ctx.count("restored")
            if _wrote(it):
                ctx.count("drift_repaired")


def final(ctx: RunContext) -> tuple[str, str]:
    """The run's status and message (engine._final for reconcile runs)."""
    c = ctx.counts
    links = c.get("records", 0)
    if not links:
        status, message = RunStatus.SUCCEEDED, f"Nothing to reconcile: no linked records on {ctx.name}."
    else:
        parts = []
        if c.get("drift_repaired"):
            repaired = c["drift_repaired"]
            parts.append(f"{plural(repaired, 'record')} had drifted and {'was' if repaired == 1 else 'were'} "
                         f"repaired ({c.get('to_crm', 0):,} updated in the CRM, {c.get('to_erp', 0):,} in {ctx.name})")
        if c.get("conflicts"):
            parts.append(f"{plural(c['conflicts'], 'conflict')} settled")
        if c.get("errors"):
            parts.append(f"{plural(c['errors'], 'record')} with errors")
        if c.get("broken"):
            parts.append(f"{plural(c['broken'], 'link')} broken (deleted in the ERP)")
        if c.get("restored"):
            parts.append(f"{plural(c['restored'], 'broken link')} restored (the ERP has the actor again)")
        if c.get("still_broken"):
            parts.append(f"{plural(c['still_broken'], 'link')} still broken")
        if c.get("deferred"):
            parts.append(f"{c['deferred']:,} changed meanwhile (next run)")
        message = f"Reconciled {plural(links, 'link')} with {ctx.name}: " + (", ".join(parts) or "both sides agree")
        message += "."
        status = RunStatus.PARTIAL if c.get("errors") or c.get("broken") else RunStatus.SUCCEEDED
    if ctx.warnings:
        status = RunStatus.PARTIAL
        message += " Connector warning: " + "; ".join(ctx.warnings)
    return status, message


# ---------------------------------------------------------------------------------------------- schedule


def first_slot(now: datetime, hour: int, every_hours: int) -> datetime:
    """The first slot after ``now``: ``hour``:00 UTC plus whole intervals (an interval of a day or more starts at
    the next ``hour``:00 and goes on from there)."""
    step = timedelta(hours=min(max(every_hours, 1), 24))
    slot = datetime.combine(now.date(), time(hour)) - timedelta(days=1)
    while slot <= now:
        slot += step
    return slot


def next_slot(due: datetime, every_hours: int, now: datetime) -> datetime:
    """The first slot after ``now`` of the series that had ``due``."""
    step = timedelta(hours=max(every_hours, 1))
    if due > now:
        return due
    return due + step * ((now - due) // step + 1)


def grace(every_hours: int) -> timedelta:
    """How late a slot may still run (the process was down at the hour, the connection was busy …)."""
    return min(timedelta(hours=max(every_hours, 1)) / 2, MAX_GRACE)


def _move_due(connection_id: int, previous: datetime | None, new: datetime | None) -> bool:
    """Conditional UPDATE of the connection's due time: True only for the one caller that found ``previous``."""
    stmt = update(Connection).where(Connection.id == connection_id)
    stmt = stmt.where(Connection.reconcile_due_at.is_(None) if previous is None
                      else Connection.reconcile_due_at == previous)
    # updated_at kept as it is: moving the schedule is not an edit of the connection
    result = db.session.execute(stmt.values(reconcile_due_at=new, updated_at=Connection.updated_at)
                                .execution_options(synchronize_session=False))
    db.session.commit()
    return result.rowcount == 1


def dispatch_due(now: datetime | None = None) -> list[int]:
    """The scheduler's tick: queue a reconcile run (trigger ``schedule``) for every syncable connection whose
    reconcile is due, in sync-priority order; returns their ids (to execute as one cycle).

    Nothing while the reconcile is Off or automatic sync is Off. A connection not scheduled yet gets its first
    slot. A due connection with an active run is skipped and tried again at the next tick (within the grace
    period); a slot missed by more than the grace is skipped. The slot is taken with a conditional UPDATE, so two
    dispatchers never queue the same one; if another run started in between, the slot is given back."""
    now = now or utcnow()
    settings = sync_settings()
    every, hour, auto = int(settings.reconcile_every_hours or 0), int(settings.reconcile_hour or 0), settings.auto_sync
    db.session.commit()
    if not every or not auto:
        return []
    run_ids: list[int] = []
    connections = [(c.id, c.reconcile_due_at) for c in runs.syncable_connections()]
    db.session.commit()
    for cid, due in connections:
        if due is None:
            _move_due(cid, None, first_slot(now, hour, every))
            continue
        if due > now:
            continue
        missed = now - due > grace(every)
        if not missed and runs.active_run(cid) is not None:
            db.session.commit()
            continue  # busy: the next tick tries again
        new_due = next_slot(due, every, now)
        if not _move_due(cid, due, new_due):
            continue  # another dispatcher took this slot
        if missed:
            log.info("reconcile of connection %s missed its slot %s; next at %s", cid, due, new_due)
            continue
        try:
            run, created = runs.request_run(cid, kind=RunKind.RECONCILE, trigger="schedule",
                                            requested_by="scheduler")
        except runs.RunError:
            continue
        if created:
            run_ids.append(run.id)
        else:  # a run started since we looked: give the slot back, the next tick tries again
            _move_due(cid, new_due, due)
    return run_ids


def set_schedule(every_hours: int, hour: int, actor=None, **ctx) -> SyncSettings:
    """Set how often (``EVERY_CHOICES``; 0 = Off) and at which hour (UTC) the reconcile runs; every connection is
    rescheduled at the next slot."""
    from portal.services import audit

    try:
        every_hours, hour = int(every_hours), int(hour)
    except (TypeError, ValueError):
        raise ServiceError("Choose how often and at which hour the reconcile runs.", "every_hours") from None
    if every_hours not in EVERY_CHOICES:
        raise ServiceError("Choose how often the reconcile runs: " + ", ".join(EVERY_CHOICES.values()) + ".",
                           "every_hours")
    if not 0 <= hour <= 23:
        raise ServiceError("Choose an hour from 00 to 23 (UTC).", "hour")
    settings = sync_settings()
    before = {"reconcile_every_hours": settings.reconcile_every_hours, "reconcile_hour": settings.reconcile_hour}
    after = {"reconcile_every_hours": every_hours, "reconcile_hour": hour}
    if before != after:
        audit.record("sync.reconcile", object_type="sync_settings", object_id=settings.id,
                     object_repr="Reconcile schedule", before=before, after=after, actor=actor, **ctx)
        settings.reconcile_every_hours, settings.reconcile_hour = every_hours, hour
        db.session.execute(update(Connection).values(reconcile_due_at=None, updated_at=Connection.updated_at)
                           .execution_options(synchronize_session=False))
    db.session.commit()
    return settings


def schedule_text(settings: SyncSettings | None = None) -> str:
    """"every night at 02:00 UTC", "every 6 hours from 02:00 UTC", "off" …"""
    settings = settings or sync_settings()
    every, hour = int(settings.reconcile_every_hours or 0), int(settings.reconcile_hour or 0)
    at = f"{hour:02d}:00 UTC"
    if not every:
        return "off"
    if every == 24:
        return f"every night at {at}"
    if every == 168:
        return f"every week at {at}"
    return f"every {every} hours from {at}"


def next_due_at(settings: SyncSettings | None = None, now: datetime | None = None) -> datetime | None:
    """When the next scheduled reconcile of any connection is due (None when it is Off)."""
    settings = settings or sync_settings()
    every, hour = int(settings.reconcile_every_hours or 0), int(settings.reconcile_hour or 0)
    if not every:
        return None
    now = now or utcnow()
    dues = [c.reconcile_due_at for c in runs.syncable_connections()]
    dues = [next_slot(due, every, now) if now - due > grace(every) else due for due in dues if due is not None]
    return min(dues, default=None) or first_slot(now, hour, every)


__all__ = ["DriftEntry", "EVERY_CHOICES", "dispatch_due", "final", "first_slot", "next_due_at", "next_slot",
           "reconcile", "reporting", "schedule_text", "set_schedule"]

"""Sync runs: the database is the queue (docs/sync-engine.md, "Run lifecycle").

Every sync is a ``SyncRun`` row: ``queued -> running -> succeeded | partial | failed``. At most one queued-or-running
run exists per connection — the partial unique index ``uq_sync_run_one_active`` enforces it, so
``request_run`` is idempotent: a second request gets the run that is already active. A worker claims a run with a
conditional UPDATE (``queued -> running``, rowcount must be 1) and records itself as the run's owner
(``SyncRun.worker``, see ``owner.py``), heartbeats after every batch, and the reaper fails runs whose heartbeat
stopped — or, at once, runs whose owner process on this host is gone — as abandoned; the next run redoes their
work, which is safe because a sync is idempotent.

Also here: the periodic dispatcher (``dispatch_due``), log retention (``prune_log``) and the queries behind the
Show log pages. Nothing here calls a connector; ``portal.services.sync.engine`` executes runs.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.exc import IntegrityError

from portal.database import MAX_INT, utcnow
from portal.extensions import db
from portal.models import (
    ACTIVE_RUN_STATUSES,
    CRM_PRIORITY_ID,
    ActorTypeConfig,
    Connection,
    Connector,
    RunKind,
    RunStatus,
    SyncChange,
    SyncRun,
    SyncSettings,
    User,
)
from portal.services.bootstrap import sync_settings
from portal.services.connectors import ServiceError
from portal.services.sync import owner

log = logging.getLogger(__name__)

LEASE_SECONDS = owner.LEASE_SECONDS  # a running run whose heartbeat is older than this is abandoned
STALE_QUEUED_SECONDS = 30  # a queued run nothing picked up for this long is handed out again by the dispatcher
MIN_RETENTION_DAYS = 1
MAX_RETENTION_DAYS = 3650
PRUNE_CHUNK = 5000
TERMINAL_STATUSES = (RunStatus.SUCCEEDED, RunStatus.PARTIAL, RunStatus.FAILED)

KIND_LABELS = {
    RunKind.SYNC: "Sync",
    RunKind.RECORD: "Sync now (one record)",
    RunKind.RESYNC_FROM_CRM: "Resync from CRM",
    RunKind.RESYNC_FROM_ERP: "Resync from ERP",
    RunKind.IMPORT: "Import",
    RunKind.RECONCILE: "Reconcile",
}
TRIGGER_LABELS = {
    "schedule": "Scheduled",
    "manual": "Admin",
    "user": "User",
    "cli": "Command line",
    "hub": "Hub follow-up",
}


class RunError(ValueError):
    """A run cannot be requested; ``str(error)`` is a sentence for the screen."""


class RunBusy(RunError):
    """Another run holds the connection (one active run per connection); ``run_id`` is that run."""

    def __init__(self, message: str, run_id: int | None = None):
        super().__init__(message)
        self.run_id = run_id


class RunRefused(RunError):
    """The run makes no sense now (connection inactive or deleted, record not linked …)."""


# ------------------------------------------------------------------------------------------------ requesting


def requester(requested_by) -> tuple[int | None, str]:
    """(user id, label) for ``requested_by``: a User, a user id, a label such as 'scheduler', or None."""
    if requested_by is None:
        return None, ""
    if isinstance(requested_by, User):
        return requested_by.id, requested_by.email
    if isinstance(requested_by, int) and not isinstance(requested_by, bool):
        user = db.session.get(User, requested_by)
        return (requested_by, user.email) if user is not None else (None, f"user #{requested_by}")
    user_id = getattr(requested_by, "id", None)
    email = getattr(requested_by, "email", None)
    if isinstance(user_id, int) and email:
        return user_id, str(email)
    return None, str(requested_by)[:254]


def active_run(connection_id: int) -> SyncRun | None:
    return db.session.scalar(select(SyncRun).where(SyncRun.connection_id == connection_id,
                                                   SyncRun.status.in_(ACTIVE_RUN_STATUSES)))


_BUSY_PHRASES = {
    RunKind.SYNC: "A sync of {name}",
    RunKind.RECORD: "A Sync now of a record on {name}",
    RunKind.RESYNC_FROM_CRM: "A resync from the CRM to {name}",
    RunKind.RESYNC_FROM_ERP: "A resync from {name}",
    RunKind.IMPORT: "An import of {name}",
    RunKind.RECONCILE: "A reconcile of {name}",
}


def describe_busy(run: SyncRun) -> str:
    """Why a connection is busy, for the screen: "A sync of Demo ERP is running (run #12); try again …"."""
    name = run.connection.name if run.connection is not None else f"connection #{run.connection_id}"
    what = _BUSY_PHRASES.get(run.kind, "A run of {name}").format(name=name)
    state = "is running" if run.status == RunStatus.RUNNING else "is queued"
    return f"{what} {state} (run #{run.id}); try again when it has finished."


# Who executes a queued run in this process: the scheduler registers itself here when it starts (``jobs`` is the
# higher layer, so services never import it). Without one, the dispatcher sweep of the process that has a scheduler
# picks the queued run up.
_submitters: list = []


def set_submitter(submit_cycle) -> None:
    """Register ``submit_cycle(run_ids) -> bool`` (the scheduler of this process)."""
    _submitters[:] = [submit_cycle]


def submit(run_ids) -> bool:
    """Hand queued runs to this process's scheduler, executed one after the other in the order given; False when
    this process has none (then the dispatcher sweep picks them up)."""
    run_ids = [int(run_id) for run_id in run_ids]
    return bool(run_ids and _submitters and _submitters[0](run_ids))


def request_run(connection_id: int, *, kind: str = RunKind.SYNC, trigger: str = "manual", requested_by=None,
                options: dict | None = None, own: bool = False) -> tuple[SyncRun, bool]:
    """Queue a run for the connection, or return the run already active on it: ``(run, created)``.

    Idempotent and race-free: the partial unique index admits one queued-or-running run per connection, so of
    many simultaneous requests exactly one inserts and the others get that run back. Commits the session.
    Raises RunRefused when the connection does not exist or is deleted (inactive connections are refused for
    every kind except an import). ``own=True``: this process executes the run itself next (the command line, hub
    follow-ups), so it is recorded as the queued run's owner — if the process dies before claiming it, the reaper
    fails it at once instead of leaving it queued.
    """
    connection = db.session.get(Connection, connection_id)
    if connection is None or connection.deleted:
        raise RunRefused("That ERP connection does not exist (any more).")
    if not connection.active and kind != RunKind.IMPORT:
        raise RunRefused(f"{connection.name} is not active; activate it on the Sync tab first.")
    user_id, label = requester(requested_by)
    for _attempt in range(5):
        existing = active_run(connection_id)
        if existing is not None:
            db.session.commit()
            return existing, False
        run = SyncRun(connection_id=connection_id, kind=str(kind), trigger=str(trigger)[:16], requested_by_id=user_id,
                      requested_by_label=label, status=RunStatus.QUEUED, options=dict(options or {}), counts={},
                      created_at=utcnow(), worker=owner.this_worker() if own else None)
        db.session.add(run)
        try:
            db.session.commit()
        except IntegrityError:  # someone else's run won the race for the partial unique index
            db.session.rollback()
            continue
        return run, True
    existing = active_run(connection_id)
    db.session.commit()
    if existing is None:  # pragma: no cover - runs kept starting and finishing under us
        raise RunBusy("The connection is busy; try again in a moment.")
    return existing, False


# ---------------------------------------------------------------------------------------------- lifecycle


def claim(run_id: int) -> bool:
    """queued -> running with a conditional UPDATE: True only for the one caller whose UPDATE matched, which is
    recorded as the run's owner (``worker``: host, pid)."""
    now = utcnow()
    result = db.session.execute(
        update(SyncRun).where(SyncRun.id == run_id, SyncRun.status == RunStatus.QUEUED)
        .values(status=RunStatus.RUNNING, started_at=now, heartbeat_at=now, worker=owner.this_worker())
        .execution_options(synchronize_session=False))
    db.session.commit()
    return result.rowcount == 1


def mark_alive(run_id: int, **values) -> bool:
    """The heartbeat's conditional UPDATE in the pending transaction, not committed: False when the run is no
    longer running (e.g. reaped), so the caller can roll back what it was about to commit."""
    values["heartbeat_at"] = utcnow()
    result = db.session.execute(update(SyncRun).where(SyncRun.id == run_id, SyncRun.status == RunStatus.RUNNING)
                                .values(**values).execution_options(synchronize_session=False))
    return result.rowcount == 1


def heartbeat(run_id: int, **values) -> bool:
    """Record liveness (and progress values); False when the run is no longer running (e.g. reaped)."""
    alive = mark_alive(run_id, **values)
    db.session.commit()
    return alive


def finish(run_id: int, status: str, *, message: str = "", error: str = "", counts: dict | None = None,
           connector_seconds: float | None = None, progress_done: int | None = None,
           progress_total: int | None = None) -> bool:
    """running -> a terminal status (conditional: a reaped run stays as the reaper left it)."""
    values: dict = {"status": status, "message": message[:4000], "error": error[:4000], "finished_at": utcnow(),
                    "heartbeat_at": utcnow()}
    if counts is not None:
        values["counts"] = counts
    if connector_seconds is not None:
        values["connector_seconds"] = round(connector_seconds, 4)
    if progress_done is not None:
        values["progress_done"] = progress_done
    if progress_total is not None:
        values["progress_total"] = progress_total
    result = db.session.execute(update(SyncRun).where(SyncRun.id == run_id, SyncRun.status == RunStatus.RUNNING)
                                .values(**values).execution_options(synchronize_session=False))
    db.session.commit()
    return result.rowcount == 1


def mark_failed(run_id: int, error: str) -> None:
    """Best effort after an unexpected crash: a queued or running run becomes failed."""
    try:
        db.session.rollback()
        db.session.execute(update(SyncRun).where(SyncRun.id == run_id, SyncRun.status.in_(ACTIVE_RUN_STATUSES))
                           .values(status=RunStatus.FAILED, error=error[:4000], finished_at=utcnow())
                           .execution_options(synchronize_session=False))
        db.session.commit()
    except Exception:  # pragma: no cover - the reaper is the backstop
        db.session.rollback()
        log.exception("could not mark run %s failed", run_id)


def reap_stale(now: datetime | None = None, lease_seconds: int = LEASE_SECONDS) -> int:
    """Fail abandoned runs (``owner.reap_abandoned``: owner process gone, or heartbeat older than the lease): the
    scheduler's job and the startup hooks. Returns the number of runs reaped."""
    return len(owner.reap_abandoned(now, lease_seconds))


# ---------------------------------------------------------------------------------------------- dispatching


def syncable_connections() -> list[Connection]:
    """Active connections (connector not deleted) with at least one active actor type, highest priority first."""
    from portal.services.sync_settings import priority_entries

    order = {entry_id: rank for rank, (entry_id, _label) in enumerate(priority_entries())}
    rows = db.session.scalars(
        select(Connection).join(Connector, Connector.id == Connection.connector_id)
        .where(Connection.active.is_(True), Connection.deleted.is_(False), Connector.deleted.is_(False),
               Connection.id.in_(select(ActorTypeConfig.connection_id).where(ActorTypeConfig.is_active.is_(True),
                                                                          ActorTypeConfig.supported.is_(True))))
    ).all()
    return sorted(rows, key=lambda c: (order.get(c.id, len(order)), c.id))


def request_all(*, kind: str = RunKind.SYNC, trigger: str = "manual", requested_by=None,
                options: dict | None = None, exclude: set[int] | frozenset[int] = frozenset()
                ) -> list[tuple[SyncRun, bool]]:
    """``request_run`` for every syncable connection, in sync-priority order (the order they should run in)."""
    result = []
    for connection in syncable_connections():
        if connection.id in exclude:
            continue
        try:
            result.append(request_run(connection.id, kind=kind, trigger=trigger, requested_by=requested_by,
                                      options=options))
        except RunRefused:  # deactivated in the meantime
            continue
    return result


def dispatch_due(now: datetime | None = None) -> list[int]:
    """The dispatcher job: when the periodic sync is due (automatic sync On and ``next_due_at`` passed), move
    ``next_due_at`` on with a conditional UPDATE — so two dispatchers never both take the same slot — and queue a
    run per syncable connection. Returns run ids to execute, in order: the new runs in sync-priority order, then
    queued runs that nothing picked up for a while (requested in a process without a scheduler)."""
    now = now or utcnow()
    settings = sync_settings()
    db.session.commit()
    run_ids: list[int] = []
    if settings.auto_sync and (settings.next_due_at is None or settings.next_due_at <= now):
        previous = settings.next_due_at
        interval = max(int(settings.interval_seconds or 300), 1)
        stmt = update(SyncSettings).where(SyncSettings.id == settings.id, SyncSettings.auto_sync.is_(True))
        stmt = stmt.where(SyncSettings.next_due_at.is_(None) if previous is None
                          else SyncSettings.next_due_at == previous)
        taken = db.session.execute(stmt.values(next_due_at=now + timedelta(seconds=interval))
                                   .execution_options(synchronize_session=False)).rowcount == 1
        db.session.commit()
        if taken:
            for run, created in request_all(kind=RunKind.SYNC, trigger="schedule", requested_by="scheduler"):
                if created:
                    run_ids.append(run.id)
    stale = db.session.scalars(select(SyncRun.id).where(
        SyncRun.status == RunStatus.QUEUED,
        SyncRun.created_at <= now - timedelta(seconds=STALE_QUEUED_SECONDS)).order_by(SyncRun.created_at)).all()
    db.session.commit()
    run_ids += [run_id for run_id in stale if run_id not in run_ids]
    return run_ids


def next_due_text(settings: SyncSettings | None = None) -> str:
    settings = settings or sync_settings()
    if not settings.auto_sync:
        return "automatic sync is off"
    if settings.next_due_at is None or settings.next_due_at <= utcnow():
        return "due now"
    return settings.next_due_at.strftime("%Y-%m-%d %H:%M:%S UTC")


# ---------------------------------------------------------------------------------------------- the log


def set_retention(days: int, actor=None, **ctx) -> SyncSettings:
    from portal.services import audit

    try:
        days = int(days)
    except (TypeError, ValueError):
        raise ServiceError("Enter the number of days to keep the sync log.", "log_retention_days") from None
    if not MIN_RETENTION_DAYS <= days <= MAX_RETENTION_DAYS:
        raise ServiceError(f"Keep the log between {MIN_RETENTION_DAYS} and {MAX_RETENTION_DAYS} days.",
                           "log_retention_days")
    settings = sync_settings()
    if settings.log_retention_days != days:
        audit.record("sync.log_retention", object_type="sync_settings", object_id=settings.id,
                     object_repr="Sync log retention", before={"log_retention_days": settings.log_retention_days},
                     after={"log_retention_days": days}, actor=actor, **ctx)
        settings.log_retention_days = days
    db.session.commit()
    return settings


def prune_log(now: datetime | None = None) -> int:
    """Delete change-log rows and finished runs older than the retention setting (in chunks). Returns rows
    deleted. Active runs are never touched."""
    now = now or utcnow()
    settings = sync_settings()
    cutoff = now - timedelta(days=max(int(settings.log_retention_days or 90), MIN_RETENTION_DAYS))
    db.session.commit()
    total = 0
    while True:
        ids = db.session.scalars(select(SyncChange.id).where(SyncChange.at < cutoff).limit(PRUNE_CHUNK)).all()
        if not ids:
            break
        total += db.session.execute(delete(SyncChange).where(SyncChange.id.in_(ids))
                                    .execution_options(synchronize_session=False)).rowcount or 0
        db.session.commit()
    while True:
        ids = db.session.scalars(select(SyncRun.id).where(SyncRun.status.in_(TERMINAL_STATUSES),
                                                          SyncRun.finished_at < cutoff).limit(PRUNE_CHUNK)).all()
        if not ids:
            break
        db.session.execute(delete(SyncChange).where(SyncChange.run_id.in_(ids))
                           .execution_options(synchronize_session=False))
        total += db.session.execute(delete(SyncRun).where(SyncRun.id.in_(ids))
                                    .execution_options(synchronize_session=False)).rowcount or 0
        db.session.commit()
    if total:
        log.info("pruned %d sync log row(s) older than %s", total, cutoff)
    return total


@dataclass
class ChangeFilter:
    """Filters of the field-level change log; all optional."""

    connection_id: int | None = None
    crm_type: str | None = None
    record: str = ""  # a CRM record id, or (part of) an ERP key
    since: datetime | None = None
    until: datetime | None = None
    run_id: int | None = None
    only: str = ""  # '' | 'conflicts' | 'errors'


def change_query(filters: ChangeFilter):
    stmt = select(SyncChange)
    if filters.connection_id:
        stmt = stmt.where(SyncChange.connection_id == filters.connection_id)
    if filters.crm_type:
        stmt = stmt.where(SyncChange.crm_type == filters.crm_type)
    text = (filters.record or "").strip()
    if text:
        if text.isdigit() and int(text) <= MAX_INT:
            stmt = stmt.where(or_(SyncChange.crm_id == int(text), SyncChange.erp_key == text))
        else:
            escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            stmt = stmt.where(SyncChange.erp_key.ilike(f"%{escaped}%", escape="\\"))
    if filters.since is not None:
        stmt = stmt.where(SyncChange.at >= filters.since)
    if filters.until is not None:
        stmt = stmt.where(SyncChange.at < filters.until)
    if filters.run_id:
        stmt = stmt.where(SyncChange.run_id == filters.run_id)
    if filters.only == "conflicts":
        stmt = stmt.where(SyncChange.conflict.is_(True))
    elif filters.only == "errors":
        stmt = stmt.where(SyncChange.direction == "error")
    return stmt.order_by(SyncChange.at.desc(), SyncChange.id.desc())


def change_page(filters: ChangeFilter, page: int | str | None = 1, per_page: int = 50):
    from portal.services.crm import paginate

    return paginate(change_query(filters), page, per_page)


def run_page(page: int | str | None = 1, per_page: int = 20, connection_id: int | None = None):
    from portal.services.crm import paginate

    stmt = select(SyncRun).order_by(SyncRun.created_at.desc(), SyncRun.id.desc())
    if connection_id:
        stmt = stmt.where(SyncRun.connection_id == connection_id)
    return paginate(stmt, page, per_page)


def active_runs() -> list[SyncRun]:
    return list(db.session.scalars(select(SyncRun).where(SyncRun.status.in_(ACTIVE_RUN_STATUSES))
                                   .order_by(SyncRun.created_at)))


def last_runs(connection_id: int, limit: int = 3, *, previews: bool = False) -> list[SyncRun]:
    """The connection's latest runs, newest first; previews (dry runs) only with ``previews=True``: they wrote
    nothing, so they are not the connection's last sync."""
    stmt = select(SyncRun).where(SyncRun.connection_id == connection_id)
    if not previews:
        stmt = stmt.where(real_run())
    return list(db.session.scalars(stmt.order_by(SyncRun.created_at.desc(), SyncRun.id.desc()).limit(limit)))


# ---------------------------------------------------------------------------------------------- previews


def is_preview(run: SyncRun) -> bool:
    """A dry run (option ``dry_run``, preview.py): it wrote nothing and is no sync of the connection."""
    return bool((run.options or {}).get("dry_run"))


def preview_run():
    """SQL: the run is a preview (a dry run)."""
    return func.coalesce(SyncRun.options["dry_run"].as_boolean(), False).is_(True)


def real_run():
    """SQL: the run is not a preview — use it wherever "the last run" or "the last successful sync" is asked."""
    return ~preview_run()


def update_options(run_id: int, **values) -> None:
    """Add ``values`` to the run's options (a preview's ``ran_as``, a refused Run it that becomes a preview …)."""
    run = db.session.get(SyncRun, run_id)
    if run is not None:
        run.options = {**(run.options or {}), **values}
    db.session.commit()


def mark_preview(run_id: int) -> None:
    update_options(run_id, dry_run=True)


def count_changes(run_id: int) -> dict[str, int]:
    rows = db.session.execute(select(SyncChange.direction, SyncChange.conflict, func.count())
                              .where(SyncChange.run_id == run_id)
                              .group_by(SyncChange.direction, SyncChange.conflict)).all()
    result = {"to_crm": 0, "to_erp": 0, "error": 0, "conflicts": 0}
    for direction, conflict, number in rows:
        result[direction] = result.get(direction, 0) + number
        if conflict:
            result["conflicts"] += number
    return result


__all__ = ["CRM_PRIORITY_ID", "ChangeFilter", "LEASE_SECONDS", "RunBusy", "RunError", "RunRefused", "active_run",
           "claim", "dispatch_due", "finish", "heartbeat", "is_preview", "mark_failed", "mark_preview", "preview_run",
           "prune_log", "real_run", "reap_stale", "request_all", "request_run", "set_retention", "update_options"]

"""The sync engine: executes one run for one connection (docs/sync-engine.md has the full story).

A normal run (``kind='sync'``), per active actor type of the connection:

A. **ERP changes** (``feed.py``) — ``GetActorsByTimestamp`` from the connection's cursor, every page read
   (``Limit``/``NextCursor``) before anything is written, so a connector that pages by offset cannot skip an actor
   re-stamped by our writes; only linked actors are kept; an actor whose ``LastModified`` *and values* equal what
   its link last merged (a repeat of the inclusive call, or the echo of our own SaveActors) is skipped.
B. **CRM changes** — linked records whose ``updated_at`` is later than the link's ``crm_synced_at``, plus links
   whose previous sync failed (``retry_at`` passed); keyset-paged SQL, never all links at once. Once a run has
   gone through all of them, the connection keeps a *CRM mark* per actor type (``Connection.crm_cursors``: when
   that run started, minus ``CRM_LOOKBACK``), and later runs only look at records changed between the mark and
   their own start (the ``updated_at`` index), so the cost follows the changes, not the number of links.
C. For each batch (``SYNC_BATCH_SIZE``, default 200; ``batch.py``): the missing side is read (one ``GetActors``
   per batch; the CRM rows come with the links, in the same SELECT), each record goes through the three-way merge
   (``record_merge.py``, ``parents.py``) against the link's base, ERP writes are journaled (``journal.py``) and go
   out in one ``SaveActors`` per batch (``erp_write.py``: a business error makes it retry record by record to
   isolate the bad one), the answer is merged once more (it is what the ERP now stores), and one short database
   transaction (``apply.py``) applies the CRM writes, the link bases and markers and the change log. No
   transaction is open during a connector call.
D. The cursor moves to the highest ``LastModified`` of a batch only after that batch was applied, and never
   past an actor the feed's read may have skipped (see feed.py).

A record that fails is recorded (change log ``direction='error'``), skipped and retried by a later run
(``Link.retry_at`` with a growing delay); a record the CRM changed while the engine worked on it is left for the
next run (its ``updated_at`` is newer than ``crm_synced_at``). A connector error that is not about one record
fails the run with the connector's explanation.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import CancelledError
from datetime import datetime
from functools import partial

from sqlalchemy import func, select

from portal.database import utcnow
from portal.extensions import db
from portal.models import Connection, Link, LinkStatus, RunKind, RunStatus, SyncRun
from portal.services.sync import journal, preview, reconcile, runs
from portal.services.sync.batch import process_batch
from portal.services.sync.bulk import core_connection
from portal.services.sync.changelog import record_detail
from portal.services.sync.context import RunAbandoned, RunContext, RunFailed, plural, stamp_key
from portal.services.sync.crm_changes import crm_changes, pending_crm_changes
from portal.services.sync.feed import erp_changes
from portal.services.sync.outcomes import ChangeLine, ConflictLine, RecordDetail, RecordSyncResult, RunOutcome
from portal.services.sync.plan import LINK_COLUMNS, BatchItem, TypePlan

log = logging.getLogger(__name__)


_KIND_HANDLERS: dict[str, Callable[[int], object]] = {}


def register_kind(kind: str, handler: Callable[[int], object]) -> None:
    """Let another service execute runs of its own kind (the import registers ``'import'``); the handler gets
    the run id, claims and finishes the run itself."""
    _KIND_HANDLERS[str(kind)] = handler


def execute_run(run_id: int, *, on_progress: Callable[[int, int, dict], None] | None = None) -> RunOutcome:
    """Claim the queued run and execute it in this thread; returns what happened. Never raises for a connector
    failure (the run ends ``failed`` with the connector's explanation); an unexpected error also fails the run
    (details in the server log). ``on_progress(done, total, counts)`` is called after every batch."""
    run = db.session.get(SyncRun, run_id)
    if run is None:
        db.session.commit()
        return RunOutcome(run_id, status="missing", message="There is no such run.")
    kind = run.kind
    if kind in _KIND_HANDLERS:
        db.session.commit()
        result = _KIND_HANDLERS[kind](run_id)
        return result if isinstance(result, RunOutcome) else RunOutcome(run_id, run.connection_id, kind, "handled")
    connection_id = run.connection_id
    db.session.commit()
    if not runs.claim(run_id):
        return RunOutcome(run_id, connection_id, kind, status="not_claimed",
                          message="The run was already taken by another worker.")
    outcome = RunOutcome(run_id, connection_id, kind)
    ctx: RunContext | None = None
    try:
        run = db.session.get(SyncRun, run_id)
        connection = db.session.get(Connection, connection_id)
        if connection is None or connection.deleted or (not connection.active and kind != RunKind.IMPORT):
            raise RunFailed("The connection is not active any more.")
        if kind not in (RunKind.SYNC, RunKind.RECORD, RunKind.RESYNC_FROM_CRM, RunKind.RESYNC_FROM_ERP,
                        RunKind.RECONCILE):
            raise RunFailed(f"Runs of kind {kind!r} cannot be executed by the sync engine.")
        ctx = RunContext(run, connection, on_progress)
        outcome.started_at = ctx.started_at
        db.session.commit()
        # ERP writes of an earlier run that stopped before recording them (a killed process): on record first
        # (not in a dry run, which writes nothing)
        if not ctx.dry_run:
            ctx.count("journal_recovered", journal.recover(ctx.connection_id, ctx.name, except_run_id=run_id))
        log.info("sync run %s (%s, %s) started for connection %s", run_id, kind, run.trigger, ctx.name)
        expected = preview.expected_plan(ctx.options)
        if expected is not None and not _plan_holds(ctx, expected, outcome):
            return outcome  # the data changed since the preview: nothing written, the run is a fresh preview
        _execute(ctx)
        status, message = _final(ctx)
        runs.finish(run_id, status, message=message,
                    counts=preview.final_counts(ctx) if ctx.dry_run else ctx.snapshot_counts(),
                    connector_seconds=ctx.client.seconds, progress_done=ctx.done, progress_total=max(ctx.total,
                                                                                                  ctx.done))
        outcome.status, outcome.message = status, message
    except RunFailed as exc:
        db.session.rollback()
        log.warning("sync run %s failed: %s %s", run_id, exc.message, exc.tech)
        _record_journal(ctx)
        counts = ctx.snapshot_counts() if ctx else {}
        runs.finish(run_id, RunStatus.FAILED, message=exc.message, error=exc.message, counts=counts,
                    connector_seconds=ctx.client.seconds if ctx else None,
                    progress_done=ctx.done if ctx else None, progress_total=ctx.total if ctx else None)
        outcome.status, outcome.message, outcome.error = RunStatus.FAILED, exc.message, exc.message
    except RunAbandoned:
        db.session.rollback()
        log.warning("sync run %s was abandoned (reaped) while it ran; stopped", run_id)
        outcome.status, outcome.message = "abandoned", "The run was marked abandoned and stopped."
    except Exception as exc:
        db.session.rollback()
        log.exception("sync run %s crashed", run_id)
        _record_journal(ctx)
        text = f"Unexpected error ({type(exc).__name__}); details are in the server log."
        runs.mark_failed(run_id, text)
        outcome.status, outcome.message, outcome.error = RunStatus.FAILED, text, text
    finally:
        if ctx is not None:
            ctx.client.close()
            outcome.counts = ctx.snapshot_counts()
            outcome.wrote_crm = ctx.wrote_crm
            outcome.detail = ctx.detail
            outcome.warning = "; ".join(ctx.warnings) or None
    return outcome


def _record_journal(ctx: RunContext | None) -> None:
    """A failed run's ERP writes whose batch was never applied (a SaveActors may have reached the ERP): on record."""
    if ctx is None or not ctx.journal_ids:
        return
    try:
        journal.recover(ctx.connection_id, ctx.name)
    except Exception:  # the next run of the connection records them
        db.session.rollback()
        log.exception("sync run %s: its journal could not be recorded now", ctx.run_id)


def _plan_holds(ctx: RunContext, expected: dict, outcome: RunOutcome) -> bool:
    """Run it (preview.py): run the preview again in this run, under its lock; True when its plan is the one the
    admin saw. Otherwise the run finishes ``failed`` having written nothing, as a preview of today's data."""
    run, connection = db.session.get(SyncRun, ctx.run_id), db.session.get(Connection, ctx.connection_id)
    check = RunContext(run, connection, ctx.on_progress, dry_run=True)
    db.session.commit()
    try:
        _execute(check)
    finally:
        check.client.close()
    fresh = preview.state(check)
    shown = db.session.get(SyncRun, expected.get("run_id")) if isinstance(expected.get("run_id"), int) else None
    shown_counts = dict(shown.counts or {}) if shown is not None else None
    differ = preview.differences(fresh, expected, shown_counts)
    if differ is None:
        db.session.commit()
        ctx.count("plan_checked", fresh.lines)  # the plan was found as previewed: now for real
        ctx.count("plan_check_calls", check.client.calls)
        return True
    message = preview.refused(check, expected, differ)
    counts = preview.final_counts(check)
    counts["plan_differs"] = differ
    counts["plan_new"] = preview.new_since(counts, shown_counts)[:preview.PLAN_RECORDS]
    runs.mark_preview(ctx.run_id)
    runs.finish(ctx.run_id, RunStatus.FAILED, message=message, error=message, counts=counts,
                connector_seconds=check.client.seconds, progress_done=check.done,
                progress_total=max(check.total, check.done))
    log.info("sync run %s not run: its plan changed since preview %s (%s lines differ)", ctx.run_id,
             expected.get("run_id"), differ)
    outcome.status, outcome.message, outcome.error = RunStatus.FAILED, message, message
    return False


def _final(ctx: RunContext) -> tuple[str, str]:
    if ctx.dry_run:  # a preview of any kind (preview.py)
        return preview.final(ctx)
    if ctx.kind == RunKind.RECONCILE:
        return reconcile.final(ctx)
    c = ctx.counts
    records = c.get("records", 0)
    parts = [f"Checked {plural(records, 'record')}"]
    if c.get("to_crm"):
        parts.append(f"{c['to_crm']:,} updated in the CRM")
    if c.get("to_erp"):
        parts.append(f"{c['to_erp']:,} updated in {ctx.name}")
    if c.get("conflicts"):
        parts.append(plural(c["conflicts"], "conflict"))
    if c.get("errors"):
        parts.append(f"{plural(c['errors'], 'record')} with errors")
    if c.get("broken"):
        parts.append(f"{plural(c['broken'], 'link')} broken (deleted in the ERP)")
    if c.get("deferred"):
        parts.append(f"{c['deferred']:,} changed meanwhile (next run)")
    message = ", ".join(parts) + "."
    if records and not (c.get("to_crm") or c.get("to_erp") or c.get("errors") or c.get("broken")):
        message = f"Checked {plural(records, 'record')}: both sides already agree."
    if not records:
        message = "Nothing to sync: no changes on either side."
    status = RunStatus.SUCCEEDED
    if c.get("errors") or c.get("broken"):
        status = RunStatus.PARTIAL
    if ctx.warnings:
        status = RunStatus.PARTIAL
        message += " Connector warning: " + "; ".join(ctx.warnings)
    return status, message


def _execute(ctx: RunContext) -> None:
    if ctx.kind == RunKind.RECORD:
        _record_run(ctx)
        return
    if not ctx.plans:
        return
    if ctx.kind == RunKind.SYNC:
        for plan in ctx.plans:
            _sync_type(ctx, plan)
    elif ctx.kind == RunKind.RESYNC_FROM_CRM:
        for plan in ctx.plans:
            _resync_type(ctx, plan, "from_crm")
    elif ctx.kind == RunKind.RESYNC_FROM_ERP:
        for plan in ctx.plans:
            _resync_type(ctx, plan, "from_erp")
    elif ctx.kind == RunKind.RECONCILE:  # every link read with GetActors and merged (reconcile.py)
        reconcile.reconcile(ctx)


# ------------------------------------------------------------------------------------------- normal sync


def _sync_type(ctx: RunContext, plan: TypePlan) -> None:
    processed: set[int] = set()  # CRM record ids merged in this pass (one link per record and connection)
    erp_changes(ctx, plan, processed)
    crm_changes(ctx, plan, processed)


def _resync_type(ctx: RunContext, plan: TypePlan, mode: str) -> None:
    """Every link of the actor type (or, with the ``since`` option, those whose CRM record changed since), one
    way, ignoring timestamps and the base."""
    model = plan.model
    stmt = (select(*LINK_COLUMNS).join(model, model.id == Link.crm_id)
            .where(Link.connection_id == ctx.connection_id, Link.erp_actor_type == plan.actor_type,
                   Link.crm_type == plan.crm_type))
    since = ctx.options.get("since")
    if since:
        try:
            moment = datetime.fromisoformat(str(since))
        except ValueError:
            moment = None
        if moment is not None:
            stmt = stmt.where(model.updated_at >= moment)
    link_ids = ctx.options.get("link_ids")  # a resync of given records (the API's ForceResync), not all of them
    if isinstance(link_ids, list):
        stmt = stmt.where(Link.id.in_([int(i) for i in link_ids if isinstance(i, int) or str(i).isdigit()]))
    ctx.total += core_connection().scalar(select(func.count()).select_from(stmt.subquery())) or 0
    last_id = 0
    while True:
        rows = core_connection().execute(stmt.where(Link.id > last_id).order_by(Link.id).limit(ctx.batch_size)).all()
        db.session.commit()
        if not rows:
            break
        last_id = rows[-1].id
        process_batch(ctx, plan, [BatchItem(row) for row in rows], mode)


def _record_run(ctx: RunContext) -> None:
    link_id = ctx.options.get("link_id")
    row = core_connection().execute(select(*LINK_COLUMNS, Link.erp_actor_type, Link.crm_type)
                          .where(Link.id == link_id, Link.connection_id == ctx.connection_id)).first()
    db.session.commit()
    if row is None:
        raise RunFailed("The record is not linked to this connection any more.")
    plan = ctx.plan_for(row.erp_actor_type)
    if plan is None or plan.crm_type != row.crm_type:
        raise RunFailed(f"{row.erp_actor_type} records are not synced on {ctx.name} (the actor type is switched "
                        "off in its mappings).")
    item = BatchItem(row)
    ctx.total = 1
    process_batch(ctx, plan, [item], "sync")
    ctx.detail = record_detail(ctx, plan, item)


def execute_cycle(run_ids: Sequence[int], *, on_progress=None, followups: bool = True,
                  lanes=None) -> list[RunOutcome]:
    """Execute a cycle of runs in the order given (``dispatch_due`` gives sync-priority order), then the hub
    follow-ups: a connection that started before another run finished writing ERP changes into the CRM (or did not
    run at all) gets a follow-up sync when some of its linked records now have changes to take — so a change pulled
    from one ERP reaches the other connections in the same cycle. After a Resync from ERP connection the other
    connections get a one-way resync of the records it changed.

    Without ``lanes`` (the command line, tests) the runs execute one after the other in this thread. With lanes
    (the scheduler: ``lanes.submit(connection_id, function) -> Future | None``, one lane per connection) they are
    started in that order, each in its connection's lane, and run side by side: a slow connection holds up only
    itself. A connection whose lane is still busy (its previous run has not let go) is skipped for this cycle —
    its run stays queued and the dispatcher hands it out again later (outcome status ``skipped``)."""
    if lanes is None:
        outcomes = [execute_run(run_id, on_progress=on_progress) for run_id in run_ids]
    else:
        outcomes = _in_lanes(list(run_ids), lanes, on_progress)
    if followups:
        outcomes += run_followups(outcomes, on_progress, lanes=lanes)
    return outcomes


def _in_lanes(run_ids: list[int], lanes, on_progress) -> list[RunOutcome]:
    """Start every run in its connection's lane, in the order given, and wait for them all."""
    connection_of = dict(db.session.execute(select(SyncRun.id, SyncRun.connection_id)
                                            .where(SyncRun.id.in_(run_ids))).all()) if run_ids else {}
    db.session.commit()
    started: list[tuple[int, int | None, object]] = []
    for run_id in run_ids:
        connection_id = connection_of.get(run_id)
        if connection_id is None:
            started.append((run_id, None, RunOutcome(run_id, status="missing", message="There is no such run.")))
            continue
        future = lanes.submit(connection_id, partial(execute_run, run_id, on_progress=on_progress))
        if future is None:
            log.debug("sync run %s waits: connection %s is still busy with its previous run", run_id, connection_id)
            future = RunOutcome(run_id, connection_id, status="skipped",
                                message="The connection's previous run is still going; this run stays queued.")
        started.append((run_id, connection_id, future))
    outcomes = []
    for run_id, connection_id, future in started:
        if isinstance(future, RunOutcome):
            outcomes.append(future)
            continue
        try:
            outcomes.append(future.result())
        except CancelledError:  # the lane job never started (the scheduler stopped): the run stays queued
            outcomes.append(RunOutcome(run_id, connection_id, status="skipped",
                                       message="The scheduler stopped before the run started; it stays queued."))
        except Exception:  # the lane crashed outside execute_run (which never raises for a run's own failure)
            log.exception("sync run %s crashed in its lane", run_id)
            text = "The sync job crashed; details are in the server log."
            runs.mark_failed(run_id, text)
            outcomes.append(RunOutcome(run_id, connection_id, status=RunStatus.FAILED, message=text, error=text))
    return outcomes


def run_followups(outcomes: list[RunOutcome], on_progress=None, *, lanes=None) -> list[RunOutcome]:
    """The hub follow-ups of a cycle (see ``execute_cycle``); returns their outcomes.

    A connection needs one when a run of another connection wrote into the CRM and finished after this
    connection's (latest) run of the cycle started — its CRM pass only reads records saved before it started — or
    when it did not run in the cycle. Run one after the other this is "every connection that ran before the
    writer"; run side by side (lanes) it also covers runs that overlapped. Then only if it has pending CRM changes
    (or, after a Resync from ERP connection, as a one-way resync of what that resync changed)."""
    writers = [o for o in outcomes if o.wrote_crm and o.connection_id]
    if not writers:
        return []
    finished = dict(db.session.execute(select(SyncRun.id, SyncRun.finished_at)
                                       .where(SyncRun.id.in_([o.run_id for o in writers]))).all())
    now = utcnow()
    started: dict[int, datetime] = {}
    for o in outcomes:
        if o.connection_id and o.started_at is not None:
            started[o.connection_id] = max(started.get(o.connection_id, o.started_at), o.started_at)
    requests: list[tuple[int, str, dict]] = []
    for connection in runs.syncable_connections():
        since = started.get(connection.id)
        after = [o for o in writers if o.connection_id != connection.id
                 and (since is None or (finished.get(o.run_id) or now) >= since)]
        if not after:
            continue
        resync = [o for o in after if o.kind == RunKind.RESYNC_FROM_ERP and o.started_at is not None]
        if resync:
            since = min(o.started_at for o in resync)
            requests.append((connection.id, RunKind.RESYNC_FROM_CRM,
                             {"since": since.isoformat(), "source_run_id": resync[0].run_id,
                              "no_blank": bool(_run_option(resync[0].run_id, "no_blank"))}))
        elif pending_crm_changes(connection.id):
            requests.append((connection.id, RunKind.SYNC, {}))
    created = []
    for connection_id, kind, options in requests:
        try:
            run, made = runs.request_run(connection_id, kind=kind, trigger="hub", requested_by="hub",
                                         options=options, own=True)
        except runs.RunError:
            continue
        if made:
            created.append(run.id)
    if lanes is not None:
        return _in_lanes(created, lanes, on_progress)
    return [execute_run(run_id, on_progress=on_progress) for run_id in created]


def _run_option(run_id: int, name: str):
    run = db.session.get(SyncRun, run_id)
    value = (run.options or {}).get(name) if run is not None else None
    db.session.commit()
    return value


# ------------------------------------------------------------------------------------------ Sync now


def sync_record(link_id: int, *, requested_by=None, no_blank: bool = False) -> RecordSyncResult:
    """"Sync now" on one linked record, synchronously in the calling request.

    Creates a run (kind ``record``, trigger ``user``) holding the connection's one-active-run lock; raises
    ``runs.RunBusy`` (readable message) when another run is active on the connection and ``runs.RunRefused`` when
    the record is not linked or the connection is not active. Connector failures do not raise: the result has
    ``ok=False`` and the connector's explanation in ``message``. When ERP values were written into the CRM, the
    other connections linked to the record get a follow-up sync (the CRM is the hub).
    """
    link = db.session.get(Link, link_id)
    if link is None:
        db.session.commit()
        raise runs.RunRefused("This record is not linked to an ERP actor (any more).")
    connection_id = link.connection_id
    crm_type, crm_id = link.crm_type, link.crm_id
    run, created = runs.request_run(connection_id, kind=RunKind.RECORD, trigger="user", requested_by=requested_by,
                                    options={"link_id": link_id, "no_blank": bool(no_blank)})
    if not created:
        raise runs.RunBusy(runs.describe_busy(run), run.id)
    run_id = run.id
    outcome = execute_run(run_id)
    detail = outcome.detail or RecordDetail()
    broken = detail.outcome == "broken" or detail.outcome == "still_broken"
    name = db.session.get(Connection, connection_id).name
    if outcome.status == RunStatus.FAILED:
        message, ok = outcome.error or outcome.message, False
    elif broken:
        message = (f"{name} no longer has this record's ERP actor (deleted in the ERP?). The link is marked broken; "
                   "the CRM record is kept.")
        ok = False
    elif detail.outcome == "deferred":
        message, ok = "The record changed while it was being synced; nothing was lost — sync it again.", False
    elif detail.outcome == "gone":
        message, ok = "The record or its link was removed while it was being synced.", False
    elif detail.errors:
        message, ok = "Some fields could not be synced: " + "; ".join(detail.errors), False
    elif not (detail.to_crm or detail.to_erp):
        message, ok = "Nothing to sync: both sides already agree.", True
        if detail.skipped_blank:
            message = ("Nothing written: blank values were not allowed to overwrite "
                       + ", ".join(detail.skipped_blank) + ".")
    else:
        parts = []
        if detail.to_crm:
            parts.append(f"{plural(len(detail.to_crm), 'field')} updated in the CRM")
        if detail.to_erp:
            parts.append(f"{plural(len(detail.to_erp), 'field')} updated in {name}")
        if detail.conflicts:
            parts.append(f"{plural(len(detail.conflicts), 'conflict')} settled")
        message, ok = "Synced: " + ", ".join(parts) + ".", True
    db.session.commit()
    if outcome.wrote_crm:
        others = db.session.scalars(select(Link.connection_id).where(
            Link.crm_type == crm_type, Link.crm_id == crm_id, Link.connection_id != connection_id,
            Link.status == LinkStatus.OK)).all()
        queued = []
        for other in others:
            try:
                follow, made = runs.request_run(other, kind=RunKind.SYNC, trigger="hub", requested_by="hub")
            except runs.RunError:
                continue
            if made:
                queued.append(follow.id)
        for run_id in queued:  # each with its own hub follow-ups, as the scheduler runs them
            runs.submit([run_id])
    return RecordSyncResult(run_id=run_id, to_crm=detail.to_crm, to_erp=detail.to_erp, conflicts=detail.conflicts,
                            message=message, ok=ok, warning=outcome.warning, errors=detail.errors, broken=broken)


__all__ = ["ChangeLine", "ConflictLine", "RecordSyncResult", "RunOutcome", "execute_cycle", "execute_run",
           "pending_crm_changes", "register_kind", "run_followups", "stamp_key", "sync_record"]

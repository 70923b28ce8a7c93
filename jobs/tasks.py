"""Scheduler jobs: module-level functions taking ids, each in its own app context, calling services only.

The clock jobs (dispatch, reap, alerts, pruning, checkpoint) do nothing outside the scheduler leader
(``jobs/leader.py``); the run jobs (cycles, lanes) run in whichever process was handed the runs."""

from __future__ import annotations

import logging

from jobs.scheduler import current_app_for_jobs, is_leader, lanes, submit_cycle

log = logging.getLogger(__name__)


def _in_context(function, *args):
    app = current_app_for_jobs()
    if app is None:
        return None
    from portal.extensions import db

    with app.app_context():
        try:
            return function(*args)
        except Exception:
            db.session.rollback()
            log.exception("job %s failed", getattr(function, "__name__", function))
            return None


def dispatch_due_syncs() -> None:
    """Queue the periodic sync when due, and start queued runs nothing is executing — as one cycle, in
    sync-priority order (portal.services.sync.engine.execute_cycle); then the reconciles whose slot has come."""
    from portal.services.sync import runs

    if not is_leader():
        return
    queued = _in_context(runs.dispatch_due) or []
    if queued:
        submit_cycle(queued)
    dispatch_due_reconciles()


def dispatch_due_reconciles() -> None:
    """Queue the scheduled reconcile of every connection whose slot has come (portal.services.sync.reconcile) and
    run them as a cycle of their own (with the hub follow-ups of what they wrote into the CRM): a long reconcile
    does not hold up the next sync cycle of the other connections."""
    from portal.services.sync import reconcile

    queued = _in_context(reconcile.dispatch_due) or []
    if queued:
        submit_cycle(queued)


def run_cycle(run_ids: list[int]) -> None:
    """A cycle: each run in its connection's lane, in the order given, then the hub follow-ups."""
    from portal.services.sync import engine

    app = current_app_for_jobs()
    if app is None:
        return
    with app.app_context():
        from portal.extensions import db

        try:
            engine.execute_cycle(list(run_ids), lanes=lanes())
        except Exception:  # runs already in their lanes finish there; queued ones are handed out again
            db.session.rollback()
            log.exception("sync cycle %s crashed", run_ids)


def run_in_lane(function, future=None):
    """A connection's lane job (jobs.scheduler.Lanes): ``function()`` — one run — in an app context of its own;
    nothing when its Future was cancelled before the job started (the scheduler shut down)."""
    if future is not None and not future.set_running_or_notify_cancel():
        return None
    app = current_app_for_jobs()
    if app is None:
        raise RuntimeError("no app for the scheduler's jobs")
    with app.app_context():
        return function()


def reap_stale_runs() -> None:
    from portal.services.sync import runs

    if is_leader():
        _in_context(runs.reap_stale)


def send_alerts() -> None:
    from portal.services import alerts

    if is_leader():
        _in_context(alerts.evaluate)


def prune_sync_log() -> None:
    from portal.services.sync import runs

    if is_leader():
        _in_context(runs.prune_log)


def prune_rate_limits() -> None:
    """Delete rate-limit counters whose window ended (the database:// storage; nothing to do otherwise)."""
    if is_leader():
        _in_context(_prune_rate_limits)


def _prune_rate_limits() -> int:
    from flask import current_app

    from portal.security import limit_storage

    if not str(current_app.config.get("RATELIMIT_STORAGE_URI") or "").startswith(limit_storage.SCHEME + "://"):
        return 0
    return limit_storage.prune()


def checkpoint_database() -> None:
    """SQLite: move the write-ahead log into the database file in the background (see portal.database)."""
    if is_leader():
        _in_context(_checkpoint)


def _checkpoint() -> None:
    from portal.database import checkpoint_wal
    from portal.extensions import db

    checkpoint_wal(db.engine)

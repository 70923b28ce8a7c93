"""Scheduler jobs: module-level functions taking ids, each in its own app context, calling services only."""

from __future__ import annotations

import logging

from jobs.scheduler import current_app_for_jobs, submit_run

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
    """Queue the periodic sync when due, and start queued runs nothing is executing."""
    from portal.services.sync import runs

    queued = _in_context(runs.dispatch_due) or []
    for run_id in queued:
        submit_run(run_id)


def run_sync(run_id: int) -> None:
    from portal.services.sync import engine

    _in_context(engine.execute_run, run_id)


def reap_stale_runs() -> None:
    from portal.services.sync import runs

    _in_context(runs.reap_stale)


def prune_sync_log() -> None:
    from portal.services.sync import runs

    _in_context(runs.prune_log)

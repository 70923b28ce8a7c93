"""APScheduler 3.x as the clock of the web process.

Guards (style-and-reliability.md §4.3): never under tests, never when PORTAL_SCHEDULER=off, never in the
debug reloader's parent, and never in a second process (a non-blocking file lock in instance/).
"""

from __future__ import annotations

import atexit
import fcntl
import logging
import os
from pathlib import Path

from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_MAX_INSTANCES, EVENT_JOB_MISSED
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler

from portal.database import CHECKPOINT_SECONDS
from portal.services.sync import runs

log = logging.getLogger(__name__)

_state: dict = {"app": None, "scheduler": None, "lock": None}

DISPATCH_SECONDS = 15
REAP_SECONDS = 60
PRUNE_SECONDS = 6 * 3600


def current_app_for_jobs():
    """The app captured by start_scheduler(); jobs push their own app context from it."""
    return _state["app"]


def scheduler() -> BackgroundScheduler | None:
    return _state["scheduler"]


def _take_lock(instance_path: str):
    path = Path(instance_path) / "scheduler.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a+")  # noqa: SIM115 - kept open for the life of the process: closing releases the lock
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.seek(0)
        owner = handle.read().strip() or "?"
        handle.close()
        log.info("scheduler active in pid %s; this process will only enqueue", owner)
        return None
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    return handle


def build_scheduler() -> BackgroundScheduler:
    sched = BackgroundScheduler(
        timezone="UTC",
        executors={"default": ThreadPoolExecutor(4), "sync": ThreadPoolExecutor(2)},
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 60},
    )

    def _on_event(event):
        log.warning("scheduler job %s: %s", event.job_id, getattr(event, "exception", None) or event.code)

    sched.add_listener(_on_event, EVENT_JOB_ERROR | EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES)
    return sched


def start_scheduler(app) -> BackgroundScheduler | None:
    if app.testing or not app.config.get("SCHEDULER", True):
        return None
    import click

    context = click.get_current_context(silent=True)
    if context is not None and context.info_name != "run":
        return None  # a CLI command (init, erp sync, …) loaded wsgi.py: it must not start background jobs
    if app.debug:
        from werkzeug.serving import is_running_from_reloader

        if not is_running_from_reloader():
            return None
    if _state["scheduler"] is not None:
        return _state["scheduler"]
    lock = _take_lock(app.instance_path)
    if lock is None:
        return None
    from jobs import tasks

    _state.update(app=app, lock=lock)
    sched = build_scheduler()
    sched.add_job(tasks.dispatch_due_syncs, "interval",
                  seconds=app.config.get("SCHEDULER_DISPATCH_SECONDS", DISPATCH_SECONDS), id="dispatch-due-syncs",
                  replace_existing=True)
    sched.add_job(tasks.reap_stale_runs, "interval", seconds=REAP_SECONDS, id="reap-stale-runs",
                  replace_existing=True)
    sched.add_job(tasks.prune_sync_log, "interval", seconds=PRUNE_SECONDS, id="prune-sync-log",
                  replace_existing=True)
    sched.add_job(tasks.checkpoint_database, "interval", seconds=CHECKPOINT_SECONDS, id="checkpoint-database",
                  replace_existing=True)
    sched.start()
    _state["scheduler"] = sched
    runs.set_submitter(submit_cycle)  # services hand runs to this scheduler without importing jobs
    atexit.register(lambda: sched.shutdown(wait=False) if sched.running else None)
    log.info("scheduler started in pid %s", os.getpid())
    return sched


def submit_run(run_id: int) -> bool:
    """Run a queued sync (and its hub follow-ups) now if this process owns the scheduler; else the dispatcher
    sweep picks it up."""
    return submit_cycle([run_id])


def submit_cycle(run_ids: list[int]) -> bool:
    """Run queued syncs one after the other in the order given (sync priority), then the hub follow-ups, in one
    job — so a change pulled from one ERP reaches the other connections in the same cycle. False without a
    scheduler in this process (then the dispatcher sweep of the process that has one picks the runs up)."""
    run_ids = [int(run_id) for run_id in run_ids]
    if not run_ids:
        return False
    sched = _state["scheduler"]
    if sched is None:
        return False
    from jobs import tasks

    sched.add_job(tasks.run_cycle, args=[run_ids], id=f"sync-cycle-{run_ids[0]}", executor="sync",
                  misfire_grace_time=None, replace_existing=True)
    return True

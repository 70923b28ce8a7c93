"""APScheduler 3.x as the clock of the web process.

Guards (style-and-reliability.md §4.3): never under tests, never when PORTAL_SCHEDULER=off, never in the
debug reloader's parent.

Several processes (issue #19, ``jobs/leader.py``): every web process runs a scheduler, so the runs it queues
(Sync now …) start at once in its own lanes, claimed with a conditional UPDATE — one process executes a run,
whichever hands it out. The **clock jobs** (periodic dispatch and its sweep of stale queued runs, reaper, alerts,
pruning, WAL checkpoint) do their work only in the **leader**: the holder of a PostgreSQL advisory lock, or on SQLite
of the file lock in instance/ (as before). Non-leaders try again every ``PORTAL_SCHEDULER_LEADER_RETRY`` seconds.

Bulkheads (docs/sync-engine.md §2, "Scheduling"): a cycle of runs is one coordinating job (executor ``cycles``)
that starts each run in its connection's **lane** — a job ``sync-connection-<id>`` (``max_instances=1``) on the
``sync`` executor, a pool of ``SYNC_WORKERS`` threads — in sync-priority order, waits for them and then starts
the hub follow-ups the same way. A connection whose lane is still busy is skipped (its run stays queued and is
handed out again by the dispatcher), so one slow or hanging connection holds one thread, never the others.
"""

from __future__ import annotations

import atexit
import itertools
import logging
import os
import threading
from concurrent.futures import Future
from datetime import UTC, datetime

from apscheduler.events import (
    EVENT_JOB_ERROR,
    EVENT_JOB_EXECUTED,
    EVENT_JOB_MAX_INSTANCES,
    EVENT_JOB_MISSED,
    EVENT_SCHEDULER_SHUTDOWN,
)
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler

from jobs import leader as leadership_module
from portal.database import CHECKPOINT_SECONDS
from portal.services.sync import runs

log = logging.getLogger(__name__)

_state: dict = {"app": None, "scheduler": None, "lock": None, "lanes": None}

DISPATCH_SECONDS = 15
REAP_SECONDS = 60
PRUNE_SECONDS = 6 * 3600
PRUNE_LIMITS_SECONDS = 600  # expired rate-limit counters (database:// storage)
ALERT_SECONDS = 60
SYNC_WORKERS = 4  # threads of the ``sync`` executor: connections that can sync side by side (config SYNC_WORKERS)
LANE_PREFIX = "sync-connection-"
_cycle_numbers = itertools.count(1)


def current_app_for_jobs():
    """The app captured by start_scheduler(); jobs push their own app context from it."""
    return _state["app"]


def scheduler() -> BackgroundScheduler | None:
    return _state["scheduler"]


def is_leader() -> bool:
    """Whether this process runs the clock jobs: it holds the leadership (``jobs/leader.py``). A process state
    without an elector (a test driving the jobs directly) counts as the leader."""
    elector = _state.get("lock")
    return True if elector is None else bool(getattr(elector, "leader", True))


def _on_leadership(leading: bool) -> None:
    """Just became the leader: dispatch and reap now rather than at the jobs' next tick, so a takeover is quick."""
    sched = _state.get("scheduler")
    if not leading or sched is None or not sched.running:
        return
    now = datetime.now(UTC)
    for job_id in ("reap-stale-runs", "dispatch-due-syncs"):
        job = sched.get_job(job_id)
        if job is not None:
            job.modify(next_run_time=now)


def lanes() -> Lanes | None:
    return _state.get("lanes")


class Lanes:
    """One lane per connection: ``submit(connection_id, function)`` runs ``function()`` in an app context as the
    job ``sync-connection-<id>`` on the ``sync`` executor and returns a Future of its result — or None, without
    submitting anything, while that connection's previous lane job has not finished (so APScheduler's
    ``max_instances`` is never reached). The lane is released, and the Future resolved, from the scheduler's event
    listener, i.e. after APScheduler counted the job instance as finished: a follow-up can be submitted to the same
    lane as soon as the Future is done. A lane job that never started (the scheduler shut down, or APScheduler did
    not run it) has its Future cancelled: the coordinator leaves that run queued, and never waits forever."""

    def __init__(self, sched: BackgroundScheduler) -> None:
        self._sched = sched
        self._lock = threading.Lock()
        self._busy: dict[int, Future] = {}
        sched.add_listener(self._on_event, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR | EVENT_JOB_MISSED
                           | EVENT_JOB_MAX_INSTANCES)
        sched.add_listener(self._on_shutdown, EVENT_SCHEDULER_SHUTDOWN)

    def busy(self) -> set[int]:
        with self._lock:
            return set(self._busy)

    def submit(self, connection_id: int, function) -> Future | None:
        from jobs import tasks

        connection_id = int(connection_id)
        future: Future = Future()
        with self._lock:
            if connection_id in self._busy:
                return None
            self._busy[connection_id] = future
        try:
            self._sched.add_job(tasks.run_in_lane, args=[function, future], id=f"{LANE_PREFIX}{connection_id}",
                                executor="sync", max_instances=1, coalesce=True, misfire_grace_time=None,
                                replace_existing=True)
        except BaseException:
            with self._lock:
                self._busy.pop(connection_id, None)
            raise
        return future

    def _on_event(self, event) -> None:
        job_id = str(getattr(event, "job_id", "") or "")
        if not job_id.startswith(LANE_PREFIX):
            return
        with self._lock:
            future = self._busy.pop(int(job_id[len(LANE_PREFIX):]), None)
        if future is None or future.done():
            return
        if event.code == EVENT_JOB_EXECUTED:
            future.set_result(event.retval)
        elif event.code == EVENT_JOB_ERROR:
            future.set_exception(getattr(event, "exception", None) or RuntimeError(f"the job {job_id} failed"))
        elif not future.cancel():  # missed / max instances: it never ran
            future.set_exception(RuntimeError(f"the job {job_id} did not run (event {event.code})"))

    def _on_shutdown(self, _event) -> None:
        """Lane jobs that have not started will not run: their runs stay queued (the next process hands them out)."""
        with self._lock:
            waiting = {cid: future for cid, future in self._busy.items() if future.cancel()}
            for cid in waiting:
                self._busy.pop(cid, None)


def build_scheduler(workers: int | None = None) -> BackgroundScheduler:
    """The scheduler and its executors; ``workers`` (default: the app's ``SYNC_WORKERS``, else 4) threads for the
    lanes and as many for the cycles."""
    if workers is None:
        app = _state.get("app")
        workers = app.config.get("SYNC_WORKERS", SYNC_WORKERS) if app is not None else SYNC_WORKERS
    workers = max(1, int(workers))
    sched = BackgroundScheduler(
        timezone="UTC",
        executors={"default": ThreadPoolExecutor(4), "cycles": ThreadPoolExecutor(workers),
                   "sync": ThreadPoolExecutor(workers)},
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
    from jobs import tasks

    elector = leadership_module.Elector(leadership_module.for_app(app), leadership_module.retry_seconds(app),
                                        on_change=_on_leadership)
    if not elector.tick():
        log.info("scheduler in pid %s: not the leader (%s held elsewhere); it runs the runs it queues and tries "
                 "again every %s s", os.getpid(), elector.leadership.describe(), elector.every)
    _state.update(app=app, lock=elector)
    sched = build_scheduler()
    _state["lanes"] = Lanes(sched)
    sched.add_job(tasks.dispatch_due_syncs, "interval",
                  seconds=app.config.get("SCHEDULER_DISPATCH_SECONDS", DISPATCH_SECONDS), id="dispatch-due-syncs",
                  replace_existing=True)
    sched.add_job(tasks.reap_stale_runs, "interval", seconds=REAP_SECONDS, id="reap-stale-runs",
                  replace_existing=True)
    sched.add_job(tasks.send_alerts, "interval", seconds=ALERT_SECONDS, id="send-alerts", replace_existing=True)
    sched.add_job(tasks.prune_sync_log, "interval", seconds=PRUNE_SECONDS, id="prune-sync-log",
                  replace_existing=True)
    sched.add_job(tasks.checkpoint_database, "interval", seconds=CHECKPOINT_SECONDS, id="checkpoint-database",
                  replace_existing=True)
    sched.add_job(tasks.prune_rate_limits, "interval", seconds=PRUNE_LIMITS_SECONDS, id="prune-rate-limits",
                  replace_existing=True)
    sched.start()
    _state["scheduler"] = sched
    elector.start()
    runs.set_submitter(submit_cycle)  # services hand runs to this scheduler without importing jobs
    atexit.register(_stop, sched, elector)
    log.info("scheduler started in pid %s (%s)", os.getpid(), "leader" if elector.leader else "not the leader")
    return sched


def _stop(sched: BackgroundScheduler, elector) -> None:
    if sched.running:
        sched.shutdown(wait=False)
    elector.close()  # hand leadership over at once rather than when the connection drops


def submit_run(run_id: int) -> bool:
    """Run a queued sync (and its hub follow-ups) now in this process's scheduler (leader or not); without one the
    leader's dispatcher sweep picks it up."""
    return submit_cycle([run_id])


def submit_cycle(run_ids: list[int]) -> bool:
    """Run queued syncs as a cycle: started in the order given (sync priority), each in its connection's lane,
    then the hub follow-ups — so a change pulled from one ERP reaches the other connections in the same cycle
    (``engine.execute_cycle``). Every process with a scheduler executes the runs it queues, leader or not: each run
    is claimed by a conditional UPDATE, so it runs once. False without a scheduler in this process (then the
    leader's dispatcher sweep picks the runs up once they are ``runs.STALE_QUEUED_SECONDS`` old)."""
    run_ids = [int(run_id) for run_id in run_ids]
    if not run_ids:
        return False
    sched = _state["scheduler"]
    if sched is None:
        return False
    from jobs import tasks

    # a job id of its own per cycle: a cycle still waiting on a slow lane never blocks the next one
    sched.add_job(tasks.run_cycle, args=[run_ids], id=f"sync-cycle-{next(_cycle_numbers)}-{run_ids[0]}",
                  executor="cycles", misfire_grace_time=None, replace_existing=True)
    return True

"""Who runs a sync — the owner of a run (``SyncRun.worker``), whether that process still exists — and the reaper
that fails the runs nobody executes any more (docs/sync-engine.md §2, "Reaper").

A run claimed by a process records ``"host:pid/pid-namespace"``. The pid namespace (Linux: the inode of
``/proc/self/ns/pid``) tells two containers that share a host name apart: a pid is only looked up when host name
*and* namespace are this process's own, so a live run in another container is never mistaken for a dead one. A
run owned elsewhere (another host or container) cannot be checked: it is reaped after the lease, as before.

A pid that was reused by an unrelated process makes a dead owner look alive: the run is then reaped after the
lease, too. Nothing here can mistake a live owner for a dead one.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache

from sqlalchemy import or_, select, update

from portal.database import utcnow
from portal.extensions import db
from portal.models import ACTIVE_RUN_STATUSES, RunStatus, SyncRun

log = logging.getLogger(__name__)

LEASE_SECONDS = 300  # a running run whose heartbeat is older than this is abandoned (runs.LEASE_SECONDS)


@cache
def _space() -> str:
    try:
        link = os.readlink("/proc/self/ns/pid")  # "pid:[4026531836]"
    except OSError:
        return ""
    match = re.search(r"\[(\d+)\]", link)
    return match.group(1) if match else ""


@cache
def _host() -> str:
    return (socket.gethostname() or "localhost").replace(":", "_")[:180]


def this_worker() -> str:
    """This process as a run's owner: ``"host:pid/namespace"`` (the pid is read each time: a fork changes it)."""
    return f"{_host()}:{os.getpid()}/{_space()}"


def parse(worker: str | None) -> tuple[str, int, str] | None:
    """(host, pid, namespace) of a worker string, or None when it is not one."""
    match = re.fullmatch(r"(.+):(\d+)/(\d*)", worker or "")
    return (match.group(1), int(match.group(2)), match.group(3)) if match else None


def label(worker: str | None) -> str:
    """``host:pid`` for people (the namespace left out)."""
    parts = parse(worker)
    return f"{parts[0]}:{parts[1]}" if parts else (worker or "")


def pid_of(worker: str | None) -> int | None:
    parts = parse(worker)
    return parts[1] if parts else None


def is_local(worker: str | None) -> bool:
    """True when the owner's pid can be looked up from this process (same host name, same pid namespace)."""
    parts = parse(worker)
    return parts is not None and parts[0] == _host() and parts[2] == _space()


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists on this host (a zombie — dead, not yet waited for — does not)."""
    if pid <= 0:
        return True  # not a real pid: never call it dead
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it exists, owned by another user
        return True
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            state = handle.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state not in ("Z", "X")


def owner_gone(worker: str | None) -> bool:
    """True only when the owner is provably gone: on this host, in this pid namespace, and its pid is free."""
    if not is_local(worker):
        return False
    pid = pid_of(worker)
    return pid is not None and not pid_alive(pid)


# ------------------------------------------------------------------------------------------------ the reaper


@dataclass
class Reaped:
    """A run the reaper failed, and why (its ``error``)."""

    run_id: int
    connection_id: int
    was: str  # its status before: running, or queued (a queued run whose owner is gone)
    error: str


def _stale_condition(cutoff: datetime):
    return or_(SyncRun.heartbeat_at < cutoff, SyncRun.heartbeat_at.is_(None) & (SyncRun.started_at < cutoff))


def _fail_if(run_id: int, error: str, now: datetime, *conditions) -> bool:
    result = db.session.execute(
        update(SyncRun).where(SyncRun.id == run_id, *conditions)
        .values(status=RunStatus.FAILED, finished_at=now, error=error[:4000])
        .execution_options(synchronize_session=False))
    return result.rowcount == 1


def reap_abandoned(now: datetime | None = None, lease_seconds: int = LEASE_SECONDS) -> list[Reaped]:
    """Fail the runs nobody executes any more; returns them. Two cases, each a conditional UPDATE per run (safe to
    run in several processes at once: a run is reaped once):

    * **owner gone** (at once): an active run whose owner (``worker``) is a process on this host that no longer
      exists — a killed ``erp sync``, a crashed web process. Running: "Abandoned: the process running it (pid N) is
      gone"; queued by a process that meant to run it itself: "Cancelled: …".
    * **lease** (as before): a running run whose heartbeat is older than the lease — its process died on another
      host, or hangs.

    Their work is redone by the next run: cursors only move after the changes they cover were applied, and every
    record is written to the CRM together with its link in one transaction.
    """
    now = now or utcnow()
    reaped: list[Reaped] = []
    owned = db.session.execute(select(SyncRun.id, SyncRun.connection_id, SyncRun.status, SyncRun.worker).where(
        SyncRun.status.in_(ACTIVE_RUN_STATUSES), SyncRun.worker.is_not(None))).all()
    for run_id, connection_id, status, worker in owned:
        if not owner_gone(worker):
            continue
        pid = pid_of(worker)
        error = (f"Abandoned: the process running it (pid {pid}) is gone. The next run completes the work."
                 if status == RunStatus.RUNNING else
                 f"Cancelled: the process that queued it (pid {pid}) is gone before it started.")
        if _fail_if(run_id, error, now, SyncRun.status == status, SyncRun.worker == worker):
            reaped.append(Reaped(run_id, connection_id, str(status), error))
    cutoff = now - timedelta(seconds=lease_seconds)
    error = (f"Abandoned: no sign of life for more than {lease_seconds // 60 or 1} minute(s) (the process running "
             "it stopped). The next run completes the work.")
    stale = db.session.execute(select(SyncRun.id, SyncRun.connection_id).where(
        SyncRun.status == RunStatus.RUNNING, _stale_condition(cutoff))).all()
    for run_id, connection_id in stale:
        if _fail_if(run_id, error, now, SyncRun.status == RunStatus.RUNNING, _stale_condition(cutoff)):
            reaped.append(Reaped(run_id, connection_id, RunStatus.RUNNING, error))
    db.session.commit()
    if reaped:
        log.warning("reaped %d abandoned sync run(s): %s", len(reaped), ", ".join(f"#{r.run_id}" for r in reaped))
    return reaped


def staleness(run: SyncRun, now: datetime | None = None, lease_seconds: int = LEASE_SECONDS) -> str | None:
    """Why a running run looks abandoned ("heartbeat 7 min 3 s ago; its process (host:4242) is gone"), or None
    when it does not: its heartbeat is older than the lease, or its owner on this host is gone."""
    if run.status != RunStatus.RUNNING:
        return None
    now = now or utcnow()
    beat = run.heartbeat_at or run.started_at
    age = (now - beat).total_seconds() if beat is not None else None
    gone = owner_gone(run.worker)
    if not gone and (age is None or age <= lease_seconds):
        return None
    parts = [f"heartbeat {age_text(age)} ago" if age is not None else "no heartbeat"]
    if gone:
        parts.append(f"its process ({label(run.worker)}) is gone")
    return "; ".join(parts)


def age_text(seconds: float) -> str:
    """A duration for people: "45 s", "7 min 3 s", "2 h 5 min"."""
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def cancel_owned(run_ids, error: str) -> list[int]:
    """Fail the active runs this process owns (``worker``) or requested (``run_ids``): a command that is
    interrupted never leaves a queued or running run behind. Best effort on a session the interruption may have
    left in the middle of anything: it is thrown away first. Returns the ids failed."""
    with contextlib.suppress(Exception):  # the connection itself may be broken: a new session takes another one
        db.session.rollback()
    db.session.remove()
    ids = [int(run_id) for run_id in run_ids]
    condition = SyncRun.worker == this_worker()
    if ids:
        condition = or_(condition, SyncRun.id.in_(ids))
    try:
        mine = db.session.scalars(select(SyncRun.id).where(SyncRun.status.in_(ACTIVE_RUN_STATUSES), condition)).all()
        done = [run_id for run_id in mine
                if _fail_if(run_id, error, utcnow(), SyncRun.status.in_(ACTIVE_RUN_STATUSES))]
        db.session.commit()
    except Exception:  # the reaper is the backstop: this process is about to exit, so its runs are reaped at once
        db.session.rollback()
        log.exception("could not cancel the runs of this process")
        return []
    return done

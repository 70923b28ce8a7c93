"""Which process runs the scheduler's clock: one leader among every process and host on one database.

Every web process runs a scheduler (``jobs.scheduler``) so it can execute the runs it claims at once — a Sync now
never waits for another process — but the **clock jobs** (the periodic dispatch and its sweep of queued runs
nobody executes, the reaper, alerts, log pruning, the WAL checkpoint) run only in the **leader**:

* **PostgreSQL** — :class:`AdvisoryLock`: the process holding the session-level advisory lock
  ``pg_try_advisory_lock(LOCK_KEY)`` on a connection of its own, kept open for as long as it leads. A process that
  dies (SIGKILL included) or loses its connection loses the lock with it — PostgreSQL releases a session lock when
  the session ends — and another process takes it at its next attempt, every ``PORTAL_SCHEDULER_LEADER_RETRY``
  seconds (5; at most 60, the shortest sync interval). The leader checks its connection as often and steps down
  when it broke. The connection's ``application_name`` is ``portal-scheduler <pid>@<host>``, so
  :func:`current_leader` (and ``pg_stat_activity``) tell which process leads.
* **SQLite** — :class:`FileLock`: today's non-blocking ``flock`` on ``instance/scheduler.lock`` (one host), now
  retried as well, so a second process on the host takes over when the first one exits.

Overlap is harmless: for at most one retry period after a partition two processes may both believe they lead, and
every clock job is a conditional UPDATE (the dispatcher takes a due slot once, the reaper fails a run once, claims
hand a run to one worker), so nothing runs twice.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import socket
import threading
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger(__name__)

# pg_try_advisory_lock(bigint): "ERPSYNC" + 1 — fixed, so every process and host of one database agrees on it.
LOCK_KEY = 0x4552505359_4E4301
APPLICATION_PREFIX = "portal-scheduler"
RETRY_SECONDS = 5
MAX_RETRY_SECONDS = 60  # the shortest sync interval: a dead leader is replaced within one interval


def application_name(pid: int | None = None) -> str:
    host = (socket.gethostname() or "localhost")
    return f"{APPLICATION_PREFIX} {pid or os.getpid()}@{host}"[:63]


def parse_application_name(name: str | None) -> tuple[int, str] | None:
    """(pid, host) of a leader's ``application_name``, or None."""
    if not name or not name.startswith(APPLICATION_PREFIX + " "):
        return None
    pid, _, host = name[len(APPLICATION_PREFIX) + 1:].partition("@")
    return (int(pid), host) if pid.isdigit() else None


class Leadership:
    """Base: ``attempt()`` tries to become (or checks it still is) the leader and returns whether it leads."""

    kind = "none"

    def __init__(self) -> None:
        self.leader = False
        self._guard = threading.Lock()

    def attempt(self) -> bool:  # pragma: no cover - abstract
        raise NotImplementedError

    def release(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def describe(self) -> str:
        return self.kind


class FileLock(Leadership):
    """SQLite, one host: a non-blocking exclusive ``flock`` on ``instance/scheduler.lock``, kept open while leading;
    the file holds the leader's pid."""

    kind = "file lock"

    def __init__(self, instance_path: str) -> None:
        super().__init__()
        self.path = Path(instance_path) / "scheduler.lock"
        self._handle = None

    def attempt(self) -> bool:
        with self._guard:
            if self._handle is not None:
                self.leader = True
                return True
            self.path.parent.mkdir(parents=True, exist_ok=True)
            handle = open(self.path, "a+")  # noqa: SIM115 - kept open while leading: closing releases the lock
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                handle.close()
                self.leader = False
                return False
            handle.seek(0)
            handle.truncate()
            handle.write(str(os.getpid()))
            handle.flush()
            self._handle = handle
            self.leader = True
            return True

    def owner(self) -> str:
        try:
            return self.path.read_text().strip() or "?"
        except OSError:
            return "?"

    def release(self) -> None:
        with self._guard:
            if self._handle is not None:
                with contextlib.suppress(OSError):
                    self._handle.close()
            self._handle = None
            self.leader = False

    def describe(self) -> str:
        return f"file lock {self.path}"


def _conninfo(database_url: str) -> str:
    """A libpq URI for psycopg from the portal's SQLAlchemy URL (``postgresql+psycopg://…``)."""
    from sqlalchemy.engine import make_url

    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)


class AdvisoryLock(Leadership):
    """PostgreSQL, any number of hosts: the session-level advisory lock :data:`LOCK_KEY` on a dedicated autocommit
    connection kept open while leading (TCP keepalives on, so a vanished peer is noticed)."""

    kind = "PostgreSQL advisory lock"

    def __init__(self, database_url: str, key: int = LOCK_KEY, connect: Callable | None = None) -> None:
        super().__init__()
        self.conninfo = _conninfo(database_url)
        self.key = key
        self._connect = connect or self._psycopg_connect
        self._connection = None

    def _psycopg_connect(self):
        import psycopg

        return psycopg.connect(self.conninfo, autocommit=True, application_name=application_name(),
                               connect_timeout=5, keepalives=1, keepalives_idle=10, keepalives_interval=5,
                               keepalives_count=3)

    def _drop(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                connection.close()

    def attempt(self) -> bool:
        with self._guard:
            try:
                if self._connection is None or self._connection.closed:
                    self._connection = None
                    if self.leader:
                        log.warning("scheduler leadership lost in pid %s: its lock connection closed", os.getpid())
                    self.leader = False
                    self._connection = self._connect()
                if self.leader:  # the lock lives as long as the session: check the session is still there
                    self._connection.execute("SELECT 1").fetchone()
                    return True
                row = self._connection.execute("SELECT pg_try_advisory_lock(%s)", (self.key,)).fetchone()
                self.leader = bool(row and row[0])
                return self.leader
            except Exception as exc:  # the database is unreachable or the connection broke: not the leader
                if self.leader:
                    log.warning("scheduler leadership lost in pid %s: %s", os.getpid(), exc)
                else:
                    log.debug("could not try for scheduler leadership: %s", exc)
                self.leader = False
                self._drop()
                return False

    def release(self) -> None:
        with self._guard:
            if self._connection is not None and self.leader:
                with contextlib.suppress(Exception):
                    self._connection.execute("SELECT pg_advisory_unlock(%s)", (self.key,))
            self.leader = False
            self._drop()

    def describe(self) -> str:
        return f"PostgreSQL advisory lock {self.key}"


def for_app(app) -> Leadership:
    """The leadership of ``app``'s database: an advisory lock on PostgreSQL, the file lock otherwise."""
    url = str(app.config.get("SQLALCHEMY_DATABASE_URI") or "")
    if url.startswith("postgresql"):
        return AdvisoryLock(url)
    return FileLock(app.instance_path)


def retry_seconds(app) -> float:
    try:
        value = float(app.config.get("SCHEDULER_LEADER_RETRY", RETRY_SECONDS))
    except (TypeError, ValueError):
        value = RETRY_SECONDS
    return min(max(value, 0.2), MAX_RETRY_SECONDS)


class Elector:
    """The loop that keeps trying for (and keeping) leadership in a daemon thread of its own — not a scheduler job,
    so a busy executor never delays a takeover. ``on_change(leading)`` is called when it changes."""

    def __init__(self, leadership: Leadership, every: float, on_change: Callable[[bool], None] | None = None):
        self.leadership = leadership
        self.every = every
        self.on_change = on_change
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def leader(self) -> bool:
        return self.leadership.leader

    def tick(self) -> bool:
        was = self.leadership.leader
        now = self.leadership.attempt()
        if now != was:
            if now:
                log.info("scheduler leader is now pid %s (%s)", os.getpid(), self.leadership.describe())
            else:
                log.warning("pid %s is no longer the scheduler leader", os.getpid())
            if self.on_change is not None:
                try:
                    self.on_change(now)
                except Exception:
                    log.exception("scheduler leadership change hook failed")
        return now

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._loop, name="scheduler-leadership", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            self.tick()

    def close(self) -> None:
        """Stop trying and give leadership up (the next process takes it at its next attempt)."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=self.every + 5)
        self.leadership.release()


def current_leader(connection) -> tuple[int, str] | None:
    """(pid, host) of the process holding the scheduler's advisory lock on this PostgreSQL database, read from
    ``pg_locks`` and ``pg_stat_activity`` through an SQLAlchemy ``connection``; None when nobody holds it."""
    from sqlalchemy import text

    name = connection.execute(text(
        "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
        "WHERE l.locktype = 'advisory' AND l.granted AND l.database = (SELECT oid FROM pg_database "
        "WHERE datname = current_database()) AND l.classid::bigint = :high AND l.objid::bigint = :low AND l.objsubid = 1"),
        {"high": (LOCK_KEY >> 32) & 0xFFFFFFFF, "low": LOCK_KEY & 0xFFFFFFFF}).scalar()
    return parse_application_name(name)


__all__ = ["AdvisoryLock", "Elector", "FileLock", "LOCK_KEY", "Leadership", "current_leader", "for_app",
           "retry_seconds"]

"""Sync health per connection (the Sync tab's health block): a state, what it rests on, and 14 days of activity.

**States** (:func:`decide`, first that applies):

``paused``
    the connection is inactive, or automatic sync is off (it syncs only when someone asks). Checked first for an
    inactive connection, after the breaker for automatic sync off.
``breaker_open``
    the connection's circuit breaker is open in this process (``connectors.not_answering``): its calls fail at
    once until a probe gets an answer.
``failing``
    the last finished run of the connection failed, or there has been no successful run for
    ``FAILING_INTERVALS`` sync intervals (at least ``MIN_STALE``) while no run is in progress — counted from the last
    successful run, or from the connection's last change when it never had one.
``degraded``
    the last finished run was partial (some records failed, or the connector warned), or records of the connection
    have open sync issues (``sync_issues``: failed records and broken links, ignored ones left out).
``healthy``
    otherwise (also before the first run).

A *run of the connection* is a sync, a resync or a reconcile; Sync now on one record, imports and previews (dry
runs) do not count. A *successful* run is one that succeeded or was partial (it went through; its failed records are
issues).

Everything is read with a few grouped queries for all connections at once; nothing calls a connector. The ERP's
newest change is not known without a call, so the lag is shown as the ERP cursor per actor type and the last
successful feed read; the CRM side as the oldest CRM edit not synced yet.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from enum import StrEnum

from sqlalchemy import and_, case, func, or_, select

from portal.database import utcnow
from portal.extensions import db
from portal.models import (
    ACTIVE_RUN_STATUSES,
    CRM_MODELS,
    Connection,
    Link,
    LinkStatus,
    RunKind,
    RunStatus,
    SyncChange,
    SyncRun,
)
from portal.services import sync_issues

FAILING_INTERVALS = 3
MIN_STALE = timedelta(minutes=15)
CHART_DAYS = 14
CONNECTION_KINDS = (RunKind.SYNC, RunKind.RESYNC_FROM_CRM, RunKind.RESYNC_FROM_ERP, RunKind.RECONCILE)
SUCCESS = (RunStatus.SUCCEEDED, RunStatus.PARTIAL)
FINISHED = (RunStatus.SUCCEEDED, RunStatus.PARTIAL, RunStatus.FAILED)


class State(StrEnum):
    HEALTHY = "healthy"
    DEGRADED = "degraded"
    FAILING = "failing"
    PAUSED = "paused"
    BREAKER_OPEN = "breaker_open"


STATE_LABELS = {State.HEALTHY: "Healthy", State.DEGRADED: "Degraded", State.FAILING: "Failing",
                State.PAUSED: "Paused", State.BREAKER_OPEN: "Not answering"}
STATE_TONES = {State.HEALTHY: "ok", State.DEGRADED: "warning", State.FAILING: "failed", State.PAUSED: "none",
               State.BREAKER_OPEN: "failed"}


@dataclass(frozen=True)
class Facts:
    """What the state of one connection is decided on (plain values: :func:`decide` needs no app)."""

    active: bool
    auto_sync: bool
    interval_seconds: int
    breaker: str = ""  # the open breaker's message, "" when closed
    last_status: str | None = None  # of the last finished run of the connection
    last_error: str = ""
    last_success_at: datetime | None = None
    running: bool = False  # a run of the connection is queued or running
    open_issues: int = 0
    changed_at: datetime | None = None  # the connection's last change (the reference before any successful run)


@dataclass(frozen=True)
class Verdict:
    state: State
    reason: str  # one sentence: why, and what to do

    @property
    def label(self) -> str:
        return STATE_LABELS[self.state]

    @property
    def tone(self) -> str:
        return STATE_TONES[self.state]


def stale_after(interval_seconds: int) -> timedelta:
    """How long without a successful run makes a connection failing."""
    return max(MIN_STALE, timedelta(seconds=max(int(interval_seconds or 0), 1) * FAILING_INTERVALS))


def decide(facts: Facts, now: datetime) -> Verdict:
    """The state of a connection (see the module docstring)."""
    if not facts.active:
        return Verdict(State.PAUSED, "Inactive: it does not sync. Activate it under ERP connections.")
    if facts.breaker:
        return Verdict(State.BREAKER_OPEN, facts.breaker + " Check the ERP and its connector; nothing is lost "
                                           "meanwhile, the next run catches up.")
    if not facts.auto_sync:
        return Verdict(State.PAUSED, "Automatic sync is off: it syncs only when asked (Sync all now, Sync now). "
                                     "Turn automatic sync on above.")
    if facts.last_status == RunStatus.FAILED:
        error = (facts.last_error or "no reason given").strip()
        return Verdict(State.FAILING, f"The last run failed: {error}")
    reference = facts.last_success_at or facts.changed_at
    limit = stale_after(facts.interval_seconds)
    if reference is not None and not facts.running and now - reference > limit:
        since = "no successful run yet" if facts.last_success_at is None else \
            f"no successful run for {ago(now - reference)}"
        return Verdict(State.FAILING, f"{since[0].upper()}{since[1:]} (one is due every "
                                      f"{ago(timedelta(seconds=facts.interval_seconds))}). Is the scheduler running?")
    if facts.last_status == RunStatus.PARTIAL:
        extra = f" {plural(facts.open_issues, 'record')} with open issues." if facts.open_issues else ""
        return Verdict(State.DEGRADED, "The last run was partial: some records failed or the connector warned."
                       + extra)
    if facts.open_issues:
        return Verdict(State.DEGRADED, f"{plural(facts.open_issues, 'record')} with open sync issues: see the "
                                       "issues inbox.")
    if facts.last_success_at is None:
        return Verdict(State.HEALTHY, "No run yet.")
    return Verdict(State.HEALTHY, "The last run succeeded and no record has an open issue.")


def plural(number: int, word: str) -> str:
    return f"{number:,} {word}{'' if number == 1 else 's'}"


def ago(delta: timedelta) -> str:
    """A short duration: "45 s", "12 min", "3 h 5 min", "4 days"."""
    seconds = int(max(delta.total_seconds(), 0))
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{hours // 24} days"


# ------------------------------------------------------------------------------------------------------- chart


SERIES = (("runs", "Runs"), ("failed", "Failed runs"), ("to_crm", "Fields to the CRM"), ("to_erp", "Fields to the ERP"),
          ("conflicts", "Conflicts"), ("errors", "Record errors"))


@dataclass
class Series:
    key: str
    label: str
    values: list[int]

    @property
    def total(self) -> int:
        return sum(self.values)

    @property
    def peak(self) -> int:
        return max(self.values, default=0)


@dataclass
class Chart:
    """Per-day counts of one connection, oldest day first."""

    days: list[date]
    series: list[Series]

    def rows(self) -> list[tuple[date, list[int]]]:
        """(day, the value of every series) per day: the data table."""
        return [(day, [s.values[index] for s in self.series]) for index, day in enumerate(self.days)]

    def summary(self) -> str:
        return ", ".join(f"{s.total:,} {s.label.lower()}" for s in self.series)


def chart_days(today: date, days: int = CHART_DAYS) -> list[date]:
    return [today - timedelta(days=days - 1 - offset) for offset in range(days)]


def build_chart(days: list[date], counts: dict[date, dict[str, int]]) -> Chart:
    """A chart of ``days`` from {day: {series key: count}} (missing days and keys are 0)."""
    return Chart(days=list(days), series=[Series(key, label, [int(counts.get(day, {}).get(key, 0) or 0)
                                                              for day in days]) for key, label in SERIES])


def _day(value) -> date | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    try:
        return date.fromisoformat(str(value)[:10])
    except ValueError:
        return None


def charts(connection_ids: list[int], now: datetime, days: int = CHART_DAYS) -> dict[int, Chart]:
    """14-day charts of every connection: two grouped queries (runs, change-log rows) for all of them."""
    if not connection_ids:
        return {}
    span = chart_days(now.date(), days)
    start = datetime.combine(span[0], datetime.min.time())
    counts: dict[int, dict[date, dict[str, int]]] = {cid: {} for cid in connection_ids}
    run_day = func.date(SyncRun.created_at)
    for cid, day, runs, failed in db.session.execute(
            select(SyncRun.connection_id, run_day, func.count(),
                   func.sum(case((SyncRun.status == RunStatus.FAILED, 1), else_=0)))
            .where(SyncRun.created_at >= start, SyncRun.connection_id.in_(connection_ids), _real_runs())
            .group_by(SyncRun.connection_id, run_day)):
        bucket = counts[cid].setdefault(_day(day), {})
        bucket.update(runs=runs, failed=failed or 0)
    change_day = func.date(SyncChange.at)
    for cid, day, to_crm, to_erp, conflicts, errors in db.session.execute(
            select(SyncChange.connection_id, change_day,
                   func.sum(case((SyncChange.direction == "to_crm", 1), else_=0)),
                   func.sum(case((SyncChange.direction == "to_erp", 1), else_=0)),
                   func.sum(case((SyncChange.conflict.is_(True), 1), else_=0)),
                   func.sum(case((SyncChange.direction == "error", 1), else_=0)))
            .where(SyncChange.at >= start, SyncChange.connection_id.in_(connection_ids))
            .group_by(SyncChange.connection_id, change_day)):
        bucket = counts[cid].setdefault(_day(day), {})
        bucket.update(to_crm=to_crm or 0, to_erp=to_erp or 0, conflicts=conflicts or 0, errors=errors or 0)
    return {cid: build_chart(span, by_day) for cid, by_day in counts.items()}


# ----------------------------------------------------------------------------------------------------- overview


@dataclass
class Cursor:
    actor_type: str
    stamp: str
    at: datetime | None  # the stamp as a time, when it is one


@dataclass
class ConnectionHealth:
    connection: Connection
    verdict: Verdict
    last_run: SyncRun | None = None  # the last finished run of the connection
    last_success: SyncRun | None = None
    last_feed_read: SyncRun | None = None  # the last successful sync (it read the ERP's change feed)
    running: bool = False
    issues: sync_issues.IssueCounts = field(default_factory=sync_issues.IssueCounts)
    cursors: list[Cursor] = field(default_factory=list)
    unsynced: int = 0  # CRM edits not synced yet
    oldest_unsynced: datetime | None = None
    chart: Chart | None = None


def _real_runs():
    """SQL: the runs that are not previews (dry runs write nothing: they are no sync of the connection); see
    ``runs.real_run``."""
    from portal.services.sync import runs

    return runs.real_run()


def _run_ids() -> dict[int, tuple]:
    """Per connection: (last finished run id, last successful run id, last successful sync id) — one query. Run
    ids grow with time, and a connection has one active run at a time, so the largest id is the latest run."""
    kinds = SyncRun.kind.in_([str(k) for k in CONNECTION_KINDS])
    success = SyncRun.status.in_([str(s) for s in SUCCESS])
    rows = db.session.execute(
        select(SyncRun.connection_id,
               func.max(case((and_(kinds, SyncRun.status.in_([str(s) for s in FINISHED])), SyncRun.id))),
               func.max(case((and_(kinds, success), SyncRun.id))),
               func.max(case((and_(SyncRun.kind == RunKind.SYNC, success), SyncRun.id))))
        .where(_real_runs()).group_by(SyncRun.connection_id)).all()
    return {row[0]: tuple(row[1:]) for row in rows}


def _unsynced() -> dict[int, tuple[int, datetime | None]]:
    """Per connection: (CRM edits not synced yet, the oldest one's time) — one grouped query per CRM type."""
    result: dict[int, tuple[int, datetime | None]] = {}
    for crm_type, model in CRM_MODELS.items():
        rows = db.session.execute(
            select(Link.connection_id, func.count(), func.min(model.updated_at))
            .join(model, model.id == Link.crm_id)
            .where(Link.crm_type == crm_type, Link.status == LinkStatus.OK,
                   or_(Link.crm_synced_at.is_(None), model.updated_at > Link.crm_synced_at))
            .group_by(Link.connection_id)).all()
        for cid, number, oldest in rows:
            count, before = result.get(cid, (0, None))
            times = [moment for moment in (before, _as_datetime(oldest)) if moment is not None]
            result[cid] = (count + number, min(times) if times else None)
    return result


def _as_datetime(value) -> datetime | None:
    if value is None or isinstance(value, datetime):
        return value
    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        return None


def _cursors(connection: Connection) -> list[Cursor]:
    from portal.services.sync.context import changed_at

    return [Cursor(actor_type, str(stamp), changed_at(stamp))
            for actor_type, stamp in sorted((connection.cursors or {}).items()) if stamp]


def overview(connections: list[Connection] | None = None, *, now: datetime | None = None,
             with_charts: bool = True) -> list[ConnectionHealth]:
    """The health of every connection that is not deleted (or of ``connections``), in name order."""
    from portal.services.bootstrap import sync_settings
    from portal.services.connectors import not_answering

    now = now or utcnow()
    if connections is None:
        connections = list(db.session.scalars(select(Connection).where(Connection.deleted.is_(False))
                                              .order_by(Connection.name, Connection.id)))
    settings = sync_settings()
    ids = _run_ids()
    wanted = {run_id for triple in ids.values() for run_id in triple if run_id}
    runs = {run.id: run for run in db.session.scalars(select(SyncRun).where(SyncRun.id.in_(sorted(wanted))))} \
        if wanted else {}
    busy = set(db.session.scalars(select(SyncRun.connection_id).where(
        SyncRun.status.in_([str(s) for s in ACTIVE_RUN_STATUSES]),
        SyncRun.kind.in_([str(k) for k in CONNECTION_KINDS]), _real_runs())))
    issues = sync_issues.counts_by_connection()
    unsynced = _unsynced()
    graphs = charts([c.id for c in connections], now) if with_charts else {}
    result = []
    for connection in connections:
        last_id, success_id, feed_id = ids.get(connection.id, (None, None, None))
        last, success = runs.get(last_id), runs.get(success_id)
        counts = issues.get(connection.id, sync_issues.IssueCounts())
        facts = Facts(active=connection.active, auto_sync=settings.auto_sync,
                      interval_seconds=settings.interval_seconds, breaker=not_answering(connection),
                      last_status=last.status if last else None, last_error=(last.error or last.message) if last else "",
                      last_success_at=(success.finished_at or success.started_at) if success else None,
                      running=connection.id in busy, open_issues=counts.open, changed_at=connection.updated_at)
        pending, oldest = unsynced.get(connection.id, (0, None))
        result.append(ConnectionHealth(
            connection=connection, verdict=decide(facts, now), last_run=last, last_success=success,
            last_feed_read=runs.get(feed_id), running=facts.running, issues=counts, cursors=_cursors(connection),
            unsynced=pending, oldest_unsynced=oldest, chart=graphs.get(connection.id)))
    db.session.commit()
    return result


def alert_facts(connections: list[Connection]) -> dict:
    """What the alerts (``portal.services.alerts``) need of each connection: {id: ConnectionFacts}."""
    from portal.services.alerts import ConnectionFacts

    facts = {}
    for health in overview(connections, with_charts=False):
        connection = health.connection
        parts = []
        if health.last_success is not None:
            moment = health.last_success.finished_at or health.last_success.started_at
            parts.append(f"last successful run {moment:%Y-%m-%d %H:%M} UTC" if moment else "last run succeeded")
        else:
            parts.append("no successful run yet")
        if health.issues.errors:
            parts.append(plural(health.issues.errors, "record") + " with errors")
        if health.issues.broken:
            parts.append(plural(health.issues.broken, "broken link"))
        facts[connection.id] = ConnectionFacts(connection.id, connection.name, str(health.verdict.state),
                                               health.issues.open, "; ".join(parts))
    return facts

"""Run context: errors, settings, connector calls and the collector pause shared by every part of a run."""

from __future__ import annotations

import functools
import gc
import random
import threading
import time
from collections.abc import Iterable, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

from flask import current_app
from sqlalchemy import select

from portal.connectors.client import ConnectorClient, ConnectorError
from portal.connectors.guard import GUARD_CODES
from portal.connectors.protocol import UNKNOWN_CONNECTION_ID
from portal.database import utcnow
from portal.extensions import db
from portal.models import CRM_PRIORITY_ID, Connection, ListItem, SyncRun
from portal.services.sync import fieldmap, runs
from portal.services.sync.outcomes import RecordDetail
from portal.services.sync.plan import TypePlan

DEFAULT_BATCH_SIZE = 200
DEFAULT_PAGE_SIZE = 500
DEFAULT_CONNECTOR_RETRIES = 4
RETRY_BASE_SECONDS = 60
RETRY_CAP_SECONDS = 6 * 3600
IN_CHUNK = 500  # values per SQL IN (...)
MICROSECOND = timedelta(microseconds=1)
HEARTBEAT_SECONDS = 30  # besides after every batch, before a connector call when the last beat is this old
# How far back of the start of its last complete pass a run looks for CRM changes (``Connection.crm_cursors``):
# a record saved by a transaction that was still open when that pass read the table carries an ``updated_at``
# from before the pass started; the look-back takes in any transaction shorter than this.
CRM_LOOKBACK = timedelta(minutes=10)

# Connector error codes that are about the connection, not one record: they fail the run.
TRANSPORT_CODES = frozenset({"TIMEOUT", "UNREACHABLE", "BAD_RESPONSE", "TOO_LARGE", "REDIRECT",
                             "ADDRESS_NOT_ALLOWED", "UNKNOWN_BUILTIN"})
CONNECTION_CODES = frozenset({UNKNOWN_CONNECTION_ID, "UNAUTHORIZED", "BAD_CREDENTIALS", "UNKNOWN_METHOD",
                              "UNKNOWN_ACTOR_TYPE", "INTERNAL_ERROR"})
GONE_CODES = frozenset({"UNKNOWN_ERP_KEY", "NOT_FOUND"})
STALE_WRITE_CODE = "CONFLICT"
# The client methods that change something in the connector or the ERP: never called by a dry run.
WRITE_METHODS = frozenset({"save_actors", "create_actor", "save_connection", "delete_connection"})


class RunFailed(Exception):
    """The run cannot go on: ``message`` is for the screen (the connector's UserExplanation)."""

    def __init__(self, message: str, tech: str = "", transient: bool = False):
        super().__init__(message)
        self.message = message
        self.tech = tech
        self.transient = transient


class RunAbandoned(Exception):
    """The run row is no longer 'running' (the reaper gave up on it): stop without writing more."""


class RecordLevel(Exception):
    """A connector error about the records of one call (IsOk false with a business error code)."""

    def __init__(self, error: ConnectorError):
        super().__init__(error.user_message)
        self.error = error


def setting(name: str, default: int) -> int:
    try:
        return max(1, int(current_app.config.get(name, default)))
    except (TypeError, ValueError):
        return default


def stamp_key(stamp: object) -> tuple:
    """A sort key for LastModified values: decimal integers numerically, ISO-8601 times chronologically."""
    return _stamp_key(str(stamp or "").strip())


# A run compares each actor's stamp with the cursor's several times (feed.py): the parses are kept (immutable).
@functools.lru_cache(maxsize=8192)
def _stamp_key(text: str) -> tuple:
    if text.isdigit():
        return (0, int(text), "")
    moment = _changed_at(text)
    if moment is not None:
        return (1, moment, "")
    return (2, 0, text)


def changed_at(stamp: object) -> datetime | None:
    """LastModified as a naive-UTC datetime when it is an ISO-8601 time (for 'most recent change wins')."""
    return _changed_at(str(stamp or "").strip())


@functools.lru_cache(maxsize=8192)
def _changed_at(text: str) -> datetime | None:
    if not text or text.isdigit():
        return None
    try:
        moment = datetime.fromisoformat(text.replace("z", "Z").replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment


def chunks(items: Sequence, size: int) -> Iterable[Sequence]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def retry_delay(failures: int) -> timedelta:
    """Full-jitter exponential backoff for records that keep failing: up to 1, 2, 4 … minutes, capped at 6 h."""
    ceiling = min(RETRY_CAP_SECONDS, RETRY_BASE_SECONDS * 2 ** max(0, min(failures, 20) - 1))
    return timedelta(seconds=random.uniform(ceiling / 2, ceiling))


def plural(number: int, word: str, plural: str | None = None) -> str:
    return f"{number:,} {word if number == 1 else (plural or word + 's')}"


class GcPaused:
    """No automatic garbage collection while one page or batch is processed (re-entrant, across threads).

    A batch allocates tens of thousands of short-lived containers (actors, rows, merge results): the collector
    would promote the ones alive at each young collection to the oldest generation, and every run or two start a
    full collection over every object of the process (~130,000 in the benchmark's portal process: ~50 ms, a fifth
    of a whole 1,000 + 1,000 run). They are all freed by reference counting when the batch ends, so there is
    nothing for the collector to find; paused per page or batch, memory still grows with the batch size only.
    The collector is process-wide, so the pause is too (a batch's own work takes milliseconds): it is lifted
    during connector calls (``resumed``), which can wait for as long as the connector's timeout."""

    _lock = threading.Lock()
    _depth = 0
    _was_enabled = False

    def __enter__(self) -> None:
        with GcPaused._lock:
            if GcPaused._depth == 0:
                GcPaused._was_enabled = gc.isenabled()
                gc.disable()
            GcPaused._depth += 1

    def __exit__(self, *exc_info) -> None:
        with GcPaused._lock:
            GcPaused._depth -= 1
            if GcPaused._depth == 0 and GcPaused._was_enabled:
                gc.enable()

    @staticmethod
    @contextmanager
    def resumed():
        """Automatic collection as before the pause, for the time of the block (a connector call)."""
        with GcPaused._lock:
            lifted = GcPaused._depth > 0 and GcPaused._was_enabled and not gc.isenabled()
            if lifted:
                gc.enable()
        try:
            yield
        finally:
            if lifted:
                with GcPaused._lock:
                    if GcPaused._depth > 0:
                        gc.disable()


def _over_budget(budget: float) -> RunFailed:
    text = f"{budget / 60:g} min" if budget >= 120 and budget % 60 == 0 else f"{budget:g} s"
    return RunFailed(f"The run took longer than its budget of {text} and was stopped; the next run carries on.",
                     f"run budget of {budget:g} s used up", transient=True)


class RunContext:
    """Everything one run needs, read once at its start (ids and plain values only)."""

    def __init__(self, run: SyncRun, connection: Connection, on_progress=None, *, dry_run: bool | None = None) -> None:
        from portal.services.sync_settings import priority_entries

        self.run_id = run.id
        self.kind = run.kind
        self.options = dict(run.options or {})
        self.started_at = run.started_at or utcnow()
        self.connection_id = connection.id
        self.name = connection.name
        self.guid = connection.guid
        self.policy = str(connection.conflict_policy or "priority")
        self.cursors = dict(connection.cursors or {})
        self.crm_cursors = dict(connection.crm_cursors or {})
        entries = priority_entries()
        self.ranks = {entry_id: rank for rank, (entry_id, _label) in enumerate(entries)}
        self.names = {entry_id: label for entry_id, label in entries}
        self.crm_rank = self.ranks.get(CRM_PRIORITY_ID, 0)
        self.erp_rank = self.ranks.get(connection.id, len(entries))
        self.no_blank = bool(self.options.get("no_blank"))
        # A dry run (option ``dry_run``, or ``dry_run=True``: Run it's check of the plan): read and merge only;
        # batch.py hands each merged batch to preview.report instead of writing anything (preview.py).
        self.dry_run = bool(self.options.get("dry_run")) if dry_run is None else bool(dry_run)
        self.preview = None  # what a dry run would do (preview.Preview), filled batch by batch
        self.plans = [TypePlan(config.erp_actor_type, config.crm_type, fieldmap.mapped_fields(config, synced_only=True))
                      for config in connection.actor_types if config.is_active and config.supported]
        self.list_names = {row.id: row.name for row in db.session.execute(select(ListItem.id, ListItem.name))}
        self.list_items = None  # crm_rules' list items, read when a record first writes to the CRM
        self.parents = None  # the company links of the batch in progress (parents.lookup)
        self.batch_size = setting("SYNC_BATCH_SIZE", DEFAULT_BATCH_SIZE)
        self.page_size = setting("SYNC_PAGE_SIZE", DEFAULT_PAGE_SIZE)
        self.client = make_run_client(connection, resend=not self.dry_run)
        self.on_progress = on_progress
        self.counts: dict[str, int] = {}
        self.done = 0
        self.total = 0
        self.warnings: list[str] = []
        self.journal_ids: list[int] = []  # journal rows of the batch in progress (journal.py)
        self.last_call_warned = False
        self.wrote_crm = False
        self.detail: RecordDetail | None = None
        self.beat = time.monotonic()

    def count(self, key: str, number: int = 1) -> None:
        if number:
            self.counts[key] = self.counts.get(key, 0) + number

    def plan_for(self, actor_type: str) -> TypePlan | None:
        return next((p for p in self.plans if p.actor_type == actor_type), None)

    def snapshot_counts(self) -> dict:
        counts = dict(self.counts)
        counts["connector_calls"] = self.client.calls
        if self.warnings:
            counts["warnings"] = len(self.warnings)
        return counts

    def call(self, function, *args, record_level: bool = False):
        """A connector call: never inside a database transaction; errors become RunFailed (or RecordLevel).

        Cooperative cancellation: when the last heartbeat is older than ``SYNC_CANCEL_CHECK_SECONDS`` (default
        5 s), runs.mark_alive's conditional UPDATE goes into the pending transaction; when it finds the run no
        longer ``running`` (reaped meanwhile), that transaction is rolled back instead of committed (a batch's
        journal of ERP writes about to be sent included) and RunAbandoned stops the run without writing more.
        The run budget: ``SYNC_RUN_BUDGET`` seconds (default 3600) from the run's start; past it the run fails
        with a readable RunFailed (the engine rolls back what is pending), and the call itself gets only the
        budget left (``client.deadline``), so an answer still awaited is cut off when the budget runs out.
        """
        if self.dry_run and getattr(function, "__name__", "") in WRITE_METHODS:
            raise RuntimeError(f"a dry run never calls {function.__name__}")  # batch.py stops before any write
        config = current_app.config
        if time.monotonic() - self.beat > min(HEARTBEAT_SECONDS, float(config.get("SYNC_CANCEL_CHECK_SECONDS", 5))):
            if not runs.mark_alive(self.run_id):
                db.session.rollback()
                raise RunAbandoned()
            self.beat = time.monotonic()
        budget = float(config.get("SYNC_RUN_BUDGET", 3600))
        left = budget - (utcnow() - self.started_at).total_seconds()
        if left <= 0:
            raise _over_budget(budget)
        db.session.commit()
        before = len(self.client.warnings)
        try:
            with GcPaused.resumed(), self.client.deadline(left):  # never paused while waiting on the network
                return function(*args)
        except ConnectorError as exc:
            if exc.error_code == "TIMEOUT" and (utcnow() - self.started_at).total_seconds() >= budget:
                raise _over_budget(budget) from exc
            if record_level and is_record_level(exc):
                raise RecordLevel(exc) from exc
            raise run_failed(exc) from exc
        finally:
            new = self.client.warnings[before:]
            self.last_call_warned = bool(new)
            for _method, text in new:
                if text not in self.warnings:
                    self.warnings.append(text)


def read_actors(ctx: RunContext, actor_type: str, keys: list[str], field_keys: list[str]) -> list[dict]:
    """``GetActors`` of ``keys``. A connector may answer the whole call ``NOT_FOUND`` when one key is unknown (the
    actor was deleted) instead of leaving that key out: the keys are then asked in halves, so the ones that exist
    are still read and the deleted ones come back missing (a broken link), not as a failed run."""
    try:
        return ctx.call(ctx.client.get_actors, ctx.guid, actor_type, keys, field_keys, record_level=True)
    except RecordLevel as exc:
        if (exc.error.error_code or "") not in GONE_CODES:
            raise run_failed(exc.error) from exc
        if len(keys) == 1:
            return []
        ctx.count("not_found_isolations")
        middle = len(keys) // 2
        return (read_actors(ctx, actor_type, keys[:middle], field_keys)
                + read_actors(ctx, actor_type, keys[middle:], field_keys))


def make_run_client(connection: Connection, *, resend: bool = True) -> ConnectorClient:
    """A client whose UNKNOWN_CONNECTION_ID re-send uses the config read now (no database access mid-call); none
    for a dry run (``resend=False``), which sends the connector no SaveConnection either."""
    from portal.services.connections import full_config
    from portal.services.connectors import connector_token, make_client

    info = full_config(connection)
    guid = connection.guid

    def resend_config(asked: str) -> dict | None:
        return dict(info) if asked == guid else None

    return make_client(connection.connector.url, connector_token(connection.connector),
                       resend_config=resend_config if resend else None,
                       retries=setting("SYNC_CONNECTOR_RETRIES", DEFAULT_CONNECTOR_RETRIES), name=connection.name)


def is_record_level(exc: ConnectorError) -> bool:
    code = exc.error_code or ""
    return not (exc.transient or code in TRANSPORT_CODES or code in CONNECTION_CODES or code.startswith("HTTP_"))


def run_failed(exc: ConnectorError) -> RunFailed:
    message = exc.user_message
    if exc.error_code in GUARD_CODES:  # refused before any attempt (the breaker is open)
        message = f"{message} Nothing was sent; the next run tries again."
    elif exc.transient:
        message = f"{message} (gave up after several attempts; the next run tries again)"
    return RunFailed(message, f"[{exc.error_code or '-'}] {exc.tech_message}", exc.transient)

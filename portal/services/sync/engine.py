"""The sync engine: executes one run for one connection (docs/sync-engine.md has the full story).

A normal run (``kind='sync'``), per active actor type of the connection:

A. **ERP changes** — ``GetActorsByTimestamp`` from the connection's cursor, paged (``Limit``/``NextCursor``);
   only linked actors are kept (one indexed SELECT per batch); an actor whose ``LastModified`` equals its link's
   ``erp_last_modified`` was already merged at exactly that state (a repeat of the inclusive call, or the echo
   of our own SaveActors) and is skipped.
B. **CRM changes** — linked records whose ``updated_at`` is later than the link's ``crm_synced_at``, plus links
   whose previous sync failed (``retry_at`` passed); keyset-paged SQL, never all links at once. Once a run has
   gone through all of them, the connection keeps a *CRM mark* per actor type (``Connection.crm_cursors``: when
   that run started, minus ``CRM_LOOKBACK``), and later runs only look at records changed between the mark and
   their own start (the ``updated_at`` index), so the cost follows the changes, not the number of links.
C. For each batch (``SYNC_BATCH_SIZE``, default 200): the missing side is read (one ``GetActors`` per batch; the
   CRM rows come with the links, in the same SELECT), each record goes through the three-way merge (``merge.py``) against the link's base, ERP writes
   go out in one ``SaveActors`` per batch (a business error makes it retry record by record to isolate the bad
   one), the answer is merged once more (it is what the ERP now stores), and one short database transaction
   applies the CRM writes, the link bases and markers and the change log. No transaction is open during a
   connector call.
D. The cursor moves to the highest ``LastModified`` of a page only after that page's changes were applied.

A record that fails is recorded (change log ``direction='error'``), skipped and retried by a later run
(``Link.retry_at`` with a growing delay); a record the CRM changed while the engine worked on it is left for the
next run (its ``updated_at`` is newer than ``crm_synced_at``). A connector error that is not about one record
fails the run with the connector's explanation.
"""

from __future__ import annotations

import gc
import logging
import random
import threading
import time
import weakref
from collections import namedtuple
from collections.abc import Callable, Iterable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from operator import itemgetter

from flask import current_app
from sqlalchemy import Date, DateTime, bindparam, func, or_, select, update
from sqlalchemy.exc import OperationalError

from portal.connectors.client import ConnectorClient, ConnectorError
from portal.connectors.protocol import UNKNOWN_CONNECTION_ID
from portal.database import utcnow
from portal.extensions import db
from portal.models import (
    CRM_MODELS,
    CRM_PRIORITY_ID,
    CRM_TYPE_LABELS,
    Connection,
    CrmFieldType,
    FieldType,
    Link,
    LinkStatus,
    ListItem,
    RunKind,
    RunStatus,
    SyncChange,
    SyncRun,
    crm_field,
)
from portal.services.sync import fieldmap, runs
from portal.services.sync.fieldmap import MappedField
from portal.services.sync.merge import FieldRule, MergeResult, PreparedRules, merge, merge_prepared, prepare
from portal.services.values import display, is_blank

log = logging.getLogger(__name__)

DEFAULT_BATCH_SIZE = 200
DEFAULT_PAGE_SIZE = 500
DEFAULT_CONNECTOR_RETRIES = 4
RETRY_BASE_SECONDS = 60
RETRY_CAP_SECONDS = 6 * 3600
_IN_CHUNK = 500  # values per SQL IN (...)
_MICROSECOND = timedelta(microseconds=1)
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

_KIND_HANDLERS: dict[str, Callable[[int], object]] = {}


def register_kind(kind: str, handler: Callable[[int], object]) -> None:
    """Let another service execute runs of its own kind (the import registers ``'import'``); the handler gets
    the run id, claims and finishes the run itself."""
    _KIND_HANDLERS[str(kind)] = handler


class RunFailed(Exception):
    """The run cannot go on: ``message`` is for the screen (the connector's UserExplanation)."""

    def __init__(self, message: str, tech: str = "", transient: bool = False):
        super().__init__(message)
        self.message = message
        self.tech = tech
        self.transient = transient


class RunAbandoned(Exception):
    """The run row is no longer 'running' (the reaper gave up on it): stop without writing more."""


class _RecordLevel(Exception):
    """A connector error about the records of one call (IsOk false with a business error code)."""

    def __init__(self, error: ConnectorError):
        super().__init__(error.user_message)
        self.error = error


def _config(name: str, default: int) -> int:
    try:
        return max(1, int(current_app.config.get(name, default)))
    except (TypeError, ValueError):
        return default


# ------------------------------------------------------------------------------------------------- helpers


def stamp_key(stamp: object) -> tuple:
    """A sort key for LastModified values: decimal integers numerically, ISO-8601 times chronologically."""
    text = str(stamp or "").strip()
    if text.isdigit():
        return (0, int(text), "")
    moment = changed_at(text)
    if moment is not None:
        return (1, moment, "")
    return (2, 0, text)


def changed_at(stamp: object) -> datetime | None:
    """LastModified as a naive-UTC datetime when it is an ISO-8601 time (for 'most recent change wins')."""
    text = str(stamp or "").strip()
    if not text or text.isdigit():
        return None
    try:
        moment = datetime.fromisoformat(text.replace("z", "Z").replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment


def _chunks(items: Sequence, size: int) -> Iterable[Sequence]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _retry_delay(failures: int) -> timedelta:
    """Full-jitter exponential backoff for records that keep failing: up to 1, 2, 4 … minutes, capped at 6 h."""
    ceiling = min(RETRY_CAP_SECONDS, RETRY_BASE_SECONDS * 2 ** max(0, min(failures, 20) - 1))
    return timedelta(seconds=random.uniform(ceiling / 2, ceiling))


def _plural(number: int, word: str, plural: str | None = None) -> str:
    return f"{number:,} {word if number == 1 else (plural or word + 's')}"


# ---------------------------------------------------------------------------------------------- run state


@dataclass
class TypePlan:
    """The mapped fields of one active actor type, snapshotted when the run starts."""

    actor_type: str
    crm_type: str
    fields: list[MappedField]

    def __post_init__(self) -> None:
        self.model = CRM_MODELS[self.crm_type]
        self.rules: list[FieldRule] = fieldmap.rules(self.fields)
        self.prepared: PreparedRules = prepare(self.rules)
        self.keys: list[str] = list(dict.fromkeys(fieldmap.field_keys(self.fields)))
        self.by_key: dict[str, MappedField] = {f.erp_key: f for f in self.fields}
        self.by_crm: dict[str, MappedField] = {f.crm_key: f for f in self.fields}
        crm_keys = list(dict.fromkeys(f.crm_key for f in self.fields))
        self.columns = [self.model.id, self.model.updated_at] + [getattr(self.model, k) for k in crm_keys
                                                                 if k not in ("id", "updated_at")]
        # The CRM row of a record as the engine uses it: by position (plan.crm_text) and by column key (fieldmap)
        self.row_type = namedtuple("CrmRow", [column.key for column in self.columns])
        # Statements built once per run, the id lists as expanding parameters (no per-value coercion, one cache key)
        self.sql_rows = select(*self.columns).where(self.model.id.in_(bindparam("ids", expanding=True)))
        # links with their CRM rows (_LINK_COLUMNS, then self.columns): one SELECT reads both sides of a batch
        self.sql_linked = (select(*_LINK_COLUMNS, *self.columns).join(self.model, self.model.id == Link.crm_id)
                           .where(Link.erp_actor_type == self.actor_type, Link.crm_type == self.crm_type))
        self.sql_links_by_key = self.sql_linked.where(Link.connection_id == bindparam("connection_id"),
                                                      Link.erp_key.in_(bindparam("keys", expanding=True)))
        # what the transaction that applies a batch checks first: the link still there, the record not changed since
        self.sql_check = (select(Link.id, self.model.updated_at).join(self.model, self.model.id == Link.crm_id)
                          .where(Link.id.in_(bindparam("ids", expanding=True))).with_for_update())
        # … or its writes check the same row by row (_update_many with ``record``, see _apply_once)
        self.required = {f.crm_key for f in self.fields
                         if (spec := crm_field(self.crm_type, f.crm_key)) is not None and spec.required}
        # Text-to-text and list-to-list fields take a fast path (see _erp_values/_crm_values), the rest go through
        # fieldmap; anything unusual (a number in a text field, an unmapped list item …) falls back to fieldmap.
        self.fast = [f for f in self.fields if f.erp_type in _TEXT_ERP_TYPES and f.crm_type in _TEXT_CRM_TYPES]
        self.lists = [f for f in self.fields if f.erp_type == FieldType.LIST and f.crm_type == CrmFieldType.LIST]
        self.fast_keys = {f.erp_key for f in self.fast}
        self.list_keys = {f.erp_key for f in self.lists}
        self.slow = [f for f in self.fields if f.erp_key not in self.fast_keys and f.erp_key not in self.list_keys]
        # The same, unpacked once for the per-record loops: (erp key, field) and (erp key, crm key, column index, field)
        self.erp_plain = tuple((f.erp_key, f) for f in self.fast) + tuple((f.erp_key, f) for f in self.lists)
        index = {column.key: position for position, column in enumerate(self.columns)}
        self.crm_text = tuple((f.erp_key, f.crm_key, index[f.crm_key], f) for f in self.fast)
        self.crm_lists = tuple((f.erp_key, f.crm_key, index[f.crm_key], f) for f in self.lists)
        # CRM list item id -> the ERP keys mapped to it, smallest first (values.invert_list_map's tie-break)
        self.reverse_lists = {}
        for f in self.lists:
            reverse: dict[int, list[str]] = {}
            for key, crm_id in sorted((f.list_map or {}).items(), key=lambda item: str(item[0])):
                if crm_id is not None and key not in ("", None):
                    reverse.setdefault(crm_id, []).append(key)
            self.reverse_lists[f.erp_key] = reverse

    @property
    def label(self) -> str:
        return f"{self.actor_type} \u2194 {CRM_TYPE_LABELS.get(self.crm_type, self.crm_type)}"


_TEXT_ERP_TYPES = frozenset({FieldType.TEXT, FieldType.LABEL})
_PLAIN_DISPLAY_TYPES = frozenset({FieldType.TEXT, FieldType.LABEL, FieldType.LIST})
_TEXT_CRM_TYPES = frozenset({CrmFieldType.TEXT, CrmFieldType.LONGTEXT})


def _erp_values(plan: TypePlan, field_values: dict, fields: list[MappedField] | None = None
                ) -> tuple[dict, dict[str, str]]:
    """``fieldmap.erp_side`` with fast paths, same results as values.to_crm_precision: a text field's string as
    is ('' as None); a list field's item key as is (to_crm_precision returns a list key unchanged, mapped or
    not). Anything else goes through fieldmap."""
    if fields is None:
        plain, slow = plan.erp_plain, None
    else:
        plain = tuple((f.erp_key, f) for f in fields if f.erp_key in plan.fast_keys) + tuple(
            (f.erp_key, f) for f in fields if f.erp_key in plan.list_keys)
        slow = [f for f in fields if f.erp_key not in plan.fast_keys and f.erp_key not in plan.list_keys]
    values: dict = {}
    for key, f in plain:
        value = field_values.get(key)
        if value is None or type(value) is str:
            values[key] = value or None
        else:
            if slow is None:
                slow = list(plan.slow)
            slow.append(f)
    if slow is None:
        slow = plan.slow
    errors: dict[str, str] = {}
    if slow:
        more, errors = fieldmap.erp_side(field_values, slow)
        values.update(more)
    return values, errors


def _crm_values(plan: TypePlan, row, erp_now: dict, raw: Sequence | None = None) -> tuple[dict, dict[str, str]]:
    """``fieldmap.crm_side`` with the same fast paths (same results as values.crm_to_erp with
    invert_list_map(prefer=[the ERP's current key])). ``raw``: the same record as a tuple in ``plan.columns``
    order (the engine's CRM rows; indexing costs less than attribute access)."""
    values: dict = {}
    slow = None
    for key, crm_key, index, f in plan.crm_text:
        value = raw[index] if raw is not None else getattr(row, crm_key)
        if value is None or type(value) is str:
            values[key] = value or None
        else:
            if slow is None:
                slow = list(plan.slow)
            slow.append(f)
    for key, crm_key, index, f in plan.crm_lists:
        value = raw[index] if raw is not None else getattr(row, crm_key)
        if value is None:
            values[key] = None
            continue
        keys = plan.reverse_lists[key].get(value) if type(value) is int else None
        if not keys:
            if slow is None:
                slow = list(plan.slow)
            slow.append(f)  # unmapped: fieldmap words the error
            continue
        current = erp_now.get(key)
        values[key] = current if current in keys else keys[0]
    if slow is None:
        slow = plan.slow
    errors: dict[str, str] = {}
    if slow:
        more, errors = fieldmap.crm_side(row, slow, erp_now)
        values.update(more)
    return values, errors


def _to_crm_values(plan: TypePlan, values: dict) -> tuple[dict, dict[str, str]]:
    """``fieldmap.to_crm_values`` with fast paths for text and list fields (same results)."""
    result: dict = {}
    slow: dict = {}
    for key, value in values.items():
        f = plan.by_key.get(key)
        if f is None:
            continue
        if key in plan.fast_keys and (value is None or (type(value) is str and (
                not f.crm_max_length or len(value) <= f.crm_max_length))):
            result[f.crm_key] = value or ""
        elif key in plan.list_keys and value is None:
            result[f.crm_key] = None
        elif key in plan.list_keys and type(value) is str and (f.list_map or {}).get(value) is not None:
            result[f.crm_key] = f.list_map[value]
        else:
            slow[key] = value
    errors: dict[str, str] = {}
    if slow:
        more, errors = fieldmap.to_crm_values(slow, plan.fields)
        result.update(more)
    return result, errors


def _check_erp_values(plan: TypePlan, values: dict) -> dict[str, str]:
    """``fieldmap.check_erp_values`` with a fast path for text and list fields (same results)."""
    slow: dict = {}
    for key, value in values.items():
        f = plan.by_key.get(key)
        if f is None:
            continue
        if (key in plan.fast_keys or key in plan.list_keys) and (value is None or (type(value) is str and (
                not f.erp_max_length or len(value) <= f.erp_max_length))):
            continue
        slow[key] = value
    return fieldmap.check_erp_values(slow, plan.fields) if slow else {}


def _conn():
    """The session's Core connection (in the session's transaction): SELECTs of plain columns and bulk writes go
    through it, not through the ORM's result machinery."""
    return db.session.connection()


class _BulkStatement:
    """An ``INSERT`` or an ``UPDATE … WHERE id = :id`` of a fixed set of columns, compiled once by SQLAlchemy for
    the connection's dialect and executed as one DBAPI ``executemany`` through ``Connection.exec_driver_sql``.

    Same SQL and the same stored values as ``Connection.execute(table.insert()/update(), rows)``: the statement
    is SQLAlchemy's own compilation and every value goes through the column type's own bind processor (JSON is
    serialised, datetimes formatted by the dialect …); what is skipped is SQLAlchemy's per-row parameter
    construction, which cost more than the database work itself. Column defaults and ``onupdate`` functions are
    *not* applied here, so a statement that would need one (a column left out that has a Python-side default or
    ``onupdate``) is refused when it is compiled (``ValueError``) and the caller must supply that column.

    An update may be limited to rows whose CRM record is unchanged: ``record`` names the record table, and the
    row is written only where that record's ``updated_at`` still equals the row's ``seen`` value (the row's own
    ``updated_at`` when ``table`` is the record table, else that of the record its ``crm_id`` points to); the
    ``rowcount`` then tells whether anything changed meanwhile."""

    _cache: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

    def __init__(self, dialect, table, kind: str, keys: tuple[str, ...], record=None) -> None:
        if kind == "update":
            stmt = (table.update().where(table.c.id == bindparam("_id"))
                    .values({key: bindparam(f"_{key}") for key in keys}))
            wanted = {f"_{key}": key for key in keys}
            wanted["_id"] = "id"
            if record is not None:
                unchanged = (record.c.updated_at if record is table else
                             select(record.c.updated_at).where(record.c.id == table.c.crm_id).scalar_subquery())
                stmt = stmt.where(unchanged == bindparam("_seen"))
                wanted["_seen"] = "seen"
        elif kind == "insert":
            stmt = table.insert().values({key: bindparam(f"_{key}") for key in keys})
            wanted = {f"_{key}": key for key in keys}
        else:  # pragma: no cover - programming error
            raise ValueError(kind)
        compiled = stmt.compile(dialect=dialect)
        names = list(compiled.positiontup) if compiled.positional else list(compiled.binds)
        if sorted(names) != sorted(wanted):
            raise ValueError(f"{kind} of {table.name} needs values for {sorted(set(names) - set(wanted))}: "
                             "a column default or onupdate would be skipped")
        self.sql = compiled.string
        self.positional = compiled.positional
        self.names = names
        self.keys = [wanted[name] for name in names]
        self.processors = []
        for name in names:
            type_ = compiled.binds[name].type
            processor = type_.dialect_impl(dialect).bind_processor(dialect)
            memo = processor is not None and isinstance(type_, Date | DateTime)
            self.processors.append((processor, memo))
        self.converting = any(processor is not None for processor, _memo in self.processors)
        self.getter = itemgetter(*self.keys)

    @classmethod
    def get(cls, dialect, table, kind: str, keys: tuple[str, ...], record=None) -> _BulkStatement:
        try:
            statements = cls._cache.setdefault(dialect, {})
        except TypeError:  # pragma: no cover - a dialect that cannot be weakly referenced
            statements = {}
        key = (table.fullname, kind, keys, record.fullname if record is not None else "")
        statement = statements.get(key)
        if statement is None:
            statement = statements[key] = cls(dialect, table, kind, keys, record)
        return statement

    def params(self, rows: Iterable[dict], defaults: dict | None = None) -> list:
        """The DBAPI parameters for ``rows`` (dicts by column key; a key missing from a row is taken from
        ``defaults``), each value through its column type's bind processor."""
        getter = self.getter
        tuples = []
        for row in rows:
            try:
                tuples.append(getter(row))
            except KeyError:
                if defaults is None:
                    raise
                tuples.append(getter({**defaults, **row}))
        if len(self.keys) == 1:
            tuples = [(value,) for value in tuples]
        if self.converting:
            columns = list(zip(*tuples, strict=True))
            for position, (processor, memo) in enumerate(self.processors):
                if processor is None:
                    continue
                if memo:  # a batch repeats the same few timestamps: format each once
                    done: dict = {}
                    converted = []
                    for value in columns[position]:
                        text = done.get(value, done)
                        if text is done:
                            text = done[value] = processor(value)
                        converted.append(text)
                    columns[position] = converted
                else:
                    columns[position] = list(map(processor, columns[position]))
            tuples = list(zip(*columns, strict=True))
        if self.positional:
            return tuples
        return [dict(zip(self.names, values, strict=True)) for values in tuples]

    def execute(self, conn, rows: Sequence[dict], defaults: dict | None = None) -> int:
        """Runs the statement for ``rows``; returns the number of rows it wrote (the driver's ``rowcount``)."""
        if not rows:
            return 0
        return conn.exec_driver_sql(self.sql, self.params(rows, defaults)).rowcount


def _update_many(table, rows: list[dict], record=None) -> int:
    """UPDATE … WHERE id = ? as one executemany per set of columns (see _BulkStatement); with ``record`` (a CRM
    record table), only where that record is unchanged since the row's ``seen``. Returns the rows written."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault(tuple(sorted(k for k in row if k != "id" and k != "seen")), []).append(row)
    conn = _conn()
    return sum(_BulkStatement.get(conn.dialect, table, "update", keys, record).execute(conn, group)
               for keys, group in groups.items())


def _insert_many(table, rows: list[dict], defaults: dict) -> None:
    """INSERT as one executemany; every column but the primary key comes from the row or ``defaults``."""
    if not rows:
        return
    conn = _conn()
    keys = tuple(c.key for c in table.c if not c.primary_key)
    unknown = set(rows[0]) - set(keys)
    if unknown:  # pragma: no cover - programming error
        raise ValueError(f"unknown columns for {table.name}: {sorted(unknown)}")
    _BulkStatement.get(conn.dialect, table, "insert", keys).execute(conn, rows, defaults)


_CHANGE_DEFAULTS = {"link_id": None, "erp_actor_type": "", "erp_key": "", "erp_field_key": "", "crm_field_key": "",
                    "old_value": None, "new_value": None, "conflict": False, "other_value": None, "rule": ""}


_LINK_COLUMNS = (Link.id, Link.crm_id, Link.erp_key, Link.base, Link.crm_synced_at, Link.erp_last_modified,
                 Link.status, Link.failures, Link.retry_at, Link.last_synced_at, Link.parent_erp_key)
_LINK_WIDTH = len(_LINK_COLUMNS)
# Statements of every batch, built once (building one costs about what running it does)
_SQL_BATCH_HEARTBEAT = (
    update(SyncRun).where(SyncRun.id == bindparam("run_id"), SyncRun.status == RunStatus.RUNNING)
    .values(heartbeat_at=bindparam("heartbeat_at"), progress_done=bindparam("progress_done"),
            progress_total=bindparam("progress_total"), connector_seconds=bindparam("connector_seconds"),
            counts=bindparam("counts", type_=SyncRun.counts.type))
    .execution_options(synchronize_session=False))
_SQL_CURSORS = select(Connection.cursors).where(Connection.id == bindparam("connection_id"))
_SQL_SET_CURSORS = (update(Connection).where(Connection.id == bindparam("connection_id"))
                    .values(cursors=bindparam("cursors", type_=Connection.cursors.type))
                    .execution_options(synchronize_session=False))


class _Item:
    """One linked record going through a batch."""

    __slots__ = ("link_id", "crm_id", "erp_key", "base", "crm_synced_at", "erp_last_modified", "status", "failures",
                 "last_synced_at", "parent_erp_key", "retry_at", "actor", "row", "crm_updated_at", "crm_vals", "erp_vals",
                 "bad", "result", "crm_write", "errors", "sent", "new_lm", "outcome", "message", "reread",
                 "authors")

    def __init__(self, row, plan: TypePlan | None = None) -> None:
        # row: the _LINK_COLUMNS first, in their order (unpacked: attribute access on a Row costs more), then —
        # with ``plan`` — the CRM record's plan.columns
        (self.link_id, self.crm_id, self.erp_key, base, self.crm_synced_at, self.erp_last_modified, self.status,
         failures, self.retry_at, self.last_synced_at, self.parent_erp_key) = row[:_LINK_WIDTH]
        # a fresh dict per row (the JSON column is decoded per row) that nothing modifies: no copy needed
        self.base: dict = base if type(base) is dict else dict(base or {})
        self.failures = failures or 0
        self.actor: dict | None = None
        self.row = plan.row_type._make(row[_LINK_WIDTH:]) if plan is not None else None
        self.crm_updated_at: datetime | None = None
        self.crm_vals: dict = {}
        self.erp_vals: dict = {}
        self.bad: set[str] = set()
        self.result: MergeResult | None = None
        self.crm_write: dict = {}
        self.errors: list[tuple[str, str]] = []  # (erp field key or '', message)
        self.sent: dict = {}
        self.new_lm: str | None = None
        self.outcome: str | None = None  # None (in progress/ok) | broken | failed | gone | deferred | still_broken
        self.message = ""
        self.reread = False
        self.authors: dict[str, int] = {}  # conflict key -> connection id the CRM value came from


@dataclass
class ChangeLine:
    """A field written by a sync, for the screen: label, old and new value as text."""

    label: str
    old: str
    new: str

    def __iter__(self):  # so it unpacks as (label, old, new)
        return iter((self.label, self.old, self.new))


@dataclass
class ConflictLine:
    label: str
    crm_value: str
    erp_value: str
    winner: str  # 'CRM' or the connection's name
    rule: str


@dataclass
class RecordDetail:
    to_crm: list[ChangeLine] = field(default_factory=list)
    to_erp: list[ChangeLine] = field(default_factory=list)
    conflicts: list[ConflictLine] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    skipped_blank: list[str] = field(default_factory=list)
    outcome: str = ""


@dataclass
class RunOutcome:
    run_id: int
    connection_id: int | None = None
    kind: str = ""
    status: str = ""
    message: str = ""
    error: str = ""
    counts: dict = field(default_factory=dict)
    wrote_crm: bool = False
    started_at: datetime | None = None
    detail: RecordDetail | None = None
    warning: str | None = None


@dataclass
class RecordSyncResult:
    """What "Sync now" on one record did (``portal.services.sync.engine.sync_record``)."""

    run_id: int
    to_crm: list[ChangeLine]
    to_erp: list[ChangeLine]
    conflicts: list[ConflictLine]
    message: str
    ok: bool
    warning: str | None = None
    errors: list[str] = field(default_factory=list)
    broken: bool = False


class _Context:
    """Everything one run needs, read once at its start (ids and plain values only)."""

    def __init__(self, run: SyncRun, connection: Connection, on_progress=None) -> None:
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
        self.plans = [TypePlan(config.erp_actor_type, config.crm_type, fieldmap.mapped_fields(config, synced_only=True))
                      for config in connection.actor_types if config.is_active and config.supported]
        self.list_names = {row.id: row.name for row in db.session.execute(select(ListItem.id, ListItem.name))}
        self.batch_size = _config("SYNC_BATCH_SIZE", DEFAULT_BATCH_SIZE)
        self.page_size = _config("SYNC_PAGE_SIZE", DEFAULT_PAGE_SIZE)
        self.client = _make_client(connection)
        self.on_progress = on_progress
        self.counts: dict[str, int] = {}
        self.done = 0
        self.total = 0
        self.warnings: list[str] = []
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
        """A connector call: never inside a database transaction; errors become RunFailed (or _RecordLevel)."""
        db.session.commit()
        if time.monotonic() - self.beat > HEARTBEAT_SECONDS:  # long batches (e.g. isolating a bad record)
            if not runs.heartbeat(self.run_id):
                raise RunAbandoned()
            self.beat = time.monotonic()
        before = len(self.client.warnings)
        try:
            with _GcPaused.resumed():  # never paused while waiting on the network
                return function(*args)
        except ConnectorError as exc:
            if record_level and _is_record_level(exc):
                raise _RecordLevel(exc) from exc
            raise _run_failed(exc) from exc
        finally:
            new = self.client.warnings[before:]
            self.last_call_warned = bool(new)
            for _method, text in new:
                if text not in self.warnings:
                    self.warnings.append(text)


def _make_client(connection: Connection) -> ConnectorClient:
    """A client whose UNKNOWN_CONNECTION_ID re-send uses the config read now (no database access mid-call)."""
    from portal.services.connections import full_config
    from portal.services.connectors import connector_token, make_client

    info = full_config(connection)
    guid = connection.guid

    def resend(asked: str) -> dict | None:
        return dict(info) if asked == guid else None

    return make_client(connection.connector.url, connector_token(connection.connector), resend_config=resend,
                       retries=_config("SYNC_CONNECTOR_RETRIES", DEFAULT_CONNECTOR_RETRIES))


def _is_record_level(exc: ConnectorError) -> bool:
    code = exc.error_code or ""
    return not (exc.transient or code in TRANSPORT_CODES or code in CONNECTION_CODES or code.startswith("HTTP_"))


def _run_failed(exc: ConnectorError) -> RunFailed:
    message = exc.user_message
    if exc.transient:
        message = f"{message} (gave up after several attempts; the next run tries again)"
    return RunFailed(message, f"[{exc.error_code or '-'}] {exc.tech_message}", exc.transient)


# ----------------------------------------------------------------------------------------- running a run


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
    ctx: _Context | None = None
    try:
        run = db.session.get(SyncRun, run_id)
        connection = db.session.get(Connection, connection_id)
        if connection is None or connection.deleted or (not connection.active and kind != RunKind.IMPORT):
            raise RunFailed("The connection is not active any more.")
        if kind not in (RunKind.SYNC, RunKind.RECORD, RunKind.RESYNC_FROM_CRM, RunKind.RESYNC_FROM_ERP):
            raise RunFailed(f"Runs of kind {kind!r} cannot be executed by the sync engine.")
        ctx = _Context(run, connection, on_progress)
        outcome.started_at = ctx.started_at
        db.session.commit()
        log.info("sync run %s (%s, %s) started for connection %s", run_id, kind, run.trigger, ctx.name)
        _execute(ctx)
        status, message = _final(ctx)
        runs.finish(run_id, status, message=message, counts=ctx.snapshot_counts(),
                    connector_seconds=ctx.client.seconds, progress_done=ctx.done, progress_total=max(ctx.total,
                                                                                                  ctx.done))
        outcome.status, outcome.message = status, message
    except RunFailed as exc:
        db.session.rollback()
        log.warning("sync run %s failed: %s %s", run_id, exc.message, exc.tech)
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


def _final(ctx: _Context) -> tuple[str, str]:
    c = ctx.counts
    records = c.get("records", 0)
    parts = [f"Checked {_plural(records, 'record')}"]
    if c.get("to_crm"):
        parts.append(f"{c['to_crm']:,} updated in the CRM")
    if c.get("to_erp"):
        parts.append(f"{c['to_erp']:,} updated in {ctx.name}")
    if c.get("conflicts"):
        parts.append(_plural(c["conflicts"], "conflict"))
    if c.get("errors"):
        parts.append(f"{_plural(c['errors'], 'record')} with errors")
    if c.get("broken"):
        parts.append(f"{_plural(c['broken'], 'link')} broken (deleted in the ERP)")
    if c.get("deferred"):
        parts.append(f"{c['deferred']:,} changed meanwhile (next run)")
    message = ", ".join(parts) + "."
    if records and not (c.get("to_crm") or c.get("to_erp") or c.get("errors") or c.get("broken")):
        message = f"Checked {_plural(records, 'record')}: both sides already agree."
    if not records:
        message = "Nothing to sync: no changes on either side."
    status = RunStatus.SUCCEEDED
    if c.get("errors") or c.get("broken"):
        status = RunStatus.PARTIAL
    if ctx.warnings:
        status = RunStatus.PARTIAL
        message += " Connector warning: " + "; ".join(ctx.warnings)
    return status, message


def _execute(ctx: _Context) -> None:
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


# ------------------------------------------------------------------------------------------- normal sync


def _sync_type(ctx: _Context, plan: TypePlan) -> None:
    processed: set[int] = set()  # CRM record ids merged in this pass (one link per record and connection)
    _erp_changes(ctx, plan, processed)
    _crm_changes(ctx, plan, processed)


def _erp_changes(ctx: _Context, plan: TypePlan, processed: set[int]) -> None:
    since = ctx.cursors.get(plan.actor_type) or ""
    page_cursor: str | None = None
    seen: dict[str, str] = {}  # ErpKey -> LastModified merged in this run
    while True:
        with _GcPaused():  # one page at a time (see _GcPaused)
            next_cursor = _erp_page(ctx, plan, processed, since, page_cursor, seen)
        if next_cursor is None:
            break
        if next_cursor == page_cursor:
            raise RunFailed(f"{ctx.name}'s connector sent the same page cursor twice; paging stopped.")
        page_cursor = next_cursor


def _erp_page(ctx: _Context, plan: TypePlan, processed: set[int], since: str, page_cursor: str | None,
              seen: dict[str, str]) -> str | None:
    """One page of the ERP feed, in batches; returns the next page's cursor."""
    actors, next_cursor = ctx.call(ctx.client.get_actors_by_timestamp, ctx.guid, since, plan.actor_type,
                                   plan.keys, ctx.page_size, page_cursor)
    warned = ctx.last_call_warned
    ctx.count("erp_actors_read", len(actors))
    keyed = sorted(((stamp_key(a.get("LastModified")), a) for a in actors
                    if isinstance(a.get("ErpKey"), str) and a["ErpKey"]), key=itemgetter(0))
    actors = [a for _key, a in keyed]
    for start in range(0, len(actors), ctx.batch_size):
        chunk = actors[start:start + ctx.batch_size]
        cursor = None
        if not warned:
            # the highest LastModified of the chunk (max by stamp_key; the first of equal keys, as max() picks)
            top = None
            for key, actor in keyed[start:start + ctx.batch_size]:
                if actor.get("LastModified") and (top is None or key > top[0]):
                    top = (key, actor.get("LastModified"))
            if top is not None:
                cursor = str(top[1])
        items = _items_for_actors(ctx, plan, chunk, seen)
        if items:
            ctx.total += len(items)
            # the cursor moves in the transaction that applies the chunk's changes (not before they are applied)
            _process(ctx, plan, items, "sync", cursor=cursor)
            processed.update(it.crm_id for it in items)
            for it in items:
                if it.actor is not None:
                    seen[it.erp_key] = str(it.actor.get("LastModified") or "")
        elif cursor is not None:
            _advance_cursor(ctx, plan.actor_type, cursor)
    return next_cursor


def _items_for_actors(ctx: _Context, plan: TypePlan, actors: Sequence[dict], seen: dict[str, str]) -> list[_Item]:
    latest: dict[str, dict] = {}
    for actor in actors:  # sorted by LastModified: the last one of a key is its newest state
        latest[actor["ErpKey"]] = actor
    links = {}
    keys = list(latest)
    conn = _conn()
    for chunk in _chunks(keys, _IN_CHUNK):
        for row in conn.execute(plan.sql_links_by_key, {"connection_id": ctx.connection_id,
                                                        "keys": list(chunk)}).all():
            links[row[2]] = row  # erp_key
    db.session.commit()
    items = []
    now = utcnow()
    for key, actor in latest.items():
        row = links.get(key)
        if row is None:
            continue
        stamp = str(actor.get("LastModified") or "")
        retry_due = row.retry_at is not None and row.retry_at <= now
        if stamp and seen.get(key) == stamp:
            continue  # a repeat within this run
        if stamp and row.erp_last_modified == stamp and row.status == LinkStatus.OK and not retry_due:
            ctx.count("erp_repeats")  # inclusive timestamp or the echo of our own write: already merged
            continue
        item = _Item(row, plan)
        item.actor = actor
        items.append(item)
    ctx.count("erp_changes", len(items))
    return items


def _advance_cursor(ctx: _Context, actor_type: str, stamp: str) -> None:
    if _write_cursor(ctx, actor_type, stamp) is not None:
        db.session.commit()
        ctx.cursors[actor_type] = stamp


def _write_cursor(ctx: _Context, actor_type: str, stamp: str) -> str | None:
    """Move the stored cursor of ``actor_type`` forward to ``stamp`` in the current transaction (never backwards;
    the caller commits). None when ``stamp`` is not later than the cursor this run already stored."""
    current = ctx.cursors.get(actor_type)
    if current and stamp_key(stamp) <= stamp_key(current):
        return None
    conn = _conn()
    cursors = dict(conn.scalar(_SQL_CURSORS, {"connection_id": ctx.connection_id}) or {})
    if cursors.get(actor_type) and stamp_key(cursors[actor_type]) >= stamp_key(stamp):
        return stamp
    cursors[actor_type] = stamp
    conn.execute(_SQL_SET_CURSORS, {"connection_id": ctx.connection_id, "cursors": cursors})
    return stamp


def _crm_changes(ctx: _Context, plan: TypePlan, processed: set[int]) -> None:
    """Part B: the linked records changed in the CRM since their last sync, and the links due for a retry.

    With a CRM mark (``Connection.crm_cursors``) only the records saved since the mark are looked at (the
    ``updated_at`` index), plus the links whose retry is due (the ``retry_at`` index); without one (the first run
    of the actor type) every link is. The mark moves to the start of this run minus ``CRM_LOOKBACK`` once the
    pass has gone through everything — a run that fails midway leaves it where it was."""
    model = plan.model
    started = utcnow()
    # Records saved from the run's start on are left to the next run (its mark is at most this start minus the
    # look-back): among them are the records this run itself has just written from the ERP feed.
    until = min(ctx.started_at, started)
    mark = _parse_mark(ctx.crm_cursors.get(plan.actor_type))
    where = (Link.connection_id == ctx.connection_id, Link.status == LinkStatus.OK)
    unsynced = or_(Link.crm_synced_at.is_(None), model.updated_at > Link.crm_synced_at)
    if mark is None:
        unsynced_or_due = or_(unsynced, Link.retry_at <= started)
        changed = plan.sql_linked.where(*where, unsynced_or_due)
        # the same rows counted without a subquery of all their columns
        pending = _conn().scalar(select(func.count()).select_from(Link).join(model, model.id == Link.crm_id)
                                 .where(Link.erp_actor_type == plan.actor_type, Link.crm_type == plan.crm_type,
                                        *where, unsynced_or_due)) or 0
        ctx.total += max(0, pending - len(processed))
        for rows in _pages_by_link(ctx, changed):
            _crm_batch(ctx, plan, rows, processed)
    else:
        # Links whose retry is due: found by the retry_at index alone (with the connection in the same WHERE,
        # SQLite would rather walk all of the connection's links), then read by id.
        due = [row[0] for row in _conn().execute(
            select(Link.id, Link.connection_id, Link.erp_actor_type, Link.crm_type, Link.status)
            .where(Link.retry_at <= started))
            if row[1:] == (ctx.connection_id, plan.actor_type, plan.crm_type, LinkStatus.OK)]
        db.session.commit()
        by_id = plan.sql_linked.where(Link.id.in_(bindparam("ids", expanding=True)))
        for ids in _chunks(due, ctx.batch_size):
            rows = _conn().execute(by_id, {"ids": list(ids)}).all()
            db.session.commit()
            _crm_batch(ctx, plan, rows, processed, count_total=True)
        # By the link's record key (connection, CRM type, record id: its unique index) with the actor type
        # checked here: asked for in SQL, it makes SQLite walk every link of the actor type instead.
        saved = (select(*_LINK_COLUMNS, *plan.columns, Link.erp_actor_type)
                 .join(model, model.id == Link.crm_id)
                 .where(*where, Link.crm_type == plan.crm_type, Link.crm_id.in_(bindparam("ids", expanding=True)),
                        unsynced))
        for ids in _records_saved_since(model, mark, ctx.batch_size, until):
            ids = [record_id for record_id in ids if record_id not in processed]  # e.g. written by part A
            if not ids:
                continue
            rows = [row[:-1] for row in _conn().execute(saved, {"ids": ids}).all() if row[-1] == plan.actor_type]
            db.session.commit()
            _crm_batch(ctx, plan, rows, processed, count_total=True)
    _set_crm_mark(ctx, plan.actor_type, until - CRM_LOOKBACK)


def _crm_batch(ctx: _Context, plan: TypePlan, rows: Sequence, processed: set[int], count_total: bool = False) -> None:
    items = [_Item(row, plan) for row in rows if row[1] not in processed]  # row[1]: Link.crm_id
    if not items:
        return
    processed.update(it.crm_id for it in items)  # a record saved again later in the pass is not merged twice
    ctx.count("crm_changes", len(items))
    if count_total:
        ctx.total += len(items)
    _process(ctx, plan, items, "sync")


def _pages_by_link(ctx: _Context, stmt) -> Iterable[list]:
    """The rows of ``stmt`` (links first) in pages of the batch size, keyset-paged by link id; no transaction is
    left open between pages."""
    page = stmt.where(Link.id > bindparam("last_id")).order_by(Link.id).limit(ctx.batch_size)
    last_id = 0
    while True:
        with _GcPaused():
            rows = _conn().execute(page, {"last_id": last_id}).all()
            db.session.commit()
        if not rows:
            return
        last_id = rows[-1][0]  # Link.id
        yield rows


def _records_saved_since(model, mark: datetime, size: int, until: datetime | None = None) -> Iterable[list[int]]:
    """Ids of the CRM records saved after ``mark`` (and before ``until``), in (updated_at, id) order, ``size`` at
    a time. The record table is read on its own (the caller then reads the links of each batch by their unique
    index): in one join, the database may well prefer to walk all the connection's links."""
    stmt = (select(model.id, model.updated_at)
            .where(model.updated_at > mark, model.updated_at >= bindparam("after_at"),
                   or_(model.updated_at > bindparam("after_at"), model.id > bindparam("after_id")))
            .order_by(model.updated_at, model.id).limit(size))
    if until is not None:
        stmt = stmt.where(model.updated_at < until)
    after_at, after_id = mark, 0
    while True:
        rows = _conn().execute(stmt, {"after_at": after_at, "after_id": after_id}).all()
        db.session.commit()
        if not rows:
            return
        after_id, after_at = rows[-1]
        yield [row[0] for row in rows]


def _parse_mark(text: object) -> datetime | None:
    try:
        return datetime.fromisoformat(str(text)) if text else None
    except ValueError:
        return None  # unreadable: look at every link once more


def _set_crm_mark(ctx: _Context, actor_type: str, moment: datetime) -> None:
    value = moment.isoformat()
    conn = _conn()
    marks = dict(conn.scalar(select(Connection.crm_cursors).where(Connection.id == ctx.connection_id)) or {})
    marks[actor_type] = value
    conn.execute(update(Connection).where(Connection.id == ctx.connection_id).values(crm_cursors=marks)
                 .execution_options(synchronize_session=False))
    db.session.commit()
    ctx.crm_cursors[actor_type] = value


# ----------------------------------------------------------------------------------------------- resyncs


def _resync_type(ctx: _Context, plan: TypePlan, mode: str) -> None:
    """Every link of the actor type (or, with the ``since`` option, those whose CRM record changed since), one
    way, ignoring timestamps and the base."""
    model = plan.model
    stmt = (select(*_LINK_COLUMNS).join(model, model.id == Link.crm_id)
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
    ctx.total += _conn().scalar(select(func.count()).select_from(stmt.subquery())) or 0
    last_id = 0
    while True:
        rows = _conn().execute(stmt.where(Link.id > last_id).order_by(Link.id).limit(ctx.batch_size)).all()
        db.session.commit()
        if not rows:
            break
        last_id = rows[-1].id
        _process(ctx, plan, [_Item(row) for row in rows], mode)


def _record_run(ctx: _Context) -> None:
    link_id = ctx.options.get("link_id")
    row = _conn().execute(select(*_LINK_COLUMNS, Link.erp_actor_type, Link.crm_type)
                          .where(Link.id == link_id, Link.connection_id == ctx.connection_id)).first()
    db.session.commit()
    if row is None:
        raise RunFailed("The record is not linked to this connection any more.")
    plan = ctx.plan_for(row.erp_actor_type)
    if plan is None or plan.crm_type != row.crm_type:
        raise RunFailed(f"{row.erp_actor_type} records are not synced on {ctx.name} (the actor type is switched "
                        "off in its mappings).")
    item = _Item(row)
    ctx.total = 1
    _process(ctx, plan, [item], "sync")
    ctx.detail = _detail(ctx, plan, item)


# ------------------------------------------------------------------------------------------- one batch


class _GcPaused:
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
        with _GcPaused._lock:
            if _GcPaused._depth == 0:
                _GcPaused._was_enabled = gc.isenabled()
                gc.disable()
            _GcPaused._depth += 1

    def __exit__(self, *exc_info) -> None:
        with _GcPaused._lock:
            _GcPaused._depth -= 1
            if _GcPaused._depth == 0 and _GcPaused._was_enabled:
                gc.enable()

    @staticmethod
    @contextmanager
    def resumed():
        """Automatic collection as before the pause, for the time of the block (a connector call)."""
        with _GcPaused._lock:
            lifted = _GcPaused._depth > 0 and _GcPaused._was_enabled and not gc.isenabled()
            if lifted:
                gc.enable()
        try:
            yield
        finally:
            if lifted:
                with _GcPaused._lock:
                    if _GcPaused._depth > 0:
                        gc.disable()


def _process(ctx: _Context, plan: TypePlan, items: list[_Item], mode: str, cursor: str | None = None) -> None:
    """Read what is missing, merge, write the ERP, apply the CRM side — for one batch of links; ``cursor``: the
    feed cursor to store with the batch's changes."""
    with _GcPaused():
        _process_batch(ctx, plan, items, mode, cursor)


def _process_batch(ctx: _Context, plan: TypePlan, items: list[_Item], mode: str, cursor: str | None) -> None:
    need = [it for it in items if it.actor is None]
    if need:
        actors = ctx.call(ctx.client.get_actors, ctx.guid, plan.actor_type, [it.erp_key for it in need], plan.keys)
        found = {a.get("ErpKey"): a for a in actors if isinstance(a, dict)}
        for it in need:
            it.actor = found.get(it.erp_key)
            if it.actor is None:
                it.outcome = "still_broken" if it.status == LinkStatus.BROKEN else "broken"
    live = [it for it in items if it.outcome is None]
    missing = [it.crm_id for it in live if it.row is None]
    rows = _crm_rows(plan, missing) if missing else {}
    for it in live:
        if it.row is None:
            it.row = rows.get(it.crm_id)
            if it.row is None:
                it.outcome = "gone"  # deleted in the CRM meanwhile (its links went with it)
                continue
        it.crm_updated_at = it.row[1]  # plan.columns: id, updated_at, …
        _plan_item(ctx, plan, it, mode)
    writes = [it for it in live if it.outcome is None and it.result is not None and it.result.to_erp]
    if writes:
        _save(ctx, plan, writes, mode)
    _apply(ctx, plan, items, mode, cursor)


def _crm_rows(plan: TypePlan, ids: list[int]) -> dict:
    rows = {}
    conn = _conn()
    for chunk in _chunks(ids, _IN_CHUNK):
        for row in conn.execute(plan.sql_rows, {"ids": list(chunk)}).all():
            rows[row[0]] = row  # id
    db.session.commit()
    return rows


def _merge_mode(mode: str) -> str:
    return mode if mode in ("from_crm", "from_erp") else "sync"


def _plan_item(ctx: _Context, plan: TypePlan, it: _Item, mode: str) -> None:
    erp_vals, erp_errors = _erp_values(plan, it.actor.get("FieldValues") or {})
    crm_vals, crm_errors = _crm_values(plan, it.row, erp_vals, raw=it.row)
    it.erp_vals, it.crm_vals = erp_vals, crm_vals
    it.errors = []
    for key, message in erp_errors.items():
        it.errors.append((key, f"{plan.by_key[key].erp_label} in {ctx.name}: {message}"))
    for key, message in crm_errors.items():
        it.errors.append((key, f"{plan.by_key[key].crm_label} in the CRM: {message}"))
    if erp_errors or crm_errors:
        it.bad = set(erp_errors) | set(crm_errors)
        rules = [r for r in plan.rules if r.key not in it.bad]
        prepared = prepare(rules)
    else:
        it.bad = set()
        rules, prepared = plan.rules, plan.prepared
    # The change times only decide conflicts under the 'newest' policy: LastModified is parsed only then.
    result = merge_prepared(prepared, it.base, crm_vals, erp_vals, policy=ctx.policy, crm_rank=ctx.crm_rank,
                            erp_rank=ctx.erp_rank, crm_changed_at=it.crm_updated_at,
                            erp_changed_at=(changed_at(it.actor.get("LastModified")) if ctx.policy == "newest"
                                            else None),
                            no_blank=ctx.no_blank, mode=_merge_mode(mode), erp_name=ctx.name)
    if result.conflicts and ctx.policy == "priority" and _merge_mode(mode) == "sync":
        result = _hub_priority(ctx, plan, it, rules, result)
    it.result = result
    it.crm_write = {}
    _validate(ctx, plan, it, result.to_crm, result.to_erp)


def _drop(it: _Item, result: MergeResult, key: str) -> None:
    it.bad.add(key)
    result.to_crm.pop(key, None)
    result.to_erp.pop(key, None)
    if key in it.base:
        result.new_base[key] = it.base[key]
    else:
        result.new_base.pop(key, None)
    result.conflicts = [c for c in result.conflicts if c.key != key]


def _validate(ctx: _Context, plan: TypePlan, it: _Item, to_crm: dict, to_erp: dict) -> None:
    """Convert the CRM writes and check the ERP writes; a value that cannot be written is dropped (the field keeps
    its base) and reported as an error of the record."""
    result = it.result
    crm_write, crm_errors = _to_crm_values(plan, to_crm)
    for key in list(to_crm):
        f = plan.by_key.get(key)
        if f is not None and f.crm_key in plan.required and f.crm_key in crm_write and is_blank(crm_write[f.crm_key]):
            crm_errors[key] = "the CRM does not allow it to be blank"
            crm_write.pop(f.crm_key, None)
    for key, message in crm_errors.items():
        it.errors.append((key, f"{plan.by_key[key].crm_label} could not be written to the CRM: {message}"))
        _drop(it, result, key)
    erp_errors = _check_erp_values(plan, to_erp)
    for key, message in erp_errors.items():
        it.errors.append((key, f"{plan.by_key[key].erp_label} could not be written to {ctx.name}: {message}"))
        _drop(it, result, key)
    it.crm_write.update(crm_write)


def _hub_priority(ctx: _Context, plan: TypePlan, it: _Item, rules: list[FieldRule], result: MergeResult
                  ) -> MergeResult:
    """When the CRM value in a two-way conflict was itself written by another ERP connection (the CRM is the hub),
    the conflict is between the two ERPs: decide it with *that* connection's sync priority instead of the CRM's."""
    two_way = {r.key for r in rules if r.to_crm and r.to_erp}
    groups: dict[int, list[str]] = {}
    for conflict in result.conflicts:
        if conflict.key not in two_way:
            continue
        f = plan.by_key[conflict.key]
        stmt = (select(SyncChange.connection_id, SyncChange.new_value)
                .where(SyncChange.crm_type == plan.crm_type, SyncChange.crm_id == it.crm_id,
                       SyncChange.crm_field_key == f.crm_key, SyncChange.direction == "to_crm",
                       SyncChange.connection_id != ctx.connection_id))
        if it.last_synced_at is not None:
            stmt = stmt.where(SyncChange.at >= it.last_synced_at)
        found = db.session.execute(stmt.order_by(SyncChange.at.desc(), SyncChange.id.desc()).limit(1)).first()
        if found is None or found.new_value != _crm_text(ctx, f, getattr(it.row, f.crm_key)):
            continue
        rank = ctx.ranks.get(found.connection_id, len(ctx.ranks))
        if rank == ctx.crm_rank:
            continue
        it.authors[conflict.key] = found.connection_id
        groups.setdefault(rank, []).append(conflict.key)
    db.session.commit()
    if not groups:
        return result
    for rank, keys in groups.items():
        sub = merge([r for r in rules if r.key in keys], it.base, it.crm_vals, it.erp_vals, policy="priority",
                    crm_rank=rank, erp_rank=ctx.erp_rank, no_blank=ctx.no_blank, erp_name=ctx.name)
        for key in keys:
            result.to_crm.pop(key, None)
            result.to_erp.pop(key, None)
            if key in sub.new_base:
                result.new_base[key] = sub.new_base[key]
        result.to_crm.update(sub.to_crm)
        result.to_erp.update(sub.to_erp)
        kept = [c for c in result.conflicts if c.key not in keys]
        for conflict in sub.conflicts:
            author = ctx.names.get(it.authors[conflict.key], "another connection")
            if conflict.winner == "crm":
                text = (f"CRM wins (sync priority: the CRM value came from {author}, which is above {ctx.name})")
            else:
                text = (f"{ctx.name} wins (sync priority: {ctx.name} is above {author}, where the CRM value "
                        "came from)")
            kept.append(type(conflict)(conflict.key, conflict.base, conflict.crm, conflict.erp, conflict.winner,
                                       conflict.value, text, conflict.has_base))
        result.conflicts = kept
        result.skipped_blank += [k for k in sub.skipped_blank if k not in result.skipped_blank]
    return result


# ------------------------------------------------------------------------------------------- ERP writes


def _erp_actor(plan: TypePlan, it: _Item) -> dict:
    # LastModified as last read lets a connector refuse a stale write (ErrorCode CONFLICT) instead of silently
    # overwriting a change made in the ERP since.
    return {"ActorType": plan.actor_type, "ErpKey": it.erp_key, "LastModified": it.actor.get("LastModified") or "",
            "FieldValues": dict(it.result.to_erp)}


def _save(ctx: _Context, plan: TypePlan, items: list[_Item], mode: str) -> None:
    try:
        answer = ctx.call(ctx.client.save_actors, ctx.guid, [_erp_actor(plan, it) for it in items],
                          record_level=True)
    except _RecordLevel as exc:
        if len(items) == 1:
            _save_failed(ctx, plan, items[0], exc.error, mode)
            return
        ctx.count("isolated_batches")
        log.info("SaveActors of %d %s actors failed (%s); retrying one by one", len(items), plan.actor_type,
                 exc.error.error_code or exc.error.user_message)
        for it in items:
            _save_one(ctx, plan, it, mode)
        return
    _take_answer(ctx, plan, items, answer, mode)


def _save_one(ctx: _Context, plan: TypePlan, it: _Item, mode: str) -> None:
    try:
        answer = ctx.call(ctx.client.save_actors, ctx.guid, [_erp_actor(plan, it)], record_level=True)
    except _RecordLevel as exc:
        _save_failed(ctx, plan, it, exc.error, mode)
        return
    _take_answer(ctx, plan, [it], answer, mode)


def _reread(ctx: _Context, plan: TypePlan, it: _Item) -> bool:
    actors = ctx.call(ctx.client.get_actors, ctx.guid, plan.actor_type, [it.erp_key], plan.keys)
    fresh = next((a for a in actors if isinstance(a, dict) and a.get("ErpKey") == it.erp_key), None)
    if fresh is None:
        it.outcome = "broken"
        return False
    it.actor = fresh
    return True


def _save_failed(ctx: _Context, plan: TypePlan, it: _Item, error: ConnectorError, mode: str) -> None:
    code = error.error_code or ""
    if code == STALE_WRITE_CODE and not it.reread:
        # The ERP changed the actor since we read it: never overwrite; read it again and merge once more.
        it.reread = True
        ctx.count("stale_writes")
        if not _reread(ctx, plan, it):
            return
        _plan_item(ctx, plan, it, mode)
        if it.result.to_erp:
            _save_one(ctx, plan, it, mode)
        return
    if code == STALE_WRITE_CODE:
        it.outcome = "deferred"
        return
    if code in GONE_CODES and not _reread(ctx, plan, it):
        return
    it.outcome = "failed"
    it.message = f"{ctx.name} refused the changes: {error.user_message}"
    it.errors.append(("", it.message))


def _take_answer(ctx: _Context, plan: TypePlan, items: list[_Item], answer: list[dict], mode: str) -> None:
    """SaveActors answers the actors as now stored: that is the ERP side of the new base. In a normal sync the
    answer is merged once more, so a value the ERP adjusted (or a field changed in the ERP meanwhile) flows on
    instead of being mistaken for a CRM change later."""
    saved = {a.get("ErpKey"): a for a in answer if isinstance(a, dict)}
    for it in items:
        it.sent = dict(it.result.to_erp)
        actor = saved.get(it.erp_key)
        if actor is None:
            it.new_lm = None  # not confirmed: merge this actor again next time
            continue
        if _merge_mode(mode) != "sync":
            it.new_lm = None  # one-way: the next normal sync merges the record in full once more
            continue
        values = actor.get("FieldValues") or {}
        present = [f for f in plan.fields if f.erp_key in values]
        answer_vals, answer_errors = _erp_values(plan, values, present)
        complete = len(present) == len(plan.fields) and not answer_errors
        expected = {**it.erp_vals, **it.result.to_erp}
        if complete and all(answer_vals[k] == expected.get(k) for k in answer_vals):
            # The ERP stores exactly what we merged and sent: merging its answer again would change nothing.
            it.new_lm = str(actor.get("LastModified") or "") or None
            continue
        rules = [r for r in plan.rules if r.key in answer_vals and r.key not in it.bad and r.key not in answer_errors]
        crm_after = {**it.crm_vals, **it.result.to_crm}
        second = merge(rules, it.result.new_base, crm_after, answer_vals, policy=ctx.policy, crm_rank=ctx.crm_rank,
                       erp_rank=ctx.erp_rank, no_blank=ctx.no_blank, erp_name=ctx.name)
        if second.to_crm:
            crm_write, crm_errors = _to_crm_values(plan, second.to_crm)
            for key in crm_errors:
                second.to_crm.pop(key, None)
                second.new_base[key] = it.result.new_base.get(key)
                it.errors.append((key, f"{plan.by_key[key].crm_label} could not be written to the CRM: "
                                       f"{crm_errors[key]}"))
            it.result.to_crm.update(second.to_crm)
            it.crm_write.update(crm_write)
            it.erp_vals.update({k: answer_vals[k] for k in second.to_crm})
        it.result.new_base = second.new_base
        it.result.conflicts += second.conflicts
        complete = len(present) == len(plan.fields) and not answer_errors and not second.to_erp
        it.new_lm = (str(actor.get("LastModified") or "") or None) if complete else None


# ------------------------------------------------------------------------------------------ CRM writes


def _crm_text(ctx: _Context, f: MappedField, value: object) -> str:
    if value is None:
        return ""
    if f.crm_type == CrmFieldType.LIST:
        return ctx.list_names.get(value, f"#{value}")
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def _erp_text(f: MappedField, value: object) -> str:
    if (value is None or type(value) is str) and f.erp_type in _PLAIN_DISPLAY_TYPES:
        return value or ""  # what values.display answers for a text, label or list value (tested)
    return display(f.erp_type, value)


def _summary(ctx: _Context, it: _Item) -> str:
    if it.outcome == "failed":
        return it.message
    result = it.result
    parts = []
    if it.crm_write:
        parts.append(f"{_plural(len(it.crm_write), 'field')} to the CRM")
    if it.sent:
        parts.append(f"{_plural(len(it.sent), 'field')} to {ctx.name}")
    if result is not None and result.conflicts:
        parts.append(_plural(len(result.conflicts), "conflict"))
    text = "Synced: " + ", ".join(parts) if parts else "In sync"
    if it.errors:
        text += "; " + "; ".join(message for _key, message in it.errors[:3])
    return text[:2000]


def _change_rows(ctx: _Context, plan: TypePlan, it: _Item, now: datetime) -> list[dict]:
    common = {"run_id": ctx.run_id, "connection_id": ctx.connection_id, "link_id": it.link_id,
              "crm_type": plan.crm_type, "crm_id": it.crm_id, "erp_actor_type": plan.actor_type,
              "erp_key": it.erp_key, "at": now}
    rows = []
    result = it.result
    if not (it.crm_write or it.sent or it.errors):
        return rows
    conflicts = {c.key: c for c in (result.conflicts if result else [])}
    for f in plan.fields:
        key = f.erp_key
        conflict = conflicts.get(key)
        if f.crm_key in it.crm_write and key in (result.to_crm if result else {}):
            old = getattr(it.row, f.crm_key)
            new = it.crm_write[f.crm_key]
            rows.append({**common, "direction": "to_crm", "erp_field_key": key, "crm_field_key": f.crm_key,
                         "old_value": _crm_text(ctx, f, old), "new_value": _crm_text(ctx, f, new),
                         "conflict": conflict is not None,
                         "other_value": _erp_text(f, conflict.crm) if conflict else None,
                         "rule": conflict.rule if conflict else ""})
        if key in it.sent:
            old = (it.actor.get("FieldValues") or {}).get(key)
            rows.append({**common, "direction": "to_erp", "erp_field_key": key, "crm_field_key": f.crm_key,
                         "old_value": _erp_text(f, old), "new_value": _erp_text(f, it.sent[key]),
                         "conflict": conflict is not None,
                         "other_value": _erp_text(f, conflict.erp) if conflict else None,
                         "rule": conflict.rule if conflict else ""})
    for key, message in it.errors:
        f = plan.by_key.get(key)
        rows.append({**common, "direction": "error", "erp_field_key": key or "",
                     "crm_field_key": f.crm_key if f else "", "old_value": None, "new_value": None,
                     "conflict": False, "other_value": None, "rule": message[:4000]})
    return rows


class _Contended(Exception):
    """A guarded write of a batch found a link gone or a record changed since it was read: the transaction is
    rolled back and the batch applied again with the links and records checked first."""


def _apply(ctx: _Context, plan: TypePlan, items: list[_Item], mode: str, cursor: str | None = None) -> None:
    """One short transaction for the batch: CRM writes, link bases and markers, the change log, progress."""
    one_way = _merge_mode(mode) != "sync"
    checked = not _conn().dialect.supports_sane_multi_rowcount  # guarded writes need executemany's rowcount
    attempt = 0  # of the database being locked by another writer
    while True:
        try:
            _apply_once(ctx, plan, items, one_way, cursor, checked)
            break
        except _Contended:  # at most once: the checked transaction does not raise it
            db.session.rollback()
            checked = True
            ctx.count("contended_batches")
        except OperationalError as exc:
            db.session.rollback()
            if "locked" not in str(exc).lower() or attempt == 5:
                raise
            time.sleep(random.uniform(0.05, 0.25) * 2 ** attempt)
            attempt += 1
    if ctx.on_progress is not None:
        ctx.on_progress(ctx.done, max(ctx.total, ctx.done), ctx.snapshot_counts())


def _apply_once(ctx: _Context, plan: TypePlan, items: list[_Item], one_way: bool, cursor: str | None = None,
                checked: bool = False) -> None:
    """The batch's transaction. A link deleted or a record changed since the batch read it is left alone (the
    record is merged again by the next run). Unless ``checked``, that is found by the writes themselves: each link
    is written only where its record's ``updated_at`` is still the one read, each record only where it is still
    the one read, and fewer rows written than expected raises _Contended (the caller starts again, checked).
    ``checked`` reads the links and records first, in the transaction (locked on PostgreSQL)."""
    now = utcnow()
    counts_before = dict(ctx.counts)
    done_before, wrote_before = ctx.done, ctx.wrote_crm
    outcomes_before = [(it, it.outcome, it.message) for it in items]
    try:
        # The heartbeat goes first: it takes the write lock for the whole (short) transaction, and tells us when
        # the run was reaped meanwhile.
        alive = _conn().execute(_SQL_BATCH_HEARTBEAT, {
            "run_id": ctx.run_id, "heartbeat_at": now, "progress_done": ctx.done + len(items),
            "progress_total": max(ctx.total, ctx.done + len(items)),
            "connector_seconds": round(ctx.client.seconds, 4), "counts": ctx.snapshot_counts()}).rowcount
        if alive != 1:
            raise RunAbandoned()
        ctx.beat = time.monotonic()
        current: dict[int, datetime] | None = None  # link id -> its record's updated_at, for the links still there
        if checked:
            link_ids = [it.link_id for it in items if it.outcome not in ("gone", "still_broken")]
            conn = _conn()
            current = {}
            for chunk in _chunks(link_ids, _IN_CHUNK):
                current.update(conn.execute(plan.sql_check, {"ids": list(chunk)}).all())
        crm_updates, link_updates, changes = [], [], []
        guarded: list[dict] = []  # link updates that also need the record unchanged
        # Counted in a local dict (keys in order of first use, as ctx.count would add them), added at the end
        tally: dict[str, int] = {"records": len(items)} if items else {}

        def count(key: str, number: int = 1) -> None:
            if number:
                tally[key] = tally.get(key, 0) + number

        for it in items:
            if it.outcome in ("gone", "still_broken") or (current is not None and it.link_id not in current):
                it.outcome = it.outcome or "gone"
                continue
            if it.outcome == "broken":
                message = (f"{ctx.name} no longer has {plan.actor_type} {it.erp_key} (deleted in the ERP?): the "
                           "link is marked broken; the CRM record is kept.")
                it.message = message
                link_updates.append({"id": it.link_id, "status": LinkStatus.BROKEN, "status_message": message,
                                     "last_result": message})
                changes.append({"run_id": ctx.run_id, "connection_id": ctx.connection_id, "link_id": it.link_id,
                                "crm_type": plan.crm_type, "crm_id": it.crm_id, "erp_actor_type": plan.actor_type,
                                "erp_key": it.erp_key, "direction": "error", "erp_field_key": "",
                                "crm_field_key": "", "conflict": False, "rule": message, "at": now})
                count("broken")
                continue
            if it.outcome == "failed":
                failures = it.failures + 1
                link_updates.append({"id": it.link_id, "failures": failures, "retry_at": now + _retry_delay(failures),
                                     "last_result": it.message[:2000]})
                changes += _change_rows(ctx, plan, it, now)
                count("errors")
                continue
            if it.outcome == "deferred" or (current is not None and current[it.link_id] != it.crm_updated_at):
                it.outcome = "deferred"  # the CRM record changed while we worked: the next run merges it again
                count("deferred")
                continue
            result = it.result
            new_updated_at = it.crm_updated_at
            if it.crm_write:
                new_updated_at = max(now, it.crm_updated_at + _MICROSECOND)
                crm_updates.append({"id": it.crm_id, **it.crm_write, "updated_at": new_updated_at,
                                    "seen": it.crm_updated_at})
                ctx.wrote_crm = True
                count("to_crm")
                count("fields_to_crm", len(it.crm_write))
            if it.sent:
                count("to_erp")
                count("fields_to_erp", len(it.sent))
            if result.conflicts:
                count("conflicts", len(result.conflicts))
            if result.skipped_blank:
                count("skipped_blank", len(result.skipped_blank))
            if not it.crm_write and not it.sent:
                count("unchanged")
            values = {"id": it.link_id, "base": result.new_base, "last_synced_at": now,
                      "last_result": _summary(ctx, it), "status": LinkStatus.OK,
                      "status_message": ""}
            if not one_way:
                values["crm_synced_at"] = new_updated_at
                lm = it.new_lm if it.sent else str(it.actor.get("LastModified") or "") or None
                if lm is not None:
                    values["erp_last_modified"] = lm
            parent = it.actor.get("ParentErpKey")
            if isinstance(parent, str) and parent and parent != it.parent_erp_key:
                values["parent_erp_key"] = parent
            if it.errors:
                failures = it.failures + 1
                values.update(failures=failures, retry_at=now + _retry_delay(failures))
                count("errors")
            elif it.failures or it.retry_at is not None:
                values.update(failures=0, retry_at=None)
            if current is None:
                values["seen"] = it.crm_updated_at
                guarded.append(values)
            else:
                link_updates.append(values)
            changes += _change_rows(ctx, plan, it, now)
        for key, number in tally.items():
            ctx.count(key, number)
        for values in link_updates + guarded:
            values["updated_at"] = now  # what Link.updated_at's onupdate would set (one time per batch)
        # links before records: a link's guard compares its record's updated_at as it was
        written = _update_many(Link.__table__, link_updates)
        if current is None:
            record = plan.model.__table__
            written += _update_many(Link.__table__, guarded, record)
            written += _update_many(record, crm_updates, record)
            if written != len(link_updates) + len(guarded) + len(crm_updates):
                raise _Contended()
        else:
            _update_many(plan.model.__table__, crm_updates)
        if changes:
            _insert_many(SyncChange.__table__, changes, _CHANGE_DEFAULTS)
        moved = _write_cursor(ctx, plan.actor_type, cursor) if cursor is not None else None
        ctx.done += len(items)
        db.session.commit()
        if moved is not None:
            ctx.cursors[plan.actor_type] = moved
    except BaseException:  # nothing of this attempt was committed: undo its bookkeeping too
        ctx.counts, ctx.done, ctx.wrote_crm = counts_before, done_before, wrote_before
        for it, outcome, message in outcomes_before:
            it.outcome, it.message = outcome, message
        raise


# ------------------------------------------------------------------------------------- record detail


def _detail(ctx: _Context, plan: TypePlan, it: _Item) -> RecordDetail:
    detail = RecordDetail(outcome=it.outcome or "ok")
    if it.outcome in ("broken", "still_broken", "gone", "deferred", "failed"):
        if it.outcome == "failed":
            detail.errors.append(it.message)
        return detail
    result = it.result
    if result is None:
        return detail
    for f in plan.fields:
        if f.crm_key in it.crm_write and f.erp_key in result.to_crm:
            detail.to_crm.append(ChangeLine(f.crm_label or f.erp_label, _crm_text(ctx, f, getattr(it.row, f.crm_key)),
                                            _crm_text(ctx, f, it.crm_write[f.crm_key])))
        if f.erp_key in it.sent:
            detail.to_erp.append(ChangeLine(f.erp_label or f.erp_key,
                                            _erp_text(f, (it.actor.get("FieldValues") or {}).get(f.erp_key)),
                                            _erp_text(f, it.sent[f.erp_key])))
    for conflict in result.conflicts:
        f = plan.by_key[conflict.key]
        detail.conflicts.append(ConflictLine(f.crm_label or f.erp_label, _erp_text(f, conflict.crm),
                                             _erp_text(f, conflict.erp),
                                             "CRM" if conflict.winner == "crm" else ctx.name, conflict.rule))
    detail.errors = [message for _key, message in it.errors]
    detail.skipped_blank = [plan.by_key[k].crm_label for k in result.skipped_blank if k in plan.by_key]
    return detail


# ------------------------------------------------------------------------------------- cycles and the hub


def pending_crm_changes(connection_id: int) -> bool:
    """Does any linked record of the connection have a CRM change its link has not synced yet?"""
    connection = db.session.get(Connection, connection_id)
    if connection is None:
        return False
    for config in connection.actor_types:
        if not (config.is_active and config.supported):
            continue
        model = CRM_MODELS[config.crm_type]
        stmt = (select(Link.id).join(model, model.id == Link.crm_id)
                .where(Link.connection_id == connection_id, Link.erp_actor_type == config.erp_actor_type,
                       Link.crm_type == config.crm_type, Link.status == LinkStatus.OK,
                       or_(Link.crm_synced_at.is_(None), model.updated_at > Link.crm_synced_at)).limit(1))
        mark = _parse_mark((connection.crm_cursors or {}).get(config.erp_actor_type))
        if mark is None:
            found = db.session.scalar(stmt)
        else:  # only the records saved since the connection's CRM mark (see _crm_changes)
            stmt = stmt.where(Link.crm_id.in_(bindparam("ids", expanding=True)))
            found = next((found for ids in _records_saved_since(model, mark, _IN_CHUNK)
                          if (found := db.session.scalar(stmt, {"ids": ids})) is not None), None)
        if found is not None:
            db.session.commit()
            return True
    db.session.commit()
    return False


def execute_cycle(run_ids: Sequence[int], *, on_progress=None, followups: bool = True) -> list[RunOutcome]:
    """Execute runs one after the other, in the order given (``dispatch_due`` gives sync-priority order), then
    the hub follow-ups: a connection that ran before another run wrote ERP changes into the CRM (or did not run
    at all) gets a follow-up sync when some of its linked records now have changes to take — so a change pulled
    from one ERP reaches the other connections in the same cycle. After a Resync from ERP connection the other
    connections get a one-way resync of the records it changed."""
    outcomes = [execute_run(run_id, on_progress=on_progress) for run_id in run_ids]
    if followups:
        outcomes += run_followups(outcomes, on_progress)
    return outcomes


def run_followups(outcomes: list[RunOutcome], on_progress=None) -> list[RunOutcome]:
    """The hub follow-ups of a cycle (see ``execute_cycle``); returns their outcomes."""
    writers = [(index, o) for index, o in enumerate(outcomes) if o.wrote_crm and o.connection_id]
    if not writers:
        return []
    last_index = {o.connection_id: index for index, o in enumerate(outcomes) if o.connection_id}
    requests: list[tuple[int, str, dict]] = []
    for connection in runs.syncable_connections():
        after = [(i, o) for i, o in writers if i > last_index.get(connection.id, -1)
                 and o.connection_id != connection.id]
        if not after:
            continue
        resync = [o for _i, o in after if o.kind == RunKind.RESYNC_FROM_ERP and o.started_at is not None]
        if resync:
            since = min(o.started_at for o in resync)
            requests.append((connection.id, RunKind.RESYNC_FROM_CRM,
                             {"since": since.isoformat(), "source_run_id": resync[0].run_id,
                              "no_blank": bool(_run_option(resync[0].run_id, "no_blank"))}))
        elif pending_crm_changes(connection.id):
            requests.append((connection.id, RunKind.SYNC, {}))
    result = []
    for connection_id, kind, options in requests:
        try:
            run, created = runs.request_run(connection_id, kind=kind, trigger="hub", requested_by="hub",
                                            options=options)
        except runs.RunError:
            continue
        if created:
            result.append(execute_run(run.id, on_progress=on_progress))
    return result


def _run_option(run_id: int, name: str):
    run = db.session.get(SyncRun, run_id)
    value = (run.options or {}).get(name) if run is not None else None
    db.session.commit()
    return value


def _submit_later(run_ids: Iterable[int]) -> None:
    """Hand runs to this process's scheduler if it has one; otherwise the dispatcher sweep picks them up."""
    try:
        from jobs.scheduler import submit_run
    except ImportError:  # pragma: no cover
        return
    for run_id in run_ids:
        submit_run(run_id)


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
            parts.append(f"{_plural(len(detail.to_crm), 'field')} updated in the CRM")
        if detail.to_erp:
            parts.append(f"{_plural(len(detail.to_erp), 'field')} updated in {name}")
        if detail.conflicts:
            parts.append(f"{_plural(len(detail.conflicts), 'conflict')} settled")
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
        _submit_later(queued)
    return RecordSyncResult(run_id=run_id, to_crm=detail.to_crm, to_erp=detail.to_erp, conflicts=detail.conflicts,
                            message=message, ok=ok, warning=outcome.warning, errors=detail.errors, broken=broken)


__all__ = ["ChangeLine", "ConflictLine", "RecordSyncResult", "RunOutcome", "execute_cycle", "execute_run",
           "pending_crm_changes", "register_kind", "run_followups", "stamp_key", "sync_record"]

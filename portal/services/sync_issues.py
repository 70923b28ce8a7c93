"""Open sync issues: the one definition of "a record with an open sync problem", its reason and its text, and the
inbox query (Settings → Sync → Issues). The health block (``sync_health``) and the record badges
(``record_sync_status``) count through here.

**Open issue.** A link (on a connection that is not deleted) is an open issue when

* it is **broken** (``Link.status == broken``: the ERP no longer returns its actor), or
* its last sync of the record **failed** or reported errors (``Link.failures > 0``; the engine sets it with
  ``retry_at`` and clears both when a later sync of the record succeeds).

It is derived from the link's current state only, so an issue closes itself when a later run succeeds for the
record; the history stays in the change log. Nothing here calls a connector.

**Issue text** — what the problem is, as the engine recorded it on the link: the broken link's message, or the
link's last result without the sync summary in front ("Synced: 1 field to the CRM; E-mail could not be written
…" → "E-mail could not be written …"). It is also the **fingerprint** of an ignored issue: *Ignore* stores it
(``SyncIssueIgnore``), and the issue stays hidden while the text is the same; any other error shows it again.
Both are SQL expressions, so filters, counts and pages are computed by the database.

**Reason** — a category derived from the text (the engine's messages, ``portal/services/sync/record_merge.py``,
``erp_write.py``, ``parents.py``, ``apply.py``), first match wins: broken link; the ERP refused the write; parent
missing; value the CRM refuses; value the ERP cannot take; value that cannot be read; other.

**Open since** — the first error the change log holds for the link after the last value that went through for it
(the log does not record syncs that changed nothing, so a record that failed, recovered with nothing to write and
failed again counts from the first failure); the link's last change when the log has none.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Integer, and_, case, func, literal, literal_column, or_, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement

from portal.database import utcnow
from portal.extensions import db
from portal.models import CRM_MODELS, Connection, Link, LinkStatus, SyncChange, SyncIssueIgnore

PAGE_SIZE = 25
EPOCH = datetime(1970, 1, 1)


@dataclass(frozen=True)
class Reason:
    key: str
    label: str
    hint: str  # what to do


REASONS = (
    Reason("broken", "Broken link",
           "The ERP no longer has the record's actor (deleted there?). Uncouple it, or connect the record again "
           "from its ERP tab."),
    Reason("erp_refused", "The ERP refused the write",
           "The ERP refused the record's changes for the reason shown. Fix the record in the ERP or the CRM, then "
           "Retry now."),
    Reason("parent", "Parent missing",
           "The contact's company (or the person's parent in the ERP) is not linked on this connection. Link the "
           "company first, then Retry now."),
    Reason("crm_refused", "Value the CRM refuses",
           "An ERP value breaks a CRM rule (an e-mail address, a required field, a list item). Fix it in the ERP, "
           "then Retry now."),
    Reason("erp_value", "Value the ERP cannot take",
           "A CRM value does not fit the ERP field (too long, wrong kind, blank where it is required). Fix it in "
           "the CRM, then Retry now."),
    Reason("unreadable", "Value that cannot be read",
           "A value could not be converted (e.g. a list item without a list mapping). Fix the list mapping or the "
           "value, then Retry now."),
    Reason("other", "Other sync error", "Read the message and the record's change log, then Retry now."),
)
REASON_BY_KEY = {reason.key: reason for reason in REASONS}

AGES = {"1h": timedelta(hours=1), "1d": timedelta(days=1), "7d": timedelta(days=7), "30d": timedelta(days=30)}
AGE_LABELS = {"1h": "Older than 1 hour", "1d": "Older than 1 day", "7d": "Older than 1 week",
              "30d": "Older than 30 days"}


# --------------------------------------------------------------------------------------------- SQL expressions


class _position(FunctionElement):
    """1-based position of a text in another (0 when absent): ``instr`` on SQLite, ``strpos`` on PostgreSQL."""

    type = Integer()
    inherit_cache = True


@compiles(_position)
def _position_default(element, compiler, **kw):
    return f"instr({compiler.process(element.clauses, **kw)})"


@compiles(_position, "postgresql")
def _position_postgresql(element, compiler, **kw):
    return f"strpos({compiler.process(element.clauses, **kw)})"


def open_condition():
    """SQL: the link has an open issue (broken, or its last sync of the record failed or reported errors)."""
    return or_(Link.status == LinkStatus.BROKEN, Link.failures > 0)


def has_error_condition():
    """SQL: the link's last sync of the record failed or reported errors (an open issue that is not broken)."""
    return and_(Link.status != LinkStatus.BROKEN, Link.failures > 0)


def is_open(link: Link) -> bool:
    """:func:`open_condition` for a loaded link."""
    return link.status == LinkStatus.BROKEN or (link.failures or 0) > 0


def issue_text():
    """SQL: the issue's text (and an ignored issue's fingerprint), see the module docstring."""
    result = Link.last_result
    semicolon = _position(result, "; ")
    return case(
        (Link.status == LinkStatus.BROKEN, Link.status_message),
        (and_(or_(result.like("Synced: %"), result.like("In sync;%")), semicolon > 0),
         func.substr(result, semicolon + 2)),
        else_=result)


def reason_of(text):
    """SQL: the reason key of an issue whose text is ``text`` (first match wins)."""
    return case(
        (Link.status == LinkStatus.BROKEN, "broken"),
        (text.like("% refused the changes: %"), "erp_refused"),
        (or_(text.like("%is not linked to%"), text.like("% kept the person under %")), "parent"),
        (text.like("%could not be written to the CRM: %"), "crm_refused"),
        (text.like("%could not be written to %"), "erp_value"),
        (text.like("% in %: %"), "unreadable"),
        else_="other")


def _ordinal(reason):
    return case({r.key: index for index, r in enumerate(REASONS)}, value=reason, else_=len(REASONS))


def ignored_condition(text):
    """SQL: the issue is ignored (an ignore of this link with this very text)."""
    return (select(SyncIssueIgnore.id).where(SyncIssueIgnore.link_id == Link.id, SyncIssueIgnore.fingerprint == text)
            .correlate(Link).exists())


def open_since():
    """SQL: when the issue began (see the module docstring)."""
    this_link = (SyncChange.crm_type == Link.crm_type, SyncChange.crm_id == Link.crm_id,
                 SyncChange.link_id == Link.id)
    last_flow = (select(func.max(SyncChange.at)).where(*this_link, SyncChange.direction != "error")
                 .correlate(Link).scalar_subquery())
    first_error = (select(func.min(SyncChange.at))
                   .where(*this_link, SyncChange.direction == "error",
                          SyncChange.at >= func.coalesce(last_flow, literal(EPOCH)))
                   .correlate(Link).scalar_subquery())
    return func.coalesce(first_error, Link.updated_at)


def _live():
    """The links of connections that are not deleted."""
    return Link.connection_id.in_(select(Connection.id).where(Connection.deleted.is_(False)).correlate(None))


# ----------------------------------------------------------------------------------------------------- the inbox


@dataclass
class IssueFilter:
    connection_id: int | None = None
    crm_type: str | None = None
    reason: str | None = None
    age: str | None = None  # a key of AGES
    ignored: bool = False  # the ignored issues instead of the open ones


@dataclass
class Issue:
    link_id: int
    connection_id: int
    connection_name: str
    crm_type: str
    crm_id: int
    erp_actor_type: str
    erp_key: str
    status: str
    failures: int
    retry_at: datetime | None
    text: str
    reason: Reason
    since: datetime | None
    ignored_by: str = ""
    ignored_at: datetime | None = None
    record_name: str = ""

    @property
    def broken(self) -> bool:
        return self.status == LinkStatus.BROKEN


@dataclass
class IssuePage:
    """One page of issues (the names the ``pager`` macro expects), grouped by reason in order."""

    items: list[Issue]
    page: int
    per_page: int
    total: int
    by_reason: list[tuple[Reason, int]] = field(default_factory=list)  # every reason with issues, ignoring the
    # reason filter (for the summary)

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.per_page))

    @property
    def has_prev(self) -> bool:
        return self.page > 1

    @property
    def has_next(self) -> bool:
        return self.page < self.pages

    @property
    def prev_num(self) -> int:
        return self.page - 1

    @property
    def next_num(self) -> int:
        return self.page + 1

    def groups(self) -> list[tuple[Reason, list[Issue]]]:
        grouped: dict[str, list[Issue]] = {}
        for issue in self.items:
            grouped.setdefault(issue.reason.key, []).append(issue)
        return [(REASON_BY_KEY[key], issues) for key, issues in grouped.items()]


def _where(filters: IssueFilter, text, reason, since, now: datetime, *, with_reason: bool = True) -> list:
    conditions = [open_condition(), _live()]
    ignored = ignored_condition(text)
    conditions.append(ignored if filters.ignored else ~ignored)
    if filters.connection_id:
        conditions.append(Link.connection_id == filters.connection_id)
    if filters.crm_type:
        conditions.append(Link.crm_type == filters.crm_type)
    if with_reason and filters.reason:
        conditions.append(reason == filters.reason)
    if filters.age in AGES:
        conditions.append(since <= now - AGES[filters.age])
    return conditions


def issue_page(filters: IssueFilter, page: int | str | None = 1, per_page: int = PAGE_SIZE,
               now: datetime | None = None) -> IssuePage:
    """The issues matching ``filters``, one page, grouped by reason (reason order, then the oldest first)."""
    now = now or utcnow()
    text = issue_text()
    reason = reason_of(text)
    since = open_since()
    where = _where(filters, text, reason, since, now)
    total = db.session.scalar(select(func.count()).select_from(Link).where(*where)) or 0
    # grouped by the output column's name: PostgreSQL takes a CASE with bound parameters in the GROUP BY for another
    # expression than the same CASE in the select list
    counts = dict(db.session.execute(
        select(reason.label("reason_key"), func.count()).select_from(Link)
        .where(*_where(filters, text, reason, since, now, with_reason=False))
        .group_by(literal_column("reason_key"))).all())
    try:
        number = int(page or 1)
    except (TypeError, ValueError):
        number = 1
    pages = max(1, -(-total // per_page))
    number = min(max(1, number), pages)
    stmt = (select(Link.id, Link.connection_id, Connection.name, Link.crm_type, Link.crm_id, Link.erp_actor_type,
                   Link.erp_key, Link.status, Link.failures, Link.retry_at, text.label("text"),
                   reason.label("reason"), since.label("since"), SyncIssueIgnore.user_label, SyncIssueIgnore.at)
            .join(Connection, Connection.id == Link.connection_id)
            .outerjoin(SyncIssueIgnore, SyncIssueIgnore.link_id == Link.id)
            .where(*where)
            .order_by(_ordinal(reason), since, Link.id)
            .limit(per_page).offset((number - 1) * per_page))
    items = []
    for row in db.session.execute(stmt):
        ignored = filters.ignored
        items.append(Issue(
            link_id=row[0], connection_id=row[1], connection_name=row[2], crm_type=row[3], crm_id=row[4],
            erp_actor_type=row[5], erp_key=row[6], status=row[7], failures=row[8] or 0, retry_at=row[9],
            text=row.text or "", reason=REASON_BY_KEY.get(row.reason, REASONS[-1]), since=_as_datetime(row.since),
            ignored_by=(row[13] or "") if ignored else "", ignored_at=row[14] if ignored else None))
    names = record_names((issue.crm_type, issue.crm_id) for issue in items)
    for issue in items:
        issue.record_name = names.get((issue.crm_type, issue.crm_id), f"#{issue.crm_id}")
    db.session.commit()
    return IssuePage(items=items, page=number, per_page=per_page, total=total,
                     by_reason=[(r, counts[r.key]) for r in REASONS if counts.get(r.key)])


def _as_datetime(value) -> datetime | None:
    """A time from a COALESCE of columns: SQLite answers it as text."""
    if value is None or isinstance(value, datetime):
        return value
    try:
        return datetime.fromisoformat(str(value))
    except ValueError:
        return None


def record_names(keys: Iterable[tuple[str, int]]) -> dict[tuple[str, int], str]:
    """Display names of CRM records by (CRM type, id): one query per CRM type."""
    wanted: dict[str, set[int]] = {}
    for crm_type, crm_id in keys:
        wanted.setdefault(crm_type, set()).add(crm_id)
    names = {}
    for crm_type, ids in wanted.items():
        model = CRM_MODELS.get(crm_type)
        if model is None:
            continue
        for record in db.session.scalars(select(model).where(model.id.in_(sorted(ids)))):
            names[(crm_type, record.id)] = record.display_name
    return names


# --------------------------------------------------------------------------------------------------- the counts


@dataclass
class IssueCounts:
    errors: int = 0  # records whose last sync failed or reported errors (not ignored)
    broken: int = 0  # broken links (not ignored)
    ignored: int = 0

    @property
    def open(self) -> int:
        return self.errors + self.broken


def counts_by_connection() -> dict[int, IssueCounts]:
    """Open issues per connection, in one grouped query: {connection id: IssueCounts}. The caller ends the read
    transaction (nothing is committed here, so the objects it has loaded stay loaded)."""
    text = issue_text()
    ignored = ignored_condition(text)
    broken = Link.status == LinkStatus.BROKEN
    rows = db.session.execute(
        select(Link.connection_id,
               func.sum(case((and_(~broken, ~ignored), 1), else_=0)),
               func.sum(case((and_(broken, ~ignored), 1), else_=0)),
               func.sum(case((ignored, 1), else_=0)))
        .where(open_condition(), _live()).group_by(Link.connection_id)).all()
    return {row[0]: IssueCounts(int(row[1] or 0), int(row[2] or 0), int(row[3] or 0)) for row in rows}


def texts_of(link_ids: Iterable[int]) -> dict[int, str]:
    """The issue text of each of these links that has an open issue: {link id: text}."""
    ids = sorted(set(link_ids))
    if not ids:
        return {}
    return dict(db.session.execute(select(Link.id, issue_text()).where(Link.id.in_(ids), open_condition())).all())

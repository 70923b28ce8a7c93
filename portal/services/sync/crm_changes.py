"""The CRM side of a run (part B): records saved since the connection's CRM mark, and due retries."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from sqlalchemy import bindparam, func, or_, select, update

from portal.database import utcnow
from portal.extensions import db
from portal.models import CRM_MODELS, Connection, Link, LinkStatus
from portal.services.sync.batch import process_batch
from portal.services.sync.bulk import core_connection
from portal.services.sync.context import CRM_LOOKBACK, IN_CHUNK, GcPaused, RunContext, chunks
from portal.services.sync.plan import LINK_COLUMNS, BatchItem, TypePlan


def crm_changes(ctx: RunContext, plan: TypePlan, processed: set[int]) -> None:
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
    mark = parse_mark(ctx.crm_cursors.get(plan.actor_type))
    where = (Link.connection_id == ctx.connection_id, Link.status == LinkStatus.OK)
    unsynced = or_(Link.crm_synced_at.is_(None), model.updated_at > Link.crm_synced_at)
    if mark is None:
        unsynced_or_due = or_(unsynced, Link.retry_at <= started)
        changed = plan.sql_linked.where(*where, unsynced_or_due)
        # the same rows counted without a subquery of all their columns
        pending = core_connection().scalar(select(func.count()).select_from(Link).join(model, model.id == Link.crm_id)
                                 .where(Link.erp_actor_type == plan.actor_type, Link.crm_type == plan.crm_type,
                                        *where, unsynced_or_due)) or 0
        ctx.total += max(0, pending - len(processed))
        for rows in pages_by_link(ctx, changed):
            _crm_batch(ctx, plan, rows, processed)
    else:
        # Links whose retry is due: found by the retry_at index alone (with the connection in the same WHERE,
        # SQLite would rather walk all of the connection's links), then read by id.
        due = [row[0] for row in core_connection().execute(
            select(Link.id, Link.connection_id, Link.erp_actor_type, Link.crm_type, Link.status)
            .where(Link.retry_at <= started))
            if row[1:] == (ctx.connection_id, plan.actor_type, plan.crm_type, LinkStatus.OK)]
        db.session.commit()
        by_id = plan.sql_linked.where(Link.id.in_(bindparam("ids", expanding=True)))
        for ids in chunks(due, ctx.batch_size):
            rows = core_connection().execute(by_id, {"ids": list(ids)}).all()
            db.session.commit()
            _crm_batch(ctx, plan, rows, processed, count_total=True)
        # By the link's record key (connection, CRM type, record id: its unique index) with the actor type
        # checked here: asked for in SQL, it makes SQLite walk every link of the actor type instead.
        saved = (select(*LINK_COLUMNS, *plan.columns, Link.erp_actor_type)
                 .join(model, model.id == Link.crm_id)
                 .where(*where, Link.crm_type == plan.crm_type, Link.crm_id.in_(bindparam("ids", expanding=True)),
                        unsynced))
        for ids in records_saved_since(model, mark, ctx.batch_size, until):
            ids = [record_id for record_id in ids if record_id not in processed]  # e.g. written by part A
            if not ids:
                continue
            rows = [row[:-1] for row in core_connection().execute(saved, {"ids": ids}).all() if row[-1] == plan.actor_type]
            db.session.commit()
            _crm_batch(ctx, plan, rows, processed, count_total=True)
    _set_crm_mark(ctx, plan.actor_type, until - CRM_LOOKBACK)


def _crm_batch(ctx: RunContext, plan: TypePlan, rows: Sequence, processed: set[int], count_total: bool = False) -> None:
    items = [BatchItem(row, plan) for row in rows if row[1] not in processed]  # row[1]: Link.crm_id
    if not items:
        return
    processed.update(it.crm_id for it in items)  # a record saved again later in the pass is not merged twice
    ctx.count("crm_changes", len(items))
    if count_total:
        ctx.total += len(items)
    process_batch(ctx, plan, items, "sync")


def pages_by_link(ctx: RunContext, stmt) -> Iterable[list]:
    """The rows of ``stmt`` (links first) in pages of the batch size, keyset-paged by link id; no transaction is
    left open between pages."""
    page = stmt.where(Link.id > bindparam("last_id")).order_by(Link.id).limit(ctx.batch_size)
    last_id = 0
    while True:
        with GcPaused():
            rows = core_connection().execute(page, {"last_id": last_id}).all()
            db.session.commit()
        if not rows:
            return
        last_id = rows[-1][0]  # Link.id
        yield rows


def records_saved_since(model, mark: datetime, size: int, until: datetime | None = None) -> Iterable[list[int]]:
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
        rows = core_connection().execute(stmt, {"after_at": after_at, "after_id": after_id}).all()
        db.session.commit()
        if not rows:
            return
        after_id, after_at = rows[-1]
        yield [row[0] for row in rows]


def parse_mark(text: object) -> datetime | None:
    try:
        return datetime.fromisoformat(str(text)) if text else None
    except ValueError:
        return None  # unreadable: look at every link once more


def _set_crm_mark(ctx: RunContext, actor_type: str, moment: datetime) -> None:
    if ctx.dry_run:  # a preview moves nothing: the next real run looks at the same records
        return
    value = moment.isoformat()
    conn = core_connection()
    marks = dict(conn.scalar(select(Connection.crm_cursors).where(Connection.id == ctx.connection_id)) or {})
    marks[actor_type] = value
    conn.execute(update(Connection).where(Connection.id == ctx.connection_id).values(crm_cursors=marks)
                 .execution_options(synchronize_session=False))
    db.session.commit()
    ctx.crm_cursors[actor_type] = value


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
        mark = parse_mark((connection.crm_cursors or {}).get(config.erp_actor_type))
        if mark is None:
            found = db.session.scalar(stmt)
        else:  # only the records saved since the connection's CRM mark (see crm_changes)
            stmt = stmt.where(Link.crm_id.in_(bindparam("ids", expanding=True)))
            found = next((found for ids in records_saved_since(model, mark, IN_CHUNK)
                          if (found := db.session.scalar(stmt, {"ids": ids})) is not None), None)
        if found is not None:
            db.session.commit()
            return True
    db.session.commit()
    return False

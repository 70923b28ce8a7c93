"""The journal of ERP writes: what a batch is about to overwrite in the ERP is on record before SaveActors is sent.

A batch's CRM writes and its change log are applied in one transaction *after* its SaveActors; a process killed in
between (or a run that fails there) would leave the ERP changed with no record of the values it overwrote — the
losing side of a conflict included. So, before each SaveActors, the change-log rows of its ERP writes are written
to ``SyncJournal`` and committed; the transaction that applies the batch deletes them (it writes the confirmed
rows itself). A journal row that is still there belongs to a run that stopped in between: the next run of the
connection, or the failed run itself on its way out, turns it into change-log rows marked as not confirmed.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import delete, select

from portal.database import utcnow
from portal.extensions import db
from portal.models import SyncChange, SyncJournal
from portal.services.sync.bulk import core_connection, insert_many
from portal.services.sync.changelog import CHANGE_DEFAULTS, planned_erp_rows
from portal.services.sync.context import RunContext
from portal.services.sync.plan import BatchItem, TypePlan

log = logging.getLogger(__name__)

NOT_CONFIRMED = ("not confirmed: the run stopped after this change was sent (or about to be sent) to {name}, "
                 "before it recorded the answer")


def write_intent(ctx: RunContext, plan: TypePlan, items: list[BatchItem]) -> None:
    """Journal the ERP writes of ``items`` (the caller's connector call commits it before sending)."""
    if ctx.dry_run:
        raise RuntimeError("a dry run writes no journal")  # batch.py stops a dry run before any write
    now = utcnow()
    rows = []
    for it in items:
        rows += planned_erp_rows(ctx, plan, it, now)
    if not rows:
        return
    for row in rows:
        row["at"] = now.isoformat()
    result = core_connection().execute(SyncJournal.__table__.insert().values(
        run_id=ctx.run_id, connection_id=ctx.connection_id, rows=rows, at=now))
    ctx.journal_ids.append(result.inserted_primary_key[0])


def clear_intents(ctx: RunContext) -> None:
    """In the transaction that applies the batch: its journal rows are done with (the caller commits)."""
    if ctx.journal_ids:
        core_connection().execute(delete(SyncJournal).where(SyncJournal.id.in_(ctx.journal_ids)))


def recover(connection_id: int, name: str, *, except_run_id: int | None = None) -> int:
    """Turn the journal of runs that stopped between a SaveActors and its batch's transaction into change-log
    rows (marked not confirmed); returns how many rows were recorded. Runs under the connection's run lock."""
    stmt = select(SyncJournal).where(SyncJournal.connection_id == connection_id).order_by(SyncJournal.id)
    if except_run_id is not None:
        stmt = stmt.where((SyncJournal.run_id != except_run_id) | SyncJournal.run_id.is_(None))
    entries = list(db.session.scalars(stmt))
    if not entries:
        db.session.commit()
        return 0
    note = NOT_CONFIRMED.format(name=name)
    rows = []
    for entry in entries:
        for row in entry.rows or []:
            rule = row.get("rule") or ""
            known = {key: row[key] for key in row if key in SyncChange.__table__.c and key != "id"}
            rows.append({**known, "run_id": entry.run_id, "connection_id": connection_id,
                         "at": _parse(row.get("at")) or entry.at,
                         "rule": f"{rule} ({note})" if rule else note.capitalize()})
    insert_many(SyncChange.__table__, rows, CHANGE_DEFAULTS)
    db.session.execute(delete(SyncJournal).where(SyncJournal.id.in_([entry.id for entry in entries])))
    db.session.commit()
    log.warning("recorded %d journaled ERP writes of stopped runs on connection %s", len(rows), connection_id)
    return len(rows)


def _parse(text: object) -> datetime | None:
    try:
        return datetime.fromisoformat(str(text)) if text else None
    except ValueError:
        return None

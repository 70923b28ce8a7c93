"""The connection's ERP feed cursors: moved forward only, in the transaction that applies what was read."""

from __future__ import annotations

from sqlalchemy import bindparam, select, update

from portal.extensions import db
from portal.models import Connection
from portal.services.sync.bulk import core_connection
from portal.services.sync.context import RunContext, stamp_key

_SQL_CURSORS = select(Connection.cursors).where(Connection.id == bindparam("connection_id"))
_SQL_SET_CURSORS = (update(Connection).where(Connection.id == bindparam("connection_id"))
                    .values(cursors=bindparam("cursors", type_=Connection.cursors.type))
                    .execution_options(synchronize_session=False))


def advance_cursor(ctx: RunContext, actor_type: str, stamp: str) -> None:
    if ctx.dry_run:  # a preview moves nothing
        return
    if write_cursor(ctx, actor_type, stamp) is not None:
        db.session.commit()
        ctx.cursors[actor_type] = stamp


def write_cursor(ctx: RunContext, actor_type: str, stamp: str) -> str | None:
    """Move the stored cursor of ``actor_type`` forward to ``stamp`` in the current transaction (never backwards;
    the caller commits). None when ``stamp`` is not later than the cursor this run already stored (or in a dry
    run, which never writes it)."""
    if ctx.dry_run:
        return None
    current = ctx.cursors.get(actor_type)
    if current and stamp_key(stamp) <= stamp_key(current):
        return None
    conn = core_connection()
    cursors = dict(conn.scalar(_SQL_CURSORS, {"connection_id": ctx.connection_id}) or {})
    if cursors.get(actor_type) and stamp_key(cursors[actor_type]) >= stamp_key(stamp):
        return stamp
    cursors[actor_type] = stamp
    conn.execute(_SQL_SET_CURSORS, {"connection_id": ctx.connection_id, "cursors": cursors})
    return stamp

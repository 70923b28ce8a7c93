"""The one short database transaction that applies a batch: CRM writes, link bases and markers, the log."""

from __future__ import annotations

import logging
import random
import time
from datetime import datetime

from sqlalchemy import bindparam, update
from sqlalchemy.exc import OperationalError

from portal.database import utcnow
from portal.extensions import db
from portal.models import Link, LinkStatus, RunStatus, SyncChange, SyncRun
from portal.services.sync import journal
from portal.services.sync.bulk import core_connection, insert_many, update_many
from portal.services.sync.changelog import CHANGE_DEFAULTS, change_rows, record_summary
from portal.services.sync.context import IN_CHUNK, MICROSECOND, RunAbandoned, RunContext, chunks, retry_delay
from portal.services.sync.cursors import write_cursor
from portal.services.sync.plan import BatchItem, TypePlan
from portal.services.sync.record_merge import merge_mode

log = logging.getLogger(__name__)


_SQL_BATCH_HEARTBEAT = (
    update(SyncRun).where(SyncRun.id == bindparam("run_id"), SyncRun.status == RunStatus.RUNNING)
    .values(heartbeat_at=bindparam("heartbeat_at"), progress_done=bindparam("progress_done"),
            progress_total=bindparam("progress_total"), connector_seconds=bindparam("connector_seconds"),
            counts=bindparam("counts", type_=SyncRun.counts.type))
    .execution_options(synchronize_session=False))


class _Contended(Exception):
    """A guarded write of a batch found a link gone or a record changed since it was read: the transaction is
    rolled back and the batch applied again with the links and records checked first."""


def apply_batch(ctx: RunContext, plan: TypePlan, items: list[BatchItem], mode: str, cursor: str | None = None) -> None:
    """One short transaction for the batch: CRM writes, link bases and markers, the change log, progress."""
    if ctx.dry_run:
        raise RuntimeError("a dry run applies nothing")  # batch.py hands a dry run's batch to preview.report
    one_way = merge_mode(mode) != "sync"
    checked = not core_connection().dialect.supports_sane_multi_rowcount  # guarded writes need executemany's rowcount
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


def _apply_once(ctx: RunContext, plan: TypePlan, items: list[BatchItem], one_way: bool, cursor: str | None = None,
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
        alive = core_connection().execute(_SQL_BATCH_HEARTBEAT, {
            "run_id": ctx.run_id, "heartbeat_at": now, "progress_done": ctx.done + len(items),
            "progress_total": max(ctx.total, ctx.done + len(items)),
            "connector_seconds": round(ctx.client.seconds, 4), "counts": ctx.snapshot_counts()}).rowcount
        if alive != 1:
            raise RunAbandoned()
        ctx.beat = time.monotonic()
        current: dict[int, datetime] | None = None  # link id -> its record's updated_at, for the links still there
        if checked:
            link_ids = [it.link_id for it in items if it.outcome not in ("gone", "still_broken")]
            conn = core_connection()
            current = {}
            for chunk in chunks(link_ids, IN_CHUNK):
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
                link_updates.append({"id": it.link_id, "failures": failures, "retry_at": now + retry_delay(failures),
                                     "last_result": it.message[:2000]})
                changes += change_rows(ctx, plan, it, now)
                count("errors")
                continue
            if it.outcome == "deferred" or (current is not None and current[it.link_id] != it.crm_updated_at):
                it.outcome = "deferred"  # the CRM record changed while we worked: the next run merges it again
                count("deferred")
                continue
            result = it.result
            new_updated_at = it.crm_updated_at
            if it.crm_write:
                new_updated_at = max(now, it.crm_updated_at + MICROSECOND)
                crm_updates.append({"id": it.crm_id, **it.crm_write, "updated_at": new_updated_at,
                                    "seen": it.crm_updated_at})
                ctx.wrote_crm = True
                count("to_crm")
                count("fields_to_crm", len(it.crm_write))
            moved = it.parent is not None and it.parent.sent  # the person moved to another parent in the ERP
            if it.sent or moved:
                count("to_erp")
                count("fields_to_erp", len(it.sent) + moved)
            if result.conflicts or (it.parent is not None and it.parent.conflict is not None):
                count("conflicts", len(result.conflicts) + (it.parent is not None and it.parent.conflict is not None))
            if result.skipped_blank:
                count("skipped_blank", len(result.skipped_blank))
            if not it.crm_write and not it.sent and not moved:
                count("unchanged")
            else:  # a settled conflict is here too: its winner's value was written to the loser's side
                count("changed")
            values = {"id": it.link_id, "base": result.new_base, "last_synced_at": now,
                      "last_result": record_summary(ctx, it), "status": LinkStatus.OK,
                      "status_message": ""}
            if not one_way:
                values["crm_synced_at"] = new_updated_at
                lm = it.new_lm if it.sent or moved else str(it.actor.get("LastModified") or "") or None
                if lm is not None:
                    values["erp_last_modified"] = lm
            if it.parent is not None:  # the parent both sides agree on now
                if (it.parent.new_base or None) != (it.parent_erp_key or None):
                    values["parent_erp_key"] = it.parent.new_base
            else:
                parent = it.actor.get("ParentErpKey")
                if isinstance(parent, str) and parent and parent != it.parent_erp_key:
                    values["parent_erp_key"] = parent
            if it.errors:
                failures = it.failures + 1
                values.update(failures=failures, retry_at=now + retry_delay(failures))
                count("errors")
            elif it.failures or it.retry_at is not None:
                values.update(failures=0, retry_at=None)
            if current is None:
                values["seen"] = it.crm_updated_at
                guarded.append(values)
            else:
                link_updates.append(values)
            changes += change_rows(ctx, plan, it, now)
        for key, number in tally.items():
            ctx.count(key, number)
        if items:  # even 0: the run page tells a run that changed nothing from one recorded before this count
            ctx.counts.setdefault("changed", 0)
        for values in link_updates + guarded:
            values["updated_at"] = now  # what Link.updated_at's onupdate would set (one time per batch)
        # links before records: a link's guard compares its record's updated_at as it was
        written = update_many(Link.__table__, link_updates)
        if current is None:
            record = plan.model.__table__
            written += update_many(Link.__table__, guarded, record)
            written += update_many(record, crm_updates, record)
            if written != len(link_updates) + len(guarded) + len(crm_updates):
                raise _Contended()
        else:
            update_many(plan.model.__table__, crm_updates)
        if changes:
            insert_many(SyncChange.__table__, changes, CHANGE_DEFAULTS)
        moved = write_cursor(ctx, plan.actor_type, cursor) if cursor is not None else None
        journal.clear_intents(ctx)  # the confirmed rows are in ``changes``
        ctx.done += len(items)
        db.session.commit()
        ctx.journal_ids.clear()
        if moved is not None:
            ctx.cursors[plan.actor_type] = moved
    except BaseException:  # nothing of this attempt was committed: undo its bookkeeping too
        ctx.counts, ctx.done, ctx.wrote_crm = counts_before, done_before, wrote_before
        for it, outcome, message in outcomes_before:
            it.outcome, it.message = outcome, message
        raise

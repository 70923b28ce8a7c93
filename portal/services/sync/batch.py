"""One batch of linked records: read what is missing, merge, write the ERP, apply the CRM side."""

from __future__ import annotations

from portal.extensions import db
from portal.models import LinkStatus
from portal.services.sync import erp_write, parents, preview, record_merge
from portal.services.sync.apply import apply_batch
from portal.services.sync.bulk import core_connection
from portal.services.sync.context import IN_CHUNK, GcPaused, RunContext, chunks, read_actors
from portal.services.sync.plan import BatchItem, TypePlan


def process_batch(ctx: RunContext, plan: TypePlan, items: list[BatchItem], mode: str, cursor: str | None = None) -> None:
    """Read what is missing, merge, write the ERP, apply the CRM side — for one batch of links; ``cursor``: the
    feed cursor to store with the batch's changes."""
    with GcPaused():
        _run_batch(ctx, plan, items, mode, cursor)


def _run_batch(ctx: RunContext, plan: TypePlan, items: list[BatchItem], mode: str, cursor: str | None) -> None:
    need = [it for it in items if it.actor is None]
    if need:
        actors = read_actors(ctx, plan.actor_type, [it.erp_key for it in need], plan.keys)
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
    if plan.parent is not None:
        ctx.parents = parents.lookup(ctx, [it for it in live if it.outcome is None])
    for it in live:
        if it.outcome is None:
            record_merge.plan_item(ctx, plan, it, mode)
    if ctx.dry_run:  # a dry run: report what the batch would do, write nothing (no ERP, no apply): preview.py
        preview.report(ctx, plan, items)
        return
    writes = [it for it in live if it.outcome is None and it.result is not None
              and (it.result.to_erp or (it.parent is not None and it.parent.to_erp is not None))]
    if writes:
        erp_write.save_actors(ctx, plan, writes, mode)
    apply_batch(ctx, plan, items, mode, cursor)


def _crm_rows(plan: TypePlan, ids: list[int]) -> dict:
    rows = {}
    conn = core_connection()
    for chunk in chunks(ids, IN_CHUNK):
        for row in conn.execute(plan.sql_rows, {"ids": list(chunk)}).all():
            rows[row[0]] = row  # id
    db.session.commit()
    return rows

"""The ERP change feed and its cursor (part A of a run)."""

from __future__ import annotations

from collections.abc import Sequence
from operator import itemgetter

from portal.database import utcnow
from portal.extensions import db
from portal.models import LinkStatus
from portal.services.sync.batch import process_batch
from portal.services.sync.bulk import core_connection
from portal.services.sync.context import IN_CHUNK, GcPaused, RunContext, RunFailed, chunks, stamp_key
from portal.services.sync.cursors import advance_cursor
from portal.services.sync.plan import BatchItem, TypePlan


def erp_changes(ctx: RunContext, plan: TypePlan, processed: set[int]) -> None:
    since = ctx.cursors.get(plan.actor_type) or ""
    page_cursor: str | None = None
    seen: dict[str, str] = {}  # ErpKey -> LastModified merged in this run
    while True:
        with GcPaused():  # one page at a time (see GcPaused)
            next_cursor = _erp_page(ctx, plan, processed, since, page_cursor, seen)
        if next_cursor is None:
            break
        if next_cursor == page_cursor:
            raise RunFailed(f"{ctx.name}'s connector sent the same page cursor twice; paging stopped.")
        page_cursor = next_cursor


def _erp_page(ctx: RunContext, plan: TypePlan, processed: set[int], since: str, page_cursor: str | None,
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
            process_batch(ctx, plan, items, "sync", cursor=cursor)
            processed.update(it.crm_id for it in items)
            for it in items:
                if it.actor is not None:
                    seen[it.erp_key] = str(it.actor.get("LastModified") or "")
        elif cursor is not None:
            advance_cursor(ctx, plan.actor_type, cursor)
    return next_cursor


def _items_for_actors(ctx: RunContext, plan: TypePlan, actors: Sequence[dict], seen: dict[str, str]) -> list[BatchItem]:
    latest: dict[str, dict] = {}
    for actor in actors:  # sorted by LastModified: the last one of a key is its newest state
        latest[actor["ErpKey"]] = actor
    links = {}
    keys = list(latest)
    conn = core_connection()
    for chunk in chunks(keys, IN_CHUNK):
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
        item = BatchItem(row, plan)
        item.actor = actor
        items.append(item)
    ctx.count("erp_changes", len(items))
    return items

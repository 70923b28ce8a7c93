"""The ERP change feed and its cursor (part A of a run).

**The whole feed is read before anything is written.** ``GetActorsByTimestamp`` is paged by the connector, and the
protocol lets a connector page by *offset*: an actor written between two pages (by this run's SaveActors, or by
anybody in the ERP) moves to the end of the feed and shifts every actor behind it one place forward, so the next
page starts one actor too late and that actor is never read. The engine therefore reads every page first (keeping
the linked actors only), and only then merges and writes, batch by batch.

Writes by others while the feed is read cannot be prevented, so the read watches for them: an actor that comes
back on a later page (it was written meanwhile, or the connector reordered equal stamps) means an actor behind it
may have been skipped. Such a skipped actor sits after the page on which the moved actor was first read, so its
``LastModified`` is at least the highest stamp read up to that page; the cursor is *limited* to that stamp for this
run, and the inclusive ``UpdatedOnOrAfter`` of the next run reads the skipped actor again. A page answered with
``State: Warning`` limits the cursor the same way (its content may be incomplete). See docs/sync-engine.md §3 A.

**An equal ``LastModified`` is not proof of an equal state**: an ERP whose stamps have second resolution (or a
clock at rest) can give a second edit the stamp of the first. An actor whose stamp equals its link's
``erp_last_modified`` is skipped only when its values also equal the link's base (what both sides agreed on).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from sqlalchemy import bindparam, select

from portal.database import utcnow
from portal.extensions import db
from portal.models import Link, LinkStatus
from portal.services.sync.batch import process_batch
from portal.services.sync.bulk import core_connection
from portal.services.sync.context import IN_CHUNK, GcPaused, RunContext, RunFailed, chunks, stamp_key
from portal.services.sync.cursors import advance_cursor
from portal.services.sync.plan import BatchItem, TypePlan, erp_values
from portal.services.values import same_value

# Linked actors whose values a run keeps from the feed; past this many, only the key and stamp are kept and the
# batch reads the actor with GetActors (one call per batch), so memory stays bounded on a very long feed.
FEED_MEMORY_ACTORS = 20_000
# Chunks with nothing to merge (echoes of this portal's own writes, repeated stamps) between two stored moves of
# the cursor: storing it after each such chunk was a statement pair and a commit per 200 echoes.
ECHO_CURSOR_CHUNKS = 10


@dataclass
class FeedRead:
    """What one complete read of the feed found."""

    actors: dict[str, dict] = field(default_factory=dict)  # linked ErpKey -> newest state read (or a key stub)
    high: str | None = None  # the highest LastModified read
    limit: str | None = None  # the cursor may not move past this stamp in this run (None: no limit) …
    hold: bool = False  # … or not at all
    moved: int = 0  # actors read twice: the feed changed while it was read

    def hold_at(self, stamp: str | None) -> None:
        """The cursor may not move past ``stamp`` (None: past where it is)."""
        if stamp is None:
            self.hold = True
        else:
            self.limit = _earlier(self.limit, stamp)

    def bound(self, stamp: str | None) -> str | None:
        """Where the cursor may move to on the way to ``stamp``."""
        return None if self.hold or stamp is None else _earlier(stamp, self.limit)


def _later(a: str | None, b: str | None) -> str | None:
    if a is None:
        return b
    if b is None:
        return a
    return b if stamp_key(b) > stamp_key(a) else a


def _earlier(a: str | None, b: str | None) -> str | None:
    if a is None:
        return b
    if b is None:
        return a
    return b if stamp_key(b) < stamp_key(a) else a


_SQL_LINKED_KEYS = select(Link.erp_key).where(Link.connection_id == bindparam("connection_id"),
                                              Link.erp_actor_type == bindparam("actor_type"),
                                              Link.erp_key.in_(bindparam("keys", expanding=True)))


def read_feed(ctx: RunContext, plan: TypePlan, since: str) -> FeedRead:
    """Every page of ``GetActorsByTimestamp(since)``, linked actors only, the newest state of each."""
    feed = FeedRead()
    first_page: dict[str, int] = {}  # ErpKey -> the page it was first read on
    high_through: list[str | None] = []  # page -> the highest stamp read up to and including it
    page_cursor: str | None = None
    page = 0
    kept = 0
    while True:
        with GcPaused():
            actors, next_cursor = ctx.call(ctx.client.get_actors_by_timestamp, ctx.guid, since, plan.actor_type,
                                           plan.keys, ctx.page_size, page_cursor)
            warned = ctx.last_call_warned
            ctx.count("erp_actors_read", len(actors))
            actors = [a for a in actors if isinstance(a.get("ErpKey"), str) and a["ErpKey"]]
            if warned:  # this page may be incomplete: the cursor stays before it
                feed.hold_at(high_through[-1] if high_through else None)
            linked = _linked_keys(ctx, plan, {a["ErpKey"] for a in actors})
            for actor in actors:
                key = actor["ErpKey"]
                stamp = str(actor.get("LastModified") or "") or None
                feed.high = _later(feed.high, stamp)
                seen_on = first_page.get(key)
                if seen_on is None:
                    first_page[key] = page
                elif seen_on < page:
                    # read again on a later page: the feed changed under the read; an actor may have been skipped
                    feed.moved += 1
                    feed.hold_at(high_through[seen_on])
                if key not in linked:
                    continue
                previous = feed.actors.get(key)
                if previous is not None and stamp_key(previous.get("LastModified")) > stamp_key(stamp):
                    continue  # keep the newest state (the last read of equal stamps)
                if previous is None:
                    kept += 1
                feed.actors[key] = (actor if kept <= FEED_MEMORY_ACTORS
                                    else {"ErpKey": key, "LastModified": stamp, "_stub": True})
            high_through.append(feed.high)
        if next_cursor is None:
            break
        if next_cursor == page_cursor:
            raise RunFailed(f"{ctx.name}'s connector sent the same page cursor twice; paging stopped.")
        page_cursor = next_cursor
        page += 1
    if feed.moved:
        ctx.count("feed_moved", feed.moved)
    return feed


def _linked_keys(ctx: RunContext, plan: TypePlan, keys: set[str]) -> set[str]:
    found: set[str] = set()
    conn = core_connection()
    for chunk in chunks(sorted(keys), IN_CHUNK):
        found.update(conn.scalars(_SQL_LINKED_KEYS, {"connection_id": ctx.connection_id,
                                                     "actor_type": plan.actor_type, "keys": list(chunk)}))
    db.session.commit()
    return found


def erp_changes(ctx: RunContext, plan: TypePlan, processed: set[int]) -> None:
    """Part A: read the feed from the cursor, then merge and write its linked actors batch by batch, oldest
    first; each batch moves the cursor (in the transaction that applies it) to its highest stamp within the
    read's limit."""
    since = ctx.cursors.get(plan.actor_type) or ""
    feed = read_feed(ctx, plan, since)
    ordered = sorted(feed.actors.values(), key=lambda a: stamp_key(a.get("LastModified")))
    idle_chunks = 0  # chunks with nothing to merge since the cursor was last stored
    for start in range(0, len(ordered), ctx.batch_size):
        chunk = ordered[start:start + ctx.batch_size]
        top = None
        for actor in chunk:
            top = _later(top, str(actor.get("LastModified") or "") or None)
        cursor = feed.bound(top)
        with GcPaused():
            items = _items_for_actors(ctx, plan, chunk)
            if items:
                ctx.total += len(items)
                # the cursor moves in the transaction that applies the chunk's changes (not before)
                process_batch(ctx, plan, items, "sync", cursor=cursor)
                processed.update(it.crm_id for it in items)
                idle_chunks = 0
            elif cursor is not None:
                # Nothing to write: the cursor is stored every ECHO_CURSOR_CHUNKS such chunks, by the next chunk
                # that writes, or at the end. A run that stops before reads these actors again next time and
                # finds them merged again, as now.
                idle_chunks += 1
                if idle_chunks >= ECHO_CURSOR_CHUNKS:
                    advance_cursor(ctx, plan.actor_type, cursor)
                    idle_chunks = 0
    last = feed.bound(feed.high)
    if last is not None:
        advance_cursor(ctx, plan.actor_type, last)


def _items_for_actors(ctx: RunContext, plan: TypePlan, actors: Sequence[dict]) -> list[BatchItem]:
    links = {}
    conn = core_connection()
    for chunk in chunks([a["ErpKey"] for a in actors], IN_CHUNK):
        for row in conn.execute(plan.sql_links_by_key, {"connection_id": ctx.connection_id,
                                                        "keys": list(chunk)}).all():
            links[row[2]] = row  # erp_key
    db.session.commit()
    items = []
    now = utcnow()
    for actor in actors:
        key = actor["ErpKey"]
        row = links.get(key)
        if row is None:
            continue  # unlinked meanwhile
        stub = actor.get("_stub")
        stamp = str(actor.get("LastModified") or "")
        retry_due = row.retry_at is not None and row.retry_at <= now
        if (stamp and row.erp_last_modified == stamp and row.status == LinkStatus.OK and not retry_due
                and not stub and agrees_with_base(plan, actor, row.base, row.parent_erp_key)):
            ctx.count("erp_repeats")  # inclusive timestamp or the echo of our own write: already merged
            continue
        item = BatchItem(row, plan)
        item.actor = None if stub else actor  # a stub is read by the batch's GetActors
        items.append(item)
    ctx.count("erp_changes", len(items))
    return items


def agrees_with_base(plan: TypePlan, actor: dict, base: dict | None, parent_erp_key: str | None) -> bool:
    """Do the actor's mapped values (and its parent) equal what both sides last agreed on? Only then is an actor
    that carries its link's LastModified again really the state already merged."""
    values, errors = erp_values(plan, actor.get("FieldValues") or {})
    if errors:
        return False
    base = base or {}
    if any(key not in base or not same_value(base[key], value) for key, value in values.items()):
        return False
    if plan.parent is not None:
        parent = actor.get("ParentErpKey") or None
        if parent != (parent_erp_key or None):
            return False
    return True

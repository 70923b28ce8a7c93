"""Dry-run previews: what a run would do, with nothing written (docs/sync-engine.md §8, "Dry-run previews").

Every kind of run the engine executes — a sync, Resync from CRM, Resync from ERP, a reconcile, Sync now on one
record — can be a **dry run** (option ``dry_run``; ``RunContext.dry_run``). It makes the same reads (the connector's
read methods only: GetActorsByTimestamp, GetActors …) and the same merges as the real run; then ``batch.py`` hands
every merged batch to :func:`report` instead of the ERP write and the apply step. So a dry run never calls
SaveActors or CreateActor, writes no journal, no CRM record, link or change-log row, moves no ERP feed cursor
(``cursors.advance_cursor``) or CRM mark (``crm_changes``), does not record other runs' journals, and gets no hub
follow-up (it wrote nothing into the CRM). The only row it writes is its own ``SyncRun`` (heartbeat, progress,
counts, message), so it shows in the Sync log as a preview (``runs.is_preview``) and never counts as a sync.

What would change — per record and field, each way, old → new; every conflict with the winner and the losing
value; the records that would fail (a value the CRM or the ERP would refuse …); links that would break or come
back — goes to the ``reporting`` callback of the caller (the CLI prints every record; nothing is held) and,
bounded, into the run's counts when it finishes:

* ``would_*``: totals (records and fields each way, conflicts, errors, links that would break or come back);
* ``plan``: the first ``PLAN_RECORDS`` records with their lines (``plan_records`` / ``plan_lines``: all of them);
* ``plan_fingerprint``: an order-independent hash (the sum of the lines' SHA-256) of **every** line of the plan —
  record, field, direction, old and new value; conflicts with both values and the winner; errors; break/restore —
  and ``plan_digests``: each line's short hash while there are at most ``PLAN_DIGESTS`` lines;
* ``dry_run_sample``: the first 20 records as one line each (also quoted in the message).

**Run it** (a real run with option ``plan`` = {"run_id": the preview, "fingerprint": its fingerprint}): the engine
first runs the preview again, in the same run and under the same connection lock, and goes on for real only when
the fresh fingerprint is the preview's. Otherwise it writes nothing, becomes a preview itself (of today's data) and
says how many lines of the plan differ (``differences``).
"""

from __future__ import annotations

import hashlib
import json
import time as clock
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

from portal.extensions import db
from portal.models import CRM_TYPE_LABELS, LinkStatus, RunKind, RunStatus
from portal.services.sync import runs
from portal.services.sync.bulk import core_connection
from portal.services.sync.changelog import record_detail
from portal.services.sync.context import RunAbandoned, RunContext, plural
from portal.services.sync.outcomes import RecordDetail
from portal.services.sync.plan import BatchItem, TypePlan

PLAN_RECORDS = 500  # records of a preview kept (with their lines) in the run's counts
PLAN_DIGESTS = 5000  # lines whose short hash is kept, to count the differences at Run it
DRY_RUN_SAMPLE = 20  # records kept as one line each in counts["dry_run_sample"]
DRY_RUN_MESSAGE_RECORDS = 3  # … and quoted in the message
_MODULUS = 2 ** 256

# The directions of a plan line, for the screen and the CLI
DIRECTION_LABELS = {"to_crm": "ERP → CRM", "to_erp": "CRM → ERP", "conflict": "conflict", "error": "error",
                    "break": "link", "restore": "link"}


def _quote(text: str) -> str:
    return f"'{text}'" if text else "(blank)"


@dataclass
class PreviewEntry:
    """What a dry run found for one linked record (``action``: '' | 'break' | 'restore')."""

    record: str  # "Company #12 Acme AS ↔ Customer 10001"
    erp_name: str
    action: str = ""
    detail: RecordDetail | None = None
    crm_type: str = ""
    crm_id: int = 0
    erp_actor_type: str = ""
    erp_key: str = ""

    def lines(self) -> list[str]:
        """The record's heading, then one indented line per field, conflict and error (the CLI's text)."""
        heading = self.record + ":"
        if self.action == "break":
            return [f"{heading} would be marked broken ({self.erp_name} no longer has the actor; the CRM record is "
                    "kept)"]
        lines = [heading + (" the broken link would come back (the ERP has the actor again)"
                            if self.action == "restore" else "")]
        d = self.detail or RecordDetail()
        lines += [f"  to the CRM: {c.label}: {_quote(c.old)} -> {_quote(c.new)}" for c in d.to_crm]
        lines += [f"  to {self.erp_name}: {c.label}: {_quote(c.old)} -> {_quote(c.new)}" for c in d.to_erp]
        lines += [f"  conflict: {c.label}: CRM {_quote(c.crm_value)}, {self.erp_name} {_quote(c.erp_value)} -> "
                  f"{c.rule or c.winner + ' wins'}" for c in d.conflicts]
        lines += [f"  error: {text}" for text in d.errors]
        return lines

    def summary(self, limit: int = 300) -> str:
        """One line: the record and its changes."""
        lines = self.lines()
        text = lines[0] + " " + "; ".join(line.strip() for line in lines[1:])
        return text.strip()[:limit]

    def plan_lines(self) -> list[dict]:
        """The record's lines as data: ``dir`` (to_crm | to_erp | conflict | error | break | restore), ``field``,
        ``old``, ``new`` (for a conflict: ``crm``, ``erp``, ``winner``, ``loser`` and ``rule``), and ``d``, the
        line's short hash (record and line: what the fingerprint adds up)."""
        d = self.detail or RecordDetail()
        found: list[dict] = []
        if self.action:
            found.append({"dir": self.action, "field": "", "old": "", "new": ""})
        found += [{"dir": "to_crm", "field": c.label, "old": c.old, "new": c.new} for c in d.to_crm]
        found += [{"dir": "to_erp", "field": c.label, "old": c.old, "new": c.new} for c in d.to_erp]
        for c in d.conflicts:
            crm_won = c.winner == "CRM"
            found.append({"dir": "conflict", "field": c.label, "crm": c.crm_value, "erp": c.erp_value,
                          "winner": c.winner, "new": c.crm_value if crm_won else c.erp_value,
                          "loser": c.erp_value if crm_won else c.crm_value, "rule": c.rule})
        found += [{"dir": "error", "field": "", "old": "", "new": "", "rule": text} for text in d.errors]
        key = [self.crm_type, self.crm_id, self.erp_actor_type, self.erp_key]
        for line in found:
            line["h"] = _line_hash(key, line)
            line["d"] = line["h"][:12]
        return found

    def to_json(self, lines: list[dict]) -> dict:
        return {"record": self.record, "crm_type": self.crm_type, "crm_id": self.crm_id,
                "erp_actor_type": self.erp_actor_type, "erp_key": self.erp_key, "action": self.action,
                "lines": [{k: v for k, v in line.items() if k != "h"} for line in lines]}


def _line_hash(key: list, line: dict) -> str:
    text = json.dumps([key, sorted((k, v) for k, v in line.items() if k not in ("h", "d"))], ensure_ascii=False,
                      default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass
class Preview:
    """The plan of one dry run, accumulated batch by batch (``RunContext.preview``)."""

    records: int = 0
    lines: int = 0
    total: int = 0  # the sum of every line's SHA-256 (mod 2**256): the same whatever the order
    entries: list[dict] = field(default_factory=list)
    digests: list[str] = field(default_factory=list)
    sample: list[str] = field(default_factory=list)

    def add(self, entry: PreviewEntry) -> None:
        lines = entry.plan_lines()
        self.records += 1
        self.lines += len(lines)
        for line in lines:
            self.total = (self.total + int(line["h"], 16)) % _MODULUS
            if len(self.digests) < PLAN_DIGESTS:
                self.digests.append(line["d"])
        if len(self.entries) < PLAN_RECORDS:
            self.entries.append(entry.to_json(lines))
        if len(self.sample) < DRY_RUN_SAMPLE:
            self.sample.append(entry.summary())

    @property
    def fingerprint(self) -> str:
        return f"{self.total:064x}"

    def counts(self) -> dict:
        stored = {"plan_records": self.records, "plan_lines": self.lines, "plan_fingerprint": self.fingerprint,
                  "plan": self.entries, "dry_run_sample": self.sample}
        if self.lines <= PLAN_DIGESTS:
            stored["plan_digests"] = sorted(self.digests)
        return stored


def state(ctx: RunContext) -> Preview:
    if ctx.preview is None:
        ctx.preview = Preview()
    return ctx.preview


_sink: ContextVar[Callable[[PreviewEntry], None] | None] = ContextVar("sync_preview_sink", default=None)


@contextmanager
def reporting(callback: Callable[[PreviewEntry], None]) -> Iterator[None]:
    """Have the dry runs executed in this block hand every record that would change to ``callback``."""
    token = _sink.set(callback)
    try:
        yield
    finally:
        _sink.reset(token)


# ----------------------------------------------------------------------------------------------- the hook


def record_label(plan: TypePlan, it: BatchItem) -> str:
    row = it.row
    name = getattr(row, "name", None) or " ".join(
        str(part) for part in (getattr(row, "first_name", None), getattr(row, "last_name", None)) if part)
    label = f"{CRM_TYPE_LABELS.get(plan.crm_type, plan.crm_type)} #{it.crm_id}" + (f" {name}" if name else "")
    return f"{label} \u2194 {plan.actor_type} {it.erp_key}"


def report(ctx: RunContext, plan: TypePlan, items: list[BatchItem]) -> None:
    """batch.py's dry-run hook, once a batch is merged: count and report what it would do, then heartbeat and
    progress as the apply step does. Writes nothing but the run's own row."""
    callback = _sink.get()
    preview = state(ctx)
    _read_names(plan, [it for it in items if it.outcome == "broken" and it.row is None])
    for it in items:
        entry = _entry(ctx, plan, it)
        if entry is None:
            continue
        preview.add(entry)
        if callback is not None:
            callback(entry)
    ctx.count("records", len(items))
    ctx.done += len(items)
    total = max(ctx.total, ctx.done)
    if not runs.heartbeat(ctx.run_id, progress_done=ctx.done, progress_total=total, counts=ctx.snapshot_counts(),
                          connector_seconds=round(ctx.client.seconds, 4)):
        raise RunAbandoned()
    ctx.beat = clock.monotonic()
    if ctx.on_progress is not None:
        ctx.on_progress(ctx.done, total, ctx.snapshot_counts())


def _read_names(plan: TypePlan, items: list[BatchItem]) -> None:
    """The CRM rows of links that would break (the batch reads them only for live links): for their labels."""
    if not items:
        return
    rows = {row[0]: row for row in core_connection().execute(plan.sql_rows, {"ids": [it.crm_id for it in items]})}
    db.session.commit()
    for it in items:
        found = rows.get(it.crm_id)
        it.row = plan.row_type._make(found) if found is not None else None


def _entry(ctx: RunContext, plan: TypePlan, it: BatchItem) -> PreviewEntry | None:
    ids = {"crm_type": plan.crm_type, "crm_id": it.crm_id, "erp_actor_type": plan.actor_type, "erp_key": it.erp_key}
    if it.outcome == "broken":
        ctx.count("would_break")
        return PreviewEntry(record_label(plan, it), ctx.name, "break", **ids)
    if it.outcome == "still_broken":
        ctx.count("still_broken")
        return None
    if it.outcome is not None or it.result is None:  # gone from the CRM meanwhile
        return None
    # What the batch would send: record_detail describes the ERP side from what was sent.
    it.sent = dict(it.result.to_erp)
    parent = getattr(it, "parent", None)
    if parent is not None and getattr(parent, "to_erp", None) is not None:
        parent.sent = True
    detail = record_detail(ctx, plan, it)
    restore = it.status == LinkStatus.BROKEN
    if not (detail.to_crm or detail.to_erp or detail.conflicts or detail.errors or restore):
        ctx.count("unchanged")
        return None
    if detail.to_crm or detail.to_erp:
        ctx.count("would_repair")
    if detail.to_crm:
        ctx.count("would_to_crm")
        ctx.count("would_fields_to_crm", len(detail.to_crm))
    if detail.to_erp:
        ctx.count("would_to_erp")
        ctx.count("would_fields_to_erp", len(detail.to_erp))
    ctx.count("would_conflicts", len(detail.conflicts))
    if detail.errors:
        ctx.count("would_errors")
    if restore:
        ctx.count("would_restore")
    return PreviewEntry(record_label(plan, it), ctx.name, "restore" if restore else "", detail, **ids)


# --------------------------------------------------------------------------------------------- the outcome


def final_counts(ctx: RunContext) -> dict:
    """The counts a finished dry run keeps: the totals and the bounded plan."""
    return {**ctx.snapshot_counts(), **state(ctx).counts()}


def final(ctx: RunContext) -> tuple[str, str]:
    """The status and message of a finished dry run (engine._final)."""
    message = _message(ctx)
    status = RunStatus.SUCCEEDED
    if ctx.warnings:
        status = RunStatus.PARTIAL
        message += " Connector warning: " + "; ".join(ctx.warnings)
    return status, message


def _message(ctx: RunContext) -> str:
    c = ctx.counts
    reconcile = ctx.kind == RunKind.RECONCILE
    if reconcile:
        head = f"Dry run, nothing written: read {plural(c.get('records', 0), 'link')} of {ctx.name}"
    else:
        head = f"Preview, nothing written: checked {plural(c.get('records', 0), 'record')} of {ctx.name}"
    parts = []
    if c.get("would_repair"):
        verb = "repaired" if reconcile else "updated"
        parts.append(f"{plural(c['would_repair'], 'record')} would be {verb} ({c.get('would_to_crm', 0):,} in the "
                     f"CRM, {c.get('would_to_erp', 0):,} in {ctx.name})")
    if c.get("would_conflicts"):
        parts.append(f"{plural(c['would_conflicts'], 'conflict')} would be settled")
    if c.get("would_errors"):
        parts.append(f"{plural(c['would_errors'], 'record')} with errors")
    if c.get("would_break"):
        parts.append(f"{plural(c['would_break'], 'link')} would be marked broken")
    if c.get("would_restore"):
        parts.append(f"{plural(c['would_restore'], 'broken link')} would come back")
    if c.get("still_broken"):
        parts.append(f"{plural(c['still_broken'], 'link')} still broken")
    if not parts:
        return head + ("; both sides agree." if c.get("records") or reconcile else "; nothing would change.")
    message = head + "; " + ", ".join(parts) + "."
    sample = state(ctx).sample
    if sample:
        message += " First: " + " | ".join(sample[:DRY_RUN_MESSAGE_RECORDS])
    return message


# ---------------------------------------------------------------------------------------------- Run it


def expected_plan(options: dict) -> dict | None:
    """The plan a real run must find before it writes anything (option ``plan``), or None."""
    plan = options.get("plan")
    if isinstance(plan, dict) and isinstance(plan.get("fingerprint"), str) and not options.get("dry_run"):
        return plan
    return None


def differences(fresh: Preview, expected: dict, preview_counts: dict | None) -> int | None:
    """None when the fresh plan is the preview's; else how many lines differ (added plus gone; at least 1)."""
    if fresh.fingerprint == expected.get("fingerprint"):
        return None
    old = (preview_counts or {}).get("plan_digests")
    if isinstance(old, list) and fresh.lines <= PLAN_DIGESTS:
        before, now = Counter(old), Counter(fresh.digests)
        differ = sum(((before - now) + (now - before)).values())
        return max(differ, 1)
    old_lines = (preview_counts or {}).get("plan_lines")
    return max(abs(fresh.lines - old_lines), 1) if isinstance(old_lines, int) else 1


def refused(ctx: RunContext, expected: dict, differ: int) -> str:
    """The message of a Run it that found the data changed since its preview (``ctx``: the fresh preview)."""
    since = f"the preview (run #{expected['run_id']})" if expected.get("run_id") else "the preview"
    return (f"Not run: the data changed since {since}: {plural(differ, 'change')} "
            f"{'differs' if differ == 1 else 'differ'}. Nothing was written. This run is a fresh preview of "
            f"{ctx.name} ({plural(state(ctx).lines, 'change')}): check it and use Run it again.")


def new_since(fresh_counts: dict, preview_counts: dict | None) -> list[str]:
    """The short hashes of the fresh plan's lines that the preview did not have (to mark them on the page)."""
    old = (preview_counts or {}).get("plan_digests")
    if not isinstance(old, list):
        return []
    remaining = Counter(old)
    found = []
    for entry in fresh_counts.get("plan") or []:
        for line in entry.get("lines") or []:
            if remaining.get(line.get("d"), 0):
                remaining[line["d"]] -= 1
            else:
                found.append(line.get("d"))
    return found


__all__ = ["DIRECTION_LABELS", "PLAN_RECORDS", "Preview", "PreviewEntry", "differences", "expected_plan", "final",
           "final_counts", "new_since", "refused", "report", "reporting"]

"""What ``erp sync`` and ``erp reconcile`` print after their runs: a dry run's rows per record and field, and the
summary tables of the runs (sync, reconcile, dry run)."""

from __future__ import annotations

from portal.extensions import db
from portal.models import RunKind, RunStatus, SyncRun
from portal.sync_cli.common import _Output, _table


def _cell(text: object, width: int = 40) -> str:
    text = " ".join(str(text or "").split())
    return text if len(text) <= width else text[:width - 1] + "…"


def _quoted(text: object) -> str:
    return _cell(f"'{text}'") if text not in (None, "") else "(blank)"


def _preview_rows(entry) -> list[list[str]]:
    """One table row per line of a preview entry; the record named on its first row only."""
    rows = []
    for line in entry.plan_lines():
        direction = line["dir"]
        if direction in ("to_crm", "to_erp"):
            row = [line["field"], "ERP → CRM" if direction == "to_crm" else "CRM → ERP", _quoted(line["old"]),
                   _quoted(line["new"]), ""]
        elif direction == "conflict":
            row = [line["field"], "conflict", _quoted(line["loser"]), _quoted(line["new"]),
                   _cell(line["rule"] or f"{line['winner']} wins", 70)]
        elif direction == "error":
            row = ["", "error", "", "", _cell(line["rule"], 70)]
        else:
            row = ["", "link", "", "", "would be marked broken (the ERP no longer has the actor)"
                   if direction == "break" else "the broken link would come back"]
        rows.append([_cell(entry.record if not rows else "", 50), *row])
    return rows


def _run_lines(out: _Output, outcomes, *, with_error: bool) -> None:
    """One line per run under a summary table: its message (``with_error``: its error when it has one), red when
    it failed, yellow when partial."""
    for outcome in outcomes:
        run = db.session.get(SyncRun, outcome.run_id)
        colour = "red" if run.status == RunStatus.FAILED else ("yellow" if run.status == RunStatus.PARTIAL else None)
        out.echo(f"#{run.id} {run.connection.name}: {(with_error and run.error) or run.message}", fg=colour)


def _preview_summary(out: _Output, outcomes) -> None:
    if not outcomes:
        return
    rows = []
    for outcome in outcomes:
        run = db.session.get(SyncRun, outcome.run_id)
        c = run.counts or {}
        rows.append([f"#{run.id}", run.connection.name, run.kind, run.status, f"{c.get('records', 0):,}",
                     *(f"{c.get(key, 0):,}" for key in ("would_to_crm", "would_fields_to_crm", "would_to_erp",
                                                         "would_fields_to_erp", "would_conflicts", "would_errors",
                                                         "would_break"))])
    out.echo("")
    out.echo(_table(["Run", "Connection", "Kind", "Status", "Records", "To CRM", "Fields", "To ERP", "Fields",
                     "Conflicts", "Errors", "Broken"], rows))
    _run_lines(out, outcomes, with_error=True)
    out.echo("Nothing was written (dry run). Run the same command without --dry-run to sync.")
    db.session.commit()


# The summary's columns Repaired, To CRM, To ERP, Conflicts, Broken, Restored, Errors: done, or (dry run) would be
_RECONCILE_KEYS = ("drift_repaired", "to_crm", "to_erp", "conflicts", "broken", "restored", "errors")
_DRY_KEYS = ("would_repair", "would_to_crm", "would_to_erp", "would_conflicts", "would_break", "would_restore",
             "would_errors")


def _reconcile_summary(out: _Output, outcomes) -> None:
    if not outcomes:
        return
    rows = []
    for outcome in outcomes:
        run = db.session.get(SyncRun, outcome.run_id)
        c = run.counts or {}
        dry = bool((run.options or {}).get("dry_run"))
        keys = _DRY_KEYS if dry else _RECONCILE_KEYS
        numbers = [f"{c.get(key, 0):,}" for key in keys]
        if run.kind != RunKind.RECONCILE:  # a hub follow-up sync
            numbers = ["-"] + [f"{c.get(key, 0):,}" for key in _RECONCILE_KEYS[1:]]
        rows.append([f"#{run.id}", run.connection.name, run.kind + (" (dry run)" if dry else ""), run.status,
                     f"{c.get('records', 0):,}", *numbers, f"{run.duration_seconds or 0.0:.2f}",
                     f"{run.connector_seconds:.2f}"])
    out.echo("")
    out.echo(_table(["Run", "Connection", "Kind", "Status", "Links", "Repaired", "To CRM", "To ERP", "Conflicts",
                     "Broken", "Restored", "Errors", "Seconds", "Connector s"], rows))
    _run_lines(out, outcomes, with_error=True)
    db.session.commit()


def _summary(out: _Output, outcomes) -> None:
    if not outcomes:
        return
    rows = []
    for outcome in outcomes:
        run = db.session.get(SyncRun, outcome.run_id)
        counts = run.counts or {}
        duration = run.duration_seconds or 0.0
        rows.append([f"#{run.id}", run.connection.name, run.kind, run.trigger, run.status,
                     f"{counts.get('records', 0):,}", f"{counts.get('to_crm', 0):,}", f"{counts.get('to_erp', 0):,}",
                     f"{counts.get('conflicts', 0):,}", f"{counts.get('errors', 0):,}",
                     f"{duration:.2f}", f"{run.connector_seconds:.2f}"])
    out.echo("")
    out.echo(_table(["Run", "Connection", "Kind", "Trigger", "Status", "Records", "To CRM", "To ERP", "Conflicts",
                     "Errors", "Seconds", "Connector s"], rows))
    _run_lines(out, outcomes, with_error=False)
    db.session.commit()

"""``flask --app wsgi erp …``: run a sync in the foreground, or show the state of the connections.

    flask --app wsgi erp sync [--connection NAME] [--resync-from crm|erp] [--no-blank]
    flask --app wsgi erp reconcile [--connection NAME] [--dry-run]
    flask --app wsgi erp status

A foreground sync takes the same per-connection lock as the scheduler (one active run per connection), so it is
safe to run next to the web process; a connection that is busy is reported and skipped.
"""

from __future__ import annotations

import sys

import click
from flask.cli import AppGroup, with_appcontext
from sqlalchemy import func, select

from portal.database import utcnow
from portal.extensions import db
from portal.models import Connection, Link, LinkStatus, RunKind, RunStatus, SyncRun

erp_group = AppGroup("erp", help="ERP sync: run a sync in the foreground, or show connections and runs.")


def _table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(h)), *(len(str(r[i])) for r in rows)) if rows else len(str(h))
              for i, h in enumerate(headers)]
    line = "  ".join(str(h).ljust(w) for h, w in zip(headers, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join(text.rstrip() for text in out)


class _Progress:
    """A one-line progress bar on a terminal; silent when the output is not a terminal."""

    def __init__(self, stream=None) -> None:
        self.stream = stream or sys.stdout
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.shown = False

    def __call__(self, done: int, total: int, counts: dict) -> None:
        if not self.tty:
            return
        total = max(total, done, 1)
        width = 30
        filled = int(width * done / total)
        bar = "#" * filled + "-" * (width - filled)
        click.echo(f"\r  [{bar}] {done:,}/{total:,} records  to CRM {counts.get('to_crm', 0):,}  "
                   f"to ERP {counts.get('to_erp', 0):,}  errors {counts.get('errors', 0):,}", nl=False)
        self.shown = True

    def end(self) -> None:
        if self.shown:
            click.echo("")
            self.shown = False


def _connections(name: str | None) -> list[Connection]:
    from portal.services.sync import runs

    active = runs.syncable_connections()
    if name is None:
        return active
    wanted = [c for c in active if c.name.lower() == name.strip().lower()]
    if not wanted:
        names = ", ".join(c.name for c in active) or "none"
        raise click.ClickException(f"No active connection called {name!r} (active connections: {names}).")
    return wanted


@erp_group.command("sync")
@click.option("--connection", "connection_name", default=None, metavar="NAME",
              help="Sync only this connection (default: every active connection, in sync-priority order).")
@click.option("--resync-from", "resync_from", type=click.Choice(["crm", "erp"]), default=None,
              help="Resync one way ignoring timestamps: from the CRM to the ERP, or from the ERP connection to the "
                   "CRM and on to the other connections.")
@click.option("--no-blank", is_flag=True, help="Never let a blank value overwrite a non-blank one.")
@with_appcontext
def sync_command(connection_name: str | None, resync_from: str | None, no_blank: bool) -> None:
    """Run a sync now, in the foreground, with progress and a summary."""
    from portal.services.sync import engine, runs

    if resync_from == "erp" and not connection_name:
        raise click.ClickException("--resync-from erp needs --connection NAME (the ERP connection to resync from).")
    kind = {None: RunKind.SYNC, "crm": RunKind.RESYNC_FROM_CRM, "erp": RunKind.RESYNC_FROM_ERP}[resync_from]
    connections = _connections(connection_name)
    if not connections:
        click.echo("No active connection with an active actor type: nothing to sync.")
        return
    run_ids, busy = [], []
    for connection in connections:
        try:
            run, created = runs.request_run(connection.id, kind=kind, trigger="cli", requested_by="cli",
                                            options={"no_blank": no_blank})
        except runs.RunError as exc:
            busy.append(f"{connection.name}: {exc}")
            continue
        if created:
            run_ids.append(run.id)
        else:
            busy.append(f"{connection.name}: {runs.describe_busy(run)}")
    for line in busy:
        click.secho(f"Skipped {line}", fg="yellow", err=True)
    outcomes = []
    progress = _Progress()
    for run_id in run_ids:
        run = db.session.get(SyncRun, run_id)
        click.echo(f"{run.connection.name}: {run.kind} (run #{run_id}) …")
        db.session.commit()
        outcomes.append(engine.execute_run(run_id, on_progress=progress))
        progress.end()
    for followup in engine.run_followups(outcomes, on_progress=progress):
        progress.end()
        outcomes.append(followup)
    _summary(outcomes)
    if busy or any(o.status == RunStatus.FAILED for o in outcomes):
        sys.exit(1)


@erp_group.command("reconcile")
@click.option("--connection", "connection_name", default=None, metavar="NAME",
              help="Reconcile only this connection (default: every active connection, in sync-priority order).")
@click.option("--dry-run", is_flag=True,
              help="Read and compare only: print what would change each way and how conflicts would be settled; "
                   "write nothing.")
@with_appcontext
def reconcile_command(connection_name: str | None, dry_run: bool) -> None:
    """Read every linked actor and bring both sides in step (drift repaired by the normal merge rules)."""
    from portal.services.sync import engine, reconcile, runs

    connections = _connections(connection_name)
    if not connections:
        click.echo("No active connection with an active actor type: nothing to reconcile.")
        return
    run_ids, busy = [], []
    for connection in connections:
        try:
            run, created = runs.request_run(connection.id, kind=RunKind.RECONCILE, trigger="cli", requested_by="cli",
                                            options={"dry_run": dry_run})
        except runs.RunError as exc:
            busy.append(f"{connection.name}: {exc}")
            continue
        if created:
            run_ids.append(run.id)
        else:
            busy.append(f"{connection.name}: {runs.describe_busy(run)}")
    for line in busy:
        click.secho(f"Skipped {line}", fg="yellow", err=True)
    progress = _Progress()
    found = [0]

    def show(entry) -> None:
        progress.end()
        found[0] += 1
        for line in entry.lines():
            click.echo("  " + line)

    outcomes = []
    for run_id in run_ids:
        run = db.session.get(SyncRun, run_id)
        click.echo(f"{run.connection.name}: reconcile{', dry run' if dry_run else ''} (run #{run_id}) …")
        db.session.commit()
        found[0] = 0
        with reconcile.reporting(show):
            outcomes.append(engine.execute_run(run_id, on_progress=progress))
        progress.end()
        if dry_run and not found[0] and outcomes[-1].status != RunStatus.FAILED:
            click.echo("  Nothing would change: both sides agree.")
    if not dry_run:  # what the reconcile wrote into the CRM goes on to the other connections (the CRM is the hub)
        for followup in engine.run_followups(outcomes, on_progress=progress):
            progress.end()
            outcomes.append(followup)
    _reconcile_summary(outcomes)
    if busy or any(o.status == RunStatus.FAILED for o in outcomes):
        sys.exit(1)


# The summary's columns Repaired, To CRM, To ERP, Conflicts, Broken, Restored, Errors: done, or (dry run) would be
_RECONCILE_KEYS = ("drift_repaired", "to_crm", "to_erp", "conflicts", "broken", "restored", "errors")
_DRY_KEYS = ("would_repair", "would_to_crm", "would_to_erp", "would_conflicts", "would_break", "would_restore",
             "would_errors")


def _reconcile_summary(outcomes) -> None:
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
    click.echo("")
    click.echo(_table(["Run", "Connection", "Kind", "Status", "Links", "Repaired", "To CRM", "To ERP", "Conflicts",
                       "Broken", "Restored", "Errors", "Seconds", "Connector s"], rows))
    for outcome in outcomes:
        run = db.session.get(SyncRun, outcome.run_id)
        colour = "red" if run.status == RunStatus.FAILED else ("yellow" if run.status == RunStatus.PARTIAL else None)
        click.secho(f"#{run.id} {run.connection.name}: {run.error or run.message}", fg=colour)
    db.session.commit()


def _summary(outcomes) -> None:
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
    click.echo("")
    click.echo(_table(["Run", "Connection", "Kind", "Trigger", "Status", "Records", "To CRM", "To ERP", "Conflicts",
                       "Errors", "Seconds", "Connector s"], rows))
    for outcome in outcomes:
        run = db.session.get(SyncRun, outcome.run_id)
        colour = "red" if run.status == RunStatus.FAILED else ("yellow" if run.status == RunStatus.PARTIAL else None)
        click.secho(f"#{run.id} {run.connection.name}: {run.message}", fg=colour)
    db.session.commit()


@erp_group.command("status")
@with_appcontext
def status_command() -> None:
    """Print the connections, their last runs and when the next scheduled sync is due."""
    from portal.services.bootstrap import sync_settings
    from portal.services.sync import runs

    settings = sync_settings()
    connections = db.session.scalars(select(Connection).where(Connection.deleted.is_(False))
                                     .order_by(Connection.name)).all()
    link_counts = {(cid, status): n for cid, status, n in db.session.execute(
        select(Link.connection_id, Link.status, func.count()).group_by(Link.connection_id, Link.status))}
    rows = []
    for connection in connections:
        last = runs.last_runs(connection.id, 1)
        last_text = "never"
        if last:
            run = last[0]
            when = run.finished_at or run.started_at or run.created_at
            last_text = f"#{run.id} {run.kind} {run.status} {when:%Y-%m-%d %H:%M:%S}"
        cursors = ", ".join(f"{k}: {v}" for k, v in sorted((connection.cursors or {}).items())) or "-"
        rows.append([connection.name, "active" if connection.active else "inactive",
                     connection.conflict_policy, f"{link_counts.get((connection.id, LinkStatus.OK), 0):,}",
                     f"{link_counts.get((connection.id, LinkStatus.BROKEN), 0):,}", last_text, cursors])
    click.echo(_table(["Connection", "State", "Conflicts", "Links", "Broken", "Last run", "Cursors"], rows)
               if rows else "No ERP connections.")
    click.echo("")
    recent = db.session.scalars(select(SyncRun).order_by(SyncRun.created_at.desc(), SyncRun.id.desc()).limit(10)
                                ).all()
    if recent:
        click.echo("Last runs:")
        click.echo(_table(["Run", "Connection", "Kind", "Trigger", "Status", "Started", "Seconds", "Message"], [
            [f"#{r.id}", r.connection.name if r.connection else "?", r.kind, r.trigger, r.status,
             f"{r.started_at:%Y-%m-%d %H:%M:%S}" if r.started_at else "-",
             f"{r.duration_seconds:.2f}" if r.duration_seconds is not None else "-",
             (r.error or r.message or "")[:70]] for r in recent]))
        click.echo("")
    auto = f"on, every {settings.interval_seconds} s" if settings.auto_sync else "off"
    click.echo(f"Automatic sync: {auto}")
    click.echo(f"Next sync: {runs.next_due_text(settings)}  (now {utcnow():%Y-%m-%d %H:%M:%S} UTC)")
    from portal.services.sync import reconcile

    due = reconcile.next_due_at(settings)
    paused = " (paused: automatic sync is off)" if due is not None and not settings.auto_sync else ""
    click.echo(f"Reconcile: {reconcile.schedule_text(settings)}{paused}"
               + (f"; next {max(due, utcnow()):%Y-%m-%d %H:%M} UTC" if due is not None and not paused else ""))
    db.session.commit()

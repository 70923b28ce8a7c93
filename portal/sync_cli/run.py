"""``erp sync`` and ``erp reconcile`` (a dry run included): abandoned runs reaped first, then one run per connection
requested (owned by this process) and executed in the foreground, one after the other, with progress."""

from __future__ import annotations

import sys
from contextlib import nullcontext

import click
from flask.cli import with_appcontext

from portal.extensions import db
from portal.models import Connection, RunKind, RunStatus
from portal.sync_cli.common import _interruptible, _Output, _Progress, _table, erp_group
from portal.sync_cli.summaries import _preview_rows, _preview_summary, _reconcile_summary, _summary


def _reap(out: _Output) -> None:
    """Fail abandoned runs first (no web process needed): their process on this host is gone, or their heartbeat
    is older than the lease."""
    from portal.services.sync import owner

    for reaped in owner.reap_abandoned():
        connection = db.session.get(Connection, reaped.connection_id)
        name = connection.name if connection is not None else f"connection #{reaped.connection_id}"
        out.echo(f"Reaped run #{reaped.run_id} of {name}: {reaped.error}", err=True, fg="yellow")
    db.session.commit()


def _reaped_connections(out: _Output, name: str | None, doing: str) -> list[Connection]:
    """The connections a command runs on (``_connections``), after reaping the runs nobody executes; none: says
    there is nothing to ``doing``."""
    _reap(out)
    connections = _connections(name)
    if not connections:
        out.echo(f"No active connection with an active actor type: nothing to {doing}.")
    return connections


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


def _request(out: _Output, connection: Connection, kind: str, options: dict, busy: list[str]) -> int | None:
    """Queue this command's run of the connection (owned by this process); None when it is busy (reported)."""
    from portal.services.sync import runs

    name = connection.name
    try:
        run, created = runs.request_run(connection.id, kind=kind, trigger="cli", requested_by="cli",
                                        options=options, own=True)
    except runs.RunError as exc:
        line = f"{name}: {exc}"
    else:
        if created:
            out.requested.append(run.id)
            return run.id
        line = f"{name}: {runs.describe_busy(run)}"
    busy.append(line)
    out.echo(f"Skipped {line}", err=True, fg="yellow")
    return None


@erp_group.command("sync")
@click.option("--connection", "connection_name", default=None, metavar="NAME",
              help="Sync only this connection (default: every active connection, in sync-priority order).")
@click.option("--resync-from", "resync_from", type=click.Choice(["crm", "erp"]), default=None,
              help="Resync one way ignoring timestamps: from the CRM to the ERP, or from the ERP connection to the "
                   "CRM and on to the other connections.")
@click.option("--no-blank", is_flag=True, help="Never let a blank value overwrite a non-blank one.")
@click.option("--dry-run", is_flag=True,
              help="Preview: read and compare only, print per record and field what would change each way and how "
                   "conflicts would be settled; write nothing.")
@with_appcontext
def sync_command(connection_name: str | None, resync_from: str | None, no_blank: bool, dry_run: bool) -> None:
    """Run a sync now, in the foreground, with progress and a summary."""
    from portal.services.sync import engine

    if resync_from == "erp" and not connection_name:
        raise click.ClickException("--resync-from erp needs --connection NAME (the ERP connection to resync from).")
    kind = {None: RunKind.SYNC, "crm": RunKind.RESYNC_FROM_CRM, "erp": RunKind.RESYNC_FROM_ERP}[resync_from]
    if dry_run:
        _preview_command(connection_name, kind, no_blank)
        return
    out = _Output()
    with _interruptible(out):
        connections = _reaped_connections(out, connection_name, "sync")
        if not connections:
            return
        busy: list[str] = []
        progress = _Progress(out)
        outcomes = _run_each(out, progress, connections, kind, {"no_blank": no_blank}, busy, label=str(kind))
        for followup in engine.run_followups(outcomes, on_progress=progress):
            progress.end()
            outcomes.append(followup)
        _summary(out, outcomes)
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
    from portal.services.sync import engine, reconcile

    out = _Output()
    with _interruptible(out):
        connections = _reaped_connections(out, connection_name, "reconcile")
        if not connections:
            return
        busy: list[str] = []
        progress = _Progress(out)
        found = [0]

        def show(entry) -> None:
            progress.end()
            found[0] += 1
            for line in entry.lines():
                out.echo("  " + line)

        def reporting():
            found[0] = 0
            return reconcile.reporting(show)

        def after(outcome) -> None:
            if dry_run and not found[0] and outcome.status != RunStatus.FAILED:
                out.echo("  Nothing would change: both sides agree.")

        outcomes = _run_each(out, progress, connections, RunKind.RECONCILE, {"dry_run": dry_run}, busy,
                             label="reconcile, dry run" if dry_run else "reconcile", report=reporting, after=after)
        if not dry_run:  # what the reconcile wrote into the CRM goes on to the other connections (the CRM is the hub)
            for followup in engine.run_followups(outcomes, on_progress=progress):
                progress.end()
                outcomes.append(followup)
        _reconcile_summary(out, outcomes)
    if busy or any(o.status == RunStatus.FAILED for o in outcomes):
        sys.exit(1)


def _run_each(out: _Output, progress: _Progress, connections, kind: str, options: dict, busy: list[str], *,
              label: str, report=None, after=None) -> list:
    """One run of ``kind`` per connection, in the foreground, one after the other: each requested (a busy
    connection is noted in ``busy``), announced, executed inside ``report()`` (a context manager made per run:
    e.g. a preview's reporting sink) and followed by ``after(outcome)``. Returns the outcomes."""
    from portal.services.sync import engine

    outcomes = []
    for connection in connections:
        run_id = _request(out, connection, kind, options, busy)
        if run_id is None:
            continue
        out.echo(f"{connection.name}: {label} (run #{run_id}) …")
        db.session.commit()
        out.check()
        with report() if report is not None else nullcontext():
            outcomes.append(engine.execute_run(run_id, on_progress=progress))
        progress.end()
        if after is not None:
            after(outcomes[-1])
    return outcomes


def _preview_command(connection_name: str | None, kind: str, no_blank: bool) -> None:
    """``erp sync --dry-run``: a preview run per connection (option ``dry_run``, preview.py); per connection a table
    of what would change (record, field, direction, old -> new, conflicts and errors), then the totals. Writes
    nothing but the runs' own rows; no hub follow-ups (nothing reached the CRM)."""
    from portal.services.sync import preview

    out = _Output()
    outcomes = []
    busy: list[str] = []
    with _interruptible(out):
        connections = _reaped_connections(out, connection_name, "preview")
        if not connections:
            return
        rows: list[list[str]] = []

        def reporting():
            rows.clear()
            return preview.reporting(lambda entry: rows.extend(_preview_rows(entry)))

        def after(outcome) -> None:
            if rows:
                out.echo(_table(["Record", "Field", "Direction", "Old", "New", "Conflict / error"], rows))
            elif outcome.status != RunStatus.FAILED:
                out.echo("  Nothing would change: both sides agree.")

        outcomes += _run_each(out, _Progress(out), connections, kind, {"no_blank": no_blank, "dry_run": True}, busy,
                              label=f"{kind}, dry run", report=reporting, after=after)
        _preview_summary(out, outcomes)
    if busy or any(o.status == RunStatus.FAILED for o in outcomes):
        sys.exit(1)

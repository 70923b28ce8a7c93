"""``erp status``: the connections, their last runs (a run with no sign of life shown as stale, and reaped unless
``--no-reap``) and when the next scheduled sync and reconcile are due."""

from __future__ import annotations

import click
from flask.cli import with_appcontext
from sqlalchemy import func, select

from portal.database import utcnow
from portal.extensions import db
from portal.models import Connection, Link, LinkStatus, RunStatus, SyncRun
from portal.sync_cli.common import _interruptible, _Output, _table, erp_group


def _run_state(run: SyncRun, stale: dict[int, str], reaped: set[int], now) -> tuple[str, str]:
    """(status, note) of a run for ``erp status``: a running run whose heartbeat is older than the lease, or whose
    process is gone, is **stale** (or, once reaped by this command, failed — "was stale")."""
    from portal.services.sync import owner

    if run.id in stale:
        if run.id in reaped:
            return run.status, f"was stale ({stale[run.id]}); reaped: {run.error}"
        return "stale", f"{stale[run.id]}; run `erp status` without --no-reap to fail it"
    if run.status == RunStatus.RUNNING:
        beat = run.heartbeat_at or run.started_at
        age = owner.age_text((now - beat).total_seconds()) if beat is not None else "?"
        return run.status, f"heartbeat {age} ago, process {owner.label(run.worker) or '?'}"
    return run.status, run.error or run.message or ""


@erp_group.command("status")
@click.option("--no-reap", is_flag=True,
              help="Only look: show abandoned runs as stale without failing them.")
@with_appcontext
def status_command(no_reap: bool) -> None:
    """Print the connections, their last runs and when the next scheduled sync is due."""
    from portal.services.bootstrap import sync_settings
    from portal.services.sync import owner, runs

    out = _Output()
    with _interruptible(out):
        now = utcnow()
        stale = {run.id: why for run in db.session.scalars(select(SyncRun).where(SyncRun.status == RunStatus.RUNNING))
                 if (why := owner.staleness(run, now))}
        db.session.commit()
        reaped = set() if no_reap else {r.run_id for r in owner.reap_abandoned(now)}
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
                state, _note = _run_state(run, stale, reaped, now)
                last_text = f"#{run.id} {run.kind} {state} {when:%Y-%m-%d %H:%M:%S}"
            cursors = ", ".join(f"{k}: {v}" for k, v in sorted((connection.cursors or {}).items())) or "-"
            rows.append([connection.name, "active" if connection.active else "inactive",
                         connection.conflict_policy, f"{link_counts.get((connection.id, LinkStatus.OK), 0):,}",
                         f"{link_counts.get((connection.id, LinkStatus.BROKEN), 0):,}", last_text, cursors])
        out.echo(_table(["Connection", "State", "Conflicts", "Links", "Broken", "Last run", "Cursors"], rows)
                 if rows else "No ERP connections.")
        out.echo("")
        recent = db.session.scalars(select(SyncRun).order_by(SyncRun.created_at.desc(), SyncRun.id.desc()).limit(10)
                                    ).all()
        if recent:
            out.echo("Last runs:")
            table = []
            for r in recent:
                state, note = _run_state(r, stale, reaped, now)
                kind = r.kind + (" (preview)" if runs.is_preview(r) else "")
                table.append([f"#{r.id}", r.connection.name if r.connection else "?", kind, r.trigger, state,
                              f"{r.started_at:%Y-%m-%d %H:%M:%S}" if r.started_at else "-",
                              f"{r.duration_seconds:.2f}" if r.duration_seconds is not None else "-", note[:70]])
            out.echo(_table(["Run", "Connection", "Kind", "Trigger", "Status", "Started", "Seconds", "Message"],
                            table))
            out.echo("")
        if stale:
            out.echo("Stale runs (no sign of life):", fg="yellow")
            for run_id, why in sorted(stale.items()):
                run = db.session.get(SyncRun, run_id)
                name = run.connection.name if run.connection else "?"
                tail = f"reaped now: {run.status}." if run_id in reaped else "not reaped (--no-reap)."
                out.echo(f"  #{run_id} {name} {run.kind}: stale, {why}; {tail}", fg="yellow")
            out.echo("")
        auto = f"on, every {settings.interval_seconds} s" if settings.auto_sync else "off"
        out.echo(f"Automatic sync: {auto}")
        out.echo(f"Next sync: {runs.next_due_text(settings)}  (now {utcnow():%Y-%m-%d %H:%M:%S} UTC)")
        from portal.services.sync import reconcile

        due = reconcile.next_due_at(settings)
        paused = " (paused: automatic sync is off)" if due is not None and not settings.auto_sync else ""
        out.echo(f"Reconcile: {reconcile.schedule_text(settings)}{paused}"
                 + (f"; next {max(due, utcnow()):%Y-%m-%d %H:%M} UTC" if due is not None and not paused else ""))
        db.session.commit()

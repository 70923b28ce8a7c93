"""``flask --app wsgi erp …``: run a sync in the foreground, or show the state of the connections.

    flask --app wsgi erp sync [--connection NAME] [--resync-from crm|erp] [--no-blank] [--dry-run]
    flask --app wsgi erp reconcile [--connection NAME] [--dry-run]
    flask --app wsgi erp status [--no-reap]

A foreground sync takes the same per-connection lock as the scheduler (one active run per connection), so it is
safe to run next to the web process; a connection that is busy is reported and skipped. Each connection's run is
requested just before it executes (the command never holds a queued run while it works on another one).

Nothing is left behind (docs/sync-engine.md §2): every command first reaps abandoned runs (their process on this
host is gone, or their heartbeat is older than the lease), with or without a web process. SIGINT (Ctrl-C),
SIGTERM, SIGHUP and a closed output (``erp sync | head -1``: a broken pipe, noticed at the next line written or,
on a pipe, after the next batch) stop the command: the runs it owns are marked failed ("Cancelled: the command was
interrupted (SIGTERM)."), one line goes to stderr, and it exits with 128 + the signal number (141 for a broken
pipe) — no traceback.
"""

from __future__ import annotations

import os
import signal
import stat
import sys
import threading
from contextlib import contextmanager, nullcontext, suppress

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


class Interrupted(BaseException):  # noqa: N818 - like KeyboardInterrupt, which it stands for
    """The command must stop now: a signal, or its output was closed. A BaseException, so that it unwinds through
    the engine (which turns every ``Exception`` into a failed run and carries on) to the command, which cancels
    the runs it owns."""

    def __init__(self, reason: str, exit_code: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.exit_code = exit_code


BROKEN_PIPE = "broken pipe: its output was closed"
SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name))


def _silence(stream) -> None:
    """Point a closed stream's descriptor at /dev/null, so nothing written later (Python flushing at exit
    included) raises BrokenPipeError again."""
    with suppress(AttributeError, OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, stream.fileno())
        finally:
            os.close(devnull)


def _pipe_closed(stream) -> bool:
    """True when ``stream`` is a pipe (or socket) whose reading end is gone — noticed without writing to it."""
    import select as io_select

    try:
        fd = stream.fileno()
        mode = os.fstat(fd).st_mode
    except (AttributeError, OSError, ValueError):
        return False
    if not (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)) or not hasattr(io_select, "poll"):
        return False
    poller = io_select.poll()
    poller.register(fd, io_select.POLLOUT)
    return any(events & (io_select.POLLERR | io_select.POLLHUP) for _fd, events in poller.poll(0))


class _Output:
    """Everything the command prints goes through here: a closed output (broken pipe) becomes ``Interrupted``."""

    def __init__(self) -> None:
        self.requested: list[int] = []  # runs this command created (also recorded as their owner)

    def echo(self, message: str = "", *, err: bool = False, fg: str | None = None, nl: bool = True) -> None:
        try:
            click.secho(message, err=err, fg=fg, nl=nl)
        except BrokenPipeError:
            _silence(sys.stderr if err else sys.stdout)
            raise Interrupted(BROKEN_PIPE, 128 + 13) from None

    def last_words(self, message: str) -> None:
        """A line on stderr that must not fail (the command is stopping anyway)."""
        try:
            click.secho(message, err=True, fg="red")
        except OSError:
            _silence(sys.stderr)

    def check(self) -> None:
        """Between batches: stop when the output pipe was closed even though nothing was written to it since."""
        if _pipe_closed(sys.stdout):
            _silence(sys.stdout)
            raise Interrupted(BROKEN_PIPE, 128 + 13)


@contextmanager
def _interruptible(out: _Output):
    """SIGINT, SIGTERM and SIGHUP raise ``Interrupted`` in the command (the main thread); on ``Interrupted`` the
    runs this process owns or requested are marked failed, one line is printed and the command exits with
    128 + the signal number."""
    from portal.services.sync import owner

    def raise_interrupted(signum, _frame):
        raise Interrupted(signal.Signals(signum).name, 128 + signum)

    previous = {}
    if threading.current_thread() is threading.main_thread():
        for signum in SIGNALS:
            with suppress(OSError, ValueError):
                previous[signum] = signal.signal(signum, raise_interrupted)
    try:
        yield
    except Interrupted as exc:
        for signum in previous:  # a second Ctrl-C must not interrupt the clean-up
            signal.signal(signum, signal.SIG_IGN)
        cancelled = owner.cancel_owned(out.requested, f"Cancelled: the command was interrupted ({exc.reason}).")
        what = ", ".join(f"#{run_id}" for run_id in cancelled)
        out.last_words(f"Interrupted ({exc.reason})" + (f": run {what} cancelled." if cancelled else "."))
        sys.exit(exc.exit_code)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


class _Progress:
    """A one-line progress bar on a terminal; silent when the output is not a terminal. After every batch it also
    notices an output pipe that was closed meanwhile."""

    def __init__(self, out: _Output, stream=None) -> None:
        self.out = out
        self.stream = stream or sys.stdout
        self.tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.shown = False

    def __call__(self, done: int, total: int, counts: dict) -> None:
        self.out.check()
        if not self.tty:
            return
        total = max(total, done, 1)
        width = 30
        filled = int(width * done / total)
        bar = "#" * filled + "-" * (width - filled)
        self.out.echo(f"\r  [{bar}] {done:,}/{total:,} records  to CRM {counts.get('to_crm', 0):,}  "
                      f"to ERP {counts.get('to_erp', 0):,}  errors {counts.get('errors', 0):,}", nl=False)
        self.shown = True

    def end(self) -> None:
        if self.shown:
            self.out.echo("")
            self.shown = False


def _reap(out: _Output) -> None:
    """Fail abandoned runs first (no web process needed): their process on this host is gone, or their heartbeat
    is older than the lease."""
    from portal.services.sync import owner

    for reaped in owner.reap_abandoned():
        connection = db.session.get(Connection, reaped.connection_id)
        name = connection.name if connection is not None else f"connection #{reaped.connection_id}"
        out.echo(f"Reaped run #{reaped.run_id} of {name}: {reaped.error}", err=True, fg="yellow")
    db.session.commit()


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
        _reap(out)
        connections = _connections(connection_name)
        if not connections:
            out.echo("No active connection with an active actor type: nothing to sync.")
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
        _reap(out)
        connections = _connections(connection_name)
        if not connections:
            out.echo("No active connection with an active actor type: nothing to reconcile.")
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
        _reap(out)
        connections = _connections(connection_name)
        if not connections:
            out.echo("No active connection with an active actor type: nothing to preview.")
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
    for outcome in outcomes:
        run = db.session.get(SyncRun, outcome.run_id)
        colour = "red" if run.status == RunStatus.FAILED else ("yellow" if run.status == RunStatus.PARTIAL else None)
        out.echo(f"#{run.id} {run.connection.name}: {run.error or run.message}", fg=colour)
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
    for outcome in outcomes:
        run = db.session.get(SyncRun, outcome.run_id)
        colour = "red" if run.status == RunStatus.FAILED else ("yellow" if run.status == RunStatus.PARTIAL else None)
        out.echo(f"#{run.id} {run.connection.name}: {run.error or run.message}", fg=colour)
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
    for outcome in outcomes:
        run = db.session.get(SyncRun, outcome.run_id)
        colour = "red" if run.status == RunStatus.FAILED else ("yellow" if run.status == RunStatus.PARTIAL else None)
        out.echo(f"#{run.id} {run.connection.name}: {run.message}", fg=colour)
    db.session.commit()


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

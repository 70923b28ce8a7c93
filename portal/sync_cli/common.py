"""What every ``erp`` command shares: the ``erp`` click group, plain-text tables, the output (a closed pipe becomes
``Interrupted``), the signal handling that cancels the runs the command owns, and the progress bar."""

from __future__ import annotations

import os
import signal
import stat
import sys
import threading
from contextlib import contextmanager, suppress

import click
from flask.cli import AppGroup

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

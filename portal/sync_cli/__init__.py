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

The package: ``common`` (the ``erp`` group and what its commands share: tables, the output that turns a closed pipe
into ``Interrupted``, the signal handling, the progress bar), ``run`` (``erp sync`` and ``erp reconcile``, the dry
run included: each connection's run requested and executed in the foreground), ``summaries`` (what they print
after the runs) and ``status`` (``erp status``).
"""

from portal.sync_cli.common import erp_group
from portal.sync_cli.run import reconcile_command, sync_command
from portal.sync_cli.status import status_command

__all__ = ["erp_group", "reconcile_command", "status_command", "sync_command"]

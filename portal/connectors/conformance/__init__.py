"""The conformance kit: runs every protocol method against a connector and reports what does not follow the
contract of shared/docs/connector-protocol.md.

``run_checks(client, config)`` returns one :class:`CheckResult` per check; ``flask --app wsgi connector check
URL --config Key=Value …`` prints them as a table and exits with status 1 when anything FAILed.

Statuses:

* ``PASS`` — the connector did what the contract says;
* ``FAIL`` — it broke the contract (the reason says how);
* ``WARN`` — it worked, but not cleanly: an optional (ext) feature is not offered, the connector answered
  ``State: Warning``, or something looks suspicious without being provably wrong;
* ``SKIP`` — the check could not run (nothing to check, or an earlier check it depends on failed).

The write checks (``CreateActor``, ``SaveActors``) create one record per actor type in the ERP (two when the
connector does not honour ``IdempotencyKey``); the protocol has no way to delete them. "GetActorsByTimestamp
paging under writes" also re-saves one existing actor per type with its current value (or, when that writes
nothing, changes one Text field and restores it). Use ``write=False`` (``--no-write``) against an ERP whose data
matters.

The package, one module per concern: ``results`` (statuses, :class:`CheckResult`, the report table), ``wording``
(how reasons quote values and errors), ``validation`` (the contract's rules for LastModified, field values, field
metadata and config text), ``runner`` (running one check, calling the connector, the state the checks share), the
checks by protocol area — ``connection``, ``catalogue`` (fields, searchable fields, lists), ``reads`` (the change
feed and GetActors), ``search``, ``writes`` (CreateActor, SaveActors) and ``paging_under_writes`` — then ``kit``
(:class:`ConformanceKit`: the order the checks run in; :func:`run_checks`). Everything is importable from here, as it
was from the single module it was split from. The ``flask connector check`` command is ``portal/connector_cli.py``:
it needs the services layer's client, and this package never imports a layer above it.
"""

from portal.connectors.conformance.catalogue import CatalogueChecks
from portal.connectors.conformance.connection import ConnectionChecks
from portal.connectors.conformance.kit import WRITE_ORDER, ConformanceKit, run_checks
from portal.connectors.conformance.paging_under_writes import FEED_WINDOW, WRITE_PAGE_LIMIT, PagingUnderWritesChecks
from portal.connectors.conformance.reads import NOT_FOUND, ReadChecks
from portal.connectors.conformance.results import (
    FAIL,
    PASS,
    SKIP,
    STATUSES,
    WARN,
    CheckResult,
    Failed,
    Skipped,
    format_table,
    has_failures,
)
from portal.connectors.conformance.runner import (
    CLIENT_LOG,
    ENVELOPE,
    REASON_LIMIT,
    STATE_VALUES,
    CheckRunner,
    quiet_client_log,
)
from portal.connectors.conformance.search import SearchChecks
from portal.connectors.conformance.validation import (
    TEXT_TYPES,
    convert_config_value,
    metadata_problems,
    parse_last_modified,
    value_problem,
)
from portal.connectors.conformance.wording import MAX_LISTED
from portal.connectors.conformance.writes import PARENT_TYPES, WriteChecks

__all__ = [
    "CLIENT_LOG",
    "ENVELOPE",
    "FAIL",
    "FEED_WINDOW",
    "MAX_LISTED",
    "NOT_FOUND",
    "PARENT_TYPES",
    "PASS",
    "REASON_LIMIT",
    "SKIP",
    "STATE_VALUES",
    "STATUSES",
    "TEXT_TYPES",
    "WARN",
    "WRITE_ORDER",
    "WRITE_PAGE_LIMIT",
    "CatalogueChecks",
    "CheckResult",
    "CheckRunner",
    "ConformanceKit",
    "ConnectionChecks",
    "Failed",
    "PagingUnderWritesChecks",
    "ReadChecks",
    "SearchChecks",
    "Skipped",
    "WriteChecks",
    "convert_config_value",
    "format_table",
    "has_failures",
    "metadata_problems",
    "parse_last_modified",
    "quiet_client_log",
    "run_checks",
    "value_problem",
]

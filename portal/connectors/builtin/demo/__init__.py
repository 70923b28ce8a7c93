"""The built-in Demo ERP: a small, self-contained ERP behind a connector, so the portal works with no ERP at hand.

It simulates a *separate* system: its own SQLite file (``config["DEMO_ERP_DB"]``), opened with the ``sqlite3``
module and never through the portal's models or session. The connector answers every protocol method
(shared/docs/connector-protocol.md) and the /demo-erp/ pages edit the same data through ``update_fields``,
``delete_actor`` … so changes made "in the ERP" flow to the portal through ``GetActorsByTimestamp``.

Storage notes:
- One connection per call (WAL, busy_timeout); writes take a process-wide lock and ``BEGIN IMMEDIATE``, so
  concurrent request and scheduler threads (and a second process serving the same file) never interleave.
- ``LastModified`` is global and strictly increasing: every written actor gets its own microsecond, taken from
  a high-water mark kept in the database (``max(now, hwm + 1 µs)``), so even writes in the same microsecond or
  a clock stepping back keep the order. It is stored as integer microseconds (indexed) and rendered as
  ISO-8601 UTC (``2026-11-25T17:02:06.123456Z``).
- Deleting is soft (``deleted = 1``): deleted actors are left out of every answer.
- The file (and its -wal/-shm) is owner-only (0600). A saved connection's password (config fields of type
  Password) is kept as a salted PBKDF2 digest, never as given: the Demo ERP only has to check it.

The package, lowest layer first (each module imports only those above it; the seed data is
``portal.connectors.builtin.demo_seed``):

* ``catalogue``: actor types, keys and numbers, the fields and config fields the connector answers;
* ``passwords``: the demo password and the digest a saved config keeps instead of a password;
* ``schema``: the tables; ``timestamps``: LastModified as stored and as answered;
* ``values``: field values checked and coerced, display names and search text;
* ``request_members``, ``actor_documents``, ``restrictions``: request members read, stored rows as ErpActor
  documents, SearchActorsAdvanced restrictions compiled;
* ``storage``: ``DemoErpStorage``, the SQLite file (transactions, set-up and seeding, allocation, writes, look-ups);
* ``protocol_connections``, ``protocol_reads``, ``protocol_writes``: the protocol methods;
* ``erp_side``: what the pages, CLI, tests and benchmarks do to the ERP directly;
* ``connector``: ``DemoErpConnector``, all of the above in one object, registered as ``builtin:demo``.

Callers use the names re-exported here (``from portal.connectors.builtin.demo import DemoErpConnector``);
importing the package registers the connector.
"""

from __future__ import annotations

from portal.connectors.builtin.demo.catalogue import (
    ACTOR_TYPES,
    CONFIG_FIELDS,
    FIELD_INDEX,
    FIELDS,
    KEY_PREFIX,
    MULTI_LANGUAGE,
    NUMBER_FIELD,
    PARENT_TYPES,
    SEARCH_TEXT_FIELDS,
    SEARCHABLE_FIELDS,
    answered_fields,
)
from portal.connectors.builtin.demo.connector import DemoErpConnector, make_demo_connector
from portal.connectors.builtin.demo.passwords import DEMO_PASSWORD, SECRET_CONFIG_KEYS, config_to_store
from portal.connectors.builtin.demo.protocol_connections import OFFLINE_MESSAGE
from portal.connectors.builtin.demo.protocol_reads import MAX_PAGE
from portal.connectors.builtin.demo.schema import SCHEMA_VERSION
from portal.connectors.builtin.demo.timestamps import format_timestamp, parse_timestamp
from portal.connectors.builtin.demo.values import DemoErpValidationError, coerce_value, display_name

__all__ = [
    "ACTOR_TYPES",
    "CONFIG_FIELDS",
    "DEMO_PASSWORD",
    "DemoErpConnector",
    "DemoErpValidationError",
    "FIELDS",
    "FIELD_INDEX",
    "KEY_PREFIX",
    "MAX_PAGE",
    "MULTI_LANGUAGE",
    "NUMBER_FIELD",
    "OFFLINE_MESSAGE",
    "PARENT_TYPES",
    "SCHEMA_VERSION",
    "SEARCHABLE_FIELDS",
    "SEARCH_TEXT_FIELDS",
    "SECRET_CONFIG_KEYS",
    "answered_fields",
    "coerce_value",
    "config_to_store",
    "display_name",
    "format_timestamp",
    "make_demo_connector",
    "parse_timestamp",
]

"""The Tryton connector: the sync-connector protocol in front of a real Tryton ERP (trytond 8.x).

Tryton is GPL-3 and is never imported here: it runs as its own server, and this connector talks to it through
JSON-RPC over HTTP (``tryton_rpc.TrytonClient``). Reachable in-process as ``builtin:tryton`` and on its own with
``flask --app wsgi tryton serve-connector``.

Mapping (see docs/tryton.md for the full story):

* **Customer / Supplier** = an active ``party.party`` carrying the party category "Customer" / "Supplier"
  (core Tryton has no customer flag). A party with both categories is both. ErpKey = party id.
* **Person** = a party with a ``party.relation`` of type "Employee of" to its company; ParentErpKey is that
  company's party id and ParentActorType its type (Customer if it has that category, else Supplier).
  Tryton keeps one name per party: FIRSTNAME is everything before the last space, LASTNAME the last word
  ("Anna Maria Schmidt" → "Anna Maria" / "Schmidt"; a one-word name is a LASTNAME). Writing joins them.
* **Project** = a ``project.work`` of type "project". STARTDATE/ENDDATE are the work's timesheet period
  (core Tryton has no other project dates); STATE is "opened"/"done" from ``project.work.status``.
* Archived parties (``active = False``) are treated as deleted: GetActors leaves them out (projects have no
  archive flag in Tryton; a deleted project is left out).

LastModified is Tryton's ``last_modified_at`` (UTC, µs) as ``2026-11-25T17:02:06.123456Z``. Editing a party's
address, contact mechanism or identifier on its own does not touch the party's own timestamp in Tryton, so a
party's LastModified is the maximum over the party and those children (archived ones included), and
GetActorsByTimestamp also finds parties whose children changed (children are searched by their own
``last_modified_at``). Comparisons are inclusive (``>=``). Not seen until the party changes otherwise: deleting a
child directly through Tryton's API (the Tryton client saves children through the party, which bumps the party)
and relations created or edited on their own (``party.relation.all`` is a SQL view whose timestamps read as "now",
and ``party.relation`` is not exposed over RPC).

Stale writes: the portal sends, with each actor in SaveActors, the LastModified it last saw. If the actor's
current LastModified is later, nothing is written and the answer is IsOk false, ErrorCode "CONFLICT". Between
our read and our write, Tryton's own optimistic lock (``_timestamp`` in the context) guards the party and every
child record we change; if it trips, the answer is also "CONFLICT". An actor sent without LastModified is
written without the first check (only the ``_timestamp`` guard applies). A SaveActors call is all-or-nothing:
everything is validated first and all parties are written in one Tryton transaction (one ``write`` call with
nested one2many actions for addresses, contact mechanisms, identifiers and relations).

The package, lowest layer first (each module imports only those above it; the JSON-RPC transport is
``portal.connectors.builtin.tryton_rpc``):

* ``catalogue``: actor types, lists and limits, the fields of each actor type, contact mechanisms and address
  keys, the advanced-search map (FieldKey → where to look in Tryton), the fields read from Tryton;
* ``config``: the connection's config fields, their checks (and the URL guard at save time), ``make_client``;
* ``values``: timestamps, dates, person names, LIKE patterns and text matching;
* ``request_members``: ConnectionGuid, ActorType, FieldKeys, Limit and ErpKeys read from a request; ids chunked;
* ``errors``: ``_protocol``, TrytonErrors raised in a protocol method turned into ProtocolErrors;
* ``connection_store``: ``ConnectionStore``, the SQLite file of saved configs and IdempotencyKeys;
* ``connections``: a live connection (client, cached reference data) and ``TrytonConnections``, the base of the
  connector: connections by GUID, reference data, the company, the domain selecting each actor type;
* ``actor_documents``: parties and project works read from Tryton and answered as ErpActor documents;
* ``protocol_connections``: config and connection methods, the catalogue (metadata) and lists;
* ``protocol_reads``: GetActors and the change feed GetActorsByTimestamp;
* ``protocol_searches``: SearchActors, SearchActorByParent, SearchActorsAdvanced (restrictions → domains);
* ``actor_changes``: FieldValues checked and turned into Tryton ``create``/``write`` values;
* ``protocol_writes``: CreateActor and SaveActors;
* ``connector``: ``TrytonConnector``, all of the above in one object, registered as ``builtin:tryton``.

Callers use the names re-exported here (``from portal.connectors.builtin.tryton import TrytonConnector``);
importing the package registers the connector.
"""

from __future__ import annotations

from portal.connectors.builtin.tryton.catalogue import (
    ACTOR_TYPES,
    ADDRESS_KEYS,
    CACHE_SECONDS,
    CHUNK,
    CONTROL_CHARS,
    CUSTOMER,
    EMPLOYEE_OF,
    EMPLOYER_OF,
    FIELD_INDEX,
    FIELDS,
    LIST_COUNTRIES,
    LIST_LANGUAGES,
    LIST_PROJECT_STATES,
    LISTS,
    MAX_RESULTS,
    MECHANISMS,
    MULTILINE_KEYS,
    NEGATIVE,
    PARTY_FIELDS,
    PARTY_TYPES,
    PERSON,
    PROJECT,
    SEARCH,
    STATE_DONE,
    STATE_OPENED,
    SUPPLIER,
    TEXT_OPERATORS,
    WORK_FIELDS,
)
from portal.connectors.builtin.tryton.config import (
    CFG_COMPANY,
    CFG_DATABASE,
    CFG_PASSWORD,
    CFG_TIMEOUT,
    CFG_URL,
    CFG_USER,
    CONFIG_FIELDS,
    DEFAULT_URL,
    make_client,
)
from portal.connectors.builtin.tryton.connection_store import ConnectionStore
from portal.connectors.builtin.tryton.connector import TrytonConnector, make_connector, state_path
from portal.connectors.builtin.tryton.errors import ERROR_CODES
from portal.connectors.builtin.tryton.values import (
    iso_utc,
    join_person_name,
    parse_date,
    parse_timestamp,
    split_person_name,
)

__all__ = [
    "ACTOR_TYPES",
    "ADDRESS_KEYS",
    "CACHE_SECONDS",
    "CFG_COMPANY",
    "CFG_DATABASE",
    "CFG_PASSWORD",
    "CFG_TIMEOUT",
    "CFG_URL",
    "CFG_USER",
    "CHUNK",
    "CONFIG_FIELDS",
    "CONTROL_CHARS",
    "CUSTOMER",
    "ConnectionStore",
    "DEFAULT_URL",
    "EMPLOYEE_OF",
    "EMPLOYER_OF",
    "ERROR_CODES",
    "FIELDS",
    "FIELD_INDEX",
    "LISTS",
    "LIST_COUNTRIES",
    "LIST_LANGUAGES",
    "LIST_PROJECT_STATES",
    "MAX_RESULTS",
    "MECHANISMS",
    "MULTILINE_KEYS",
    "NEGATIVE",
    "PARTY_FIELDS",
    "PARTY_TYPES",
    "PERSON",
    "PROJECT",
    "SEARCH",
    "STATE_DONE",
    "STATE_OPENED",
    "SUPPLIER",
    "TEXT_OPERATORS",
    "TrytonConnector",
    "WORK_FIELDS",
    "iso_utc",
    "join_person_name",
    "make_client",
    "make_connector",
    "parse_date",
    "parse_timestamp",
    "split_person_name",
    "state_path",
]

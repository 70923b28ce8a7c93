"""Connections to Tryton databases. ``_Connection`` is one saved connection at work (its config, its JSON-RPC
client, its cached reference data ``_Refs``). ``TrytonConnections`` is the base of the connector: the store of
saved configs, the live connections by GUID, a lock per IdempotencyKey, the reference data (categories, relation
types, countries, languages, project states), the company, and the domain that selects each actor type."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from portal.connectors.builtin.tryton.catalogue import (
    CACHE_SECONDS,
    CUSTOMER,
    EMPLOYEE_OF,
    EMPLOYER_OF,
    PERSON,
    PROJECT,
    SUPPLIER,
)
from portal.connectors.builtin.tryton.config import CFG_COMPANY, make_client
from portal.connectors.builtin.tryton.connection_store import ConnectionStore
from portal.connectors.builtin.tryton.request_members import _guid
from portal.connectors.builtin.tryton.values import _escape_like
from portal.connectors.builtin.tryton_rpc import TrytonClient
from portal.connectors.protocol import UNKNOWN_CONNECTION_ID
from portal.connectors.service import ProtocolError


@dataclass
class _Refs:
    """Reference ids and lists of one Tryton database, cached for CACHE_SECONDS."""

    loaded_at: float = 0.0
    categories: dict[int, str] = field(default_factory=dict)  # id → name
    category_ids: dict[str, int] = field(default_factory=dict)  # "Customer"/"Supplier" → id (root categories)
    relation_types: dict[str, int] = field(default_factory=dict)  # "Employee of"/"Employer of" → id
    countries: dict[int, tuple[str, str]] = field(default_factory=dict)  # id → (code, name)
    country_ids: dict[str, int] = field(default_factory=dict)  # code → id
    langs: dict[int, tuple[str, str]] = field(default_factory=dict)
    lang_ids: dict[str, int] = field(default_factory=dict)
    statuses: list[dict] = field(default_factory=list)  # project.work.status rows (id, name, progress)
    subdivisions: dict[int, tuple[str, str]] = field(default_factory=dict)  # id → (code, name), filled lazily


class _Connection:
    """A saved connection: its config, its Tryton client and its cached reference data."""

    def __init__(self, guid: str, config: Mapping, allowed_networks: Sequence[str] = ()):
        self.guid = guid
        self.config = dict(config)
        self.client = make_client(config, allowed_networks)
        self.refs = _Refs()
        self.refs_lock = threading.Lock()
        self.write_lock = threading.Lock()  # serialises creates/writes (SQLite party-code sequence, pitfall 8)
        self.company_id: int | None = None

    @property
    def url(self) -> str:
        return self.client.url


class TrytonConnections:
    """Saved connections, their live clients and reference data: the base of the connector's protocol methods."""

    def __init__(self, state_path: str | os.PathLike, *, secret_keys: list[str] | None = None,
                 allowed_networks: Sequence[str] = ()):
        self.store = ConnectionStore(state_path, secret_keys)
        self.allowed_networks = tuple(allowed_networks or ())
        self._connections: dict[str, _Connection] = {}
        self._lock = threading.Lock()
        self._key_locks: dict[tuple[str, str], threading.Lock] = {}

    # -- connections
    def _connection(self, body: Mapping) -> _Connection:
        guid = _guid(body)
        with self._lock:
            conn = self._connections.get(guid)
        if conn is not None:
            return conn
        config = self.store.load(guid)
        if config is None:
            raise ProtocolError("The Tryton connector does not know this connection; it needs its settings again.",
                                f"no config for {guid}", UNKNOWN_CONNECTION_ID)
        conn = _Connection(guid, config, self.allowed_networks)
        with self._lock:
            return self._connections.setdefault(guid, conn)

    def client(self, guid: str) -> TrytonClient:
        """The JSON-RPC client of a saved connection (diagnostics and tests)."""
        return self._connection({"ConnectionGuid": guid}).client

    def _forget(self, guid: str) -> None:
        with self._lock:
            conn = self._connections.pop(guid, None)
        if conn is not None:
            conn.client.logout()

    def _key_lock(self, guid: str, key: str) -> threading.Lock:
        with self._lock:
            return self._key_locks.setdefault((guid, key), threading.Lock())

    def _refs(self, conn: _Connection, *, refresh: bool = False) -> _Refs:
        with conn.refs_lock:
            refs = conn.refs
            if not refresh and refs.loaded_at and time.monotonic() - refs.loaded_at < CACHE_SECONDS:
                return refs
            client = conn.client
            new = _Refs(loaded_at=time.monotonic(), subdivisions=refs.subdivisions)
            for row in client.search_read("party.category", [], ["name", "parent"], context={"active_test": False}):
                new.categories[row["id"]] = row["name"]
                if row.get("parent") is None and row["name"] in (CUSTOMER, SUPPLIER):
                    new.category_ids.setdefault(row["name"], row["id"])
            for row in client.search_read("party.relation.type", [["name", "in", [EMPLOYEE_OF, EMPLOYER_OF]]],
                                          ["name"], order=[["id", "ASC"]]):
                new.relation_types.setdefault(row["name"], row["id"])
            for row in client.search_read("country.country", [], ["code", "name"], order=[["name", "ASC"]]):
                if row.get("code"):
                    new.countries[row["id"]] = (row["code"], row["name"])
                    new.country_ids[row["code"].upper()] = row["id"]
            for row in client.search_read("ir.lang", [], ["code", "name"], order=[["name", "ASC"]]):
                new.langs[row["id"]] = (row["code"], row["name"])
                new.lang_ids[row["code"]] = row["id"]
            new.statuses = client.search_read("project.work.status", [], ["name", "progress", "types"],
                                              order=[["sequence", "ASC"], ["id", "ASC"]])
            conn.refs = new
            return new

    def _company(self, conn: _Connection) -> int | None:
        """The configured company (id or party name), else the user's current company."""
        if conn.company_id is not None:
            return conn.company_id
        wanted = str(conn.config.get(CFG_COMPANY) or "").strip()
        client = conn.client
        if wanted:
            domain = [["id", "=", int(wanted)]] if wanted.isdigit() else [["party.name", "ilike", _escape_like(wanted)]]
            found = client.search("company.company", domain, limit=2)
            if len(found) != 1:
                raise ProtocolError(f"Tryton has no single company '{wanted}'.", f"found {found}",
                                    "ERP_CONFIGURATION")
            conn.company_id = found[0]
            client.extra_context.update({"company": found[0], "companies": [found[0]]})
            client.login()  # re-read the context with the company
        else:
            conn.company_id = client.context.get("company")
        return conn.company_id

    # -- type domains
    def _type_domain(self, conn: _Connection, actor_type: str) -> list | None:
        """Domain selecting the actors of a type, or None when the database cannot have any (missing setup)."""
        if actor_type == PROJECT:
            domain = [["type", "=", "project"]]
            company = self._company(conn)
            if company:
                domain.append(["company", "=", company])
            return domain
        refs = self._refs(conn)
        if actor_type == PERSON:
            type_id = refs.relation_types.get(EMPLOYEE_OF)
            return None if type_id is None else [["relations", "where", [["type", "=", type_id]]]]
        category = refs.category_ids.get(actor_type)
        return None if category is None else [["categories", "in", [category]]]

    def _search_ids(self, conn: _Connection, actor_type: str, domain: list, *, limit: int | None = None,
                    order: list | None = None) -> list[int]:
        base = self._type_domain(conn, actor_type)
        if base is None:
            return []
        model = "project.work" if actor_type == PROJECT else "party.party"
        return conn.client.search(model, base + domain, limit=limit,
                                  order=order or [["name", "ASC"], ["id", "ASC"]])

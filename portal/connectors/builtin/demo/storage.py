"""The Demo ERP's storage: its own SQLite file, opened with ``sqlite3`` (never the portal's models or session).

``DemoErpStorage`` is the base of the connector: connections and transactions, first-use set-up and seeding,
key and LastModified allocation, inserting, updating and finding actors, checking values before they are stored,
and stored rows as ErpActor documents. The protocol methods and the ERP's own side are built on it.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

from portal.connectors.builtin.demo.actor_documents import _doc_of, _field_plan
from portal.connectors.builtin.demo.catalogue import FIELD_INDEX, FIELDS, KEY_PREFIX, NUMBER_FIELD, PARENT_TYPES
from portal.connectors.builtin.demo.passwords import SECRET_CONFIG_KEYS, _is_digest, config_to_store
from portal.connectors.builtin.demo.schema import _SCHEMA, SCHEMA_VERSION
from portal.connectors.builtin.demo.timestamps import _now_micros, format_timestamp
from portal.connectors.builtin.demo.values import _blank, _search_text, coerce_value, display_name
from portal.connectors.builtin.demo_seed import LISTS, generate_seed
from portal.security.files import private_sqlite_files

_CHUNK = 500  # keys per IN (...) query
_BY_NAME = "display_name COLLATE NOCASE, erp_key"  # the order of searches and the pages (ix_actors_name)


def _chunks(items: Sequence, size: int = _CHUNK):
    for start in range(0, len(items), size):
        yield items[start:start + size]


_PATH_LOCKS: dict[str, threading.Lock] = {}
_REGISTRY_LOCK = threading.RLock()


def _path_lock(path: str) -> threading.Lock:
    """One write lock per database file, shared by every instance on it in this process."""
    with _REGISTRY_LOCK:
        return _PATH_LOCKS.setdefault(str(Path(path).resolve()), threading.Lock())


class DemoErpStorage:
    """The Demo ERP's data on the SQLite file ``path`` (created and seeded on first use)."""

    def __init__(self, path: str | Path, *, seed: bool = True, busy_timeout_ms: int = 10000):
        self.path = str(path)
        self.seed = seed
        self.busy_timeout_ms = busy_timeout_ms
        self._write_lock = _path_lock(self.path)
        self._init_lock = threading.Lock()
        self._ready = False
        self._lists: dict[str, dict[str, str]] = {}

    # -- storage ---------------------------------------------------------------------------------------------

    @contextmanager
    def _connect(self):
        conn = sqlite3.connect(self.path, timeout=self.busy_timeout_ms / 1000, isolation_level=None)
        try:
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
            conn.execute("PRAGMA synchronous = NORMAL")
            yield conn
        finally:
            conn.close()

    @contextmanager
    def _read(self):
        self._ensure_ready()
        with self._connect() as conn:
            yield conn

    @contextmanager
    def _write(self, *, ensure_ready: bool = True):
        """One short IMMEDIATE transaction: all or nothing."""
        if ensure_ready:
            self._ensure_ready()
        with self._write_lock, self._connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    def _ensure_ready(self) -> None:
        if self._ready:
            return
        with self._init_lock:
            if self._ready:
                return
            # owner-only before SQLite creates it (and its -wal/-shm, which take its mode)
            private_sqlite_files(self.path)
            with self._connect() as conn:
                conn.execute("PRAGMA journal_mode = WAL")
            with self._write(ensure_ready=False) as conn:
                for statement in _SCHEMA:
                    conn.execute(statement)
                if self._meta(conn, "schema_version") is None:
                    self._set_meta(conn, "schema_version", SCHEMA_VERSION)
                if self._meta(conn, "seeded") is None:
                    self._seed(conn)
                self._scrub_stored_secrets(conn)
            self._load_lists()
            self._ready = True

    @staticmethod
    def _scrub_stored_secrets(conn: sqlite3.Connection) -> None:
        """Rewrite configs saved (by an older version) with a plain password."""
        for row in conn.execute("SELECT guid, config FROM connections").fetchall():
            config = json.loads(row[1])
            if isinstance(config, dict) and any(config.get(k) not in (None, "") and not _is_digest(config.get(k))
                                                for k in SECRET_CONFIG_KEYS):
                conn.execute("UPDATE connections SET config = ? WHERE guid = ?",
                             (json.dumps(config_to_store(config)), row[0]))

    @staticmethod
    def _meta(conn: sqlite3.Connection, key: str) -> str | None:
        row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    @staticmethod
    def _set_meta(conn: sqlite3.Connection, key: str, value: str) -> None:
        conn.execute("INSERT INTO meta (key, value) VALUES (?, ?) "
                     "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (key, value))

    def _load_lists(self) -> None:
        with self._connect() as conn:
            rows = conn.execute("SELECT list_name, item_key, item_text FROM lists ORDER BY list_name, rank").fetchall()
        lists: dict[str, dict[str, str]] = {}
        for row in rows:
            lists.setdefault(row["list_name"], {})[row["item_key"]] = row["item_text"]
        self._lists = lists

    def _allocate_timestamps(self, conn: sqlite3.Connection, count: int) -> int:
        """The first of ``count`` consecutive LastModified values (µs), all later than any given before."""
        high_water = int(self._meta(conn, "last_modified_hwm") or 0)
        first = max(_now_micros(), high_water + 1)
        self._set_meta(conn, "last_modified_hwm", str(first + max(count, 1) - 1))
        return first

    def _allocate_numbers(self, conn: sqlite3.Connection, actor_type: str, count: int) -> int:
        prefix, start = KEY_PREFIX[actor_type]
        last = int(self._meta(conn, f"seq:{actor_type}") or start)
        self._set_meta(conn, f"seq:{actor_type}", str(last + count))
        return last + 1

    def _seed(self, conn: sqlite3.Connection) -> None:
        conn.executemany(
            "INSERT OR REPLACE INTO lists (list_name, item_key, item_text, rank) VALUES (?, ?, ?, ?)",
            [(name, key, text, rank) for name, items in LISTS.items() for rank, (key, text) in enumerate(items)],
        )
        if self.seed:
            data = generate_seed()
            customers = self._insert(conn, "Customer", data.customers, [None] * len(data.customers))
            suppliers = self._insert(conn, "Supplier", data.suppliers, [None] * len(data.suppliers))
            keys = {"Customer": customers, "Supplier": suppliers}
            self._insert(conn, "Person", [fields for _, _, fields in data.persons],
                         [(ptype, keys[ptype][index]) for ptype, index, _ in data.persons])
            self._insert(conn, "Project", data.projects, [None] * len(data.projects))
        self._set_meta(conn, "seeded", format_timestamp(_now_micros()))

    def _insert(self, conn: sqlite3.Connection, actor_type: str, rows: Sequence[dict],
                parents: Sequence[tuple[str, str] | None]) -> list[str]:
        """Insert already-clean field dicts; assigns keys, numbers and LastModified. Returns the keys."""
        if not rows:
            return []
        prefix, _ = KEY_PREFIX[actor_type]
        first_number = self._allocate_numbers(conn, actor_type, len(rows))
        first_stamp = self._allocate_timestamps(conn, len(rows))
        number_field = NUMBER_FIELD.get(actor_type)
        keys, params = [], []
        for offset, (fields, parent) in enumerate(zip(rows, parents, strict=True)):
            number = first_number + offset
            key = f"{prefix}{number}"
            fields = dict(fields)
            if number_field and _blank(fields.get(number_field)):
                fields[number_field] = str(number)
            parent_type, parent_key = parent if parent else (None, None)
            keys.append(key)
            params.append((key, actor_type, parent_type, parent_key, display_name(actor_type, fields),
                           _search_text(actor_type, fields), json.dumps(fields, ensure_ascii=False),
                           first_stamp + offset))
        conn.executemany(
            "INSERT INTO actors (erp_key, actor_type, parent_type, parent_key, display_name, search_text, fields, "
            "last_modified) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", params)
        return keys

    def _rows_by_key(self, conn: sqlite3.Connection, keys: Sequence[str], *, live_only: bool = True) -> dict:
        found: dict[str, sqlite3.Row] = {}
        unique = list(dict.fromkeys(k for k in keys if isinstance(k, str) and k))
        where = " AND deleted = 0" if live_only else ""
        for chunk in _chunks(unique):
            marks = ",".join("?" * len(chunk))
            for row in conn.execute(f"SELECT * FROM actors WHERE erp_key IN ({marks}){where}", chunk):
                found[row["erp_key"]] = row
        return found

    # -- validation ------------------------------------------------------------------------------------------

    def _clean(self, actor_type: str, values: Mapping | None, *, include_read_only: bool) -> tuple[dict, dict]:
        """(clean values, errors by FieldKey). Unknown keys are ignored; so are ReadOnly ones unless asked."""
        index = FIELD_INDEX[actor_type]
        clean, errors = {}, {}
        if values is None:
            return clean, errors
        if not isinstance(values, Mapping):
            return clean, {"": "FieldValues must be an object"}
        list_keys = self._lists
        for key, value in values.items():
            meta = index.get(key)
            if meta is None or (meta["Access"] == "ReadOnly" and not include_read_only):
                continue
            try:
                clean[key] = coerce_value(meta, value, list_keys)
            except ValueError as exc:
                errors[key] = f"{meta['DisplayName']} ({key}) {exc}"
        return clean, errors

    @staticmethod
    def _add_missing_mandatory(errors: dict, actor_type: str, fields: Mapping) -> None:
        """Add "is mandatory" for blank Mandatory fields that have no other error yet."""
        for meta in FIELDS[actor_type]:
            key = meta["FieldKey"]
            if meta["Access"] == "Mandatory" and _blank(fields.get(key)) and key not in errors:
                errors[key] = f"{meta['DisplayName']} ({key}) is mandatory"

    def _check_parent(self, conn: sqlite3.Connection, parent_type, parent_key) -> tuple[str, str]:
        """The (type, key) of an existing customer/supplier for a person, or raise ValueError."""
        if _blank(parent_key):
            raise ValueError("A person needs ParentErpKey: the customer or supplier it belongs to")
        row = self._rows_by_key(conn, [parent_key]).get(parent_key)
        if row is None or row["actor_type"] not in PARENT_TYPES:
            raise ValueError(f"ParentErpKey {parent_key!r} is not a customer or supplier in the Demo ERP")
        if not _blank(parent_type) and parent_type != row["actor_type"]:
            raise ValueError(f"ParentErpKey {parent_key!r} is a {row['actor_type']}, not a {parent_type}")
        return row["actor_type"], parent_key

    # -- finding actors --------------------------------------------------------------------------------------

    @staticmethod
    def _where(actor_type: str, text: str, *, parent_key: str | None = None,
               parent_type: str | None = None) -> tuple[str, list]:
        """(WHERE clause, parameters) for live actors of a type, by parent and name text ("contains")."""
        where = "deleted = 0 AND actor_type = ?"
        params: list = [actor_type]
        if parent_key is not None:
            where += " AND parent_key = ?"
            params.append(parent_key)
        if parent_type:
            where += " AND parent_type = ?"
            params.append(parent_type)
        needle = (text or "").strip().casefold()
        if needle:
            where += " AND instr(search_text, ?) > 0"
            params.append(needle)
        return where, params

    def _search(self, conn: sqlite3.Connection, actor_type: str, text: str, *, parent_key: str | None = None,
                parent_type: str | None = None, limit: int | None = None) -> list[sqlite3.Row]:
        where, params = self._where(actor_type, text, parent_key=parent_key, parent_type=parent_type)
        sql = f"SELECT * FROM actors WHERE {where} ORDER BY {_BY_NAME}"
        if limit:
            sql += " LIMIT ?"
            params.append(limit)
        return conn.execute(sql, params).fetchall()

    # -- writing actors --------------------------------------------------------------------------------------

    def _update(self, conn: sqlite3.Connection, items: Sequence[tuple[str, str, tuple, dict]]) -> None:
        """Write (key, actor type, (parent type, parent key), fields) with fresh LastModified values."""
        if not items:
            return
        first = self._allocate_timestamps(conn, len(items))
        conn.executemany(
            "UPDATE actors SET fields = ?, display_name = ?, search_text = ?, parent_type = ?, parent_key = ?, "
            "last_modified = ? WHERE erp_key = ?",
            [(json.dumps(fields, ensure_ascii=False), display_name(actor_type, fields),
              _search_text(actor_type, fields), parent[0], parent[1], first + offset, key)
             for offset, (key, actor_type, parent, fields) in enumerate(items)])

    # -- stored rows as ErpActor documents -------------------------------------------------------------------

    @staticmethod
    def _actor_doc(row: sqlite3.Row, field_keys: Sequence[str] | None = None) -> dict:
        return _doc_of(row, _field_plan(row["actor_type"], field_keys))

    @staticmethod
    def _actor_docs(rows: Iterable[sqlite3.Row], field_keys: Sequence[str] | None = None) -> list[dict]:
        """_actor_doc for many rows, working out the requested fields once per actor type."""
        plans: dict[str, tuple] = {}
        docs = []
        for row in rows:
            actor_type = row["actor_type"]
            plan = plans.get(actor_type)
            if plan is None:
                plan = plans[actor_type] = _field_plan(actor_type, field_keys)
            docs.append(_doc_of(row, plan))
        return docs

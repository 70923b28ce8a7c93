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
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import math
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from portal.connectors.builtin import register
from portal.connectors.builtin.demo_seed import LISTS, generate_seed
from portal.connectors.protocol import (
    OPERATORS,
    SPECIAL_SEARCH_KEYS,
    UNKNOWN_CONNECTION_ID,
    ZERO_GUID,
    error_response,
    field_metadata,
    ok_response,
    warning_response,
)
from portal.connectors.service import ConnectorService, ProtocolError
from portal.security.files import private_sqlite_files

log = logging.getLogger(__name__)

SCHEMA_VERSION = "1"
DEMO_PASSWORD = "demo"
OFFLINE_MESSAGE = "ERP is offline, showing cached data"
MAX_PAGE = 5000  # largest GetActorsByTimestamp page, whatever Limit asks for
_CHUNK = 500  # keys per IN (...) query
_BY_NAME = "display_name COLLATE NOCASE, erp_key"  # the order of searches and the pages (ix_actors_name)

ACTOR_TYPES = ("Customer", "Supplier", "Person", "Project")
PARENT_TYPES = ("Customer", "Supplier")
# ErpKey = prefix + sequence number; the numbers of different types never meet, so keys are unique overall.
KEY_PREFIX = {"Customer": ("C", 10000), "Supplier": ("S", 20000), "Person": ("P", 30000), "Project": ("PR", 40000)}
# The number the ERP assigns (ReadOnly field), derived from the key's sequence number.
NUMBER_FIELD = {"Customer": "NUMBER1", "Supplier": "NUMBER1", "Project": "NUMBER"}
# Fields SearchActors matches (case-insensitive "contains").
SEARCH_TEXT_FIELDS = {
    "Customer": ("NAME", "NUMBER1"),
    "Supplier": ("NAME", "NUMBER1"),
    "Person": ("FIRSTNAME", "MIDDLENAME", "LASTNAME", "EMAIL"),
    "Project": ("NAME", "NUMBER"),
}

# ---------------------------------------------------------------------------------------------------------------
# Field catalogue (GetSupportedActorTypeFields). Keys follow spec §3.5 so the portal pre-maps them automatically.


def _company_fields(actor_type: str) -> list[dict]:
    noun = "customer" if actor_type == "Customer" else "supplier"
    fields = [
        field_metadata("NAME", "Name", max_length=100, access="Mandatory", rank=10,
                       description=f"The {noun}'s registered name"),
        field_metadata("NUMBER1", f"{noun.capitalize()} number", max_length=20, access="ReadOnly", rank=20,
                       description="Assigned by the ERP when the record is created"),
        field_metadata("DEPARTMENT", "Department", max_length=60, rank=30),
        field_metadata("VATNO", "VAT number", max_length=30, rank=40),
        field_metadata("PHONE", "Phone", max_length=30, rank=50),
        field_metadata("FAX", "Fax", max_length=30, rank=60),
        field_metadata("EMAIL", "E-mail", max_length=254, rank=70),
        field_metadata("URL", "Web site", max_length=254, rank=80),
        field_metadata("POSTALAD1", "Postal address 1", max_length=80, rank=90),
        field_metadata("POSTALAD2", "Postal address 2", max_length=80, rank=100),
        field_metadata("POSTALAD3", "Postal address 3", max_length=80, rank=110),
        field_metadata("POSTALZIP", "Postal code", max_length=15, rank=120),
        field_metadata("POSTALCITY", "City", max_length=60, rank=130),
        field_metadata("STREETAD1", "Street address", max_length=80, rank=140),
        field_metadata("STREETZIP", "Street postal code", max_length=15, rank=150),
        field_metadata("STREETCITY", "Street city", max_length=60, rank=160),
        field_metadata("COUNTRY", "Country", "List", list_name="countries", rank=170),
        field_metadata("CURRENCY", "Currency", "List", list_name="currencies", default="EUR", rank=200,
                       description="Currency the ERP invoices in"),
        field_metadata("PAYMENTTERMS", "Payment terms", "List", list_name="paymentterms", default="NET30",
                       rank=210),
    ]
    if actor_type == "Customer":
        fields.append(field_metadata("CUSTOMERGROUP", "Customer group", "List", list_name="customergroups",
                                     rank=220, description="Price and discount group"))
    fields += [
        field_metadata("CREDITLIMIT", "Credit limit", "Double", rank=230,
                       description="Largest open balance allowed, in the record's currency"),
        field_metadata("BLOCKED", "Blocked", "Checkbox", default="false", rank=240,
                       description="No new orders or invoices while set"),
        field_metadata("EMPLOYEES", "Employees", "Integer", rank=250),
        field_metadata("BALANCE", "Open balance", "Double", access="ReadOnly", rank=260,
                       description="Maintained by the ERP's ledger"),
        field_metadata("LASTINVOICEDATE", "Last invoice date", "Date", access="ReadOnly", rank=270),
        field_metadata("NOTES", "Notes", rank=280),
    ]
    return fields


FIELDS: dict[str, list[dict]] = {
    "Customer": _company_fields("Customer"),
    "Supplier": _company_fields("Supplier"),
    "Person": [
        field_metadata("FIRSTNAME", "First name", max_length=50, access="Mandatory", rank=10),
        field_metadata("MIDDLENAME", "Middle name", max_length=50, rank=20),
        field_metadata("LASTNAME", "Last name", max_length=50, access="Mandatory", rank=30),
        field_metadata("TITLE", "Title", max_length=30, rank=40, description="Academic or courtesy title"),
        field_metadata("POSITION", "Position", max_length=60, rank=50),
        field_metadata("EMAIL", "E-mail", max_length=254, rank=60),
        field_metadata("PHONE_DIRECT", "Direct phone", max_length=30, rank=70),
        field_metadata("PHONE_MOBILE", "Mobile phone", max_length=30, rank=80),
        field_metadata("BIRTHDATE", "Birth date", "Date", rank=90),
        field_metadata("COMPANYNAME", "Company name", max_length=100, rank=100,
                       description="The company as the person gave it (an import can make a CRM company of it)"),
    ],
    "Project": [
        field_metadata("NAME", "Project name", max_length=100, access="Mandatory", rank=10),
        field_metadata("NUMBER", "Project number", max_length=20, access="ReadOnly", rank=20,
                       description="Assigned by the ERP when the project is created"),
        field_metadata("TEXT", "Description", max_length=2000, rank=30),
        field_metadata("URL", "Web site", max_length=254, rank=40),
        field_metadata("ENDDATE", "End date", "Date", rank=50),
        field_metadata("STATUS", "Status", "List", list_name="projectstatus", default="PLANNED", rank=60),
        field_metadata("BUDGET", "Budget", "Double", rank=70),
    ],
}
FIELD_INDEX: dict[str, dict[str, dict]] = {t: {f["FieldKey"]: f for f in fs} for t, fs in FIELDS.items()}

# Texts the connector answers in SuperOffice's multi-language form (US:"…";NO:"…"), as a connector may: the portal
# shows them in the user's language. The Demo ERP's own screens and messages keep the English of FIELDS.
MULTI_LANGUAGE: dict[str, dict[str, str]] = {
    "CUSTOMERGROUP": {"DisplayName": 'US:"Customer group";NO:"Kundegruppe"',
                      "DisplayDescription": 'US:"Price and discount group";NO:"Pris- og rabattgruppe"'},
}


def answered_fields(actor_type: str) -> list[dict]:
    """The FieldMetadataInfo of GetSupportedActorTypeFields: FIELDS with the MULTI_LANGUAGE texts."""
    return [{**meta, **MULTI_LANGUAGE.get(meta["FieldKey"], {})} for meta in FIELDS[actor_type]]


SEARCHABLE_FIELDS: dict[str, list[str]] = {
    "Customer": ["NAME", "NUMBER1", "POSTALCITY", "COUNTRY", "CUSTOMERGROUP", "CURRENCY", "CREDITLIMIT",
                 "EMPLOYEES", "BLOCKED", "LASTINVOICEDATE"],
    "Supplier": ["NAME", "NUMBER1", "POSTALCITY", "COUNTRY", "CURRENCY", "PAYMENTTERMS", "CREDITLIMIT",
                 "EMPLOYEES", "BLOCKED", "LASTINVOICEDATE"],
    "Person": ["FIRSTNAME", "LASTNAME", "EMAIL", "POSITION", "BIRTHDATE"],
    "Project": ["NAME", "NUMBER", "STATUS", "ENDDATE", "BUDGET"],
}

CONFIG_FIELDS: list[dict] = [
    field_metadata("INTRO", "Demo ERP", "Label", rank=10,
                   default="The Demo ERP is built into the portal: no server to install. Any API user works "
                           "with the password \"demo\"; leave the user empty to connect without one.",
                   description="Try every sync feature without a real ERP."),
    field_metadata("CompanyDb", "Company database", max_length=20, access="Mandatory", default="DEMO", rank=20,
                   description="Name of the ERP company (client) to synchronise with"),
    field_metadata("ApiUser", "API user", max_length=60, rank=30, description="Optional"),
    field_metadata("ApiPassword", "API password", "Password", max_length=60, rank=40,
                   description="Needed when an API user is given (the demo password is \"demo\")"),
    field_metadata("Currency", "Base currency", "List", list_name="currencies", default="EUR", rank=50),
    # In SuperOffice's multi-language form (a quote inside a text is written twice), shown in the user's language.
    field_metadata("SimulateOffline", 'US:"Simulate offline ERP";NO:"Simuler at ERP-et er frakoblet"', "Checkbox",
                   default="false", rank=60,
                   description='US:"Answer every call with a Warning (""ERP is offline"") to try degraded mode";'
                               'NO:"Svar på hvert kall med en advarsel (""ERP er frakoblet"") for å prøve '
                               'redusert modus"'),
]

# Config values of type Password are never stored as given: SaveConnection keeps a salted PBKDF2 digest instead
# (the Demo ERP only needs to check them), and a database from before is rewritten when it is opened.
SECRET_CONFIG_KEYS = frozenset(f["FieldKey"] for f in CONFIG_FIELDS if f["FieldType"] == "Password")
_DIGEST_PREFIX = "pbkdf2_sha256$"
_DIGEST_ROUNDS = 20_000


def _digest(secret: str, salt: bytes | None = None, rounds: int = _DIGEST_ROUNDS) -> str:
    salt = os.urandom(16) if salt is None else salt
    derived = hashlib.pbkdf2_hmac("sha256", secret.encode("utf-8"), salt, rounds)
    return f"{_DIGEST_PREFIX}{rounds}${salt.hex()}${derived.hex()}"


def _is_digest(value) -> bool:
    return isinstance(value, str) and value.startswith(_DIGEST_PREFIX)


def _stored_secret_matches(stored, candidate: str) -> bool:
    """Whether a stored config secret (a digest; a plain value from an old database) is ``candidate``."""
    if _is_digest(stored):
        try:
            rounds, salt, _ = stored[len(_DIGEST_PREFIX):].split("$")
            expected = _digest(candidate, bytes.fromhex(salt), int(rounds))
        except ValueError:
            return False
        return hmac.compare_digest(expected, stored)
    return hmac.compare_digest(str(stored or "").encode("utf-8"), candidate.encode("utf-8"))


def config_to_store(info: Mapping) -> dict:
    """A connection's config as the Demo ERP keeps it: every Password value replaced by its digest."""
    stored = dict(info)
    for key in SECRET_CONFIG_KEYS:
        value = stored.get(key)
        if value not in (None, "") and not _is_digest(value):
            stored[key] = _digest(str(value))
    return stored


# ---------------------------------------------------------------------------------------------------------------
# Schema

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    """CREATE TABLE IF NOT EXISTS connections (
        guid TEXT PRIMARY KEY,
        config TEXT NOT NULL,
        saved_at TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS actors (
        erp_key TEXT PRIMARY KEY,
        actor_type TEXT NOT NULL,
        parent_type TEXT,
        parent_key TEXT,
        display_name TEXT NOT NULL DEFAULT '',
        search_text TEXT NOT NULL DEFAULT '',
        fields TEXT NOT NULL DEFAULT '{}',
        last_modified INTEGER NOT NULL,
        deleted INTEGER NOT NULL DEFAULT 0
    )""",
    # The change feed (GetActorsByTimestamp) and paging walk this index.
    "CREATE INDEX IF NOT EXISTS ix_actors_changes ON actors (actor_type, last_modified, erp_key) "
    "WHERE deleted = 0",
    "CREATE INDEX IF NOT EXISTS ix_actors_parent ON actors (parent_key) WHERE deleted = 0",
    "CREATE INDEX IF NOT EXISTS ix_actors_name ON actors (actor_type, display_name COLLATE NOCASE, erp_key) "
    "WHERE deleted = 0",
    """CREATE TABLE IF NOT EXISTS lists (
        list_name TEXT NOT NULL,
        item_key TEXT NOT NULL,
        item_text TEXT NOT NULL,
        rank INTEGER NOT NULL,
        PRIMARY KEY (list_name, item_key)
    )""",
    """CREATE TABLE IF NOT EXISTS idempotency_keys (
        idem_key TEXT PRIMARY KEY,
        actor_type TEXT NOT NULL,
        erp_key TEXT NOT NULL,
        connection_guid TEXT,
        created_at TEXT NOT NULL
    )""",
)

# ---------------------------------------------------------------------------------------------------------------
# LastModified

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def format_timestamp(micros: int) -> str:
    """Integer microseconds since the epoch -> ``2026-11-25T17:02:06.123456Z``."""
    return (_EPOCH + timedelta(microseconds=micros)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_timestamp(text: str) -> int:
    """An ISO-8601 timestamp or date (naive = UTC), or a decimal count of microseconds -> microseconds."""
    text = text.strip()
    if text.isdigit():
        return int(text)
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // timedelta(microseconds=1)


def _now_micros() -> int:
    return time.time_ns() // 1000


# ---------------------------------------------------------------------------------------------------------------
# Values


class DemoErpValidationError(ValueError):
    """Invalid field values; ``errors`` maps FieldKey (or "" for the record) to a readable message."""

    def __init__(self, errors: Mapping[str, str]):
        self.errors = dict(errors)
        super().__init__("; ".join(self.errors.values()))


def _truthy(value) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in {"1", "true", "yes", "on", "[i:1]"}
    return bool(value)


def coerce_value(meta: dict, value, list_keys: Mapping[str, Iterable[str]]):
    """A field value as stored: JSON-native for its FieldType. Raises ValueError with a readable reason."""
    field_type = meta["FieldType"]
    if field_type == "Checkbox":
        if value is None or isinstance(value, bool):
            return bool(value)
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in {"", "0", "1", "true", "false", "yes", "no",
                                                                 "on", "off"}:
            return _truthy(value)
        raise ValueError("must be true or false")
    if value is None:
        return None
    if field_type in ("Text", "Password", "Label"):
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise ValueError("must be text")
        value = str(value)
        if meta["MaxLength"] and len(value) > meta["MaxLength"]:
            raise ValueError(f"is longer than {meta['MaxLength']} characters")
        return value
    if isinstance(value, str):
        value = value.strip()
        if value == "":
            return None
    if field_type == "Integer":
        if isinstance(value, bool):
            raise ValueError("must be a whole number")
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, int):
            return value
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        raise ValueError("must be a whole number")
    if field_type == "Double":
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise ValueError("must be a number")
        try:
            number = float(value)
        except ValueError:
            raise ValueError("must be a number") from None
        if not math.isfinite(number):
            raise ValueError("must be a finite number")
        return number
    if field_type == "Date":
        if not isinstance(value, str):
            raise ValueError("must be a date (YYYY-MM-DD)")
        try:
            return datetime.fromisoformat(value).date().isoformat()
        except ValueError:
            raise ValueError("must be a date (YYYY-MM-DD)") from None
    if field_type == "List":
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise ValueError("must be a list item key")
        value = str(value)
        if value not in list_keys.get(meta["ListName"], ()):
            raise ValueError(f"has no item {value!r} in list {meta['ListName']}")
        return value
    raise ValueError(f"has an unsupported field type {field_type}")


def _blank(value) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def display_name(actor_type: str, fields: Mapping) -> str:
    if actor_type == "Person":
        return " ".join(str(fields[k]) for k in ("FIRSTNAME", "MIDDLENAME", "LASTNAME") if not _blank(fields.get(k)))
    return str(fields.get("NAME") or "")


def _search_text(actor_type: str, fields: Mapping) -> str:
    parts = [str(fields[k]) for k in SEARCH_TEXT_FIELDS[actor_type] if not _blank(fields.get(k))]
    if actor_type == "Person":
        parts.append(display_name(actor_type, fields))
        parts.append(f"{fields.get('FIRSTNAME') or ''} {fields.get('LASTNAME') or ''}")
    return "\n".join(parts).casefold()


# ---------------------------------------------------------------------------------------------------------------
# Request helpers


def _normalize_guid(value) -> str | None:
    try:
        return str(uuid.UUID(str(value)))
    except (ValueError, TypeError, AttributeError):
        return None


def _string_list(body: dict, member: str) -> list[str]:
    value = body.get(member)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ProtocolError(f"{member} must be a list of strings.", error_code="BAD_REQUEST")
    return value


def _limit(body: dict) -> int | None:
    value = body.get("Limit")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ProtocolError("Limit must be a whole number of at least 0.", error_code="BAD_REQUEST")
    return value or None


def _encode_cursor(actor_type: str, micros: int, erp_key: str) -> str:
    raw = json.dumps([actor_type, micros, erp_key], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str, actor_type: str) -> tuple[int, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        kind, micros, erp_key = json.loads(raw)
        if kind != actor_type or not isinstance(micros, int) or not isinstance(erp_key, str):
            raise ValueError
    except (ValueError, TypeError):
        raise ProtocolError("The paging cursor is not valid for this request.", f"Cursor {cursor!r}",
                            "BAD_CURSOR") from None
    return micros, erp_key


def _chunks(items: Sequence, size: int = _CHUNK):
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _field_default(meta: dict):
    return False if meta["FieldType"] == "Checkbox" else None


# (FieldKey, value when not stored) of every field, per actor type: FieldValues when no FieldKeys are given.
_ALL_FIELDS: dict[str, tuple[tuple[str, object], ...]] = {
    t: tuple((key, _field_default(meta)) for key, meta in index.items()) for t, index in FIELD_INDEX.items()}


def _field_plan(actor_type: str, field_keys: Sequence[str] | None) -> tuple[tuple[str, object], ...]:
    """The (FieldKey, value when not stored) pairs an answer gives: the requested known fields, once each."""
    if field_keys is None:
        return _ALL_FIELDS[actor_type]
    index = FIELD_INDEX[actor_type]
    return tuple((key, _field_default(index[key])) for key in dict.fromkeys(field_keys) if key in index)


def _doc_of(row: sqlite3.Row, plan: Sequence[tuple[str, object]], stored: Mapping | None = None) -> dict:
    """An ErpActor document of a stored row; ``plan`` from _field_plan, ``stored`` the parsed fields if at hand."""
    if stored is None:
        stored = json.loads(row["fields"])
    return {
        "ActorType": row["actor_type"],
        "ErpKey": row["erp_key"],
        "LastModified": format_timestamp(row["last_modified"]),
        "ParentActorType": row["parent_type"] or "",
        "ParentErpKey": row["parent_key"] or "",
        "FieldValues": {key: stored.get(key, default) for key, default in plan},
    }


# ---------------------------------------------------------------------------------------------------------------
# The connector


_PATH_LOCKS: dict[str, threading.Lock] = {}
_INSTANCES: dict[str, DemoErpConnector] = {}
_REGISTRY_LOCK = threading.RLock()


def _path_lock(path: str) -> threading.Lock:
    """One write lock per database file, shared by every instance on it in this process."""
    with _REGISTRY_LOCK:
        return _PATH_LOCKS.setdefault(str(Path(path).resolve()), threading.Lock())


class DemoErpConnector(ConnectorService):
    """The Demo ERP and its connector. ``path`` is the SQLite file (created and seeded on first use)."""

    def __init__(self, path: str | Path, *, seed: bool = True, busy_timeout_ms: int = 10000):
        self.path = str(path)
        self.seed = seed
        self.busy_timeout_ms = busy_timeout_ms
        self._write_lock = _path_lock(self.path)
        self._init_lock = threading.Lock()
        self._ready = False
        self._lists: dict[str, dict[str, str]] = {}

    @classmethod
    def for_path(cls, path: str | Path) -> DemoErpConnector:
        """The shared instance for this database file (the registry factory and the /demo-erp/ pages use it)."""
        key = str(Path(path).resolve())
        with _REGISTRY_LOCK:
            if key not in _INSTANCES:
                _INSTANCES[key] = cls(path)
            return _INSTANCES[key]

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

    # -- shaping answers -------------------------------------------------------------------------------------

    @staticmethod
    def _field_keys(body: dict) -> list[str] | None:
        keys = _string_list(body, "FieldKeys")
        return keys or None

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

    def _answer(self, config: Mapping | None, **payload) -> dict:
        if config is not None and _truthy(config.get("SimulateOffline")):
            return warning_response(OFFLINE_MESSAGE, "SimulateOffline is on for this connection.", **payload)
        return ok_response(**payload)

    def _connection(self, conn: sqlite3.Connection, body: dict) -> dict:
        """The stored config of the request's ConnectionGuid, or an UNKNOWN_CONNECTION_ID error."""
        raw = body.get("ConnectionGuid")
        guid = _normalize_guid(raw)
        row = None
        if guid is not None and guid != ZERO_GUID:
            row = conn.execute("SELECT config FROM connections WHERE guid = ?", (guid,)).fetchone()
        if row is None:
            raise ProtocolError("The Demo ERP does not know this connection; save the connection again.",
                                f"Unknown ConnectionGuid {raw!r}", UNKNOWN_CONNECTION_ID)
        return json.loads(row["config"])

    @staticmethod
    def _actor_type(body: dict, member: str = "ActorType") -> str:
        actor_type = body.get(member)
        if actor_type not in ACTOR_TYPES:
            raise ProtocolError(f"The Demo ERP has no actor type {actor_type!r}; it supports "
                                f"{', '.join(ACTOR_TYPES)}.", error_code="UNKNOWN_ACTOR_TYPE")
        return actor_type

    def _check_config(self, info, *, stored: bool = False) -> None:
        """``stored``: ``info`` is a saved config, whose password is a digest (see ``config_to_store``)."""
        if not isinstance(info, Mapping):
            raise ProtocolError("ConnectionInfo must be an object of field values.", error_code="BAD_REQUEST")
        if _blank(info.get("CompanyDb")):
            raise ProtocolError("Company database is required.", "CompanyDb is empty", "INVALID_CONFIG")
        user = str(info.get("ApiUser") or "").strip()
        password = info.get("ApiPassword")
        matches = (_stored_secret_matches(password, DEMO_PASSWORD) if stored
                   else hmac.compare_digest(str(password or "").encode("utf-8"), DEMO_PASSWORD.encode("utf-8")))
        if user and not matches:
            raise ProtocolError(f"The Demo ERP rejected the password of API user {user!r}. Check the API password.",
                                "ApiPassword does not match", "AUTHENTICATION_FAILED")
        currency = info.get("Currency")
        if not _blank(currency) and str(currency) not in self._lists.get("currencies", {}):
            raise ProtocolError(f"The Demo ERP has no currency {currency!r}.", error_code="INVALID_CONFIG")

    # -- protocol: configuration -----------------------------------------------------------------------------

    def handle(self, method: str, body: dict) -> dict:
        try:
            self._ensure_ready()
        except Exception as exc:  # answer in the response, like every other failure
            log.exception("Demo ERP database %s could not be prepared", self.path)
            return error_response("The Demo ERP database could not be opened.", repr(exc), "INTERNAL_ERROR")
        return super().handle(method, body)

    def GetConfigData(self, body: dict) -> dict:
        return ok_response(FieldMetaDataObjects=[dict(f) for f in CONFIG_FIELDS])

    def TestConfigData(self, body: dict) -> dict:
        info = body.get("ConnectionInfo") or {}
        self._check_config(info)
        answer = self._answer(info)
        if answer["State"] == "Ok":
            answer["UserExplanation"] = f"Connected to Demo ERP company {str(info['CompanyDb']).strip()}."
        return answer

    def SaveConnection(self, body: dict) -> dict:
        guid = _normalize_guid(body.get("ConnectionGuid"))
        if guid is None or guid == ZERO_GUID:
            raise ProtocolError("ConnectionGuid must be a non-zero GUID.", error_code="BAD_REQUEST")
        info = body.get("ConnectionInfo") or {}
        if not isinstance(info, Mapping):
            raise ProtocolError("ConnectionInfo must be an object of field values.", error_code="BAD_REQUEST")
        with self._write() as conn:
            conn.execute(
                "INSERT INTO connections (guid, config, saved_at) VALUES (?, ?, ?) "
                "ON CONFLICT (guid) DO UPDATE SET config = excluded.config, saved_at = excluded.saved_at",
                (guid, json.dumps(config_to_store(info)), format_timestamp(_now_micros())))
        return ok_response()  # storing the config does not need the ERP, so no offline warning here

    def TestConnection(self, body: dict) -> dict:
        with self._read() as conn:
            config = self._connection(conn, body)
        self._check_config(config, stored=True)
        answer = self._answer(config)
        if answer["State"] == "Ok":
            answer["UserExplanation"] = f"Connected to Demo ERP company {str(config['CompanyDb']).strip()}."
        return answer

    def DeleteConnection(self, body: dict) -> dict:
        with self._write() as conn:
            self._connection(conn, body)
            conn.execute("DELETE FROM connections WHERE guid = ?", (_normalize_guid(body.get("ConnectionGuid")),))
        return ok_response()

    def GetSupportedActorTypes(self, body: dict) -> dict:
        with self._read() as conn:
            config = self._connection(conn, body)
        return self._answer(config, Items=list(ACTOR_TYPES))

    def GetSupportedActorTypeFields(self, body: dict) -> dict:
        with self._read() as conn:
            config = self._connection(conn, body)
        actor_type = self._actor_type(body)
        return self._answer(config, FieldMetaDataObjects=answered_fields(actor_type))

    def GetSearchableFields(self, body: dict) -> dict:
        with self._read() as conn:
            config = self._connection(conn, body)
        actor_type = self._actor_type(body)
        return self._answer(config, Items=list(SEARCHABLE_FIELDS[actor_type]))

    # -- protocol: lists -------------------------------------------------------------------------------------

    def _list_config(self, body: dict) -> tuple[dict | None, dict[str, str]]:
        config = None
        if _normalize_guid(body.get("ConnectionGuid")) != ZERO_GUID:  # list look-ups before a connection exists
            with self._read() as conn:
                config = self._connection(conn, body)
        name = body.get("ListName")
        if name not in self._lists:
            raise ProtocolError(f"The Demo ERP has no list {name!r}.", error_code="UNKNOWN_LIST")
        return config, self._lists[name]

    def GetList(self, body: dict) -> dict:
        config, items = self._list_config(body)
        return self._answer(config, ListItems=dict(items))

    def GetListItems(self, body: dict) -> dict:
        config, items = self._list_config(body)
        wanted = _string_list(body, "ListItemKeys")
        return self._answer(config, ListItems={key: items[key] for key in wanted if key in items})

    # -- protocol: reading actors ----------------------------------------------------------------------------

    def GetActors(self, body: dict) -> dict:
        keys = _string_list(body, "ErpKeys")
        field_keys = self._field_keys(body)
        with self._read() as conn:
            config = self._connection(conn, body)
            actor_type = self._actor_type(body)
            rows = self._rows_by_key(conn, keys)
        actors = self._actor_docs([rows[key] for key in dict.fromkeys(keys)
                                   if key in rows and rows[key]["actor_type"] == actor_type], field_keys)
        return self._answer(config, Actors=actors)

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

    def SearchActors(self, body: dict) -> dict:
        field_keys, limit = self._field_keys(body), _limit(body)
        text = body.get("SearchText") or ""
        if not isinstance(text, str):
            raise ProtocolError("SearchText must be a string.", error_code="BAD_REQUEST")
        with self._read() as conn:
            config = self._connection(conn, body)
            rows = self._search(conn, self._actor_type(body), text, limit=limit)
        return self._answer(config, Actors=self._actor_docs(rows, field_keys))

    def SearchActorByParent(self, body: dict) -> dict:
        field_keys, limit = self._field_keys(body), _limit(body)
        text = body.get("SearchText") or ""
        parent_key = body.get("ParentErpKey")
        parent_type = body.get("ParentActorType") or None
        if not isinstance(text, str):
            raise ProtocolError("SearchText must be a string.", error_code="BAD_REQUEST")
        if not isinstance(parent_key, str) or not parent_key:
            raise ProtocolError("ParentErpKey is required.", error_code="BAD_REQUEST")
        with self._read() as conn:
            config = self._connection(conn, body)
            rows = self._search(conn, self._actor_type(body), text, parent_key=parent_key,
                                parent_type=parent_type, limit=limit)
        return self._answer(config, Actors=self._actor_docs(rows, field_keys))

    def SearchActorsAdvanced(self, body: dict) -> dict:
        field_keys, limit = self._field_keys(body), _limit(body)
        restrictions = body.get("Restrictions") or []
        if not isinstance(restrictions, list) or not all(isinstance(r, Mapping) for r in restrictions):
            raise ProtocolError("Restrictions must be a list of SearchRestriction objects.", error_code="BAD_REQUEST")
        with self._read() as conn:
            config = self._connection(conn, body)
            actor_type = self._actor_type(body)
            tests = [_compile_restriction(actor_type, r) for r in restrictions]
            rows = self._search(conn, actor_type, "")
        plan = _field_plan(actor_type, field_keys)
        found = []
        for row in rows:
            fields = json.loads(row["fields"])
            if all(test(row, fields) for test in tests):
                found.append(_doc_of(row, plan, fields))
                if limit and len(found) >= limit:
                    break
        return self._answer(config, Actors=found)

    def GetActorsByTimestamp(self, body: dict) -> dict:
        field_keys, limit = self._field_keys(body), _limit(body)
        since_text = body.get("UpdatedOnOrAfter") or ""
        cursor = body.get("Cursor") or None
        if not isinstance(since_text, str) or (cursor is not None and not isinstance(cursor, str)):
            raise ProtocolError("UpdatedOnOrAfter and Cursor must be strings.", error_code="BAD_REQUEST")
        try:
            since = parse_timestamp(since_text) if since_text.strip() else None
        except ValueError:
            raise ProtocolError(f"UpdatedOnOrAfter {since_text!r} is not an ISO-8601 timestamp.",
                                error_code="BAD_REQUEST") from None
        with self._read() as conn:
            config = self._connection(conn, body)
            actor_type = self._actor_type(body)
            sql = "SELECT * FROM actors WHERE deleted = 0 AND actor_type = ?"
            params: list = [actor_type]
            if since is not None:
                sql += " AND last_modified >= ?"
                params.append(since)
            if cursor:
                after_stamp, after_key = _decode_cursor(cursor, actor_type)
                sql += " AND (last_modified, erp_key) > (?, ?)"
                params += [after_stamp, after_key]
            sql += " ORDER BY last_modified, erp_key"
            page = min(limit, MAX_PAGE) if limit else None
            if page:
                sql += " LIMIT ?"
                params.append(page + 1)
            rows = conn.execute(sql, params).fetchall()
        next_cursor = None
        if page and len(rows) > page:
            rows = rows[:page]
            next_cursor = _encode_cursor(actor_type, rows[-1]["last_modified"], rows[-1]["erp_key"])
        return self._answer(config, Actors=self._actor_docs(rows, field_keys), NextCursor=next_cursor)

    # -- protocol: writing actors ----------------------------------------------------------------------------

    def CreateActor(self, body: dict) -> dict:
        actor = body.get("Actor")
        if not isinstance(actor, Mapping):
            raise ProtocolError("Actor must be an ErpActor object.", error_code="BAD_REQUEST")
        idem_key = body.get("IdempotencyKey") or None
        if idem_key is not None and not isinstance(idem_key, str):
            raise ProtocolError("IdempotencyKey must be a string.", error_code="BAD_REQUEST")
        with self._write() as conn:
            config = self._connection(conn, body)
            actor_type = self._actor_type(actor)
            if idem_key:
                seen = conn.execute("SELECT actor_type, erp_key FROM idempotency_keys WHERE idem_key = ?",
                                    (idem_key,)).fetchone()
                if seen is not None:
                    if seen["actor_type"] != actor_type:
                        raise ProtocolError(f"IdempotencyKey {idem_key!r} was already used to create a "
                                            f"{seen['actor_type']}.", error_code="IDEMPOTENCY_CONFLICT")
                    row = self._rows_by_key(conn, [seen["erp_key"]], live_only=False)[seen["erp_key"]]
                    return self._answer(config, Actor=self._actor_doc(row))
            fields, errors = self._clean(actor_type, actor.get("FieldValues"), include_read_only=False)
            self._add_missing_mandatory(errors, actor_type, fields)
            parent = None
            if actor_type == "Person":
                try:
                    parent = self._check_parent(conn, actor.get("ParentActorType"), actor.get("ParentErpKey"))
                except ValueError as exc:
                    errors["ParentErpKey"] = str(exc)
            if errors:
                raise ProtocolError(f"The {actor_type.lower()} was not created: " + "; ".join(errors.values()) + ".",
                                    json.dumps(errors, ensure_ascii=False), "VALIDATION_FAILED")
            key = self._insert(conn, actor_type, [fields], [parent])[0]
            if idem_key:
                conn.execute("INSERT INTO idempotency_keys (idem_key, actor_type, erp_key, connection_guid, "
                             "created_at) VALUES (?, ?, ?, ?, ?)",
                             (idem_key, actor_type, key, _normalize_guid(body.get("ConnectionGuid")),
                              format_timestamp(_now_micros())))
            row = self._rows_by_key(conn, [key])[key]
        return self._answer(config, Actor=self._actor_doc(row))

    def SaveActors(self, body: dict) -> dict:
        actors = body.get("Actors")
        if not isinstance(actors, list) or not all(isinstance(a, Mapping) for a in actors):
            raise ProtocolError("Actors must be a list of ErpActor objects.", error_code="BAD_REQUEST")
        with self._write() as conn:
            config = self._connection(conn, body)
            existing = self._rows_by_key(conn, [a.get("ErpKey") for a in actors])
            # Validate everything first; write nothing unless every actor is valid.
            work: dict[str, dict] = {}
            problems: list[str] = []
            unknown = False
            for number, actor in enumerate(actors, start=1):
                actor_type, key = actor.get("ActorType"), actor.get("ErpKey")
                label = f"{actor_type} {key}" if isinstance(key, str) and key else f"actor #{number}"
                if actor_type not in ACTOR_TYPES:
                    problems.append(f"{label}: the Demo ERP has no actor type {actor_type!r}")
                    continue
                row = existing.get(key) if isinstance(key, str) else None
                if row is None or row["actor_type"] != actor_type:
                    unknown = True
                    problems.append(f"{label}: unknown ErpKey {key!r} (no such {actor_type} in the Demo ERP)")
                    continue
                entry = work.get(key) or {"row": row, "parent": (row["parent_type"], row["parent_key"]),
                                          "fields": json.loads(row["fields"])}
                clean, errors = self._clean(actor_type, actor.get("FieldValues"), include_read_only=False)
                merged = {**entry["fields"], **clean}
                self._add_missing_mandatory(errors, actor_type, merged)
                parent = entry["parent"]
                if actor_type == "Person" and not _blank(actor.get("ParentErpKey")) \
                        and actor.get("ParentErpKey") != parent[1]:
                    try:
                        parent = self._check_parent(conn, actor.get("ParentActorType"), actor.get("ParentErpKey"))
                    except ValueError as exc:
                        errors["ParentErpKey"] = str(exc)
                if errors:
                    problems += [f"{label}: {message}" for message in errors.values()]
                    continue
                work[key] = {**entry, "fields": merged, "parent": parent}
            if problems:
                shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
                raise ProtocolError(f"Nothing was saved: {shown}.", "\n".join(problems),
                                    "UNKNOWN_ERP_KEY" if unknown else "VALIDATION_FAILED")
            self._update(conn, [(key, entry["row"]["actor_type"], entry["parent"], entry["fields"])
                                for key, entry in work.items()])
            saved = self._rows_by_key(conn, list(work))
        return self._answer(config, Actors=self._actor_docs([saved[key] for key in work]))

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

    # -- the ERP's own side: pages, CLI, tests and benchmarks ------------------------------------------------

    def list_items(self, list_name: str) -> dict[str, str]:
        self._ensure_ready()
        return dict(self._lists.get(list_name, {}))

    def bulk_create(self, actor_type: str, rows: Sequence[Mapping],
                    parent: tuple[str, str] | Sequence[tuple[str, str]] | None = None) -> list[str]:
        """Create many actors in one transaction (executemany) as the ERP itself: ReadOnly fields may be set.

        ``parent`` is one (type, key) for every row or a sequence with one per row; persons need one.
        Raises DemoErpValidationError (nothing written) when a row is invalid. Returns the new ErpKeys.
        """
        if actor_type not in ACTOR_TYPES:
            raise DemoErpValidationError({"": f"unknown actor type {actor_type!r}"})
        self._ensure_ready()
        if parent is None or (len(parent) == 2 and all(isinstance(p, str) for p in parent)):
            parents: list = [tuple(parent) if parent else None] * len(rows)
        else:
            parents = [tuple(p) if p else None for p in parent]
            if len(parents) != len(rows):
                raise DemoErpValidationError({"": "parent must give one (type, key) per row"})
        clean_rows, errors = [], {}
        for number, values in enumerate(rows, start=1):
            clean, problems = self._clean(actor_type, values, include_read_only=True)
            self._add_missing_mandatory(problems, actor_type, clean)
            errors.update({f"{number}:{k}": f"row {number}: {m}" for k, m in problems.items()})
            clean_rows.append(clean)
        with self._write() as conn:
            if actor_type == "Person":
                wanted = {p[1] for p in parents if p}
                found = self._rows_by_key(conn, list(wanted))
                for number, p in enumerate(parents, start=1):
                    row = found.get(p[1]) if p else None
                    if row is None or row["actor_type"] not in PARENT_TYPES or (p[0] and p[0] != row["actor_type"]):
                        errors[f"{number}:ParentErpKey"] = f"row {number}: needs an existing customer/supplier parent"
            else:
                parents = [None] * len(rows)
            if errors:
                raise DemoErpValidationError(errors)
            return self._insert(conn, actor_type, clean_rows, parents)

    def create(self, actor_type: str, values: Mapping, parent: tuple[str, str] | None = None) -> dict:
        """Create one actor as a user of the ERP would (the /demo-erp/ pages): ReadOnly fields are ignored,
        the number is assigned. Returns the actor (protocol shape); raises DemoErpValidationError."""
        if actor_type not in ACTOR_TYPES:
            raise DemoErpValidationError({"": f"unknown actor type {actor_type!r}"})
        self._ensure_ready()
        with self._write() as conn:
            fields, errors = self._clean(actor_type, values, include_read_only=False)
            self._add_missing_mandatory(errors, actor_type, fields)
            if actor_type == "Person":
                try:
                    parent = self._check_parent(conn, *(parent or (None, None)))
                except ValueError as exc:
                    errors["ParentErpKey"] = str(exc)
            else:
                parent = None
            if errors:
                raise DemoErpValidationError(errors)
            key = self._insert(conn, actor_type, [fields], [parent])[0]
            return self._actor_doc(self._rows_by_key(conn, [key])[key])

    def update_fields(self, actor_type: str, erp_key: str, values: Mapping, *,
                      include_read_only: bool = False) -> dict:
        """Edit one actor as the ERP (the /demo-erp/ pages and tests); bumps LastModified.

        Returns the actor as now stored (protocol shape). Raises KeyError for an unknown/deleted actor and
        DemoErpValidationError for invalid values. The ERP-assigned number (NUMBER1/NUMBER) never changes.
        """
        self._ensure_ready()
        with self._write() as conn:
            row = self._rows_by_key(conn, [erp_key]).get(erp_key)
            if row is None or row["actor_type"] != actor_type:
                raise KeyError(erp_key)
            clean, errors = self._clean(actor_type, values, include_read_only=include_read_only)
            clean.pop(NUMBER_FIELD.get(actor_type, ""), None)
            merged = {**json.loads(row["fields"]), **clean}
            self._add_missing_mandatory(errors, actor_type, merged)
            if errors:
                raise DemoErpValidationError(errors)
            self._update(conn, [(erp_key, actor_type, (row["parent_type"], row["parent_key"]), merged)])
            return self._actor_doc(self._rows_by_key(conn, [erp_key])[erp_key])

    def touch(self, actor_type: str, erp_key: str) -> str:
        """Bump an actor's LastModified without changing it; returns the new LastModified."""
        return self.update_fields(actor_type, erp_key, {})["LastModified"]

    def delete_actor(self, actor_type: str, erp_key: str) -> bool:
        """Soft-delete: afterwards every method leaves the actor out. False when it did not exist."""
        self._ensure_ready()
        with self._write() as conn:
            row = self._rows_by_key(conn, [erp_key]).get(erp_key)
            if row is None or row["actor_type"] != actor_type:
                return False
            stamp = self._allocate_timestamps(conn, 1)
            conn.execute("UPDATE actors SET deleted = 1, last_modified = ? WHERE erp_key = ?", (stamp, erp_key))
            return True

    def get_actor(self, actor_type: str, erp_key: str) -> dict | None:
        """One live actor with every field (protocol shape), or None."""
        with self._read() as conn:
            row = self._rows_by_key(conn, [erp_key]).get(erp_key)
        if row is None or row["actor_type"] != actor_type:
            return None
        return self._actor_doc(row)

    def browse(self, actor_type: str, search: str = "", *, offset: int = 0, limit: int = 25,
               parent_key: str | None = None) -> tuple[int, list[dict]]:
        """(total matches, one page of actors) for the /demo-erp/ pages, by name."""
        where, params = self._where(actor_type, search, parent_key=parent_key)
        with self._read() as conn:
            total = conn.execute(f"SELECT count(*) FROM actors WHERE {where}", params).fetchone()[0]
            rows = conn.execute(f"SELECT * FROM actors WHERE {where} ORDER BY {_BY_NAME} LIMIT ? OFFSET ?",
                                [*params, max(limit, 0), max(offset, 0)]).fetchall()
        return total, self._actor_docs(rows)

    def display_names(self, erp_keys: Iterable[str]) -> dict[str, str]:
        """ErpKey -> display name of live actors (for parent columns on the pages)."""
        with self._read() as conn:
            rows = self._rows_by_key(conn, list(erp_keys))
        return {key: row["display_name"] for key, row in rows.items()}

    def counts(self) -> dict[str, int]:
        """Live actors per type."""
        with self._read() as conn:
            rows = conn.execute("SELECT actor_type, count(*) FROM actors WHERE deleted = 0 GROUP BY actor_type")
            found = {row[0]: row[1] for row in rows}
        return {actor_type: found.get(actor_type, 0) for actor_type in ACTOR_TYPES}

    def reset(self, *, seed: bool | None = None) -> None:
        """Empty the Demo ERP (actors, connections, idempotency keys) and seed it again.

        ErpKeys restart at C10001 …, so a reseeded ERP holds the same keys for the same seed records; the
        LastModified high-water mark is kept, so LastModified still never goes back.
        """
        if seed is not None:
            self.seed = seed
        self._ensure_ready()
        with self._write() as conn:
            for table in ("actors", "connections", "idempotency_keys", "lists"):
                conn.execute(f"DELETE FROM {table}")
            conn.execute("DELETE FROM meta WHERE key LIKE 'seq:%' OR key = 'seeded'")
            self._seed(conn)
        self._load_lists()


# ---------------------------------------------------------------------------------------------------------------
# SearchActorsAdvanced restrictions


def _restriction_value(field_type: str, value, field_key: str):
    """A search value parsed for comparison with stored values of this type."""
    try:
        if field_type in ("Integer", "Double"):
            if isinstance(value, bool):
                raise ValueError
            number = float(value)
            if not math.isfinite(number):
                raise ValueError
            return number
        if field_type == "Checkbox":
            if isinstance(value, bool):
                return value
            if isinstance(value, int | str) and str(value).strip().lower() in {"0", "1", "true", "false"}:
                return _truthy(value)
            raise ValueError
        if field_type == "Date":
            return datetime.fromisoformat(str(value)).date().isoformat()
    except (ValueError, TypeError):
        raise ProtocolError(f"Search value {value!r} does not suit field {field_key} ({field_type}).",
                            error_code="BAD_RESTRICTION") from None
    if value is None:
        return ""
    return str(value).casefold()


def _compile_restriction(actor_type: str, restriction: Mapping) -> Callable[[sqlite3.Row, dict], bool]:
    key, operator = restriction.get("FieldKey"), restriction.get("Operator")
    values = restriction.get("Values")
    if values is None:
        values = []
    elif not isinstance(values, list):
        values = [values]
    if key in SPECIAL_SEARCH_KEYS:
        field_type = "Text"
        allowed = (*OPERATORS["Text"], "oneof", "notoneof")
        column = "parent_key" if key == "ParentErpKey" else "parent_type"

        def get(row: sqlite3.Row, fields: dict):
            return row[column]
    else:
        meta = FIELD_INDEX[actor_type].get(key)
        if meta is None:
            raise ProtocolError(f"{actor_type} has no field {key!r} to search on. Searchable fields: "
                                f"{', '.join(SEARCHABLE_FIELDS[actor_type])}.", error_code="UNKNOWN_FIELD")
        field_type = meta["FieldType"]
        allowed = OPERATORS.get(field_type, ())

        def get(row: sqlite3.Row, fields: dict):
            return fields.get(key)
    if operator not in allowed:
        raise ProtocolError(f"Operator {operator!r} cannot be used on {key} ({field_type}); use one of "
                            f"{', '.join(allowed)}.", error_code="BAD_RESTRICTION")
    needed = 2 if operator == "between" else 1
    if len(values) < needed:
        raise ProtocolError(f"Operator {operator!r} on {key} needs {needed} value{'s' if needed > 1 else ''}.",
                            error_code="BAD_RESTRICTION")
    if operator in ("oneof", "notoneof"):
        wanted = {str(v).casefold() for v in values if v is not None}
        inside = operator == "oneof"

        def one_of(row: sqlite3.Row, fields: dict) -> bool:
            value = get(row, fields)
            return (value is not None and str(value).casefold() in wanted) == inside

        return one_of
    args = [_restriction_value(field_type, v, key) for v in values[:needed]]
    if operator == "between" and args[0] > args[1]:
        args.reverse()
    first = args[0]

    if field_type == "Checkbox":
        return lambda row, fields: bool(get(row, fields)) == first

    if field_type in ("Text", "Password", "Label"):
        text_tests: dict[str, Callable[[str], bool]] = {
            "=": lambda v: v == first,
            "isnot": lambda v: v != first,
            "begins": lambda v: v.startswith(first),
            "contains": lambda v: first in v,
            "ends": lambda v: v.endswith(first),
            "notbegins": lambda v: not v.startswith(first),
            "notcontains": lambda v: first not in v,
            "notends": lambda v: not v.endswith(first),
            "between": lambda v: args[0] <= v <= args[1],
        }
        text_test = text_tests[operator]
        return lambda row, fields: text_test(str(get(row, fields) or "").casefold())

    compare: dict[str, Callable] = {
        "=": lambda v: v == first, "!=": lambda v: v != first, ">": lambda v: v > first, "<": lambda v: v < first,
        ">=": lambda v: v >= first, "<=": lambda v: v <= first, "between": lambda v: args[0] <= v <= args[1],
        "before": lambda v: v < first, "after": lambda v: v > first, "beforeOrEqual": lambda v: v <= first,
        "afterOrEqual": lambda v: v >= first,
    }
    value_test = compare[operator]

    def number_or_date(row: sqlite3.Row, fields: dict) -> bool:
        value = get(row, fields)
        if value is None:
            return operator == "!="  # a blank value is "not equal" to anything, and fails every other test
        if field_type == "Date":
            value = str(value)[:10]
        return value_test(value)

    return number_or_date


# ---------------------------------------------------------------------------------------------------------------


@register("demo")
def make_demo_connector(config: Mapping) -> DemoErpConnector:
    """The Demo ERP on the SQLite file ``config["DEMO_ERP_DB"]``."""
    return DemoErpConnector.for_path(config["DEMO_ERP_DB"])


__all__ = ["DemoErpConnector", "DemoErpValidationError", "FIELDS", "SEARCHABLE_FIELDS", "CONFIG_FIELDS",
           "format_timestamp", "parse_timestamp"]

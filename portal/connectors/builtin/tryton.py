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
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import wraps
from pathlib import Path

from portal.connectors.builtin import register
from portal.connectors.builtin.tryton_rpc import (
    TrytonAddressNotAllowed,
    TrytonAuthError,
    TrytonClient,
    TrytonConcurrencyError,
    TrytonError,
    TrytonForbidden,
    TrytonServerError,
    TrytonUnknownDatabase,
    TrytonUnreachable,
    TrytonUserError,
)
from portal.connectors.protocol import UNKNOWN_CONNECTION_ID, ZERO_GUID, field_metadata, ok_response, warning_response
from portal.connectors.service import ConnectorService, ProtocolError
from portal.security.urlguard import UrlNotAllowed, check_connector_url

log = logging.getLogger(__name__)

# ------------------------------------------------------------------------------------------- config
CFG_URL, CFG_DATABASE, CFG_USER, CFG_PASSWORD, CFG_COMPANY, CFG_TIMEOUT = (
    "url", "database", "user", "password", "company", "timeout")
DEFAULT_URL = "http://127.0.0.1:8765"
CONFIG_FIELDS = [
    field_metadata(CFG_URL, "Tryton server URL", description="Base URL of trytond, e.g. http://127.0.0.1:8765",
                   default=DEFAULT_URL, access="Mandatory", rank=1),
    field_metadata(CFG_DATABASE, "Database", description="Name of the Tryton database", access="Mandatory",
                   rank=2),
    field_metadata(CFG_USER, "User", description="Tryton login", default="admin", access="Mandatory", rank=3),
    field_metadata(CFG_PASSWORD, "Password", "Password", description="Password of that Tryton user", rank=4),
    field_metadata(CFG_COMPANY, "Company", description="Tryton company (id or name) for projects; blank = the "
                   "user's current company", rank=5),
    field_metadata(CFG_TIMEOUT, "Timeout (seconds)", "Integer", description="How long to wait for Tryton",
                   default="30", rank=6),
]

CUSTOMER, SUPPLIER, PERSON, PROJECT = "Customer", "Supplier", "Person", "Project"
ACTOR_TYPES = (CUSTOMER, SUPPLIER, PERSON, PROJECT)
PARTY_TYPES = (CUSTOMER, SUPPLIER, PERSON)
EMPLOYEE_OF, EMPLOYER_OF = "Employee of", "Employer of"
STATE_OPENED, STATE_DONE = "opened", "done"

LIST_COUNTRIES, LIST_LANGUAGES, LIST_PROJECT_STATES = "countries", "languages", "project_states"
LISTS = (LIST_COUNTRIES, LIST_LANGUAGES, LIST_PROJECT_STATES)

MAX_RESULTS = 1000  # cap for searches without Limit (answered with a Warning when reached)
CHUNK = 500  # ids per read call
CACHE_SECONDS = 300  # lists and reference ids (categories, countries, languages …) per connection
CONTROL_CHARS = re.compile(r"[\t\n\r\v\f\x00-\x08\x0e-\x1f]")


def _f(key, name, field_type="Text", **kw):
    return field_metadata(key, name, field_type, **kw)


_COMPANY_FIELDS = [
    _f("NAME", "Name", access="Mandatory", rank=1, description="Party name"),
    _f("NUMBER1", "Party code", access="ReadOnly", rank=2, description="Tryton's party code (set by Tryton)"),
    _f("VATNO", "Tax identifier", rank=3, description="The party's tax identifier (e.g. VAT number)"),
    _f("LANGUAGE", "Language", "List", list_name=LIST_LANGUAGES, rank=4),
    _f("EMAIL", "E-mail", rank=5, description="First e-mail contact mechanism"),
    _f("PHONE", "Phone", rank=6, description="First phone contact mechanism"),
    _f("MOBILE", "Mobile", rank=7, description="First mobile contact mechanism"),
    _f("URL", "Website", rank=8, description="First website contact mechanism"),
    _f("POSTALAD1", "Street", rank=9, description="First line of the first address's street"),
    _f("POSTALAD2", "Street, more lines", rank=10, description="Further lines of the street (newline-separated)"),
    _f("POSTALZIP", "Postal code", rank=11),
    _f("POSTALCITY", "City", rank=12),
    _f("POSTALSTATE", "Subdivision", rank=13,
       description="State/region of the address: its name or ISO 3166-2 code (e.g. DE-BE); needs COUNTRY"),
    _f("COUNTRY", "Country", "List", list_name=LIST_COUNTRIES, rank=14, description="ISO 3166-1 alpha-2 code"),
    _f("CATEGORIES", "Categories", access="ReadOnly", rank=15, description="Party categories, comma-separated"),
]
FIELDS: dict[str, list[dict]] = {
    CUSTOMER: _COMPANY_FIELDS,
    SUPPLIER: _COMPANY_FIELDS,
    PERSON: [
        _f("FIRSTNAME", "First name", rank=1, description="Party name up to the last space"),
        _f("LASTNAME", "Last name", rank=2, description="Last word of the party name"),
        _f("NUMBER", "Party code", access="ReadOnly", rank=3),
        _f("EMAIL", "E-mail", rank=4),
        _f("PHONE_DIRECT", "Phone", rank=5),
        _f("PHONE_MOBILE", "Mobile", rank=6),
    ],
    PROJECT: [
        _f("NAME", "Project name", access="Mandatory", rank=1),
        _f("NUMBER", "Number", access="ReadOnly", rank=2, description="Tryton's project number"),
        _f("TEXT", "Description", rank=3),
        _f("STARTDATE", "Start date", "Date", rank=4, description="Start of the project's timesheet period"),
        _f("ENDDATE", "End date", "Date", rank=5, description="End of the project's timesheet period"),
        _f("STATE", "State", "List", list_name=LIST_PROJECT_STATES, rank=6),
    ],
}
FIELD_INDEX = {actor_type: {f["FieldKey"]: f for f in fields} for actor_type, fields in FIELDS.items()}
# Contact mechanisms per actor type: FieldKey → Tryton mechanism type.
MECHANISMS = {
    CUSTOMER: {"EMAIL": "email", "PHONE": "phone", "MOBILE": "mobile", "URL": "website"},
    SUPPLIER: {"EMAIL": "email", "PHONE": "phone", "MOBILE": "mobile", "URL": "website"},
    PERSON: {"EMAIL": "email", "PHONE_DIRECT": "phone", "PHONE_MOBILE": "mobile"},
}
ADDRESS_KEYS = ("POSTALAD1", "POSTALAD2", "POSTALZIP", "POSTALCITY", "POSTALSTATE", "COUNTRY")
MULTILINE_KEYS = {"POSTALAD2", "TEXT"}


# Advanced search: FieldKey → where to look. ("field", path) on the actor's model, ("child", o2m field, extra
# sub-domain, path in the child) through Tryton's "where"/"not where", ("name_part", FIRSTNAME|LASTNAME) is
# filtered after the query, ("status",) maps STATE keys to project.work.status ids.
def _child(o2m, path, extra=()):
    return ("child", o2m, list(extra), path)


_COMPANY_SEARCH = {
    "NAME": ("field", "name"),
    "NUMBER1": ("field", "code"),
    "VATNO": _child("identifiers", "code"),
    "EMAIL": _child("contact_mechanisms", "value", [["type", "=", "email"]]),
    "PHONE": _child("contact_mechanisms", "value", [["type", "=", "phone"]]),
    "MOBILE": _child("contact_mechanisms", "value", [["type", "=", "mobile"]]),
    "URL": _child("contact_mechanisms", "value", [["type", "=", "website"]]),
    "POSTALAD1": _child("addresses", "street"),
    "POSTALZIP": _child("addresses", "postal_code"),
    "POSTALCITY": _child("addresses", "city"),
    "POSTALSTATE": _child("addresses", "subdivision.name"),
    "COUNTRY": _child("addresses", "country.code"),
    "LANGUAGE": ("field", "lang.code"),
    "CATEGORIES": ("field", "categories.name"),
}
SEARCH: dict[str, dict[str, tuple]] = {
    CUSTOMER: _COMPANY_SEARCH,
    SUPPLIER: _COMPANY_SEARCH,
    PERSON: {
        "FIRSTNAME": ("name_part", "FIRSTNAME"),
        "LASTNAME": ("name_part", "LASTNAME"),
        "NUMBER": ("field", "code"),
        "EMAIL": _child("contact_mechanisms", "value", [["type", "=", "email"]]),
        "PHONE_DIRECT": _child("contact_mechanisms", "value", [["type", "=", "phone"]]),
        "PHONE_MOBILE": _child("contact_mechanisms", "value", [["type", "=", "mobile"]]),
    },
    PROJECT: {
        "NAME": ("field", "name"),
        "NUMBER": ("field", "number"),
        "TEXT": ("field", "comment"),
        "STATE": ("status",),
    },
}
TEXT_OPERATORS = {"=", "begins", "contains", "ends", "notbegins", "notcontains", "notends", "isnot", "between"}
NEGATIVE = {"notbegins": "begins", "notcontains": "contains", "notends": "ends", "isnot": "="}

PARTY_FIELDS = ["name", "code", "active", "lang", "categories", "addresses", "contact_mechanisms", "identifiers",
                "tax_identifier", "last_modified_at", "_timestamp"]
WORK_FIELDS = ["name", "number", "comment", "type", "status", "company", "timesheet_available",
               "timesheet_start_date", "timesheet_end_date", "last_modified_at", "_timestamp"]


# ------------------------------------------------------------------------------------------ helpers
def iso_utc(value: dt.datetime | None) -> str:
    """Tryton's naive-UTC timestamp → '2026-11-25T17:02:06.123456Z'."""
    if value is None:
        return ""
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    return value.strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z"


def parse_timestamp(text, what: str = "timestamp") -> dt.datetime | None:
    """An ISO-8601 date or date-time (Z, offset or naive = UTC) → naive UTC datetime; blank → None."""
    if text is None or (isinstance(text, str) and not text.strip()):
        return None
    if not isinstance(text, str):
        raise ProtocolError(f"The {what} must be an ISO-8601 string, not {text!r}.", error_code="INVALID_VALUE")
    value = text.strip()
    try:
        parsed = dt.datetime.fromisoformat(value[:-1] + "+00:00" if value.endswith(("Z", "z")) else value)
    except ValueError:
        raise ProtocolError(f"The {what} '{value}' is not an ISO-8601 date-time.",
                            error_code="INVALID_VALUE") from None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(dt.UTC).replace(tzinfo=None)
    return parsed


def parse_date(value) -> dt.date:
    if isinstance(value, str):
        text = value.strip()
        try:
            return dt.date.fromisoformat(text[:10]) if len(text) >= 10 else dt.date.fromisoformat(text)
        except ValueError:
            pass
    raise ValueError(f"'{value}' is not a date (YYYY-MM-DD)")


def split_person_name(name: str | None) -> tuple[str | None, str | None]:
    """'Anna Maria Schmidt' → ('Anna Maria', 'Schmidt'); 'Madonna' → (None, 'Madonna')."""
    text = " ".join((name or "").split())
    if not text:
        return None, None
    first, _, last = text.rpartition(" ")
    return (first or None), last


def join_person_name(first: str | None, last: str | None) -> str:
    return " ".join(part.strip() for part in (first, last) if part and part.strip())


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _case_variants(text: str) -> list[str]:
    # SQLite's LIKE folds ASCII letters only: try the usual spellings of non-ASCII text too.
    if text.isascii():
        return [text]
    return list(dict.fromkeys([text, text.lower(), text.upper(), text.capitalize(), text.title()]))


def _like_patterns(operator: str, text: str) -> list[str]:
    esc = _escape_like
    form = {"=": "{}", "begins": "{}%", "contains": "%{}%", "ends": "%{}"}[operator]
    return [form.format(esc(variant)) for variant in _case_variants(text)]


def _text_match(operator: str, actual: str | None, wanted: str) -> bool:
    actual, wanted = (actual or "").casefold(), (wanted or "").casefold()
    positive = NEGATIVE.get(operator, operator)
    result = {"=": actual == wanted, "begins": actual.startswith(wanted), "contains": wanted in actual,
              "ends": actual.endswith(wanted)}[positive]
    return not result if operator in NEGATIVE else result


def _chunks(items: list, size: int = CHUNK) -> Iterable[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _int_keys(keys) -> list[int]:
    out = []
    for key in keys or []:
        try:
            number = int(str(key).strip())
        except (TypeError, ValueError):
            continue
        if number > 0:
            out.append(number)
    return list(dict.fromkeys(out))


def _guid(body: Mapping) -> str:
    raw = body.get("ConnectionGuid")
    try:
        return str(uuid.UUID(str(raw)))
    except (TypeError, ValueError):
        raise ProtocolError("ConnectionGuid is missing or not a UUID.", f"got {raw!r}",
                            UNKNOWN_CONNECTION_ID) from None


def _actor_type(body: Mapping, key: str = "ActorType") -> str:
    actor_type = body.get(key)
    if actor_type not in ACTOR_TYPES:
        raise ProtocolError(f"The Tryton connector does not support the actor type {actor_type!r}.",
                            f"supported: {', '.join(ACTOR_TYPES)}", "UNSUPPORTED_ACTOR_TYPE")
    return actor_type


def _field_keys(body: Mapping, actor_type: str) -> list[str]:
    keys = body.get("FieldKeys") or []
    known = FIELD_INDEX[actor_type]
    return [k for k in keys if k in known] if keys else list(known)


def _limit(body: Mapping) -> int | None:
    limit = body.get("Limit")
    if limit in (None, "", 0):
        return None
    try:
        limit = int(limit)
    except (TypeError, ValueError):
        raise ProtocolError("Limit must be a whole number.", error_code="INVALID_VALUE") from None
    if limit < 0:
        raise ProtocolError("Limit must not be negative.", error_code="INVALID_VALUE")
    return limit


ERROR_CODES = [
    (TrytonAddressNotAllowed, "ADDRESS_NOT_ALLOWED"),
    (TrytonUnreachable, "ERP_UNREACHABLE"),  # TrytonTimeout too: one code and one text (no port-scan oracle)
    (TrytonAuthError, "ERP_AUTH_FAILED"),
    (TrytonUnknownDatabase, "ERP_UNKNOWN_DATABASE"),
    (TrytonForbidden, "ERP_FORBIDDEN"),
    (TrytonConcurrencyError, "CONFLICT"),
    (TrytonUserError, "ERP_VALIDATION"),
    (TrytonServerError, "ERP_ERROR"),
]


def _protocol(method):
    """Turn TrytonErrors raised inside a protocol method into readable ProtocolErrors."""

    @wraps(method)
    def wrapper(self, body):
        try:
            return method(self, body)
        except TrytonError as exc:
            code = next((c for cls, c in ERROR_CODES if isinstance(exc, cls)), "ERP_ERROR")
            message = exc.message
            if code == "CONFLICT":
                message = ("The record was changed in Tryton while it was being saved; nothing was written. "
                           "Read it again and retry.")
            raise ProtocolError(message, exc.tech, code) from exc

    return wrapper


# -------------------------------------------------------------------------------------------- store
class ConnectionStore:
    """Connection configs by GUID and IdempotencyKey → ErpKey, in a SQLite file (thread- and process-safe).

    The password is encrypted with the portal's Fernet keys when they are given (ENCRYPTION_KEYS); the file
    is created owner-only (0600) either way. A config whose password no longer decrypts counts as unknown, so
    the portal re-sends it (UNKNOWN_CONNECTION_ID)."""

    def __init__(self, path: str | os.PathLike, secret_keys: list[str] | None = None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.path.exists():
            os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT, 0o600))
        self._fernet = None
        if secret_keys:
            from cryptography.fernet import Fernet, MultiFernet

            self._fernet = MultiFernet([Fernet(key.encode() if isinstance(key, str) else key)
                                        for key in secret_keys])
        with self._db() as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS connection (guid TEXT PRIMARY KEY, config TEXT NOT NULL, "
                         "saved_at TEXT NOT NULL)")
            conn.execute("CREATE TABLE IF NOT EXISTS idempotency (guid TEXT NOT NULL, key TEXT NOT NULL, "
                         "actor_type TEXT NOT NULL, erp_key TEXT NOT NULL, created_at TEXT NOT NULL, "
                         "PRIMARY KEY (guid, key))")

    def _db(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=15)
        conn.execute("PRAGMA busy_timeout = 15000")
        return conn

    def _run(self, sql: str, params: tuple = (), fetch: bool = False):
        conn = self._db()
        try:
            with conn:
                cursor = conn.execute(sql, params)
                return cursor.fetchall() if fetch else cursor.rowcount
        finally:
            conn.close()

    def save(self, guid: str, info: Mapping) -> None:
        stored = {str(k): ("" if v is None else v) for k, v in info.items()}
        password = stored.get(CFG_PASSWORD)
        if self._fernet is not None and password:
            stored[CFG_PASSWORD] = "fernet:" + self._fernet.encrypt(str(password).encode()).decode()
        self._run("INSERT INTO connection (guid, config, saved_at) VALUES (?, ?, ?) ON CONFLICT(guid) DO UPDATE "
                  "SET config = excluded.config, saved_at = excluded.saved_at",
                  (guid, json.dumps(stored), dt.datetime.now(dt.UTC).isoformat()))

    def load(self, guid: str) -> dict | None:
        rows = self._run("SELECT config FROM connection WHERE guid = ?", (guid,), fetch=True)
        if not rows:
            return None
        info = json.loads(rows[0][0])
        password = info.get(CFG_PASSWORD)
        if isinstance(password, str) and password.startswith("fernet:"):
            if self._fernet is None:
                return None
            from cryptography.fernet import InvalidToken

            try:
                info[CFG_PASSWORD] = self._fernet.decrypt(password[len("fernet:"):].encode()).decode()
            except InvalidToken:
                log.warning("tryton connector: stored password of %s no longer decrypts", guid)
                return None
        return info

    def delete(self, guid: str) -> None:
        self._run("DELETE FROM connection WHERE guid = ?", (guid,))
        self._run("DELETE FROM idempotency WHERE guid = ?", (guid,))

    def recall(self, guid: str, key: str) -> tuple[str, str] | None:
        rows = self._run("SELECT actor_type, erp_key FROM idempotency WHERE guid = ? AND key = ?", (guid, key),
                         fetch=True)
        return (rows[0][0], rows[0][1]) if rows else None

    def remember(self, guid: str, key: str, actor_type: str, erp_key: str) -> None:
        self._run("INSERT OR IGNORE INTO idempotency (guid, key, actor_type, erp_key, created_at) "
                  "VALUES (?, ?, ?, ?, ?)", (guid, key, actor_type, erp_key,
                                             dt.datetime.now(dt.UTC).isoformat()))


# ---------------------------------------------------------------------------------------- connection
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


def _config_errors(info: Mapping) -> list[str]:
    errors = []
    url = str(info.get(CFG_URL) or "").strip()
    if not url:
        errors.append("The Tryton server URL is missing.")
    elif not re.match(r"^https?://[^/\s@]+(/[^\s]*)?$", url):
        errors.append(f"The Tryton server URL '{url}' must look like http://host:port.")
    if not str(info.get(CFG_DATABASE) or "").strip():
        errors.append("The Tryton database name is missing.")
    if not str(info.get(CFG_USER) or "").strip():
        errors.append("The Tryton user is missing.")
    timeout = info.get(CFG_TIMEOUT)
    if timeout not in (None, ""):
        try:
            if not 1 <= float(timeout) <= 600:
                raise ValueError
        except (TypeError, ValueError):
            errors.append("The timeout must be a number of seconds between 1 and 600.")
    return errors


def _check_address(info: Mapping, allowed_networks: Sequence[str]) -> None:
    """The save-time half of the URL guard (the connect-time half is the client's transport): the host must
    resolve only to addresses the portal may connect to. Raises ADDRESS_NOT_ALLOWED before anything is sent."""
    try:
        check_connector_url(str(info.get(CFG_URL) or "").strip(), allowed_networks)
    except UrlNotAllowed as exc:
        message = exc.user_message.replace("The connector host", "The Tryton server host", 1)
        raise ProtocolError(message, exc.tech_message, "ADDRESS_NOT_ALLOWED") from exc


def make_client(info: Mapping, allowed_networks: Sequence[str] = ()) -> TrytonClient:
    """A JSON-RPC client for ``info`` whose every request goes through the guarded transport with
    ``allowed_networks`` (PORTAL_CONNECTOR_ALLOWED_NETWORKS)."""
    timeout = info.get(CFG_TIMEOUT)
    return TrytonClient(str(info.get(CFG_URL) or DEFAULT_URL).strip(), str(info.get(CFG_DATABASE) or "").strip(),
                        str(info.get(CFG_USER) or "").strip(), str(info.get(CFG_PASSWORD) or ""),
                        timeout=float(timeout) if timeout not in (None, "") else 30.0,
                        allowed_networks=allowed_networks)


# ----------------------------------------------------------------------------------------- connector
class TrytonConnector(ConnectorService):
    """The protocol methods (see portal/connectors/protocol.py) for a Tryton database."""

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

    # -- reading
    def _read_parties(self, conn: _Connection, ids: list[int]) -> dict[int, dict]:
        client = conn.client
        refs = self._refs(conn)
        snaps: dict[int, dict] = {}
        for chunk in _chunks(ids):
            rows = client.read("party.party", chunk, PARTY_FIELDS, context={"active_test": False})
            by_id = {row["id"]: row for row in rows}
            addr_ids = [i for row in rows for i in row["addresses"]]
            mech_ids = [i for row in rows for i in row["contact_mechanisms"]]
            ident_ids = [i for row in rows for i in row["identifiers"]]
            everything = {"active_test": False}  # archived children count for LastModified, not for values
            addresses = {r["id"]: r for r in client.read(
                "party.address", addr_ids, ["street", "postal_code", "city", "country", "subdivision", "active",
                                            "last_modified_at", "_timestamp"], context=everything)}
            mechanisms = {r["id"]: r for r in client.read(
                "party.contact_mechanism", mech_ids, ["type", "value", "active", "last_modified_at", "_timestamp"],
                context=everything)}
            identifiers = {r["id"]: r for r in client.read(
                "party.identifier", ident_ids, ["type", "code", "active", "last_modified_at", "_timestamp"],
                context=everything)}
            relations: dict[int, list[dict]] = {}
            for rel in client.search_read("party.relation.all", [["from_", "in", chunk]],
                                          ["from_", "to", "type", "active"],
                                          order=[["id", "ASC"]], context=everything):
                relations.setdefault(rel["from_"], []).append(rel)
            for party_id in chunk:
                row = by_id.get(party_id)
                if row is None:
                    continue
                snap = dict(row)
                children = {
                    "_addresses": [addresses[i] for i in row["addresses"] if i in addresses],
                    "_mechanisms": [mechanisms[i] for i in row["contact_mechanisms"] if i in mechanisms],
                    "_identifiers": [identifiers[i] for i in row["identifiers"] if i in identifiers],
                    "_relations": relations.get(party_id, []),
                }
                # party.relation.all is a SQL view whose timestamps read as "now": relations do not count
                # (they are written through the party, which bumps the party's own timestamp)
                stamps = [row.get("last_modified_at")] + [
                    child.get("last_modified_at") for key, rows in children.items() if key != "_relations"
                    for child in rows]
                snap["_lm"] = max((s for s in stamps if s is not None), default=None)
                for key, rows in children.items():
                    snap[key] = [r for r in rows if r.get("active", True)]
                if not snap["_relations"]:  # an ended relation still tells who the employer was
                    snap["_relations"] = children["_relations"]
                snaps[party_id] = snap
        missing = {a["subdivision"] for s in snaps.values() for a in s["_addresses"]
                   if a.get("subdivision") and a["subdivision"] not in refs.subdivisions}
        if missing:
            for row in client.read("country.subdivision", sorted(missing), ["code", "name"]):
                refs.subdivisions[row["id"]] = (row["code"], row["name"])
        return snaps

    def _read_works(self, conn: _Connection, ids: list[int]) -> dict[int, dict]:
        snaps = {}
        for chunk in _chunks(ids):
            for row in conn.client.read("project.work", chunk, WORK_FIELDS, context={"active_test": False}):
                row["_lm"] = row.get("last_modified_at")
                snaps[row["id"]] = row
        return snaps

    def _read(self, conn: _Connection, actor_type: str, ids: list[int]) -> dict[int, dict]:
        return self._read_works(conn, ids) if actor_type == PROJECT else self._read_parties(conn, ids)

    def _party_values(self, conn: _Connection, actor_type: str, snap: dict) -> dict:
        refs = self._refs(conn)
        values: dict = {}
        for key, kind in MECHANISMS[actor_type].items():
            values[key] = next((m["value"] for m in snap["_mechanisms"] if m["type"] == kind), None)
        if actor_type == PERSON:
            values["FIRSTNAME"], values["LASTNAME"] = split_person_name(snap.get("name"))
            values["NUMBER"] = snap.get("code")
            return values
        values["NAME"] = snap.get("name")
        values["NUMBER1"] = snap.get("code")
        ident = self._vat_identifier(snap)
        values["VATNO"] = ident["code"] if ident else None
        values["LANGUAGE"] = refs.langs.get(snap.get("lang"), (None,))[0] if snap.get("lang") else None
        address = snap["_addresses"][0] if snap["_addresses"] else {}
        first, _, rest = (address.get("street") or "").partition("\n")
        values["POSTALAD1"] = first or None
        values["POSTALAD2"] = rest or None
        values["POSTALZIP"] = address.get("postal_code") or None
        values["POSTALCITY"] = address.get("city") or None
        subdivision = address.get("subdivision")
        values["POSTALSTATE"] = refs.subdivisions.get(subdivision, (None, None))[1] if subdivision else None
        country = address.get("country")
        values["COUNTRY"] = refs.countries.get(country, (None,))[0] if country else None
        names = sorted(refs.categories.get(c, str(c)) for c in snap.get("categories") or [])
        values["CATEGORIES"] = ", ".join(names) or None
        return values

    @staticmethod
    def _vat_identifier(snap: dict) -> dict | None:
        """The identifier shown as VATNO: Tryton's tax identifier, else the first identifier without a type."""
        tax_id = snap.get("tax_identifier")
        if tax_id:
            found = next((i for i in snap["_identifiers"] if i["id"] == tax_id), None)
            if found:
                return found
        return next((i for i in snap["_identifiers"] if not i.get("type")), None)

    def _employer(self, conn: _Connection, snap: dict) -> int | None:
        type_id = self._refs(conn).relation_types.get(EMPLOYEE_OF)
        return next((r["to"] for r in snap["_relations"] if r["type"] == type_id), None)

    def _work_values(self, conn: _Connection, snap: dict) -> dict:
        return {
            "NAME": snap.get("name"),
            "NUMBER": snap.get("number") or str(snap["id"]),
            "TEXT": snap.get("comment") or None,
            "STARTDATE": snap["timesheet_start_date"].isoformat() if snap.get("timesheet_start_date") else None,
            "ENDDATE": snap["timesheet_end_date"].isoformat() if snap.get("timesheet_end_date") else None,
            "STATE": self._state_key(conn, snap.get("status")),
        }

    def _state_key(self, conn: _Connection, status_id: int | None) -> str | None:
        if not status_id:
            return None
        status = next((s for s in self._refs(conn).statuses if s["id"] == status_id), None)
        if status is None:
            return None
        return STATE_DONE if (status.get("progress") or 0) >= 1 else STATE_OPENED

    def _actors(self, conn: _Connection, actor_type: str, snaps: list[dict], keys: list[str]) -> list[dict]:
        parents: dict[int, str] = {}
        if actor_type == PERSON:
            parent_ids = sorted({p for p in (self._employer(conn, s) for s in snaps) if p})
            refs = self._refs(conn)
            for chunk in _chunks(parent_ids):
                for row in conn.client.read("party.party", chunk, ["categories"], context={"active_test": False}):
                    cats = set(row["categories"])
                    parents[row["id"]] = (SUPPLIER if refs.category_ids.get(SUPPLIER) in cats
                                          and refs.category_ids.get(CUSTOMER) not in cats else CUSTOMER)
        actors = []
        for snap in snaps:
            if actor_type == PROJECT:
                values = self._work_values(conn, snap)
            else:
                values = self._party_values(conn, actor_type, snap)
            parent = self._employer(conn, snap) if actor_type == PERSON else None
            actors.append({
                "ActorType": actor_type,
                "ErpKey": str(snap["id"]),
                "LastModified": iso_utc(snap["_lm"]),
                "ParentActorType": parents.get(parent, CUSTOMER) if parent else "",
                "ParentErpKey": str(parent) if parent else "",
                "FieldValues": {key: values.get(key) for key in keys},
            })
        return actors

    def _get(self, conn: _Connection, actor_type: str, ids: list[int], keys: list[str]) -> list[dict]:
        """Actors for ids that exist, are active and are of the type, in the order of ``ids``."""
        if not ids:
            return []
        found: list[int] = []
        for chunk in _chunks(ids):
            found += self._search_ids(conn, actor_type, [["id", "in", chunk]])
        snaps = self._read(conn, actor_type, found)
        return self._actors(conn, actor_type, [snaps[i] for i in ids if i in snaps], keys)

    # ---------------------------------------------------------------------------------- config methods
    def GetConfigData(self, body: dict) -> dict:  # noqa: N802 - protocol names
        return ok_response(FieldMetaDataObjects=CONFIG_FIELDS)

    @_protocol
    def TestConfigData(self, body: dict) -> dict:  # noqa: N802
        info = body.get("ConnectionInfo") or {}
        if not isinstance(info, dict):
            raise ProtocolError("ConnectionInfo must be an object.", error_code="BAD_REQUEST")
        errors = _config_errors(info)
        if errors:
            raise ProtocolError(" ".join(errors), error_code="INVALID_CONFIG")
        _check_address(info, self.allowed_networks)
        client = make_client(info, self.allowed_networks)
        try:
            return ok_response(UserExplanation=self._probe(client, info))
        finally:
            client.logout()

    def _probe(self, client: TrytonClient, info: Mapping) -> str:
        try:
            version = client.server_version()
        except TrytonAddressNotAllowed as exc:
            raise ProtocolError(exc.message, exc.tech, "ADDRESS_NOT_ALLOWED") from exc
        except TrytonError as exc:
            # Whatever answered (nothing, a closed port, a timeout, some other HTTP server): one text, so a connection
            # test cannot tell an open port from a closed one; what happened goes to the server log.
            log.warning("tryton connector: no Tryton at %s (%s: %s)", client.url, type(exc).__name__, exc.tech)
            raise ProtocolError(client.unreachable_message, exc.tech, "ERP_UNREACHABLE") from exc
        try:
            client.login()
        except TrytonUnknownDatabase as exc:
            raise ProtocolError(f"Tryton at {client.url} has no database '{client.database}'.", exc.tech,
                                "ERP_UNKNOWN_DATABASE") from exc
        except TrytonAuthError as exc:
            raise ProtocolError(f"Tryton refused the user name or password for '{client.user}'.", exc.tech,
                                "ERP_AUTH_FAILED") from exc
        company = str(info.get(CFG_COMPANY) or "").strip()
        parties = client.model("party.party", "search_count", [])
        text = f"Connected to Tryton {version}, database '{client.database}', as '{client.user}' ({parties} parties)."
        if company:
            domain = [["id", "=", int(company)]] if company.isdigit() else [
                ["party.name", "ilike", _escape_like(company)]]
            if len(client.search("company.company", domain, limit=2)) != 1:
                raise ProtocolError(f"Connected, but Tryton has no single company '{company}'.",
                                    error_code="ERP_CONFIGURATION")
        return text

    def SaveConnection(self, body: dict) -> dict:  # noqa: N802
        guid = _guid(body)
        if guid == ZERO_GUID:
            raise ProtocolError("A connection cannot be saved under the all-zero GUID.", error_code="BAD_REQUEST")
        info = body.get("ConnectionInfo")
        if not isinstance(info, dict):
            raise ProtocolError("ConnectionInfo must be an object.", error_code="BAD_REQUEST")
        errors = _config_errors(info)
        if errors:
            raise ProtocolError(" ".join(errors), error_code="INVALID_CONFIG")
        _check_address(info, self.allowed_networks)
        self.store.save(guid, info)
        self._forget(guid)
        return ok_response()

    @_protocol
    def TestConnection(self, body: dict) -> dict:  # noqa: N802
        conn = self._connection(body)
        client = make_client(conn.config, self.allowed_networks)  # a fresh login proves the stored credentials
        try:
            text = self._probe(client, conn.config)
        finally:
            client.logout()
        self._refs(conn, refresh=True)
        refs = conn.refs
        missing = [name for name in (CUSTOMER, SUPPLIER) if name not in refs.category_ids]
        if EMPLOYEE_OF not in refs.relation_types:
            missing.append(f"relation type '{EMPLOYEE_OF}'")
        if missing:
            return warning_response(f"{text} Not yet set up in Tryton: {', '.join(missing)} (created on the first "
                                    "CreateActor).")
        return ok_response(UserExplanation=text)

    def DeleteConnection(self, body: dict) -> dict:  # noqa: N802
        guid = _guid(body)
        self._forget(guid)
        self.store.delete(guid)
        return ok_response()

    # ------------------------------------------------------------------------------ metadata methods
    def GetSupportedActorTypes(self, body: dict) -> dict:  # noqa: N802
        self._connection(body)
        return ok_response(Items=list(ACTOR_TYPES))

    def GetSupportedActorTypeFields(self, body: dict) -> dict:  # noqa: N802
        self._connection(body)
        return ok_response(FieldMetaDataObjects=FIELDS[_actor_type(body)])

    def GetSearchableFields(self, body: dict) -> dict:  # noqa: N802
        self._connection(body)
        actor_type = _actor_type(body)
        return ok_response(Items=[f["FieldKey"] for f in FIELDS[actor_type] if f["FieldKey"] in SEARCH[actor_type]])

    # ---------------------------------------------------------------------------------------- lists
    @_protocol
    def GetList(self, body: dict) -> dict:  # noqa: N802
        name = body.get("ListName")
        if name not in LISTS:
            raise ProtocolError(f"The Tryton connector has no list {name!r}.", f"lists: {', '.join(LISTS)}",
                                "UNKNOWN_LIST")
        if str(body.get("ConnectionGuid") or "") == ZERO_GUID:
            # Before a connection is saved there is no Tryton to ask; only the static list is known.
            return ok_response(ListItems=self._static_states() if name == LIST_PROJECT_STATES else {})
        return ok_response(ListItems=self._list(self._connection(body), name))

    @_protocol
    def GetListItems(self, body: dict) -> dict:  # noqa: N802
        answer = self.GetList(body)
        if not answer.get("IsOk"):
            return answer
        keys = [str(k) for k in body.get("ListItemKeys") or []]
        items = answer["ListItems"]
        return ok_response(ListItems={k: items[k] for k in keys if k in items})

    @staticmethod
    def _static_states() -> dict:
        return {STATE_OPENED: "Open", STATE_DONE: "Done"}

    def _list(self, conn: _Connection, name: str) -> dict:
        refs = self._refs(conn)
        if name == LIST_COUNTRIES:
            return {code: label for code, label in refs.countries.values()}
        if name == LIST_LANGUAGES:
            return {code: label for code, label in refs.langs.values()}
        states = {}
        for status in refs.statuses:
            if "project" in (status.get("types") or ["project"]):
                key = STATE_DONE if (status.get("progress") or 0) >= 1 else STATE_OPENED
                states.setdefault(key, status["name"])
        return states or self._static_states()

    # -------------------------------------------------------------------------------------- reading
    @_protocol
    def GetActors(self, body: dict) -> dict:  # noqa: N802
        conn = self._connection(body)
        actor_type = _actor_type(body)
        return ok_response(Actors=self._get(conn, actor_type, _int_keys(body.get("ErpKeys")),
                                            _field_keys(body, actor_type)))

    def _answer(self, conn, actor_type, ids: list[int], keys, limit: int | None, post=None) -> dict:
        snaps = self._read(conn, actor_type, ids)
        ordered = [snaps[i] for i in ids if i in snaps]
        if post is not None:
            ordered = [s for s in ordered if post(s)]
        capped = limit is None and len(ordered) >= MAX_RESULTS
        if limit is not None:
            ordered = ordered[:limit]
        actors = self._actors(conn, actor_type, ordered[:MAX_RESULTS], keys)
        if capped:
            return warning_response(f"Only the first {MAX_RESULTS} matches are shown; refine the search.",
                                    Actors=actors)
        return ok_response(Actors=actors)

    def _text_domain(self, actor_type: str, text: str) -> list:
        text = (text or "").strip()
        if not text:
            return []
        code_field = "number" if actor_type == PROJECT else "code"
        leaves = [[f, "ilike", p] for f in ("name", code_field) for p in _like_patterns("contains", text)]
        return [["OR", *leaves]]

    @_protocol
    def SearchActors(self, body: dict) -> dict:  # noqa: N802
        conn = self._connection(body)
        actor_type = _actor_type(body)
        limit = _limit(body)
        ids = self._search_ids(conn, actor_type, self._text_domain(actor_type, body.get("SearchText") or ""),
                               limit=limit if limit is not None else MAX_RESULTS)
        return self._answer(conn, actor_type, ids, _field_keys(body, actor_type), limit)

    @_protocol
    def SearchActorByParent(self, body: dict) -> dict:  # noqa: N802
        conn = self._connection(body)
        actor_type = _actor_type(body)
        if actor_type != PERSON:
            raise ProtocolError("Only persons have a parent in the Tryton connector.",
                                error_code="UNSUPPORTED_ACTOR_TYPE")
        parent_ids = _int_keys([body.get("ParentErpKey")])
        if not parent_ids:
            return ok_response(Actors=[])
        domain = self._parent_domain(conn, parent_ids) + self._text_domain(actor_type, body.get("SearchText") or "")
        limit = _limit(body)
        ids = self._search_ids(conn, actor_type, domain, limit=limit if limit is not None else MAX_RESULTS)
        return self._answer(conn, actor_type, ids, _field_keys(body, actor_type), limit)

    def _parent_domain(self, conn: _Connection, parent_ids: list[int], negate: bool = False) -> list:
        type_id = self._refs(conn).relation_types.get(EMPLOYEE_OF)
        return [["relations", "not where" if negate else "where", [["type", "=", type_id],
                                                                   ["to", "in", parent_ids]]]]

    @_protocol
    def SearchActorsAdvanced(self, body: dict) -> dict:  # noqa: N802
        conn = self._connection(body)
        actor_type = _actor_type(body)
        restrictions = body.get("Restrictions") or []
        if not isinstance(restrictions, list):
            raise ProtocolError("Restrictions must be a list.", error_code="BAD_REQUEST")
        domain: list = []
        post: list = []
        for restriction in restrictions:
            leaves, check = self._restriction(conn, actor_type, restriction)
            domain += leaves
            if check is not None:
                post.append(check)
        limit = _limit(body)
        ids = self._search_ids(conn, actor_type, domain, limit=None if post else (limit or MAX_RESULTS))

        def keep(snap):
            return all(check(snap) for check in post)

        return self._answer(conn, actor_type, ids, _field_keys(body, actor_type), limit, keep if post else None)

    def _restriction(self, conn: _Connection, actor_type: str, restriction) -> tuple[list, object]:
        if not isinstance(restriction, dict):
            raise ProtocolError("Each restriction must be an object.", error_code="BAD_REQUEST")
        key, operator = restriction.get("FieldKey"), str(restriction.get("Operator") or "").strip()
        values = restriction.get("Values")
        if values is None:
            values = []
        if not isinstance(values, list):
            values = [values]
        values = ["" if v is None else v for v in values]
        op = operator.lower() if operator.lower() in TEXT_OPERATORS else operator
        if key == "ParentErpKey":
            if actor_type != PERSON:
                raise ProtocolError("ParentErpKey restricts persons only.", error_code="UNSUPPORTED_SEARCH")
            negate = op in ("notoneof", "!=", "isnot")
            return self._parent_domain(conn, _int_keys(values), negate), None
        if key == "ParentActorType":
            if actor_type != PERSON:
                raise ProtocolError("ParentActorType restricts persons only.", error_code="UNSUPPORTED_SEARCH")
            refs = self._refs(conn)
            cats = [refs.category_ids[v] for v in values if v in refs.category_ids]
            type_id = refs.relation_types.get(EMPLOYEE_OF)
            where = "not where" if op in ("notoneof", "!=", "isnot") else "where"
            return [["relations", where, [["type", "=", type_id], ["to.categories", "in", cats]]]], None
        spec = SEARCH[actor_type].get(key)
        if spec is None:
            raise ProtocolError(f"{actor_type} cannot be searched by {key!r}.",
                                f"searchable: {', '.join(SEARCH[actor_type])}", "UNSUPPORTED_SEARCH")
        field_type = FIELD_INDEX[actor_type][key]["FieldType"]
        if spec[0] == "name_part":
            if op not in TEXT_OPERATORS or not values:
                raise ProtocolError(f"Operator {operator!r} needs a value and is not valid for {key}.",
                                    error_code="UNSUPPORTED_SEARCH")
            part = 0 if spec[1] == "FIRSTNAME" else 1
            text = str(values[0])
            if op == "between":
                low, high = (str(values[0]).casefold(), str(values[1] if len(values) > 1 else values[0]).casefold())

                def check(snap, part=part, low=low, high=high):
                    return low <= (split_person_name(snap.get("name"))[part] or "").casefold() <= high

                return [], check
            leaves = []
            if op in ("=", "begins", "contains", "ends") and text:
                leaves = [["OR", *[["name", "ilike", p] for p in _like_patterns("contains", text)]]]

            def check(snap, part=part, op=op, text=text):
                return _text_match(op, split_person_name(snap.get("name"))[part], text)

            return leaves, check
        if spec[0] == "status":
            if op not in ("oneof", "notoneof", "=", "!=", "isnot"):
                raise ProtocolError(f"Operator {operator!r} is not valid for {key}.", error_code="UNSUPPORTED_SEARCH")
            refs = self._refs(conn)
            ids = [s["id"] for s in refs.statuses if self._state_key(conn, s["id"]) in set(map(str, values))]
            return [["status", "not in" if op in ("notoneof", "!=", "isnot") else "in", ids]], None
        groups, negate = self._conditions(key, field_type, op, operator, values)
        if spec[0] == "field":
            path = spec[1]
            positive = self._domain(path, groups)
            if not negate:
                return positive, None
            # NOT(match): Tryton's negative operators also leave out empty values, so add them back
            negative = [[path, self._NEGATED[o], v] for group in groups for o, v in group]
            return [["OR", [path, "=", None], negative]], None
        _, o2m, extra, path = spec
        return [[o2m, "not where" if negate else "where", extra + self._domain(path, groups)]], None

    _NEGATED = {"ilike": "not ilike", "in": "not in"}

    @staticmethod
    def _domain(path: str, groups: list[list[tuple]]) -> list:
        """AND of groups, each an OR of (operator, value) on ``path`` → Tryton domain."""
        out = []
        for group in groups:
            leaves = [[path, o, v] for o, v in group]
            out.append(leaves[0] if len(leaves) == 1 else ["OR", *leaves])
        return out

    @staticmethod
    def _conditions(key: str, field_type: str, op: str, operator: str, values: list) -> tuple[list, bool]:
        """Operator + values → (AND-list of OR-lists of (tryton operator, value), negate). Negative protocol
        operators come back as their positive form with negate=True."""

        def need(count):
            if len(values) < count:
                raise ProtocolError(f"Operator {operator!r} on {key} needs {count} value(s).",
                                    error_code="UNSUPPORTED_SEARCH")

        if field_type == "List" and op in ("oneof", "=", "notoneof", "!=", "isnot"):
            keys = [str(v).upper() if key == "COUNTRY" else str(v) for v in values]
            return [[("in", keys)]], op in ("notoneof", "!=", "isnot")
        if field_type != "List" and op in TEXT_OPERATORS:
            need(1)
            if op == "between":
                need(2)
                return [[(">=", str(values[0]))], [("<=", str(values[1]))]], False
            patterns = _like_patterns(NEGATIVE.get(op, op), str(values[0]))
            return [[("ilike", p) for p in patterns]], op in NEGATIVE
        raise ProtocolError(f"Operator {operator!r} is not valid for {key} ({field_type}).",
                            error_code="UNSUPPORTED_SEARCH")

    # ------------------------------------------------------------------------------- change feed
    @_protocol
    def GetActorsByTimestamp(self, body: dict) -> dict:  # noqa: N802
        conn = self._connection(body)
        actor_type = _actor_type(body)
        since = parse_timestamp(body.get("UpdatedOnOrAfter"), "UpdatedOnOrAfter")
        limit = _limit(body)
        after: tuple[dt.datetime, int] | None = None
        cursor = body.get("Cursor")
        if cursor:
            try:
                stamp, _, last_id = str(cursor).rpartition("|")
                after = (parse_timestamp(stamp), int(last_id))
            except (ValueError, ProtocolError):
                raise ProtocolError("The Cursor is not one this connector gave out.", error_code="BAD_CURSOR") from None
            since = max(since, after[0]) if since else after[0]
        ids = self._changed_ids(conn, actor_type, since)
        snaps = self._read(conn, actor_type, ids)
        ordered = sorted((s for s in snaps.values() if s["_lm"] is not None and (since is None or s["_lm"] >= since)),
                         key=lambda s: (s["_lm"], s["id"]))
        if after is not None:
            ordered = [s for s in ordered if (s["_lm"], s["id"]) > after]
        next_cursor = None
        if limit is not None and len(ordered) > limit:
            ordered = ordered[:limit]
            last = ordered[-1]
            next_cursor = f"{iso_utc(last['_lm'])}|{last['id']}"
        payload = {"Actors": self._actors(conn, actor_type, ordered, _field_keys(body, actor_type))}
        if limit is not None:
            payload["NextCursor"] = next_cursor
        return ok_response(**payload)

    def _changed_ids(self, conn: _Connection, actor_type: str, since: dt.datetime | None) -> list[int]:
        if since is None:
            return self._search_ids(conn, actor_type, [], order=[["id", "ASC"]])
        if actor_type == PROJECT:
            return self._search_ids(conn, actor_type, [["last_modified_at", ">=", since]], order=[["id", "ASC"]])
        client = conn.client
        changed: set[int] = set()
        everything = {"active_test": False}
        for model, party_field in (("party.address", "party"), ("party.contact_mechanism", "party"),
                                   ("party.identifier", "party")):
            for row in client.search_read(model, [["last_modified_at", ">=", since]], [party_field],
                                          context=everything):
                if row.get(party_field):
                    changed.add(row[party_field])
        domain = [["last_modified_at", ">=", since]]
        if changed:
            domain = [["OR", domain[0], ["id", "in", sorted(changed)]]]
        return self._search_ids(conn, actor_type, domain, order=[["id", "ASC"]])

    # ------------------------------------------------------------------------------------- writing
    def _clean(self, conn: _Connection, actor_type: str, values, *, creating: bool) -> dict:
        """Validate FieldValues (JSON natives) → {FieldKey: python value or None}. Unknown and ReadOnly keys are
        ignored. Raises INVALID_VALUE listing every problem."""
        if values is None:
            values = {}
        if not isinstance(values, dict):
            raise ProtocolError("FieldValues must be an object.", error_code="BAD_REQUEST")
        fields = FIELD_INDEX[actor_type]
        out: dict = {}
        errors: list[str] = []
        for key, raw in values.items():
            meta = fields.get(key)
            if meta is None or meta["Access"] == "ReadOnly":
                continue
            label = f"{meta['DisplayName']} ({key})"
            if isinstance(raw, (bool, list, dict)):
                errors.append(f"{label}: {raw!r} is not a {meta['FieldType'].lower()} value.")
                continue
            if isinstance(raw, (int, float)):
                raw = str(raw)
            if raw is None or not str(raw).strip():
                out[key] = None
                continue
            text = str(raw).strip()
            if meta["FieldType"] == "Date":
                try:
                    out[key] = parse_date(text)
                except ValueError as exc:
                    errors.append(f"{label}: {exc}.")
                continue
            if meta["FieldType"] == "List":
                items = self._list(conn, meta["ListName"])
                if key == "COUNTRY":
                    text = text.upper()
                if text not in items:
                    errors.append(f"{label}: '{text}' is not in Tryton's list {meta['ListName']}.")
                    continue
            elif key not in MULTILINE_KEYS and CONTROL_CHARS.search(text):
                errors.append(f"{label}: line breaks and control characters are not allowed.")
                continue
            if meta["MaxLength"] and len(text) > meta["MaxLength"]:
                errors.append(f"{label}: longer than {meta['MaxLength']} characters.")
                continue
            if key == "EMAIL" and ("@" not in text or any(c.isspace() for c in text)):
                errors.append(f"{label}: '{text}' is not an e-mail address.")
                continue
            out[key] = text
        for meta in FIELDS[actor_type]:
            key = meta["FieldKey"]
            if meta["Access"] == "Mandatory" and ((creating and out.get(key) is None)
                                                   or (key in out and out[key] is None)):
                errors.append(f"{meta['DisplayName']} ({key}) must not be blank.")
        if actor_type == PERSON and creating and not (out.get("FIRSTNAME") or out.get("LASTNAME")):
            errors.append("A person needs a first name or a last name.")
        if errors:
            raise ProtocolError("Tryton cannot take these values: " + " ".join(errors), error_code="INVALID_VALUE")
        return out

    def _subdivision(self, conn: _Connection, text: str, country_id: int | None) -> int:
        if not country_id:
            raise ProtocolError(f"Subdivision (POSTALSTATE) '{text}' needs a country (COUNTRY).",
                                error_code="INVALID_VALUE")
        code = self._refs(conn).countries.get(country_id, ("",))[0]
        candidates = [text.upper(), f"{code}-{text}".upper()]
        names = [["name", "ilike", _escape_like(v)] for v in _case_variants(text)]
        domain = [["country", "=", country_id], ["OR", ["code", "in", candidates], *names]]
        found = conn.client.search_read("country.subdivision", domain, ["code", "name"], limit=2)
        if len(found) != 1:
            raise ProtocolError(f"Tryton knows no single subdivision '{text}' in country {code}.",
                                f"found {found}", "INVALID_VALUE")
        self._refs(conn).subdivisions[found[0]["id"]] = (found[0]["code"], found[0]["name"])
        return found[0]["id"]

    def _party_changes(self, conn: _Connection, actor_type: str, clean: dict, snap: dict | None,
                       parent_id: int | None) -> tuple[dict, dict]:
        """FieldValues → the values of one party ``write``/``create`` (with nested one2many actions), and the
        ``_timestamp`` entries of every record that will be changed."""
        refs = self._refs(conn)
        values: dict = {}
        stamps: dict = {}
        if snap is not None:
            stamps[f"party.party,{snap['id']}"] = snap["_timestamp"]

        def child_stamp(model, row):
            stamps[f"{model},{row['id']}"] = row["_timestamp"]

        if actor_type == PERSON:
            if "FIRSTNAME" in clean or "LASTNAME" in clean:
                first, last = split_person_name(snap.get("name")) if snap else (None, None)
                name = join_person_name(clean.get("FIRSTNAME", first), clean.get("LASTNAME", last))
                if not name:
                    raise ProtocolError("A person needs a first name or a last name.", error_code="INVALID_VALUE")
                values["name"] = name
        elif "NAME" in clean:
            values["name"] = clean["NAME"]
        if snap is not None and values.get("name") == snap.get("name"):
            values.pop("name", None)
        if snap is None and actor_type in (CUSTOMER, SUPPLIER):
            values["categories"] = [["add", [self._ensure_category(conn, actor_type)]]]
        if "LANGUAGE" in clean:
            lang = refs.lang_ids.get(clean["LANGUAGE"]) if clean["LANGUAGE"] else None
            if snap is None or lang != snap.get("lang"):
                values["lang"] = lang
        if "VATNO" in clean:
            ident = self._vat_identifier(snap) if snap else None
            if clean["VATNO"] is None and ident:
                values["identifiers"] = [["delete", [ident["id"]]]]
                child_stamp("party.identifier", ident)
            elif clean["VATNO"] and ident and ident["code"] != clean["VATNO"]:
                values["identifiers"] = [["write", [ident["id"]], {"code": clean["VATNO"]}]]
                child_stamp("party.identifier", ident)
            elif clean["VATNO"] and not ident:
                values["identifiers"] = [["create", [{"type": None, "code": clean["VATNO"]}]]]
        actions: list = []
        creates: list = []
        for key, kind in MECHANISMS[actor_type].items():
            if key not in clean:
                continue
            current = next((m for m in (snap or {}).get("_mechanisms", []) if m["type"] == kind), None)
            wanted = clean[key]
            if wanted is None and current:
                actions.append(["delete", [current["id"]]])
                child_stamp("party.contact_mechanism", current)
            elif wanted and current and current["value"] != wanted:
                actions.append(["write", [current["id"]], {"value": wanted}])
                child_stamp("party.contact_mechanism", current)
            elif wanted and not current:
                creates.append({"type": kind, "value": wanted})
        if creates:
            actions.append(["create", creates])
        if actions:
            values["contact_mechanisms"] = actions
        if actor_type != PERSON and any(k in clean for k in ADDRESS_KEYS):
            address = snap["_addresses"][0] if snap and snap["_addresses"] else None
            current = address or {}
            first, _, rest = (current.get("street") or "").partition("\n")
            new: dict = {}
            if "POSTALAD1" in clean or "POSTALAD2" in clean:
                line1 = clean.get("POSTALAD1", first or None) or ""
                line2 = clean.get("POSTALAD2", rest or None) or ""
                new["street"] = (line1 + ("\n" + line2 if line2 else "")) or None
            if "POSTALZIP" in clean:
                new["postal_code"] = clean["POSTALZIP"]
            if "POSTALCITY" in clean:
                new["city"] = clean["POSTALCITY"]
            country_id = current.get("country")
            if "COUNTRY" in clean:
                country_id = refs.country_ids.get(clean["COUNTRY"]) if clean["COUNTRY"] else None
                new["country"] = country_id
            if "POSTALSTATE" in clean:
                new["subdivision"] = (self._subdivision(conn, clean["POSTALSTATE"], country_id)
                                      if clean["POSTALSTATE"] else None)
            elif "COUNTRY" in clean and current.get("subdivision") and country_id != current.get("country"):
                new["subdivision"] = None  # a subdivision belongs to its country
            new = {k: v for k, v in new.items() if address is None or address.get(k) != v}
            if address and new:
                values["addresses"] = [["write", [address["id"]], new]]
                child_stamp("party.address", address)
            elif address is None and any(v is not None for v in new.values()):
                values["addresses"] = [["create", [new]]]
        if actor_type == PERSON and parent_id is not None:
            employee_of = self._ensure_relation_type(conn)
            relation = next((r for r in (snap or {}).get("_relations", []) if r["type"] == employee_of), None)
            if relation is None:
                values["relations"] = [["create", [{"to": parent_id, "type": employee_of}]]]
            elif relation["to"] != parent_id:
                values["relations"] = [["write", [relation["id"]], {"to": parent_id}]]
        return values, stamps

    def _ensure_category(self, conn: _Connection, name: str) -> int:
        refs = self._refs(conn)
        if name not in refs.category_ids:
            log.info("tryton connector: creating party category %s", name)
            conn.client.model("party.category", "create", [{"name": name}])
            refs = self._refs(conn, refresh=True)
        return refs.category_ids[name]

    def _ensure_relation_type(self, conn: _Connection) -> int:
        refs = self._refs(conn)
        if EMPLOYEE_OF not in refs.relation_types:
            log.info("tryton connector: creating relation types %s/%s", EMPLOYEE_OF, EMPLOYER_OF)
            client = conn.client
            employee_of = client.model("party.relation.type", "create", [{"name": EMPLOYEE_OF}])[0]
            employer_of = refs.relation_types.get(EMPLOYER_OF) or client.model(
                "party.relation.type", "create", [{"name": EMPLOYER_OF, "reverse": employee_of}])[0]
            client.model("party.relation.type", "write", [employee_of], {"reverse": employer_of})
            refs = self._refs(conn, refresh=True)
        return refs.relation_types[EMPLOYEE_OF]

    def _work_changes(self, conn: _Connection, clean: dict, snap: dict | None) -> tuple[dict, dict]:
        values: dict = {}
        stamps = {f"project.work,{snap['id']}": snap["_timestamp"]} if snap else {}
        if "NAME" in clean:
            values["name"] = clean["NAME"]
        if "TEXT" in clean:
            values["comment"] = clean["TEXT"]
        if "STARTDATE" in clean or "ENDDATE" in clean:
            start = clean.get("STARTDATE", (snap or {}).get("timesheet_start_date"))
            end = clean.get("ENDDATE", (snap or {}).get("timesheet_end_date"))
            if start and end and end < start:
                raise ProtocolError("The end date is before the start date.", error_code="INVALID_VALUE")
            values["timesheet_start_date"], values["timesheet_end_date"] = start, end
            if start or end:
                values["timesheet_available"] = True
        if "STATE" in clean and clean["STATE"]:
            wanted = clean["STATE"]
            if snap is None or self._state_key(conn, snap.get("status")) != wanted:
                status = next((s for s in self._refs(conn).statuses if "project" in (s.get("types") or ["project"])
                               and self._state_key(conn, s["id"]) == wanted), None)
                if status is None:
                    raise ProtocolError(f"Tryton has no project status for '{wanted}'.", error_code="INVALID_VALUE")
                values["status"] = status["id"]
                if status.get("progress") is not None:  # Tryton requires progress to reach a "Done" status
                    values["progress"] = status["progress"]
        if snap is None:
            values["type"] = "project"
            company = self._company(conn)
            if not company:
                raise ProtocolError("The Tryton user has no company, so projects cannot be created. Set the "
                                    "company in Tryton or in the connection's settings.",
                                    error_code="ERP_CONFIGURATION")
            values["company"] = company
        return values, stamps

    def _check_parent(self, conn: _Connection, actor: dict, *, required: bool) -> int | None:
        key = actor.get("ParentErpKey")
        if key in (None, ""):
            if required:
                raise ProtocolError("A person needs its company: ParentErpKey (and ParentActorType) is missing.",
                                    error_code="INVALID_VALUE")
            return None
        ids = _int_keys([key])
        found = conn.client.search("party.party", [["id", "in", ids]], limit=1) if ids else []
        if not found:
            raise ProtocolError(f"The parent {actor.get('ParentActorType') or 'company'} {key} does not exist in "
                                "Tryton (or is archived).", error_code="NOT_FOUND")
        return found[0]

    @_protocol
    def CreateActor(self, body: dict) -> dict:  # noqa: N802
        conn = self._connection(body)
        actor = body.get("Actor")
        if not isinstance(actor, dict):
            raise ProtocolError("Actor must be an object.", error_code="BAD_REQUEST")
        actor_type = _actor_type(actor)
        key = body.get("IdempotencyKey")
        key = str(key).strip() if key not in (None, "") else None
        if key is None:
            return ok_response(Actor=self._create(conn, actor_type, actor))
        with self._key_lock(conn.guid, key):
            seen = self.store.recall(conn.guid, key)
            if seen is not None:
                seen_type, erp_key = seen
                found = self._get(conn, seen_type, _int_keys([erp_key]), list(FIELD_INDEX[seen_type]))
                if not found:
                    raise ProtocolError(f"The {seen_type} created for this request ({erp_key}) no longer exists in "
                                        "Tryton.", f"IdempotencyKey {key}", "NOT_FOUND")
                return ok_response(Actor=found[0])
            created = self._create(conn, actor_type, actor)
            self.store.remember(conn.guid, key, actor_type, created["ErpKey"])
            return ok_response(Actor=created)

    def _create(self, conn: _Connection, actor_type: str, actor: dict) -> dict:
        clean = self._clean(conn, actor_type, actor.get("FieldValues"), creating=True)
        if actor_type == PROJECT:
            values, _ = self._work_changes(conn, clean, None)
            model = "project.work"
        else:
            parent = self._check_parent(conn, actor, required=actor_type == PERSON)
            values, _ = self._party_changes(conn, actor_type, clean, None, parent)
            model = "party.party"
        with conn.write_lock:
            for attempt in range(3):
                try:
                    new_id = conn.client.model(model, "create", [values])[0]
                    break
                except TrytonUserError as exc:  # SQLite + a concurrent writer using the party code sequence
                    if "code" not in exc.message.lower() or "unique" not in exc.message.lower() or attempt == 2:
                        raise
                    time.sleep(0.2 * (attempt + 1))
        found = self._get(conn, actor_type, [new_id], list(FIELD_INDEX[actor_type]))
        if not found:
            raise ProtocolError("Tryton created the record but it cannot be read back.", f"{model} {new_id}",
                                "ERP_ERROR")
        return found[0]

    @_protocol
    def SaveActors(self, body: dict) -> dict:  # noqa: N802
        conn = self._connection(body)
        actors = body.get("Actors")
        if not isinstance(actors, list):
            raise ProtocolError("Actors must be a list.", error_code="BAD_REQUEST")
        if not actors:
            return ok_response(Actors=[])
        # 1. validate everything before touching Tryton
        plans = []
        for actor in actors:
            if not isinstance(actor, dict):
                raise ProtocolError("Each actor must be an object.", error_code="BAD_REQUEST")
            actor_type = _actor_type(actor)
            ids = _int_keys([actor.get("ErpKey")])
            if not ids:
                raise ProtocolError(f"The {actor_type} has no valid ErpKey ({actor.get('ErpKey')!r}).",
                                    error_code="NOT_FOUND")
            seen = parse_timestamp(actor.get("LastModified"), "LastModified")
            plans.append((actor_type, ids[0], seen, actor, self._clean(conn, actor_type, actor.get("FieldValues"),
                                                                       creating=False)))
        # 2. read the current state; 3. detect stale writes
        current: dict[tuple[str, int], dict] = {}
        for actor_type in {p[0] for p in plans}:
            wanted = [p[1] for p in plans if p[0] == actor_type]
            existing: list[int] = []
            for chunk in _chunks(wanted):
                existing += self._search_ids(conn, actor_type, [["id", "in", chunk]])
            for snap_id, snap in self._read(conn, actor_type, existing).items():
                current[(actor_type, snap_id)] = snap
        missing = [f"{t} {i}" for t, i, *_ in plans if (t, i) not in current]
        if missing:
            raise ProtocolError(f"Not found in Tryton (deleted or archived): {', '.join(missing)}.",
                                error_code="NOT_FOUND")
        stale = []
        for actor_type, erp_id, seen, actor, _clean in plans:
            now = current[(actor_type, erp_id)]["_lm"]
            if seen is not None and now is not None and now > seen:
                name = actor.get("FieldValues", {}).get("NAME") if isinstance(actor.get("FieldValues"), dict) else None
                stale.append(f"{actor_type} {erp_id}{' (' + name + ')' if name else ''} was changed in Tryton at "
                             f"{iso_utc(now)}, after {iso_utc(seen)}")
        if stale:
            raise ProtocolError("Not saved: the record changed in Tryton since it was last read, so saving would "
                                "overwrite those changes. " + "; ".join(stale) + ".",
                                "stale LastModified", "CONFLICT")
        # 4. build the writes (may still find invalid values: unknown subdivision, missing parent …)
        party_args: list = []
        work_args: list = []
        stamps: dict = {}
        for actor_type, erp_id, _seen, actor, clean in plans:
            snap = current[(actor_type, erp_id)]
            if actor_type == PROJECT:
                values, record_stamps = self._work_changes(conn, clean, snap)
                target = work_args
            else:
                parent = self._check_parent(conn, actor, required=False) if actor_type == PERSON else None
                values, record_stamps = self._party_changes(conn, actor_type, clean, snap, parent)
                target = party_args
            values = {k: v for k, v in values.items() if actor_type != PROJECT or snap.get(k) != v}
            if values:
                target += [[erp_id], values]
                stamps.update(record_stamps)
        # 5. write: one transaction per model, guarded by Tryton's optimistic lock
        with conn.write_lock:
            if party_args:
                conn.client.model("party.party", "write", *party_args, context={"_timestamp": stamps})
            if work_args:
                conn.client.model("project.work", "write", *work_args, context={"_timestamp": stamps})
        # 6. answer with the actors as now stored
        saved = []
        for actor_type, erp_id, *_ in plans:
            saved += self._get(conn, actor_type, [erp_id], list(FIELD_INDEX[actor_type]))
        return ok_response(Actors=saved)


# ------------------------------------------------------------------------------------------ factory
def state_path(config: Mapping) -> str:
    explicit = config.get("TRYTON_CONNECTOR_STATE")
    if explicit:
        return str(explicit)
    instance = config.get("INSTANCE_PATH")
    if not instance:
        try:
            from flask import current_app

            instance = current_app.instance_path
        except RuntimeError:  # no app context
            instance = "instance"
    return os.path.join(instance, "tryton_connector.sqlite")


@register("tryton")
def make_connector(config: Mapping) -> TrytonConnector:
    """The built-in ``tryton`` connector; configs are kept in TRYTON_CONNECTOR_STATE (default
    instance/tryton_connector.sqlite), passwords encrypted with ENCRYPTION_KEYS when present."""
    return TrytonConnector(state_path(config), secret_keys=config.get("ENCRYPTION_KEYS") or None,
                           allowed_networks=config.get("CONNECTOR_ALLOWED_NETWORKS") or ())

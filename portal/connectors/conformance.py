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
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

import click
from flask.cli import AppGroup

from portal.connectors.client import ConnectorClient, ConnectorError, Reply
from portal.connectors.protocol import (
    ACCESS_VALUES,
    ACTOR_TYPES,
    FIELD_TYPES,
    SPECIAL_SEARCH_KEYS,
    UNKNOWN_CONNECTION_ID,
    ZERO_GUID,
    State,
)

PASS, FAIL, WARN, SKIP = "PASS", "FAIL", "WARN", "SKIP"
STATUSES = (PASS, FAIL, WARN, SKIP)

# Write order: a person needs a customer or supplier as its parent, so persons come last.
WRITE_ORDER = ("Customer", "Supplier", "Partner", "Project", "Person")
PARENT_TYPES = ("Customer", "Supplier", "Partner")
TEXT_TYPES = ("Text", "Password", "Label")
ENVELOPE = ("IsOk", "State", "UserExplanation", "TechExplanation", "ErrorCode")
STATE_VALUES = tuple(s.value for s in State)
MAX_LISTED = 5  # problems quoted in one reason
REASON_LIMIT = 600
NOT_FOUND = "NOT_FOUND"  # error code: the key is unknown (the actor was deleted)
FEED_WINDOW = 6  # newest actors the "paging under writes" check pages through (more when LastModified values tie)
WRITE_PAGE_LIMIT = 2  # its page size

_ISO_UTC = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2})?)(?:[.,](\d{1,9}))?(Z|[+-]00:?00)$", re.IGNORECASE)
_ISO_ANY = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}")
_DECIMAL = re.compile(r"^\d+$")


@dataclass
class CheckResult:
    """One line of the report. ``passed`` is False only for FAIL (WARN and SKIP do not fail the run)."""

    name: str
    passed: bool
    reason: str = ""
    seconds: float = 0.0
    status: str = ""

    def __post_init__(self) -> None:
        if not self.status:
            self.status = PASS if self.passed else FAIL
        if self.status not in STATUSES:
            raise ValueError(f"unknown status {self.status!r}")
        self.passed = self.status != FAIL


class Failed(Exception):
    """Raised inside a check: the connector broke the contract."""


class Skipped(Exception):
    """Raised inside a check: it cannot run."""


# --------------------------------------------------------------------------------------------------------------
# Small helpers

CLIENT_LOG = logging.getLogger("portal.connectors.client")


@contextmanager
def quiet_client_log(level: int = logging.ERROR) -> Iterator[None]:
    """Keep the client's per-call warnings out of the log while failures are expected (or reported anyway)."""
    previous = CLIENT_LOG.level
    if CLIENT_LOG.getEffectiveLevel() < level:
        CLIENT_LOG.setLevel(level)
    try:
        yield
    finally:
        CLIENT_LOG.setLevel(previous)


def _short(value: Any, limit: int = 80) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False, default=repr)
    except (TypeError, ValueError, RecursionError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _listing(items: Sequence[str], limit: int = MAX_LISTED) -> str:
    items = list(items)
    shown = "; ".join(items[:limit])
    return shown + (f"; and {len(items) - limit} more" if len(items) > limit else "")


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _error_text(exc: ConnectorError) -> str:
    text = exc.user_message
    if exc.error_code:
        text += f" [{exc.error_code}]"
    if exc.tech_message:
        text += f" ({exc.tech_message})"
    if exc.transient:  # 408, 425, 429, 5xx, timeouts, connection errors
        text += " — a transient error: the portal retries it with backoff; run the kit again"
    return text


def parse_last_modified(value: Any) -> tuple[str, Any]:
    """``(kind, sort key)`` of a LastModified value: kind ``"iso"`` (ISO-8601 UTC) or ``"int"`` (decimal integer).

    Raises ValueError with a readable reason for anything else.
    """
    if not isinstance(value, str):
        raise ValueError(f"is {_json_type(value)} ({_short(value)}), not a string")
    text = value.strip()
    if text != value or not text:
        raise ValueError(f"{_short(value)} is blank or has surrounding spaces")
    if _DECIMAL.match(text):
        return "int", int(text)
    match = _ISO_UTC.match(text)
    if match:
        base, fraction = match.group(1), match.group(2) or ""
        try:
            moment = datetime.fromisoformat(base)
        except ValueError:
            raise ValueError(f"{_short(value)} is not a valid date-time") from None
        return "iso", (moment, int((fraction + "000000000")[:9]))
    if _ISO_ANY.match(text):
        raise ValueError(f"{_short(value)} is not marked as UTC (it must end in Z or +00:00)")
    raise ValueError(f"{_short(value)} is neither an ISO-8601 UTC timestamp nor a decimal integer")


def value_problem(meta: Mapping, value: Any) -> str | None:
    """Why ``value`` is not a valid JSON-native value of the field ``meta`` (None when it is)."""
    if value is None:
        return None
    ftype = meta.get("FieldType")
    if ftype in TEXT_TYPES or ftype == "List":
        if not isinstance(value, str):
            return f"is {_json_type(value)} ({_short(value)}), a {ftype} value must be a string"
        return None
    if ftype == "Integer":
        if isinstance(value, bool) or not isinstance(value, int):
            return f"is {_json_type(value)} ({_short(value)}), an Integer value must be a whole JSON number"
        return None
    if ftype == "Double":
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            return f"is {_json_type(value)} ({_short(value)}), a Double value must be a JSON number"
        return None
    if ftype == "Checkbox":
        if not isinstance(value, bool):
            return f"is {_json_type(value)} ({_short(value)}), a Checkbox value must be true or false"
        return None
    if ftype == "Date":
        if not isinstance(value, str):
            return f"is {_json_type(value)} ({_short(value)}), a Date value must be an ISO-8601 string"
        try:
            if len(value) == 10:
                date.fromisoformat(value)
            else:
                datetime.fromisoformat(value)
        except ValueError:
            return f"is {_short(value)}, not an ISO-8601 date (2026-11-25) or date-time (2026-11-25T10:00:00Z)"
        return None
    return None  # unknown field types are reported by the metadata checks


def metadata_problems(fields: Any, what: str) -> list[str]:
    """Problems of a FieldMetaDataObjects array (FieldMetadataInfo shape, valid FieldType/Access values)."""
    if not isinstance(fields, list):
        return [f"{what} is {_json_type(fields)}, not an array"]
    problems: list[str] = []
    seen: set[str] = set()
    for number, meta in enumerate(fields, start=1):
        if not isinstance(meta, dict):
            problems.append(f"entry #{number} is {_json_type(meta)}, not an object")
            continue
        key = meta.get("FieldKey")
        label = f"field {key!r}" if isinstance(key, str) and key else f"entry #{number}"
        if not isinstance(key, str) or not key:
            problems.append(f"{label}: FieldKey is missing or not a non-empty string")
        elif key in seen:
            problems.append(f"{label}: FieldKey appears twice")
        else:
            seen.add(key)
        for member in ("DisplayName", "DisplayDescription", "ListName"):
            if member not in meta:
                problems.append(f"{label}: {member} is missing")
            elif meta[member] is not None and not isinstance(meta[member], str):
                problems.append(f"{label}: {member} is {_json_type(meta[member])}, not a string")
        if "DefaultValue" not in meta:
            problems.append(f"{label}: DefaultValue is missing")
        elif isinstance(meta["DefaultValue"], list | dict):
            problems.append(f"{label}: DefaultValue is {_json_type(meta['DefaultValue'])}, not a simple value")
        if meta.get("FieldType") not in FIELD_TYPES:
            problems.append(f"{label}: FieldType {_short(meta.get('FieldType'))} is not one of "
                            f"{', '.join(FIELD_TYPES)}")
        if meta.get("Access") not in ACCESS_VALUES:
            problems.append(f"{label}: Access {_short(meta.get('Access'))} is not one of {', '.join(ACCESS_VALUES)}")
        for member in ("MaxLength", "Rank"):
            number_value = meta.get(member)
            if member not in meta:
                problems.append(f"{label}: {member} is missing")
            elif isinstance(number_value, bool) or not isinstance(number_value, int):
                problems.append(f"{label}: {member} is {_json_type(number_value)}, not a whole number")
            elif member == "MaxLength" and number_value < 0:
                problems.append(f"{label}: MaxLength is negative (0 means unlimited)")
        if meta.get("FieldType") == "List" and not (isinstance(meta.get("ListName"), str) and meta["ListName"]):
            problems.append(f"{label}: a List field needs a ListName")
    return problems


def convert_config_value(meta: Mapping | None, value: Any) -> Any:
    """A config value given as text (``--config Key=Value``) → the JSON-native value of its field type, as the
    portal's connection form sends it. Non-strings and unknown keys are returned unchanged."""
    if meta is None or not isinstance(value, str):
        return value
    ftype = meta.get("FieldType")
    text = value.strip()
    if ftype == "Checkbox":
        return text.lower() in {"1", "true", "yes", "on", "y", "[i:1]"}
    if ftype in ("Integer", "Double") and text == "":
        return None
    if ftype == "Integer":
        try:
            return int(text)
        except ValueError:
            return value
    if ftype == "Double":
        try:
            return float(text.replace(",", "."))
        except ValueError:
            return value
    if ftype == "Password":
        return value
    return text


# --------------------------------------------------------------------------------------------------------------
# The kit


@dataclass
class _TypeState:
    name: str
    fields: list[dict] | None = None
    searchable: list[str] | None = None
    actors: list[dict] | None = None  # everything GetActorsByTimestamp("") answered
    kind: str | None = None  # LastModified kind of this type's actors
    created: dict | None = None
    create_request: dict | None = None

    @property
    def index(self) -> dict[str, dict]:
        return {f["FieldKey"]: f for f in self.fields or [] if isinstance(f, dict) and isinstance(f.get("FieldKey"),
                                                                                                     str)}

    @property
    def field_keys(self) -> list[str]:
        return list(self.index)


@dataclass
class _Run:
    """Collects the notes and warnings of the check that is running."""

    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


class ConformanceKit:
    """Runs the checks in order; see :func:`run_checks`."""

    def __init__(self, client: ConnectorClient, config: Mapping | None = None, *,
                 actor_types: Iterable[str] | None = None, write: bool = True,
                 clock: Callable[[], float] = time.monotonic):
        self.client = client
        self.given_config = dict(config or {})
        self.config = dict(self.given_config)
        self.wanted_types = list(dict.fromkeys(actor_types)) if actor_types else None
        self.write = write
        self.clock = clock
        self.results: list[CheckResult] = []
        self.guid = str(uuid.uuid4())
        self.saved = False
        self.working = False  # TestConnection passed: the other checks can use the connection
        self.config_fields: list[dict] | None = None
        self.supported: list[str] | None = None
        self.types: dict[str, _TypeState] = {}
        self.lists: dict[str, dict[str, str]] = {}  # ListName → items (GetList with the connection GUID)
        self.list_checked_by: dict[str, str] = {}  # ListName → the actor type whose check verified it
        self.envelope: dict[str, list[str]] = {}  # method → problems with the response members
        self.answers = 0  # successful answers seen (their members were checked)
        self.kinds: dict[str, str] = {}  # actor type → LastModified kind
        self.max_seen: dict[str, tuple[Any, str]] = {}  # kind → (highest sort key seen, "Type key")
        self._run: _Run | None = None
        self._pending_parent_check = False

    # -- running checks -------------------------------------------------------------------------------------

    def check(self, name: str, func: Callable[[], str | None]) -> CheckResult:
        run = self._run = _Run()
        before = len(self.client.warnings)
        started = self.clock()
        status, reason = PASS, ""
        try:
            reason = func() or ""
        except Failed as exc:
            status, reason = FAIL, str(exc)
        except Skipped as exc:
            status, reason = SKIP, str(exc)
        except ConnectorError as exc:
            status, reason = FAIL, f"{exc.method or 'the call'} failed: {_error_text(exc)}"
        except Exception as exc:  # a malformed answer the checks did not foresee: still a readable FAIL
            status, reason = FAIL, f"unexpected answer ({type(exc).__name__}: {exc})"
        finally:
            self._run = None
        seconds = self.clock() - started
        for method, text in self.client.warnings[before:]:
            run.warnings.append(f"{method} answered State Warning: {text}")
        if status == PASS and run.warnings:
            status = WARN
        parts = [reason] if reason else []
        if status in (PASS, WARN, FAIL):
            parts += run.warnings if status != FAIL else []
            parts += run.notes
        text = "; ".join(p for p in parts if p)
        if len(text) > REASON_LIMIT:
            text = text[: REASON_LIMIT - 1] + "…"
        result = CheckResult(name, status != FAIL, text, round(seconds, 3), status)
        self.results.append(result)
        return result

    def note(self, text: str) -> None:
        if self._run is not None:
            self._run.notes.append(text)

    def warn(self, text: str) -> None:
        if self._run is not None:
            self._run.warnings.append(text)

    def call(self, method: str, body: dict | None = None) -> Reply:
        reply = self.client.call(method, body)
        self.answers += 1
        self._check_envelope(method, reply.data)
        return reply

    def _check_envelope(self, method: str, doc: dict) -> None:
        problems = []
        for member in ENVELOPE[1:]:
            if member not in doc:
                problems.append(f"{member} missing")
            elif not isinstance(doc[member], str):
                problems.append(f"{member} is {_json_type(doc[member])}")
        state = doc.get("State")
        if isinstance(state, str) and state not in STATE_VALUES:
            problems.append(f"State {state!r} is not one of {', '.join(STATE_VALUES)}")
        elif state == State.ERROR.value:
            problems.append("IsOk is true but State is Error")
        if problems:
            known = self.envelope.setdefault(method, [])
            known.extend(p for p in problems if p not in known)

    @staticmethod
    def member(reply: Reply, name: str, kind: type | tuple[type, ...], what: str) -> Any:
        if name not in reply.data:
            raise Failed(f"{reply.method} answered without the member {name}")
        value = reply.data[name]
        if not isinstance(value, kind):
            raise Failed(f"{reply.method}: {name} is {_json_type(value)}, not {what}")
        return value

    def actors_of(self, reply: Reply, name: str = "Actors") -> list[dict]:
        actors = self.member(reply, name, list, "an array of actors")
        bad = [i for i, a in enumerate(actors, start=1) if not isinstance(a, dict)]
        if bad:
            raise Failed(f"{reply.method}: entry #{bad[0]} of {name} is {_json_type(actors[bad[0] - 1])}, "
                         "not an ErpActor object")
        return actors

    def require_connection(self) -> None:
        if not self.saved:
            raise Skipped("needs a saved connection (SaveConnection failed)")
        if not self.working:
            raise Skipped("needs a working connection (TestConnection failed)")

    def state(self, actor_type: str) -> _TypeState:
        return self.types.setdefault(actor_type, _TypeState(actor_type))

    # -- the run --------------------------------------------------------------------------------------------

    def run(self) -> list[CheckResult]:
        self.check("GetConfigData", self.check_config_data)
        self.check("TestConfigData", self.check_test_config)
        self.check("SaveConnection", self.check_save_connection)
        try:
            self.check("TestConnection", self.check_test_connection)
            self.check("Unknown ConnectionGuid", self.check_unknown_guid)
            self.check("GetList (zero GUID)", self.check_config_lists)
            self.check("GetSupportedActorTypes", self.check_actor_types)
            types = self.selected_types()
            for actor_type in types:
                self.read_checks(actor_type)
            if self.write:
                for actor_type in sorted(types, key=WRITE_ORDER.index):
                    self.write_checks(actor_type)
        finally:
            self.check("DeleteConnection", self.check_delete_connection)
        self.check("Response members", self.check_envelopes)
        return self.results

    def selected_types(self) -> list[str]:
        if self.supported is None:
            return []
        if self.wanted_types is None:
            return [t for t in self.supported if t in ACTOR_TYPES]
        missing = [t for t in self.wanted_types if t not in self.supported]
        for actor_type in missing:
            self.results.append(CheckResult(
                f"{actor_type}: supported", False,
                f"{actor_type} was asked for, but GetSupportedActorTypes offers only "
                f"{', '.join(self.supported) or 'nothing'}"))
        return [t for t in self.wanted_types if t in self.supported]

    def read_checks(self, t: str) -> None:
        self.check(f"{t}: GetSupportedActorTypeFields", lambda: self.check_fields(t))
        self.check(f"{t}: GetSearchableFields", lambda: self.check_searchable(t))
        self.check(f"{t}: GetActorsByTimestamp (all)", lambda: self.check_all_actors(t))
        self.check(f"{t}: LastModified format", lambda: self.check_last_modified(t))
        self.check(f"{t}: FieldValues types", lambda: self.check_value_types(t))
        self.check(f"{t}: GetActorsByTimestamp inclusive", lambda: self.check_inclusive(t))
        self.check(f"{t}: GetActorsByTimestamp paging", lambda: self.check_paging(t))
        self.check(f"{t}: GetActors", lambda: self.check_get_actors(t))
        self.check(f"{t}: SearchActors (blank)", lambda: self.check_blank_search(t))
        if t == "Person":
            result = self.check(f"{t}: SearchActorByParent", lambda: self.check_by_parent(t))
            if result.status == SKIP and self.write and self._pending_parent_check:
                self.results.remove(result)  # tried again with the person the write checks create
            else:
                self._pending_parent_check = False
        self.check(f"{t}: SearchActorsAdvanced", lambda: self.check_advanced(t))
        self.check(f"{t}: GetList/GetListItems", lambda: self.check_lists(t))

    def write_checks(self, t: str) -> None:
        created = self.check(f"{t}: CreateActor", lambda: self.check_create(t))
        if created.status != SKIP:
            self.check(f"{t}: CreateActor idempotent", lambda: self.check_idempotent(t))
            self.check(f"{t}: SaveActors", lambda: self.check_save(t))
        self.check(f"{t}: GetActorsByTimestamp paging under writes", lambda: self.check_paging_under_writes(t))
        if t == "Person" and self._pending_parent_check:
            self._pending_parent_check = False
            self.check(f"{t}: SearchActorByParent", lambda: self.check_by_parent(t))

    # -- connection checks ----------------------------------------------------------------------------------

    def check_config_data(self) -> str:
        reply = self.call("GetConfigData", {})
        fields = self.member(reply, "FieldMetaDataObjects", list, "an array of FieldMetadataInfo")
        problems = metadata_problems(fields, "FieldMetaDataObjects")
        if problems:
            raise Failed(f"{len(problems)} problem(s) with the config fields: {_listing(problems)}")
        self.config_fields = fields
        index = {f["FieldKey"]: f for f in fields}
        converted = {k: convert_config_value(index.get(k), v) for k, v in self.given_config.items()}
        defaults = []
        for meta in fields:
            key = meta["FieldKey"]
            if key in converted or meta["FieldType"] == "Label" or meta.get("DefaultValue") in (None, ""):
                continue
            converted[key] = convert_config_value(meta, str(meta["DefaultValue"]))
            defaults.append(key)
        self.config = converted
        unknown = [k for k in self.given_config if k not in index]
        missing = [f["FieldKey"] for f in fields if f["Access"] == "Mandatory" and f["FieldType"] != "Label"
                   and converted.get(f["FieldKey"]) in (None, "")]
        if unknown:
            self.warn(f"config keys that are not config fields (sent anyway): {', '.join(unknown)}")
        if missing:
            self.warn(f"Mandatory config fields without a value: {', '.join(missing)} (give them with --config)")
        text = f"{len(fields)} config field(s)"
        if defaults:
            text += f"; DefaultValue used for {', '.join(defaults)}"
        return text

    def check_test_config(self) -> str:
        reply = self.call("TestConfigData", {"ConnectionInfo": self.config})
        return reply.user_explanation or "the settings were accepted"

    def check_save_connection(self) -> str:
        self.call("SaveConnection", {"ConnectionGuid": self.guid, "ConnectionInfo": self.config})
        self.saved = True
        return f"saved as ConnectionGuid {self.guid}"

    def check_test_connection(self) -> str:
        if not self.saved:
            raise Skipped("needs a saved connection (SaveConnection failed)")
        reply = self.call("TestConnection", {"ConnectionGuid": self.guid})
        self.working = True
        return reply.user_explanation or "the connection works"

    def check_unknown_guid(self) -> str:
        if not self.saved:
            raise Skipped("needs a saved connection (SaveConnection failed)")
        stranger = str(uuid.uuid4())
        resend, self.client.resend_config = self.client.resend_config, None
        try:
            with quiet_client_log():  # the error is the expected answer
                reply = self.call("GetSupportedActorTypes", {"ConnectionGuid": stranger})
        except ConnectorError as exc:
            if exc.error_code == UNKNOWN_CONNECTION_ID:
                return f"GetSupportedActorTypes for a GUID never saved answered {UNKNOWN_CONNECTION_ID}"
            if exc.transient:
                raise Failed(f"GetSupportedActorTypes for a GUID never saved failed: {_error_text(exc)}; it must "
                             f"answer ErrorCode {UNKNOWN_CONNECTION_ID}") from None
            raise Failed(f"GetSupportedActorTypes for a GUID never saved answered ErrorCode "
                         f"{exc.error_code or '(empty)'}, not {UNKNOWN_CONNECTION_ID}: the portal would not know "
                         "to re-send the configuration") from None
        finally:
            self.client.resend_config = resend
        raise Failed(f"GetSupportedActorTypes for a GUID never saved answered IsOk true "
                     f"({_short(reply.get('Items'))}); it must answer ErrorCode {UNKNOWN_CONNECTION_ID}")

    def check_config_lists(self) -> str:
        if self.config_fields is None:
            raise Skipped("needs GetConfigData")
        list_fields = [f for f in self.config_fields if f["FieldType"] == "List"]
        if not list_fields:
            raise Skipped("no config field of type List")
        done = []
        for meta in list_fields:
            name = meta["ListName"]
            reply = self.call("GetList", {"ConnectionGuid": ZERO_GUID, "ListName": name})
            items = self.list_items(reply)
            value = self.config.get(meta["FieldKey"])
            if isinstance(value, str) and value and value not in items:
                self.warn(f"{meta['FieldKey']} = {value!r} is not an item of the list {name}")
            done.append(f"{name} ({len(items)} items)")
        return f"GetList with the all-zero GUID answered {', '.join(done)}"

    def list_items(self, reply: Reply) -> dict[str, str]:
        items = self.member(reply, "ListItems", dict, "an object of {key: text}")
        bad = [f"{k}: {_json_type(v)}" for k, v in items.items() if not isinstance(v, str)]
        if bad:
            raise Failed(f"{reply.method}: ListItems texts must be strings ({_listing(bad)})")
        return items

    def check_actor_types(self) -> str:
        self.require_connection()
        reply = self.call("GetSupportedActorTypes", {"ConnectionGuid": self.guid})
        items = self.member(reply, "Items", list, "an array of actor types")
        wrong = [_short(i) for i in items if i not in ACTOR_TYPES]
        if wrong:
            raise Failed(f"Items holds {', '.join(wrong)}, which are not actor types "
                         f"(allowed: {', '.join(ACTOR_TYPES)})")
        if len(set(items)) != len(items):
            raise Failed(f"Items lists an actor type twice: {items}")
        self.supported = list(items)
        if not items:
            self.warn("the connector supports no actor type")
        return ", ".join(items)

    def check_delete_connection(self) -> str:
        if not self.saved:
            raise Skipped("no connection was saved")
        self.call("DeleteConnection", {"ConnectionGuid": self.guid})
        self.saved = False
        resend, self.client.resend_config = self.client.resend_config, None
        try:
            with quiet_client_log():
                self.call("TestConnection", {"ConnectionGuid": self.guid})
        except ConnectorError as exc:
            if exc.error_code != UNKNOWN_CONNECTION_ID:
                self.warn(f"after DeleteConnection, TestConnection answered {exc.error_code or 'an error'} "
                          f"rather than {UNKNOWN_CONNECTION_ID}")
        else:
            self.warn("the connection still works after DeleteConnection")
        finally:
            self.client.resend_config = resend
        return "the connection was deleted"

    def check_envelopes(self) -> str:
        if not self.answers:
            raise Skipped("no successful answer to look at")
        if not self.envelope:
            return f"all {self.answers} successful answers had {', '.join(ENVELOPE)} with valid types"
        problems = [f"{method}: {', '.join(found)}" for method, found in self.envelope.items()]
        raise Failed(f"answers lacking the members every response must have: {_listing(problems)}")

    # -- per actor type: metadata ---------------------------------------------------------------------------

    def check_fields(self, t: str) -> str:
        self.require_connection()
        reply = self.call("GetSupportedActorTypeFields", {"ConnectionGuid": self.guid, "ActorType": t})
        fields = self.member(reply, "FieldMetaDataObjects", list, "an array of FieldMetadataInfo")
        problems = metadata_problems(fields, "FieldMetaDataObjects")
        if problems:
            raise Failed(f"{len(problems)} problem(s): {_listing(problems)}")
        self.state(t).fields = fields
        if not fields:
            self.warn("the actor type has no fields")
        kinds = sorted({f["FieldType"] for f in fields})
        return f"{len(fields)} field(s) ({', '.join(kinds)})"

    def check_searchable(self, t: str) -> str:
        self.require_connection()
        st = self.state(t)
        reply = self.call("GetSearchableFields", {"ConnectionGuid": self.guid, "ActorType": t})
        items = self.member(reply, "Items", list, "an array of FieldKeys")
        if not all(isinstance(i, str) for i in items):
            raise Failed(f"Items must be FieldKeys (strings): {_short(items)}")
        if st.fields is None:
            st.searchable = items
            raise Skipped("needs GetSupportedActorTypeFields to compare the keys")
        unknown = [i for i in items if i not in st.index and i not in SPECIAL_SEARCH_KEYS]
        if unknown:
            raise Failed(f"searchable fields that are not fields of {t}: {', '.join(unknown)}")
        st.searchable = items
        return ", ".join(items) if items else "no searchable fields"

    # -- per actor type: reading ----------------------------------------------------------------------------

    def by_timestamp(self, t: str, since: str, field_keys: Sequence[str], **extra) -> Reply:
        body = {"ConnectionGuid": self.guid, "UpdatedOnOrAfter": since, "ActorType": t,
                "FieldKeys": list(field_keys), **extra}
        return self.call("GetActorsByTimestamp", body)

    def actor_problems(self, actor: dict, t: str) -> list[str]:
        """Shape problems of one ErpActor (FieldValues types are checked separately)."""
        key = actor.get("ErpKey")
        label = f"actor {key!r}" if isinstance(key, str) and key else "an actor"
        problems = []
        for member in ("ActorType", "ErpKey", "LastModified", "ParentActorType", "ParentErpKey", "FieldValues"):
            if member not in actor:
                problems.append(f"{label}: {member} is missing")
        if "ActorType" in actor and actor["ActorType"] != t:
            problems.append(f"{label}: ActorType is {_short(actor['ActorType'])}, asked for {t}")
        if "ErpKey" in actor and not (isinstance(key, str) and key):
            problems.append(f"{label}: ErpKey is {_short(key)}, not a non-empty string")
        for member in ("ParentActorType", "ParentErpKey"):
            value = actor.get(member)
            if value is not None and not isinstance(value, str):
                problems.append(f"{label}: {member} is {_json_type(value)}, not a string")
        parent_type = actor.get("ParentActorType")
        if isinstance(parent_type, str) and parent_type and parent_type not in ACTOR_TYPES:
            problems.append(f"{label}: ParentActorType {parent_type!r} is not an actor type")
        if "FieldValues" in actor and not isinstance(actor["FieldValues"], dict):
            problems.append(f"{label}: FieldValues is {_json_type(actor['FieldValues'])}, not an object")
        return problems

    def stamp(self, actor: dict, t: str) -> tuple[str, Any]:
        try:
            kind, sort_key = parse_last_modified(actor.get("LastModified"))
        except ValueError as exc:
            raise Failed(f"LastModified of {t} {actor.get('ErpKey')!r} {exc}") from None
        return kind, sort_key

    def see(self, actor: dict, t: str) -> None:
        """Remember the highest LastModified seen so far (for the 'global, never decreasing' checks)."""
        try:
            kind, sort_key = parse_last_modified(actor.get("LastModified"))
        except ValueError:
            return
        best = self.max_seen.get(kind)
        if best is None or sort_key > best[0]:
            self.max_seen[kind] = (sort_key, f"{t} {actor.get('ErpKey')} ({actor.get('LastModified')})")

    def check_all_actors(self, t: str) -> str:
        self.require_connection()
        st = self.state(t)
        if st.fields is None:
            raise Skipped("needs GetSupportedActorTypeFields")
        reply = self.by_timestamp(t, "", st.field_keys)
        actors = self.actors_of(reply)
        problems = [p for a in actors for p in self.actor_problems(a, t)]
        keys = [a.get("ErpKey") for a in actors]
        twice = sorted({str(k) for k in keys if keys.count(k) > 1})
        if twice:
            problems.append(f"ErpKey(s) listed twice: {', '.join(twice[:MAX_LISTED])}")
        if problems:
            raise Failed(f"{len(problems)} problem(s) with the actors: {_listing(problems)}")
        if reply.get("NextCursor"):
            raise Failed("answered a NextCursor although no Limit was sent: without Limit the answer must hold "
                         "every actor")
        st.actors = actors
        return f"{len(actors)} actor(s) with an empty UpdatedOnOrAfter"

    def check_last_modified(self, t: str) -> str:
        st = self.state(t)
        if st.actors is None:
            raise Skipped("needs GetActorsByTimestamp (all)")
        if not st.actors:
            raise Skipped(f"no {t} actors to look at")
        kinds: dict[str, int] = {}
        problems = []
        values = []
        for actor in st.actors:
            try:
                kind, sort_key = parse_last_modified(actor.get("LastModified"))
            except ValueError as exc:
                problems.append(f"{actor.get('ErpKey')!r}: LastModified {exc}")
                continue
            kinds[kind] = kinds.get(kind, 0) + 1
            values.append(sort_key)
        if problems:
            raise Failed(f"LastModified must be an ISO-8601 UTC timestamp or a decimal integer: {_listing(problems)}")
        if len(kinds) > 1:
            raise Failed(f"LastModified mixes ISO-8601 timestamps ({kinds['iso']}) and integers ({kinds['int']}): "
                         "values of different actors cannot be compared")
        kind = next(iter(kinds))
        others = {other: k for other, k in self.kinds.items() if k != kind}
        if others:
            other, other_kind = next(iter(others.items()))
            raise Failed(f"{t} uses {'integers' if kind == 'int' else 'ISO-8601 timestamps'} for LastModified but "
                         f"{other} uses {'integers' if other_kind == 'int' else 'ISO-8601 timestamps'}: LastModified "
                         "must be comparable across all actors of the connection")
        st.kind = self.kinds[t] = kind
        for actor in st.actors:
            self.see(actor, t)
        if kind == "int" and len(values) >= 3 and max(values) < 1000 and len(set(values)) < len(values):
            self.warn(f"the values ({_short(sorted(set(values))[:8])}) are small integers shared by several actors: "
                      "this looks like a per-record version counter, which is not valid (the write checks can tell "
                      "for sure)")
        label = "ISO-8601 UTC timestamps" if kind == "iso" else "decimal integers"
        return f"{label}; newest {max(st.actors, key=lambda a: self.stamp(a, t)[1])['LastModified']}"

    def check_value_types(self, t: str) -> str:
        st = self.state(t)
        if st.actors is None:
            raise Skipped("needs GetActorsByTimestamp (all)")
        if not st.actors:
            raise Skipped(f"no {t} actors to look at")
        problems, absent = self.value_problems(st.actors, st, st.field_keys)
        if problems:
            raise Failed(f"FieldValues that do not match their FieldType: {_listing(problems)}")
        if absent:
            self.warn(f"requested fields left out of FieldValues (read as blank): {', '.join(sorted(absent))}")
        return f"{len(st.actors)} actor(s), {len(st.field_keys)} field(s) each"

    def value_problems(self, actors: Iterable[dict], st: _TypeState,
                       requested: Sequence[str]) -> tuple[list[str], set[str]]:
        index = st.index
        problems: list[str] = []
        absent: set[str] = set()
        for actor in actors:
            values = actor.get("FieldValues")
            if not isinstance(values, dict):
                continue
            for key in requested:
                if key not in values:
                    absent.add(key)
            for key, value in values.items():
                meta = index.get(key)
                problem = value_problem(meta, value) if meta else None
                if problem:
                    problems.append(f"{actor.get('ErpKey')!r} {key} ({meta['FieldType']}) {problem}")
        return problems, absent

    def check_inclusive(self, t: str) -> str:
        st = self.state(t)
        if st.actors is None or st.kind is None:
            raise Skipped("needs GetActorsByTimestamp (all) and a valid LastModified format")
        if not st.actors:
            raise Skipped(f"no {t} actors to ask for")
        ordered = sorted(st.actors, key=lambda a: self.stamp(a, t)[1])
        probes = [ordered[-1]] + ([ordered[len(ordered) // 2]] if len(ordered) > 2 else [])
        keys = st.field_keys[:1]
        done = []
        for probe in probes:
            since = probe["LastModified"]
            since_key = self.stamp(probe, t)[1]
            found = self.actors_of(self.by_timestamp(t, since, keys))
            got = {a.get("ErpKey") for a in found}
            if probe["ErpKey"] not in got:
                raise Failed(f"GetActorsByTimestamp(UpdatedOnOrAfter={since}) left out {t} {probe['ErpKey']} whose "
                             f"LastModified is exactly {since}: the comparison must be inclusive (on or after)")
            expected = {a["ErpKey"] for a in st.actors if self.stamp(a, t)[1] >= since_key}
            missing = sorted(expected - got)
            if missing:
                raise Failed(f"GetActorsByTimestamp(UpdatedOnOrAfter={since}) left out {len(missing)} actor(s) "
                             f"modified on or after it: {', '.join(missing[:MAX_LISTED])}")
            older = []
            for actor in found:
                try:
                    if parse_last_modified(actor.get("LastModified"))[1] < since_key:
                        older.append(str(actor.get("ErpKey")))
                except ValueError:
                    older.append(str(actor.get("ErpKey")))
            if older:
                self.warn(f"UpdatedOnOrAfter={since} also returned actors last modified before it: "
                          f"{', '.join(older[:MAX_LISTED])}")
            done.append(f"{since} → {len(found)}")
        return "UpdatedOnOrAfter = an actor's own LastModified includes it (" + ", ".join(done) + ")"

    def check_paging(self, t: str) -> str:
        st = self.state(t)
        if st.actors is None or st.kind is None:
            raise Skipped("needs GetActorsByTimestamp (all) and a valid LastModified format")
        total = len(st.actors)
        if total < 2:
            raise Skipped(f"needs at least 2 {t} actors")
        limit = max(1, min(500, math.ceil(total / 3)))
        keys = st.field_keys[:1]
        reply = self.by_timestamp(t, "", keys, Limit=limit)
        page = self.actors_of(reply)
        cursor = reply.get("NextCursor")
        if cursor is None:
            if len(page) > limit:
                raise Skipped(f"(ext) not offered: Limit={limit} was ignored and all {len(page)} actors came in one "
                              "answer")
            if len(page) < total:
                raise Failed(f"with Limit={limit} it answered {len(page)} of {total} actors and no NextCursor: "
                             "the rest can never be fetched")
            raise Skipped(f"(ext) not offered: no NextCursor with Limit={limit}")
        seen: dict[str, int] = {}
        last_key = None
        pages = 0
        while True:
            pages += 1
            if len(page) > limit:
                raise Failed(f"page {pages} holds {len(page)} actors, more than Limit={limit}")
            for actor in page:
                key = actor.get("ErpKey")
                if key in seen:
                    raise Failed(f"{t} {key} came on page {seen[key]} and again on page {pages}: pages must cover "
                                 "each actor once")
                seen[key] = pages
                sort_key = self.stamp(actor, t)[1]
                if last_key is not None and sort_key < last_key:
                    raise Failed(f"page {pages} is not ordered by LastModified ({actor.get('LastModified')} comes "
                                 "after a later value)")
                last_key = sort_key
            if cursor is None:
                break
            if not isinstance(cursor, str):
                raise Failed(f"NextCursor is {_json_type(cursor)}, not a string or null")
            if pages > total + 2:
                raise Failed(f"still answering a NextCursor after {pages} pages of Limit={limit} for {total} actors")
            reply = self.by_timestamp(t, "", keys, Limit=limit, Cursor=cursor)
            page = self.actors_of(reply)
            cursor = reply.get("NextCursor")
        missing = sorted({a["ErpKey"] for a in st.actors} - set(seen))
        if missing:
            raise Failed(f"the pages left out {len(missing)} actor(s): {', '.join(missing[:MAX_LISTED])}")
        return f"{pages} page(s) of Limit={limit} covered all {total} actors once, in LastModified order"

    def unknown_key(self, t: str) -> str:
        known = {a.get("ErpKey") for a in self.state(t).actors or []}
        sample = next((k for k in known if isinstance(k, str) and k), "")
        match = re.match(r"^(.*?)(\d+)$", sample)
        for attempt in range(1, 100):
            if match:
                candidate = f"{match.group(1)}{int(match.group(2)) + 1_000_000_000 + attempt}"
            else:
                candidate = f"{sample or 'key'}-conformance-missing-{attempt}"
            if candidate not in known:
                return candidate
        return f"conformance-missing-{uuid.uuid4().hex}"

    def check_get_actors(self, t: str) -> str:
        st = self.state(t)
        if st.actors is None:
            raise Skipped("needs GetActorsByTimestamp (all)")
        if not st.actors:
            raise Skipped(f"no {t} actors to ask for")
        known = st.actors[0]["ErpKey"]
        unknown = self.unknown_key(t)
        requested = st.field_keys[:2]
        body = {"ConnectionGuid": self.guid, "ActorType": t, "ErpKeys": [known, unknown], "FieldKeys": requested}
        try:
            reply = self.call("GetActors", body)
        except ConnectorError as exc:
            if exc.error_code != NOT_FOUND:
                raise
            # The contract lets a connector answer NOT_FOUND for an unknown key; leaving the key out is better.
            self.warn(f"[{known}, {unknown}] answered {NOT_FOUND} (accepted: the key is unknown) instead of leaving "
                      f"out the unknown key, so the known actor asked for in the same call was not returned either: "
                      "better leave unknown keys out")
            body["ErpKeys"] = [known]
            reply = self.call("GetActors", body)
            unknown = ""
        actors = self.actors_of(reply)
        problems = [p for a in actors for p in self.actor_problems(a, t)]
        if problems:
            raise Failed(_listing(problems))
        keys = [a.get("ErpKey") for a in actors]
        if unknown and unknown in keys:
            raise Failed(f"returned an actor for the unknown key {unknown!r}: GetActors must leave out keys it does "
                         "not know (a left-out key tells the portal the actor no longer exists)")
        extra = [k for k in keys if k != known]
        if extra:
            raise Failed(f"returned actors that were not asked for: {', '.join(map(str, extra))}")
        if keys != [known]:
            raise Failed(f"left out {t} {known}, which GetActorsByTimestamp lists")
        values = actors[0].get("FieldValues") or {}
        type_problems, absent = self.value_problems(actors, st, requested)
        if type_problems:
            raise Failed(f"FieldValues that do not match their FieldType: {_listing(type_problems)}")
        if absent:
            self.warn(f"requested fields left out of FieldValues (read as blank): {', '.join(sorted(absent))}")
        extras = sorted(set(values) - set(requested))
        if extras:
            self.note(f"also sent fields not asked for (ignored by the portal): {', '.join(extras[:MAX_LISTED])}")
        asked = f"[{known}, {unknown}] → only {known}" if unknown else f"[{known}] → {known}"
        return f"{asked}, with FieldKeys {', '.join(requested) or '(none)'}"

    def check_blank_search(self, t: str) -> str:
        st = self.state(t)
        self.require_connection()
        if st.actors is None:
            raise Skipped("needs GetActorsByTimestamp (all)")
        reply = self.call("SearchActors", {"ConnectionGuid": self.guid, "ActorType": t, "SearchText": "",
                                           "FieldKeys": st.field_keys[:2]})
        actors = self.actors_of(reply)
        problems = [p for a in actors for p in self.actor_problems(a, t)]
        if problems:
            raise Failed(_listing(problems))
        total = len(st.actors)
        if total and not actors:
            raise Failed(f"a blank SearchText found nothing, but there are {total} {t} actors: a blank search must "
                         "list all actors of the type")
        if len(actors) < total:
            self.warn(f"a blank SearchText listed {len(actors)} of the {total} {t} actors")
        return f"a blank SearchText listed {len(actors)} actor(s)"

    def check_by_parent(self, t: str) -> str:
        st = self.state(t)
        if st.actors is None:
            raise Skipped("needs GetActorsByTimestamp (all)")
        candidates = [a for a in st.actors + ([st.created] if st.created else [])
                      if isinstance(a.get("ParentErpKey"), str) and a["ParentErpKey"]]
        if not candidates:
            self._pending_parent_check = True
            raise Skipped(f"no {t} with a parent to search by")
        child = candidates[-1] if st.created in candidates else candidates[0]
        parent_type, parent_key = child.get("ParentActorType") or "", child["ParentErpKey"]
        reply = self.call("SearchActorByParent", {
            "ConnectionGuid": self.guid, "ActorType": t, "SearchText": "", "ParentActorType": parent_type,
            "ParentErpKey": parent_key, "FieldKeys": st.field_keys[:2]})
        actors = self.actors_of(reply)
        problems = [p for a in actors for p in self.actor_problems(a, t)]
        if problems:
            raise Failed(_listing(problems))
        if child["ErpKey"] not in {a.get("ErpKey") for a in actors}:
            raise Failed(f"searching the children of {parent_type} {parent_key} left out {t} {child['ErpKey']}, "
                         "whose ParentErpKey it is")
        strangers = [str(a.get("ErpKey")) for a in actors if a.get("ParentErpKey") not in (None, "", parent_key)]
        if strangers:
            raise Failed(f"returned actors of another parent: {', '.join(strangers[:MAX_LISTED])}")
        return f"{len(actors)} {t} actor(s) under {parent_type} {parent_key}"

    def check_advanced(self, t: str) -> str:
        st = self.state(t)
        if st.actors is None or st.searchable is None or st.fields is None:
            raise Skipped("needs GetSearchableFields and GetActorsByTimestamp (all)")
        if not st.searchable:
            raise Skipped("no searchable fields")
        choice = self.restriction_sample(st)
        if choice is None:
            raise Skipped("no actor has a value in a searchable Text, List or Integer field")
        key, operator, value, actor = choice
        restriction = {"FieldKey": key, "Operator": operator, "Values": [value]}
        reply = self.call("SearchActorsAdvanced", {"ConnectionGuid": self.guid, "ActorType": t,
                                                   "Restrictions": [restriction], "FieldKeys": [key]})
        actors = self.actors_of(reply)
        problems = [p for a in actors for p in self.actor_problems(a, t)]
        if problems:
            raise Failed(_listing(problems))
        if actor["ErpKey"] not in {a.get("ErpKey") for a in actors}:
            raise Failed(f"{key} {operator} {_short(value)} left out {t} {actor['ErpKey']}, whose {key} is "
                         f"{_short(value)}")

        def same(other: Any) -> bool:
            return other.casefold() == value.casefold() if isinstance(other, str) and isinstance(value, str) \
                else other == value

        odd = [str(a.get("ErpKey")) for a in actors if key in (a.get("FieldValues") or {})
               and not same(a["FieldValues"][key])]
        if odd:
            self.warn(f"also returned actors whose {key} is not {_short(value)}: {', '.join(odd[:MAX_LISTED])}")
        return f"{key} {operator} {_short(value)} → {len(actors)} actor(s)"

    @staticmethod
    def restriction_sample(st: _TypeState) -> tuple[str, str, Any, dict] | None:
        """(FieldKey, Operator, value, actor): a searchable Text (=), List (oneof) or Integer (=) field, in that
        order of preference and by Rank, with a value some actor has."""
        index = st.index
        searchable = sorted((k for k in st.searchable or [] if k in index), key=lambda k: index[k].get("Rank") or 0)
        for field_type, operator in (("Text", "="), ("List", "oneof"), ("Integer", "=")):
            for key in (k for k in searchable if index[k]["FieldType"] == field_type):
                for actor in st.actors or []:
                    value = (actor.get("FieldValues") or {}).get(key)
                    if field_type == "Integer":
                        usable = isinstance(value, int) and not isinstance(value, bool)
                    else:
                        usable = isinstance(value, str) and value.strip() == value and 0 < len(value) <= 100
                    if usable:
                        return key, operator, value, actor
        return None

    def fetch_list(self, name: str) -> dict[str, str]:
        if name not in self.lists:
            self.lists[name] = self.list_items(self.call("GetList", {"ConnectionGuid": self.guid, "ListName": name}))
        return self.lists[name]

    def check_lists(self, t: str) -> str:
        st = self.state(t)
        if st.fields is None:
            raise Skipped("needs GetSupportedActorTypeFields")
        self.require_connection()
        list_fields = [f for f in st.fields if f["FieldType"] == "List"]
        if not list_fields:
            raise Skipped("no field of type List")
        done = []
        for name in dict.fromkeys(f["ListName"] for f in list_fields):
            if name in self.list_checked_by:
                done.append(f"{name} (checked with {self.list_checked_by[name]})")
                continue
            items = self.fetch_list(name)
            wanted = list(items)[:3]
            missing_key = next(k for k in (f"conformance-missing-{i}" for i in range(1, 100)) if k not in items)
            reply = self.call("GetListItems", {"ConnectionGuid": self.guid, "ListName": name,
                                               "ListItemKeys": wanted + [missing_key]})
            got = self.list_items(reply)
            lost = [k for k in wanted if k not in got]
            if lost:
                raise Failed(f"GetListItems({name}) left out {', '.join(lost)}, which GetList lists")
            differ = [k for k in wanted if got[k] != items[k]]
            if differ:
                raise Failed(f"GetListItems({name}) answered other texts than GetList for {', '.join(differ)}")
            if missing_key in got:
                self.warn(f"GetListItems({name}) answered a text for the unknown key {missing_key!r}")
            stray: set[str] = set()
            for meta in (f for f in list_fields if f["ListName"] == name):
                for actor in st.actors or []:
                    value = (actor.get("FieldValues") or {}).get(meta["FieldKey"])
                    if isinstance(value, str) and value and value not in items:
                        stray.add(value)
            if stray:
                self.warn(f"{t} values that are not keys of the list {name}: {', '.join(sorted(stray)[:MAX_LISTED])}")
            self.list_checked_by[name] = t
            done.append(f"{name} ({len(items)} items)")
        return ", ".join(done)

    # -- per actor type: writing ----------------------------------------------------------------------------

    def sample_value(self, meta: dict, tag: str) -> Any:
        ftype = meta["FieldType"]
        if ftype in ("Text", "Password"):
            text = f"CK-{meta['FieldKey'].title()}-{tag}"
            limit = meta.get("MaxLength") or 0
            return text[-limit:] if limit and len(text) > limit else text
        if ftype == "Integer":
            return 1
        if ftype == "Double":
            return 1.5
        if ftype == "Checkbox":
            return False
        if ftype == "Date":
            return datetime.now(UTC).date().isoformat()
        if ftype == "List":
            items = self.fetch_list(meta["ListName"])
            if not items:
                raise Skipped(f"the list {meta['ListName']} of the Mandatory field {meta['FieldKey']} is empty")
            return next(iter(items))
        return None

    @staticmethod
    def writable(meta: dict) -> bool:
        return meta["Access"] != "ReadOnly" and meta["FieldType"] != "Label"

    def marker_field(self, st: _TypeState) -> dict | None:
        """The Text field the SaveActors check changes: a name-like one if there is one."""
        texts = sorted((f for f in st.fields or [] if self.writable(f) and f["FieldType"] == "Text"),
                       key=lambda f: (f["Access"] != "Mandatory", "NAME" not in f["FieldKey"].upper(),
                                      f.get("Rank") or 0))
        return texts[0] if texts else None

    def parent_for(self, t: str) -> tuple[str, str]:
        if t != "Person":
            return "", ""
        for parent_type in PARENT_TYPES:
            created = self.types.get(parent_type, _TypeState(parent_type)).created
            if created:
                return parent_type, created["ErpKey"]
        for parent_type in PARENT_TYPES:
            for actor in self.types.get(parent_type, _TypeState(parent_type)).actors or []:
                return parent_type, actor["ErpKey"]
        for parent_type in PARENT_TYPES:  # the parent types were not checked in this run: look one up
            if parent_type not in (self.supported or []):
                continue
            reply = self.call("SearchActors", {"ConnectionGuid": self.guid, "ActorType": parent_type,
                                               "SearchText": "", "FieldKeys": [], "Limit": 1})
            for actor in self.actors_of(reply):
                if isinstance(actor.get("ErpKey"), str) and actor["ErpKey"]:
                    return parent_type, actor["ErpKey"]
        raise Skipped("a Person needs a parent customer or supplier, and there is none (check Customer too)")

    def check_create(self, t: str) -> str:
        st = self.state(t)
        if st.fields is None:
            raise Skipped("needs GetSupportedActorTypeFields")
        self.require_connection()
        tag = uuid.uuid4().hex[:6]
        values: dict[str, Any] = {}
        for meta in st.fields:
            name_like = meta["FieldType"] == "Text" and "NAME" in meta["FieldKey"].upper()
            if self.writable(meta) and (meta["Access"] == "Mandatory" or name_like):
                values[meta["FieldKey"]] = self.sample_value(meta, tag)
        marker = self.marker_field(st)
        if marker is not None and marker["FieldKey"] not in values:
            values[marker["FieldKey"]] = self.sample_value(marker, tag)
        parent_type, parent_key = self.parent_for(t)
        actor = {"ActorType": t, "ParentActorType": parent_type, "ParentErpKey": parent_key, "FieldValues": values}
        st.create_request = {"ConnectionGuid": self.guid, "Actor": actor, "IdempotencyKey": str(uuid.uuid4())}
        before = dict(self.max_seen)
        reply = self.call("CreateActor", st.create_request)
        created = self.member(reply, "Actor", dict, "an ErpActor object")
        problems = self.actor_problems(created, t)
        if problems:
            raise Failed(_listing(problems))
        st.created = created
        key = created["ErpKey"]
        kind, sort_key = self.stamp(created, t)
        expected_kind = st.kind or next(iter(self.kinds.values()), None)
        if expected_kind and kind != expected_kind:
            raise Failed(f"the new actor's LastModified {created['LastModified']} is not in the format of the others")
        best = before.get(kind)
        if best is not None and sort_key < best[0]:
            raise Failed(f"the new {t} {key} has LastModified {created['LastModified']}, earlier than "
                         f"{best[1]} read before it: LastModified must be global and never decrease"
                         + (" (this looks like a per-record version counter)" if kind == "int" else ""))
        self.see(created, t)
        type_problems, _ = self.value_problems([created], st, [])
        if type_problems:
            raise Failed(f"FieldValues that do not match their FieldType: {_listing(type_problems)}")
        found = self.actors_of(self.call("GetActors", {"ConnectionGuid": self.guid, "ActorType": t,
                                                       "ErpKeys": [key], "FieldKeys": st.field_keys}))
        if [a.get("ErpKey") for a in found] != [key]:
            raise Failed(f"GetActors does not find the new {t} {key}")
        feed = self.actors_of(self.by_timestamp(t, created["LastModified"], st.field_keys[:1]))
        if key not in {a.get("ErpKey") for a in feed}:
            raise Failed(f"GetActorsByTimestamp(UpdatedOnOrAfter={created['LastModified']}) does not list the new "
                         f"{t} {key}")
        where = f" under {parent_type} {parent_key}" if parent_key else ""
        return f"created {t} {key}{where}, LastModified {created['LastModified']}"

    def check_idempotent(self, t: str) -> str:
        st = self.state(t)
        if st.created is None or st.create_request is None:
            raise Skipped("needs CreateActor")
        first = st.created["ErpKey"]
        try:
            reply = self.call("CreateActor", st.create_request)
        except ConnectorError as exc:
            self.warn(f"(ext) idempotent create not offered: the repeated CreateActor failed: {_error_text(exc)}")
            return ""
        again = self.member(reply, "Actor", dict, "an ErpActor object")
        if again.get("ErpKey") == first:
            return f"the same IdempotencyKey returned {t} {first} again"
        self.warn(f"(ext) idempotent create not offered: the same IdempotencyKey created another {t} "
                  f"{again.get('ErpKey')!r} (the first was {first}); the protocol cannot delete it")
        return ""

    def check_save(self, t: str) -> str:
        st = self.state(t)
        if st.created is None:
            raise Skipped("needs CreateActor")
        marker = self.marker_field(st)
        if marker is None:
            raise Skipped(f"{t} has no writable Text field to change")
        key = st.created["ErpKey"]
        current = self.actors_of(self.call("GetActors", {"ConnectionGuid": self.guid, "ActorType": t,
                                                         "ErpKeys": [key], "FieldKeys": st.field_keys[:1]}))
        now = next((a for a in current if a.get("ErpKey") == key), None)  # as stored right now
        if now is None:
            raise Failed(f"GetActors no longer finds the created {t} {key}")
        old = now["LastModified"]
        old_key = self.stamp(now, t)[1]
        parent = now if now.get("ParentErpKey") else st.created
        new_value = self.sample_value(marker, uuid.uuid4().hex[:6] + "x")
        actor = {"ActorType": t, "ErpKey": key, "LastModified": old,
                 "ParentActorType": parent.get("ParentActorType") or "", "ParentErpKey": parent.get("ParentErpKey") or "",
                 "FieldValues": {marker["FieldKey"]: new_value}}
        before = dict(self.max_seen)
        reply = self.call("SaveActors", {"ConnectionGuid": self.guid, "Actors": [actor]})
        saved = self.actors_of(reply)
        problems = [p for a in saved for p in self.actor_problems(a, t)]
        if problems:
            raise Failed(_listing(problems))
        mine = [a for a in saved if a.get("ErpKey") == key]
        if not mine:
            raise Failed(f"the answer's Actors does not hold the saved {t} {key}")
        stored = mine[0]
        kind, new_key = self.stamp(stored, t)
        if new_key < old_key:
            raise Failed(f"LastModified went back: {old} before, {stored['LastModified']} after the save")
        best = before.get(kind)
        if best is not None and new_key < best[0]:
            raise Failed(f"after the save, {t} {key} has LastModified {stored['LastModified']}, earlier than "
                         f"{best[1]}: LastModified must be global and never decrease"
                         + (" (this looks like a per-record version counter)" if kind == "int" else ""))
        if new_key == old_key:  # legal while the connector's clock has not moved since the create
            self.note("a repeated LastModified is legal while the connector's clock has not moved (e.g. one-second "
                      "resolution); 'GetActorsByTimestamp paging under writes' re-saves an older actor")
        self.see(stored, t)
        field_key = marker["FieldKey"]
        if (stored.get("FieldValues") or {}).get(field_key, new_value) != new_value:
            raise Failed(f"the saved {field_key} is {_short(stored['FieldValues'][field_key])}, "
                         f"not {_short(new_value)}")
        found = self.actors_of(self.call("GetActors", {"ConnectionGuid": self.guid, "ActorType": t,
                                                       "ErpKeys": [key], "FieldKeys": [field_key]}))
        if not found or (found[0].get("FieldValues") or {}).get(field_key) != new_value:
            shown = _short((found[0].get("FieldValues") or {}).get(field_key)) if found else "nothing"
            raise Failed(f"GetActors reads back {field_key} = {shown} after saving {_short(new_value)}")
        feed = self.actors_of(self.by_timestamp(t, old, [field_key]))
        if key not in {a.get("ErpKey") for a in feed}:
            raise Failed(f"GetActorsByTimestamp(UpdatedOnOrAfter={old}) does not list {t} {key} after the save")
        moved = f"{old} → {stored['LastModified']}" if new_key != old_key else f"stayed {old}"
        return f"{field_key} changed; LastModified {moved}; the change feed lists it"

    def result_of(self, name: str) -> CheckResult | None:
        return next((r for r in reversed(self.results) if r.name == name), None)

    def check_paging_under_writes(self, t: str) -> str:
        """Page the feed with a small Limit and re-save an actor of page 1 before page 2: does every actor that was
        in the feed before the write still come? Keyset paging: yes. Offset paging (legal): the re-saved actor moves
        to the end and the rest shift, so one is skipped. Information only; the portal reads the whole feed before
        writing. A re-save whose LastModified stays behind stamps handed out before (a change the feed would never
        list) FAILs."""
        st = self.state(t)
        if st.actors is None or st.kind is None or st.fields is None:
            raise Skipped("needs GetActorsByTimestamp (all) and a valid LastModified format")
        paging = self.result_of(f"{t}: GetActorsByTimestamp paging")
        if paging is not None and paging.status == FAIL:
            raise Skipped("needs GetActorsByTimestamp paging")
        if paging is not None and paging.status == SKIP and paging.reason.startswith("(ext) not offered"):
            raise Skipped(f"the connector does not page GetActorsByTimestamp ({paging.reason})")
        saving = self.result_of(f"{t}: SaveActors")
        if saving is not None and saving.status == FAIL:
            raise Skipped("needs SaveActors")
        field_meta = self.marker_field(st) or next((f for f in st.fields if self.writable(f)), None)
        if field_meta is None:
            raise Skipped(f"{t} has no writable field (read-only type): nothing to re-save")
        known = {a.get("ErpKey"): a for a in st.actors}
        if st.created is not None:
            known[st.created.get("ErpKey")] = st.created
        if len(known) < 3:
            raise Skipped(f"needs at least 3 {t} actors (there are {len(known)})")
        self.require_connection()
        ordered = sorted(known.values(), key=lambda a: self.stamp(a, t)[1])
        since = ordered[-FEED_WINDOW]["LastModified"] if len(ordered) > FEED_WINDOW else ""
        field_key = field_meta["FieldKey"]
        keys = [field_key]
        before = list(dict.fromkeys(a.get("ErpKey") for a in self.actors_of(self.by_timestamp(t, since, keys))))
        if len(before) < 3:
            raise Skipped(f"needs at least 3 {t} actors in the feed (UpdatedOnOrAfter={since or '(all)'} lists "
                          f"{len(before)})")
        limit = WRITE_PAGE_LIMIT if len(before) <= 20 * WRITE_PAGE_LIMIT else math.ceil(len(before) / 20)
        reply = self.by_timestamp(t, since, keys, Limit=limit)
        page = self.actors_of(reply)
        cursor = reply.get("NextCursor")
        if cursor is None:
            if len(page) > limit:
                raise Skipped(f"(ext) not offered: Limit={limit} was ignored")
            raise Skipped(f"(ext) not offered: no NextCursor with Limit={limit}")
        if not page:
            raise Failed(f"with Limit={limit} page 1 is empty but has a NextCursor")
        target = page[0]
        seen = [a.get("ErpKey") for a in page]
        restore = self.resave(t, target["ErpKey"], field_meta)
        pages = 1
        try:
            while cursor is not None:
                if not isinstance(cursor, str):
                    raise Failed(f"NextCursor is {_json_type(cursor)}, not a string or null")
                if pages > len(before) + 5:
                    raise Failed(f"still answering a NextCursor after {pages} pages of Limit={limit} for "
                                 f"{len(before)} actors")
                reply = self.by_timestamp(t, since, keys, Limit=limit, Cursor=cursor)
                seen += [a.get("ErpKey") for a in self.actors_of(reply)]
                cursor = reply.get("NextCursor")
                pages += 1
        finally:
            if restore is not None:
                restore()
        skipped = [k for k in before if k not in seen]
        where = (f"re-saved {t} {target['ErpKey']} between page 1 and 2 of Limit={limit} from "
                 f"UpdatedOnOrAfter={since or '(all)'}")
        if seen.count(target["ErpKey"]) > 1:
            self.note("the re-saved actor came again on a later page (it has a new LastModified)")
        if not skipped:
            return (f"feed is stable under writes between pages (keyset-like): {where}; all {len(before)} actors "
                    f"came in {pages} pages")
        return (f"feed shifts under writes between pages (offset-like paging): {where}; {len(skipped)} of "
                f"{len(before)} actors skipped ({', '.join(map(str, skipped[:MAX_LISTED]))}) — the portal copes "
                "(it reads the whole feed before writing), but other clients may not")

    def resave(self, t: str, key: str, field_meta: dict) -> Callable[[], None] | None:
        """SaveActors for ``key`` with its current value of ``field_meta`` (no change). When that writes nothing
        (LastModified unchanged: a connector may skip a save that changes nothing), a harmless change to the Text
        field instead. Returns the function that restores the value (None when nothing was changed)."""
        field_key = field_meta["FieldKey"]
        current = self.actors_of(self.call("GetActors", {"ConnectionGuid": self.guid, "ActorType": t,
                                                         "ErpKeys": [key], "FieldKeys": [field_key]}))
        read = next((a for a in current if a.get("ErpKey") == key), None)
        if read is None:
            raise Skipped(f"{t} {key} is gone (GetActors no longer finds it)")
        known_value = field_key in (read.get("FieldValues") or {})  # left out: the kit cannot know (nor restore) it
        original = (read.get("FieldValues") or {}).get(field_key)
        read_stamp = self.stamp(read, t)[1]

        def save(last_modified: str, value: Any) -> tuple[dict, str]:
            """(the actor as stored, a contract problem with its LastModified or "")."""
            actor = {"ActorType": t, "ErpKey": key, "LastModified": last_modified,
                     "ParentActorType": read.get("ParentActorType") or "",
                     "ParentErpKey": read.get("ParentErpKey") or "",
                     "FieldValues": {field_key: value} if known_value else {}}
            best = dict(self.max_seen)
            answer = self.actors_of(self.call("SaveActors", {"ConnectionGuid": self.guid, "Actors": [actor]}))
            stored = next((a for a in answer if a.get("ErpKey") == key), None)
            if stored is None:
                return {**actor, "LastModified": last_modified}, f"the SaveActors answer does not hold {t} {key}"
            kind, stamp = self.stamp(stored, t)
            self.see(stored, t)
            if stamp < self.stamp(actor, t)[1]:
                return stored, (f"re-saving {t} {key}: LastModified went back from {last_modified} to "
                                f"{stored['LastModified']}")
            newest = best.get(kind)
            if newest is not None and stamp < newest[0] and (stamp != read_stamp or value != original):
                return stored, (f"SaveActors {'changed' if value != original else 're-saved'} {field_key} of {t} "
                                f"{key}, but its LastModified is {stored['LastModified']}, older than {newest[1]}: the "
                                "change feed would never list this write (LastModified must be global and never "
                                "decrease)")
            return stored, ""

        stored, problem = save(read["LastModified"], original)
        if problem:
            raise Failed(problem)
        if self.stamp(stored, t)[1] > read_stamp:
            self.note(f"{field_key} re-saved unchanged: LastModified {read['LastModified']} → "
                      f"{stored['LastModified']}")
            return None
        if field_meta["FieldType"] != "Text":
            raise Skipped(f"re-saving {t} {key} unchanged left its LastModified at {read['LastModified']}, and {t} "
                          "has no writable Text field for a harmless change")
        if not known_value:
            raise Skipped(f"re-saving {t} {key} unchanged left its LastModified at {read['LastModified']}, and GetActors "
                          f"left out its {field_key}, so a change could not be undone")
        changed, problem = save(stored["LastModified"], self.sample_value(field_meta, uuid.uuid4().hex[:6] + "w"))
        if problem:
            self.restore_value(t, key, read, field_key, original, changed)
            raise Failed(problem)
        if self.stamp(changed, t)[1] == read_stamp:  # legal (a clock at rest), but then nothing moved in the feed
            self.restore_value(t, key, read, field_key, original, changed)
            raise Skipped(f"cannot tell: changing {field_key} of {t} {key} left its LastModified at "
                          f"{read['LastModified']} (a repeated value: the connector's clock has not moved), so it kept "
                          "its place in the feed; the change was undone")
        self.note(f"re-saving {field_key} unchanged left LastModified as it was, so {field_key} was changed (and "
                  "restored after the read)")
        return lambda: self.restore_value(t, key, read, field_key, original, changed)

    def restore_value(self, t: str, key: str, read: dict, field_key: str, original: Any, changed: dict) -> None:
        """Put ``original`` back into ``field_key`` of the actor (``changed``: the actor as the change left it)."""
        actor = {"ActorType": t, "ErpKey": key, "LastModified": changed["LastModified"],
                 "ParentActorType": read.get("ParentActorType") or "", "ParentErpKey": read.get("ParentErpKey") or "",
                 "FieldValues": {field_key: original}}
        try:
            answer = self.actors_of(self.call("SaveActors", {"ConnectionGuid": self.guid, "Actors": [actor]}))
        except ConnectorError as exc:
            raise Failed(f"could not restore {field_key} of {t} {key} to {_short(original)}: {_error_text(exc)} — "
                         "restore it by hand") from None
        stored = next((a for a in answer if a.get("ErpKey") == key), None)
        value = (stored.get("FieldValues") or {}).get(field_key, original) if stored else original
        if value != original:
            raise Failed(f"restoring {field_key} of {t} {key} stored {_short(value)}, not {_short(original)} — "
                         "restore it by hand")
        if stored is not None:
            self.see(stored, t)


def run_checks(client: ConnectorClient, config: Mapping | None = None, *, actor_types: Iterable[str] | None = None,
               write: bool = True) -> list[CheckResult]:
    """Run the conformance checks against the connector behind ``client``.

    ``config`` is the ConnectionInfo to test with (text values are converted to their field types, and fields
    left out get their DefaultValue, as the portal's form does). ``actor_types`` limits the per-type checks;
    ``write=False`` leaves out the write checks (CreateActor, SaveActors, paging under writes). A fresh
    ConnectionGuid is saved and deleted again.
    """
    return ConformanceKit(client, config, actor_types=actor_types, write=write).run()


def has_failures(results: Iterable[CheckResult]) -> bool:
    return any(r.status == FAIL for r in results)


def format_table(results: Sequence[CheckResult]) -> str:
    """The report: ``name | status | seconds | reason`` plus a summary line."""
    width = max([len("check")] + [len(r.name) for r in results])
    lines = [f"{'check':<{width}} | status | seconds | reason", f"{'-' * width}-+--------+---------+-{'-' * 30}"]
    for r in results:
        lines.append(f"{r.name:<{width}} | {r.status:<6} | {r.seconds:7.2f} | {r.reason}")
    counts = {s: sum(1 for r in results if r.status == s) for s in STATUSES}
    lines.append("")
    lines.append(f"{counts[PASS]} passed, {counts[FAIL]} failed, {counts[WARN]} warnings, {counts[SKIP]} skipped "
                 f"in {sum(r.seconds for r in results):.2f} s")
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------------------
# CLI: flask --app wsgi connector check URL …

connector_group = AppGroup("connector", help="Tools for sync connectors.")


def _parse_config(items: Sequence[str]) -> dict[str, str]:
    config: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="--config")
        config[key.strip()] = value
    return config


@connector_group.command("check")
@click.argument("url")
@click.option("--config", "config_items", multiple=True, metavar="KEY=VALUE",
              help="A ConnectionInfo value (repeat for each config field); fields left out get their DefaultValue.")
@click.option("--token", default=None, envvar="PORTAL_CONNECTOR_CHECK_TOKEN",
              help="Bearer token for the connector (or set PORTAL_CONNECTOR_CHECK_TOKEN).")
@click.option("--actor-type", "actor_types", multiple=True, type=click.Choice(ACTOR_TYPES),
              help="Check only this actor type (repeatable); default: every supported type.")
@click.option("--no-write", is_flag=True, help="Leave out the write checks (they add records to the ERP).")
@click.option("--timeout", type=float, default=None, help="Seconds to wait for each answer (default: the portal's).")
def check_command(url: str, config_items: tuple[str, ...], token: str | None, actor_types: tuple[str, ...],
                  no_write: bool, timeout: float | None) -> None:
    """Run every protocol method against the connector at URL (http(s)://… or builtin:<name>) and print a
    PASS/FAIL/WARN/SKIP table. Exits with status 1 when a check FAILed."""
    from portal.services.connectors import make_client

    config = _parse_config(config_items)
    client = make_client(url, token, timeout=timeout, retries=1)
    try:
        with quiet_client_log():  # every failure is in the table, with its reason
            results = run_checks(client, config, actor_types=actor_types or None, write=not no_write)
    finally:
        client.close()
    click.echo(f"Conformance check of {url}" + (" (read-only)" if no_write else ""))
    click.echo(format_table(results))
    if has_failures(results):
        raise SystemExit(1)

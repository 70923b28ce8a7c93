"""A fake sync connector served over real HTTP on 127.0.0.1, with scriptable faults.

It speaks the fixed protocol of shared/docs/connector-protocol.md (all 17 methods) over an in-memory "ERP",
so the connector client, the sync engine and the e2e tests can run against something real-ish and inject
failures at will.

Layers:

* :class:`FakeConnectorService` — a ``ConnectorService`` with in-memory actors per type, a ConnectionGuid
  registry, idempotent creates and ``LastModified`` stamps from a :class:`FakeClock`. It can also be
  registered as a ``builtin:`` connector (``portal.connectors.builtin.register``) since it needs no HTTP.
* :class:`FakeConnector` — serves that service with ``make_wsgi_app`` behind a fault-injection middleware on
  ``werkzeug.serving.make_server("127.0.0.1", 0, …)`` in a daemon thread, and records every request.

Quick reference::

    with FakeConnector(token="t0ken") as fake:          # or fake = FakeConnector().start() … fake.stop()
        client = ConnectorClient(fake.url, token="t0ken")
        guid = fake.add_connection()                     # a registered ConnectionGuid (or SaveConnection it)
        key = fake.add_actor("Customer", {"name": "Acme AS", "country": "NO"})

        fake.fail_next(2, status=503, retry_after=1)     # the next 2 requests answer 503 (any method)
        fake.fail_next(1, status=404, method="GetList")  # only the next GetList
        fake.delay(0.5)                                  # every request waits 0.5 s (until delay(0))
        fake.delay(0.5, method="CreateActor", times=1, after_processing=True)  # create, then answer late
        fake.reply_raw(b"<html>oops</html>", content_type="text/html")        # garbage answer, once
        fake.redirect_next("http://example.invalid/")    # a 302, once
        fake.reply_warning("GetActors", "ERP offline; cached data")  # IsOk true, State Warning, once
        fake.reply_error("SaveActors", "Record locked", error_code="LOCKED")   # IsOk false, once
        fake.drip(2.0, method="GetActors")               # status + headers now, then the body 1 byte / 2 s, once
        fake.hang_after_headers(5.0)                     # status + headers now, the body 5 s later, once
        fake.reset_connection(method="SaveActors")       # headers + half the body, then a TCP reset, once
        fake.forget_connections()                        # next GUID call answers UNKNOWN_CONNECTION_ID
        fake.clear_faults()

        fake.calls          # [(method, body), ...] for every request received (faulted ones too)
        fake.requests       # [RecordedRequest(method, body, headers, status, path)]
        fake.calls_to("CreateActor")   # the bodies of those calls
        fake.service.created           # every actor really created (duplicate-create detection)

Faults are consumed in the order they were scripted; ``method=None`` matches any method. A transport fault
(``fail_next``/``reply_raw``/``redirect_next``) answers without reaching the service. ``reply_error`` answers
before the service runs; ``reply_warning`` decorates the service's successful answer. The streaming faults
(``drip``/``hang_after_headers``/``reset_connection``) deliver the service's real answer (the service runs: a
write is applied) badly; their waits end early when the server stops or is ``reset()``, so no request thread
outlives a test by more than one interval.

In pytest, use the fixtures of tests/conftest.py: ``fake_server`` (one server per module) and ``fake`` (that
server, reset to its seed state for each test).

The in-memory ERP: actor types ``Customer``, ``Supplier``, ``Person``, ``Project`` by default (see
``FIELDS`` for their fields, ``LISTS`` for the lists). ``CreateActor`` checks Mandatory fields, value types,
``MaxLength`` and list keys (``INVALID_VALUE``/``MISSING_FIELD``); unknown field keys are ignored. ``SaveActors``
updates existing actors only (``UNKNOWN_ERP_KEY`` otherwise, all or nothing) and merges FieldValues. Every
write gets a new, strictly increasing ``LastModified`` (ISO-8601 UTC with microseconds).
``GetActorsByTimestamp`` is inclusive and, with ``Limit``, pages ordered by (LastModified, ErpKey) with an
opaque ``NextCursor``. ``TestConfigData``/``TestConnection`` need ``Company`` and ``ApiKey``, and answer
``BAD_CREDENTIALS`` for the ApiKey ``"wrong"``.
"""

from __future__ import annotations

import base64
import copy
import io
import json
import socket
import struct
import threading
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Self

from werkzeug.serving import WSGIRequestHandler, make_server
from werkzeug.wrappers import Response

from portal.connectors.protocol import (
    OPERATORS,
    UNKNOWN_CONNECTION_ID,
    ZERO_GUID,
    State,
    error_response,
    field_metadata,
    ok_response,
)
from portal.connectors.service import ConnectorService, ProtocolError, make_wsgi_app

STAMP_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
DEFAULT_ACTOR_TYPES = ("Customer", "Supplier", "Person", "Project")
KEY_PREFIX = {"Customer": "C", "Supplier": "S", "Partner": "PA", "Person": "P", "Project": "PR"}
BAD_API_KEY = "wrong"

LISTS: dict[str, dict[str, str]] = {
    "Countries": {"NO": "Norway", "SE": "Sweden", "DK": "Denmark", "FI": "Finland", "DE": "Germany"},
    "ProjectStatus": {"planned": "Planned", "active": "Active", "done": "Done"},
    "Regions": {"north": "North", "south": "South"},
}

CONFIG_FIELDS = [
    field_metadata("Company", "Company", "Text", access="Mandatory", max_length=50, rank=1,
                   description="The ERP company (tenant) to sync with"),
    field_metadata("ApiKey", "API key", "Password", access="Mandatory", rank=2),
    field_metadata("Region", "Region", "List", list_name="Regions", rank=3),
    field_metadata("PageSize", "Page size", "Integer", default="100", rank=4),
]

_COMPANY_FIELDS = [
    field_metadata("name", "Name", "Text", access="Mandatory", max_length=100, rank=1),
    field_metadata("orgnr", "Organisation number", "Text", max_length=20, rank=2),
    field_metadata("email", "E-mail", "Text", max_length=200, rank=3),
    field_metadata("phone", "Phone", "Text", max_length=30, rank=4),
    field_metadata("country", "Country", "List", list_name="Countries", rank=5),
    field_metadata("creditlimit", "Credit limit", "Double", rank=6),
    field_metadata("employees", "Employees", "Integer", rank=7),
    field_metadata("active", "Active", "Checkbox", rank=8),
    field_metadata("founded", "Founded", "Date", rank=9),
    field_metadata("crmref", "CRM reference", "Text", max_length=50, rank=10,
                   description="The id of the linked CRM record"),
]
FIELDS: dict[str, list[dict]] = {
    "Customer": _COMPANY_FIELDS,
    "Supplier": _COMPANY_FIELDS,
    "Partner": _COMPANY_FIELDS,
    "Person": [
        field_metadata("firstname", "First name", "Text", max_length=50, rank=1),
        field_metadata("lastname", "Last name", "Text", access="Mandatory", max_length=50, rank=2),
        field_metadata("email", "E-mail", "Text", max_length=200, rank=3),
        field_metadata("phone", "Phone", "Text", max_length=30, rank=4),
        field_metadata("birthdate", "Birth date", "Date", rank=5),
        field_metadata("crmref", "CRM reference", "Text", max_length=50, rank=6),
    ],
    "Project": [
        field_metadata("name", "Name", "Text", access="Mandatory", max_length=100, rank=1),
        field_metadata("status", "Status", "List", list_name="ProjectStatus", rank=2),
        field_metadata("budget", "Budget", "Double", rank=3),
        field_metadata("startdate", "Start date", "Date", rank=4),
        field_metadata("crmref", "CRM reference", "Text", max_length=50, rank=5),
    ],
}
TEXT_TYPES = ("Text", "Password", "Label")


def parse_stamp(value: str) -> datetime:
    """An ISO-8601 date or date-time (``Z`` or offset or naive = UTC) → naive UTC datetime. ValueError if not."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{value!r} is not an ISO-8601 timestamp")
    parsed = datetime.fromisoformat(value.strip())
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC).replace(tzinfo=None)
    return parsed


def format_stamp(moment: datetime) -> str:
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment.strftime(STAMP_FORMAT)


class FakeClock:
    """Hands out ``LastModified`` stamps that are global and strictly increasing.

    Real time by default; with ``start`` the stamps are deterministic: ``start``, ``start + step``, …
    """

    def __init__(self, start: datetime | None = None, step: timedelta = timedelta(seconds=1)):
        self._start = start
        self._step = step
        self._last: datetime | None = None
        self._lock = threading.Lock()

    def tick(self) -> str:
        with self._lock:
            if self._start is not None:
                candidate = parse_stamp(format_stamp(self._start)) if self._last is None else self._last + self._step
            else:
                candidate = datetime.now(UTC).replace(tzinfo=None)
            if self._last is not None and candidate <= self._last:
                candidate = self._last + timedelta(microseconds=1)
            self._last = candidate
            return format_stamp(candidate)

    def observe(self, stamp: str) -> None:
        """Make later stamps come after ``stamp`` (used when a test seeds an explicit LastModified)."""
        moment = parse_stamp(stamp)
        with self._lock:
            if self._last is None or moment > self._last:
                self._last = moment

    def reset(self) -> None:
        with self._lock:
            self._last = None


@dataclass
class Fault:
    kind: str  # "status" | "raw" | "redirect" | "delay" | "error" | "warning" | "drip" | "hang" | "reset"
    method: str | None  # None = any method
    remaining: int | None  # None = until cleared
    params: dict = field(default_factory=dict)


class FaultScript:
    """An ordered list of scripted faults, shared by the HTTP middleware and the service (thread-safe)."""

    def __init__(self):
        self._faults: list[Fault] = []
        self._lock = threading.Lock()

    def add(self, kind: str, method: str | None, times: int | None, **params) -> None:
        if times is not None and times < 1:
            raise ValueError("times must be at least 1 (or None for 'until cleared')")
        with self._lock:
            self._faults.append(Fault(kind, method, times, params))

    def take(self, kinds: Iterable[str], method: str) -> Fault | None:
        kinds = set(kinds)
        with self._lock:
            for fault in self._faults:
                if fault.kind in kinds and fault.method in (None, method):
                    if fault.remaining is not None:
                        fault.remaining -= 1
                        if fault.remaining <= 0:
                            self._faults.remove(fault)
                    return fault
        return None

    def remove(self, kind: str) -> None:
        with self._lock:
            self._faults = [f for f in self._faults if f.kind != kind]

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def pending(self) -> list[Fault]:
        with self._lock:
            return list(self._faults)


def _bad_request(message: str, code: str = "BAD_REQUEST") -> ProtocolError:
    return ProtocolError(message, message, code)


def _truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


class FakeConnectorService(ConnectorService):
    """An in-memory ERP behind the protocol. All state is guarded by one lock (the server is threaded)."""

    def __init__(self, *, actor_types: Iterable[str] = DEFAULT_ACTOR_TYPES, clock: FakeClock | None = None,
                 script: FaultScript | None = None):
        self.actor_types = tuple(actor_types)
        unknown = [t for t in self.actor_types if t not in FIELDS]
        if unknown:
            raise ValueError(f"unsupported actor types {unknown}")
        self.clock = clock or FakeClock()
        self.script = script
        self.lock = threading.RLock()
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.connections: dict[str, dict] = {}
            self.actors: dict[str, dict[str, dict]] = {t: {} for t in self.actor_types}
            self.idempotency: dict[str, tuple[str, str]] = {}
            self.created: list[dict] = []  # a copy of every actor really created, in order
            self._counter = 1000
            self.clock.reset()

    # -- the protocol entry point ------------------------------------------------------------------------

    def handle(self, method: str, body: dict) -> dict:
        if self.script is not None:
            fault = self.script.take({"error"}, method)
            if fault is not None:
                return error_response(fault.params["user"], fault.params["tech"], fault.params["code"])
        with self.lock:
            result = super().handle(method, body)
        if self.script is not None and result.get("IsOk"):
            fault = self.script.take({"warning"}, method)
            if fault is not None:
                result = {**result, "State": State.WARNING.value, "UserExplanation": fault.params["text"],
                          "TechExplanation": fault.params["tech"]}
        return result

    # -- seeding and inspection helpers for tests --------------------------------------------------------

    def add_connection(self, guid: str | None = None, info: dict | None = None) -> str:
        guid = guid or str(uuid.uuid4())
        with self.lock:
            self.connections[guid] = dict(info or {"Company": "Fake AS", "ApiKey": "k"})
        return guid

    def add_actor(self, actor_type: str, field_values: dict | None = None, *, erp_key: str | None = None,
                  parent: tuple[str, str] | None = None, last_modified: str | None = None) -> str:
        """Store an actor as given (no validation of the values); returns its ErpKey."""
        with self.lock:
            self._require_type(actor_type)
            erp_key = erp_key or self._new_key(actor_type)
            if last_modified is not None:
                self.clock.observe(last_modified)
            self.actors[actor_type][erp_key] = {
                "ActorType": actor_type, "ErpKey": erp_key,
                "LastModified": last_modified or self.clock.tick(),
                "ParentActorType": parent[0] if parent else "", "ParentErpKey": parent[1] if parent else "",
                "FieldValues": dict(field_values or {}),
            }
            return erp_key

    def update_actor(self, actor_type: str, erp_key: str, field_values: dict) -> str:
        """Change an actor "in the ERP" (merging values); returns its new LastModified."""
        with self.lock:
            stored = self.actors[actor_type][erp_key]
            stored["FieldValues"].update(field_values)
            stored["LastModified"] = self.clock.tick()
            return stored["LastModified"]

    def delete_actor(self, actor_type: str, erp_key: str) -> None:
        with self.lock:
            del self.actors[actor_type][erp_key]

    def get_actor(self, actor_type: str, erp_key: str) -> dict | None:
        with self.lock:
            stored = self.actors.get(actor_type, {}).get(erp_key)
            return copy.deepcopy(stored) if stored else None

    def all_actors(self, actor_type: str) -> list[dict]:
        with self.lock:
            return copy.deepcopy(list(self.actors.get(actor_type, {}).values()))

    # -- internals ---------------------------------------------------------------------------------------

    def _new_key(self, actor_type: str) -> str:
        while True:
            self._counter += 1
            key = f"{KEY_PREFIX.get(actor_type, 'A')}{self._counter}"
            if key not in self.actors[actor_type]:
                return key

    def _require_type(self, actor_type: Any) -> str:
        if actor_type not in self.actor_types:
            raise ProtocolError(f"The ERP does not support the actor type {actor_type!r}.",
                                f"unsupported ActorType {actor_type!r}", "UNKNOWN_ACTOR_TYPE")
        return actor_type

    def _guid(self, body: dict, *, allow_zero: bool = False) -> str:
        guid = body.get("ConnectionGuid")
        if not isinstance(guid, str) or not guid:
            raise _bad_request("ConnectionGuid is missing.")
        if allow_zero and guid == ZERO_GUID:
            return guid
        if guid not in self.connections:
            raise ProtocolError("The connector does not know this connection; its settings must be sent again.",
                                f"unknown ConnectionGuid {guid}", UNKNOWN_CONNECTION_ID)
        return guid

    def _type(self, body: dict) -> str:
        return self._require_type(body.get("ActorType"))

    @staticmethod
    def _strings(body: dict, name: str, *, required: bool = False) -> list[str]:
        value = body.get(name)
        if value is None and not required:
            return []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise _bad_request(f"{name} must be a list of strings.")
        return value

    @staticmethod
    def _limit(body: dict) -> int | None:
        limit = body.get("Limit")
        if limit is None:
            return None
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise _bad_request("Limit must be a positive integer.")
        return limit

    def _fields(self, actor_type: str) -> dict[str, dict]:
        return {f["FieldKey"]: f for f in FIELDS[actor_type]}

    def _present(self, stored: dict, field_keys: list[str]) -> dict:
        known = self._fields(stored["ActorType"])
        keys = [k for k in field_keys if k in known] if field_keys else list(known)
        actor = {k: stored[k] for k in ("ActorType", "ErpKey", "LastModified", "ParentActorType", "ParentErpKey")}
        actor["FieldValues"] = {k: copy.deepcopy(stored["FieldValues"].get(k)) for k in keys}
        return actor

    def _check_value(self, meta: dict, value: Any) -> None:
        key, ftype = meta["FieldKey"], meta["FieldType"]

        def invalid(expected: str) -> ProtocolError:
            return ProtocolError(f"The value of {meta['DisplayName']} is not valid: {expected}.",
                                 f"field {key} ({ftype}) got {value!r}", "INVALID_VALUE")

        if value is None:
            return
        if ftype in ("Text", "Password", "Label", "List", "Date") and not isinstance(value, str):
            raise invalid("expected a string")
        if ftype == "Integer" and (isinstance(value, bool) or not isinstance(value, int)):
            raise invalid("expected a whole number")
        if ftype == "Double" and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise invalid("expected a number")
        if ftype == "Checkbox" and not isinstance(value, bool):
            raise invalid("expected true or false")
        if ftype == "Date":
            try:
                parse_stamp(value)
            except ValueError:
                raise invalid("expected an ISO-8601 date") from None
        if ftype == "List" and value != "" and value not in LISTS.get(meta["ListName"], {}):
            raise invalid(f"{value!r} is not an item of the list {meta['ListName']}")
        if meta["MaxLength"] and isinstance(value, str) and len(value) > meta["MaxLength"]:
            raise invalid(f"at most {meta['MaxLength']} characters")

    def _clean_values(self, actor_type: str, values: Any, *, creating: bool) -> dict:
        if values is None:
            values = {}
        if not isinstance(values, dict):
            raise _bad_request("FieldValues must be an object.")
        known = self._fields(actor_type)
        cleaned = {}
        for key, value in values.items():
            meta = known.get(key)
            if meta is None:
                continue  # unknown keys are ignored by the receiver
            self._check_value(meta, value)
            cleaned[key] = value
        for key, meta in known.items():
            if meta["Access"] == "Mandatory" and (creating or key in cleaned) and cleaned.get(key) in (None, ""):
                raise ProtocolError(f"{meta['DisplayName']} is mandatory.", f"mandatory field {key} is blank",
                                    "MISSING_FIELD")
        return cleaned

    def _check_parent(self, actor: dict) -> tuple[str, str]:
        parent_type = actor.get("ParentActorType") or ""
        parent_key = actor.get("ParentErpKey") or ""
        if not parent_type and not parent_key:
            return "", ""
        if not isinstance(parent_type, str) or not isinstance(parent_key, str):
            raise _bad_request("ParentActorType and ParentErpKey must be strings.")
        if parent_key not in self.actors.get(parent_type, {}):
            raise ProtocolError("The parent record does not exist in the ERP.",
                                f"unknown parent {parent_type}/{parent_key}", "UNKNOWN_PARENT")
        return parent_type, parent_key

    def _check_config(self, info: Any) -> None:
        if not isinstance(info, dict):
            raise _bad_request("ConnectionInfo must be an object.")
        for key in ("Company", "ApiKey"):
            if not isinstance(info.get(key), str) or not info[key].strip():
                raise ProtocolError(f"{key} is mandatory.", f"ConnectionInfo.{key} is blank", "MISSING_FIELD")
        if info["ApiKey"] == BAD_API_KEY:
            raise ProtocolError("The ERP refused the API key.", "401 from the fake ERP", "BAD_CREDENTIALS")
        region = info.get("Region")
        if region not in (None, "") and region not in LISTS["Regions"]:
            raise ProtocolError("Unknown region.", f"Region {region!r}", "INVALID_VALUE")

    @staticmethod
    def _text_match(stored: dict, searchable: list[str], text: str) -> bool:
        if not text:
            return True
        needle = text.lower()
        if stored["ErpKey"].lower() == needle:
            return True
        return any(needle in str(stored["FieldValues"].get(k) or "").lower() for k in searchable)

    def _searchable(self, actor_type: str) -> list[str]:
        return [f["FieldKey"] for f in FIELDS[actor_type] if f["FieldType"] in ("Text", "Label")]

    # -- protocol methods --------------------------------------------------------------------------------

    def GetConfigData(self, body: dict) -> dict:
        return ok_response(FieldMetaDataObjects=copy.deepcopy(CONFIG_FIELDS))

    def TestConfigData(self, body: dict) -> dict:
        self._check_config(body.get("ConnectionInfo"))
        return ok_response(UserExplanation="The settings work.")

    def SaveConnection(self, body: dict) -> dict:
        guid = body.get("ConnectionGuid")
        if not isinstance(guid, str) or not guid or guid == ZERO_GUID:
            raise _bad_request("ConnectionGuid is missing.")
        info = body.get("ConnectionInfo")
        if not isinstance(info, dict):
            raise _bad_request("ConnectionInfo must be an object.")
        self.connections[guid] = copy.deepcopy(info)
        return ok_response()

    def TestConnection(self, body: dict) -> dict:
        guid = self._guid(body)
        self._check_config(self.connections[guid])
        return ok_response(UserExplanation="The connection works.")

    def DeleteConnection(self, body: dict) -> dict:
        guid = body.get("ConnectionGuid")
        if not isinstance(guid, str) or not guid:
            raise _bad_request("ConnectionGuid is missing.")
        self.connections.pop(guid, None)  # deleting an unknown connection is already done
        return ok_response()

    def GetSupportedActorTypes(self, body: dict) -> dict:
        self._guid(body)
        return ok_response(Items=list(self.actor_types))

    def GetSupportedActorTypeFields(self, body: dict) -> dict:
        self._guid(body)
        return ok_response(FieldMetaDataObjects=copy.deepcopy(FIELDS[self._type(body)]))

    def GetSearchableFields(self, body: dict) -> dict:
        self._guid(body)
        return ok_response(Items=self._searchable(self._type(body)))

    def GetActors(self, body: dict) -> dict:
        self._guid(body)
        actor_type = self._type(body)
        keys = self._strings(body, "ErpKeys", required=True)
        field_keys = self._strings(body, "FieldKeys")
        stored = self.actors[actor_type]
        return ok_response(Actors=[self._present(stored[k], field_keys) for k in dict.fromkeys(keys) if k in stored])

    def SearchActors(self, body: dict) -> dict:
        self._guid(body)
        actor_type = self._type(body)
        text = body.get("SearchText") or ""
        if not isinstance(text, str):
            raise _bad_request("SearchText must be a string.")
        field_keys, limit, searchable = self._strings(body, "FieldKeys"), self._limit(body), self._searchable(
            actor_type)
        found = [a for a in self.actors[actor_type].values() if self._text_match(a, searchable, text)]
        return ok_response(Actors=[self._present(a, field_keys) for a in found[:limit]])

    def SearchActorByParent(self, body: dict) -> dict:
        self._guid(body)
        actor_type = self._type(body)
        text = body.get("SearchText") or ""
        parent_type, parent_key = body.get("ParentActorType"), body.get("ParentErpKey")
        if not isinstance(text, str) or not isinstance(parent_type, str) or not isinstance(parent_key, str):
            raise _bad_request("SearchText, ParentActorType and ParentErpKey must be strings.")
        field_keys, searchable = self._strings(body, "FieldKeys"), self._searchable(actor_type)
        found = [a for a in self.actors[actor_type].values()
                 if a["ParentActorType"] == parent_type and a["ParentErpKey"] == parent_key
                 and self._text_match(a, searchable, text)]
        return ok_response(Actors=[self._present(a, field_keys) for a in found])

    def SearchActorsAdvanced(self, body: dict) -> dict:
        self._guid(body)
        actor_type = self._type(body)
        restrictions = body.get("Restrictions") or []
        if not isinstance(restrictions, list) or not all(isinstance(r, dict) for r in restrictions):
            raise _bad_request("Restrictions must be a list of objects.")
        known = self._fields(actor_type)
        checks = [self._restriction(known, r) for r in restrictions]
        field_keys = self._strings(body, "FieldKeys")
        found = [a for a in self.actors[actor_type].values() if all(check(a) for check in checks)]
        return ok_response(Actors=[self._present(a, field_keys) for a in found])

    def CreateActor(self, body: dict) -> dict:
        self._guid(body)
        actor = body.get("Actor")
        if not isinstance(actor, dict):
            raise _bad_request("Actor must be an object.")
        actor_type = self._require_type(actor.get("ActorType"))
        key = body.get("IdempotencyKey")
        if key is not None and not isinstance(key, str):
            raise _bad_request("IdempotencyKey must be a string.")
        if key and key in self.idempotency:
            seen_type, seen_key = self.idempotency[key]
            stored = self.actors.get(seen_type, {}).get(seen_key)
            if stored is not None:
                return ok_response(Actor=self._present(stored, []))
        values = self._clean_values(actor_type, actor.get("FieldValues"), creating=True)
        parent_type, parent_key = self._check_parent(actor)
        erp_key = self._new_key(actor_type)
        stored = {"ActorType": actor_type, "ErpKey": erp_key, "LastModified": self.clock.tick(),
                  "ParentActorType": parent_type, "ParentErpKey": parent_key, "FieldValues": values}
        self.actors[actor_type][erp_key] = stored
        if key:
            self.idempotency[key] = (actor_type, erp_key)
        self.created.append(copy.deepcopy(stored))
        return ok_response(Actor=self._present(stored, []))

    def SaveActors(self, body: dict) -> dict:
        self._guid(body)
        actors = body.get("Actors")
        if not isinstance(actors, list) or not all(isinstance(a, dict) for a in actors):
            raise _bad_request("Actors must be a list of objects.")
        plan = []
        for actor in actors:  # validate everything first: all or nothing
            actor_type = self._require_type(actor.get("ActorType"))
            erp_key = actor.get("ErpKey")
            if erp_key not in self.actors[actor_type]:
                raise ProtocolError(f"The {actor_type} {erp_key!r} does not exist in the ERP.",
                                    f"unknown ErpKey {actor_type}/{erp_key!r}", "UNKNOWN_ERP_KEY")
            values = self._clean_values(actor_type, actor.get("FieldValues"), creating=False)
            parent = self._check_parent(actor) if ("ParentActorType" in actor or "ParentErpKey" in actor) else None
            plan.append((self.actors[actor_type][erp_key], values, parent))
        saved = []
        for stored, values, parent in plan:
            stored["FieldValues"].update(values)
            if parent is not None:
                stored["ParentActorType"], stored["ParentErpKey"] = parent
            stored["LastModified"] = self.clock.tick()
            saved.append(self._present(stored, []))
        return ok_response(Actors=saved)

    def GetList(self, body: dict) -> dict:
        self._guid(body, allow_zero=True)
        return ok_response(ListItems=dict(self._list(body)))

    def GetListItems(self, body: dict) -> dict:
        self._guid(body, allow_zero=True)
        items = self._list(body)
        keys = self._strings(body, "ListItemKeys", required=True)
        return ok_response(ListItems={k: items[k] for k in keys if k in items})

    def _list(self, body: dict) -> dict[str, str]:
        name = body.get("ListName")
        if name not in LISTS:
            raise ProtocolError(f"The ERP has no list called {name!r}.", f"unknown ListName {name!r}", "UNKNOWN_LIST")
        return LISTS[name]

    def GetActorsByTimestamp(self, body: dict) -> dict:
        self._guid(body)
        actor_type = self._type(body)
        since_text = body.get("UpdatedOnOrAfter") or ""
        try:
            since = parse_stamp(since_text) if since_text else None
        except (TypeError, ValueError):
            raise _bad_request("UpdatedOnOrAfter must be an ISO-8601 timestamp.") from None
        field_keys, limit = self._strings(body, "FieldKeys"), self._limit(body)
        ordered = sorted(((parse_stamp(a["LastModified"]), a["ErpKey"], a) for a in self.actors[actor_type].values()
                          if since is None or parse_stamp(a["LastModified"]) >= since), key=lambda t: t[:2])
        cursor = body.get("Cursor")
        if cursor:
            after = _decode_cursor(cursor)
            ordered = [t for t in ordered if t[:2] > after]
        next_cursor = None
        if limit is not None and len(ordered) > limit:
            ordered = ordered[:limit]
            next_cursor = _encode_cursor(ordered[-1][0], ordered[-1][1])
        return ok_response(Actors=[self._present(t[2], field_keys) for t in ordered], NextCursor=next_cursor)

    def _restriction(self, known: dict[str, dict], restriction: dict):
        key, op, values = restriction.get("FieldKey"), restriction.get("Operator"), restriction.get("Values")
        if key in ("ParentErpKey", "ParentActorType"):
            ftype = "Text"
        elif key in known:
            ftype = known[key]["FieldType"]
        else:
            raise _bad_request(f"Unknown search field {key!r}.", "BAD_RESTRICTION")
        if op not in OPERATORS.get(ftype, ()):
            raise _bad_request(f"The operator {op!r} cannot be used with {key} ({ftype}).", "BAD_RESTRICTION")
        if not isinstance(values, list) or not values or (op == "between" and len(values) < 2):
            raise _bad_request(f"The restriction on {key} needs values.", "BAD_RESTRICTION")
        try:
            test = _comparator(ftype, op, values)
        except (TypeError, ValueError):
            raise _bad_request(f"The values of the restriction on {key} are not valid.", "BAD_RESTRICTION") from None

        def check(stored: dict) -> bool:
            value = stored[key] if key in ("ParentErpKey", "ParentActorType") else stored["FieldValues"].get(key)
            try:
                return test(value)
            except (TypeError, ValueError):
                return False

        return check


def _comparator(ftype: str, op: str, values: list):
    """A predicate for one SearchRestriction (values already checked to be a non-empty list)."""
    if ftype in TEXT_TYPES:
        vs = [str(v).lower() for v in values]
        text_ops = {
            "=": lambda x: x == vs[0], "isnot": lambda x: x != vs[0],
            "begins": lambda x: x.startswith(vs[0]), "notbegins": lambda x: not x.startswith(vs[0]),
            "contains": lambda x: vs[0] in x, "notcontains": lambda x: vs[0] not in x,
            "ends": lambda x: x.endswith(vs[0]), "notends": lambda x: not x.endswith(vs[0]),
            "between": lambda x: vs[0] <= x <= vs[1],
        }
        return lambda value: text_ops[op](str(value if value is not None else "").lower())
    if ftype in ("Integer", "Double"):
        nums = [float(v) for v in values if not isinstance(v, bool)]
        if len(nums) != len(values):
            raise ValueError("booleans are not numbers")
        num_ops = {
            "=": lambda x: x == nums[0], "!=": lambda x: x != nums[0], ">": lambda x: x > nums[0],
            "<": lambda x: x < nums[0], ">=": lambda x: x >= nums[0], "<=": lambda x: x <= nums[0],
            "between": lambda x: nums[0] <= x <= nums[1],
        }
        return lambda value: value is not None and not isinstance(value, bool) and num_ops[op](float(value))
    if ftype == "Checkbox":
        wanted = _truthy(values[0])
        return lambda value: bool(value) == wanted
    if ftype == "List":
        keys = {str(v) for v in values}
        return (lambda value: value in keys) if op == "oneof" else (lambda value: value not in keys)
    if ftype == "Date":
        bounds = [parse_stamp(str(v)) for v in values]
        date_only = all(len(str(v).strip()) == 10 for v in values)

        def norm(moment: datetime):
            return moment.date() if date_only else moment

        lo, hi = norm(bounds[0]), norm(bounds[-1])
        date_ops = {
            "=": lambda x: x == lo, "before": lambda x: x < lo, "after": lambda x: x > lo,
            "beforeOrEqual": lambda x: x <= lo, "afterOrEqual": lambda x: x >= lo,
            "between": lambda x: lo <= x <= hi,
        }
        return lambda value: value not in (None, "") and date_ops[op](norm(parse_stamp(value)))
    raise ValueError(f"no comparator for {ftype}")


def _encode_cursor(moment: datetime, erp_key: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([format_stamp(moment), erp_key]).encode()).decode().rstrip("=")


def _decode_cursor(cursor: Any) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        stamp, erp_key = json.loads(raw)
        return parse_stamp(stamp), str(erp_key)
    except (TypeError, ValueError):
        raise _bad_request("The Cursor is not valid.", "BAD_CURSOR") from None


# --- the HTTP server with fault injection ------------------------------------------------------------------


@dataclass
class RecordedRequest:
    method: str  # the protocol method taken from the path ("" when the path has none)
    body: Any  # the JSON body (None when it was not JSON)
    headers: dict[str, str]
    path: str
    status: int | None = None  # the HTTP status answered


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, *args, **kwargs) -> None:  # no access log lines in test output
        pass


class FakeConnector:
    """A :class:`FakeConnectorService` served on ``http://127.0.0.1:<port><prefix>`` with fault injection.

    See the module docstring for the API. Seeding helpers (``add_connection``, ``add_actor`` …) delegate to
    ``self.service``.
    """

    def __init__(self, *, token: str | None = None, prefix: str = "/erp", actor_types=DEFAULT_ACTOR_TYPES,
                 clock: FakeClock | None = None, service: FakeConnectorService | None = None):
        self.script = FaultScript()
        self.service = service or FakeConnectorService(actor_types=actor_types, clock=clock)
        self.service.script = self.script
        self.token = token
        self.prefix = "/" + prefix.strip("/") if prefix.strip("/") else ""
        self._inner = make_wsgi_app(self.service, token=token, prefix=self.prefix)
        self.requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._wake = threading.Event()  # set to end the streaming faults in progress (stop(), reset())
        self._server = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------------------

    def start(self) -> Self:
        if self._server is not None:
            return self
        self._stopping.clear()
        self._wake = threading.Event()
        self._server = make_server("127.0.0.1", 0, self.wsgi_app, threaded=True, request_handler=_QuietHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"fake-connector-{self.port}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # wakes any scripted delay
        self._wake.set()  # and ends any streaming fault
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the fake connector is not running; call start()")
        return self._server.server_port

    @property
    def url(self) -> str:
        """The connector's base URL, e.g. ``http://127.0.0.1:54321/erp``."""
        return f"http://127.0.0.1:{self.port}{self.prefix}"

    def reset(self) -> None:
        """Forget faults, recorded requests and all ERP state (the server keeps running); streaming faults still
        in progress end."""
        self.script.clear()
        self._wake.set()
        self._wake = threading.Event()
        with self._lock:
            self.requests.clear()
        self.service.reset()

    # -- recorded traffic --------------------------------------------------------------------------------

    @property
    def calls(self) -> list[tuple[str, Any]]:
        """``(method, body)`` for every request received, in order (faulted requests included)."""
        with self._lock:
            return [(r.method, r.body) for r in self.requests]

    def calls_to(self, method: str) -> list[Any]:
        """The bodies of the requests for ``method``."""
        return [body for name, body in self.calls if name == method]

    # -- seeding -----------------------------------------------------------------------------------------

    def add_connection(self, guid: str | None = None, info: dict | None = None) -> str:
        return self.service.add_connection(guid, info)

    def add_actor(self, actor_type: str, field_values: dict | None = None, **kwargs) -> str:
        return self.service.add_actor(actor_type, field_values, **kwargs)

    def update_actor(self, actor_type: str, erp_key: str, field_values: dict) -> str:
        return self.service.update_actor(actor_type, erp_key, field_values)

    def delete_actor(self, actor_type: str, erp_key: str) -> None:
        self.service.delete_actor(actor_type, erp_key)

    def get_actor(self, actor_type: str, erp_key: str) -> dict | None:
        return self.service.get_actor(actor_type, erp_key)

    @property
    def connections(self) -> dict[str, dict]:
        with self.service.lock:
            return copy.deepcopy(self.service.connections)

    def forget_connections(self) -> None:
        """The connector "loses" every connection: GUID calls answer UNKNOWN_CONNECTION_ID until re-saved."""
        with self.service.lock:
            self.service.connections.clear()

    # -- faults ------------------------------------------------------------------------------------------

    def fail_next(self, n: int = 1, status: int = 500, *, method: str | None = None, body: bytes | str | None = None,
                  content_type: str = "text/plain", retry_after: int | str | None = None) -> None:
        """The next ``n`` requests (for ``method``, or any) answer ``status`` without reaching the service."""
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
        if body is None:
            body = f"{status} failure injected by FakeConnector"
        self.script.add("status", method, n, status=status, body=body, content_type=content_type, headers=headers)

    def reply_raw(self, body: bytes | str | list[bytes], status: int = 200, content_type: str = "application/json",
                  *, method: str | None = None, times: int = 1, headers: dict | None = None) -> None:
        """Answer these exact bytes (garbage, HTML, huge bodies …) instead of the service's answer.

        A list of byte chunks is sent with chunked encoding, i.e. without a Content-Length header."""
        self.script.add("raw", method, times, status=status, body=body, content_type=content_type,
                        headers=dict(headers or {}))

    def redirect_next(self, url: str, status: int = 302, *, method: str | None = None, times: int = 1) -> None:
        self.script.add("redirect", method, times, url=url, status=status)

    def delay(self, seconds: float, *, method: str | None = None, times: int | None = None,
              after_processing: bool = False) -> None:
        """Answer ``seconds`` late. With ``after_processing`` the service runs first (the write happens, the
        answer is late: an "unknown outcome" for a client that times out). ``delay(0)`` removes all delays."""
        if seconds <= 0:
            self.script.remove("delay")
            return
        self.script.add("delay", method, times, seconds=seconds, after=after_processing)

    def reply_warning(self, method: str | None, text: str, *, tech: str = "", times: int = 1) -> None:
        """The next successful answer to ``method`` comes with ``State: Warning`` and this explanation."""
        self.script.add("warning", method, times, text=text, tech=tech)

    def reply_error(self, method: str | None, user_explanation: str, *, error_code: str = "", tech: str = "",
                    times: int = 1) -> None:
        """The next call of ``method`` answers ``IsOk: false`` (HTTP 200) without running."""
        self.script.add("error", method, times, user=user_explanation, code=error_code, tech=tech)

    def drip(self, interval: float, method: str | None = None, times: int | None = 1) -> None:
        """Send the answer's status and headers at once, then its body one byte every ``interval`` seconds: a peer
        that never trips a per-read timeout. The service runs first (a write is applied)."""
        self.script.add("drip", method, times, interval=float(interval))

    def hang_after_headers(self, seconds: float, method: str | None = None, times: int | None = 1) -> None:
        """Send the answer's status and headers at once, then nothing for ``seconds``, then the body."""
        self.script.add("hang", method, times, seconds=float(seconds))

    def reset_connection(self, method: str | None = None, times: int | None = 1, *,
                         after_bytes: int | None = None) -> None:
        """Send the answer's status, headers and first ``after_bytes`` body bytes (default: half the body), then
        close the socket abruptly (SO_LINGER 0: a TCP reset). The service runs first (a write is applied)."""
        self.script.add("reset", method, times, after_bytes=after_bytes)

    def clear_faults(self) -> None:
        self.script.clear()

    # -- the WSGI layer ----------------------------------------------------------------------------------

    def _method_of(self, path: str) -> str:
        if self.prefix and path.startswith(self.prefix):
            path = path[len(self.prefix):]
        return path.strip("/")

    def wsgi_app(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        method = self._method_of(path)
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        raw = environ["wsgi.input"].read(length) if length > 0 else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        headers = {key.title(): value for key, value in _environ_headers(environ)}
        idem = headers.get("Idempotency-Key")
        if method == "CreateActor" and isinstance(body, dict) and idem and not body.get("IdempotencyKey"):
            body["IdempotencyKey"] = idem  # the header form of the (ext) IdempotencyKey member
            raw = json.dumps(body).encode()
        environ["wsgi.input"] = io.BytesIO(raw)
        environ["CONTENT_LENGTH"] = str(len(raw))
        record = RecordedRequest(method, copy.deepcopy(body), headers, path)
        with self._lock:
            self.requests.append(record)

        delay = self.script.take({"delay"}, method)
        if delay is not None and not delay.params["after"]:
            self._stopping.wait(delay.params["seconds"])

        fault = self.script.take({"status", "raw", "redirect"}, method)
        if fault is not None:
            response = self._fault_response(fault)
            record.status = response.status_code
            return response(environ, start_response)

        captured: dict[str, Any] = {}
        chunks: list[bytes] = []

        def capture(status, response_headers, exc_info=None):
            captured["status"], captured["headers"] = status, response_headers
            return chunks.append

        result = self._inner(environ, capture)
        try:
            chunks.extend(result)
        finally:
            if hasattr(result, "close"):
                result.close()
        if delay is not None and delay.params["after"]:
            self._stopping.wait(delay.params["seconds"])
        record.status = int(captured["status"].split()[0])
        stream = self.script.take({"drip", "hang", "reset"}, method)
        start_response(captured["status"], captured["headers"])
        if stream is not None:
            return self._streamed(stream, b"".join(chunks), environ.get("werkzeug.socket"), self._wake)
        return chunks

    @staticmethod
    def _streamed(fault: Fault, body: bytes, sock, wake: threading.Event):
        """The body of a streaming fault. werkzeug sends the status and headers on the first (empty) write; every
        wait ends early when ``wake`` is set (stop/reset), and a client that went away ends the generator at the
        next write (werkzeug treats the write error as a dropped connection)."""
        params = fault.params
        yield b""
        if fault.kind == "hang":
            if wake.wait(params["seconds"]):
                return
            yield body
        elif fault.kind == "drip":
            for index in range(len(body)):
                if wake.wait(params["interval"]):
                    return
                yield body[index:index + 1]
        elif fault.kind == "reset":
            cut = len(body) // 2 if params["after_bytes"] is None else max(0, min(params["after_bytes"], len(body)))
            if cut:
                yield body[:cut]
            if sock is not None:  # closed with linger 0 by the server (after this error): RST, not FIN
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            raise ConnectionResetError("connection reset injected by FakeConnector")

    @staticmethod
    def _fault_response(fault: Fault) -> Response:
        params = fault.params
        if fault.kind == "redirect":
            return Response("", status=params["status"], headers={"Location": params["url"]})
        body = params["body"]
        if isinstance(body, str):
            body = body.encode()
        elif isinstance(body, list | tuple):
            body = iter(body)  # a list of chunks is streamed without Content-Length (chunked encoding)
        return Response(body, status=params["status"],
                        content_type=params["content_type"], headers=params.get("headers") or {})


def _environ_headers(environ) -> Iterable[tuple[str, str]]:
    for key, value in environ.items():
        if key.startswith("HTTP_"):
            yield key[5:].replace("_", "-"), value
        elif key in ("CONTENT_TYPE", "CONTENT_LENGTH") and value:
            yield key.replace("_", "-"), value

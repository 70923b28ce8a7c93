"""The machinery every check uses: :meth:`CheckRunner.check` runs one check into a :class:`CheckResult` (with the
notes and warnings it gathered); :meth:`CheckRunner.call` calls the connector and notes missing response members;
and the state the checks share — the connection, each actor type's fields and actors, the lists, the highest
LastModified seen — with the helpers that read actors and lists out of answers.

The checks themselves are mixins of :class:`CheckRunner`, one module per protocol area; ``kit.ConformanceKit``
puts them together and runs them in order."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from portal.connectors.client import ConnectorClient, ConnectorError, Reply
from portal.connectors.conformance.results import FAIL, PASS, SKIP, WARN, CheckResult, Failed, Skipped
from portal.connectors.conformance.validation import parse_last_modified, value_problem
from portal.connectors.conformance.wording import _error_text, _json_type, _listing, _short
from portal.connectors.protocol import ACTOR_TYPES, State

ENVELOPE = ("IsOk", "State", "UserExplanation", "TechExplanation", "ErrorCode")
STATE_VALUES = tuple(s.value for s in State)
REASON_LIMIT = 600

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


class CheckRunner:
    """Runs one check at a time and holds what the checks share; ``kit.ConformanceKit`` runs them all."""

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

    def result_of(self, name: str) -> CheckResult | None:
        return next((r for r in reversed(self.results) if r.name == name), None)

    # -- reading answers ------------------------------------------------------------------------------------

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

    def list_items(self, reply: Reply) -> dict[str, str]:
        items = self.member(reply, "ListItems", dict, "an object of {key: text}")
        bad = [f"{k}: {_json_type(v)}" for k, v in items.items() if not isinstance(v, str)]
        if bad:
            raise Failed(f"{reply.method}: ListItems texts must be strings ({_listing(bad)})")
        return items

    def fetch_list(self, name: str) -> dict[str, str]:
        if name not in self.lists:
            self.lists[name] = self.list_items(self.call("GetList", {"ConnectionGuid": self.guid, "ListName": name}))
        return self.lists[name]

"""A FakeConnectorService whose change feed and clock do the nastiest things the connector contract allows.

``FeedConnectorService`` is a :class:`tests.fakes.connector_app.FakeConnectorService` (an in-memory ERP behind
the fixed protocol of shared/docs/connector-protocol.md) with:

* **feed paging** (``feed=``) for ``GetActorsByTimestamp`` with a ``Limit``:

  - ``"keyset"`` — the base class's behaviour: pages ordered by (LastModified, ErpKey), ``NextCursor`` encodes
    the last (stamp, key) read;
  - ``"offset"`` — ``NextCursor`` is an *index* into the list of matching actors ordered by LastModified **as
    it is at the time of each call**: an actor written between two pages moves to the end of the feed and every
    actor behind it shifts one place forward (the contract names this explicitly);
  - ``"none"`` — ``Limit`` is ignored, every matching actor comes in one answer.

* **stamps** (``stamps=``), always ISO-8601 UTC, global and never decreasing (contract):

  - ``"distinct"`` — every write gets a new, strictly increasing stamp with microseconds;
  - ``"seconds"`` — a virtual clock advancing ``step`` per write (0.4 s by default), printed with one-second
    resolution, so two or three consecutive writes share a stamp (``advance()`` moves it on);
  - ``"frozen"`` — a clock at rest: every write gets the same stamp.

* **reordering** (``reorder=True``): actors with equal stamps come in a new random order on every call (offset
  and unpaged feeds only: a keyset cursor defines the order of ties by the key, so shuffling them would make the
  *connector* skip actors). The order of ties is not specified by the contract. ``reorder`` can be switched off
  at any time (``service.reorder = False``) — a model test does so for its final "clean" runs.

* **ERP users**: :meth:`erp_edit` changes fields of an actor as a user of the ERP would (a new stamp from the
  clock), :meth:`erp_move` gives a Person another parent.

* **what the portal overwrote**: every value a ``SaveActors`` changed is appended to :attr:`overwrites` as
  ``Overwrite(actor_type, erp_key, field, old, new)`` (``field`` ``"ParentErpKey"`` for a parent move), so a
  test can check that each overwritten ERP value is on record in the portal's change log.

* **crashes**: :meth:`crash_on_save` makes the *n*-th following ``SaveActors`` raise :class:`SimulatedCrash`
  (a ``BaseException``: nothing in the portal catches it, like a killed process) either before anything is
  applied (``when="before"``: the request never reached the ERP) or after the ERP applied it
  (``when="after"``: the ERP wrote, the answer is lost).

It can be served in process as a ``builtin:`` connector (:meth:`register_builtin` sets :attr:`url`), so the
``tests.sync_support`` helpers (``make_connection``, ``link_company`` …) work with it directly.
"""

from __future__ import annotations

import copy
import random
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from portal.connectors.protocol import ok_response
from portal.connectors.service import ProtocolError
from tests.fakes.connector_app import DEFAULT_ACTOR_TYPES, FakeConnectorService, parse_stamp

FEED_MODES = ("keyset", "offset", "none")
STAMP_MODES = ("distinct", "seconds", "frozen")
EPOCH = datetime(2026, 1, 1, 8, 0, 0)


class SimulatedCrash(BaseException):  # noqa: N818 - a crash, not an error anybody should handle
    """The process running the sync "dies" here. A BaseException, so no ``except Exception`` catches it."""


@dataclass(frozen=True)
class Overwrite:
    actor_type: str
    erp_key: str
    field: str
    old: object
    new: object


class FeedClock:
    """LastModified stamps for the three stamp modes; global and never decreasing in all of them."""

    def __init__(self, mode: str = "distinct", *, step: timedelta = timedelta(milliseconds=400),
                 start: datetime = EPOCH):
        if mode not in STAMP_MODES:
            raise ValueError(f"unknown stamp mode {mode!r}")
        self.mode = mode
        self.step = step
        self.start = start
        self.reset()

    def reset(self) -> None:
        self.now = self.start

    def _format(self, moment: datetime) -> str:
        if self.mode == "distinct":
            return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")

    def tick(self) -> str:
        if self.mode == "distinct":
            self.now += timedelta(microseconds=1000)
        elif self.mode == "seconds":
            self.now += self.step
        return self._format(self.now)

    def advance(self, seconds: float) -> None:
        """Time passes (not in the frozen mode)."""
        if self.mode != "frozen":
            self.now += timedelta(seconds=seconds)

    def observe(self, stamp: str) -> None:
        moment = parse_stamp(stamp)
        if moment > self.now and self.mode != "frozen":
            self.now = moment


class FeedConnectorService(FakeConnectorService):
    """See the module docstring. ``seed`` makes the reordering of equal stamps reproducible."""

    def __init__(self, *, feed: str = "keyset", stamps: str = "distinct", reorder: bool = False, seed: int = 0,
                 actor_types=DEFAULT_ACTOR_TYPES, step: timedelta = timedelta(milliseconds=400)):
        if feed not in FEED_MODES:
            raise ValueError(f"unknown feed mode {feed!r}")
        self.feed = feed
        self.reorder = reorder
        self.random = random.Random(seed)
        self.overwrites: list[Overwrite] = []
        self.save_calls = 0
        self.feed_calls = 0
        self._crash: tuple[str, int] | None = None
        self.url = ""
        super().__init__(actor_types=actor_types, clock=FeedClock(stamps, step=step))

    def reset(self) -> None:
        super().reset()
        self.overwrites = []
        self.save_calls = 0
        self.feed_calls = 0
        self._crash = None

    # -- wiring ------------------------------------------------------------------------------------------

    def register_builtin(self, name: str | None = None) -> str:
        """Serve this service in process as ``builtin:<name>`` (a fresh name by default); returns the URL."""
        from portal.connectors import builtin

        name = name or f"feedfake-{uuid.uuid4().hex[:12]}"
        builtin.register(name)(lambda _config: self)
        self.url = f"builtin:{name}"
        return self.url

    # -- the ERP's users ---------------------------------------------------------------------------------

    def erp_edit(self, actor_type: str, erp_key: str, field_values: dict) -> str:
        """A user of the ERP changes these fields (no validation); returns the new LastModified."""
        return self.update_actor(actor_type, erp_key, field_values)

    def erp_move(self, actor_type: str, erp_key: str, parent: tuple[str, str]) -> str:
        """A user of the ERP gives the actor another parent; returns the new LastModified."""
        with self.lock:
            stored = self.actors[actor_type][erp_key]
            stored["ParentActorType"], stored["ParentErpKey"] = parent
            stored["LastModified"] = self.clock.tick()
            return stored["LastModified"]

    def values(self, actor_type: str, erp_key: str) -> dict:
        with self.lock:
            return copy.deepcopy(self.actors[actor_type][erp_key]["FieldValues"])

    # -- faults ------------------------------------------------------------------------------------------

    def crash_on_save(self, n: int = 1, when: str = "after") -> None:
        """The ``n``-th SaveActors from now raises SimulatedCrash ``before`` applying anything or ``after`` the
        ERP applied it (the answer is lost)."""
        if when not in ("before", "after") or n < 1:
            raise ValueError("crash_on_save(n >= 1, when='before'|'after')")
        self._crash = (when, self.save_calls + n)

    def clear_crash(self) -> None:
        self._crash = None

    # -- protocol methods --------------------------------------------------------------------------------

    def SaveActors(self, body: dict) -> dict:
        with self.lock:
            self.save_calls += 1
            crash = self._crash if self._crash and self._crash[1] == self.save_calls else None
            if crash is not None:
                self._crash = None
            if crash is not None and crash[0] == "before":
                raise SimulatedCrash(f"killed before SaveActors #{self.save_calls} reached the ERP")
            before = {}
            for actor in body.get("Actors") or []:
                if isinstance(actor, dict):
                    stored = self.actors.get(actor.get("ActorType"), {}).get(actor.get("ErpKey"))
                    if stored is not None:
                        before[(stored["ActorType"], stored["ErpKey"])] = copy.deepcopy(stored)
            answer = super().SaveActors(body)
            if answer.get("IsOk"):
                for (actor_type, erp_key), old in before.items():
                    new = self.actors[actor_type][erp_key]
                    for key in sorted(set(old["FieldValues"]) | set(new["FieldValues"])):
                        was, now = old["FieldValues"].get(key), new["FieldValues"].get(key)
                        if was != now:
                            self.overwrites.append(Overwrite(actor_type, erp_key, key, was, now))
                    if old["ParentErpKey"] != new["ParentErpKey"]:
                        self.overwrites.append(Overwrite(actor_type, erp_key, "ParentErpKey", old["ParentErpKey"],
                                                         new["ParentErpKey"]))
            if crash is not None:
                raise SimulatedCrash(f"killed after SaveActors #{self.save_calls} was applied, before its answer")
            return answer

    def GetActorsByTimestamp(self, body: dict) -> dict:
        self.feed_calls += 1
        if self.feed == "keyset":
            return super().GetActorsByTimestamp(body)
        self._guid(body)
        actor_type = self._type(body)
        since_text = body.get("UpdatedOnOrAfter") or ""
        try:
            since = parse_stamp(since_text) if since_text else None
        except (TypeError, ValueError):
            raise ProtocolError("UpdatedOnOrAfter must be an ISO-8601 timestamp.",
                                "UpdatedOnOrAfter must be an ISO-8601 timestamp.", "BAD_REQUEST") from None
        field_keys, limit = self._strings(body, "FieldKeys"), self._limit(body)
        matching = [(parse_stamp(a["LastModified"]), a["ErpKey"], a) for a in self.actors[actor_type].values()
                    if since is None or parse_stamp(a["LastModified"]) >= since]
        if self.reorder:
            self.random.shuffle(matching)
            ordered = sorted(matching, key=lambda t: t[0])  # stable: ties keep the shuffled order
        else:
            ordered = sorted(matching, key=lambda t: t[:2])
        if self.feed == "none" or limit is None:
            return ok_response(Actors=[self._present(t[2], field_keys) for t in ordered], NextCursor=None)
        cursor = body.get("Cursor")
        try:
            offset = int(cursor) if cursor else 0
        except (TypeError, ValueError):
            raise ProtocolError("The Cursor is not valid.", "The Cursor is not valid.", "BAD_CURSOR") from None
        if offset < 0:
            raise ProtocolError("The Cursor is not valid.", "negative offset", "BAD_CURSOR")
        page = ordered[offset:offset + limit]
        next_cursor = str(offset + limit) if len(ordered) > offset + limit else None
        return ok_response(Actors=[self._present(t[2], field_keys) for t in page], NextCursor=next_cursor)

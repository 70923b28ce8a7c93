"""Isolation from a slow or broken ERP: a circuit breaker and bulkheads per connection.

One :class:`CallGuard` per process holds, for every connection (its GUID), a :class:`Breaker` and a bulkhead
(a bounded number of calls in flight). :class:`portal.connectors.client.ConnectorClient` asks it around every
protocol call that names a connection (``ConnectionGuid``), with a :class:`Lane` saying who is calling:

* **web** (the ERP tab): at most ``per_connection`` calls in flight per connection; a call that finds no free
  slot within ``wait`` seconds is answered at once with ``BUSY`` ("Demo ERP is slow: 2 requests are already
  waiting for it. Try again in a moment.") instead of parking one more web thread on the ERP. Over all
  connections, ``total`` caps the **parked** calls (in flight for more than ``parked_after``, 1 s): a connection
  that already has a parked call gets no new one once ``total`` are parked, while a connection whose calls are all
  quick is never refused by it, so two hanging ERPs cannot lock a healthy one out of the tab (a plain cap on calls
  in flight did: the bench's healthy ERP tab showed values in 11 of 125 loads). With gunicorn's 8 threads and
  the defaults (2 per connection, 4 parked), at least 4 threads serve the pages that need no ERP, whatever
  the ERPs do, but for the second a quick call takes before it counts as parked.
* **sync** (runs, reconcile, import): runs are one at a time per connection already (the scheduler's lanes), so
  their calls take no web slot; they obey the breaker only.

The **breaker** counts consecutive failed calls of a connection: a transient :class:`ConnectorError` (timeout,
unreachable, 5xx, the connector's own transient codes such as ``ERP_UNREACHABLE``). Any answer from the ERP, an
error about one record included, proves it alive and resets the count. After ``failures`` failures in a row it
**opens**: calls fail at once with ``ERP_NOT_ANSWERING`` ("Demo ERP is not answering since 10:42 UTC; retrying at
10:43 UTC.") for the cool-down. After it, exactly **one** call goes through as a probe (the others keep failing
fast while it is in flight): an answer closes the breaker; a failure opens it again with twice the cool-down,
capped at ``max_cooldown``.

Why not ``pybreaker``: its ``CircuitBreaker.call`` holds the breaker's lock for the whole guarded call (1.2.0:
``with self._lock: return self.state.call(func, ...)``), so calls to one ERP would run one at a time, and a
60-second call would block every other caller of that ERP behind it: the opposite of a bulkhead. Its half-open
state also lets every concurrent caller through, not one probe. What is needed here is ~100 lines of state under
a short lock, and is unit-tested below the client.

The state lives in the process (the web process runs the scheduler, so the ERP tab, the Sync tab and the runs
share it); a command-line ``erp sync`` has its own, and starts closed.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum

CLOSED, OPEN, PROBING = "closed", "open", "probing"
NOT_ANSWERING = "ERP_NOT_ANSWERING"
BUSY = "BUSY"
GUARD_CODES = frozenset({NOT_ANSWERING, BUSY})  # the guard's own refusals: never counted as ERP failures


class Lane(StrEnum):
    WEB = "web"
    SYNC = "sync"


@dataclass(frozen=True)
class GuardSettings:
    failures: int = 5  # consecutive failed calls that open the breaker
    cooldown: float = 30.0  # seconds before the first probe
    max_cooldown: float = 300.0  # the cool-down doubles after each failed probe, up to this
    per_connection: int = 2  # web calls in flight per connection
    total: int = 4  # parked web calls over all connections (see the module docstring)
    parked_after: float = 1.0  # seconds after which a web call in flight counts as parked
    wait: float = 0.05  # seconds a web call waits for a free slot before it is answered BUSY (see the bench)


@dataclass
class BreakerStatus:
    state: str
    failures: int = 0
    since: datetime | None = None  # when the breaker opened (UTC, naive like the database's)
    retry_at: datetime | None = None  # when the next probe may go (UTC)
    last_error: str = ""

    @property
    def is_open(self) -> bool:
        return self.state != CLOSED

    def message(self, name: str) -> str:
        if not self.is_open:
            return ""
        since = _hhmm(self.since)
        if self.state == PROBING:
            return f"{name} is not answering since {since}; checking again now."
        return f"{name} is not answering since {since}; retrying at {_hhmm(self.retry_at)}."


def _hhmm(moment: datetime | None) -> str:
    return moment.strftime("%H:%M UTC") if moment is not None else "?"


def _utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


@dataclass
class Breaker:
    """The breaker of one connection. Not thread-safe by itself: :class:`CallGuard` holds its lock."""

    settings: GuardSettings
    clock: Callable[[], float] = time.monotonic
    wall: Callable[[], datetime] = _utcnow
    state: str = CLOSED
    failures: int = 0
    cooldown: float = 0.0
    reopen_at: float = 0.0  # clock() of the next probe
    since: datetime | None = None
    retry_at: datetime | None = None
    last_error: str = ""

    def admit(self) -> bool:
        """May a call go now? True: go (it may be the probe). False: fail fast."""
        if self.state == CLOSED:
            return True
        if self.state == OPEN and self.clock() >= self.reopen_at:
            self.state = PROBING  # this caller is the one probe
            return True
        return False

    def succeeded(self) -> None:
        self.state, self.failures, self.cooldown = CLOSED, 0, 0.0
        self.since = self.retry_at = None
        self.last_error = ""

    def failed(self, error: str) -> None:
        self.failures += 1
        self.last_error = error
        if self.state == PROBING:
            self._open(min(self.settings.max_cooldown, max(self.cooldown, self.settings.cooldown) * 2))
        elif self.state == CLOSED and self.failures >= self.settings.failures:
            self.since = self.wall()
            self._open(self.settings.cooldown)

    def abandoned(self) -> None:
        """The probe ended without an answer either way (e.g. cancelled): let the next caller probe."""
        if self.state == PROBING:
            self.state, self.reopen_at = OPEN, self.clock()

    def _open(self, cooldown: float) -> None:
        self.state, self.cooldown = OPEN, cooldown
        self.reopen_at = self.clock() + cooldown
        self.retry_at = self.wall() + timedelta(seconds=cooldown)

    def status(self) -> BreakerStatus:
        return BreakerStatus(self.state, self.failures, self.since, self.retry_at, self.last_error)


class GuardRefused(Exception):
    """The guard did not let a call go: ``code`` is NOT_ANSWERING or BUSY; ``message`` is for the user."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class _Connection:
    breaker: Breaker
    web_slots: threading.BoundedSemaphore
    web_started: dict[int, float] = field(default_factory=dict)  # web calls in flight: token -> clock() at start


@dataclass
class CallGuard:
    """The process's breakers and bulkheads, keyed by connection GUID. See the module docstring."""

    settings: GuardSettings = field(default_factory=GuardSettings)
    clock: Callable[[], float] = time.monotonic
    wall: Callable[[], datetime] = _utcnow

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._connections: dict[str, _Connection] = {}
        self._tokens = itertools.count()

    def _entry(self, key: str) -> _Connection:
        entry = self._connections.get(key)
        if entry is None:
            entry = self._connections[key] = _Connection(
                Breaker(self.settings, self.clock, self.wall), threading.BoundedSemaphore(self.settings.per_connection))
        return entry

    def status(self, key: str) -> BreakerStatus:
        with self._lock:
            entry = self._connections.get(key)
            return entry.breaker.status() if entry is not None else BreakerStatus(CLOSED)

    def reset(self, key: str | None = None) -> None:
        """Forget a connection's state (all of them without a key): e.g. after its configuration changed."""
        with self._lock:
            if key is None:
                self._connections.clear()
            else:
                self._connections.pop(key, None)

    @contextmanager
    def calling(self, key: str, name: str, lane: Lane, *, probe_now: bool = False
                ) -> Iterator[Callable[[BaseException | None], None]]:
        """Around one call of connection ``key`` (called ``name`` in messages). Raises :class:`GuardRefused` when
        the call may not go; yields ``report(error)``, which the caller calls once with the call's outcome: None
        for an answer (of any kind), or the transient error that counts as a failure. ``probe_now``: the call goes
        even while the breaker is open (an admin's explicit test), and its outcome counts."""
        with self._lock:
            entry = self._entry(key)
            admitted = entry.breaker.admit()
            if not admitted and not probe_now:
                raise GuardRefused(NOT_ANSWERING, entry.breaker.status().message(name))
            probe = admitted and entry.breaker.state == PROBING  # this call is the one probe
        try:
            token = self._web_slot(entry, name) if lane == Lane.WEB else None
        except GuardRefused:
            if probe:
                with self._lock:
                    entry.breaker.abandoned()  # this call was the probe: the next caller probes
            raise
        reported = False

        def report(error: BaseException | None) -> None:
            nonlocal reported
            reported = True
            with self._lock:
                if error is None:
                    entry.breaker.succeeded()
                else:
                    entry.breaker.failed(str(error))

        try:
            yield report
        finally:
            if token is not None:
                with self._lock:
                    del entry.web_started[token]
                entry.web_slots.release()
            if not reported and probe:  # only the probe's own end frees the probe (not an older call's)
                with self._lock:
                    entry.breaker.abandoned()

    def _web_slot(self, entry: _Connection, name: str) -> int:
        """A web slot of the connection (waiting up to ``wait``), then the parked-calls cap: refused when this
        connection already has a parked call and ``total`` calls are parked in all. Returns the call's token."""
        if not entry.web_slots.acquire(timeout=self.settings.wait):
            raise GuardRefused(BUSY, f"{name} is slow: {self.settings.per_connection} requests are already waiting "
                                     "for it. Try again in a moment.")
        now = self.clock()
        parked_after = self.settings.parked_after
        with self._lock:
            parked_here = any(now - start >= parked_after for start in entry.web_started.values())
            parked = sum(1 for other in self._connections.values() for start in other.web_started.values()
                         if now - start >= parked_after)
            if parked_here and parked >= self.settings.total:
                entry.web_slots.release()
                raise GuardRefused(BUSY, "The ERPs are slow: too many requests are already waiting for them. Try "
                                         "again in a moment.")
            token = next(self._tokens)
            entry.web_started[token] = now
        return token

"""A short-lived, single-flight cache of the ERP tab's live values.

Ten users opening one busy customer make **one** connector call: the first request for a key reads the ERP; the
others that arrive while it is in flight wait for its outcome (success or failure, shared) instead of calling
too; a success is then reused for ``ttl`` seconds (``PORTAL_ERP_TAB_CACHE_SECONDS``, default 10).

What the tab itself changes is never served stale: Connect, Create in ERP, Disconnect and Sync now call
:meth:`LiveCache.forget` for the actor. A sync run that writes the actor changes the link's ``last_synced_at``,
which is part of the key, so the next look reads the ERP again. An edit made in the ERP by someone else shows
within ``ttl`` seconds.

The cache lives in the process (one per app, in ``app.extensions``), holds at most ``max_entries`` answers (the
oldest go first) and only what a user of the section may see anyway.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

from flask import current_app

MAX_ENTRIES = 2000


@dataclass
class _Flight:
    done: threading.Event = field(default_factory=threading.Event)
    value: Any = None
    error: BaseException | None = None


class LiveCache:
    def __init__(self, ttl: float, *, max_entries: int = MAX_ENTRIES, clock: Callable[[], float] = time.monotonic):
        self.ttl = ttl
        self.max_entries = max_entries
        self.clock = clock
        self._lock = threading.Lock()
        self._values: OrderedDict[Hashable, tuple[float, Any]] = OrderedDict()
        self._flights: dict[Hashable, _Flight] = {}
        self.loads = 0  # loads started (each one connector read)

    def get(self, key: Hashable, load: Callable[[], Any], *, wait: float, keep: Callable[[Any], bool] = bool,
            waited_too_long: Callable[[], Any] | None = None) -> Any:
        """The value for ``key``: cached, or the outcome of a load already in flight (waited for up to ``wait``
        seconds), or ``load()`` called now. A loaded value is kept when ``keep(value)`` says so (e.g. not an
        error answer). ``load``'s exception reaches every caller that waited on it. A caller that waited ``wait``
        seconds in vain gets ``waited_too_long()`` (default: its own ``load()``)."""
        with self._lock:
            hit = self._values.get(key)
            if hit is not None and hit[0] > self.clock():
                return hit[1]
            flight = self._flights.get(key)
            leader = flight is None
            if leader:
                flight = self._flights[key] = _Flight()
        if not leader:
            if flight.done.wait(wait):
                if flight.error is not None:
                    raise flight.error
                return flight.value
            return waited_too_long() if waited_too_long is not None else load()
        self.loads += 1
        try:
            flight.value = value = load()
        except BaseException as exc:
            flight.error = exc
            raise
        finally:
            with self._lock:
                self._flights.pop(key, None)
                if flight.error is None and self.ttl > 0 and keep(flight.value):
                    self._values[key] = (self.clock() + self.ttl, flight.value)
                    self._values.move_to_end(key)
                    while len(self._values) > self.max_entries:
                        self._values.popitem(last=False)
            flight.done.set()
        return value

    def forget(self, match: Callable[[Hashable], bool]) -> None:
        """Drop every cached value whose key ``match`` accepts."""
        with self._lock:
            for key in [k for k in self._values if match(k)]:
                del self._values[key]


def live_cache() -> LiveCache:
    """The app's cache (made from PORTAL_ERP_TAB_CACHE_SECONDS on first use)."""
    cache = current_app.extensions.get("erp_tab_live_cache")
    if cache is None:  # setdefault: requests racing to make it all get the one stored (else each its own)
        cache = current_app.extensions.setdefault("erp_tab_live_cache", LiveCache(
            float(current_app.config.get("ERP_TAB_CACHE_SECONDS", 10))))
    return cache

"""Deadlines for HTTP attempts: a watchdog thread that ends an attempt past its deadline, whatever the peer does.

The per-read socket timeout is set to the attempt's allowance (the common "no answer" case ends as a plain read timeout), and one process-wide **watchdog** thread
(:class:`_Watchdog`) holds a heap of the attempts in flight; at an attempt's deadline it shuts down the
attempt's socket, which wakes the blocked ``recv``/``send`` of the calling thread at once (the socket is
registered by the connection class right after ``connect()``, or when a pooled connection is reused, through
a ``dup()`` of its descriptor, so a descriptor number reused elsewhere is never touched). Why this and not the
alternatives: resetting the socket timeout before each read cannot work with ``http.client``, whose buffered
reads loop over many ``recv`` calls internally (a body of 64 KiB dripped at one byte per 2 s never times out);
a timer thread per call costs a thread per call in flight; ``signal.alarm`` works in the main thread only. The
watchdog costs one heap push and one ``dup``/``close`` per attempt and a single sleeping thread. DNS resolution
(``getaddrinfo``) cannot be interrupted: it is bounded by the resolver's own timeouts.

Use: ``attempt = begin(deadline)`` in the thread that makes the attempt (through a session whose adapter is
:class:`DeadlineAdapter`), then always ``fired = end(attempt)``: True when the deadline passed and the attempt's
sockets were shut down (what was read may be cut short).
"""

from __future__ import annotations

import heapq
import itertools
import os
import socket
import threading
import time
from contextlib import suppress
from dataclasses import dataclass, field

from portal.security.urlguard import GuardedHTTPAdapter


@dataclass(eq=False)
class _Attempt:
    """One HTTP attempt in flight: its deadline and duplicates of the sockets it uses (closed when it ends)."""

    deadline: float
    socks: list[socket.socket] = field(default_factory=list)
    fds: set[int] = field(default_factory=set)  # the original descriptor numbers (dedup: TLS keeps the fd)
    fired: bool = False  # the deadline passed and the sockets were shut down
    done: bool = False


def _shutdown(sock: socket.socket) -> None:
    with suppress(OSError):  # already closed by the peer or by the caller
        sock.shutdown(socket.SHUT_RDWR)


class _Watchdog:
    """One daemon thread per process that shuts down the sockets of attempts past their deadline.

    ``begin(deadline)`` → an :class:`_Attempt` (a heap push); the connection classes call ``watch(attempt,
    sock)`` with each socket the attempt uses; ``end(attempt)`` (always, in ``finally``) says whether the deadline
    fired. Shutting down a socket (not closing it) makes a ``recv``/``send`` blocked on it in another thread
    return at once; the attempt's own thread then closes the connection as after any transport error. The
    watchdog only ever touches its own ``dup()`` of a descriptor, and only while the attempt is registered: once
    ``end()`` returned, it can no longer reach that connection, even when it goes back to the pool.
    """

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:  # also in a forked child: the parent's thread does not exist there
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, _Attempt]] = []
        self._seq = itertools.count()
        self._live = 0
        self._thread: threading.Thread | None = None

    def begin(self, deadline: float) -> _Attempt:
        attempt = _Attempt(deadline)
        with self._cond:
            heapq.heappush(self._heap, (deadline, next(self._seq), attempt))
            self._live += 1
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="connector-deadlines", daemon=True)
                self._thread.start()
            elif self._heap[0][2] is attempt:  # the earliest deadline now: wake the thread to wait less
                self._cond.notify()
        return attempt

    def watch(self, attempt: _Attempt, sock: socket.socket) -> None:
        try:
            fd = sock.fileno()
            if fd < 0 or fd in attempt.fds:
                return
            dup = socket.fromfd(fd, sock.family, sock.type)  # a dup(): our own descriptor of the same socket
        except OSError:
            return
        with self._cond:
            if not attempt.done:
                attempt.fds.add(fd)
                attempt.socks.append(dup)
                if attempt.fired:  # connected after the deadline (e.g. DNS was slow): end it now
                    _shutdown(dup)
                dup = None
        if dup is not None:
            dup.close()

    def end(self, attempt: _Attempt) -> bool:
        with self._cond:
            if attempt.done:
                return attempt.fired
            attempt.done = True
            self._live -= 1
            socks, attempt.socks = attempt.socks, []
            if len(self._heap) > 64 and len(self._heap) > 4 * self._live:  # drop ended attempts in bulk
                self._heap = [entry for entry in self._heap if not entry[2].done]
                heapq.heapify(self._heap)
        for sock in socks:
            sock.close()  # closing our dup never affects the connection itself
        return attempt.fired

    def _run(self) -> None:
        with self._cond:
            while True:
                heap = self._heap
                while heap and heap[0][2].done:
                    heapq.heappop(heap)
                if not heap:
                    self._cond.wait()
                    continue
                wait = heap[0][0] - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                attempt = heapq.heappop(heap)[2]
                attempt.fired = True
                for sock in attempt.socks:
                    _shutdown(sock)


_WATCHDOG = _Watchdog()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_WATCHDOG._reset)
_CURRENT = threading.local()  # .attempt: the HTTP attempt this thread is making (read by the connections)


class _WatchedConnectionMixin:
    """Hands the sockets of a urllib3 connection to the watchdog for the attempt of the current thread."""

    def _new_conn(self):  # a new connection: right after connect() (and urlguard's peer check), before TLS
        sock = super()._new_conn()
        attempt = getattr(_CURRENT, "attempt", None)
        if attempt is not None:
            _WATCHDOG.watch(attempt, sock)
        return sock

    def request(self, *args, **kwargs):  # a pooled connection reused by this attempt
        attempt = getattr(_CURRENT, "attempt", None)
        sock = getattr(self, "sock", None)
        if attempt is not None and sock is not None:
            _WATCHDOG.watch(attempt, sock)
        return super().request(*args, **kwargs)


class DeadlineAdapter(GuardedHTTPAdapter):
    """urlguard's adapter whose connections are also watched for the deadline of the current attempt."""

    def init_poolmanager(self, *args, **kwargs):
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {
            scheme: type(f"Watched{pool.__name__}", (pool,), {
                "ConnectionCls": type(f"Watched{pool.ConnectionCls.__name__}",
                                      (_WatchedConnectionMixin, pool.ConnectionCls), {})})
            for scheme, pool in self.poolmanager.pool_classes_by_scheme.items()}


def begin(deadline: float) -> _Attempt:
    """Start watching an attempt of the current thread that must end by ``deadline`` (``time.monotonic()``)."""
    attempt = _WATCHDOG.begin(deadline)
    _CURRENT.attempt = attempt
    return attempt


def end(attempt: _Attempt) -> bool:
    """Stop watching ``attempt``; True when its deadline fired."""
    _CURRENT.attempt = None
    return _WATCHDOG.end(attempt)

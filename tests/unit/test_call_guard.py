"""The call guard (portal/connectors/guard.py): a circuit breaker and web bulkheads per connection, with a fake
monotonic clock and a fake wall clock (naive UTC, as the guard's messages show it)."""

from __future__ import annotations

import threading
import time
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime, timedelta

import pytest

from portal.connectors import guard as guard_module
from portal.connectors.guard import BUSY, NOT_ANSWERING, CallGuard, GuardRefused, GuardSettings, Lane

A, B, C = "guid-a", "guid-b", "guid-c"
NAME = "Demo ERP"
START = datetime(2024, 5, 1, 10, 42, 5)  # naive UTC


class Clock:
    """``clock()`` (seconds) and ``wall()`` (START + those seconds) moved by ``advance``."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def wall(self) -> datetime:
        return START + timedelta(seconds=self.now)

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock():
    return Clock()


def make_guard(clock: Clock, **settings) -> CallGuard:
    options = {"failures": 3, "cooldown": 60, "max_cooldown": 200, "per_connection": 2, "total": 4, "wait": 0.2}
    return CallGuard(GuardSettings(**{**options, **settings}), clock=clock, wall=clock.wall)


def outcome(guard: CallGuard, key: str = A, *, ok: bool, lane: Lane = Lane.SYNC, probe_now: bool = False) -> None:
    """One call that got through and answered (ok) or failed (a transient error)."""
    with guard.calling(key, NAME, lane, probe_now=probe_now) as report:
        report(None if ok else RuntimeError("HTTP 503"))


def refused(guard: CallGuard, key: str = A, lane: Lane = Lane.SYNC) -> GuardRefused:
    ran = []
    with pytest.raises(GuardRefused) as info, guard.calling(key, NAME, lane):
        ran.append(True)
    assert not ran, "the refused call's body must not run"
    return info.value


def open_breaker(guard: CallGuard, key: str = A) -> None:
    for _ in range(guard.settings.failures):
        outcome(guard, key, ok=False)
    assert guard.status(key).state == "open"


@contextmanager
def held(guard: CallGuard, key: str, lane: Lane = Lane.WEB):
    """A call in flight (slot held) until the block ends; it ends unreported (like a cancelled call)."""
    with guard.calling(key, NAME, lane) as report:
        yield report


# ---------------------------------------------------------------------------------------------- the breaker


def test_opens_after_n_consecutive_failures_and_an_answer_resets_the_count(clock):
    guard = make_guard(clock)
    outcome(guard, ok=False)
    outcome(guard, ok=False)
    outcome(guard, ok=True)  # an answer in between: the count starts again
    outcome(guard, ok=False)
    outcome(guard, ok=False)
    assert guard.status(A).state == "closed" and guard.status(A).failures == 2
    outcome(guard, ok=False)
    status = guard.status(A)
    assert status.state == "open" and status.is_open and status.last_error == "HTTP 503"
    assert guard.status(B).state == "closed"  # per connection


def test_open_breaker_fails_fast_with_the_time_in_utc(clock):
    guard = make_guard(clock)
    open_breaker(guard)
    clock.advance(30)
    error = refused(guard)
    assert error.code == NOT_ANSWERING
    assert error.message == "Demo ERP is not answering since 10:42 UTC; retrying at 10:43 UTC."
    assert guard.status(A).message(NAME) == error.message
    assert guard.status(B).message(NAME) == ""  # closed: no message
    outcome(guard, B, ok=True)  # the other connection is not affected


def test_the_default_wall_clock_is_naive_utc():
    moment = guard_module._utcnow()
    assert moment.tzinfo is None
    assert abs(moment - datetime.now(UTC).replace(tzinfo=None)) < timedelta(seconds=5)


def test_after_the_cooldown_exactly_one_probe_goes_and_its_answer_closes(clock):
    guard = make_guard(clock)
    open_breaker(guard)
    clock.advance(59.9)
    refused(guard)
    clock.advance(0.1)
    with guard.calling(A, NAME, Lane.SYNC) as report:  # the probe
        assert guard.status(A).state == "probing"
        other = refused(guard)  # a concurrent caller still fails fast
        assert other.code == NOT_ANSWERING
        assert other.message == "Demo ERP is not answering since 10:42 UTC; checking again now."
        report(None)
    assert guard.status(A).state == "closed" and guard.status(A).message(NAME) == ""
    outcome(guard, ok=True)
    outcome(guard, ok=True)


def test_a_failed_probe_reopens_with_twice_the_cooldown_capped(clock):
    guard = make_guard(clock)  # cooldown 60, max 200
    open_breaker(guard)
    for cooldown in (120, 200, 200):
        clock.advance(guard.status(A).retry_at.timestamp() - clock.wall().timestamp())
        outcome(guard, ok=False)  # the probe fails
        status = guard.status(A)
        assert status.state == "open" and status.retry_at == clock.wall() + timedelta(seconds=cooldown)
        assert status.since == START  # still "since" the first opening
        clock.advance(cooldown - 0.5)
        refused(guard)
        clock.advance(0.5)
    outcome(guard, ok=True)  # the next probe answers
    assert guard.status(A).state == "closed"
    open_breaker(guard)  # opened again later: the first cooldown again
    assert guard.status(A).retry_at == clock.wall() + timedelta(seconds=60)


def test_probe_now_goes_while_open_and_its_outcome_counts(clock):
    guard = make_guard(clock)
    open_breaker(guard)
    retry_at = guard.status(A).retry_at
    outcome(guard, ok=False, probe_now=True)  # went (no GuardRefused) and failed: still open, same retry time
    assert guard.status(A).state == "open" and guard.status(A).retry_at == retry_at
    refused(guard)
    outcome(guard, ok=True, probe_now=True)
    assert guard.status(A).state == "closed"
    outcome(guard, ok=True)


def test_an_abandoned_probe_lets_the_next_caller_probe(clock):
    guard = make_guard(clock)
    open_breaker(guard)
    clock.advance(60)
    with pytest.raises(KeyboardInterrupt), guard.calling(A, NAME, Lane.SYNC):
        assert guard.status(A).state == "probing"
        raise KeyboardInterrupt
    assert guard.status(A).state == "open"
    outcome(guard, ok=True)  # at once, no new cooldown
    assert guard.status(A).state == "closed"


def test_a_call_from_before_the_opening_that_ends_unreported_does_not_free_the_probe(clock):
    guard = make_guard(clock)
    with ExitStack() as old_call:
        old_call.enter_context(held(guard, A, Lane.SYNC))  # admitted while closed, still in flight
        open_breaker(guard)
        clock.advance(60)
        with guard.calling(A, NAME, Lane.SYNC) as report:  # the probe
            old_call.close()  # the old call is cancelled (no answer either way)
            assert guard.status(A).state == "probing"
            refused(guard)  # still only one probe in flight
            report(None)
    assert guard.status(A).state == "closed"


# ---------------------------------------------------------------------------------------------- bulkheads


def test_a_third_web_call_on_one_connection_is_busy_while_two_are_in_flight(clock):
    guard = make_guard(clock, wait=0.3)
    inside, release = threading.Barrier(3), threading.Event()

    def slow_call():
        with guard.calling(A, NAME, Lane.WEB) as report:
            inside.wait(5)
            release.wait(5)
            report(None)

    threads = [threading.Thread(target=slow_call) for _ in range(2)]
    for thread in threads:
        thread.start()
    try:
        inside.wait(5)  # both are in flight
        started = time.monotonic()
        error = refused(guard, A, Lane.WEB)
        waited = time.monotonic() - started
        assert error.code == BUSY
        assert error.message == "Demo ERP is slow: 2 requests are already waiting for it. Try again in a moment."
        assert 0.25 <= waited < 1.0
        started = time.monotonic()
        outcome(guard, B, ok=True, lane=Lane.WEB)  # another connection: no wait
        assert time.monotonic() - started < 0.1
    finally:
        release.set()
        for thread in threads:
            thread.join(5)
    outcome(guard, A, ok=True, lane=Lane.WEB)  # slots back
    assert guard.status(A).state == "closed"  # BUSY is not an ERP failure


def test_the_parked_cap_holds_across_connections_but_never_locks_out_a_quick_one(clock):
    guard = make_guard(clock, per_connection=2, total=3, wait=0.05)
    with held(guard, A), held(guard, A), held(guard, B):
        clock.advance(1.0)  # the three are parked
        outcome(guard, C, ok=True, lane=Lane.WEB)  # C has no parked call: its quick calls still go
        with held(guard, C):
            clock.advance(1.0)  # now C has a parked call too, and 4 are parked
            error = refused(guard, C, Lane.WEB)
            assert error.code == BUSY and error.message.startswith("The ERPs are slow: too many requests")
        outcome(guard, C, ok=True)  # the sync lane is not capped
    outcome(guard, C, ok=True, lane=Lane.WEB)


def test_slots_are_released_after_exceptions_and_refusals(clock):
    guard = make_guard(clock, per_connection=2, total=1, wait=0.05, failures=10)
    for _ in range(3):
        with pytest.raises(ValueError), guard.calling(A, NAME, Lane.WEB):
            raise ValueError("a bug inside the call")
        with pytest.raises(RuntimeError), guard.calling(A, NAME, Lane.WEB) as report:
            report(RuntimeError("timeout"))
            raise RuntimeError("timeout")
    with held(guard, A):
        clock.advance(1.0)
        with held(guard, B):
            clock.advance(1.0)
            assert refused(guard, B, Lane.WEB).code == BUSY  # B got its own slot, then the parked cap refused it
        with held(guard, B), held(guard, B):  # both of B's slots are back (one leaked: the second would wait)
            pass
    with held(guard, A), held(guard, A):  # and both of A's, after the exceptions
        pass


def test_the_sync_lane_takes_no_web_slot(clock):
    guard = make_guard(clock, per_connection=1, total=1, wait=0.05)
    with held(guard, A, Lane.SYNC), held(guard, A, Lane.SYNC), held(guard, A, Lane.WEB):
        outcome(guard, A, ok=True, lane=Lane.SYNC)  # web slots full: sync calls still go
    with held(guard, A, Lane.SYNC), held(guard, A, Lane.SYNC):
        outcome(guard, A, ok=True, lane=Lane.WEB)


def test_a_busy_refusal_of_the_would_be_probe_does_not_leave_the_breaker_probing(clock):
    guard = make_guard(clock, per_connection=1, wait=0.05)
    with held(guard, A, Lane.WEB):  # the only web slot, taken while closed
        open_breaker(guard)  # by sync calls
        clock.advance(60)
        error = refused(guard, A, Lane.WEB)  # admitted as the probe, then no slot
        assert error.code == BUSY
        assert guard.status(A).state == "open"
    with guard.calling(A, NAME, Lane.WEB) as report:  # the next caller probes at once
        assert guard.status(A).state == "probing"
        report(None)
    assert guard.status(A).state == "closed"


def test_reset_forgets_a_connections_state(clock):
    guard = make_guard(clock)
    open_breaker(guard, A)
    open_breaker(guard, B)
    guard.reset(A)
    assert guard.status(A).state == "closed" and guard.status(B).state == "open"
    guard.reset()
    assert guard.status(B).state == "closed"

"""The ERP tab's single-flight cache (portal/services/live_cache.py), with a fake clock where time matters."""

from __future__ import annotations

import threading
import time

import pytest
from flask import Flask

from portal.services import live_cache as live_cache_module
from portal.services.live_cache import LiveCache


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Loader:
    """A load function that counts its calls and returns ``value``, optionally waiting for ``gate`` first."""

    def __init__(self, value="v", gate: threading.Event | None = None, error: BaseException | None = None):
        self.value, self.gate, self.error = value, gate, error
        self.calls = 0
        self.started = threading.Event()
        self._lock = threading.Lock()

    def __call__(self):
        with self._lock:
            self.calls += 1
        self.started.set()
        if self.gate is not None:
            assert self.gate.wait(5), "the test never opened the gate"
        if self.error is not None:
            raise self.error
        return self.value


def ask_concurrently(cache: LiveCache, key, load, n: int, wait: float = 5) -> list:
    """``n`` threads ask ``key`` at once; returns each one's value or exception."""
    results: list = [None] * n
    ready = threading.Barrier(n + 1)

    def ask(index: int) -> None:
        ready.wait(5)
        try:
            results[index] = cache.get(key, load, wait=wait)
        except BaseException as exc:  # the test inspects it
            results[index] = exc

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(n)]
    for thread in threads:
        thread.start()
    ready.wait(5)
    return threads, results


def finish(threads, load: Loader) -> None:
    assert load.started.wait(5)
    time.sleep(0.2)  # every asker is inside get() by now, waiting on the one load
    load.gate.set()
    for thread in threads:
        thread.join(5)
        assert not thread.is_alive()


def test_ten_concurrent_askers_share_one_load():
    cache = LiveCache(ttl=10)
    load = Loader({"name": "Acme"}, gate=threading.Event())
    threads, results = ask_concurrently(cache, ("conn", "Customer", "C1"), load, 10)
    finish(threads, load)
    assert load.calls == 1 and cache.loads == 1
    assert results == [{"name": "Acme"}] * 10
    assert cache.get(("conn", "Customer", "C1"), load, wait=1) == {"name": "Acme"} and load.calls == 1


def test_an_error_reaches_every_waiting_asker_and_is_not_kept():
    cache = LiveCache(ttl=10)
    load = Loader(gate=threading.Event(), error=ConnectionError("ERP down"))
    threads, results = ask_concurrently(cache, "k", load, 4)
    finish(threads, load)
    assert load.calls == 1
    assert all(isinstance(r, ConnectionError) and str(r) == "ERP down" for r in results), results
    retry = Loader("back")
    assert cache.get("k", retry, wait=1) == "back" and retry.calls == 1  # the error was not cached


def test_a_value_is_kept_for_ttl_seconds():
    clock = Clock()
    cache = LiveCache(ttl=10, clock=clock)
    load = Loader("v1")
    assert cache.get("k", load, wait=1) == "v1"
    clock.now += 9.9
    load.value = "v2"
    assert cache.get("k", load, wait=1) == "v1" and load.calls == 1
    clock.now += 0.1
    assert cache.get("k", load, wait=1) == "v2" and load.calls == 2
    assert cache.get("k", load, wait=1) == "v2" and load.calls == 2


def test_ttl_zero_keeps_nothing():
    cache = LiveCache(ttl=0)
    load = Loader("v")
    cache.get("k", load, wait=1)
    cache.get("k", load, wait=1)
    assert load.calls == 2


def test_a_value_keep_refuses_is_not_kept():
    cache = LiveCache(ttl=10)
    load = Loader({"error": "not found"})
    keep = lambda value: "error" not in value  # noqa: E731
    cache.get("k", load, wait=1, keep=keep)
    cache.get("k", load, wait=1, keep=keep)
    assert load.calls == 2
    load.value = {"name": "Acme"}
    cache.get("k", load, wait=1, keep=keep)
    cache.get("k", load, wait=1, keep=keep)
    assert load.calls == 3
    falsy = Loader(None)  # the default keep (bool) keeps no empty answer
    cache.get("empty", falsy, wait=1)
    cache.get("empty", falsy, wait=1)
    assert falsy.calls == 2


def test_forget_drops_the_matching_keys_only():
    cache = LiveCache(ttl=10)
    loads = {key: Loader(key) for key in [(1, "Customer", "C1"), (1, "Customer", "C2"), (2, "Customer", "C1")]}
    for key, load in loads.items():
        cache.get(key, load, wait=1)
    cache.forget(lambda key: key[:3] == (1, "Customer", "C1"))
    for key, load in loads.items():
        cache.get(key, load, wait=1)
    assert [load.calls for load in loads.values()] == [2, 1, 1]


def test_the_oldest_entries_go_beyond_max_entries():
    cache = LiveCache(ttl=10, max_entries=2)
    loads = {key: Loader(key) for key in "abc"}
    for key in "abc":
        cache.get(key, loads[key], wait=1)
    assert len(cache._values) == 2
    cache.get("c", loads["c"], wait=1)
    cache.get("b", loads["b"], wait=1)
    assert (loads["b"].calls, loads["c"].calls) == (1, 1)
    cache.get("a", loads["a"], wait=1)  # "a" was evicted
    assert loads["a"].calls == 2


def test_an_asker_that_waited_too_long_loads_itself():
    cache = LiveCache(ttl=10)
    stuck = Loader("slow", gate=threading.Event())
    leader = threading.Thread(target=lambda: cache.get("k", stuck, wait=5))
    leader.start()
    try:
        assert stuck.started.wait(5)
        own = Loader("own")
        started = time.monotonic()
        assert cache.get("k", own, wait=0.2) == "own" and own.calls == 1
        assert 0.2 <= time.monotonic() - started < 2
    finally:
        stuck.gate.set()
        leader.join(5)


def test_the_app_gets_one_cache_even_when_first_asked_concurrently(monkeypatch):
    class SlowToMake(LiveCache):
        def __init__(self, *args, **kwargs):
            time.sleep(0.05)  # widens the window between "none yet" and "stored"
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(live_cache_module, "LiveCache", SlowToMake)
    app = Flask(__name__)
    app.config["ERP_TAB_CACHE_SECONDS"] = 7
    seen, ready = [], threading.Barrier(4)

    def first_use() -> None:
        with app.app_context():
            ready.wait(5)
            seen.append(live_cache_module.live_cache())

    threads = [threading.Thread(target=first_use) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(5)
    assert len(seen) == 4 and len({id(cache) for cache in seen}) == 1
    assert seen[0] is app.extensions["erp_tab_live_cache"] and seen[0].ttl == 7


@pytest.mark.parametrize("ttl", [10, 0])
def test_a_load_that_raises_base_exceptions_leaves_no_flight_behind(ttl):
    cache = LiveCache(ttl=ttl)
    with pytest.raises(KeyboardInterrupt):
        cache.get("k", Loader(error=KeyboardInterrupt()), wait=1)
    assert cache._flights == {}
    load = Loader("v")
    assert cache.get("k", load, wait=1) == "v" and load.calls == 1

"""Rate limits shared by every process (issue #19): the ``database://`` storage (portal/security/limit_storage.py)
counts in the portal's database, so two apps on one database — two processes, or two hosts — share the counters.
Runs on SQLite and, in the PostgreSQL pass, on PostgreSQL."""

from __future__ import annotations

import threading
import time

import pytest

from portal import create_app
from portal.config import load_config
from portal.extensions import db
from portal.security import limit_storage, limits

pytestmark = pytest.mark.db


@pytest.fixture
def app_config(app_config):
    return {**app_config, "RATELIMIT_STORAGE_URI": "database://", "LIMIT_LOGIN": "3/minute",
            "LIMIT_LOGIN_ADDRESS": "100/minute"}


def _storage(app) -> limit_storage.DatabaseStorage:
    with app.app_context():
        storage = limits.limiter.storage
    assert isinstance(storage, limit_storage.DatabaseStorage)
    return storage


def test_the_database_storage_counts_expires_and_clears(app):
    storage = _storage(app)
    assert storage.check()
    assert [storage.incr("k", 60) for _ in range(3)] == [1, 2, 3]
    assert storage.incr("k", 60, amount=2) == 5 and storage.get("k") == 5
    assert time.time() + 55 < storage.get_expiry("k") <= time.time() + 60
    storage.clear("k")
    assert storage.get("k") == 0 and storage.incr("k", 60) == 1
    # a window that ended starts again, with a new expiry
    assert storage.incr("short", 1) == 1
    time.sleep(1.1)
    assert storage.get("short") == 0
    assert storage.incr("short", 60) == 1 and storage.get_expiry("short") > time.time() + 50
    with app.app_context():
        assert limit_storage.live_counters() == 2
        assert limit_storage.prune(now=time.time() + 61) == 2 and limit_storage.live_counters() == 0
    assert storage.incr("k", 60) == 1 and storage.reset() == 1


def test_simultaneous_hits_are_all_counted(app):
    storage = _storage(app)
    threads, each = 8, 25
    barrier = threading.Barrier(threads)
    errors: list[BaseException] = []

    def hit():
        barrier.wait()
        try:
            for _ in range(each):
                storage.incr("burst", 60)
        except BaseException as exc:  # noqa: BLE001 - asserted below
            errors.append(exc)

    workers = [threading.Thread(target=hit) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert not errors and storage.get("burst") == threads * each


def test_two_apps_on_one_database_share_the_sign_in_limit(app, app_config, users):
    """Two processes (two apps, each with its own storage object and engine) count against one limit."""
    other = create_app(dict(app_config), environ={})
    try:
        clients = [app.test_client(), other.test_client()]
        for client in clients:
            client.environ_base["REMOTE_ADDR"] = "198.51.100.7"
        answers = [clients[n % 2].post("/login", data={"email": "alice@example.com", "password": "wrong"}).status_code
                   for n in range(5)]
        assert answers == [422, 422, 422, 429, 429]  # 3/minute in all, not 3 per process
    finally:
        with other.app_context():
            db.session.remove()
            db.engine.dispose()


def test_the_default_storage_follows_the_database(tmp_path):
    assert load_config(str(tmp_path), {})["RATELIMIT_STORAGE_URI"] == "memory://"
    postgres = load_config(str(tmp_path), {"PORTAL_DATABASE_URL": "postgresql://portal@db/portal"})
    assert postgres["RATELIMIT_STORAGE_URI"] == "database://"
    chosen = load_config(str(tmp_path), {"PORTAL_DATABASE_URL": "postgresql://portal@db/portal",
                                         "PORTAL_RATELIMIT_STORAGE_URI": "redis://cache:6379"})
    assert chosen["RATELIMIT_STORAGE_URI"] == "redis://cache:6379"

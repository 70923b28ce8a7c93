"""Isolation from a slow or broken ERP, through the ERP tab, the Settings → Sync tab and sync runs, against the
fake connector over real HTTP: the live values' single-flight cache, the web bulkhead per connection and the
circuit breaker (portal/connectors/guard.py, portal/services/live_cache.py).

The connection's name needs HTML escaping, so every message checked here is checked as the page shows it.
"""

from __future__ import annotations

import re
import threading
import time

import pytest
from markupsafe import escape
from sqlalchemy import func, select

from portal.extensions import db
from portal.models import Company, Connection, RunStatus, SyncChange
from portal.services.links import create_link
from tests import sync_support as s
from tests.conftest import login
from tests.integration import test_erp_tab as tab
from tests.integration.test_erp_tab import configure, connect, text, url

# the ERP tab tests' fixtures: a connector row for the fake, the CRM records, the fake's Customer "Acme AS"
connector_id, crm, acme_key = tab.connector_id, tab.crm, tab.acme_key

NAME = "O'Hara & Co ERP"
SHOWN = str(escape(NAME))  # O&#39;Hara &amp; Co ERP
DOWN = re.compile(re.escape(SHOWN) + r" is not answering since \d\d:\d\d UTC; retrying at \d\d:\d\d UTC\.")
ACME_VALUES = "<dt>Name</dt><dd>Acme AS</dd>"


class Clock:
    """The guard's monotonic clock, moved by the tests (no sleeping through a cool-down)."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def app_config(app_config):
    app_config.update(BREAKER_FAILURES=2, BREAKER_COOLDOWN=30)
    return app_config


@pytest.fixture
def conn(app, admin_client, connector_id, fake):  # our own connection, with a name to escape
    return configure(app, admin_client, connector_id, NAME)


@pytest.fixture
def guard(app, conn):
    """The app's guard (built from the config) on a fake clock."""
    guard = app.extensions["call_guard"]
    assert (guard.settings.failures, guard.settings.cooldown) == (2, 30)
    assert (guard.settings.per_connection, guard.settings.total) == (2, 4)  # the defaults
    guard.clock = Clock()
    guard.reset()  # breakers made from now on use the fake clock
    return guard


@pytest.fixture
def guid(app, conn):
    with app.app_context():
        return db.session.get(Connection, conn).guid


def link_acme(app, client, crm, conn, acme_key, credit: str = "25000"):
    """Connect Acme through the tab; the Credit limit asked is written to the ERP."""
    response = connect(client, app, "company", crm["acme"], conn, acme_key, {"email": "erp", "orgnr": "erp"},
                       {"creditlimit": credit})
    assert response.status_code == 200, text(response)


def look(client, company_id: int, conn: int) -> tuple[int, str, float]:
    """The ERP tab's live values of a company: (status, body, seconds)."""
    started = time.monotonic()
    response = client.get(url("company", company_id, conn, "/values"), htmx=True)
    return response.status_code, text(response), time.monotonic() - started


def get_actors(fake) -> int:
    return len(fake.calls_to("GetActors"))


def wait_for(condition, seconds: float = 3.0) -> None:
    end = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < end, "timed out waiting"
        time.sleep(0.01)


def in_threads(app, user_id: int, targets: list[tuple[int, int]]) -> tuple[list[threading.Thread], list]:
    """One thread per (company id, connection id), each with its own signed-in client, looking at once."""
    results: list = [None] * len(targets)
    clients = []
    for _ in targets:
        client = app.test_client()
        login(client, user_id)
        clients.append(client)
    ready = threading.Barrier(len(targets))

    def run(index: int) -> None:
        ready.wait(5)
        try:
            results[index] = look(clients[index], *targets[index])
        except BaseException as exc:  # reported by the test
            results[index] = exc

    threads = [threading.Thread(target=run, args=(index,)) for index in range(len(targets))]
    for thread in threads:
        thread.start()
    return threads, results


def join(threads) -> None:
    for thread in threads:
        thread.join(10)
        assert not thread.is_alive()


def open_breaker(user_client, fake, crm, conn):
    """Two failed ERP tab loads (BREAKER_FAILURES=2): the breaker opens."""
    fake.fail_next(5, status=500, method="GetActors")
    for _ in range(2):
        status, body, _ = look(user_client, crm["acme"], conn)
        assert status == 200 and "internal error (HTTP 500)" in body and not DOWN.search(body)
    assert get_actors(fake) == 2
    fake.clear_faults()


# ------------------------------------------------------------------------------------------ single flight


def test_ten_concurrent_looks_make_one_call_and_a_second_look_reuses_it(app, users, user_client, conn, crm,
                                                                          acme_key, fake):
    link_acme(app, user_client, crm, conn, acme_key)
    fake.requests.clear()
    fake.delay(0.5, method="GetActors")
    threads, results = in_threads(app, users["bob"], [(crm["acme"], conn)] * 10)
    join(threads)
    fake.delay(0)
    for result in results:
        assert not isinstance(result, BaseException), result
        status, body, seconds = result
        assert status == 200 and ACME_VALUES in body and seconds < 3
    assert get_actors(fake) == 1 and len(fake.calls_to("GetListItems")) == 1

    fake.update_actor("Customer", acme_key, {"creditlimit": 99000.0})
    status, body, seconds = look(user_client, crm["acme"], conn)
    assert status == 200 and "<dd>25000</dd>" in body and get_actors(fake) == 1  # within the TTL: no call

    sync = user_client.post(url("company", crm["acme"], conn, "/sync"), htmx=True)
    assert sync.status_code == 200, text(sync)
    before = get_actors(fake)
    status, body, _ = look(user_client, crm["acme"], conn)
    assert "<dd>99000</dd>" in body and get_actors(fake) == before + 1  # Sync now: read live again
    assert "<dd>99000</dd>" in look(user_client, crm["acme"], conn)[1] and get_actors(fake) == before + 1

    assert user_client.post(url("company", crm["acme"], conn, "/disconnect"), htmx=True).status_code == 200
    link_acme(app, user_client, crm, conn, acme_key, credit="123")
    before = get_actors(fake)
    status, body, _ = look(user_client, crm["acme"], conn)
    assert "<dd>123</dd>" in body and get_actors(fake) == before + 1  # disconnect + connect: read live again


# ------------------------------------------------------------------------------------------ bulkhead


def test_a_third_look_on_a_slow_connection_is_answered_at_once(app, users, user_client, conn, crm, fake):
    app.config["ERP_TAB_CACHE_SECONDS"] = 0
    app.extensions.pop("erp_tab_live_cache", None)
    companies = []
    with app.app_context():
        for name in ("One AS", "Two AS", "Three AS"):
            company = Company(name=name)
            db.session.add(company)
            db.session.flush()
            actor = fake.get_actor("Customer", fake.add_actor("Customer", {"name": name}))
            create_link(connection_id=conn, crm_type="company", crm_id=company.id, actor=actor, base={},
                        crm_updated_at=company.updated_at)
            companies.append(company.id)
        db.session.commit()
    fake.requests.clear()
    fake.delay(2.5, method="GetActors")
    threads, results = in_threads(app, users["bob"], [(companies[0], conn), (companies[1], conn)])
    try:
        wait_for(lambda: get_actors(fake) == 2)  # both in flight, holding the connection's 2 web slots
        status, body, seconds = look(user_client, companies[2], conn)
        assert seconds < 1.5 and status == 200
        assert f"{SHOWN} is slow: 2 requests are already waiting for it. Try again in a moment." in body
        assert NAME not in body  # escaped, never raw
        assert ">Retry</button>" in body and f'hx-get="{url("company", companies[2], conn, "/values")}"' in body
        panel = user_client.get(url("company", companies[2]), htmx=True)  # needs no ERP: not held up either
        assert panel.status_code == 200
        assert get_actors(fake) == 2  # the third never reached the ERP
    finally:
        join(threads)
        fake.delay(0)
    for result, name in zip(results, ("One AS", "Two AS"), strict=True):
        assert not isinstance(result, BaseException), result
        status, body, seconds = result
        assert status == 200 and f"<dd>{name}</dd>" in body and seconds >= 2.4  # they waited for the ERP
    status, body, _ = look(user_client, companies[2], conn)  # slots free again
    assert "<dd>Three AS</dd>" in body and get_actors(fake) == 3


# ------------------------------------------------------------------------------------------ breaker


def test_the_breaker_opens_fails_fast_shows_on_the_sync_tab_and_closes_after_a_probe(
        app, admin_client, user_client, conn, crm, acme_key, fake, guard, guid):
    link_acme(app, user_client, crm, conn, acme_key)
    fake.requests.clear()
    open_breaker(user_client, fake, crm, conn)

    status, body, seconds = look(user_client, crm["acme"], conn)
    assert status == 200 and seconds < 1 and get_actors(fake) == 2  # at once: no call reached the ERP
    message = guard.status(guid).message(NAME)
    assert DOWN.fullmatch(str(escape(message)))
    assert f"The values could not be loaded from {SHOWN}: {escape(message)}" in body and ">Retry</button>" in body

    page = text(admin_client.get("/settings/sync"))
    assert DOWN.search(page) and str(escape(message)) in page
    row = page[page.index(f'id="connection-{conn}"'):]
    row = row[:row.index("</tbody>")]
    assert '<td colspan="5" role="status"><strong>' + str(escape(message)) in row

    guard.clock.now += 29
    assert DOWN.search(look(user_client, crm["acme"], conn)[1]) and get_actors(fake) == 2
    guard.clock.now += 1  # the cool-down is over: the next look is the probe, and it answers
    status, body, _ = look(user_client, crm["acme"], conn)
    assert ACME_VALUES in body and get_actors(fake) == 3 and guard.status(guid).state == "closed"
    assert "is not answering" not in text(admin_client.get("/settings/sync"))


def test_a_failed_probe_keeps_the_breaker_open_for_longer(app, user_client, conn, crm, acme_key, fake, guard,
                                                          guid):
    link_acme(app, user_client, crm, conn, acme_key)
    fake.requests.clear()
    open_breaker(user_client, fake, crm, conn)
    guard.clock.now += 30
    fake.fail_next(1, status=503, method="GetActors")
    status, body, _ = look(user_client, crm["acme"], conn)  # the probe fails
    assert "HTTP 503" in body and get_actors(fake) == 3 and guard.status(guid).state == "open"
    guard.clock.now += 59
    assert DOWN.search(look(user_client, crm["acme"], conn)[1]) and get_actors(fake) == 3
    guard.clock.now += 1
    assert ACME_VALUES in look(user_client, crm["acme"], conn)[1] and get_actors(fake) == 4


def test_a_sync_run_on_a_connection_whose_breaker_is_open_fails_fast_and_writes_nothing(
        app, user_client, conn, crm, acme_key, fake, guard, guid):
    link_acme(app, user_client, crm, conn, acme_key)
    with app.app_context():
        s.edit_company(crm["acme"], phone="+47 99 99 99 99")  # a run would send this to the ERP
    erp_before = fake.get_actor("Customer", acme_key)
    fake.requests.clear()
    open_breaker(user_client, fake, crm, conn)
    fake.requests.clear()
    with app.app_context():
        before = {c.name: getattr(s.company(crm["acme"]), c.name) for c in Company.__table__.columns}
        started = time.monotonic()
        outcome = s.run(conn)
        seconds = time.monotonic() - started
        assert outcome.status == RunStatus.FAILED and seconds < 2
        message = guard.status(guid).message(NAME)
        assert outcome.error.startswith(message) and s.get_run(outcome.run_id).error == outcome.error
        assert fake.calls == []  # nothing reached the ERP
        after = {c.name: getattr(s.company(crm["acme"]), c.name) for c in Company.__table__.columns}
        assert after == before
        assert db.session.scalar(select(func.count()).select_from(SyncChange)
                                 .where(SyncChange.run_id == outcome.run_id)) == 0
    assert fake.get_actor("Customer", acme_key) == erp_before

    guard.clock.now += 30  # once the ERP answers again, the next run does the work
    with app.app_context():
        assert s.run(conn).status == RunStatus.SUCCEEDED
    assert fake.get_actor("Customer", acme_key)["FieldValues"]["phone"] == "+47 99 99 99 99"


def test_the_admins_test_reaches_the_connector_while_open_and_its_success_closes_the_breaker(
        app, admin_client, user_client, conn, crm, acme_key, fake, guard, guid):
    link_acme(app, user_client, crm, conn, acme_key)
    fake.requests.clear()
    open_breaker(user_client, fake, crm, conn)
    assert DOWN.search(text(admin_client.get("/settings/sync")))

    response = admin_client.post(f"/settings/connections/{conn}/test", htmx=True)  # no cool-down waited
    body = text(response)
    assert response.status_code == 200, body
    assert len(fake.calls_to("TestConnection")) == 1
    assert f"Test of {SHOWN}: OK" in body and not DOWN.search(body)
    assert guard.status(guid).state == "closed"
    assert not DOWN.search(text(admin_client.get("/settings/sync")))
    status, body, _ = look(user_client, crm["acme"], conn)
    assert ACME_VALUES in body and get_actors(fake) == 3


def test_a_failing_test_while_open_says_why_and_leaves_the_breaker_open(app, admin_client, user_client, conn,
                                                                          crm, acme_key, fake, guard,
                                                                          guid):
    link_acme(app, user_client, crm, conn, acme_key)
    fake.requests.clear()
    open_breaker(user_client, fake, crm, conn)
    fake.fail_next(10, status=502, retry_after=0, method="TestConnection")  # no backoff waits
    response = admin_client.post(f"/settings/connections/{conn}/test", htmx=True)
    body = text(response)
    assert response.status_code == 200 and "<strong>failed</strong>" in body
    assert fake.calls_to("TestConnection") and "is not answering" not in body.split("Test of")[1]
    assert guard.status(guid).state == "open" and DOWN.search(body)

"""Deadlines, not only timeouts: a connector call ends on time however the peer behaves (dripping answers, a hang
after the headers, a reset, a server that never accepts), retries stay within the call's budget, and a sync run
stops cleanly when its connector stalls, when it was reaped meanwhile, or when it runs past its budget.

Everything runs on 127.0.0.1 and is bounded in time (each test a few seconds at most)."""

from __future__ import annotations

import socket
import time
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from portal.connectors.client import ConnectorClient, ConnectorError
from portal.connectors.protocol import ZERO_GUID
from portal.database import utcnow
from portal.extensions import db
from portal.models import Connection, RunStatus, SyncChange, SyncJournal
from portal.services.sync import context as sync_context
from portal.services.sync import runs
from tests import sync_support as s

COUNTRIES = {"NO": "Norway", "SE": "Sweden", "DK": "Denmark", "FI": "Finland", "DE": "Germany"}


@pytest.fixture
def server(fake_server):
    """The module's fake connector, reset before and after the test (a reset also ends a fault in progress)."""
    fake_server.reset()
    yield fake_server
    fake_server.reset()


@pytest.fixture
def make_client(server):
    clients = []

    def make(url: str | None = None, **kwargs) -> ConnectorClient:
        kwargs.setdefault("name", "Demo ERP")
        client = ConnectorClient(url or server.url, **kwargs)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def timed(function, *args):
    """(the ConnectorError raised, seconds it took)."""
    started = time.monotonic()
    with pytest.raises(ConnectorError) as err:
        function(*args)
    return err.value, time.monotonic() - started


# --- one call ---------------------------------------------------------------------------------------------------


def test_a_dripping_answer_is_ended_by_the_deadline(make_client, server):
    # one byte every 0.5 s: a 30 s per-read timeout would never trip; the whole answer would take ~95 s
    server.drip(0.5, method="GetList")
    client = make_client(timeout=2, retries=0)
    err, took = timed(client.get_list, ZERO_GUID, "Countries")
    assert err.error_code == "TIMEOUT" and err.transient and err.method == "GetList"
    assert err.user_message == "Demo ERP did not answer within 2 s."
    assert 1.9 <= took <= 3.0, took
    assert client.get_list(ZERO_GUID, "Countries") == COUNTRIES  # the client is fine afterwards (fresh connection)


def test_a_hang_after_the_headers_is_ended_by_the_deadline(make_client, server):
    server.hang_after_headers(20, method="GetList")
    client = make_client(timeout=1, retries=0)
    err, took = timed(client.get_list, ZERO_GUID, "Countries")
    assert err.error_code == "TIMEOUT" and err.transient
    assert "did not answer within 1 s" in err.user_message
    assert 0.9 <= took <= 2.0, took


def test_a_connection_reset_mid_answer_is_transient_and_retried(make_client, server):
    sleeps = []
    server.reset_connection(method="GetList")
    client = make_client(timeout=2, retries=1, sleep=sleeps.append)
    assert client.get_list(ZERO_GUID, "Countries") == COUNTRIES
    assert client.attempts == 2 and len(sleeps) == 1

    server.reset_connection(method="GetList", after_bytes=5)
    err, took = timed(make_client(timeout=2, retries=0).get_list, ZERO_GUID, "Countries")
    assert err.error_code == "UNREACHABLE" and err.transient and took < 1.0


def test_a_server_that_never_accepts_is_ended_by_the_deadline(make_client):
    # the kernel completes the TCP handshake into the backlog: connect() succeeds, the request is buffered, and
    # no answer ever comes
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        client = make_client(f"http://127.0.0.1:{port}/erp", timeout=1, retries=0)
        err, took = timed(client.get_config_data)
    assert err.error_code == "TIMEOUT" and err.transient
    assert err.user_message == "Demo ERP did not answer within 1 s."
    assert 0.9 <= took <= 2.0, took


def test_an_endless_body_is_still_capped(make_client, server):
    def endless():
        for _ in range(10_000):  # 640 MB at most; the client hangs up after its cap
            yield b"x" * 65536

    server.reply_raw(endless(), method="GetConfigData")
    err, took = timed(make_client(timeout=5, retries=0, max_bytes=1024 * 1024).get_config_data)
    assert err.error_code == "TOO_LARGE" and not err.transient and took < 2.0


def test_a_retry_after_longer_than_the_time_left_ends_the_call_at_once(make_client, server):
    sleeps = []
    server.fail_next(1, status=503, retry_after=10)
    client = make_client(timeout=2, retries=3, budget=3, sleep=sleeps.append)
    err, took = timed(client.get_config_data)
    assert err.error_code == "HTTP_503" and err.transient and err.retry_after == 10
    assert sleeps == [] and client.attempts == 1 and took < 1.0

    server.fail_next(1, status=503, retry_after=10)
    client = make_client(timeout=2, retries=3, sleep=sleeps.append)  # the default budget would allow the wait …
    with client.deadline(3):  # … a caller's deadline does not
        err, took = timed(client.get_config_data)
    assert err.error_code == "HTTP_503" and sleeps == [] and took < 1.0
    assert client.get_config_data()  # outside the block: the wait is honoured again


def test_retries_stay_within_the_call_budget(make_client, server):
    server.drip(0.5, method="GetList", times=None)
    client = make_client(timeout=1, retries=5, backoff=0.05, budget=2.5)
    err, took = timed(client.get_list, ZERO_GUID, "Countries")
    assert err.error_code == "TIMEOUT" and err.transient
    assert 2.4 <= took <= 3.5, took  # five retries unbounded would take 6 s; a busy machine's watchdog may be late
    assert client.attempts == 3  # 1 s, 1 s, then what was left
    assert err.user_message == "Demo ERP did not answer within 2.5 s."


def test_a_watchdog_woken_late_still_reports_the_time_the_call_was_given(make_client, server, monkeypatch):
    # on a busy machine the watchdog thread may run late; the message names the budget, not the clock
    from portal.connectors import deadlines

    begin = deadlines.begin
    monkeypatch.setattr(deadlines, "begin", lambda deadline: begin(deadline + 0.4))
    server.drip(0.5, method="GetList", times=None)
    client = make_client(timeout=1, retries=0, budget=0.6)
    err, took = timed(client.get_list, ZERO_GUID, "Countries")
    assert err.error_code == "TIMEOUT" and took >= 0.95, took
    assert err.user_message == "Demo ERP did not answer within 0.6 s."


def test_the_deadline_is_checked_before_a_builtin_call():
    # a built-in connector runs in-process: its call cannot be interrupted, but it is not started out of time
    client = ConnectorClient("builtin:demo", app_config={}, name="Demo ERP")
    with client.deadline(0):
        err, took = timed(client.get_config_data)
    assert err.error_code == "TIMEOUT" and err.transient and err.before_send


# --- a sync run -------------------------------------------------------------------------------------------------


@pytest.fixture
def setup(app, fake):
    """One linked company changed in the ERP (email) and in the CRM (phone)."""
    app.config.update(SYNC_CONNECTOR_RETRIES=1, SYNC_CANCEL_CHECK_SECONDS=0)
    with app.app_context():
        cid = s.make_connection(fake)
        company_id, key, link_id = s.link_company(fake, cid, name="Acme AS", phone="1", email="a@acme.example")
        cursor = db.session.get(Connection, cid).cursors["Customer"]
        fake.update_actor("Customer", key, {"email": "b@acme.example"})
        s.edit_company(company_id, phone="2")
        base = dict(s.get_link(link_id).base)
        fake.requests.clear()
        yield {"connection": cid, "company": company_id, "key": key, "link": link_id, "cursor": cursor, "base": base}


def assert_nothing_written(fake, setup, run_id):
    db.session.expire_all()
    record = s.company(setup["company"])
    assert (record.email, record.phone) == ("a@acme.example", "2")  # the CRM as it was
    erp = fake.get_actor("Customer", setup["key"])["FieldValues"]
    assert (erp["email"], erp["phone"]) == ("b@acme.example", "1")  # the ERP as it was
    assert fake.calls_to("SaveActors") == []
    assert s.get_link(setup["link"]).base == setup["base"]
    assert db.session.get(Connection, setup["connection"]).cursors["Customer"] == setup["cursor"]
    assert db.session.scalar(select(func.count()).select_from(SyncChange)) == 0
    assert db.session.scalar(select(func.count()).select_from(SyncJournal)) == 0


def test_a_sync_run_against_a_dripping_connector_fails_readably_and_writes_nothing(app, fake, setup):
    app.config["CONNECTOR_TIMEOUT"] = 1
    fake.drip(0.5, method="GetActorsByTimestamp", times=5)
    started = time.monotonic()
    outcome = s.run(setup["connection"])
    took = time.monotonic() - started
    assert outcome.status == RunStatus.FAILED
    assert outcome.error == ("Fake ERP did not answer within 1 s. (gave up after several attempts; the next run "
                             "tries again)")
    assert 2.0 <= took <= 4.0, took  # two attempts of 1 s and a backoff wait
    assert len(fake.calls_to("GetActorsByTimestamp")) == 2
    assert_nothing_written(fake, setup, outcome.run_id)
    fake.clear_faults()
    assert s.run(setup["connection"]).status == RunStatus.SUCCEEDED


def test_a_reaped_run_stops_at_its_next_connector_call_without_writing(app, fake, setup, monkeypatch):
    handle = fake.service.handle

    def reaped_while_reading(method, body):  # the reaper gives up on the run while its feed is being read
        answer = handle(method, body)
        if method == "GetActorsByTimestamp":
            with app.app_context():
                assert runs.reap_stale(now=utcnow() + timedelta(seconds=1), lease_seconds=0) == 1
        return answer

    monkeypatch.setattr(fake.service, "handle", reaped_while_reading)
    outcome = s.run(setup["connection"])
    assert outcome.status == "abandoned"
    assert [method for method, _ in fake.calls] == ["GetActorsByTimestamp"]  # the SaveActors was never sent
    assert_nothing_written(fake, setup, outcome.run_id)
    run = s.get_run(outcome.run_id)
    assert run.status == RunStatus.FAILED and run.error.startswith("Abandoned")  # as the reaper left it
    monkeypatch.setattr(fake.service, "handle", handle)
    assert s.run(setup["connection"]).status == RunStatus.SUCCEEDED


def test_a_run_past_its_budget_fails_at_its_next_call_without_writing(app, fake, setup, monkeypatch):
    app.config["SYNC_RUN_BUDGET"] = 3600
    handle = fake.service.handle
    later = {"offset": timedelta(0)}

    def two_hours_pass(method, body):
        answer = handle(method, body)
        later["offset"] = timedelta(hours=2)
        return answer

    monkeypatch.setattr(fake.service, "handle", two_hours_pass)
    monkeypatch.setattr(sync_context, "utcnow", lambda: utcnow() + later["offset"])
    outcome = s.run(setup["connection"])
    assert outcome.status == RunStatus.FAILED
    assert outcome.error == ("The run took longer than its budget of 60 min and was stopped; the next run "
                             "carries on.")
    assert [method for method, _ in fake.calls] == ["GetActorsByTimestamp"]
    assert_nothing_written(fake, setup, outcome.run_id)


def test_the_run_budget_cuts_off_an_answer_still_awaited(app, fake, setup):
    app.config.update(CONNECTOR_TIMEOUT=30, SYNC_RUN_BUDGET=1)
    fake.hang_after_headers(20, method="GetActorsByTimestamp")
    started = time.monotonic()
    outcome = s.run(setup["connection"])
    took = time.monotonic() - started
    assert outcome.status == RunStatus.FAILED
    assert outcome.error == "The run took longer than its budget of 1 s and was stopped; the next run carries on."
    assert took <= 2.0, took
    assert_nothing_written(fake, setup, outcome.run_id)

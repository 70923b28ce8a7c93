"""The Sync tab's health block (portal/services/sync_health.py) against the fake connector: each state as it comes
and goes — healthy, degraded (a record the CRM refuses), failing (the feed fails), recovered; paused (inactive,
automatic sync off); breaker open — and what the card shows: last successful run, errors, broken links, the ERP
cursor, unsynced CRM edits and the 14-day chart."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import update

from portal.connectors.guard import Lane
from portal.database import utcnow
from portal.extensions import db
from portal.models import Connection, Link, RunStatus, SyncSettings
from portal.services import sync_health
from tests import sync_support as s

pytestmark = pytest.mark.db


@pytest.fixture
def app_config(app_config):
    return {**app_config, "SYNC_CONNECTOR_RETRIES": 1, "BREAKER_FAILURES": 2}


@pytest.fixture
def world(app, fake):
    """One connection, one company linked and synced once (a successful run)."""
    with app.app_context():
        cid = s.make_connection(fake, name="Fake ERP")
        company_id, key, link_id = s.link_company(fake, cid, name="Acme AS", email="a@acme.example")
        assert s.run(cid).status == RunStatus.SUCCEEDED
        return {"connection": cid, "company": company_id, "key": key, "link": link_id}


def health_html(client) -> str:
    response = client.get("/settings/sync?section=health", htmx=True)
    assert response.status_code == 200
    return response.get_data(as_text=True)


def card(html: str, cid: int) -> str:
    start = html.index(f'aria-labelledby="health-{cid}-name"')
    return html[start:html.index("</article>", start)]


def state(client, cid: int) -> str:
    html = card(health_html(client), cid)
    return re.search(rf'id="health-{cid}-state">([^<]+)<', html).group(1)


def test_healthy_degraded_failing_and_recovered(app, admin_client, fake, world):
    cid = world["connection"]
    page = admin_client.get("/settings/sync").get_data(as_text=True)
    assert 'id="sync-health"' in page and "Everything is in sync" in page
    assert state(admin_client, cid) == "Healthy"

    # a value the CRM refuses: the run is partial, the record has an open issue -> degraded
    fake.update_actor("Customer", world["key"], {"email": "not an e-mail"})
    with app.app_context():
        assert s.run(cid).status == RunStatus.PARTIAL
    html = card(health_html(admin_client), cid)
    assert ">Degraded<" in html and "1 record with errors" in html
    assert f'href="/settings/sync/issues?connection={cid}"' in html

    # the feed fails: the run fails -> failing, with the run's error
    fake.fail_next(10, status=500)
    with app.app_context():
        assert s.run(cid).status == RunStatus.FAILED
    html = card(health_html(admin_client), cid)
    assert ">Failing<" in html and "The last run failed: The connector failed with an internal error" in html

    # the ERP is fixed and the value too: the next run succeeds and clears the record -> healthy again
    fake.clear_faults()
    fake.update_actor("Customer", world["key"], {"email": "b@acme.example"})
    with app.app_context():
        db.session.execute(update(Link).where(Link.id == world["link"]).values(retry_at=utcnow() - timedelta(1)))
        db.session.commit()
        assert s.run(cid).status == RunStatus.SUCCEEDED
        assert s.get_link(world["link"]).failures == 0
    html = card(health_html(admin_client), cid)
    assert ">Healthy<" in html and re.search(r"Records with errors</dt>\s*<dd>\s*none", html), html[:3000]


def test_paused_when_inactive_or_automatic_sync_is_off(app, admin_client, world):
    cid = world["connection"]
    admin_client.post("/settings/sync/auto", data={"on": "0"}, htmx=True)
    html = card(health_html(admin_client), cid)
    assert ">Paused<" in html and "Automatic sync is off" in html
    admin_client.post("/settings/sync/auto", data={"on": "1"}, htmx=True)
    assert state(admin_client, cid) == "Healthy"
    with app.app_context():
        db.session.get(Connection, cid).active = False
        db.session.commit()
    html = card(health_html(admin_client), cid)
    assert ">Paused<" in html and "Inactive" in html


def test_breaker_open_shows_not_answering(app, admin_client, world):
    from portal.services.connectors import call_guard

    cid = world["connection"]
    with app.app_context():
        connection = db.session.get(Connection, cid)
        guard = call_guard()
        for _ in range(2):  # BREAKER_FAILURES=2 failed calls open it
            with guard.calling(connection.guid, connection.name, Lane.SYNC) as report:
                report(TimeoutError("timed out"))
    html = card(health_html(admin_client), cid)
    assert ">Not answering<" in html and "Fake ERP is not answering since" in html
    with app.app_context():
        guard.reset()
    assert state(admin_client, cid) == "Healthy"


def test_no_successful_run_for_three_intervals_is_failing(app, admin_client, world):
    cid = world["connection"]
    with app.app_context():
        settings = db.session.get(SyncSettings, 1)
        settings.interval_seconds = 300
        db.session.commit()
        later = utcnow() + timedelta(minutes=16)
        [health] = [h for h in sync_health.overview(now=later) if h.connection.id == cid]
        assert health.verdict.state == "failing" and "No successful run for 16 min" in health.verdict.reason


def test_the_card_shows_the_run_cursor_broken_links_unsynced_edits_and_the_chart(app, admin_client, fake, world):
    cid = world["connection"]
    with app.app_context():
        s.edit_company(world["company"], phone="12345")  # an unsynced CRM edit
        other, key, _link = s.link_company(fake, cid, name="Gone AS")
        fake.delete_actor("Customer", key)
        s.edit_company(other, phone="1")
        outcome = s.run(cid)
        assert outcome.counts.get("broken") == 1
        s.edit_company(world["company"], phone="999")
        cursor = db.session.get(Connection, cid).cursors["Customer"]
    html = card(health_html(admin_client), cid)
    assert re.search(r'href="/settings/sync/runs/\d+">\d{4}-\d\d-\d\d', html)
    assert f'href="/settings/sync/issues?connection={cid}&amp;reason=broken">1 broken link</a>' in html
    assert "Customer: " + cursor[:10] in html
    assert "Unsynced CRM edits</dt>" in html and re.search(r"<dd>\s*1, the oldest from", html)
    assert '<svg class="sync-chart-svg"' in html and "sync activity, last 14 days</title>" in html
    assert '<div class="sr-only">' in html and "<th scope=\"col\">Runs</th>" in html


def test_health_is_computed_with_a_fixed_number_of_queries(app, fake, world):
    """One query per aggregate for all connections: three connections cost no more queries than one."""
    from sqlalchemy import event

    def queries(app) -> int:
        seen = []
        with app.app_context():
            listener = lambda *args: seen.append(1)  # noqa: E731
            event.listen(db.engine, "before_cursor_execute", listener)
            try:
                sync_health.overview()
            finally:
                event.remove(db.engine, "before_cursor_execute", listener)
        return len(seen)

    one = queries(app)
    with app.app_context():
        for n in range(2):
            cid = s.make_connection(fake, name=f"More {n}")
            for m in range(3):
                s.link_company(fake, cid, name=f"Company {n}-{m}")
            s.run(cid)
    assert queries(app) == one


def test_the_alerts_get_each_connections_state_from_here(app, fake, world):
    """portal.services.alerts asks sync_health.alert_facts for every connection's state and open issues."""
    cid = world["connection"]
    fake.update_actor("Customer", world["key"], {"email": "not an e-mail"})
    with app.app_context():
        s.run(cid)
        facts = sync_health.alert_facts([db.session.get(Connection, cid)])
    fact = facts[cid]
    assert (fact.connection_id, fact.name, fact.state, fact.open_issues) == (cid, "Fake ERP", "degraded", 1)
    assert fact.summary.startswith("last successful run ") and fact.summary.endswith("; 1 record with errors")


def test_a_preview_is_not_the_connections_last_run(app, admin_client, fake, world):
    """A dry run (options dry_run) wrote nothing: after a failed run, a successful preview leaves it failing."""
    from portal.models import SyncRun

    cid = world["connection"]
    fake.fail_next(10, status=500)
    with app.app_context():
        assert s.run(cid).status == RunStatus.FAILED
        now = utcnow()
        db.session.add(SyncRun(connection_id=cid, kind="sync", trigger="manual", status="succeeded",
                               options={"dry_run": True}, created_at=now, started_at=now, finished_at=now))
        db.session.commit()
    assert state(admin_client, cid) == "Failing"

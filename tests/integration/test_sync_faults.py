"""The sync engine against a fault-injecting connector on 127.0.0.1: errors, timeouts, garbage bodies, repeated
actors from the inclusive timestamp, UNKNOWN_CONNECTION_ID and State: Warning."""

from __future__ import annotations

import json

import pytest

from portal.connectors.protocol import ok_response
from portal.connectors.service import ProtocolError
from portal.extensions import db
from portal.models import Connection, RunStatus
from tests import sync_support as s


@pytest.fixture
def setup(app, fake):
    """One linked company changed in the ERP (email) and in the CRM (phone)."""
    app.config.update(SYNC_CONNECTOR_RETRIES=2)
    with app.app_context():
        cid = s.make_connection(fake)
        company_id, key, link_id = s.link_company(fake, cid, name="Acme AS", phone="1", email="a@acme.example")
        cursor = db.session.get(Connection, cid).cursors["Customer"]
        fake.update_actor("Customer", key, {"email": "b@acme.example"})
        s.edit_company(company_id, phone="2")
        fake.requests.clear()
        yield {"connection": cid, "company": company_id, "key": key, "link": link_id, "cursor": cursor}


def _cursor(cid):
    db.session.expire_all()
    return db.session.get(Connection, cid).cursors["Customer"]


def _synced(fake, setup) -> bool:
    record = s.company(setup["company"])
    erp = fake.get_actor("Customer", setup["key"])["FieldValues"]
    return record.email == "b@acme.example" and erp["phone"] == "2" and record.phone == "2"


def test_transient_errors_are_retried_with_backoff(fake, setup):
    fake.fail_next(2, status=503)
    outcome = s.run(setup["connection"])
    assert outcome.status == RunStatus.SUCCEEDED and _synced(fake, setup)
    assert [r.status for r in fake.requests[:3]] == [503, 503, 200]


def test_429_with_retry_after_is_honoured(fake, setup):
    fake.fail_next(1, status=429, retry_after=0, method="SaveActors")
    assert s.run(setup["connection"]).status == RunStatus.SUCCEEDED and _synced(fake, setup)


def test_errors_that_persist_fail_the_run_and_the_next_run_completes_the_work(fake, setup):
    fake.fail_next(10, status=500)
    outcome = s.run(setup["connection"])
    assert outcome.status == RunStatus.FAILED
    assert outcome.error.startswith("The connector failed with an internal error (HTTP 500).")
    assert "the next run tries again" in outcome.error
    assert s.get_run(outcome.run_id).error == outcome.error
    assert _cursor(setup["connection"]) == setup["cursor"] and not _synced(fake, setup)
    fake.clear_faults()
    assert s.run(setup["connection"]).status == RunStatus.SUCCEEDED and _synced(fake, setup)


def test_a_timeout_is_retried(app, fake, setup):
    app.config["CONNECTOR_TIMEOUT"] = 0.5
    fake.delay(1.0, method="GetActorsByTimestamp", times=1)
    assert s.run(setup["connection"]).status == RunStatus.SUCCEEDED and _synced(fake, setup)


def test_a_timed_out_save_that_was_applied_is_repeated_harmlessly(app, fake, setup):
    app.config["CONNECTOR_TIMEOUT"] = 0.5
    fake.delay(1.0, method="SaveActors", times=1, after_processing=True)
    outcome = s.run(setup["connection"])
    assert outcome.status == RunStatus.SUCCEEDED and _synced(fake, setup)
    assert len(fake.calls_to("SaveActors")) == 2
    assert s.run(setup["connection"]).counts.get("records", 0) == 0


def test_a_garbage_body_fails_the_run_with_a_readable_message(fake, setup):
    fake.reply_raw(b"<html><body>502 Bad Gateway</body></html>", content_type="text/html",
                   method="GetActorsByTimestamp")
    outcome = s.run(setup["connection"])
    assert outcome.status == RunStatus.FAILED
    assert outcome.error == "The connector sent an answer the portal could not understand. The connector's answer " \
                            "is not valid JSON."
    assert s.run(setup["connection"]).status == RunStatus.SUCCEEDED and _synced(fake, setup)


def test_a_garbage_save_answer_leaves_the_record_for_the_next_run(fake, setup):
    fake.reply_raw(b'{"IsOk": true, "Actors": "nope"}', method="SaveActors")
    outcome = s.run(setup["connection"])
    assert outcome.status == RunStatus.FAILED and "could not understand" in outcome.error
    assert s.company(setup["company"]).email == "a@acme.example"  # nothing half-applied
    assert s.run(setup["connection"]).status == RunStatus.SUCCEEDED and _synced(fake, setup)


def test_a_redirect_or_refused_access_fails_the_run(fake, setup):
    fake.redirect_next("http://127.0.0.1:1/elsewhere")
    outcome = s.run(setup["connection"])
    assert outcome.status == RunStatus.FAILED and "redirect" in outcome.error
    fake.fail_next(1, status=401)
    outcome = s.run(setup["connection"])
    assert outcome.status == RunStatus.FAILED and "refused access (HTTP 401)" in outcome.error


def test_a_permanent_connector_error_fails_the_run_with_its_user_explanation(fake, setup):
    fake.reply_error("GetActorsByTimestamp", "The ERP licence has expired.", error_code="LICENCE")
    outcome = s.run(setup["connection"])
    assert outcome.status == RunStatus.FAILED and outcome.error == "The ERP licence has expired."
    assert outcome.message == "The ERP licence has expired."


def test_repeated_actors_from_the_inclusive_timestamp_are_harmless(fake, setup):
    actor = fake.get_actor("Customer", setup["key"])
    older = json.loads(json.dumps(actor))
    older["LastModified"] = setup["cursor"]
    older["FieldValues"]["email"] = "a@acme.example"
    feed = ok_response(Actors=[older, actor, actor], NextCursor=None)
    fake.reply_raw(json.dumps(feed).encode(), method="GetActorsByTimestamp")
    outcome = s.run(setup["connection"])
    assert outcome.status == RunStatus.SUCCEEDED and _synced(fake, setup)
    assert outcome.counts["records"] == 1 and outcome.counts["to_crm"] == 1
    fake.requests.clear()
    cursor = _cursor(setup["connection"])
    again = s.run(setup["connection"])  # the feed repeats what it sent (on or after) and our own write's echo
    assert again.counts.get("records", 0) == 0 and again.counts["erp_repeats"] == 1
    assert [m for m, _ in fake.calls] == ["GetActorsByTimestamp"]
    assert fake.calls_to("GetActorsByTimestamp")[0]["UpdatedOnOrAfter"] == cursor
    assert s.run(setup["connection"]).counts["erp_repeats"] == 1


def test_unknown_connection_id_resends_the_config_and_retries_once(fake, setup):
    fake.forget_connections()
    outcome = s.run(setup["connection"])
    assert outcome.status == RunStatus.SUCCEEDED and _synced(fake, setup)
    [saved] = fake.calls_to("SaveConnection")
    assert saved["ConnectionInfo"] == {"Company": "Fake AS", "ApiKey": "k"}


def test_unknown_connection_id_that_persists_fails_the_run(fake, setup, monkeypatch):
    monkeypatch.setattr(fake.service, "SaveConnection", lambda body: ok_response())  # "saved" but not kept
    fake.forget_connections()
    outcome = s.run(setup["connection"])
    assert outcome.status == RunStatus.FAILED and "settings must be sent again" in outcome.error


def test_a_warning_from_the_feed_is_shown_and_keeps_the_cursor(fake, setup):
    fake.reply_warning("GetActorsByTimestamp", "ERP offline; showing cached data")
    outcome = s.run(setup["connection"])
    assert outcome.status == RunStatus.PARTIAL and _synced(fake, setup)
    assert outcome.message.endswith("Connector warning: ERP offline; showing cached data")
    assert outcome.warning == "ERP offline; showing cached data"
    assert _cursor(setup["connection"]) == setup["cursor"]  # cached data may be incomplete: read it again
    again = s.run(setup["connection"])
    assert again.status == RunStatus.SUCCEEDED and again.counts.get("records", 0) == 0
    assert _cursor(setup["connection"]) != setup["cursor"]


def test_a_warning_on_save_makes_the_run_partial(fake, setup):
    fake.reply_warning("SaveActors", "Saved, but the ERP will post the change later")
    outcome = s.run(setup["connection"])
    assert outcome.status == RunStatus.PARTIAL and _synced(fake, setup)
    assert "post the change later" in s.get_run(outcome.run_id).message


def test_a_run_that_dies_between_batches_keeps_what_it_applied(app, fake, setup, monkeypatch):
    app.config.update(SYNC_BATCH_SIZE=2)
    cid = setup["connection"]
    more = [s.link_company(fake, cid, name=f"Company {n}") for n in range(5)]
    for company_id, _key, _link in more:
        s.edit_company(company_id, phone="77")
    calls = {"n": 0}
    original = fake.service.SaveActors

    def fail_second(body):
        calls["n"] += 1
        if calls["n"] == 2:
            raise ProtocolError("The ERP crashed.", "boom", "INTERNAL_ERROR")
        return original(body)

    monkeypatch.setattr(fake.service, "SaveActors", fail_second)
    outcome = s.run(cid)
    assert outcome.status == RunStatus.FAILED and outcome.error == "The ERP crashed."
    applied = outcome.counts["to_erp"]
    assert applied >= 1
    monkeypatch.setattr(fake.service, "SaveActors", original)
    final = s.run(cid)
    assert final.status == RunStatus.SUCCEEDED
    assert all(fake.get_actor("Customer", key)["FieldValues"]["phone"] == "77" for _c, key, _l in more)
    assert _synced(fake, setup)


def test_a_run_reaped_while_it_works_stops_without_writing_more(fake, setup, monkeypatch):
    from portal.services.sync import context, record_merge, runs

    original = record_merge.plan_item

    def reaped_meanwhile(ctx_, plan, it, mode):
        original(ctx_, plan, it, mode)
        runs.reap_stale(lease_seconds=-1)  # the reaper decides this run is dead

    monkeypatch.setattr(record_merge, "plan_item", reaped_meanwhile)
    monkeypatch.setattr(context, "HEARTBEAT_SECONDS", -1)
    outcome = s.run(setup["connection"])
    assert outcome.status == "abandoned"
    assert s.get_run(outcome.run_id).status == RunStatus.FAILED
    assert fake.calls_to("SaveActors") == [] and not _synced(fake, setup)
    monkeypatch.setattr(record_merge, "plan_item", original)
    monkeypatch.setattr(context, "HEARTBEAT_SECONDS", 30)
    assert s.run(setup["connection"]).status == RunStatus.SUCCEEDED and _synced(fake, setup)

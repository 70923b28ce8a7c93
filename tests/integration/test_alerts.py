"""Alerts (Settings → Sync → Alerts): e-mail through a local SMTP server (aiosmtpd), signed webhooks to a loopback
receiver, one alert per state change, a threshold alert per crossing, a daily digest, failures audited once."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
import uuid
from datetime import datetime
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select

from portal.extensions import db
from portal.models import AlertRule, AlertState, AuditEvent, Connection, Connector
from portal.services import alerts
from portal.services.alert_delivery import SIGNATURE_HEADER, parse_smtp_url
from portal.services.alerts import ConnectionFacts

SECRET = "a-webhook-secret-of-some-length"
MORNING = datetime(2026, 12, 5, 9, 0)
NIGHT = datetime(2026, 12, 5, 3, 0)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Mailbox:
    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's name)
        self.messages.append((envelope.rcpt_tos, message_from_bytes(envelope.content)))
        return "250 OK"


@pytest.fixture
def mailbox():
    box = Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=_free_port())
    controller.start()
    box.url = f"smtp://127.0.0.1:{controller.port}"
    try:
        yield box
    finally:
        controller.stop()


@pytest.fixture
def webhook():
    received = []
    status = [204]

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((dict(self.headers), body))
            self.send_response(status[0])
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield {"url": f"http://127.0.0.1:{server.server_port}/hook", "received": received, "status": status}
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def app_config(app_config, mailbox):
    app_config["SMTP_URL"] = mailbox.url
    app_config["ALERT_FROM"] = "portal@example.com"
    return app_config


@pytest.fixture
def connection_id(app):
    with app.app_context():
        connector = Connector(name="Fake", url="http://127.0.0.1:9/erp")
        db.session.add(connector)
        db.session.flush()
        connection = Connection(name="Fake production", connector_id=connector.id, active=True, guid=str(uuid.uuid4()))
        db.session.add(connection)
        db.session.commit()
        return connection.id


@pytest.fixture
def facts(monkeypatch, connection_id):
    """The connection's health as the alerts see it, set by each test."""
    current = {"state": "healthy", "issues": 0}

    def provide(connections):
        return {c.id: ConnectionFacts(c.id, c.name, current["state"], current["issues"],
                                      f"{current['issues']} records with errors") for c in connections}

    monkeypatch.setattr(alerts, "connection_facts", provide)
    return current


def add_rule(app, **values) -> int:
    defaults = {"name": "Ops", "connection_id": None, "channel": "email", "recipients": "ops@example.com",
                "daily_digest": False}
    with app.app_context():
        rule = alerts.save_rule(None, alerts.RuleInput(**{**defaults, **values}))
        return rule.id


def evaluate(app, now=MORNING) -> dict:
    with app.app_context():
        return alerts.evaluate(now)


def audit_actions(app) -> list[str]:
    with app.app_context():
        return [e.action for e in db.session.scalars(select(AuditEvent).where(AuditEvent.action.like("alert.%"))
                                                     .order_by(AuditEvent.id))]


def subjects(mailbox) -> list[str]:
    return [message["Subject"] for _to, message in mailbox.messages]


def test_one_alert_when_failing_and_one_when_recovered_never_a_storm(app, facts, mailbox):
    add_rule(app)
    evaluate(app)
    assert mailbox.messages == []  # first sight of a healthy connection: nothing to say
    facts["state"] = "failing"
    evaluate(app)
    evaluate(app)
    evaluate(app)
    assert subjects(mailbox) == ["Fake production is failing"]
    to, message = mailbox.messages[0]
    assert to == ["ops@example.com"] and message["From"] == "portal@example.com"
    assert "The ERP connection Fake production is failing" in message.get_payload()
    facts["state"] = "degraded"
    evaluate(app)
    evaluate(app)
    assert subjects(mailbox) == ["Fake production is failing", "Fake production has recovered"]
    facts["state"] = "paused"  # neither failing nor a recovery: the digest tells it
    evaluate(app)
    assert len(mailbox.messages) == 2
    assert audit_actions(app) == ["alert.sent", "alert.sent"]


def test_a_connection_failing_when_first_seen_is_alerted(app, facts, mailbox):
    facts["state"] = "failing"
    add_rule(app)
    evaluate(app)
    assert subjects(mailbox) == ["Fake production is failing"]


def test_the_issue_threshold_alerts_once_per_crossing(app, facts, mailbox):
    add_rule(app, issue_threshold=3, on_state_change=False)
    facts["issues"] = 2
    evaluate(app)
    facts["issues"] = 3
    evaluate(app)
    facts["issues"] = 7
    evaluate(app)
    assert subjects(mailbox) == ["Fake production: 3 records with sync issues"]
    facts["issues"] = 1
    evaluate(app)
    facts["issues"] = 4
    evaluate(app)
    assert subjects(mailbox)[-1] == "Fake production: 4 records with sync issues" and len(mailbox.messages) == 2


def test_the_digest_goes_once_a_day_from_its_hour(app, facts, mailbox):
    add_rule(app, daily_digest=True, on_state_change=False)
    evaluate(app, NIGHT)
    assert mailbox.messages == []
    evaluate(app, MORNING)
    evaluate(app, MORNING.replace(hour=15))
    assert subjects(mailbox) == ["ERP sync daily digest, 2026-12-05"]
    assert "- Fake production: healthy; 0 records with errors" in mailbox.messages[0][1].get_payload()
    evaluate(app, MORNING.replace(day=6))
    assert len(mailbox.messages) == 2


def test_a_rule_for_one_connection_ignores_the_others(app, facts, mailbox, connection_id):
    with app.app_context():
        other = Connection(name="Other", connector_id=db.session.get(Connection, connection_id).connector_id,
                           guid=str(uuid.uuid4()),
                           active=True)
        db.session.add(other)
        db.session.commit()
        other_id = other.id
    add_rule(app, connection_id=other_id)
    facts["state"] = "failing"
    evaluate(app)
    assert subjects(mailbox) == ["Other is failing"]


def test_the_webhook_is_signed_and_carries_the_facts(app, facts, webhook):
    add_rule(app, channel="webhook", recipients="", webhook_url=webhook["url"], webhook_secret=SECRET)
    facts["state"], facts["issues"] = "failing", 5
    evaluate(app)
    [(headers, body)] = webhook["received"]
    stamp, mac = dict(part.split("=", 1) for part in headers[SIGNATURE_HEADER].split(","))["t"], \
        dict(part.split("=", 1) for part in headers[SIGNATURE_HEADER].split(","))["v1"]
    expected = hmac.new(SECRET.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(mac, expected)
    payload = json.loads(body)
    assert payload["event"] == "connection.failing" and payload["open_issues"] == 5
    assert payload["connection"]["name"] == "Fake production" and payload["previous_state"] is None


def test_a_failed_delivery_is_audited_once_and_retried_until_it_goes(app, facts, webhook):
    add_rule(app, channel="webhook", recipients="", webhook_url=webhook["url"], webhook_secret=SECRET)
    webhook["status"][0] = 500
    facts["state"] = "failing"
    for _ in range(3):
        assert evaluate(app)["failed"] == 1
    assert audit_actions(app) == ["alert.failed"]  # once per distinct error, not once a minute
    webhook["status"][0] = 204
    assert evaluate(app) == {"sent": 1, "failed": 0}
    assert evaluate(app) == {"sent": 0, "failed": 0}
    assert audit_actions(app) == ["alert.failed", "alert.sent"]
    assert len(webhook["received"]) == 4


def test_no_mail_server_is_a_readable_failure(app, facts):
    app.config["SMTP_URL"] = None
    rule_id = add_rule(app)
    with app.app_context():
        error = alerts.send_test(db.session.get(AlertRule, rule_id))
    assert error == "No mail server is set: set PORTAL_SMTP_URL to send e-mail alerts."


def test_the_screen_creates_tests_edits_and_deletes_a_rule(app, admin_client, mailbox, connection_id):
    page = admin_client.get("/settings/sync/alerts")
    assert page.status_code == 200 and "No alert rules yet" in page.get_data(as_text=True)
    bad = admin_client.post("/settings/sync/alerts/new", data={
        "name": "Ops", "connection_id": "0", "channel": "email", "recipients": "ops@example.com, not-an-address",
        "on_state_change": "y"}, htmx=True)
    assert bad.status_code == 422 and "Not an e-mail address: not-an-address" in bad.get_data(as_text=True)
    hook = admin_client.post("/settings/sync/alerts/new", data={
        "name": "Hook", "connection_id": "0", "channel": "webhook", "webhook_url": "http://127.0.0.1:9/hook"},
        htmx=True)
    assert hook.status_code == 422 and "Enter the secret that signs the webhook" in hook.get_data(as_text=True)
    metadata = admin_client.post("/settings/sync/alerts/new", data={
        "name": "Hook", "connection_id": "0", "channel": "webhook", "webhook_url": "http://169.254.169.254/x",
        "webhook_secret": SECRET}, htmx=True)
    assert metadata.status_code == 422
    ok = admin_client.post("/settings/sync/alerts/new", data={
        "name": "Ops", "connection_id": str(connection_id), "channel": "email", "recipients": "ops@example.com",
        "on_state_change": "y", "issue_threshold": "10", "daily_digest": "y", "active": "y"}, htmx=True)
    assert ok.status_code == 200 and ok.headers["HX-Redirect"].endswith("/settings/sync/alerts")
    with app.app_context():
        rule = db.session.scalars(select(AlertRule)).one()
        rule_id = rule.id
        assert (rule.connection_id, rule.issue_threshold, rule.recipients) == (connection_id, 10, "ops@example.com")
    listing = admin_client.get("/settings/sync/alerts").get_data(as_text=True)
    assert "failing / recovered, 10 open issues, daily digest" in listing
    tested = admin_client.post(f"/settings/sync/alerts/{rule_id}/test", htmx=True)
    assert "Test of Ops: sent" in tested.get_data(as_text=True)
    assert subjects(mailbox) == ["Test alert from the ERP Sync Portal: Ops"]
    edit = admin_client.get(f"/settings/sync/alerts/{rule_id}/edit")
    assert edit.status_code == 200 and "ops@example.com" in edit.get_data(as_text=True)
    admin_client.post(f"/settings/sync/alerts/{rule_id}/delete", htmx=True)
    with app.app_context():
        assert db.session.scalars(select(AlertRule)).all() == []
        assert db.session.scalars(select(AlertState)).all() == []
    assert [a for a in audit_actions(app)] == ["alert.sent"]


def test_the_webhook_secret_is_kept_for_the_same_address_only(app, webhook):
    rule_id = add_rule(app, channel="webhook", recipients="", webhook_url=webhook["url"], webhook_secret=SECRET)
    with app.app_context():
        rule = db.session.get(AlertRule, rule_id)
        stored = rule.webhook_secret_encrypted
        assert SECRET not in stored
        same = alerts.RuleInput(name="Ops", connection_id=None, channel="webhook", webhook_url=webhook["url"])
        assert alerts.save_rule(rule, same).webhook_secret_encrypted == stored
        moved = alerts.RuleInput(name="Ops", connection_id=None, channel="webhook",
                                 webhook_url=webhook["url"] + "/elsewhere")
        with pytest.raises(alerts.RuleError, match="again, for a new address"):
            alerts.save_rule(rule, moved)


def test_users_cannot_reach_the_alerts(user_client):
    assert user_client.get("/settings/sync/alerts").status_code == 403


@pytest.mark.parametrize("url,expected", [
    ("smtp://mail.example.com", ("mail.example.com", 25, "none", None, None)),
    ("smtp://u%40x:p%3Aw@mail.example.com:587?starttls=on", ("mail.example.com", 587, "starttls", "u@x", "p:w")),
    ("smtps://mail.example.com", ("mail.example.com", 465, "ssl", None, None)),
])
def test_smtp_urls(url, expected):
    settings = parse_smtp_url(url)
    assert (settings.host, settings.port, settings.security, settings.username, settings.password) == expected


def test_a_bad_smtp_url_is_refused_with_its_form():
    with pytest.raises(ValueError, match="smtp://user:password@host:587"):
        parse_smtp_url("http://mail.example.com")


def test_a_failed_run_turns_the_real_health_failing_and_a_good_run_recovers_it(app, mailbox, connection_id):
    """No stand-in for the health here: runs in the log decide the state (portal.services.sync_health)."""
    from portal.database import utcnow
    from portal.models import RunKind, SyncRun

    add_rule(app)

    def run(status: str) -> None:
        with app.app_context():
            now = utcnow()
            db.session.add(SyncRun(connection_id=connection_id, kind=RunKind.SYNC, status=status, trigger="manual",
                                   started_at=now, finished_at=now, error="HTTP 500" if status == "failed" else ""))
            db.session.commit()

    run("succeeded")
    evaluate(app, before_the_digest())
    assert mailbox.messages == []
    run("failed")
    evaluate(app, before_the_digest())
    assert subjects(mailbox) == ["Fake production is failing"]
    run("succeeded")
    evaluate(app, before_the_digest())
    assert subjects(mailbox) == ["Fake production is failing", "Fake production has recovered"]


def before_the_digest() -> datetime:
    from portal.database import utcnow

    return utcnow().replace(hour=3)  # before the digest hour: only state changes

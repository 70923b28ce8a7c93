"""Alerts: tell people when a connection turns failing or recovers, when its open sync issues pass a threshold,
and once a day how every connection is doing.

No alert storms: a rule remembers, per connection, what it last told (:class:`portal.models.alerts.AlertState`);
an alert goes out only when that changes — *failing* after anything else, *recovered* (healthy or degraded) after
failing, *issues over the threshold* after under it — and everything else waits for the daily digest.
:func:`evaluate` is called every minute by the scheduler (and by ``flask erp alerts``); a connection seen for the
first time by a rule is only alerted when it is failing already. A delivery that fails leaves the state as it was,
so the next evaluation tries again; its error is audited once per distinct text.

Every alert sent, and every first failure to send, is in the audit log (``alert.sent`` / ``alert.failed``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from flask import current_app
from sqlalchemy import select

from portal.database import utcnow
from portal.extensions import db
from portal.models import Connection
from portal.models.alerts import AlertChannel, AlertRule, AlertState
from portal.security import crypto
from portal.services import audit
from portal.services.alert_delivery import Alert, DeliveryFailed, send_email, send_webhook

log = logging.getLogger(__name__)

FAILING = "failing"
RECOVERED_STATES = frozenset({"healthy", "degraded"})
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


@dataclass(frozen=True)
class ConnectionFacts:
    """What the alerts need to know of a connection (from portal.services.sync_health)."""

    connection_id: int
    name: str
    state: str  # healthy, degraded, failing, paused, breaker_open
    open_issues: int
    summary: str  # one line: "last successful run 10:42 UTC; 3 records with errors"


def connection_facts(connections: Iterable[Connection]) -> dict[int, ConnectionFacts]:
    from portal.services import sync_health

    return sync_health.alert_facts(list(connections))


# -- rules ------------------------------------------------------------------------------------------------------


def recipients_of(text: str) -> list[str]:
    return [part for part in re.split(r"[\s,;]+", text or "") if part]


def check_recipients(text: str) -> list[str]:
    """The addresses, or ValueError saying which one is not an e-mail address."""
    found = recipients_of(text)
    if not found:
        raise ValueError("Enter at least one e-mail address.")
    bad = [address for address in found if not EMAIL_RE.match(address)]
    if bad:
        raise ValueError(f"Not an e-mail address: {', '.join(bad[:3])}")
    if len(found) > 50:
        raise ValueError("At most 50 recipients per rule.")
    return found


def _deliver(rule: AlertRule, alert: Alert) -> None:
    config = current_app.config
    if rule.channel == AlertChannel.WEBHOOK:
        secret = crypto.decrypt(rule.webhook_secret_encrypted) if rule.webhook_secret_encrypted else ""
        send_webhook(rule.webhook_url, secret, alert, config)
    else:
        send_email(config.get("SMTP_URL"), config.get("ALERT_FROM") or "erp-sync-portal@localhost",
                   recipients_of(rule.recipients), alert)


def _audit_sent(rule: AlertRule, alert: Alert, *, error: str = "", actor=None, **ctx) -> None:
    audit.record("alert.failed" if error else "alert.sent", object_type="alert_rule", object_id=rule.id,
                 object_repr=rule.name, after={"event": alert.event, "subject": alert.subject,
                                               "channel": rule.channel, **({"error": error} if error else {})},
                 actor=actor, **ctx)


def send_test(rule: AlertRule, *, actor=None, **ctx) -> str:
    """Send a test alert now; returns "" or the delivery error (both audited)."""
    alert = Alert("test", f"Test alert from the ERP Sync Portal: {rule.name}",
                  f"This is a test of the alert rule {rule.name}. If you read it, the rule can reach you.",
                  {"rule": rule.name, "sent_at": utcnow().isoformat() + "Z"})
    try:
        _deliver(rule, alert)
    except DeliveryFailed as exc:
        _audit_sent(rule, alert, error=str(exc), actor=actor, **ctx)
        db.session.commit()
        return str(exc)
    _audit_sent(rule, alert, actor=actor, **ctx)
    db.session.commit()
    return ""


# -- evaluation -------------------------------------------------------------------------------------------------


def _state_alert(facts: ConnectionFacts, previous: str) -> Alert | None:
    data = {"connection": {"id": facts.connection_id, "name": facts.name}, "state": facts.state,
            "previous_state": previous or None, "open_issues": facts.open_issues}
    if facts.state == FAILING and previous != FAILING:
        return Alert("connection.failing", f"{facts.name} is failing",
                     f"The ERP connection {facts.name} is failing: {facts.summary}.\n\nSee Settings → Sync.", data)
    if previous == FAILING and facts.state in RECOVERED_STATES:
        return Alert("connection.recovered", f"{facts.name} has recovered",
                     f"The ERP connection {facts.name} is {facts.state} again: {facts.summary}.", data)
    return None


def _issues_alert(facts: ConnectionFacts, threshold: int) -> Alert:
    return Alert("issues.threshold", f"{facts.name}: {facts.open_issues} records with sync issues",
                 f"{facts.open_issues} records of {facts.name} have open sync issues (the rule's threshold is "
                 f"{threshold}). See Settings → Sync → Issues.",
                 {"connection": {"id": facts.connection_id, "name": facts.name}, "open_issues": facts.open_issues,
                  "threshold": threshold})


def digest_alert(facts: Iterable[ConnectionFacts], day: str) -> Alert:
    rows = list(facts)
    lines = [f"- {f.name}: {f.state}; {f.summary}" for f in rows] or ["- no connection"]
    return Alert("digest", f"ERP sync daily digest, {day}",
                 "How every ERP connection is doing:\n\n" + "\n".join(lines),
                 {"day": day, "connections": [{"id": f.connection_id, "name": f.name, "state": f.state,
                                               "open_issues": f.open_issues} for f in rows]})


def _scope(rule: AlertRule, connections: list[Connection]) -> list[Connection]:
    return [c for c in connections if rule.connection_id in (None, c.id)]


def evaluate(now: datetime | None = None) -> dict[str, int]:
    """Send what changed since the last evaluation; commits. Returns counts (sent, failed)."""
    now = now or utcnow()
    rules = db.session.scalars(select(AlertRule).where(AlertRule.active.is_(True)).order_by(AlertRule.id)).all()
    counts = {"sent": 0, "failed": 0}
    if not rules:
        return counts
    connections = db.session.scalars(select(Connection).where(Connection.deleted.is_(False))
                                     .order_by(Connection.name)).all()
    facts = connection_facts(connections)
    states = {(s.rule_id, s.connection_id): s for s in db.session.scalars(select(AlertState))}
    digest_hour = int(current_app.config.get("ALERT_DIGEST_HOUR", 7))
    for rule in rules:
        for connection in _scope(rule, connections):
            fact = facts.get(connection.id)
            if fact is None:
                continue
            state = states.get((rule.id, connection.id))
            if state is None:
                state = AlertState(rule_id=rule.id, connection_id=connection.id, state="", issues_over=False,
                                   last_error="")
                db.session.add(state)
            _evaluate_one(rule, state, fact, now, counts)
        if rule.daily_digest and now.hour >= digest_hour and rule.last_digest_on != now.date():
            alert = digest_alert([facts[c.id] for c in _scope(rule, connections) if c.id in facts],
                                 now.date().isoformat())
            if _send(rule, alert, rule, counts):
                rule.last_digest_on = now.date()
        db.session.commit()
    return counts


def _evaluate_one(rule: AlertRule, state: AlertState, fact: ConnectionFacts, now: datetime,
                  counts: dict[str, int]) -> None:
    previous = state.state or ""
    if rule.on_state_change and fact.state != previous:
        alert = _state_alert(fact, previous)
        if alert is None or _send(rule, alert, state, counts):
            state.state, state.changed_at = fact.state, now
    elif fact.state != previous:
        state.state, state.changed_at = fact.state, now
    over = rule.issue_threshold is not None and fact.open_issues >= rule.issue_threshold
    if over and not state.issues_over:
        if _send(rule, _issues_alert(fact, rule.issue_threshold), state, counts):
            state.issues_over = True
    elif not over:
        state.issues_over = False


def _send(rule: AlertRule, alert: Alert, holder: AlertState | AlertRule, counts: dict[str, int]) -> bool:
    """Deliver; ``holder`` keeps the last error (an AlertState, or the rule for its digest)."""
    attr = "digest_error" if isinstance(holder, AlertRule) else "last_error"
    try:
        _deliver(rule, alert)
    except DeliveryFailed as exc:
        counts["failed"] += 1
        error = str(exc)
        log.warning("alert %s (%s) not delivered: %s", rule.name, alert.event, error)
        if getattr(holder, attr) != error:  # audited once per distinct error, retried every evaluation
            _audit_sent(rule, alert, error=error)
            setattr(holder, attr, error)
        return False
    counts["sent"] += 1
    setattr(holder, attr, "")
    _audit_sent(rule, alert)
    return True


# -- the rules' screen ------------------------------------------------------------------------------------------


class RuleError(ValueError):
    """A rule's input cannot be saved; ``field`` names the input."""

    def __init__(self, message: str, field: str):
        super().__init__(message)
        self.field = field


@dataclass
class RuleInput:
    name: str
    connection_id: int | None
    channel: str
    recipients: str = ""
    webhook_url: str = ""
    webhook_secret: str = ""  # blank: keep the stored one
    on_state_change: bool = True
    issue_threshold: int | None = None
    daily_digest: bool = True
    active: bool = True


def save_rule(rule: AlertRule | None, values: RuleInput, *, actor=None, **ctx) -> AlertRule:
    """Create or update a rule (commits, audited). The webhook's secret is encrypted and never shown again; a new
    webhook address needs the secret typed again (it is never sent to an address it was not given for)."""
    from portal.security.urlguard import UrlNotAllowed, check_connector_url

    if values.channel not in AlertChannel.ALL:
        raise RuleError("Choose e-mail or webhook.", "channel")
    if values.connection_id is not None and db.session.get(Connection, values.connection_id) is None:
        raise RuleError("Choose a connection.", "connection_id")
    recipients, url, secret_token = "", "", None
    if values.channel == AlertChannel.EMAIL:
        try:
            recipients = "\n".join(check_recipients(values.recipients))
        except ValueError as exc:
            raise RuleError(str(exc), "recipients") from exc
    else:
        url = (values.webhook_url or "").strip()
        try:
            check_connector_url(url, current_app.config.get("CONNECTOR_ALLOWED_NETWORKS") or [])
        except UrlNotAllowed as exc:
            raise RuleError(str(exc), "webhook_url") from exc
        same_address = rule is not None and rule.webhook_url == url and rule.webhook_secret_encrypted
        if values.webhook_secret:
            if len(values.webhook_secret) < 16:
                raise RuleError("The secret needs at least 16 characters.", "webhook_secret")
            secret_token = crypto.encrypt(values.webhook_secret)
        elif same_address:
            secret_token = rule.webhook_secret_encrypted
        else:
            raise RuleError("Enter the secret that signs the webhook (again, for a new address).", "webhook_secret")
    before = _rule_audit(rule) if rule is not None else None
    if rule is None:
        rule = AlertRule()
        db.session.add(rule)
    rule.name = values.name.strip()[:120] or "Alert"
    rule.connection_id = values.connection_id
    rule.channel = values.channel
    rule.recipients = recipients
    rule.webhook_url = url
    rule.webhook_secret_encrypted = secret_token
    rule.on_state_change = values.on_state_change
    rule.issue_threshold = values.issue_threshold
    rule.daily_digest = values.daily_digest
    rule.active = values.active
    db.session.flush()
    audit.record("alert_rule.update" if before is not None else "alert_rule.create", rule, before=before,
                 after=_rule_audit(rule), object_repr=rule.name, actor=actor, **ctx)
    db.session.commit()
    return rule


def delete_rule(rule: AlertRule, *, actor=None, **ctx) -> None:
    audit.record("alert_rule.delete", rule, before=_rule_audit(rule), object_repr=rule.name, actor=actor, **ctx)
    db.session.delete(rule)
    db.session.commit()


def _rule_audit(rule: AlertRule) -> dict:
    return {"name": rule.name, "connection_id": rule.connection_id, "channel": rule.channel,
            "recipients": rule.recipients, "webhook_url": rule.webhook_url,
            "webhook_secret": "(set)" if rule.webhook_secret_encrypted else "",
            "on_state_change": rule.on_state_change, "issue_threshold": rule.issue_threshold,
            "daily_digest": rule.daily_digest, "active": rule.active}


def rules() -> list[AlertRule]:
    return list(db.session.scalars(select(AlertRule).order_by(AlertRule.name, AlertRule.id)))

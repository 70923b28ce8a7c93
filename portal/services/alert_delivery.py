"""Delivering an alert: e-mail over SMTP (``PORTAL_SMTP_URL``) or a signed webhook (JSON POST).

The webhook goes through the portal's one outbound transport (``portal.security.urlguard.guarded_session``):
the same address checks as connectors, ``PORTAL_CONNECTOR_ALLOWED_NETWORKS``, no redirects. Its body is signed
with the rule's secret: ``X-ERP-Sync-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">``, so a
receiver checks both the sender and the freshness (see :func:`signature` and the README).

Every failure is a :class:`DeliveryFailed` with a message for the admin; nothing here writes to the database.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import smtplib
import ssl
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from urllib.parse import parse_qs, unquote, urlsplit

import requests

from portal.security.urlguard import UrlNotAllowed, check_connector_url, guarded_session

TIMEOUT = 10.0  # seconds for an SMTP conversation step or the webhook's answer
SIGNATURE_HEADER = "X-ERP-Sync-Signature"


class DeliveryFailed(Exception):
    """An alert could not be delivered; ``str(exc)`` is for the admin."""


@dataclass(frozen=True)
class Alert:
    event: str  # connection.failing, connection.recovered, issues.threshold, digest, test
    subject: str
    text: str  # the plain-text body (e-mail) and "text" member (webhook)
    data: Mapping  # the webhook's structured members


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    security: str  # "ssl", "starttls" or "none"
    username: str | None = None
    password: str | None = None


def parse_smtp_url(url: str) -> SmtpSettings:
    """``smtp://[user:pass@]host[:25][?starttls=on]`` or ``smtps://[user:pass@]host[:465]``."""
    parts = urlsplit(url or "")
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise ValueError("PORTAL_SMTP_URL must look like smtp://user:password@host:587?starttls=on or "
                         "smtps://user:password@host:465")
    query = {k: v[-1].lower() for k, v in parse_qs(parts.query).items()}
    if parts.scheme == "smtps":
        security = "ssl"
    elif query.get("starttls", "off") in ("on", "1", "true", "yes"):
        security = "starttls"
    else:
        security = "none"
    try:
        port = parts.port or (465 if security == "ssl" else 25)
    except ValueError as exc:
        raise ValueError("PORTAL_SMTP_URL has a port that is not a number") from exc
    return SmtpSettings(parts.hostname, port, security, unquote(parts.username) if parts.username else None,
                        unquote(parts.password) if parts.password else None)


def send_email(smtp_url: str | None, sender: str, recipients: Sequence[str], alert: Alert) -> None:
    if not smtp_url:
        raise DeliveryFailed("No mail server is set: set PORTAL_SMTP_URL to send e-mail alerts.")
    try:
        settings = parse_smtp_url(smtp_url)
    except ValueError as exc:
        raise DeliveryFailed(str(exc)) from exc
    message = EmailMessage()
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    message["Subject"] = alert.subject
    message["Date"] = formatdate(usegmt=True)
    message["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or None)
    message.set_content(alert.text)
    try:
        if settings.security == "ssl":
            server = smtplib.SMTP_SSL(settings.host, settings.port, timeout=TIMEOUT,
                                      context=ssl.create_default_context())
        else:
            server = smtplib.SMTP(settings.host, settings.port, timeout=TIMEOUT)
        with server:
            if settings.security == "starttls":
                server.starttls(context=ssl.create_default_context())
            if settings.username:
                server.login(settings.username, settings.password or "")
            refused = server.send_message(message)
    except (smtplib.SMTPException, OSError) as exc:  # OSError: refused, unreachable, timed out
        raise DeliveryFailed(f"The mail server {settings.host}:{settings.port} refused or did not answer: "
                             f"{type(exc).__name__}: {str(exc)[:200]}") from exc
    if refused:
        raise DeliveryFailed(f"The mail server refused {', '.join(sorted(refused))}.")


def signature(secret: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def send_webhook(url: str, secret: str, alert: Alert, app_config: Mapping, *, now: float | None = None) -> None:
    try:
        check_connector_url(url, app_config.get("CONNECTOR_ALLOWED_NETWORKS") or [])
    except UrlNotAllowed as exc:
        raise DeliveryFailed(f"The webhook address is not allowed: {exc}") from exc
    body = json.dumps({"event": alert.event, "subject": alert.subject, "text": alert.text, **alert.data},
                      ensure_ascii=False, sort_keys=True, default=str).encode()
    timestamp = int(now if now is not None else time.time())
    headers = {"Content-Type": "application/json", SIGNATURE_HEADER: signature(secret, timestamp, body),
               "User-Agent": "erp-sync-portal-alerts"}
    session = guarded_session(app_config)
    try:
        response = session.post(url, data=body, headers=headers, timeout=(5, TIMEOUT))
        status = response.status_code
        response.close()
    except (requests.RequestException, OSError, UrlNotAllowed) as exc:
        raise DeliveryFailed(f"The webhook could not be reached: {type(exc).__name__}: {str(exc)[:200]}") from exc
    finally:
        session.close()
    if not 200 <= status < 300:
        raise DeliveryFailed(f"The webhook answered HTTP {status}.")

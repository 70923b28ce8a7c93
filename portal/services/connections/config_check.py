"""Test before save: TestConfigData on unsaved config values, and the signed token that proves exactly those values
passed at this connector's address (checked again when the connection is saved)."""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass

from flask import current_app
from itsdangerous import BadSignature, URLSafeSerializer

from portal.connectors.client import ConnectorError
from portal.extensions import db
from portal.models import Connector
from portal.services.connectors import client_for, normalise_url


def _fingerprint(connector: Connector, values: dict) -> str:
    # Keyed: the signed token is readable (base64) in the page, and a plain hash of the values would let anyone
    # who sees it try passwords offline.
    message = json.dumps([connector.id, normalise_url(connector.url), values], sort_keys=True, default=str)
    return hmac.new(current_app.config["SECRET_KEY"].encode(), message.encode(), hashlib.sha256).hexdigest()


def _signer() -> URLSafeSerializer:
    return URLSafeSerializer(current_app.config["SECRET_KEY"], salt="connection-test")


def _connector(connector: Connector | int) -> Connector:
    return connector if isinstance(connector, Connector) else db.session.get(Connector, connector)


def test_token(connector: Connector | int, values: dict) -> str:
    """Proof that exactly these config values passed TestConfigData at this connector's address (checked again on
    save)."""
    return _signer().dumps(_fingerprint(_connector(connector), values))


def token_matches(token: str | None, connector: Connector | int, values: dict) -> bool:
    if not token:
        return False
    try:
        return hmac.compare_digest(str(_signer().loads(token)), _fingerprint(_connector(connector), values))
    except BadSignature:
        return False


@dataclass
class TestResult:
    ok: bool
    message: str
    warning: str | None = None


def test_config(connector: Connector, values: dict) -> TestResult:
    """TestConfigData with unsaved values."""
    try:
        reply = client_for(connector).test_config_data(values)
    except ConnectorError as exc:
        return TestResult(False, exc.user_message)
    text = reply.user_explanation or "The connector accepted the configuration."
    return TestResult(True, text, reply.warning)

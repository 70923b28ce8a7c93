"""A connection's secrets and where they may go: the stored (encrypted) secrets, those cleared because an address
changed and to be typed again, the config fields that are addresses, and the sealing of a secret carried
between the steps of one connection form."""

from __future__ import annotations

import re

from portal.models import Connection, Connector, FieldType
from portal.security import crypto
from portal.services import audit
from portal.services.connections.config import VALUE_TYPES, parse_config_value
from portal.services.connectors import ServiceError, normalise_url

# The reserved key, inside secrets_encrypted, listing the secrets cleared because their address changed (they must
# be typed again before the connection is tested or activated). No FieldKey holds a NUL; never sent anywhere.
REENTER_KEY = "\u0000reenter"


def stored_secrets(connection: Connection) -> dict:
    """The connection's stored secrets (decrypted), by FieldKey."""
    secrets = crypto.decrypt_json(connection.secrets_encrypted)
    secrets.pop(REENTER_KEY, None)
    return secrets


def secrets_to_reenter(connection: Connection | None) -> list[str]:
    """FieldKeys of secrets cleared by :func:`clear_secrets` and not entered again since."""
    if connection is None or not connection.secrets_encrypted:
        return []
    return list(crypto.decrypt_json(connection.secrets_encrypted).get(REENTER_KEY) or [])


def full_config(connection: Connection) -> dict:
    """Stored config including decrypted secrets: what SaveConnection sends to the connector."""
    values = dict(connection.config_values or {})
    values.update(stored_secrets(connection))
    return values


def clear_secrets(connection: Connection, *, reason: str, actor=None, **ctx) -> list[str]:
    """Forget the connection's stored secrets because the address they would be sent to changed (``reason``):
    nothing secret goes to a new address unless an admin types it again. The cleared keys are remembered
    (:func:`secrets_to_reenter`): the form asks for them, and Test and activation are refused until a save with
    them typed again has passed its test. An active connection is deactivated (it could not work without them).
    Adds an audit row; the caller commits. Returns the cleared keys ([] when nothing secret was stored)."""
    secrets = stored_secrets(connection)
    cleared = sorted(k for k, v in secrets.items() if v not in (None, ""))
    if not cleared:
        return []
    pending = sorted(set(cleared) | set(secrets_to_reenter(connection)))
    before = {"secrets": {k: "set" for k in cleared}, "active": connection.active,
              "last_test_ok": connection.last_test_ok}
    connection.secrets_encrypted = crypto.encrypt_json({REENTER_KEY: pending})
    connection.active = False
    connection.last_test_ok = False
    connection.last_test_message = f"{reason} Enter the password(s) again and test the connection."[:2000]
    audit.record("connection.secrets_cleared", connection, before=before,
                 after={"secrets": {}, "active": False, "last_test_ok": False, "reenter": pending, "reason": reason},
                 actor=actor, **ctx)
    return cleared


# ------------------------------------------------------------------------------------------ addresses and sealing

_ADDRESS_WORDS = {"url", "uri", "urls", "host", "hostname", "server", "endpoint", "address", "domain", "ip",
                  "wsdl", "site", "baseurl", "website"}


def _words(text: str) -> list[str]:
    return [w.lower() for w in re.findall(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+", text or "")]


def address_keys(fields: list[dict], *value_sets: dict) -> list[str]:
    """Text config fields that say where the connector sends the connection's secrets: named like an address
    (``url``, "Tryton server URL", ``Host`` …), or holding a ``scheme://`` value in any of ``value_sets``."""
    keys = []
    for meta in fields:
        if meta.get("FieldType") not in (FieldType.TEXT, None):
            continue
        key = meta["FieldKey"]
        words = _words(key) + _words(str(meta.get("DisplayName") or ""))
        named = any(w in _ADDRESS_WORDS or w.endswith(("url", "uri", "host")) for w in words)
        valued = any("://" in str(values.get(key) or "") for values in value_sets)
        if named or valued:
            keys.append(key)
    return keys


def address_values(fields: list[dict], values: dict) -> dict[str, str]:
    """The normalised values of the connection's address fields (see :func:`address_keys`)."""
    return {k: normalise_url(str(values.get(k) or "")) for k in address_keys(fields, values)}


def moved_addresses(fields: list[dict], stored: dict, submitted: dict) -> list[str]:
    """Address fields whose value differs (normalised) between the stored config and ``submitted``."""
    return [k for k in address_keys(fields, stored, submitted)
            if normalise_url(str(stored.get(k) or "")) != normalise_url(str(submitted.get(k) or ""))]


def submitted_values(fields: list[dict], form) -> dict:
    """The config values of a posted form, parsed as :func:`collect_config` would (bad ones left out)."""
    values = {}
    for meta in fields:
        if meta.get("FieldType") not in VALUE_TYPES or meta.get("FieldType") == FieldType.PASSWORD:
            continue
        try:
            values[meta["FieldKey"]] = parse_config_value(meta, form.get(f"cfg_{meta['FieldKey']}"))
        except ServiceError:
            continue
    return values


SEAL_PURPOSE = "connection-secret"


def seal_binding(connector: Connector, connection_ref: str, fields: list[dict], values: dict,
                 user_id: int | None) -> dict:
    """What a secret carried between the steps of one connection form is bound to: that connection (its GUID, or
    ``new:<form nonce>``), the connector and its address, the connection's own address fields, and the admin."""
    return {"connection": connection_ref, "connector": connector.id, "connector_url": normalise_url(connector.url),
            "addresses": address_values(fields, values), "user": user_id}


def seal_secret(value: str, binding: dict, key: str) -> str:
    return crypto.seal(value, purpose=SEAL_PURPOSE, binding={**binding, "field": key})


def open_secret(token: str, binding: dict, key: str) -> str:
    """The secret of a :func:`seal_secret` token with the same binding and field, within the TTL; raises
    ``crypto.SealedValueRefused`` (``SealedValueExpired`` for a genuine but stale one) otherwise."""
    return crypto.unseal(token, purpose=SEAL_PURPOSE, binding={**binding, "field": key})

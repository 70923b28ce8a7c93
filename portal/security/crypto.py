"""Connector secrets encrypted at rest with MultiFernet (keys from PORTAL_ENCRYPTION_KEYS, newest first).

The key is separate from SECRET_KEY, so leaking sessions' signing key does not reveal ERP passwords.
"""

from __future__ import annotations

import base64
import json
import time

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import current_app

SECRET_PLACEHOLDER = "••••••••"  # what a form shows for a stored secret; never the secret itself


class SecretError(RuntimeError):
    pass


def _box(keys: list[str] | None = None) -> MultiFernet:
    keys = keys if keys is not None else current_app.config["ENCRYPTION_KEYS"]
    if not keys:
        raise SecretError("No encryption key is configured (PORTAL_ENCRYPTION_KEYS).")
    try:
        return MultiFernet([Fernet(k.encode() if isinstance(k, str) else k) for k in keys])
    except ValueError as exc:
        raise SecretError("PORTAL_ENCRYPTION_KEYS holds a key that is not a valid Fernet key.") from exc


def encrypt(value: str, keys: list[str] | None = None) -> str:
    return _box(keys).encrypt(value.encode()).decode()


def decrypt(token: str, keys: list[str] | None = None) -> str:
    try:
        return _box(keys).decrypt(token.encode()).decode()
    except InvalidToken as exc:
        raise SecretError("A stored secret cannot be decrypted with the configured keys.") from exc


def encrypt_json(values: dict, keys: list[str] | None = None) -> str | None:
    return encrypt(json.dumps(values, sort_keys=True), keys) if values else None


def decrypt_json(token: str | None, keys: list[str] | None = None) -> dict:
    return json.loads(decrypt(token, keys)) if token else {}


def rotate(token: str, keys: list[str] | None = None) -> str:
    """Re-encrypt under the newest key (used by `flask --app wsgi rotate-keys`)."""
    return _box(keys).rotate(token.encode()).decode()


# ------------------------------------------------------------------------------------------- sealed form values
#
# A secret typed into a form and carried to the next step of the same form (Test, then OK) travels as a *sealed*
# value: Fernet over a JSON envelope {purpose, binding, value}, under keys derived (HKDF) from the encryption keys
# for this one use. So a ciphertext from the database (a stored secret, a connector token) does not even pass the
# MAC check, and a sealed value only opens for the same purpose and binding (connection, field, addresses …) within
# its time to live. Every refusal looks the same to the caller except expiry (which the form may explain).

SEALED_TTL = 30 * 60  # seconds; the app setting SEALED_SECRET_TTL overrides it
_SEAL_INFO = b"erp-sync-portal sealed form value v1"


class SealedValueRefused(SecretError):
    """A sealed value that is not valid here: forged, from the database, for another purpose/binding, or expired."""


class SealedValueExpired(SealedValueRefused):
    pass


def _now() -> int:
    return int(time.time())


def _seal_box(keys: list[str] | None = None) -> MultiFernet:
    keys = keys if keys is not None else current_app.config["ENCRYPTION_KEYS"]
    if not keys:
        raise SecretError("No encryption key is configured (PORTAL_ENCRYPTION_KEYS).")
    derived = []
    for key in keys:
        try:
            raw = base64.urlsafe_b64decode(key.encode() if isinstance(key, str) else key)
        except ValueError as exc:
            raise SecretError("PORTAL_ENCRYPTION_KEYS holds a key that is not a valid Fernet key.") from exc
        if len(raw) != 32:
            raise SecretError("PORTAL_ENCRYPTION_KEYS holds a key that is not a valid Fernet key.")
        material = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_SEAL_INFO).derive(raw)
        derived.append(Fernet(base64.urlsafe_b64encode(material)))
    return MultiFernet(derived)


def sealed_ttl() -> int:
    try:
        return int(current_app.config.get("SEALED_SECRET_TTL", SEALED_TTL))
    except RuntimeError:  # outside an app context
        return SEALED_TTL


def seal(value: str, *, purpose: str, binding: dict, keys: list[str] | None = None) -> str:
    """``value`` sealed for ``purpose`` and ``binding`` (JSON-native, compared exactly by :func:`unseal`)."""
    envelope = {"purpose": purpose, "binding": binding, "value": value}
    return _seal_box(keys).encrypt_at_time(json.dumps(envelope, sort_keys=True).encode(), _now()).decode()


def unseal(token: str, *, purpose: str, binding: dict, ttl: int | None = None,
           keys: list[str] | None = None) -> str:
    """The value of a :func:`seal` token made for exactly this ``purpose`` and ``binding`` at most ``ttl`` seconds
    ago (default :func:`sealed_ttl`). Raises :class:`SealedValueExpired` or :class:`SealedValueRefused`."""
    box = _seal_box(keys)
    try:
        raw = box.decrypt(token.encode())  # authenticity first: a foreign token never says whether it expired
    except (InvalidToken, ValueError, TypeError) as exc:
        raise SealedValueRefused("The sealed value is not valid here.") from exc
    try:
        envelope = json.loads(raw)
    except ValueError as exc:
        raise SealedValueRefused("The sealed value is not valid here.") from exc
    if (not isinstance(envelope, dict) or envelope.get("purpose") != purpose
            or envelope.get("binding") != json.loads(json.dumps(binding)) or not isinstance(envelope.get("value"), str)):
        raise SealedValueRefused("The sealed value is not valid here.")
    ttl = sealed_ttl() if ttl is None else ttl
    age = _now() - box.extract_timestamp(token.encode())
    if age > ttl or age < -60:  # Fernet's own allowance for clock skew
        raise SealedValueExpired("The sealed value has expired.")
    return envelope["value"]

"""Connector secrets encrypted at rest with MultiFernet (keys from PORTAL_ENCRYPTION_KEYS, newest first).

The key is separate from SECRET_KEY, so leaking sessions' signing key does not reveal ERP passwords.
"""

from __future__ import annotations

import json

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
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

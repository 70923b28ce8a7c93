"""The passwords of saved connections: the demo password, and the salted PBKDF2 digest a saved config keeps
instead of any value of type Password (the Demo ERP only has to check it)."""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Mapping

from portal.connectors.builtin.demo.catalogue import CONFIG_FIELDS

DEMO_PASSWORD = "demo"

# Config values of type Password are never stored as given: SaveConnection keeps a salted PBKDF2 digest instead
# (the Demo ERP only needs to check them), and a database from before is rewritten when it is opened.
SECRET_CONFIG_KEYS = frozenset(f["FieldKey"] for f in CONFIG_FIELDS if f["FieldType"] == "Password")
_DIGEST_PREFIX = "pbkdf2_sha256$"
_DIGEST_ROUNDS = 20_000


def _digest(secret: str, salt: bytes | None = None, rounds: int = _DIGEST_ROUNDS) -> str:
    salt = os.urandom(16) if salt is None else salt
    derived = hashlib.pbkdf2_hmac("sha256", secret.encode("utf-8"), salt, rounds)
    return f"{_DIGEST_PREFIX}{rounds}${salt.hex()}${derived.hex()}"


def _is_digest(value) -> bool:
    return isinstance(value, str) and value.startswith(_DIGEST_PREFIX)


def _stored_secret_matches(stored, candidate: str) -> bool:
    """Whether a stored config secret (a digest; a plain value from an old database) is ``candidate``."""
    if _is_digest(stored):
        try:
            rounds, salt, _ = stored[len(_DIGEST_PREFIX):].split("$")
            expected = _digest(candidate, bytes.fromhex(salt), int(rounds))
        except ValueError:
            return False
        return hmac.compare_digest(expected, stored)
    return hmac.compare_digest(str(stored or "").encode("utf-8"), candidate.encode("utf-8"))


def config_to_store(info: Mapping) -> dict:
    """A connection's config as the Demo ERP keeps it: every Password value replaced by its digest."""
    stored = dict(info)
    for key in SECRET_CONFIG_KEYS:
        value = stored.get(key)
        if value not in (None, "") and not _is_digest(value):
            stored[key] = _digest(str(value))
    return stored

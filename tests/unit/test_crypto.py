from __future__ import annotations

import pytest
from cryptography.fernet import Fernet

from portal.security import crypto


def test_round_trip_and_rotation():
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    token = crypto.encrypt("s3cret", [old])
    assert "s3cret" not in token
    assert crypto.decrypt(token, [new, old]) == "s3cret"
    rotated = crypto.rotate(token, [new, old])
    assert crypto.decrypt(rotated, [new]) == "s3cret"


def test_wrong_key_gives_a_readable_error():
    token = crypto.encrypt("x", [Fernet.generate_key().decode()])
    with pytest.raises(crypto.SecretError, match="cannot be decrypted"):
        crypto.decrypt(token, [Fernet.generate_key().decode()])
    with pytest.raises(crypto.SecretError, match="not a valid Fernet key"):
        crypto.encrypt("x", ["not-a-key"])


def test_audit_masks_secrets():
    from portal.services.audit import mask

    assert mask({"ApiKey": "abc", "password": "x", "name": "n", "nested": {"token": "t"}}, {"ApiKey"}) == {
        "ApiKey": crypto.SECRET_PLACEHOLDER, "password": crypto.SECRET_PLACEHOLDER, "name": "n",
        "nested": {"token": crypto.SECRET_PLACEHOLDER}}

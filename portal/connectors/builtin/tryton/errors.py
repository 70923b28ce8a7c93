"""Tryton's errors as the protocol answers them: ``_protocol`` wraps a protocol method so that a TrytonError
raised inside it becomes a ProtocolError with a readable text and an ErrorCode."""

from __future__ import annotations

from functools import wraps

from portal.connectors.builtin.tryton_rpc import (
    TrytonAddressNotAllowed,
    TrytonAuthError,
    TrytonConcurrencyError,
    TrytonError,
    TrytonForbidden,
    TrytonServerError,
    TrytonUnknownDatabase,
    TrytonUnreachable,
    TrytonUserError,
)
from portal.connectors.service import ProtocolError

ERROR_CODES = [
    (TrytonAddressNotAllowed, "ADDRESS_NOT_ALLOWED"),
    (TrytonUnreachable, "ERP_UNREACHABLE"),  # TrytonTimeout too: one code and one text (no port-scan oracle)
    (TrytonAuthError, "ERP_AUTH_FAILED"),
    (TrytonUnknownDatabase, "ERP_UNKNOWN_DATABASE"),
    (TrytonForbidden, "ERP_FORBIDDEN"),
    (TrytonConcurrencyError, "CONFLICT"),
    (TrytonUserError, "ERP_VALIDATION"),
    (TrytonServerError, "ERP_ERROR"),
]


def _protocol(method):
    """Turn TrytonErrors raised inside a protocol method into readable ProtocolErrors."""

    @wraps(method)
    def wrapper(self, body):
        try:
            return method(self, body)
        except TrytonError as exc:
            code = next((c for cls, c in ERROR_CODES if isinstance(exc, cls)), "ERP_ERROR")
            message = exc.message
            if code == "CONFLICT":
                message = ("The record was changed in Tryton while it was being saved; nothing was written. "
                           "Read it again and retry.")
            raise ProtocolError(message, exc.tech, code) from exc

    return wrapper

"""Search before create (spec §2.4: "you cannot create a new ERP actor without first checking for an existing
candidate"), enforced by the server and not only by the page.

A search of the Connect dialog that answered (simple or advanced, with or without matches) hands out a *proof*: a
signed, timestamped token bound to the user, the connection, the record (CRM type and id), the ERP actor type and
the dialog (its nonce, which is also the Create's idempotency key). The Create button of the results carries it to
the Create form, whose POST carries it back. The Create form and the Create POST refuse anything else: no proof, a
tampered one, one issued for another user, record, connection, actor type or dialog, or one older than
:data:`MAX_AGE` seconds (``ERP_SEARCH_PROOF_MAX_AGE``). Stateless: nothing is stored, the app's secret key signs it.
"""

from __future__ import annotations

from flask import current_app
from itsdangerous import BadData, SignatureExpired, URLSafeTimedSerializer

SALT = "erp-tab.search-before-create"
MAX_AGE = 30 * 60  # seconds between the search and the Create


class ProofRefused(Exception):
    """The Create has no valid proof of a recent search; ``message`` says what to do."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def max_age() -> int:
    return int(current_app.config.get("ERP_SEARCH_PROOF_MAX_AGE", MAX_AGE))


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.secret_key, salt=SALT)


def _claims(user_id: int, connection_id: int, crm_type: str, record_id: int, actor_type: str, nonce: str) -> list:
    return [int(user_id), int(connection_id), str(crm_type), int(record_id), str(actor_type), str(nonce)]


def issue(user_id: int, connection_id: int, crm_type: str, record_id: int, actor_type: str, nonce: str) -> str:
    """The proof that this user just searched ``actor_type`` on this connection for this record in this dialog."""
    return _serializer().dumps(_claims(user_id, connection_id, crm_type, record_id, actor_type, nonce))


def check(token: str | None, user_id: int, connection_id: int, crm_type: str, record_id: int, actor_type: str,
          nonce: str, shown_as: str | None = None) -> None:
    """Raise :class:`ProofRefused` unless ``token`` is a proof issued for exactly these, within :func:`max_age`.
    ``shown_as``: the actor type's name in the messages (its label on the connection; default the constant)."""
    name = shown_as or actor_type
    search_first = (f"Search the ERP first: a new {name} can be created only from the results of a search in "
                    f"this dialog, so that a {name} that already exists is not created twice.")
    if not token or len(token) > 1000:
        raise ProofRefused(search_first)
    minutes = max(1, max_age() // 60)
    try:
        claims = _serializer().loads(token, max_age=max_age())
    except SignatureExpired:
        raise ProofRefused(f"Your search was more than {minutes} minutes ago: search the ERP again before creating "
                           f"a {name} (it may have been added meanwhile).") from None
    except (BadData, ValueError, TypeError):
        raise ProofRefused(search_first) from None
    if claims != _claims(user_id, connection_id, crm_type, record_id, actor_type, nonce):
        raise ProofRefused(search_first)

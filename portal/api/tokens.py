"""Personal API tokens: make (the secret shown once), list, revoke, and find the token of a request.

Only ``sha256(secret)`` is stored. Looking a token up by its hash is an indexed equality on a value the caller
cannot steer (a hash of what they sent), then ``hmac.compare_digest`` on the row found, so neither the lookup nor
the comparison tells by its timing how much of a guess was right.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import datetime, timedelta

from sqlalchemy import select

from portal.database import utcnow
from portal.extensions import db
from portal.models import API_SCOPES, ApiToken, User
from portal.services import audit

SECRET_PREFIX = "esp_"
DEFAULT_DAYS = 90
MAX_DAYS = 365
MAX_SECRET_LENGTH = 100  # anything longer is not one of ours: refused before hashing
LAST_USED_EVERY = timedelta(minutes=1)  # last_used_at is written at most this often (not a write per request)


class TokenError(ValueError):
    """A token cannot be made as asked; ``field`` names the form field, ``str(error)`` is for the screen."""

    def __init__(self, message: str, field: str = ""):
        super().__init__(message)
        self.field = field


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8", "replace")).hexdigest()


def password_stamp(user: User) -> str:
    """What binds a token to the user's current password (a new password hash → a new stamp)."""
    return hashlib.sha256(("api-token:" + (user.password_hash or "")).encode()).hexdigest()


def may_hold_tokens(user: User | None) -> bool:
    """Licensed users and admins may make tokens (and use them: checked again on every request)."""
    return user is not None and user.is_active and (user.is_admin or bool(user.erp_licence))


def create(user: User, name: str, scopes, days: int = DEFAULT_DAYS, **ctx) -> tuple[ApiToken, str]:
    """Make a token for ``user``; returns (token, secret) — the secret is never stored nor shown again."""
    if not may_hold_tokens(user):
        raise TokenError("Only users with an ERP Sync licence and admins may create API tokens.")
    name = (name or "").strip()
    if not name or len(name) > 80:
        raise TokenError("Give the token a name of at most 80 characters.", "name")
    chosen = [scope for scope in API_SCOPES if scope in set(scopes or ())]
    if not chosen or len(chosen) != len(set(scopes or ())):
        raise TokenError("Choose at least one scope: read, sync or link.", "scopes")
    try:
        days = int(days)
    except (TypeError, ValueError):
        raise TokenError("Choose when the token expires.", "days") from None
    if not 1 <= days <= MAX_DAYS:
        raise TokenError(f"A token lasts from 1 to {MAX_DAYS} days.", "days")
    secret = SECRET_PREFIX + secrets.token_urlsafe(32)
    now = utcnow()
    token = ApiToken(user_id=user.id, name=name, prefix=secret[:8], token_hash=digest(secret), scopes=chosen,
                     password_stamp=password_stamp(user), created_at=now, expires_at=now + timedelta(days=days))
    db.session.add(token)
    db.session.flush()
    audit.record("token.create", token, object_type="api_token", object_repr=f"{name} ({token.prefix}…)",
                 after={"scopes": chosen, "expires_at": token.expires_at.isoformat(timespec="seconds")}, **ctx)
    db.session.commit()
    return token, secret


def of_user(user: User) -> list[ApiToken]:
    return list(db.session.scalars(select(ApiToken).where(ApiToken.user_id == user.id)
                                   .order_by(ApiToken.created_at.desc(), ApiToken.id.desc())))


def revoke(user: User, token_id: int, **ctx) -> ApiToken | None:
    """Revoke one of ``user``'s own tokens (None when there is no such token of theirs)."""
    token = db.session.get(ApiToken, token_id)
    if token is None or token.user_id != user.id:
        return None
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        audit.record("token.revoke", token, object_type="api_token", object_repr=f"{token.name} ({token.prefix}…)",
                     before={"revoked": False}, after={"revoked": True}, **ctx)
        db.session.commit()
    return token


def find(secret: str | None, now: datetime | None = None) -> ApiToken | None:
    """The live token whose secret this is, with a user who is active and whose password has not changed since
    the token was made; None otherwise."""
    if not secret or not secret.startswith(SECRET_PREFIX) or len(secret) > MAX_SECRET_LENGTH:
        return None
    wanted = digest(secret)
    token = db.session.scalar(select(ApiToken).where(ApiToken.token_hash == wanted))
    if token is None or not hmac.compare_digest(token.token_hash, wanted):
        return None
    now = now or utcnow()
    user = token.user
    if not token.live(now) or user is None or not user.is_active:
        return None
    if not hmac.compare_digest(token.password_stamp, password_stamp(user)):
        return None
    if token.last_used_at is None or now - token.last_used_at >= LAST_USED_EVERY:
        token.last_used_at = now
        db.session.commit()
    return token

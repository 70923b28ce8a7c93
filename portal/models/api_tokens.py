"""Personal API tokens for the automation API (``/api/v1/``, portal/api/).

The secret (``esp_`` + 32 random bytes, URL-safe) is shown once when the token is made; only its SHA-256 is kept
(``token_hash``), with the first 8 characters (``prefix``) so people can tell their tokens apart in a list. A token
acts as its user, never with more rights than the user has at the time of each request (portal/api/auth.py).

``password_stamp`` binds the token to the user's password as it was when the token was made: a password change or
reset (by the user or an admin) kills every token of that user without anyone having to remember to revoke them.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.database import utcnow
from portal.extensions import db

API_SCOPES = ("read", "sync", "link")


class ApiToken(db.Model):
    __tablename__ = "api_token"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(80))
    prefix: Mapped[str] = mapped_column(String(8))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[list] = mapped_column(JSON, default=list)
    password_stamp: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)
    last_used_at: Mapped[datetime | None] = mapped_column(default=None)

    user = relationship("User")

    def has_scope(self, scope: str) -> bool:
        return scope in (self.scopes or [])

    def live(self, now: datetime | None = None) -> bool:
        now = now or utcnow()
        return self.revoked_at is None and self.expires_at > now

    def __repr__(self) -> str:
        return f"<ApiToken {self.id} {self.prefix}… user={self.user_id}>"

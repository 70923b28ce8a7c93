from __future__ import annotations

from enum import StrEnum

from sqlalchemy import Column, ForeignKey, String, Table
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.extensions import db
from portal.models.base import TimestampMixin
from portal.security import passwords


class Role(StrEnum):
    ADMIN = "admin"
    USER = "user"


group_members = Table(
    "group_member",
    db.metadata,
    Column("user_id", ForeignKey("user.id", ondelete="CASCADE"), primary_key=True),
    Column("group_id", ForeignKey("user_group.id", ondelete="CASCADE"), primary_key=True),
)


class User(TimestampMixin, db.Model):
    __tablename__ = "user"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    name: Mapped[str] = mapped_column(String(120))
    password_hash: Mapped[str] = mapped_column(String(255))
    role: Mapped[str] = mapped_column(String(16), default=Role.USER)
    is_active: Mapped[bool] = mapped_column(default=True)
    # The per-user ERP Sync licence seat: the ERP tab shows only to licensed users.
    erp_licence: Mapped[bool] = mapped_column(default=False)
    # Every signed-in session carries the epoch it started in; raising it ends all of the user's sessions
    # (sign-out, password, role, licence or active change, "sign out everywhere": portal/auth/sessions.py).
    session_epoch: Mapped[int] = mapped_column(default=0, server_default="0")
    # The culture code (US, NO, GB …: portal/services/multilang.LANGUAGES) connector texts are shown in; None =
    # from the browser's Accept-Language (portal/i18n.py). Chosen on the Account page.
    language: Mapped[str | None] = mapped_column(String(2), default=None)

    groups: Mapped[list[UserGroup]] = relationship(
        secondary=group_members, back_populates="members", order_by="UserGroup.name"
    )

    def set_password(self, password: str) -> None:
        self.password_hash = passwords.hash_password(password)

    def check_password(self, password: str) -> bool:
        return passwords.check_password(self.password_hash, password)

    def end_sessions(self) -> None:
        """Make every session signed in so far invalid (the caller commits)."""
        self.session_epoch = (self.session_epoch or 0) + 1

    @property
    def is_admin(self) -> bool:
        return self.role == Role.ADMIN

    def __repr__(self) -> str:
        return f"<User {self.id} {self.email}>"


class UserGroup(TimestampMixin, db.Model):
    __tablename__ = "user_group"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    description: Mapped[str] = mapped_column(String(500), default="")

    members: Mapped[list[User]] = relationship(
        secondary=group_members, back_populates="groups", order_by="User.name"
    )

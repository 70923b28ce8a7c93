"""Users, groups and ERP Sync licence seats."""

from __future__ import annotations

import re

from sqlalchemy import func, select

from portal.extensions import db
from portal.models import Role, User, UserGroup
from portal.services import audit

MIN_PASSWORD_LENGTH = 12
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class UserError(ValueError):
    """A user change that breaks a rule; the message is shown to the admin."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


def validate_password(password: str) -> None:
    if len(password or "") < MIN_PASSWORD_LENGTH:
        raise UserError(f"The password must be at least {MIN_PASSWORD_LENGTH} characters.", "password")


def _check_email(email: str, user_id: int | None = None) -> str:
    email = (email or "").strip().lower()
    if not EMAIL_RE.match(email):
        raise UserError("Enter a valid e-mail address.", "email")
    clash = db.session.scalar(select(User).where(func.lower(User.email) == email))
    if clash is not None and clash.id != user_id:
        raise UserError("Another user already has this e-mail address.", "email")
    return email


def user_snapshot(user: User) -> dict:
    return {"email": user.email, "name": user.name, "role": user.role, "is_active": user.is_active,
            "erp_licence": user.erp_licence, "groups": sorted(g.name for g in user.groups)}


def create_user(*, email: str, name: str, password: str, role: str = Role.USER, erp_licence: bool = False,
                groups: list[UserGroup] | None = None, is_active: bool = True, actor=None, **ctx) -> User:
    email = _check_email(email)
    validate_password(password)
    if role not in (Role.ADMIN, Role.USER):
        raise UserError("Unknown role.", "role")
    user = User(email=email, name=name.strip() or email, role=role, erp_licence=erp_licence, is_active=is_active)
    user.set_password(password)
    user.groups = list(groups or [])
    db.session.add(user)
    db.session.flush()
    audit.record("user.create", user, after=user_snapshot(user), actor=actor, **ctx)
    db.session.commit()
    return user


def admin_count(exclude_id: int | None = None) -> int:
    query = select(func.count()).select_from(User).where(User.role == Role.ADMIN, User.is_active.is_(True))
    if exclude_id is not None:
        query = query.where(User.id != exclude_id)
    return db.session.scalar(query)


def update_user(user: User, *, email: str, name: str, role: str, is_active: bool, erp_licence: bool,
                groups: list[UserGroup], password: str | None = None, actor=None, **ctx) -> User:
    before = user_snapshot(user)
    email = _check_email(email, user.id)
    if role not in (Role.ADMIN, Role.USER):
        raise UserError("Unknown role.", "role")
    demoting = user.role == Role.ADMIN and (role != Role.ADMIN or not is_active)
    if demoting and admin_count(exclude_id=user.id) == 0:
        raise UserError("This is the last active admin; make someone else an admin first.", "role")
    if password:
        validate_password(password)
        user.set_password(password)
    user.email, user.name, user.role = email, name.strip() or email, role
    user.is_active, user.erp_licence, user.groups = is_active, erp_licence, list(groups)
    after = user_snapshot(user)
    if password:
        after["password"] = "changed"
    audit.record("user.update", user, before=before, after=after, actor=actor, **ctx)
    db.session.commit()
    return user


def set_erp_licence(user: User, licensed: bool, actor=None, **ctx) -> User:
    """Assign or remove the user's ERP Sync licence seat (idempotent: the same value twice is one change)."""
    if user.erp_licence != licensed:
        before = user_snapshot(user)
        user.erp_licence = licensed
        audit.record("user.licence", user, before=before, after=user_snapshot(user), actor=actor, **ctx)
        db.session.commit()
    return user


def licence_count() -> int:
    """ERP Sync licence seats in use (every user holding the licence flag)."""
    return db.session.scalar(select(func.count()).select_from(User).where(User.erp_licence.is_(True))) or 0


def save_group(group: UserGroup | None, *, name: str, description: str, members: list[User], actor=None,
               **ctx) -> UserGroup:
    name = (name or "").strip()
    if not name:
        raise UserError("A group needs a name.", "name")
    clash = db.session.scalar(select(UserGroup).where(func.lower(UserGroup.name) == name.lower()))
    if clash is not None and (group is None or clash.id != group.id):
        raise UserError("Another group already has this name.", "name")
    before = None
    if group is None:
        group = UserGroup(name=name)
        db.session.add(group)
    else:
        before = {"name": group.name, "description": group.description,
                  "members": sorted(u.email for u in group.members)}
    group.name, group.description, group.members = name, description or "", list(members)
    db.session.flush()
    after = {"name": group.name, "description": group.description, "members": sorted(u.email for u in members)}
    audit.record("group.create" if before is None else "group.update", group, before=before, after=after,
                 actor=actor, **ctx)
    db.session.commit()
    return group


def delete_group(group: UserGroup, actor=None, **ctx) -> None:
    audit.record("group.delete", group, before={"name": group.name}, actor=actor, **ctx)
    db.session.delete(group)
    db.session.commit()

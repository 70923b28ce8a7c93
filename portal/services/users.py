"""Users, groups and ERP Sync licence seats."""

from __future__ import annotations

import re

from sqlalchemy import func, select

from portal.extensions import db
from portal.models import Role, User, UserGroup
from portal.security import password_policy
from portal.services import audit

MIN_PASSWORD_LENGTH = password_policy.MIN_LENGTH
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class UserError(ValueError):
    """A user change that breaks a rule; the message is shown to the admin."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


def validate_password(password: str, *, email: str | None = None, name: str | None = None,
                      field: str = "password") -> None:
    """The password policy (portal/security/password_policy.py) as a field error of ``field``."""
    message = password_policy.problem(password, email=email, name=name)
    if message:
        raise UserError(message, field)


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
    validate_password(password, email=email, name=name)
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
        validate_password(password, email=email, name=name)
        user.set_password(password)
    # A new password, role, licence or active state ends every session the user has (portal/auth/sessions.py).
    ends_sessions = bool(password) or (user.role, user.is_active, user.erp_licence) != (role, is_active, erp_licence)
    user.email, user.name, user.role = email, name.strip() or email, role
    user.is_active, user.erp_licence, user.groups = is_active, erp_licence, list(groups)
    after = user_snapshot(user)
    if password:
        after["password"] = "changed"
    if ends_sessions:
        user.end_sessions()
        after["sessions"] = "ended"
    if not is_active and _revoke_api_tokens(user):
        after["api_tokens"] = "revoked"  # reactivating the user does not bring them back
    audit.record("user.update", user, before=before, after=after, actor=actor, **ctx)
    db.session.commit()
    return user


def _revoke_api_tokens(user: User) -> int:
    from portal.database import utcnow
    from portal.models import ApiToken

    tokens = db.session.scalars(select(ApiToken).where(ApiToken.user_id == user.id, ApiToken.revoked_at.is_(None)))
    now = utcnow()
    count = 0
    for token in tokens:
        token.revoked_at, count = now, count + 1
    return count


def set_erp_licence(user: User, licensed: bool, actor=None, **ctx) -> User:
    """Assign or remove the user's ERP Sync licence seat (idempotent: the same value twice is one change)."""
    if user.erp_licence != licensed:
        before = user_snapshot(user)
        user.erp_licence = licensed
        user.end_sessions()  # the row itself says it: a licence change ends the user's sessions
        audit.record("user.licence", user, before=before, after=user_snapshot(user), actor=actor, **ctx)
        db.session.commit()
    return user


def end_sessions(user: User, actor=None, **ctx) -> User:
    """Sign ``user`` out everywhere: every session signed in so far is refused from the next request on."""
    user.end_sessions()
    self_service = actor is not None and getattr(actor, "id", None) == user.id
    audit.record("auth.sign_out_everywhere" if self_service else "user.sessions_end", user,
                 after={"sessions": "ended"}, actor=actor, **ctx)
    db.session.commit()
    return user


def change_own_password(user: User, *, current: str, new: str, actor=None, **ctx) -> User:
    """A user changing their own password: the current one must be right, the new one pass the policy and differ.
    Ends every session of the user (the caller keeps its own one signed in)."""
    if not current or not user.check_password(current):
        raise UserError("The current password is not correct.", "current_password")
    validate_password(new, email=user.email, name=user.name, field="new_password")
    if new == current:
        raise UserError("The new password must differ from the current one.", "new_password")
    user.set_password(new)
    user.end_sessions()
    audit.record("auth.password_change", user, after={"password": "changed", "sessions": "ended"},
                 actor=actor or user, **ctx)
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

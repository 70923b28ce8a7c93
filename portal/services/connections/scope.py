"""Who may use a connection (its scope): everyone, or specific users and groups, each allowed to connect or also
to create in the ERP."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select

from portal.extensions import db
from portal.models import Connection, ConnectionAccess, User, UserGroup

# ---------------------------------------------------------------------------------------------- scope

@dataclass
class Scope:
    all_access: bool = True
    all_can_create: bool = True
    # (kind 'user'|'group', id) -> 'connect' | 'create'
    entries: dict[tuple[str, int], str] = field(default_factory=dict)


def scope_of(connection: Connection | None) -> Scope:
    if connection is None:
        return Scope()
    entries = {}
    for row in connection.access:
        kind, ident = ("user", row.user_id) if row.user_id else ("group", row.group_id)
        entries[(kind, ident)] = "create" if row.can_create else "connect"
    return Scope(connection.all_access, connection.all_can_create, entries)


EMPTY_SCOPE = ("Choose at least one user or group for “Specific users and groups”, or choose Everyone: "
               "nobody could use this connection.")


def _known_entries(scope: Scope) -> dict[tuple[str, int], str]:
    """The scope's entries whose user or group exists (others are dropped, never stored)."""
    user_ids = {i for (k, i) in scope.entries if k == "user"}
    group_ids = {i for (k, i) in scope.entries if k == "group"}
    known_users = set(db.session.scalars(select(User.id).where(User.id.in_(user_ids)))) if user_ids else set()
    known_groups = set(db.session.scalars(select(UserGroup.id).where(UserGroup.id.in_(group_ids)))) \
        if group_ids else set()
    return {(kind, ident): level for (kind, ident), level in scope.entries.items()
            if (kind == "user" and ident in known_users) or (kind == "group" and ident in known_groups)}


def scope_problem(scope: Scope) -> str | None:
    """Why the scope cannot be saved, or None: "Specific users and groups" needs at least one existing user or group
    (spec §1.4: OK stays dimmed while the scope is missing). Checked by :func:`save_connection`, so no caller (the
    form, the CLI, a script) stores a connection nobody can use; the form asks first to show it on the scope."""
    if scope.all_access or _known_entries(scope):
        return None
    return EMPTY_SCOPE


def _apply_scope(connection: Connection, scope: Scope) -> None:
    connection.all_access = scope.all_access
    connection.all_can_create = scope.all_can_create
    connection.access.clear()
    db.session.flush()
    if scope.all_access:
        return
    for (kind, ident), level in sorted(_known_entries(scope).items()):
        connection.access.append(ConnectionAccess(
            user_id=ident if kind == "user" else None, group_id=ident if kind == "group" else None,
            can_connect=True, can_create=level == "create"))


def scope_summary(connection: Connection) -> str:
    if connection.all_access:
        return "Everyone" + ("" if connection.all_can_create else " (create in ERP: nobody)")
    names = [(row.user.name if row.user_id else f"group {row.group.name}") for row in connection.access]
    return ", ".join(names) if names else "No users or groups are selected"

"""Settings → Users and Groups (admins only: the admin blueprint checks the role before every request).

Users are never deleted, only deactivated. The rules (unique e-mail, the password policy, last active admin)
are portal/services/users.py's; every change is audited there in the same transaction. A new password, role,
licence or active state ends every session of the user (portal/auth/sessions.py); so does "Sign out everywhere".
An admin acting on their own account stays signed in in the browser they act from.
"""

from __future__ import annotations

from flask import flash, g, redirect, render_template, request, url_for
from sqlalchemy import func, select
from sqlalchemy.orm import selectinload
from werkzeug.routing import BuildError

from portal.admin import bp
from portal.admin.forms_users import GroupForm, UserForm
from portal.auth import sessions
from portal.extensions import db
from portal.htmx import hx_trigger, redirect_for, toast, wants_partial
from portal.models import User, UserGroup
from portal.services.users import (
    UserError,
    create_user,
    delete_group,
    end_sessions,
    licence_count,
    save_group,
    set_erp_licence,
    update_user,
)
from portal.web import apply_form_errors, audit_ctx, get_or_404, render_form

# Settings sub-navigation: (label, endpoint, fallback URL, endpoint prefixes that mark it current).
SETTINGS_NAV = (
    ("Sync", "admin.sync", "/settings/sync",
     ("admin.sync", "admin.connection", "admin.connector", "admin.run", "admin.mapping", "admin.alert",
      "admin.list_mapping", "admin.default", "admin.rank", "admin.preview")),
    ("Sync issues", "admin.sync_issues_inbox", "/settings/sync/issues", ("admin.sync_issues",)),
    ("Import", "admin.import_index", "/settings/import", ("admin.import_",)),
    ("Users", "admin.user_list", "/settings/users", ("admin.user_",)),
    ("Groups", "admin.group_list", "/settings/groups", ("admin.group_",)),
    ("Lists", "admin.lists", "/settings/lists", ("admin.list",)),
    ("Fields", "admin.fields", "/settings/fields", ("admin.field",)),
    ("Audit log", "admin.audit_log", "/settings/audit", ("admin.audit",)),
)


def _nav_url(endpoint: str, fallback: str) -> str:
    try:
        return url_for(endpoint)
    except BuildError:  # a settings page another engineer has not registered yet
        return fallback


@bp.context_processor
def _settings_nav():
    def settings_nav():
        # the entry with the longest matching prefix is current ("admin.sync_issues" over "admin.sync")
        current = request.endpoint or ""
        matched = [max((len(p) for p in prefixes if current.startswith(p)), default=0)
                   for _label, _endpoint, _fallback, prefixes in SETTINGS_NAV]
        best = max(matched, default=0)
        return [(label, _nav_url(endpoint, fallback), bool(best) and length == best)
                for (label, endpoint, fallback, _prefixes), length in zip(SETTINGS_NAV, matched, strict=True)]

    return {"settings_nav": settings_nav}


def _field_error(form, exc: UserError) -> None:
    apply_form_errors(form, {exc.field or "": str(exc)})


def _keep_own_session(user: User) -> None:
    """The epoch of ``user`` moved: when it is the acting admin, this browser stays signed in (the others not)."""
    if g.get("user") is not None and g.user.id == user.id and user.is_active:
        sessions.stamp(user)


def _group_choices() -> list[tuple[int, str]]:
    groups = db.session.scalars(select(UserGroup).order_by(func.lower(UserGroup.name)))
    return [(group.id, group.name) for group in groups]


def _groups_by_id(ids) -> list[UserGroup]:
    ids = list(ids or [])
    return list(db.session.scalars(select(UserGroup).where(UserGroup.id.in_(ids)))) if ids else []


# ---------------------------------------------------------------------------------------------------------
# Users


@bp.route("/users")
def user_list():
    users = db.session.scalars(
        select(User).options(selectinload(User.groups)).order_by(func.lower(User.name), User.id)
    ).all()
    return render_template("admin/users/list.html", users=users, licences=licence_count())


@bp.route("/users/licences")
def user_licence_count():
    """The seat counter alone; the list refreshes it when a row's licence toggles."""
    return render_template("admin/users/_licence_count.html", licences=licence_count())


def _render_user_form(form: UserForm, user: User | None):
    action = url_for("admin.user_edit", user_id=user.id) if user else url_for("admin.user_create")
    return render_form("admin/users/form.html", "admin/users/_form.html", form, user=user, action=action)


@bp.route("/users/new", methods=["GET", "POST"])
def user_create():
    form = UserForm()
    form.groups.choices = _group_choices()
    if form.validate_on_submit():
        try:
            user = create_user(
                email=form.email.data, name=form.name.data or "", password=form.password.data or "",
                role=form.role.data, erp_licence=form.erp_licence.data, is_active=form.is_active.data,
                groups=_groups_by_id(form.groups.data), **audit_ctx(),
            )
        except UserError as exc:
            _field_error(form, exc)
        else:
            flash(f"User {user.email} created.", "success")
            return redirect_for(url_for("admin.user_list"))
    return _render_user_form(form, None)


@bp.route("/users/<int:user_id>/edit", methods=["GET", "POST"])
def user_edit(user_id: int):
    user = get_or_404(User, user_id)
    form = UserForm(obj=user)
    form.groups.choices = _group_choices()
    if request.method == "GET":
        form.groups.data = [group.id for group in user.groups]
        form.password.data = ""
    if form.validate_on_submit():
        try:
            update_user(
                user, email=form.email.data, name=form.name.data or "", role=form.role.data,
                is_active=form.is_active.data, erp_licence=form.erp_licence.data,
                groups=_groups_by_id(form.groups.data), password=form.password.data or None, **audit_ctx(),
            )
        except UserError as exc:
            db.session.rollback()
            _field_error(form, exc)
        else:
            _keep_own_session(user)
            flash(f"User {user.email} saved.", "success")
            return redirect_for(url_for("admin.user_list"))
    return _render_user_form(form, user)


@bp.route("/users/<int:user_id>/licence", methods=["POST"])
def user_licence(user_id: int):
    """Assign (erp_licence=1) or remove (erp_licence=0) the seat; answers the row for htmx."""
    user = get_or_404(User, user_id)
    wanted = request.form.get("erp_licence")
    licensed = (not user.erp_licence) if wanted is None else wanted.lower() in ("1", "on", "true", "yes")
    set_erp_licence(user, licensed, **audit_ctx())
    _keep_own_session(user)
    message = f"ERP Sync licence {'assigned to' if licensed else 'removed from'} {user.name}."
    if wants_partial():
        hx_trigger("licences-changed")
        toast("success", message)
        return render_template("admin/users/_user_row.html", user=user)
    flash(message, "success")
    return redirect(url_for("admin.user_list"))


@bp.route("/users/<int:user_id>/sign-out", methods=["POST"])
def user_sign_out(user_id: int):
    """Sign the user out everywhere (a lost laptop, a shared password): every session of theirs is refused from the
    next request on. Answers the row for htmx."""
    user = get_or_404(User, user_id)
    end_sessions(user, **audit_ctx())
    _keep_own_session(user)
    message = f"{user.name} is signed out everywhere" + (" else." if user.id == g.user.id else ".")
    if wants_partial():
        toast("success", message)
        return render_template("admin/users/_user_row.html", user=user)
    flash(message, "success")
    return redirect(url_for("admin.user_list"))


# ---------------------------------------------------------------------------------------------------------
# Groups


@bp.route("/groups")
def group_list():
    groups = db.session.scalars(
        select(UserGroup).options(selectinload(UserGroup.members)).order_by(func.lower(UserGroup.name))
    ).all()
    return render_template("admin/users/groups.html", groups=groups)


def _user_choices() -> list[tuple[int, str]]:
    users = db.session.scalars(select(User).order_by(func.lower(User.name), User.id))
    return [(user.id, f"{user.name} <{user.email}>" + ("" if user.is_active else " (inactive)")) for user in users]


def _render_group_form(form: GroupForm, group: UserGroup | None):
    action = url_for("admin.group_edit", group_id=group.id) if group else url_for("admin.group_create")
    return render_form("admin/users/group_form.html", "admin/users/_group_form.html", form, group=group,
                       action=action)


def _users_by_id(ids) -> list[User]:
    ids = list(ids or [])
    return list(db.session.scalars(select(User).where(User.id.in_(ids)))) if ids else []


@bp.route("/groups/new", methods=["GET", "POST"])
def group_create():
    form = GroupForm()
    form.members.choices = _user_choices()
    if form.validate_on_submit():
        try:
            group = save_group(None, name=form.name.data, description=form.description.data or "",
                               members=_users_by_id(form.members.data), **audit_ctx())
        except UserError as exc:
            db.session.rollback()
            _field_error(form, exc)
        else:
            flash(f"Group “{group.name}” created.", "success")
            return redirect_for(url_for("admin.group_list"))
    return _render_group_form(form, None)


@bp.route("/groups/<int:group_id>/edit", methods=["GET", "POST"])
def group_edit(group_id: int):
    group = get_or_404(UserGroup, group_id)
    form = GroupForm(obj=group)
    form.members.choices = _user_choices()
    if request.method == "GET":
        form.members.data = [user.id for user in group.members]
    if form.validate_on_submit():
        try:
            save_group(group, name=form.name.data, description=form.description.data or "",
                       members=_users_by_id(form.members.data), **audit_ctx())
        except UserError as exc:
            db.session.rollback()
            _field_error(form, exc)
        else:
            flash(f"Group “{group.name}” saved.", "success")
            return redirect_for(url_for("admin.group_list"))
    return _render_group_form(form, group)


@bp.route("/groups/<int:group_id>/delete", methods=["POST"])
def group_delete(group_id: int):
    group = get_or_404(UserGroup, group_id)
    name = group.name
    delete_group(group, **audit_ctx())
    flash(f"Group “{name}” deleted.", "success")
    return redirect_for(url_for("admin.group_list"))

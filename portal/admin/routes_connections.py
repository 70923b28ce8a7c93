"""ERP connections: define/configure (config fields from the connector, Test before OK, scope), activate,
test, refresh fields, soft delete and restore."""

from __future__ import annotations

import contextlib

from flask import render_template, request, url_for
from sqlalchemy import select

from portal.admin import bp
from portal.admin.forms_sync import ConnectionForm
from portal.extensions import db
from portal.htmx import redirect_for, toast, wants_partial
from portal.models import Connection, Connector, User, UserGroup
from portal.models.erp import ConflictPolicy
from portal.security import crypto
from portal.services import connections as service
from portal.services.connectors import ServiceError
from portal.web import audit_ctx, get_or_404


def _connector_choices(current: Connector | None) -> list[tuple[int, str]]:
    rows = db.session.scalars(select(Connector).where(Connector.deleted.is_(False)).order_by(Connector.name)).all()
    if current is not None and current not in rows:
        rows.append(current)
    return [(c.id, c.name) for c in rows]


def _scope_from_form() -> service.Scope:
    scope = service.Scope(all_access=request.form.get("scope", "everyone") == "everyone",
                          all_can_create=bool(request.form.get("all_can_create")))
    for key, level in request.form.items():
        if level not in ("connect", "create"):
            continue
        for kind in ("user", "group"):
            prefix = f"scope_{kind}_"
            if key.startswith(prefix) and key[len(prefix):].isdigit():
                scope.entries[(kind, int(key[len(prefix):]))] = level
    return scope


def _render(form: ConnectionForm, connector: Connector | None, connection: Connection | None, *,
            values: dict | None = None, config_errors: dict | None = None, test_result=None,
            scope: service.Scope | None = None, status: int = 200, load_error: str | None = None):
    fields, lists = [], {}
    if connector is not None and load_error is None:
        try:
            fields = service.config_fields(connector)
            lists = service.config_lists(connector, fields, connection.guid if connection else
                                         service.ZERO_GUID)
        except ServiceError as exc:
            load_error = exc.message
    stored = service.full_config(connection) if connection is not None else {}
    secret_keys = service.secret_keys(fields)
    if values is None:
        if connection is not None:
            values = dict(stored)
        else:
            user_name = getattr(audit_ctx()["actor"], "name", "")
            values = {f["FieldKey"]: service.default_for(f, user_name=user_name, lists=lists) for f in fields}
    # Secrets never travel back to the browser in clear: a typed-in (not yet saved) secret is carried between
    # Test and OK only as a Fernet token, so the admin does not have to type it twice.
    shown = {k: v for k, v in values.items() if k not in secret_keys}
    sealed = {k: crypto.encrypt(str(values[k])) for k in secret_keys
              if values.get(k) not in (None, "") and values.get(k) != stored.get(k)}
    context = dict(
        form=form, connector=connector, connection=connection, fields=fields, lists=lists, values=shown,
        stored_secrets={k for k in secret_keys if stored.get(k) or values.get(k)}, sealed_secrets=sealed,
        config_errors=config_errors or {}, test_result=test_result, load_error=load_error,
        locked=bool(connection and connection.active), scope=scope or service.scope_of(connection),
        users=db.session.scalars(select(User).where(User.is_active.is_(True)).order_by(User.name)).all(),
        groups=db.session.scalars(select(UserGroup).order_by(UserGroup.name)).all(),
    )
    template = "admin/connections/_form.html" if wants_partial() else "admin/connections/form.html"
    return render_template(template, **context), status


def _load_form(connection: Connection | None) -> tuple[ConnectionForm, Connector | None]:
    form = ConnectionForm(obj=connection if request.method == "GET" else None)
    connector = connection.connector if connection else None
    if connection is None:
        chosen = request.values.get("connector_id", type=int)
        connector = db.session.get(Connector, chosen) if chosen else None
        if connector is None or connector.deleted:
            connector = db.session.scalar(select(Connector).where(Connector.deleted.is_(False))
                                          .order_by(Connector.id))
    form.connector_id.choices = _connector_choices(connector)
    if request.method == "GET":
        if connector is not None:
            form.connector_id.data = connector.id
        if connection is not None:
            form.scope.data = "everyone" if connection.all_access else "specific"
            form.all_can_create.data = connection.all_can_create
        else:
            form.conflict_policy.data = ConflictPolicy.PRIORITY
    return form, connector


def _handle_post(connection: Connection | None):
    form, connector = _load_form(connection)
    scope = _scope_from_form()
    if connector is None:
        form.connector_id.errors.append("Add a sync connector first.")
        return _render(form, None, connection, scope=scope, status=422)
    action = request.form.get("action", "save")
    try:
        fields = service.config_fields(connector)
        lists = service.config_lists(connector, fields, connection.guid if connection else service.ZERO_GUID)
    except ServiceError as exc:
        return _render(form, connector, connection, scope=scope, status=422, load_error=exc.message)
    stored = service.full_config(connection) if connection is not None else {}
    kept = dict(stored)
    for key in service.secret_keys(fields):
        token = request.form.get(f"sealed_{key}")
        if token:
            # A foreign or stale token is ignored: the admin types the secret again.
            with contextlib.suppress(crypto.SecretError):
                kept[key] = crypto.decrypt(token)
    values, config_errors = service.collect_config(fields, request.form, kept, lists)
    if connection is not None and connection.active:
        values, config_errors = stored, {}  # config fields are locked while active: ignore what was sent
    form_ok = form.validate()
    if config_errors or not form_ok:
        return _render(form, connector, connection, values=values, config_errors=config_errors, scope=scope,
                       status=422)
    if action == "test":
        result = service.test_config(connector, values)
        form.test_token.data = service.test_token(connector.id, values) if result.ok else ""
        return _render(form, connector, connection, values=values, test_result=result, scope=scope,
                       status=200 if result.ok else 422)
    try:
        saved = service.save_connection(
            connection, connector=connector, name=form.name.data, description=form.description.data,
            values=values, fields=fields, scope=scope, conflict_policy=form.conflict_policy.data,
            test_token_value=form.test_token.data, **audit_ctx())
    except ServiceError as exc:
        db.session.rollback()
        target = getattr(form, exc.field, None) if exc.field in ("name", "connector_id") else None
        if target is not None:
            target.errors.append(exc.message)
        else:
            form.form_errors.append(exc.message)
        return _render(form, connector, connection, values=values, scope=scope, status=422)
    toast("success", f"ERP connection {saved.name} saved." + ("" if saved.active else
                     " Configure its mappings and activate it to let users sync."))
    return redirect_for(url_for("admin.sync", connection=saved.id))


@bp.route("/connections/new", methods=["GET", "POST"])
def connection_new():
    if request.method == "POST":
        return _handle_post(None)
    form, connector = _load_form(None)
    return _render(form, connector, None)


@bp.route("/connections/<int:connection_id>/edit", methods=["GET", "POST"])
def connection_edit(connection_id: int):
    connection = get_or_404(Connection, connection_id)
    if request.method == "POST":
        return _handle_post(connection)
    form, connector = _load_form(connection)
    return _render(form, connector, connection)


def _row(connection: Connection, status: int = 200, **extra):
    return render_template("admin/sync/_connection_row.html", connection=connection, **extra), status


@bp.route("/connections/<int:connection_id>/activate", methods=["POST"])
def connection_activate(connection_id: int):
    connection = get_or_404(Connection, connection_id)
    problems = service.set_active(connection, True, **audit_ctx())
    if problems:
        toast("error", f"{connection.name} cannot be activated.")
        return _row(connection, 422, problems=problems)
    toast("success", f"{connection.name} is active: licensed users in its scope now see it on the ERP tab.")
    return _row(connection)


@bp.route("/connections/<int:connection_id>/deactivate", methods=["POST"])
def connection_deactivate(connection_id: int):
    connection = get_or_404(Connection, connection_id)
    service.set_active(connection, False, **audit_ctx())
    toast("success", f"{connection.name} is inactive.")
    return _row(connection)


@bp.route("/connections/<int:connection_id>/test", methods=["POST"])
def connection_test(connection_id: int):
    connection = get_or_404(Connection, connection_id)
    result = service.test_saved_connection(connection, **audit_ctx())
    if not result.ok:
        toast("error", f"Test of {connection.name} failed: {result.message}")
    elif result.warning:
        toast("warning", f"{connection.name} answered with a warning: {result.warning}")
    else:
        toast("success", f"{connection.name}: {result.message}")
    return _row(connection, test_result=result)


@bp.route("/connections/<int:connection_id>/refresh-fields", methods=["POST"])
def connection_refresh_fields(connection_id: int):
    connection = get_or_404(Connection, connection_id)
    try:
        report = service.refresh_fields(connection, **audit_ctx())
    except ServiceError as exc:
        db.session.rollback()
        toast("error", exc.message)
        return redirect_for(url_for("admin.sync", connection=connection.id))
    parts = [f"{len(report.added)} new field(s)", f"{report.updated} updated"]
    if report.missing:
        parts.append(f"{len(report.missing)} missing in ERP: {', '.join(report.missing)}")
    toast("success" if not report.missing else "warning", "Fields refreshed: " + "; ".join(parts) + ".")
    return redirect_for(url_for("admin.sync", connection=connection.id))


@bp.route("/connections/<int:connection_id>/delete", methods=["POST"])
def connection_delete(connection_id: int):
    connection = get_or_404(Connection, connection_id)
    warning = service.delete_connection(connection, **audit_ctx())
    toast("warning" if warning else "success",
          f"ERP connection {connection.name} deleted." + (f" {warning}" if warning else ""))
    return _row(connection, hide_deleted=True)


@bp.route("/connections/<int:connection_id>/restore", methods=["POST"])
def connection_restore(connection_id: int):
    connection = get_or_404(Connection, connection_id)
    try:
        warning = service.restore_connection(connection, **audit_ctx())
    except ServiceError as exc:
        toast("error", exc.message)
        return _row(connection, 409)
    toast("warning" if warning else "success",
          f"ERP connection {connection.name} restored (inactive)." + (f" {warning}" if warning else ""))
    return _row(connection)

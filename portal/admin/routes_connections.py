"""ERP connections: define/configure (config fields from the connector, Test before OK, scope), activate,
test, refresh fields, soft delete and restore. Activating a connection that reaches the same ERP as another one with
overlapping mappings warns (portal/services/connection_overlap.py); the Sync tab's templates get the same warnings
as ``connection_overlaps(connection)``."""

from __future__ import annotations

import re
import secrets as secrets_module

from flask import g, render_template, request, url_for
from sqlalchemy import select

from portal.admin import bp
from portal.admin.forms_sync import ConnectionForm
from portal.admin.routes_sync import connection_summary
from portal.extensions import db
from portal.htmx import redirect_for, toast, wants_partial
from portal.models import Connection, Connector, FieldType, User, UserGroup
from portal.models.erp import ConflictPolicy
from portal.security import crypto, limits
from portal.services import connection_overlap
from portal.services import connections as service
from portal.services.connectors import ServiceError
from portal.web import audit_ctx, get_or_404


@bp.context_processor
def _overlap_warnings():
    """``connection_overlaps(connection)`` for the admin templates (the selected connection's panel)."""
    return {"connection_overlaps": connection_overlap.overlaps}


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


def _form_nonce() -> str:
    """Identifies one new-connection form across its steps (sealed secrets are bound to it): the posted one when it
    looks like ours, else a fresh one. Not a secret: binding to it only keeps two forms apart."""
    if "connection_form_nonce" not in g:
        posted = request.form.get("form_nonce", "")
        g.connection_form_nonce = posted if re.fullmatch(r"[A-Za-z0-9_-]{16,64}", posted) else \
            secrets_module.token_urlsafe(18)
    return g.connection_form_nonce


def _binding(connector: Connector, connection: Connection | None, fields: list[dict], values: dict) -> dict:
    ref = connection.guid if connection is not None else f"new:{_form_nonce()}"
    return service.seal_binding(connector, ref, fields, values, getattr(audit_ctx()["actor"], "id", None))


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
    moved = bool(connection is not None and service.moved_addresses(fields, stored, values))
    # A test token is rendered only with the values it vouches for (a stale one would enable OK for nothing).
    tested = bool(form.test_token.data and connector is not None and not load_error
                  and service.token_matches(form.test_token.data, connector, values))
    if not tested:
        form.test_token.data = ""
    # Secrets never travel back to the browser in clear: a typed-in (not yet saved) secret is carried between
    # Test and OK only sealed — bound to this connection (or this new-connection form), its field, the connector
    # and the addresses it was typed for, for SEALED_SECRET_TTL — so the admin does not have to type it twice.
    shown = {k: v for k, v in values.items() if k not in secret_keys}
    sealed = {}
    if connector is not None:
        binding = _binding(connector, connection, fields, values)
        sealed = {k: service.seal_secret(str(values[k]), binding, k) for k in secret_keys
                  if values.get(k) not in (None, "") and (moved or values.get(k) != stored.get(k))}
    reenter = set(service.secrets_to_reenter(connection))
    if request.method == "GET" and reenter and not config_errors:
        config_errors = {k: "Cleared when the sync connector's address changed: enter it again." for k in reenter
                         if k in secret_keys}
    context = dict(
        form=form, connector=connector, connection=connection, fields=fields, lists=lists, values=shown,
        tested_config=_as_typed(fields, values) if tested else None,
        # a sealed (newly typed) secret rides along with a blank input: then the saved values are not what OK sends
        saved_config=_as_typed(fields, stored) if connection is not None and not sealed else None,
        ok_ready=tested or (connection is not None and values == stored),
        stored_secrets={k for k in secret_keys if (stored.get(k) and not moved) or values.get(k)},
        sealed_secrets=sealed, reenter_secrets=reenter - set(sealed),
        form_nonce=_form_nonce() if connection is None else "",
        config_errors=config_errors or {}, test_result=test_result, load_error=load_error,
        locked=bool(connection and connection.active), scope=scope or service.scope_of(connection),
        users=db.session.scalars(select(User).where(User.is_active.is_(True)).order_by(User.name)).all(),
        groups=db.session.scalars(select(UserGroup).order_by(UserGroup.name)).all(),
    )
    template = "admin/connections/_form.html" if wants_partial() else "admin/connections/form.html"
    return render_template(template, **context), status


def _as_typed(fields: list[dict], values: dict) -> dict[str, str]:
    """The non-secret config values as their inputs hold them (a ticked checkbox is "1"), by input name: the form's
    script enables OK while what is typed equals the tested (or saved) values. Secrets are left out: a blank secret
    input means "unchanged", anything typed there is new."""
    typed = {}
    for meta in fields:
        kind, key = meta.get("FieldType"), meta["FieldKey"]
        if kind not in service.VALUE_TYPES or kind == FieldType.PASSWORD:
            continue
        value = values.get(key)
        if kind == FieldType.CHECKBOX:
            typed[f"cfg_{key}"] = "1" if value else ""
        else:
            typed[f"cfg_{key}"] = "" if value is None else str(value)
    return typed


def _label(fields: list[dict], key: str) -> str:
    return next((f.get("DisplayName") or key for f in fields if f["FieldKey"] == key), key)


def _secrets_from_form(connector: Connector, connection: Connection | None, fields: list[dict],
                       stored: dict) -> tuple[dict, dict[str, str]]:
    """The secrets this post may use without the admin typing them (``kept``) and the fields that must be typed
    again (errors by FieldKey). A typed value always wins; a sealed one opens only with the same binding (else
    "Enter the password again", never a decryption); a stored one is kept unless an address of the connection
    changed in this post, or it was cleared when the connector's address changed."""
    secret_keys = service.secret_keys(fields)
    submitted = service.submitted_values(fields, request.form)
    moved = service.moved_addresses(fields, stored, submitted) if connection is not None else []
    reenter = set(service.secrets_to_reenter(connection))
    kept = {k: v for k, v in stored.items() if not (moved and k in secret_keys)}
    binding = _binding(connector, connection, fields, submitted)
    errors: dict[str, str] = {}
    for key in sorted(secret_keys):
        if request.form.get(f"cfg_{key}"):
            continue
        token = request.form.get(f"sealed_{key}")
        if token:
            kept.pop(key, None)
            try:
                kept[key] = service.open_secret(token, binding, key)
            except crypto.SealedValueExpired:
                minutes = max(1, crypto.sealed_ttl() // 60)
                errors[key] = f"Enter the password again: what you typed is kept for {minutes} minutes only."
            except crypto.SecretError:
                errors[key] = "Enter the password again."
        elif moved and stored.get(key) not in (None, ""):
            where = ", ".join(_label(fields, k) for k in moved)
            errors[key] = (f"Enter the password again: {where} changed, and a stored password is never sent to "
                           "a new address.")
        elif key in reenter:
            errors[key] = "Enter the password again: it was cleared when the sync connector's address changed."
    return kept, errors


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
        form.connector_id.errors = ["Add a sync connector first."]  # a tuple until the form is validated
        return _render(form, None, connection, scope=scope, status=422)
    action = request.form.get("action", "save")
    try:
        fields = service.config_fields(connector)
        lists = service.config_lists(connector, fields, connection.guid if connection else service.ZERO_GUID)
    except ServiceError as exc:
        return _render(form, connector, connection, scope=scope, status=422, load_error=exc.message)
    stored = service.full_config(connection) if connection is not None else {}
    kept, secret_errors = _secrets_from_form(connector, connection, fields, stored)
    values, config_errors = service.collect_config(fields, request.form, kept, lists)
    for key, message in secret_errors.items():
        values.pop(key, None)
        config_errors[key] = message
    if connection is not None and connection.active:
        # config fields are locked while active: what was sent is not used, and a changed value is said so
        ignored = [meta.get("DisplayName") or meta["FieldKey"] for meta in fields
                   if f"cfg_{meta['FieldKey']}" in request.form and request.form[f"cfg_{meta['FieldKey']}"] != ""
                   and meta["FieldKey"] in values and values[meta["FieldKey"]] != stored.get(meta["FieldKey"])]
        if ignored:
            toast("warning", f"{', '.join(ignored)} not changed: the configuration of an active connection is locked. "
                             "Deactivate the connection to change it.")
        values, config_errors = stored, {}
    form_ok = form.validate()
    # The service refuses it too (whoever calls it); asked here first so the scope shows the error with the others.
    scope_error = service.scope_problem(scope) if action != "test" else None
    if scope_error:
        form.scope.errors = [*form.scope.errors, scope_error]
    if config_errors or not form_ok or scope_error:
        return _render(form, connector, connection, values=values, config_errors=config_errors, scope=scope,
                       status=422)
    if action == "test":
        limits.check(limits.test_connection)
        result = service.test_config(connector, values)
        form.test_token.data = service.test_token(connector, values) if result.ok else ""
        return _render(form, connector, connection, values=values, test_result=result, scope=scope,
                       status=200 if result.ok else 422)
    try:
        saved = service.save_connection(
            connection, connector=connector, name=form.name.data, description=form.description.data,
            values=values, fields=fields, scope=scope, conflict_policy=form.conflict_policy.data,
            test_token_value=form.test_token.data, **audit_ctx())
    except ServiceError as exc:
        db.session.rollback()
        target = getattr(form, exc.field, None) if exc.field in ("name", "connector_id", "scope") else None
        if target is not None:
            target.errors = [*target.errors, exc.message]
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
    """The connection's row. When it is the selected one (its buttons post selected=1), the row stays selected and
    the panel below it is sent again out-of-band — so "Last test", the sync buttons of an (in)active connection and
    a deleted connection's panel are never stale."""
    is_selected = request.form.get("selected") == "1"
    html = render_template("admin/sync/_connection_row.html", connection=connection,
                           selected=connection if is_selected else None, **extra)
    if is_selected and connection.deleted:
        html += '<section id="selected-connection" hx-swap-oob="delete"></section>'
    elif is_selected:
        html += render_template("admin/sync/_selected.html", selected=connection,
                                summary=connection_summary(connection), oob=True)
    return html, status


@bp.route("/connections/<int:connection_id>/activate", methods=["POST"])
def connection_activate(connection_id: int):
    connection = get_or_404(Connection, connection_id)
    problems = service.set_active(connection, True, **audit_ctx())
    if problems:
        toast("error", f"{connection.name} cannot be activated.")
        return _row(connection, 422, problems=problems)
    toast("success", f"{connection.name} is active: licensed users in its scope now see it on the ERP tab.")
    for warning in connection_overlap.overlaps(connection):  # allowed (as in SuperOffice), but said
        toast("warning", warning)
    return _row(connection)


@bp.route("/connections/<int:connection_id>/deactivate", methods=["POST"])
def connection_deactivate(connection_id: int):
    connection = get_or_404(Connection, connection_id)
    service.set_active(connection, False, **audit_ctx())
    toast("success", f"{connection.name} is inactive.")
    return _row(connection)


@bp.route("/connections/<int:connection_id>/test", methods=["POST"])
@limits.test_connection
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

"""Connection configuration screens: Defaults: per actor type, the ERP fields with a default value, a question
to the user or a mandatory flag; the Add editor, edit, save and remove, one row at a time (htmx).

Split from routes_mappings, whose helpers (``_tpl``, ``_connection``, ``_field``, ``_page_context``, ``CHANGED``…)
it uses, so that each module stays small enough to read.
"""

from __future__ import annotations

from flask import abort, flash, render_template, request

from portal.admin import bp
from portal.admin.forms_mappings import DefaultForm
from portal.admin.routes_mappings import CHANGED, _back, _config, _connection, _field, _page_context, _tpl
from portal.extensions import db
from portal.htmx import hx_trigger, is_htmx, toast
from portal.models import ActorTypeConfig, Connection, ErpField, FieldAccess, FieldType
from portal.services import mapping as service
from portal.services.connectors import ServiceError
from portal.services.values import display
from portal.web import audit_ctx

# ============================================================================================ defaults

def _default_editor_context(erp_field: ErpField, form: DefaultForm | None = None, *, new: bool = False,
                            errors: dict | None = None) -> dict:
    connection = erp_field.actor_type.connection
    options, list_error = None, None
    if erp_field.field_type == FieldType.LIST:
        try:
            options = service.erp_list(connection, erp_field.list_name)
        except ServiceError as exc:
            list_error = exc.message
    if form is None:
        value = erp_field.default_value if erp_field.has_default else None
        if value is None and not erp_field.has_default and erp_field.meta_default:
            value = erp_field.meta_default  # the connector's suggestion, as a starting point
        text = "" if value is None else (
            value if isinstance(value, str) else display(erp_field.field_type, value))
        form = DefaultForm(formdata=None, field_id=erp_field.id, set_default=erp_field.has_default,
                           value=text, ask_user=erp_field.ask_user,
                           mandatory=erp_field.mandatory or erp_field.access == FieldAccess.MANDATORY)
    checkbox_on = bool(erp_field.default_value) if erp_field.field_type == FieldType.CHECKBOX else False
    if erp_field.field_type == FieldType.CHECKBOX and form.value.data not in (None, ""):
        checkbox_on = str(form.value.data).lower() in ("1", "true", "on", "yes")
    return {"f": erp_field, "form": form, "new": new, "errors": errors or {}, "options": options,
            "list_error": list_error, "checkbox_on": checkbox_on, "connection": connection,
            "connector_mandatory": erp_field.access == FieldAccess.MANDATORY}


def _default_count(config: ActorTypeConfig) -> str:
    """The Defaults count, out-of-band: every add, edit and remove answers it so it never goes stale."""
    return render_template("admin/mappings/_default_count.html", count=len(service.default_rows(config)), oob=True)


def _default_row(erp_field: ErpField, *, status: int = 200, with_add_row: bool = False):
    config = erp_field.actor_type
    texts = service.default_list_texts(config.connection, [erp_field])
    html = _tpl("admin/mappings/_default_row.html", f=erp_field, list_texts=texts,
                connection=config.connection, config=config, with_add_row=with_add_row,
                candidates=service.default_candidates(config) if with_add_row else [])
    return html + _default_count(config), status


@bp.route("/connections/<int:connection_id>/defaults")
def defaults(connection_id: int):
    connection = _connection(connection_id)
    config = service.actor_config(connection, request.args.get("actor"))
    context = _page_context(connection, "admin.defaults", config)
    rows = service.default_rows(config) if config else []
    context.update(rows=rows, list_texts=service.default_list_texts(connection, rows) if rows else {},
                   candidates=service.default_candidates(config) if config else [])
    return _tpl("admin/mappings/defaults.html", **context)


@bp.route("/connections/<int:connection_id>/defaults/<actor_type>/add-row")
def default_add_row(connection_id: int, actor_type: str):
    connection = _connection(connection_id)
    config = _config(connection, actor_type)
    return _tpl("admin/mappings/_default_add_row.html", connection=connection, config=config,
                           candidates=service.default_candidates(config))


@bp.route("/connections/<int:connection_id>/defaults/new", methods=["GET", "POST"])
def default_new(connection_id: int):
    """The Add editor (GET ?field_id=) and its save (POST): answered with the new row and a fresh Add row."""
    connection = _connection(connection_id)
    field_id = request.values.get("field_id", type=int)
    if not field_id:
        abort(404)
    erp_field = _field(connection, field_id)
    if request.method == "GET":
        return _tpl("admin/mappings/_default_edit.html", **_default_editor_context(erp_field, new=True))
    return _save_default(connection, erp_field, new=True)


@bp.route("/connections/<int:connection_id>/defaults/<int:field_id>", methods=["GET", "POST"])
def default_row(connection_id: int, field_id: int):
    connection = _connection(connection_id)
    erp_field = _field(connection, field_id)
    if request.method == "GET":
        return _default_row(erp_field)
    return _save_default(connection, erp_field, new=False)


@bp.route("/connections/<int:connection_id>/defaults/<int:field_id>/edit")
def default_edit(connection_id: int, field_id: int):
    connection = _connection(connection_id)
    erp_field = _field(connection, field_id)
    return _tpl("admin/mappings/_default_edit.html", **_default_editor_context(erp_field))


def _save_default(connection: Connection, erp_field: ErpField, *, new: bool):
    form = DefaultForm()
    form.validate()
    actor_type = erp_field.actor_type.erp_actor_type
    value = form.value.data
    if erp_field.field_type == FieldType.CHECKBOX:
        value = "1" if form.value.data not in (None, "") and form.value.data not in ("0", "false", "off") else "0"
    try:
        service.save_default(erp_field, set_default=bool(form.set_default.data), value_text=value,
                             ask_user=bool(form.ask_user.data), mandatory=bool(form.mandatory.data), **audit_ctx())
    except ServiceError as exc:
        db.session.rollback()
        errors = dict(getattr(exc, "by_key", {}) or {})
        if not errors:
            errors["form"] = " ".join(exc.details or [exc.message])
        if not is_htmx():
            flash(" ".join(errors.values()), "error")
            return _back(connection, "admin.defaults", actor=actor_type)
        return _tpl("admin/mappings/_default_edit.html",
                               **_default_editor_context(erp_field, form, new=new, errors=errors)), 422
    message = f"Default of {service.field_label(erp_field)} saved."
    if not is_htmx():
        flash(message, "success")
        return _back(connection, "admin.defaults", actor=actor_type)
    hx_trigger(CHANGED)
    toast("success", message)
    return _default_row(erp_field, with_add_row=new)


@bp.route("/connections/<int:connection_id>/defaults/<int:field_id>/remove", methods=["POST"])
def default_remove(connection_id: int, field_id: int):
    connection = _connection(connection_id)
    erp_field = _field(connection, field_id)
    actor_type = erp_field.actor_type.erp_actor_type
    try:
        service.remove_default(erp_field, **audit_ctx())
    except ServiceError as exc:
        db.session.rollback()
        if not is_htmx():
            flash(" ".join(exc.details or [exc.message]), "error")
            return _back(connection, "admin.defaults", actor=actor_type)
        toast("error", " ".join(exc.details or [exc.message]))
        return _tpl("admin/mappings/_default_row.html", f=erp_field, connection=connection,
                               config=erp_field.actor_type, with_add_row=False, candidates=[],
                               list_texts=service.default_list_texts(connection, [erp_field]),
                               error=" ".join(exc.details or [exc.message])), 422
    message = f"Default of {service.field_label(erp_field)} removed."
    if not is_htmx():
        flash(message, "success")
        return _back(connection, "admin.defaults", actor=actor_type)
    hx_trigger(CHANGED)
    toast("success", message)
    if erp_field in service.default_rows(erp_field.actor_type):
        return _default_row(erp_field)
    return _default_count(erp_field.actor_type)

"""Connection configuration screens: Mappings (one tab per actor type), List mapping, Defaults and Rank fields,
plus the activation panel of the Mappings page (spec §1.6–1.10).

Every change is an htmx POST of a single row (``hx-target="closest tr"``, ``hx-swap="outerHTML"``) answered with
that row re-rendered: 200 when saved, 422 with the reasons on the row when refused (nothing is saved then).
Rank moves swap the rank table. Without htmx, POSTs redirect back to the page with a flash message. The rules
and the audit trail are the portal/services/mapping package's.
"""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, url_for
from sqlalchemy import func, select

from portal.admin import bp
from portal.admin.forms_mappings import ActorLabelForm, ActorSwitchForm, DefaultForm, MappingRowForm
from portal.extensions import db
from portal.htmx import hx_trigger, is_htmx, redirect_for, toast, wants_partial
from portal.models import ActorTypeConfig, Connection, ErpField, FieldAccess, FieldType, Link, ListItem
from portal.services import actor_labels, connection_overlap
from portal.services import connections as connection_service
from portal.services import mapping as service
from portal.services.connectors import ServiceError
from portal.services.values import display
from portal.web import audit_ctx, get_or_404

CHANGED = "mapping-changed"  # HX-Trigger event: the activation panel reloads itself on it


# ============================================================================================ helpers

def _tpl(template: str, **context) -> str:
    """render_template with the rule helpers the mapping templates use."""
    context.setdefault("switch_label", service.switch_label)
    context.setdefault("crm_label", service.crm_label)
    context.setdefault("list_target", service.list_target)
    context.setdefault("default_display", service.default_display)
    context.setdefault("needs_value", service.needs_value)
    context.setdefault("label_max", actor_labels.MAX_LENGTH)
    return render_template(template, **context)


def _connection(connection_id: int) -> Connection:
    return get_or_404(Connection, connection_id)


def _field(connection: Connection, field_id: int) -> ErpField:
    erp_field = get_or_404(ErpField, field_id)
    if erp_field.actor_type.connection_id != connection.id:
        abort(404)
    return erp_field


def _list_field(connection: Connection, field_id: int) -> ErpField:
    """An ERP list field of the connection whose list maps to a CRM list (404 otherwise)."""
    erp_field = _field(connection, field_id)
    if service.list_target(erp_field) is None:
        abort(404)
    return erp_field


def _config(connection: Connection, actor_type: str) -> ActorTypeConfig:
    config = connection.actor_type(actor_type)
    if config is None:
        abort(404)
    return config


def _tabs(connection: Connection, endpoint: str) -> list[tuple]:
    """(constant, the name users see, href, hx) per actor type: ids and URLs keep the constant."""
    return [(c.erp_actor_type, actor_labels.actor_label(c),
             url_for(endpoint, connection_id=connection.id, actor=c.erp_actor_type), None)
            for c in connection.actor_types]


def _back(connection: Connection, endpoint: str, **args):
    """The answer to a non-htmx POST: back to the page."""
    return redirect(url_for(endpoint, connection_id=connection.id, **args))


def _page_context(connection: Connection, endpoint: str, config: ActorTypeConfig | None) -> dict:
    return {"connection": connection, "config": config, "current_endpoint": endpoint,
            "tabs": _tabs(connection, endpoint) if endpoint != "admin.list_mapping" else []}


# ============================================================================================ mappings

def _status_context(connection: Connection, *, refused: list[str] | None = None) -> dict:
    return {"connection": connection, "problems": connection_service.activation_problems(connection),
            "refused": refused}


@bp.route("/connections/<int:connection_id>/mappings")
def mappings(connection_id: int):
    connection = _connection(connection_id)
    return _mappings_page(connection, service.actor_config(connection, request.args.get("actor")))


def _mappings_page(connection: Connection, config: ActorTypeConfig | None, **extra):
    context = _page_context(connection, "admin.mappings", config)
    context.update(rows=service.row_views(config) if config else [],
                   **_status_context(connection), **extra)
    return _tpl("admin/mappings/mappings.html", **context)


def _row(erp_field: ErpField, *, errors=(), status: int = 200):
    return _tpl("admin/mappings/_row.html", row=service.row_view(erp_field, errors=errors)), status


@bp.route("/connections/<int:connection_id>/mappings/fields/<int:field_id>", methods=["GET", "POST"])
def mapping_row(connection_id: int, field_id: int):
    connection = _connection(connection_id)
    erp_field = _field(connection, field_id)
    if request.method == "GET":
        return _row(erp_field)
    form = MappingRowForm()
    form.validate()
    state = service.MappingState(
        crm_field=(form.crm_field.data or "").strip() or None,
        to_crm=form.wanted("to_crm"), to_erp=form.wanted("to_erp"),
        show_in_search=bool(form.show_in_search.data), show_in_gui=bool(form.show_in_gui.data))
    return _save_row(connection, erp_field, lambda: service.save_row(erp_field, state, **audit_ctx()))


@bp.route("/connections/<int:connection_id>/mappings/fields/<int:field_id>/unmap", methods=["POST"])
def mapping_unmap(connection_id: int, field_id: int):
    connection = _connection(connection_id)
    erp_field = _field(connection, field_id)
    return _save_row(connection, erp_field, lambda: service.unmap(erp_field, **audit_ctx()),
                     success=f"{service.field_label(erp_field)} is unmapped.")


def _save_row(connection: Connection, erp_field: ErpField, save, success: str | None = None):
    actor_type = erp_field.actor_type.erp_actor_type
    try:
        save()
    except ServiceError as exc:
        db.session.rollback()
        if not is_htmx():
            flash(" ".join(exc.details or [exc.message]), "error")
            return _back(connection, "admin.mappings", actor=actor_type)
        return _row(erp_field, errors=exc.details or [exc.message], status=422)
    message = success or f"Mapping of {service.field_label(erp_field)} saved."
    if not is_htmx():
        flash(message, "success")
        return _back(connection, "admin.mappings", actor=actor_type)
    hx_trigger(CHANGED)
    toast("success", message)
    return _row(erp_field)


@bp.route("/connections/<int:connection_id>/mappings/<actor_type>/switch", methods=["POST"])
def mappings_switch(connection_id: int, actor_type: str):
    connection = _connection(connection_id)
    config = _config(connection, actor_type)
    form = ActorSwitchForm()
    form.validate()
    wanted = bool(form.on.data)
    if not wanted and config.is_active and connection.active and not form.confirmed.data:
        # Users sync through an active connection: say what stops before it stops (Cancel leaves it on).
        confirm = {"linked": db.session.scalar(select(func.count()).select_from(Link).where(
            Link.connection_id == connection.id, Link.erp_actor_type == config.erp_actor_type))}
        if not is_htmx():
            return _mappings_page(connection, config, confirm_switch=confirm)
        return _tpl("admin/mappings/_actor_switch_confirm.html", config=config, connection=connection,
                    confirm_switch=confirm)
    error = None
    try:
        service.set_actor_type_active(config, wanted, **audit_ctx())
    except ServiceError as exc:
        db.session.rollback()
        error = " ".join(exc.details or [exc.message])
    if not is_htmx():
        flash(error or f"{service.switch_label(config)}: {'on' if wanted else 'off'}.",
              "error" if error else "success")
        return _back(connection, "admin.mappings", actor=actor_type)
    if error is None:
        hx_trigger(CHANGED)
        toast("success", f"{actor_labels.actor_label(config)} {'syncs' if config.is_active else 'does not sync'} "
                         f"to CRM {service.crm_label(config.crm_type)} records.")
    return (_tpl("admin/mappings/_switch.html", config=config, connection=connection, error=error),
            422 if error else 200)


@bp.route("/connections/<int:connection_id>/mappings/<actor_type>/label", methods=["POST"])
def mappings_label(connection_id: int, actor_type: str):
    """The name users see for the actor type on this connection ("Vendor" for Supplier; empty = the standard
    name). htmx: the actor panel (its heading, switch and captions name the type) and, out-of-band, the tabs;
    422 with the reason on the input when refused."""
    connection = _connection(connection_id)
    config = _config(connection, actor_type)
    form = ActorLabelForm()
    form.validate()
    submitted = form.label.data or ""
    try:
        actor_labels.set_label(config, submitted, **audit_ctx())
    except actor_labels.LabelError as exc:
        db.session.rollback()
        refused = {"label_errors": [exc.message], "label_value": submitted.strip()}
        if not is_htmx():
            return _mappings_page(connection, config, **refused), 422
        return _actor_panel(connection, config, **refused), 422
    shown = actor_labels.actor_label(config)
    message = (f"ERP {config.erp_actor_type} is shown to users as “{shown}”." if actor_labels.has_label(config)
               else f"ERP {config.erp_actor_type} is shown under its standard name.")
    if not is_htmx():
        flash(message, "success")
        return _back(connection, "admin.mappings", actor=config.erp_actor_type)
    toast("success", message)
    return _actor_panel(connection, config)


def _actor_panel(connection: Connection, config: ActorTypeConfig, **extra) -> str:
    """The actor type's panel, with the tab strip out-of-band (both name the actor type)."""
    panel = _tpl("admin/mappings/_actor_panel.html", connection=connection, config=config,
                 rows=service.row_views(config), **extra)
    tabs = _tpl("admin/mappings/_tabs.html", tabs=_tabs(connection, "admin.mappings"), config=config, oob=True)
    return panel + tabs


@bp.route("/connections/<int:connection_id>/mappings/status")
def mappings_status(connection_id: int):
    connection = _connection(connection_id)
    return _tpl("admin/mappings/_status.html", **_status_context(connection))


@bp.route("/connections/<int:connection_id>/mappings/activation", methods=["POST"])
def mappings_activation(connection_id: int):
    """Activate (refused with every reason) or deactivate (always allowed) from the Mappings page."""
    connection = _connection(connection_id)
    wanted = request.form.get("active") == "1"
    problems = connection_service.set_active(connection, wanted, **audit_ctx())
    if not is_htmx():
        flash(f"{connection.name} cannot be activated: " + " ".join(problems) if problems else
              f"{connection.name} is {'active' if connection.active else 'inactive'}.",
              "error" if problems else "success")
        return _back(connection, "admin.mappings")
    if problems:
        toast("error", f"{connection.name} cannot be activated.")
        return _tpl("admin/mappings/_status.html", **_status_context(connection, refused=problems)), 422
    toast("success", f"{connection.name} is {'active' if connection.active else 'inactive'}.")
    if connection.active:
        for warning in connection_overlap.overlaps(connection):  # as on the Sync tab's Activate
            toast("warning", warning)
    return _tpl("admin/mappings/_status.html", **_status_context(connection))


@bp.route("/connections/<int:connection_id>/mappings/refresh", methods=["POST"])
def mappings_refresh(connection_id: int):
    """Refresh fields: re-read actor types, fields and searchable fields; keeps mappings, flags what vanished."""
    connection = _connection(connection_id)
    actor_type = request.form.get("actor") or None
    try:
        report = connection_service.refresh_fields(connection, **audit_ctx())
    except ServiceError as exc:
        db.session.rollback()
        flash(exc.message, "error")
    else:
        parts = [f"{len(report.added)} new field(s)", f"{report.updated} updated"]
        if report.missing:
            parts.append(f"{len(report.missing)} missing in ERP: {', '.join(report.missing)}")
        flash("Fields refreshed: " + "; ".join(parts) + ".", "warning" if report.missing else "success")
    target = url_for("admin.mappings", connection_id=connection.id, actor=actor_type)
    return redirect_for(target)


# ============================================================================================ list mapping

def _list_context(connection: Connection, erp_field: ErpField | None) -> dict:
    context = _page_context(connection, "admin.list_mapping", None)
    context.update(fields=service.list_fields(connection), selected=erp_field, rows=[], items=[],
                   load_error=None, target=None)
    if erp_field is None:
        return context
    target = service.list_target(erp_field)
    erp_items = None
    try:
        erp_items = service.erp_list(connection, erp_field.list_name)
    except ServiceError as exc:
        context["load_error"] = exc.message + " The stored mapping is shown; it cannot be changed until the " \
                                              "ERP list can be read."
    context.update(target=target, erp_items=erp_items, rows=service.list_rows(erp_field, erp_items),
                   items=_crm_items(erp_field))
    return context


def _crm_items(erp_field: ErpField) -> list[ListItem]:
    target = service.list_target(erp_field)
    return service.crm_items(target.list_name, keep_ids=[m.crm_item_id for m in erp_field.list_mappings
                                                         if m.crm_item_id is not None])


@bp.route("/connections/<int:connection_id>/list-mapping")
def list_mapping(connection_id: int):
    connection = _connection(connection_id)
    fields = service.list_fields(connection)
    wanted = request.args.get("field", type=int)
    erp_field = next((f for f in fields if f.id == wanted), fields[0] if fields else None)
    return _tpl("admin/mappings/list_mapping.html", **_list_context(connection, erp_field))


def _list_row_response(erp_field: ErpField, rows: list[service.ListRow], key: str, *,
                       changed_rows: list[service.ListRow] = (), status: int = 200):
    row = next(r for r in rows if r.erp_key == key)
    return _tpl("admin/mappings/_list_rows.html", row=row, oob_rows=changed_rows, erp_field=erp_field,
                           items=_crm_items(erp_field), read_only=False), status


@bp.route("/connections/<int:connection_id>/list-mapping/<int:field_id>/item", methods=["POST"])
def list_mapping_item(connection_id: int, field_id: int):
    """Save the CRM item of one ERP list item; the answer is that row, plus the rows whose duplicate flag changed."""
    connection = _connection(connection_id)
    erp_field = _list_field(connection, field_id)
    key = request.form.get("erp_key", "")
    raw = (request.form.get("crm_item_id") or "").strip()
    try:
        erp_items = service.erp_list(connection, erp_field.list_name)
    except ServiceError as exc:
        if not is_htmx():
            flash(exc.message, "error")
            return _back(connection, "admin.list_mapping", field=erp_field.id)
        rows = service.list_rows(erp_field, None, errors={key: exc.message})
        if not any(r.erp_key == key for r in rows):
            rows.append(service.ListRow(key, key, None, error=exc.message))
        return _list_row_response(erp_field, rows, key, status=422)
    before = {r.erp_key: r.duplicate_of for r in service.list_rows(erp_field, erp_items)}
    crm_id: int | None = None
    error = None
    if raw:
        try:
            crm_id = int(raw)
        except ValueError:
            error = "Choose an item of the CRM list."
    if error is None:
        try:
            service.save_list_mapping(erp_field, {key: crm_id}, erp_items=erp_items, **audit_ctx())
        except ServiceError as exc:
            db.session.rollback()
            error = (getattr(exc, "by_key", {}) or {}).get(key) or " ".join(exc.details or [exc.message])
    if error is not None:
        if not is_htmx():
            flash(error, "error")
            return _back(connection, "admin.list_mapping", field=erp_field.id)
        rows = service.list_rows(erp_field, erp_items, submitted={key: crm_id} if raw else None,
                                 errors={key: error})
        if not any(r.erp_key == key for r in rows):
            rows.append(service.ListRow(key, key, None, in_erp=False, error=error))
        return _list_row_response(erp_field, rows, key, status=422)
    rows = service.list_rows(erp_field, erp_items)
    if not is_htmx():
        flash("List mapping saved.", "success")
        return _back(connection, "admin.list_mapping", field=erp_field.id)
    hx_trigger(CHANGED)
    duplicates = [r for r in rows if r.erp_key == key and r.duplicate_of]
    if duplicates:
        toast("warning", f"{duplicates[0].erp_text} maps to the same CRM item as "
                         f"{', '.join(duplicates[0].duplicate_of)}: one-to-one is required before activation.")
    else:
        toast("success", "List mapping saved.")
    changed = [r for r in rows if r.erp_key != key and before.get(r.erp_key, []) != r.duplicate_of]
    if not any(r.erp_key == key for r in rows):  # a removed mapping of an item the ERP no longer has
        return _tpl("admin/mappings/_list_rows.html", row=None, oob_rows=changed, erp_field=erp_field,
                               items=_crm_items(erp_field), read_only=False)
    return _list_row_response(erp_field, rows, key, changed_rows=changed)


@bp.route("/connections/<int:connection_id>/list-mapping/<int:field_id>/match", methods=["POST"])
def list_mapping_match(connection_id: int, field_id: int):
    """Map the still unmapped ERP items whose text equals a CRM item's name (one to one)."""
    connection = _connection(connection_id)
    erp_field = _list_field(connection, field_id)
    try:
        erp_items = service.erp_list(connection, erp_field.list_name)
        suggestions = service.match_by_name(erp_field, erp_items)
        changed = service.save_list_mapping(erp_field, suggestions, erp_items=erp_items, **audit_ctx()) \
            if suggestions else []
    except ServiceError as exc:
        db.session.rollback()
        flash(" ".join(exc.details or [exc.message]), "error")
    else:
        flash(f"{len(changed)} item(s) matched by name." if changed else "No further items match by name.",
              "success" if changed else "info")
    target = url_for("admin.list_mapping", connection_id=connection.id, field=erp_field.id)
    return redirect_for(target)


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


# ============================================================================================ rank fields

def _rank_table(config: ActorTypeConfig, status: int = 200):
    return _tpl("admin/mappings/_rank_table.html", config=config,
                           fields=service.ordered_fields(config)), status


@bp.route("/connections/<int:connection_id>/rank")
def rank_fields(connection_id: int):
    connection = _connection(connection_id)
    config = service.actor_config(connection, request.args.get("actor"))
    if wants_partial() and config is not None and request.args.get("part") == "table":
        return _rank_table(config)
    context = _page_context(connection, "admin.rank_fields", config)
    context.update(fields=service.ordered_fields(config) if config else [])
    return _tpl("admin/mappings/rank.html", **context)


@bp.route("/connections/<int:connection_id>/rank/<int:field_id>/<any(up, down, top, bottom):direction>",
          methods=["POST"])
def rank_move(connection_id: int, field_id: int, direction: str):
    connection = _connection(connection_id)
    erp_field = _field(connection, field_id)
    config = erp_field.actor_type
    step = {"up": -1, "down": 1}.get(direction, direction)
    moved = service.move_field(erp_field, step, **audit_ctx())
    if not is_htmx():
        return _back(connection, "admin.rank_fields", actor=config.erp_actor_type)
    if not moved:
        toast("info", f"{service.field_label(erp_field)} is already "
                      f"{'first' if direction in ('up', 'top') else 'last'}.")
    return _rank_table(config)

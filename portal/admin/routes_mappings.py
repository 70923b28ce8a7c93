"""Connection configuration screens: Mappings (one tab per actor type), List mapping, Defaults and Rank fields,
plus the activation panel of the Mappings page (spec §1.6–1.10).

Every change is an htmx POST of a single row (``hx-target="closest tr"``, ``hx-swap="outerHTML"``) answered with
that row re-rendered: 200 when saved, 422 with the reasons on the row when refused (nothing is saved then).
Rank moves swap the rank table. Without htmx, POSTs redirect back to the page with a flash message. The rules
and the audit trail are the portal/services/mapping package's.

List mapping is in routes_mappings_lists and Defaults in routes_mappings_defaults (split to keep modules
readable); the helpers they share (``_tpl``, ``_connection``, ``_field``, ``_page_context``, ``CHANGED``…) are here.
"""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, url_for
from sqlalchemy import func, select

from portal.admin import bp
from portal.admin.forms_mappings import ActorLabelForm, ActorSwitchForm, MappingRowForm
from portal.extensions import db
from portal.htmx import hx_trigger, is_htmx, redirect_for, toast, wants_partial
from portal.models import ActorTypeConfig, Connection, ErpField, Link
from portal.services import actor_labels, connection_overlap
from portal.services import connections as connection_service
from portal.services import mapping as service
from portal.services.connectors import ServiceError
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

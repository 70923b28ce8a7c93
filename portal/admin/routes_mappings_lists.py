"""Connection configuration screens: List mapping: for each ERP list field whose list maps to a CRM list, the
CRM item of every ERP list item, saved one row at a time (htmx), and Match by name for the unmapped ones.

Split from routes_mappings, whose helpers (``_tpl``, ``_connection``, ``_page_context``, ``CHANGED``…) it uses,
so that each module stays small enough to read.
"""

from __future__ import annotations

from flask import abort, flash, request, url_for

from portal.admin import bp
from portal.admin.routes_mappings import CHANGED, _back, _connection, _field, _page_context, _tpl
from portal.extensions import db
from portal.htmx import hx_trigger, is_htmx, redirect_for, toast
from portal.models import Connection, ErpField, ListItem
from portal.services import mapping as service
from portal.services.connectors import ServiceError
from portal.web import audit_ctx

# ============================================================================================ list mapping

def _list_field(connection: Connection, field_id: int) -> ErpField:
    """An ERP list field of the connection whose list maps to a CRM list (404 otherwise)."""
    erp_field = _field(connection, field_id)
    if service.list_target(erp_field) is None:
        abort(404)
    return erp_field


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

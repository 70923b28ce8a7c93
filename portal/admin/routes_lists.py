"""Settings → Lists: the admin-editable CRM lists, one tab per list (admins only, enforced by the blueprint).

Add, rename inline (htmx row edit), reorder up/down, soft-delete and restore. Rules and the audit trail are
portal/services/lists.py's. Every screen also works without htmx (full pages and redirects).
"""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, url_for

from portal.admin import bp
from portal.admin.forms_lists import ListItemForm
from portal.extensions import db
from portal.htmx import redirect_for, toast, wants_partial
from portal.models import CrmList, ListItem
from portal.models.crm import LIST_LABELS
from portal.services import lists as list_service
from portal.web import audit_ctx, get_or_404


def _list_or_404(list_name: str | None) -> CrmList:
    parsed = list_service.parse_list_name(list_name)
    if parsed is None:
        abort(404)
    return parsed


def _page_url(list_name: str) -> str:
    return url_for("admin.lists", tab=list_name)


def _render_lists(list_name: CrmList, *, form: ListItemForm | None = None, editing: int | None = None,
                  edit_form: ListItemForm | None = None, status: int = 200, partial: str = "panel"):
    """The Lists page, or for htmx the panel (with the tab strip out-of-band) or a single row."""
    context = {
        "list_name": list_name,
        "list_labels": LIST_LABELS,
        "items": list_service.items(list_name),
        "form": form or ListItemForm(formdata=None),
        "editing": editing,
        "edit_form": edit_form,
    }
    if wants_partial():
        return render_template("admin/lists/_panel_response.html", **context), status
    return render_template("admin/lists/index.html", **context), status


def _render_row(item: ListItem, *, edit_form: ListItemForm | None = None, status: int = 200):
    template = "admin/lists/_item_row_edit.html" if edit_form is not None else "admin/lists/_item_row.html"
    return render_template(template, item=item, edit_form=edit_form), status


@bp.route("/lists")
def lists():
    tab = request.args.get("tab") or CrmList.COUNTRY.value
    return _render_lists(list_service.parse_list_name(tab) or CrmList.COUNTRY)


@bp.route("/lists/<list_name>/items", methods=["POST"])
def list_item_add(list_name: str):
    list_name = _list_or_404(list_name)
    form = ListItemForm()
    if form.validate_on_submit():
        try:
            item = list_service.add_item(list_name, form.name.data, **audit_ctx())
        except list_service.ListError as exc:
            form.name.errors = [*form.name.errors, str(exc)]
        else:
            message = f"“{item.name}” added to {LIST_LABELS[list_name]}."
            if wants_partial():
                toast("success", message)
                return _render_lists(list_name)
            flash(message, "success")
            return redirect(_page_url(list_name))
    return _render_lists(list_name, form=form, status=422)


@bp.route("/lists/items/<int:item_id>")
def list_item_row(item_id: int):
    """One row in display mode (the Cancel of an inline edit)."""
    item = get_or_404(ListItem, item_id)
    if not wants_partial():
        return redirect(_page_url(item.list_name))
    return _render_row(item)


@bp.route("/lists/items/<int:item_id>/edit", methods=["GET", "POST"])
def list_item_edit(item_id: int):
    item = get_or_404(ListItem, item_id)
    form = ListItemForm(obj=item)
    if form.validate_on_submit():
        try:
            list_service.rename_item(item, form.name.data, **audit_ctx())
        except list_service.ListError as exc:
            db.session.rollback()
            form.name.errors = [*form.name.errors, str(exc)]
        else:
            message = f"Renamed to “{item.name}”."
            if wants_partial():
                toast("success", message)
                return _render_row(item)
            flash(message, "success")
            return redirect(_page_url(item.list_name))
    status = 422 if request.method == "POST" else 200
    if wants_partial():
        return _render_row(item, edit_form=form, status=status)
    return _render_lists(CrmList(item.list_name), editing=item.id, edit_form=form, status=status)


@bp.route("/lists/items/<int:item_id>/move", methods=["POST"])
def list_item_move(item_id: int):
    item = get_or_404(ListItem, item_id)
    direction = request.form.get("direction", "")
    if direction not in ("up", "down"):
        abort(400)
    list_service.move_item(item, direction, **audit_ctx())
    if wants_partial():
        return _render_lists(CrmList(item.list_name))
    return redirect(_page_url(item.list_name))


def _set_deleted(item_id: int, deleted: bool):
    item = get_or_404(ListItem, item_id)
    list_service.set_deleted(item, deleted, **audit_ctx())
    message = (f"“{item.name}” deleted: it stays on existing records but is no longer offered." if deleted
               else f"“{item.name}” restored.")
    if wants_partial():
        toast("success", message)
        return _render_row(item)
    flash(message, "success")
    return redirect_for(_page_url(item.list_name))


@bp.route("/lists/items/<int:item_id>/delete", methods=["POST"])
def list_item_delete(item_id: int):
    return _set_deleted(item_id, True)


@bp.route("/lists/items/<int:item_id>/restore", methods=["POST"])
def list_item_restore(item_id: int):
    return _set_deleted(item_id, False)

"""Settings → Fields: user-defined fields of companies, contacts and projects (admins only, by the blueprint).

One tab per record type: the fields in their order (move up/down), an Add form, an edit page, and a delete that
first says how many records lose their value and how many ERP mappings go. Rules and the audit trail are
portal/services/user_fields.py's. Every screen works without htmx (full pages and redirects).
"""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, url_for

from portal.admin import bp
from portal.admin.forms_fields import FieldAddForm, FieldEditForm
from portal.htmx import redirect_for, toast, wants_partial
from portal.models import CRM_TYPE_LABELS, CrmType, UserField
from portal.services import user_fields as service
from portal.web import apply_form_errors, audit_ctx, get_or_404


def _type_or_404(value: str | None) -> CrmType:
    parsed = service.parse_crm_type(value)
    if parsed is None:
        abort(404)
    return parsed


def _page_url(crm_type: str) -> str:
    return url_for("admin.fields", type=crm_type)


def _render_fields(crm_type: CrmType, *, form: FieldAddForm | None = None, status: int = 200):
    context = {
        "crm_type": crm_type,
        "type_labels": CRM_TYPE_LABELS,
        "field_type_labels": service.TYPE_LABELS,
        "list_labels": service.list_labels(),
        "definitions": service.definitions(crm_type),
        "slot_use": service.slot_use(crm_type),
        "form": form or FieldAddForm(formdata=None),
    }
    if wants_partial():
        return render_template("admin/fields/_panel_response.html", **context), status
    return render_template("admin/fields/index.html", **context), status


@bp.route("/fields")
def fields():
    return _render_fields(service.parse_crm_type(request.args.get("type")) or CrmType.COMPANY)


@bp.route("/fields/<crm_type>", methods=["POST"])
def field_add(crm_type: str):
    crm_type = _type_or_404(crm_type)
    form = FieldAddForm()
    if form.validate_on_submit():
        try:
            definition = service.create(crm_type, label=form.label.data, field_type=form.field_type.data,
                                        list_name=form.list_name.data or None, required=form.required.data,
                                        show_in_list=form.show_in_list.data, **audit_ctx())
        except service.UserFieldError as exc:
            apply_form_errors(form, {exc.field or "": str(exc)})
        else:
            message = f"Field “{definition.label}” added to {CRM_TYPE_LABELS[crm_type].lower()} records."
            if wants_partial():
                toast("success", message)
                return _render_fields(crm_type)
            flash(message, "success")
            return redirect(_page_url(crm_type))
    return _render_fields(crm_type, form=form, status=422)


@bp.route("/fields/<int:field_id>/edit", methods=["GET", "POST"])
def field_edit(field_id: int):
    definition = get_or_404(UserField, field_id)
    form = FieldEditForm(obj=definition)
    if form.validate_on_submit():
        try:
            service.update_definition(definition, label=form.label.data, required=form.required.data,
                                      show_in_list=form.show_in_list.data, **audit_ctx())
        except service.UserFieldError as exc:
            apply_form_errors(form, {exc.field or "": str(exc)})
        else:
            flash(f"Field “{definition.label}” saved.", "success")
            return redirect_for(_page_url(definition.crm_type))
    status = 422 if request.method == "POST" else 200
    return render_template("admin/fields/edit.html", definition=definition, form=form,
                           type_labels=CRM_TYPE_LABELS, field_type_labels=service.TYPE_LABELS,
                           list_labels=service.list_labels()), status


@bp.route("/fields/<int:field_id>/move", methods=["POST"])
def field_move(field_id: int):
    definition = get_or_404(UserField, field_id)
    direction = request.form.get("direction", "")
    if direction not in ("up", "down"):
        abort(400)
    service.move(definition, direction, **audit_ctx())
    if wants_partial():
        return _render_fields(CrmType(definition.crm_type))
    return redirect(_page_url(definition.crm_type))


@bp.route("/fields/<int:field_id>/delete", methods=["GET", "POST"])
def field_delete(field_id: int):
    """GET: what deleting would do; POST: delete."""
    definition = get_or_404(UserField, field_id)
    if request.method == "POST":
        crm_type, label = definition.crm_type, definition.label
        blanked, unmapped = service.delete(definition, **audit_ctx())
        mappings = (f"{unmapped} ERP mapping{'s' if unmapped != 1 else ''} to it {'were' if unmapped != 1 else 'was'}"
                    " removed" if unmapped else "no ERP field was mapped to it")
        flash(f"Field “{label}” deleted: its value was removed from {blanked} record{'s' if blanked != 1 else ''};"
              f" {mappings}.", "success")
        return redirect_for(_page_url(crm_type))
    return render_template("admin/fields/delete.html", definition=definition, type_labels=CRM_TYPE_LABELS,
                           records=service.records_with_values(definition), mappings=service.mappings_to(definition))

"""CRM screens: start page, company/contact/project lists (active search + paging), detail pages with
server-rendered tabs, htmx create/edit forms and delete.

Routes only translate between forms and portal/services/crm.py. Endpoints follow ``<type>_<action>``:
``crm.company_list``, ``crm.company_detail``, ``crm.company_create``, ``crm.company_edit``,
``crm.company_delete`` (and the same for contact/project), plus ``crm.company_options`` for the contact
form's company picker.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from flask import flash, g, render_template, request, url_for
from flask_wtf import FlaskForm

from portal.crm import bp
from portal.crm.forms import form_class, form_data, sections
from portal.extensions import db
from portal.htmx import redirect_for, vary_on_htmx, wants_partial
from portal.models import Company, Contact, CrmFieldType, CrmType, ListItem, Project, crm_fields
from portal.services import crm as crm_service
from portal.services import lists as list_service
from portal.services import record_sync_status
from portal.services.values import number_text
from portal.web import apply_form_errors, get_or_404, render_form

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Kind:
    """What differs between the three record types on these screens."""

    crm_type: CrmType
    model: type
    prefix: str  # endpoint prefix: company_list, company_detail, ...
    label: str
    plural_label: str
    id_arg: str = "record_id"

    def endpoint(self, action: str) -> str:
        return f"crm.{self.prefix}_{action}"

    def url(self, action: str, record=None, /, **args) -> str:  # positional-only: ?action=… is a query arg
        if record is not None:
            args[self.id_arg] = record.id
        return url_for(self.endpoint(action), **args)


COMPANY = Kind(CrmType.COMPANY, Company, "company", "Company", "Companies")
CONTACT = Kind(CrmType.CONTACT, Contact, "contact", "Contact", "Contacts")
PROJECT = Kind(CrmType.PROJECT, Project, "project", "Project", "Projects")
KINDS = {kind.crm_type: kind for kind in (COMPANY, CONTACT, PROJECT)}

TAB_LABELS = {"details": "Details", "contacts": "Contacts", "erp": "ERP"}


bp.after_request(vary_on_htmx)


@bp.context_processor
def _crm_globals():
    return {"crm_kinds": KINDS, "field_labels": _field_labels, "field_types": _field_types, "crm_sections": sections,
            "number_text": _number_text, "list_columns": _list_columns,
            "list_item": _list_item}


def _number_text(value) -> str:
    """A stored number for the details page, without needless zeros; never raises."""
    try:
        return number_text(value)
    except ValueError:
        return str(value)


def _list_item(item_id):
    """The CRM list item of a user-defined list field's value (built-in list fields have relationships)."""
    return db.session.get(ListItem, item_id) if isinstance(item_id, int) else None


def _field_labels(crm_type: CrmType) -> dict[str, str]:
    extra = {"company_id": "Company"} if crm_type == CrmType.CONTACT else {}
    return {spec.key: spec.label for spec in crm_fields(crm_type)} | extra


def _field_types(crm_type: CrmType) -> dict[str, str]:
    return {spec.key: spec.type.value for spec in crm_fields(crm_type)}


def _list_columns(crm_type: CrmType) -> list:
    """The user-defined fields shown as columns of the record list (after the built-in columns)."""
    return [spec for spec in crm_fields(crm_type) if spec.show_in_list]


# ---------------------------------------------------------------------------------------------------------
# ERP tab (written by another team): only a visibility check and a lazily loaded placeholder live here.


def erp_tab_visible(crm_type: str, record_id: int) -> bool:
    """``portal.services.erp_visibility.erp_tab_visible(user, crm_type, record_id)`` if that module exists."""
    try:
        from portal.services.erp_visibility import erp_tab_visible as check
    except ImportError:
        return False
    try:
        return bool(check(g.get("user"), str(crm_type), record_id))
    except Exception:  # the CRM page must never fail because of the ERP side
        log.exception("erp_tab_visible failed for %s %s", crm_type, record_id)
        return False


# ---------------------------------------------------------------------------------------------------------
# Start page


@bp.route("/")
def home():
    return render_template(
        "crm/home.html",
        counts=crm_service.counts(),
        recent={crm_type: crm_service.recently_updated(crm_type) for crm_type in KINDS},
    )


# ---------------------------------------------------------------------------------------------------------
# Shared view bodies


def _sync_visible() -> bool:
    """The Sync column and filter of the lists: for admins and users with an ERP Sync licence."""
    user = g.get("user")
    return user is not None and (user.is_admin or bool(user.erp_licence))


def _list_view(kind: Kind):
    query = request.args.get("q", "")[: crm_service.MAX_QUERY_LENGTH]
    show_sync = _sync_visible()
    sync_choices = record_sync_status.filter_choices(kind.crm_type) if show_sync else []
    wanted = request.args.get("sync", "") if show_sync else ""
    sync_filter = wanted if wanted in {value for value, _label in sync_choices} else ""
    page = crm_service.search(kind.crm_type, query, request.args.get("page"), sync_filter=sync_filter,
                              with_sync=show_sync)
    context = {"kind": kind, "page": page, "q": query, "show_sync": show_sync, "sync_choices": sync_choices,
               "sync_filter": sync_filter, "sync_label": dict(sync_choices).get(sync_filter, "")}
    if wants_partial():
        return render_template(f"crm/_{kind.prefix}_results.html", **context)
    return render_template("crm/list.html", **context)


def _tabs(kind: Kind, record) -> list[str]:
    tabs = ["details"]
    if kind.crm_type == CrmType.COMPANY:
        tabs.append("contacts")
    if erp_tab_visible(kind.crm_type, record.id):
        tabs.append("erp")
    return tabs


def _detail_view(kind: Kind, record_id: int):
    record = get_or_404(kind.model, record_id)
    tabs = _tabs(kind, record)
    tab = request.args.get("tab") or "details"
    if tab not in tabs:
        tab = "details"
    context = {"kind": kind, "record": record, "tabs": tabs, "tab": tab, "tab_labels": TAB_LABELS}
    if tab == "contacts":
        context["contacts"] = crm_service.company_contacts(record.id, request.args.get("page"))
    if kind.crm_type == CrmType.COMPANY:
        context["contact_count"] = crm_service.contact_count(record.id)
    if wants_partial():
        return render_template("crm/_tab_panel.html", oob=True, **context)
    return render_template("crm/detail.html", **context)


def _fill_choices(kind: Kind, form: FlaskForm, record=None) -> None:
    """Options of the list selects (non-deleted items + the record's current one) and the company select."""
    for spec in crm_fields(kind.crm_type):
        if spec.type == CrmFieldType.LIST:
            current = getattr(record, spec.key, None)
            form[spec.key].choices = [("", "(none)")] + list_service.choices(spec.list_name, current)
    if kind.crm_type == CrmType.CONTACT:
        choices = [("", "(none)")]
        selected = form.company_id.data
        company = db.session.get(Company, selected) if isinstance(selected, int) else None
        if company is not None:
            choices.append((company.id, company.display_name))
        form.company_id.choices = choices


def _render_form(kind: Kind, form: FlaskForm, record=None):
    # the query (a prefill such as ?company=) is carried to the form's action; url_for's own _options are not
    carried = {key: value for key, value in request.args.items() if not key.startswith("_")}
    action = kind.url("edit", record) if record is not None else kind.url("create", **carried)
    return render_form("crm/form.html", "crm/_form.html", form, kind=kind, record=record, action=action,
                       sections=sections(kind.crm_type))


def _create_view(kind: Kind):
    form = form_class(kind.crm_type)()
    if request.method == "GET" and kind.crm_type == CrmType.CONTACT:
        form.company_id.data = _int_arg("company_id")
    _fill_choices(kind, form)
    if form.validate_on_submit():
        try:
            record = crm_service.create_record(kind.crm_type, form_data(form))
        except crm_service.ValidationError as exc:
            apply_form_errors(form, exc.errors)
        else:
            flash(f"{kind.label} “{record.display_name}” created.", "success")
            return redirect_for(kind.url("detail", record))
    return _render_form(kind, form)


def _edit_view(kind: Kind, record_id: int):
    record = get_or_404(kind.model, record_id)
    form = form_class(kind.crm_type)(obj=record)
    _fill_choices(kind, form, record)
    if form.validate_on_submit():
        try:
            crm_service.update_record(record, form_data(form))
        except crm_service.ValidationError as exc:
            apply_form_errors(form, exc.errors)
        else:
            flash(f"{kind.label} “{record.display_name}” saved.", "success")
            return redirect_for(kind.url("detail", record))
    return _render_form(kind, form, record)


def _delete_view(kind: Kind, record_id: int):
    record = get_or_404(kind.model, record_id)
    name = record.display_name
    result = crm_service.delete_record(record)
    message = f"{kind.label} “{name}” deleted."
    if result["contacts_detached"]:
        count = result["contacts_detached"]
        message += f" Its {count} contact{'s' if count != 1 else ''} {'were' if count != 1 else 'was'} kept."
    flash(message, "success")
    return redirect_for(kind.url("list"))


def _int_arg(name: str) -> int | None:
    value = request.args.get(name, "")
    return int(value) if value.isdigit() else None


# ---------------------------------------------------------------------------------------------------------
# Companies


@bp.route("/companies")
def company_list():
    return _list_view(COMPANY)


@bp.route("/companies/new", methods=["GET", "POST"])
def company_create():
    return _create_view(COMPANY)


@bp.route("/companies/options")
def company_options():
    """``<option>``s for the contact form's company select: "(none)", the current company, then matches."""
    companies, more = crm_service.company_options(request.args.get("q", ""))
    current = db.session.get(Company, _int_arg("company_id")) if _int_arg("company_id") else None
    return render_template("crm/_company_options.html", companies=companies, more=more, current=current)


@bp.route("/companies/<int:record_id>")
def company_detail(record_id: int):
    return _detail_view(COMPANY, record_id)


@bp.route("/companies/<int:record_id>/edit", methods=["GET", "POST"])
def company_edit(record_id: int):
    return _edit_view(COMPANY, record_id)


@bp.route("/companies/<int:record_id>/delete", methods=["POST"])
def company_delete(record_id: int):
    return _delete_view(COMPANY, record_id)


# ---------------------------------------------------------------------------------------------------------
# Contacts


@bp.route("/contacts")
def contact_list():
    return _list_view(CONTACT)


@bp.route("/contacts/new", methods=["GET", "POST"])
def contact_create():
    return _create_view(CONTACT)


@bp.route("/contacts/<int:record_id>")
def contact_detail(record_id: int):
    return _detail_view(CONTACT, record_id)


@bp.route("/contacts/<int:record_id>/edit", methods=["GET", "POST"])
def contact_edit(record_id: int):
    return _edit_view(CONTACT, record_id)


@bp.route("/contacts/<int:record_id>/delete", methods=["POST"])
def contact_delete(record_id: int):
    return _delete_view(CONTACT, record_id)


# ---------------------------------------------------------------------------------------------------------
# Projects


@bp.route("/projects")
def project_list():
    return _list_view(PROJECT)


@bp.route("/projects/new", methods=["GET", "POST"])
def project_create():
    return _create_view(PROJECT)


@bp.route("/projects/<int:record_id>")
def project_detail(record_id: int):
    return _detail_view(PROJECT, record_id)


@bp.route("/projects/<int:record_id>/edit", methods=["GET", "POST"])
def project_edit(record_id: int):
    return _edit_view(PROJECT, record_id)


@bp.route("/projects/<int:record_id>/delete", methods=["POST"])
def project_delete(record_id: int):
    return _delete_view(PROJECT, record_id)

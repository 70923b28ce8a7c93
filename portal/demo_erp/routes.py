"""Routes of the Demo ERP pages: list (tabs, search, paging), detail, edit, new, mark as changed, delete."""

from __future__ import annotations

from flask import abort, flash, render_template, request, url_for

from portal.connectors.builtin.demo import FIELDS, PARENT_TYPES, DemoErpValidationError
from portal.demo_erp import bp, demo_connector
from portal.demo_erp.forms import ConfirmForm, actor_form, default_values, form_values
from portal.htmx import redirect_for, wants_partial
from portal.services.crm import Page
from portal.web import apply_form_errors, render_form

PER_PAGE = 25
# URL segment -> (actor type, plural label, singular label)
KINDS = {
    "customers": ("Customer", "Customers", "customer"),
    "suppliers": ("Supplier", "Suppliers", "supplier"),
    "persons": ("Person", "Persons", "person"),
    "projects": ("Project", "Projects", "project"),
}
KIND_OF = {actor_type: kind for kind, (actor_type, _, _) in KINDS.items()}
# Columns of the list per actor type (besides key, name and LastModified).
COLUMNS = {
    "Customer": ("NUMBER1", "POSTALCITY", "COUNTRY", "CUSTOMERGROUP", "BLOCKED"),
    "Supplier": ("NUMBER1", "POSTALCITY", "COUNTRY", "CURRENCY", "BLOCKED"),
    "Person": ("POSITION", "EMAIL"),
    "Project": ("NUMBER", "STATUS", "ENDDATE"),
}
META = {actor_type: {m["FieldKey"]: m for m in fields} for actor_type, fields in FIELDS.items()}


def _kind(kind: str) -> tuple[str, str, str]:
    if kind not in KINDS:
        abort(404)
    return KINDS[kind]


def _actor_or_404(actor_type: str, erp_key: str) -> dict:
    actor = demo_connector().get_actor(actor_type, erp_key)
    if actor is None:
        abort(404)
    return actor


def _formatter():
    """``fmt(actor_type, key, value)`` -> display text (list items by their text, booleans as Yes/No)."""
    erp = demo_connector()
    lists: dict[str, dict[str, str]] = {}

    def fmt(actor_type: str, key: str, value) -> str:
        meta = META[actor_type][key]
        if meta["FieldType"] == "Checkbox":
            return "Yes" if value else "No"
        if value is None or value == "":
            return "—"
        if meta["FieldType"] == "List":
            items = lists.setdefault(meta["ListName"], erp.list_items(meta["ListName"]))
            return items.get(value, value)
        if meta["FieldType"] == "Double":
            return f"{value:,.2f}"
        return str(value)

    return fmt


def _page_context(kind: str) -> dict:
    actor_type, plural, singular = KINDS[kind]
    return {"kind": kind, "actor_type": actor_type, "plural": plural, "singular": singular, "kinds": KINDS,
            "meta": META[actor_type], "fmt": _formatter(), "kind_of": KIND_OF, "title_of": _title}


def _title(actor: dict) -> str:
    values = actor["FieldValues"]
    if actor["ActorType"] == "Person":
        return " ".join(v for v in (values.get("FIRSTNAME"), values.get("LASTNAME")) if v) or actor["ErpKey"]
    return values.get("NAME") or actor["ErpKey"]


@bp.route("/")
def index():
    return actor_list("customers")


@bp.route("/<kind>/")
def actor_list(kind: str):
    actor_type, _, _ = _kind(kind)
    erp = demo_connector()
    query = (request.args.get("q") or "").strip()[:100]
    number = max(request.args.get("page", 1, type=int), 1)
    total, actors = erp.browse(actor_type, query, offset=(number - 1) * PER_PAGE, limit=PER_PAGE)
    parents = erp.display_names({a["ParentErpKey"] for a in actors if a["ParentErpKey"]})
    context = {**_page_context(kind), "actors": actors, "page": Page(items=actors, page=number, per_page=PER_PAGE, total=total), "q": query,
               "parents": parents, "columns": COLUMNS[actor_type]}
    if wants_partial():
        return render_template("demo_erp/_results.html", **context)
    counts = erp.counts()
    tab_items = [(key, f"{label} ({counts[t]})", url_for("demo_erp.actor_list", kind=key), None)
                 for key, (t, label, _) in KINDS.items()]
    return render_template("demo_erp/list.html", tab_items=tab_items, **context)


@bp.route("/<kind>/<erp_key>")
def actor_detail(kind: str, erp_key: str):
    actor_type, _, _ = _kind(kind)
    erp = demo_connector()
    actor = _actor_or_404(actor_type, erp_key)
    persons, parent_name = [], None
    if actor_type in PARENT_TYPES:
        _, persons = erp.browse("Person", parent_key=erp_key, limit=200)
    if actor["ParentErpKey"]:
        parent_name = erp.display_names([actor["ParentErpKey"]]).get(actor["ParentErpKey"])
    return render_template("demo_erp/detail.html", actor=actor, title=_title(actor), persons=persons,
                           parent_name=parent_name, fields=FIELDS[actor_type], form=ConfirmForm(),
                           **_page_context(kind))


@bp.route("/<kind>/<erp_key>/edit", methods=["GET", "POST"])
def actor_edit(kind: str, erp_key: str):
    actor_type, _, singular = _kind(kind)
    erp = demo_connector()
    actor = _actor_or_404(actor_type, erp_key)
    form = actor_form(actor_type, erp.list_items, actor["FieldValues"] if request.method == "GET" else None)
    if form.validate_on_submit():
        values = form_values(form, actor_type)
        changed = {key: value for key, value in values.items() if not _same(actor["FieldValues"].get(key), value)}
        detail = url_for("demo_erp.actor_detail", kind=kind, erp_key=erp_key)
        if not changed:
            flash("Nothing changed, so the record was not saved.", "info")
            return redirect_for(detail)
        try:
            saved = erp.update_fields(actor_type, erp_key, changed)
        except KeyError:
            abort(404)
        except DemoErpValidationError as exc:
            apply_form_errors(form, exc.errors)
        else:
            flash(f"Saved {_title(saved)} in the Demo ERP (LastModified {saved['LastModified']}). "
                  "The portal picks the change up on its next sync.", "success")
            return redirect_for(detail)
    return render_form("demo_erp/form.html", None, form, actor=actor, title=_title(actor),
                       read_only=[m for m in FIELDS[actor_type] if m["Access"] == "ReadOnly"],
                       action=url_for("demo_erp.actor_edit", kind=kind, erp_key=erp_key),
                       cancel=url_for("demo_erp.actor_detail", kind=kind, erp_key=erp_key),
                       heading=f"Edit {singular} {_title(actor)}", parent=None, **_page_context(kind))


@bp.route("/<kind>/new", methods=["GET", "POST"])
def actor_new(kind: str):
    actor_type, _, singular = _kind(kind)
    erp = demo_connector()
    parent = None
    if actor_type == "Person":
        parent_key = request.args.get("parent", "")
        parent_actor = next((a for t in PARENT_TYPES if (a := erp.get_actor(t, parent_key))), None)
        if parent_actor is None:
            abort(404)
        parent = (parent_actor["ActorType"], parent_actor["ErpKey"], _title(parent_actor))
    form = actor_form(actor_type, erp.list_items, default_values(actor_type) if request.method == "GET" else None)
    if form.validate_on_submit():
        try:
            created = erp.create(actor_type, form_values(form, actor_type), parent[:2] if parent else None)
        except DemoErpValidationError as exc:
            apply_form_errors(form, exc.errors)
        else:
            flash(f"Created {singular} {_title(created)} ({created['ErpKey']}) in the Demo ERP.", "success")
            return redirect_for(url_for("demo_erp.actor_detail", kind=kind, erp_key=created["ErpKey"]))
    back = (url_for("demo_erp.actor_detail", kind=KIND_OF[parent[0]], erp_key=parent[1]) if parent
            else url_for("demo_erp.actor_list", kind=kind))
    return render_form("demo_erp/form.html", None, form, actor=None, title=None, read_only=[],
                       action=url_for("demo_erp.actor_new", kind=kind, parent=parent[1] if parent else None),
                       cancel=back, heading=f"New {singular}" + (f" at {parent[2]}" if parent else ""),
                       parent=parent, **_page_context(kind))


@bp.route("/<kind>/<erp_key>/touch", methods=["POST"])
def actor_touch(kind: str, erp_key: str):
    actor_type, _, _ = _kind(kind)
    actor = _actor_or_404(actor_type, erp_key)
    if not ConfirmForm().validate_on_submit():
        abort(400)
    try:
        stamp = demo_connector().touch(actor_type, erp_key)
    except KeyError:
        abort(404)
    flash(f"Marked {_title(actor)} as changed (LastModified {stamp}).", "success")
    return redirect_for(url_for("demo_erp.actor_detail", kind=kind, erp_key=erp_key))


@bp.route("/<kind>/<erp_key>/delete", methods=["GET", "POST"])
def actor_delete(kind: str, erp_key: str):
    actor_type, _, singular = _kind(kind)
    actor = _actor_or_404(actor_type, erp_key)
    form = ConfirmForm()
    if form.validate_on_submit():
        demo_connector().delete_actor(actor_type, erp_key)
        flash(f"Deleted {singular} {_title(actor)} ({erp_key}) in the Demo ERP. The portal sees it as gone "
              "on its next sync.", "success")
        return redirect_for(url_for("demo_erp.actor_list", kind=kind))
    return render_template("demo_erp/delete.html", actor=actor, title=_title(actor), form=form,
                           **_page_context(kind))


def _same(old, new) -> bool:
    """Equal for the purpose of "did the user change it" (blank text and None are the same)."""
    if old in (None, "") and new in (None, ""):
        return True
    if isinstance(old, int | float) and isinstance(new, int | float) and not isinstance(old, bool):
        return float(old) == float(new)
    return old == new

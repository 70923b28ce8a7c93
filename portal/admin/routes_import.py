"""Settings → Import → ERP Sync: the Import from ERP wizard (spec §5, issue #6).

Steps (breadcrumb): connection and actor type → search → settings → preview → done.

* Step 1 is a GET form (nothing changes). Steps 2–4 post their inputs; the state so far (connection, actor
  type, criteria, selection, settings) travels in a hidden field signed with SECRET_KEY (itsdangerous), so it
  cannot be tampered with and nothing is stored before the admin presses Import. "Select all results" keeps
  the restrictions, not the keys: the search is re-run server-side at import time.
* Import queues a SyncRun of kind ``import`` (the connection's run lock); the run page polls a small partial
  every second and shows the Done view when the run is terminal.

Endpoints: ``admin.import_index`` (/settings/import), ``admin.import_start`` (?connection_id=…, the Sync tab's
"Import from ERP" link), ``admin.import_actor_types``, ``admin.import_search``, ``admin.import_settings``,
``admin.import_preview``, ``admin.import_run``, ``admin.import_run_detail``, ``admin.import_run_progress``,
``admin.import_run_records``, ``admin.import_rerun``; the undo of a run is in routes_import_undo.

Steps 1–2 and the helpers the other modules share (signed state, breadcrumb, ``_import_run_or_404``) are here;
steps 3–4 and Import are in routes_import_preview, progress and Done in routes_import_runs (split to keep
modules readable).
"""

from __future__ import annotations

import contextlib

from flask import abort, current_app, g, render_template, request
from itsdangerous import BadSignature, URLSafeTimedSerializer

from portal.admin import bp
from portal.admin.forms_import import StartForm, criteria_from_form, row_change
from portal.connectors.client import ConnectorError
from portal.htmx import wants_partial
from portal.models import RunKind, SyncRun
from portal.services.actor_labels import actor_label
from portal.services.import_run import import_runs
from portal.services.import_search import (
    Criterion,
    build_restrictions,
    field_list_items,
    resolve_list_texts,
    search,
    search_fields,
)
from portal.services.import_settings import (
    ImportProblem,
    ImportRequest,
    get_import_connection,
    get_import_type,
    import_connections,
    importable_types,
)
from portal.web import get_or_404

STEPS = (("start", "Connection and actor type"), ("search", "Search"), ("settings", "Settings"),
         ("preview", "Preview"), ("done", "Done"))
RESULTS_PER_PAGE = 25
STATE_MAX_AGE = 24 * 3600


# ------------------------------------------------------------------------------------------------ helpers


def _signer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt="import-wizard")


def _dump_state(req: ImportRequest, criteria: list[Criterion]) -> str:
    return _signer().dumps({"options": req.to_options(), "criteria": [c.to_dict() for c in criteria]})


def _load_state() -> tuple[ImportRequest, list[Criterion]]:
    token = request.form.get("state", "")
    try:
        data = _signer().loads(token, max_age=STATE_MAX_AGE)
        req = ImportRequest.from_options(data["options"])
        criteria = [Criterion.from_dict(c) for c in data.get("criteria") or []]
    except (BadSignature, KeyError, TypeError, ValueError):
        abort(400, "The import wizard's state is missing or has expired. Start again.")
    return req, criteria


def _user():
    return g.get("user")


def _steps(current: str) -> list[tuple[str, str, str]]:
    """(key, label, state) with state 'done' | 'current' | 'todo' for the breadcrumb."""
    index = [k for k, _l in STEPS].index(current)
    return [(key, label, "done" if i < index else "current" if i == index else "todo")
            for i, (key, label) in enumerate(STEPS)]


def _connection_and_type(connection_id, actor_type):
    connection = get_import_connection(connection_id, _user())
    config = get_import_type(connection, actor_type)
    return connection, config


def _type_choices(connection) -> list[tuple[str, str]]:
    return [(c.erp_actor_type, f"{actor_label(c)} → CRM {c.crm_type}")  # the value stays the constant
            for c in importable_types(connection)] if connection is not None else []


def _render_start(form: StartForm, connections, *, template: str = "admin/import/start.html", status: int = 200,
                  message: str | None = None):
    return render_template(template, form=form, connections=connections, steps=_steps("start"),
                           message=message, runs=import_runs(10)), status


def _start_form(connection_id: int | None, actor_type: str | None = None) -> tuple[StartForm, list]:
    connections = import_connections(_user())
    form = StartForm(formdata=None)
    form.connection_id.choices = [(c.id, c.name) for c in connections]
    selected = next((c for c in connections if c.id == connection_id), connections[0] if connections else None)
    form.connection_id.data = selected.id if selected else None
    form.actor_type.choices = _type_choices(selected)
    if actor_type in dict(form.actor_type.choices):
        form.actor_type.data = actor_type
    return form, connections


def _import_run_or_404(run_id: int) -> SyncRun:
    run = get_or_404(SyncRun, run_id)
    if run.kind != RunKind.IMPORT:
        abort(404)
    return run


# ------------------------------------------------------------------------------------------ step 1: start


@bp.route("/import")
def import_index():
    """The Import page: pick the source (ERP Sync), then connection and actor type; recent imports."""
    form, connections = _start_form(request.args.get("connection_id", type=int))
    return _render_start(form, connections, template="admin/import/index.html")


@bp.route("/import/erp")
def import_start():
    """Step 1 (the Sync tab's "Import from ERP" link passes connection_id)."""
    connection_id = request.args.get("connection_id", type=int)
    form, connections = _start_form(connection_id, request.args.get("actor_type"))
    message = None
    if connection_id and form.connection_id.data != connection_id:
        try:
            get_import_connection(connection_id, _user())
            message = "This connection has no actor type that can be imported: activate an actor type with " \
                      "searchable fields and fields mapped to the CRM first."
        except ImportProblem as exc:
            message = exc.message
    return _render_start(form, connections, message=message)


@bp.route("/import/erp/actor-types")
def import_actor_types():
    """The actor type choices of a connection (htmx, when the connection changes)."""
    connection = next((c for c in import_connections(_user())
                       if c.id == request.args.get("connection_id", type=int)), None)
    return render_template("admin/import/_actor_types.html", choices=_type_choices(connection))


# ----------------------------------------------------------------------------------------- step 2: search


def _search_context(connection, config, criteria: list[Criterion], **extra) -> dict:
    fields = search_fields(config)
    list_names = [f.list_name for f in fields if f.is_list and any(c.field == f.key for c in criteria)]
    list_items, list_error = {}, None
    try:
        list_items = field_list_items(connection, list_names)
    except ConnectorError as exc:
        list_error = f"The list items could not be read: {exc.user_message}"
    context = dict(connection=connection, config=config, fields=fields, fields_by_key={f.key: f for f in fields},
                   criteria=criteria, list_items=list_items, list_error=list_error, steps=_steps("search"),
                   results=None, selection=set(), all_results=False, page=1, search_error=None, message=None)
    context.update(extra)
    return context


def _default_criteria(config) -> list[Criterion]:
    fields = search_fields(config)
    if not fields:
        return []
    return [Criterion(field=fields[0].key, operator=fields[0].operators[0][0])]


def _normalize_rows(criteria: list[Criterion], config) -> None:
    """Keep every row's operator valid for its field (the field select may just have changed)."""
    by_key = {f.key: f for f in search_fields(config)}
    for row in criteria:
        spec = by_key.get(row.field)
        if spec is None:
            continue
        ops = [op for op, _l in spec.operators]
        if row.operator not in ops:
            row.operator = ops[0]
            row.values = []


def _run_search(connection, config, criteria, page: int, selection: set[str], all_results: bool) -> dict:
    """Find: SearchActorsAdvanced with the active criteria; one page of results for the grid."""
    fields = search_fields(config)
    try:
        restrictions = build_restrictions(criteria, fields)
    except ImportProblem as exc:
        return {"search_error": exc.message, "status": 422}
    try:
        result = search(connection, config, restrictions)
    except ConnectorError as exc:
        return {"search_error": f"The search failed: {exc.user_message}", "status": 502}
    total = len(result.actors)
    pages = max(1, -(-total // RESULTS_PER_PAGE))
    page = max(1, min(page, pages))
    shown = result.actors[(page - 1) * RESULTS_PER_PAGE: page * RESULTS_PER_PAGE]
    with contextlib.suppress(ConnectorError):  # the keys are shown instead of the texts
        resolve_list_texts(connection, result, shown)
    all_keys = set(result.keys)
    return {"results": result, "shown": shown, "total": total, "page": page, "pages": pages,
            "selection": selection & all_keys if not all_results else all_keys, "all_results": all_results,
            "status": 200}


@bp.route("/import/erp/search", methods=["GET", "POST"])
def import_search():
    """Step 2: the criteria grid (Add, Delete, Deactivate all, Reset) and Find, results with selection."""
    if request.method == "GET":
        connection_id = request.args.get("connection_id", type=int)
        actor_type = request.args.get("actor_type")
        try:
            connection, config = _connection_and_type(connection_id, actor_type)
        except ImportProblem as exc:
            form, connections = _start_form(connection_id, actor_type)
            form[exc.field or "actor_type"].errors = [exc.message]
            return _render_start(form, connections, status=422)
        return render_template("admin/import/search.html",
                               **_search_context(connection, config, _default_criteria(config)))

    form = request.form
    action = form.get("action", "find")
    if "state" in form:  # Back from the settings step
        req, criteria = _load_state()
        connection_id, actor_type = req.connection_id, req.actor_type
        selection, all_results = set(req.keys), req.all_results
        action = "find"
    else:
        connection_id, actor_type = form.get("connection_id", type=int), form.get("actor_type")
        criteria = criteria_from_form(form)
        selection = set(form.getlist("keys"))
        all_results = form.get("all_results") == "1"
    try:
        connection, config = _connection_and_type(connection_id, actor_type)
    except ImportProblem as exc:
        abort(422, exc.message)
    page = form.get("page", 1, type=int)
    if action == "add":
        criteria.extend(_default_criteria(config))
    elif action.startswith("remove-") and action[7:].isdigit():
        index = int(action[7:])
        if 0 <= index < len(criteria):
            del criteria[index]
    elif action == "reset":
        criteria = _default_criteria(config)
    elif action == "deactivate":
        for row in criteria:
            row.active = False
    _normalize_rows(criteria, config)

    if action in ("find", "page", "select"):
        found = _run_search(connection, config, criteria, page, selection, all_results)
        status = found.pop("status")
        context = _search_context(connection, config, criteria, **found)
        if wants_partial():
            html = render_template("admin/import/_results.html", **context)
            if any(row.error for row in criteria):  # show the row errors in the grid too (out of band)
                html += render_template("admin/import/_criteria.html", **context, oob=True)
            return html, status
        return render_template("admin/import/search.html", **context), status
    context = _search_context(connection, config, criteria)
    if wants_partial():
        # A row's own change swaps no more than it decides, so what is typed elsewhere meanwhile stays (a value typed
        # right after picking an operator was lost when the whole grid came back).
        part = row_change(action, len(criteria))
        if part is not None:
            kind, index = part
            template = "_criterion_row.html" if kind == "field" else "_criterion_to.html"
            return render_template(f"admin/import/{template}", **context, row=criteria[index], i=index)
        return render_template("admin/import/_criteria.html", **context)
    return render_template("admin/import/search.html", **context)

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
"""

from __future__ import annotations

import contextlib
import dataclasses

from flask import abort, current_app, g, redirect, render_template, request, url_for
from itsdangerous import BadSignature, URLSafeTimedSerializer
from sqlalchemy import select
from werkzeug.routing import BuildError

from portal.admin import bp
from portal.admin.forms_import import SettingsForm, StartForm, criteria_from_form, list_defaults_from_form, row_change
from portal.connectors.client import ConnectorError
from portal.extensions import db
from portal.htmx import hx_trigger, is_htmx, redirect_for, stop_polling, toast, wants_partial
from portal.models import ActorType, CrmFieldType, CrmType, ListItem, RunKind, SyncRun, crm_field
from portal.services import import_rules, import_undo
from portal.services.actor_labels import actor_label
from portal.services.import_plan import type_spec
from portal.services.import_preview import preview
from portal.services.import_run import MAX_EXPLICIT_KEYS, RunBusy, import_runs, rerun, run_records, start_import
from portal.services.import_search import (
    Criterion,
    build_restrictions,
    field_list_items,
    resolve_list_texts,
    search,
    search_fields,
)
from portal.services.import_settings import (
    COMPANY_TYPES,
    ImportProblem,
    ImportRequest,
    check_settings,
    company_name_choices,
    get_import_connection,
    get_import_type,
    id_field_choices,
    import_connections,
    importable_types,
    persons_config,
    settings_summary,
)
from portal.web import audit_ctx, get_or_404

STEPS = (("start", "Connection and actor type"), ("search", "Search"), ("settings", "Settings"),
         ("preview", "Preview"), ("done", "Done"))
RESULTS_PER_PAGE = 25
PREVIEW_PER_PAGE = 20
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


# --------------------------------------------------------------------------------------- step 3: settings


def _list_default_fields(connection, actor_types: list[str]) -> list[dict]:
    """The List fields the import writes, for the "Use a default" choices."""
    result = []
    for actor_type in actor_types:
        config = connection.actor_type(actor_type)
        if config is None:
            continue
        for f in type_spec(config).write:
            if f.crm_type != CrmFieldType.LIST:
                continue
            crm = crm_field(config.crm_type, f.crm_key)
            if crm is None:
                continue
            items = db.session.scalars(select(ListItem).where(ListItem.list_name == crm.list_name,
                                                              ListItem.deleted.is_(False))
                                       .order_by(ListItem.rank, ListItem.id)).all()
            result.append({"name": f"default-{actor_type}.{f.erp_key}", "key": f"{actor_type}.{f.erp_key}",
                           "label": f"{actor_label(config)}: {f.erp_label or f.erp_key} → {crm.label}",
                           "items": [(i.id, i.name) for i in items]})
    return result


def _involved_types(connection, req: ImportRequest, include_persons: bool | None = None) -> list[str]:
    types = [req.actor_type]
    include = req.settings.include_persons if include_persons is None else include_persons
    if req.crm_type == CrmType.COMPANY and include and persons_config(connection) is not None:
        types.append(ActorType.PERSON)
    if req.crm_type == CrmType.CONTACT:
        types += [t for t in COMPANY_TYPES if (c := connection.actor_type(t)) is not None and c.is_active]
    return types


def _field_choices(connection, req: ImportRequest) -> tuple[dict, list]:
    """The connection's fields for the ID rule (per CRM type, every actor type the import may write) and the
    Person fields that can hold a company name."""
    wide = dataclasses.replace(req, settings=dataclasses.replace(req.settings, include_persons=True,
                                                                 person_policy="import_company"))
    id_fields = {crm_type: id_field_choices(connection, wide, crm_type)
                 for crm_type in (CrmType.COMPANY, CrmType.CONTACT, CrmType.PROJECT)}
    return id_fields, company_name_choices(connection)


def _render_settings(connection, config, req: ImportRequest, criteria, form: SettingsForm | None = None,
                     status: int = 200, message: str | None = None):
    id_fields, name_fields = _field_choices(connection, req)
    if form is None:
        form = SettingsForm(formdata=None)
        form.fill(req.settings)
        for crm_type, choices in id_fields.items():  # the only choice is the obvious default
            if not form[f"{crm_type}_id_field"].data and len(choices) == 1:
                form[f"{crm_type}_id_field"].data = choices[0][0]
        if not form.company_name_field.data:
            form.company_name_field.data = import_rules.guess_company_name_field(name_fields)
    form.set_choices(id_fields, name_fields)
    form.state.data = _dump_state(req, criteria)
    persons_possible = req.crm_type == CrmType.COMPANY and persons_config(connection) is not None
    defaults = _list_default_fields(connection, _involved_types(connection, req, True))
    return render_template("admin/import/settings.html", form=form, connection=connection, config=config, req=req,
                           steps=_steps("settings"), persons_possible=persons_possible, default_fields=defaults,
                           list_defaults=req.settings.list_defaults, message=message), status


@bp.route("/import/erp/settings", methods=["POST"])
def import_settings():
    """Step 3: from the search step (criteria + selection) or Back from the preview (state)."""
    form = request.form
    if "state" in form:  # Back from the preview: keep the settings chosen there
        req, criteria = _load_state()
        connection, config = _checked(req)
        return _render_settings(connection, config, req, criteria)
    connection_id, actor_type = form.get("connection_id", type=int), form.get("actor_type")
    try:
        connection, config = _connection_and_type(connection_id, actor_type)
    except ImportProblem as exc:
        abort(422, exc.message)
    criteria = criteria_from_form(form)
    _normalize_rows(criteria, config)
    keys = list(dict.fromkeys(form.getlist("keys")))
    all_results = form.get("all_results") == "1"
    fields = search_fields(config)
    problem = None
    try:
        restrictions = build_restrictions(criteria, fields)
    except ImportProblem as exc:
        restrictions, problem = [], exc.message
    if problem is None and not all_results and not keys:
        problem = "Select the actors to import (tick rows, or select all results), after Find."
    if problem is None and not all_results and len(keys) > MAX_EXPLICIT_KEYS:
        problem = f"Tick at most {MAX_EXPLICIT_KEYS} rows, or select all results."
    if problem is not None:
        context = _search_context(connection, config, criteria, message=problem, selection=set(keys),
                                  all_results=all_results)
        return render_template("admin/import/search.html", **context), 422
    req = ImportRequest(connection.id, config.erp_actor_type, restrictions=restrictions, all_results=all_results,
                        keys=[] if all_results else keys)
    return _render_settings(connection, config, req, criteria)


def _checked(req: ImportRequest):
    try:
        return _connection_and_type(req.connection_id, req.actor_type)
    except ImportProblem as exc:
        abort(422, exc.message)


# ---------------------------------------------------------------------------------------- step 4: preview


def _excluded_from_form(req: ImportRequest) -> list[str]:
    """Unticked rows: those unticked before (other pages) plus the rows shown now and not ticked."""
    form = request.form
    excluded = set(form.getlist("excluded")) if "shown" in form or "excluded" in form else set(req.excluded)
    shown = set(form.getlist("shown"))
    included = set(form.getlist("include"))
    excluded -= shown
    excluded |= shown - included
    return sorted(excluded)


def _render_preview(connection, config, req: ImportRequest, criteria, page: int, *, status: int = 200,
                    message: str | None = None):
    error = None
    result = None
    try:
        result = preview(connection, req, page=page, per_page=PREVIEW_PER_PAGE)
    except ConnectorError as exc:
        error = f"The preview could not read the ERP: {exc.user_message}"
        status = 502
    except ImportProblem as exc:
        error = exc.message
        status = 422
    context = dict(connection=connection, config=config, req=req, state=_dump_state(req, criteria), result=result,
                   error=error, message=message, steps=_steps("preview"), excluded=set(req.excluded),
                   summary=settings_summary(connection, req),
                   other_excluded=_other_excluded(req, result))
    template = "admin/import/_preview.html" if wants_partial() else "admin/import/preview.html"
    return render_template(template, **context), status


def _other_excluded(req: ImportRequest, result) -> list[str]:
    if result is None:
        return list(req.excluded)
    shown = {f"{row.planned.actor_type}:{row.planned.key}" for top in result.rows for row in [top, *top.children]}
    return [key for key in req.excluded if key not in shown]


@bp.route("/import/erp/preview", methods=["POST"])
def import_preview():
    """Step 4: each selected actor's outcome and the fields that would be written; rows can be unticked."""
    req, criteria = _load_state()
    connection, config = _checked(req)
    if "company_match" in request.form:  # coming from the settings step
        form = SettingsForm()
        form.set_choices(*_field_choices(connection, req))
        valid = form.validate_on_submit()
        settings, problem = None, None
        if valid:
            try:
                settings = form.settings(list_defaults_from_form(request.form))
                settings.validate()
                check_settings(connection, dataclasses.replace(req, settings=settings))
            except ImportProblem as exc:
                if exc.field in form:
                    form[exc.field].errors = [exc.message]
                if exc.field not in form or (exc.field.startswith("company_") and exc.field.endswith("name")
                                             or exc.field == "company_from_name") and req.crm_type != CrmType.CONTACT:
                    problem = exc.message  # a field this step does not show for this actor type
                valid = False
        if not valid:
            return _render_settings(connection, config, req, criteria, form=form, status=422, message=problem)
        req.settings = settings
        req.excluded = []
    else:
        req.excluded = _excluded_from_form(req)
    return _render_preview(connection, config, req, criteria, request.form.get("page", 1, type=int))


@bp.route("/import/erp/run", methods=["POST"])
def import_run():
    """Import: queue the run (taking the connection's run lock) and go to its progress page."""
    req, criteria = _load_state()
    connection, config = _checked(req)
    req.excluded = _excluded_from_form(req)
    ctx = audit_ctx()
    try:
        run = start_import(connection, req, actor=ctx["actor"], request_id=ctx["request_id"], ip=ctx["ip"])
    except RunBusy as exc:
        toast("error", exc.message)
        return _render_preview(connection, config, req, criteria, request.form.get("page", 1, type=int),
                               status=409, message=exc.message)
    except ImportProblem as exc:
        return _render_preview(connection, config, req, criteria, 1, status=422, message=exc.message)
    target = url_for("admin.import_run_detail", run_id=run.id)
    if is_htmx():
        return redirect_for(target)
    return redirect(target, code=303)


# --------------------------------------------------------------------------------- progress and done


def _import_run_or_404(run_id: int) -> SyncRun:
    run = get_or_404(SyncRun, run_id)
    if run.kind != RunKind.IMPORT:
        abort(404)
    return run


def _run_context(run: SyncRun) -> dict:
    context = {"run": run, "steps": _steps("done"),
               "options": run.options or {}, "counts": run.counts or {}, "summary": _run_summary(run)}
    if not run.is_active:
        context["undo"], context["undo_refusal"] = import_undo.undo_info(run), import_undo.refusal(run)
        context["new_records"], context["new_total"] = run_records(run, "new", 1)
        context["updated_records"], context["updated_total"] = run_records(run, "updated", 1)
    return context


def _run_summary(run: SyncRun) -> list[tuple[str, str]]:
    """The options the run was started with (what "Run this import again" repeats)."""
    connection = run.connection if run.connection_id else None
    if connection is None or not run.options:
        return []
    try:
        return settings_summary(connection, ImportRequest.from_options(run.options))
    except (ImportProblem, KeyError, TypeError, ValueError):
        return []


@bp.route("/import/runs/<int:run_id>")
def import_run_detail(run_id: int):
    """Progress while the import runs; Done (counts, new and updated records) when it has finished."""
    run = _import_run_or_404(run_id)
    return render_template("admin/import/run.html", **_run_context(run))


@bp.route("/import/runs/<int:run_id>/progress")
def import_run_progress(run_id: int):
    """The polled partial; a terminal run answers 286 (htmx stops polling) with the Done view."""
    run = _import_run_or_404(run_id)
    html = render_template("admin/import/_run.html", **_run_context(run))
    if run.is_active:
        return html
    hx_trigger("import-finished", {"run_id": run.id})
    level = {"succeeded": "success", "partial": "warning"}.get(run.status, "error")
    toast(level, run.message or f"Import {run.status}.")
    return stop_polling(html)


@bp.route("/import/runs/<int:run_id>/records")
def import_run_records(run_id: int):
    """One page of the new or the updated records of an import."""
    run = _import_run_or_404(run_id)
    which = "updated" if request.args.get("which") == "updated" else "new"
    page = max(1, request.args.get("page", 1, type=int))
    records, total = run_records(run, which, page)
    context = dict(run=run, which=which, records=records, total=total, page=page, per_page=50)
    if wants_partial():
        return render_template("admin/import/_records.html", **context)
    return render_template("admin/import/records.html", **context)


@bp.route("/import/runs/<int:run_id>/rerun", methods=["POST"])
def import_rerun(run_id: int):
    """Run the same import again: what is linked is updated, the rest is imported; nothing is duplicated."""
    run = _import_run_or_404(run_id)
    if run.is_active:
        return redirect_for(url_for("admin.import_run_detail", run_id=run.id))
    ctx = audit_ctx()
    try:
        new_run = rerun(run, actor=ctx["actor"], request_id=ctx["request_id"], ip=ctx["ip"])
    except ImportProblem as exc:
        toast("error", exc.message)
        return render_template("admin/import/run.html", **_run_context(run), message=exc.message), 409
    target = url_for("admin.import_run_detail", run_id=new_run.id)
    return redirect_for(target) if is_htmx() else redirect(target, code=303)


@bp.context_processor
def _import_helpers():
    def record_url(crm_type: str, record_id: int) -> str | None:
        endpoint = {CrmType.COMPANY: "crm.company_detail", CrmType.CONTACT: "crm.contact_detail",
                    CrmType.PROJECT: "crm.project_detail"}.get(crm_type)
        try:
            return url_for(endpoint, record_id=record_id) if endpoint else None
        except BuildError:  # a CRM screen that is not registered
            return None

    return {"import_record_url": record_url}

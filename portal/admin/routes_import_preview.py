"""Settings → Import → ERP Sync, steps 3 and 4 of the wizard (spec §5, issue #6): the settings (ID fields,
matching, list defaults), the preview (each actor's outcome, rows can be unticked, paged) and Import, which
queues the run and goes to its progress page.

Split from routes_import, which keeps steps 1–2 and the wizard state helpers these steps use, so that each
module stays small enough to read. Endpoints: ``admin.import_settings``, ``admin.import_preview``,
``admin.import_run``.
"""

from __future__ import annotations

import dataclasses

from flask import abort, redirect, render_template, request, url_for
from sqlalchemy import select

from portal.admin import bp
from portal.admin.forms_import import SettingsForm, criteria_from_form, list_defaults_from_form
from portal.admin.routes_import import (
    _connection_and_type,
    _dump_state,
    _load_state,
    _normalize_rows,
    _search_context,
    _steps,
)
from portal.connectors.client import ConnectorError
from portal.extensions import db
from portal.htmx import is_htmx, redirect_for, toast, wants_partial
from portal.models import ActorType, CrmFieldType, CrmType, ListItem, crm_field
from portal.services import import_rules
from portal.services.actor_labels import actor_label
from portal.services.import_plan import type_spec
from portal.services.import_preview import preview
from portal.services.import_run import MAX_EXPLICIT_KEYS, RunBusy, start_import
from portal.services.import_search import build_restrictions, search_fields
from portal.services.import_settings import (
    COMPANY_TYPES,
    ImportProblem,
    ImportRequest,
    check_settings,
    company_name_choices,
    id_field_choices,
    persons_config,
    settings_summary,
)
from portal.web import audit_ctx

PREVIEW_PER_PAGE = 20


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

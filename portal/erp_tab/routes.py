"""The ERP tab (issue #5): HTTP glue around the portal/services/erp_tab package.

URLs (``<crm_type>`` is company | contact | project; ``<cid>`` a connection id):

* ``GET  /erp/<crm_type>/<id>`` — the panel (one ``<section>`` per connection, sync-priority order); loaded lazily
  by the CRM page. A plain (non-htmx) request is redirected to the record's page with ``?tab=erp``.
* ``GET  /erp/<crm_type>/<id>/connections/<cid>`` — one section (Retry / refresh).
* ``GET  …/<cid>/values`` — the linked actor's Show in ERP tab values, read live (spinner until then).
* ``GET  …/<cid>/connect/<actor_type>`` — the Connect dialog; ``…/search`` (simple search, runs on open),
  ``…/advanced`` (criteria form), ``…/advanced/search``, ``…/compare?erp_key=`` (the value choice);
  ``POST …/connect/<actor_type>`` links.
* ``GET  …/<cid>/create/<actor_type>`` — the Create in ERP form; ``POST`` creates and links. Both need the proof of
  a recent search in the same dialog (``proof``, handed out with the search results: portal/erp_tab/search_proof.py).
* ``POST …/<cid>/disconnect`` and ``POST …/<cid>/sync`` (Sync now).

Every view re-checks licence, scope and can connect / can create through the service, whatever buttons the page
showed. Dialog steps answer inside the dialog (connector failures included, with status 200 so htmx swaps
them); refusals answer with an error partial and a toast (403/404/409).
"""

from __future__ import annotations

import secrets

from flask import g, redirect, render_template, request, url_for

from portal.erp_tab import bp, search_proof
from portal.erp_tab.forms import (
    ActionForm,
    CreateForm,
    LinkForm,
    answers_form,
    answers_of,
    apply_errors,
)
from portal.errors import render_error
from portal.htmx import hx_trigger, toast, vary_on_htmx, wants_partial
from portal.models import CRM_TYPE_LABELS
from portal.security import limits
from portal.services import erp_tab as svc
from portal.services.actor_labels import actor_label

CRM_TYPE = "<any(company, contact, project):crm_type>"
BASE = f"/erp/{CRM_TYPE}/<int:record_id>"
CONN = f"{BASE}/connections/<int:connection_id>"


@bp.errorhandler(svc.ErpTabError)
def _refused(error: svc.ErpTabError):
    return render_error(error.status, error.message)


bp.after_request(vary_on_htmx)


@bp.context_processor
def _tab_globals():
    return {"crm_type_labels": CRM_TYPE_LABELS, "fields_by_key": svc.fields_by_key,
            "display_value": svc.display_value, "sync_status": svc.sync_status}


def _ctx() -> dict:
    return {"request_id": g.get("request_id", ""), "ip": request.remote_addr or ""}


def _section(crm_type: str, record_id: int, connection_id: int) -> svc.Section:
    record = svc.load_record(crm_type, record_id)
    return svc.section_for(g.get("user"), crm_type, record, connection_id)


def _dialog(template: str, status: int = 200, **context):
    return render_template(template, **context), status


def _dialog_error(section: svc.Section, message: str, *, retry_url: str | None = None, title: str | None = None,
                  actor_type: str | None = None):
    """A readable failure inside the dialog (connector down, rule broken) with an optional Retry, and Back to
    search when the failure happened after a search."""
    back_url = None
    if actor_type is not None:
        back_url = url_for("erp_tab.connect_dialog", crm_type=section.crm_type, record_id=section.record.id,
                           connection_id=section.connection.id, actor_type=actor_type)
    return _dialog("erp_tab/_dialog_error.html", section=section, message=message, retry_url=retry_url,
                   back_url=back_url,
                   title=title or f"Connect “{section.record.display_name}” to {section.connection.name}")


def _render_section(section: svc.Section, *, record_changed: bool = False, **extra):
    """The section; after an action that may have written the CRM record (Connect, Create, Sync now), also the
    record's header line out-of-band, so its "updated" time is not stale."""
    html = render_template("erp_tab/_section.html", section=section, **extra)
    if record_changed:
        html += render_template("crm/_record_meta.html", record=section.record,
                                record_label=section.crm_type.title(), oob=True)
    return html


# ------------------------------------------------------------------------------------------------ panel


@bp.get(BASE)
def panel(crm_type: str, record_id: int):
    record = svc.load_record(crm_type, record_id)
    if not wants_partial():
        return redirect(url_for(f"crm.{crm_type}_detail", record_id=record_id, tab="erp"))
    user = g.get("user")
    if not user.erp_licence:
        raise svc.Refused("You need an ERP Sync licence to use the ERP tab.")
    sections = svc.sections_for(user, crm_type, record)
    return render_template("erp_tab/_panel.html", sections=sections, record=record, crm_type=crm_type)


@bp.get(CONN)
def section(crm_type: str, record_id: int, connection_id: int):
    return _render_section(_section(crm_type, record_id, connection_id))


@bp.get(f"{CONN}/values")
def values(crm_type: str, record_id: int, connection_id: int):
    current = _section(crm_type, record_id, connection_id)
    live = svc.live_values(current)
    return render_template("erp_tab/_values.html", section=current, live=live, form=ActionForm())


# ---------------------------------------------------------------------------------------------- connect


def _config(section: svc.Section, actor_type: str):
    return section.actor_type(actor_type)


@bp.get(f"{CONN}/connect/<actor_type>")
def connect_dialog(crm_type: str, record_id: int, connection_id: int, actor_type: str):
    current = _section(crm_type, record_id, connection_id)
    config = _config(current, actor_type)
    svc.require_connect(current)
    record = current.record
    return _dialog("erp_tab/_connect.html", section=current, config=config, nonce=secrets.token_urlsafe(18),
                   q=record.name, advanced=bool(config.searchable_fields))


def _nonce() -> str:
    nonce = request.values.get("nonce", "")
    return nonce if svc.NONCE_RE.match(nonce) else secrets.token_urlsafe(18)


def _proof(section: svc.Section, config, nonce: str) -> str:
    """What the results' Create button carries: proof that this search ran (only for users who may create)."""
    if not section.can_create:
        return ""
    return search_proof.issue(g.user.id, section.connection.id, section.crm_type, section.record.id,
                              config.erp_actor_type, nonce)


def _check_proof(section: svc.Section, config, token: str | None, nonce: str) -> None:
    search_proof.check(token, g.user.id, section.connection.id, section.crm_type, section.record.id,
                       config.erp_actor_type, nonce, shown_as=actor_label(config))


@bp.get(f"{CONN}/connect/<actor_type>/search")
@limits.erp_search
def search(crm_type: str, record_id: int, connection_id: int, actor_type: str):
    current = _section(crm_type, record_id, connection_id)
    config = _config(current, actor_type)
    try:
        result = svc.search(current, config, request.args.get("q", ""))
    except (svc.ConnectorFailed, svc.RuleBroken) as exc:
        return render_template("erp_tab/_results_error.html", message=exc.message,
                               retry_url=request.full_path)
    nonce = _nonce()
    return render_template("erp_tab/_results.html", section=current, config=config, result=result,
                           nonce=nonce, proof=_proof(current, config, nonce))


@bp.get(f"{CONN}/connect/<actor_type>/advanced")
def advanced(crm_type: str, record_id: int, connection_id: int, actor_type: str):
    current = _section(crm_type, record_id, connection_id)
    config = _config(current, actor_type)
    try:
        rows = svc.criteria(current, config)
    except svc.ConnectorFailed as exc:
        return render_template("erp_tab/_results_error.html", message=exc.message, retry_url=request.full_path)
    return render_template("erp_tab/_advanced.html", section=current, config=config, rows=rows, nonce=_nonce())


@bp.get(f"{CONN}/connect/<actor_type>/advanced/search")
@limits.erp_search
def advanced_search(crm_type: str, record_id: int, connection_id: int, actor_type: str):
    current = _section(crm_type, record_id, connection_id)
    config = _config(current, actor_type)
    svc.require_connect(current)
    form = request.args.to_dict(flat=False)
    try:
        restrictions = svc.parse_restrictions(config, form)
        result = svc.advanced_search(current, config, restrictions)
    except svc.InvalidInput as exc:
        return render_template("erp_tab/_results_error.html", message=exc.message,
                               details=list(exc.errors.values())), 422
    except (svc.ConnectorFailed, svc.RuleBroken) as exc:
        return render_template("erp_tab/_results_error.html", message=exc.message, retry_url=request.full_path)
    nonce = _nonce()
    return render_template("erp_tab/_results.html", section=current, config=config, result=result,
                           nonce=nonce, proof=_proof(current, config, nonce))


def _compare_view(current: svc.Section, config, erp_key: str, *, form=None, notice: str = "", status: int = 200,
                  loose: list[str] | None = None, picks: dict | None = None, pick_errors: dict | None = None):
    try:
        comparison = svc.compare(current, config, erp_key)
    except (svc.ConnectorFailed, svc.RuleBroken, svc.InvalidInput) as exc:
        retry = url_for("erp_tab.compare", crm_type=current.crm_type, record_id=current.record.id,
                        connection_id=current.connection.id, actor_type=config.erp_actor_type, erp_key=erp_key)
        return _dialog_error(current, exc.message, actor_type=config.erp_actor_type,
                             retry_url=retry if isinstance(exc, svc.ConnectorFailed) else None)
    if form is None:
        form = answers_form(LinkForm, comparison.ask, comparison.lists, comparison.prefill, submitted=False,
                            erp_key=erp_key, erp_stamp=comparison.erp_stamp, crm_stamp=comparison.crm_stamp)
    else:  # a re-rendered submit keeps the answers but must carry the stamps of what is shown now
        form.erp_stamp.data, form.crm_stamp.data = comparison.erp_stamp, comparison.crm_stamp
    return _dialog("erp_tab/_compare.html", status, section=current, config=config, comparison=comparison,
                   form=form, notice=notice, loose=loose or [], picks=picks or {}, pick_errors=pick_errors or {})


@bp.get(f"{CONN}/connect/<actor_type>/compare")
def compare(crm_type: str, record_id: int, connection_id: int, actor_type: str):
    current = _section(crm_type, record_id, connection_id)
    config = _config(current, actor_type)
    svc.require_connect(current)
    return _compare_view(current, config, request.args.get("erp_key", ""))


def _done(current: svc.Section, outcome: svc.LinkOutcome, verb: str):
    """Success: close the dialog and answer the fresh section in place of the old one (the response is retargeted
    away from the dialog, so the dialog does not reopen itself after the swap)."""
    link = outcome.link
    if outcome.already:
        message = f"Already connected to {actor_label(current.connection, link.erp_actor_type)} {link.erp_key}."
    else:
        message = (f"{verb} {actor_label(current.connection, link.erp_actor_type)} {link.erp_key} "
                   f"on {current.connection.name}.")
    toast("success", message)
    for warning in outcome.warnings:
        toast("warning", warning)
    hx_trigger("close-dialog")
    fresh = svc.section_for(g.user, current.crm_type, current.record, current.connection.id)
    response = _render_section(fresh, message=message, record_changed=True)
    headers = {"HX-Retarget": f"#erp-conn-{current.connection.id}", "HX-Reswap": "outerHTML"}
    return response, 200, headers


@bp.post(f"{CONN}/connect/<actor_type>")
def connect(crm_type: str, record_id: int, connection_id: int, actor_type: str):
    current = _section(crm_type, record_id, connection_id)
    config = _config(current, actor_type)
    svc.require_connect(current)
    erp_key = request.form.get("erp_key", "")
    picks = {}
    by_id = {str(f.id): f.field_key for f in config.fields}
    for name, value in request.form.items():
        if name.startswith("pick_") and name[5:] in by_id:
            picks[by_id[name[5:]]] = value
    ask = svc.ask_fields(config)
    try:
        lists = svc.get_lists(current.connection, ask)
    except svc.ConnectorFailed as exc:
        return _dialog_error(current, exc.message)
    form = answers_form(LinkForm, ask, lists, submitted=True)
    if not form.validate():
        return _compare_view(current, config, erp_key, form=form, status=422, picks=picks)
    try:
        outcome = svc.connect(current, config, erp_key, picks, answers_of(form, ask),
                              erp_stamp=form.erp_stamp.data or "", crm_stamp=form.crm_stamp.data or "",
                              user=g.user, **_ctx())
    except svc.InvalidInput as exc:
        pick_errors = {name: text for name, text in exc.errors.items() if name.startswith("pick_")}
        loose = apply_errors(form, {k: v for k, v in exc.errors.items() if k not in pick_errors})
        return _compare_view(current, config, erp_key, form=form, status=422, picks=picks,
                             loose=[exc.message, *loose], pick_errors=pick_errors)
    except svc.StaleComparison as exc:
        current = _section(crm_type, record_id, connection_id)
        return _compare_view(current, config, erp_key, notice=exc.message, status=409)
    except (svc.ConnectorFailed, svc.RuleBroken) as exc:
        return _dialog_error(current, exc.message, actor_type=config.erp_actor_type)
    return _done(current, outcome, "Connected to")


# ----------------------------------------------------------------------------------------------- create


def _create_view(current: svc.Section, config, *, form=None, status: int = 200, loose: list[str] | None = None,
                 lists: dict | None = None, nonce: str = "", proof: str = ""):
    try:
        new = svc.new_actor(current, config, lists)
    except (svc.ConnectorFailed, svc.RuleBroken) as exc:
        return _dialog_error(current, exc.message, title=f"Create in ERP “{current.connection.name}”")
    if form is None:
        form = answers_form(CreateForm, new.ask, new.lists, new.prefill, submitted=False, nonce=nonce, proof=proof)
    return _dialog("erp_tab/_create.html", status, section=current, config=config, new=new, form=form,
                   loose=loose or [])


def _search_first(current: svc.Section, config, refused: search_proof.ProofRefused):
    """No valid proof of a search: say so in the dialog (422, swapped by htmx) with Back to search."""
    body, _status = _dialog_error(current, refused.message, actor_type=config.erp_actor_type,
                                  title=f"Create in ERP “{current.connection.name}”")
    return body, 422


@bp.get(f"{CONN}/create/<actor_type>")
def create_form(crm_type: str, record_id: int, connection_id: int, actor_type: str):
    current = _section(crm_type, record_id, connection_id)
    config = _config(current, actor_type)
    svc.require_create(current)
    nonce, proof = _nonce(), request.args.get("proof", "")
    try:
        _check_proof(current, config, proof, nonce)
    except search_proof.ProofRefused as refused:
        return _search_first(current, config, refused)
    return _create_view(current, config, nonce=nonce, proof=proof)


@bp.post(f"{CONN}/create/<actor_type>")
def create(crm_type: str, record_id: int, connection_id: int, actor_type: str):
    current = _section(crm_type, record_id, connection_id)
    config = _config(current, actor_type)
    svc.require_create(current)
    try:
        _check_proof(current, config, request.form.get("proof", ""), request.form.get("nonce", ""))
    except search_proof.ProofRefused as refused:
        return _search_first(current, config, refused)
    if current.link is not None:  # a repeated submit: answer the link that is there
        return _done(current, svc.LinkOutcome(current.link, already=True), "Created")
    ask = svc.ask_fields(config)
    try:
        lists = svc.get_lists(current.connection, ask)
    except svc.ConnectorFailed as exc:
        return _dialog_error(current, exc.message, title=f"Create in ERP “{current.connection.name}”")
    form = answers_form(CreateForm, ask, lists, submitted=True)
    if not form.validate():
        return _create_view(current, config, form=form, status=422, lists=lists)
    try:
        outcome = svc.create(current, config, form.nonce.data or "", answers_of(form, ask), user=g.user, **_ctx())
    except svc.InvalidInput as exc:
        return _create_view(current, config, form=form, status=422, lists=lists,
                            loose=[exc.message, *apply_errors(form, exc.errors)])
    except (svc.ConnectorFailed, svc.RuleBroken) as exc:
        # The form stays (same nonce): clicking Create again is safe, the ERP returns the same actor if the first
        # attempt did create one.
        return _create_view(current, config, form=form, status=200, lists=lists, loose=[exc.message])
    return _done(current, outcome, "Created")


# ---------------------------------------------------------------------------------- disconnect, sync now


@bp.post(f"{CONN}/disconnect")
def disconnect(crm_type: str, record_id: int, connection_id: int):
    current = _section(crm_type, record_id, connection_id)
    removed = svc.disconnect(current, user=g.user, **_ctx())
    if removed is None:
        toast("info", f"This record is not connected to {current.connection.name}.")
    else:
        toast("success", f"Disconnected {actor_label(current.connection, removed[0])} {removed[1]}. "
                         "Nothing was changed in the ERP.")
    fresh = svc.section_for(g.user, crm_type, current.record, connection_id)
    return _render_section(fresh)


@bp.post(f"{CONN}/sync")
def sync_now(crm_type: str, record_id: int, connection_id: int):
    current = _section(crm_type, record_id, connection_id)
    try:
        outcome = svc.sync_now(current, user=g.user, **_ctx())
    except svc.ConnectorFailed as exc:
        outcome = svc.SyncOutcome(ok=False, message=exc.message)
    except svc.RuleBroken as exc:
        return render_error(exc.status, exc.message)
    if not outcome.ok:
        toast("error", outcome.message or "The sync failed.")
    elif outcome.warning:
        toast("warning", outcome.warning)
    else:
        toast("success", outcome.message or ("Nothing to sync: both sides already agree." if outcome.nothing
                                             else "Synced."))
    fresh = svc.section_for(g.user, crm_type, current.record, connection_id)
    return _render_section(fresh, sync=outcome, record_changed=True)

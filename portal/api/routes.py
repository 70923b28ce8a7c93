"""The endpoints of /api/v1/ (docs/api.md). Each one calls the same service as its screen:

* connections — ``erp_tab.user_access`` (scope) and ``sync_health.overview`` (Settings → Sync's health block);
* sync / resync — ``runs.request_run`` with the options of Settings → Sync now / Resync (``admin.resync``);
* link / unlink — ``erp_tab.section_for`` + ``compare`` + ``connect`` / ``disconnect``, the ERP tab's rules;
* runs / changes — the sync log's rows.
"""

from __future__ import annotations

from datetime import datetime

from flask import g, jsonify, request, url_for
from marshmallow import Schema, ValidationError
from sqlalchemy import select

from portal.api import bp
from portal.api import openapi as spec
from portal.api import schemas as s
from portal.api.auth import ApiError, audit_ctx, requires
from portal.extensions import db
from portal.models import CRM_PRIORITY_ID, Connection, Link, RunKind, SyncChange, SyncRun
from portal.services import audit, erp_tab, sync_health
from portal.services.sync import runs

TRIGGER = "api"


# ------------------------------------------------------------------------------------------------ helpers


def _body(schema: Schema, *, optional: bool = False) -> dict:
    """The request's JSON object validated by ``schema``: 400 when it is not JSON (or not an object), 422 with the
    field errors when a value is wrong."""
    raw = request.get_data(cache=True)
    if not raw.strip():
        if optional:
            data = {}
        else:
            raise ApiError(400, "Send a JSON object as the request body.")
    else:
        data = request.get_json(force=True, silent=True)
        if not isinstance(data, dict):
            raise ApiError(400, "The request body is not a JSON object.")
    return _load(schema, data)


def _load(schema: Schema, data) -> dict:
    try:
        return schema.load(data)
    except ValidationError as exc:
        raise ApiError(422, "Some values are not valid.", _flat(exc.messages)) from None


def _flat(messages, prefix: str = "") -> dict:
    out = {}
    if isinstance(messages, dict):
        for key, value in messages.items():
            out.update(_flat(value, f"{prefix}.{key}" if prefix else str(key)))
    elif isinstance(messages, list) and all(isinstance(m, str) for m in messages):
        out[prefix or "_schema"] = " ".join(messages)
    elif isinstance(messages, list):
        for index, value in enumerate(messages):
            out.update(_flat(value, f"{prefix}.{index}"))
    else:
        out[prefix or "_schema"] = str(messages)
    return out


def _query(schema: Schema) -> dict:
    return _load(schema, request.args.to_dict())


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat(timespec="seconds") + "Z" if moment is not None else None


def _connection_or_404(connection_id: int) -> Connection:
    connection = db.session.get(Connection, connection_id)
    if connection is None or connection.deleted:
        raise ApiError(404, "There is no such ERP connection.")
    return connection


def _run_json(run: SyncRun) -> dict:
    return {"id": run.id, "connection_id": run.connection_id, "kind": run.kind, "trigger": run.trigger,
            "status": run.status, "message": run.message or "", "error": run.error or "", "counts": run.counts or {},
            "options": run.options or {}, "progress_done": run.progress_done or 0,
            "progress_total": run.progress_total or 0, "requested_by": run.requested_by_label or "",
            "created_at": _iso(run.created_at), "started_at": _iso(run.started_at),
            "finished_at": _iso(run.finished_at)}


def _queued(connection: Connection, kind: str, options: dict, action: str, *, extra: dict | None = None):
    """Queue the run as the admin screens do; 202 with its URL, 409 when another run holds the connection."""
    try:
        run, created = runs.request_run(connection.id, kind=kind, trigger=TRIGGER, requested_by=g.user,
                                        options=options)
    except runs.RunError as exc:
        raise ApiError(409, str(exc)) from None
    if not created:
        raise ApiError(409, runs.describe_busy(run), {"run_id": str(run.id)})
    shown = {k: v for k, v in options.items() if k != "link_ids"}
    audit.record(action, connection, after={"run": run.id, "via": f"api token {g.api_token.prefix}…", **shown,
                                            **(extra or {})}, **audit_ctx())
    db.session.commit()
    runs.submit([run.id])
    url = url_for("api.run", run_id=run.id, _external=True)
    body = {"run_id": run.id, "url": url, **({"records": len(options["link_ids"])} if "link_ids" in options else {})}
    response = jsonify(body)
    response.status_code = 202
    response.headers["Location"] = url
    return response


# ------------------------------------------------------------------------------------------------ OpenAPI


@bp.get("/openapi.json")
@spec.doc("The OpenAPI document of this API (no token needed)", tag="meta", public=True, responses={200: None})
def openapi():
    return jsonify(spec.document())


# ------------------------------------------------------------------------------------------------ connections


@bp.get("/connections")
@requires("read")
@spec.doc("Connections you may see, with their sync health", tag="connections", scope="read",
             responses={200: s.ConnectionList})
def connections():
    user = g.user
    candidates = list(db.session.scalars(select(Connection).where(Connection.deleted.is_(False))
                                         .order_by(Connection.name, Connection.id)))
    shown = []
    for connection in candidates:
        access = erp_tab.user_access(user, connection)
        if user.is_admin or access is not None:
            shown.append((connection, access))
    health = {h.connection.id: h for h in sync_health.overview([c for c, _a in shown], with_charts=False)}
    out = []
    for connection, access in shown:
        h = health.get(connection.id)
        out.append({
            "id": connection.id, "name": connection.name, "active": bool(connection.active),
            "can_connect": bool(access and access.can_connect), "can_create": bool(access and access.can_create),
            "health": {
                "state": str(h.verdict.state) if h else "", "reason": h.verdict.reason if h else "",
                "running": bool(h and h.running), "open_issues": int(h.issues.open) if h else 0,
                "unsynced": int(h.unsynced) if h else 0,
                "last_run_id": h.last_run.id if h and h.last_run else None,
                "last_run_status": h.last_run.status if h and h.last_run else None,
                "last_success_at": _iso((h.last_success.finished_at or h.last_success.started_at)
                                        if h and h.last_success else None)}})
    return jsonify({"connections": out})


@bp.post("/connections/<int:connection_id>/sync")
@requires("sync", admin=True)
@spec.doc("Queue a sync run of the connection (Settings → Sync now)", tag="runs", scope="sync", admin=True,
             body=s.SyncRequest, body_optional=True, responses={202: s.RunQueued, 404: s.Error, 409: s.Error})
def connection_sync(connection_id: int):
    connection = _connection_or_404(connection_id)
    data = _body(s.SyncRequest(), optional=True)
    return _queued(connection, RunKind.SYNC, {"no_blank": data["no_blank"]}, "sync.connection_sync")


@bp.post("/connections/<int:connection_id>/resync")
@requires("sync", admin=True)
@spec.doc("Queue a resync: of given CRM records (ForceResync), of given ERP actors (ForceResyncExternal), or "
             "of the whole connection", tag="runs", scope="sync", admin=True, body=s.ResyncRequest,
             body_optional=True, responses={202: s.RunQueued, 404: s.Error, 409: s.Error, 422: s.Error})
def connection_resync(connection_id: int):
    connection = _connection_or_404(connection_id)
    data = _body(s.ResyncRequest(), optional=True)
    default = "from_erp" if "erp_keys" in data else "from_crm"
    direction = data.get("direction") or default
    kind = RunKind.RESYNC_FROM_ERP if direction == "from_erp" else RunKind.RESYNC_FROM_CRM
    options: dict = {"no_blank": data["no_blank"]}
    extra: dict = {}
    if "crm_ids" in data or "erp_keys" in data:
        if "crm_ids" in data:
            wanted = sorted(set(data["crm_ids"]))
            links = list(db.session.scalars(select(Link).where(
                Link.connection_id == connection.id, Link.crm_type == data["crm_type"], Link.crm_id.in_(wanted))))
            missing = sorted(set(wanted) - {link.crm_id for link in links})
            extra = {"crm_type": data["crm_type"], "crm_ids": wanted}
        else:
            wanted = sorted(set(data["erp_keys"]))
            links = list(db.session.scalars(select(Link).where(
                Link.connection_id == connection.id, Link.erp_actor_type == data["erp_actor_type"],
                Link.erp_key.in_(wanted))))
            missing = sorted(set(wanted) - {link.erp_key for link in links})
            extra = {"erp_actor_type": data["erp_actor_type"], "erp_keys": wanted}
        if missing:
            shown = ", ".join(str(m) for m in missing[:20]) + (" …" if len(missing) > 20 else "")
            raise ApiError(422, f"Not linked on {connection.name}: {shown}.", {"missing": shown})
        options["link_ids"] = sorted(link.id for link in links)
    return _queued(connection, kind, options, f"sync.{kind}", extra=extra)


# ------------------------------------------------------------------------------------------------ link / unlink


CRM_TYPE = "<any(company, contact, project):crm_type>"


def _decide(section: erp_tab.Section, comparison, picks: dict) -> dict:
    """Picks for the differing fields the caller left out: the side the connection's conflict rule would let win
    (portal/services/sync/merge.py), when that side's value can be used."""
    from portal.services.sync.merge import winning_side
    from portal.services.sync_settings import priority_entries

    ranks = {entry_id: rank for rank, (entry_id, _label) in enumerate(priority_entries())}
    connection = section.connection
    erp_at = comparison.actor.get("LastModified")
    try:
        erp_at = datetime.fromisoformat(str(erp_at)) if erp_at else None
    except ValueError:
        erp_at = None
    side, _why = winning_side(str(connection.conflict_policy or "priority"), crm_rank=ranks.get(CRM_PRIORITY_ID, 0),
                              erp_rank=ranks.get(connection.id, len(ranks)),
                              crm_changed_at=getattr(section.record, "updated_at", None), erp_changed_at=erp_at,
                              erp_name=connection.name)
    chosen = dict(picks)
    for row in comparison.choices:
        if row.key not in chosen and not row.only:
            chosen[row.key] = side  # one rule for the whole record, as a sync of it would settle it
    return chosen


@bp.post(f"/records/{CRM_TYPE}/<int:record_id>/link")
@requires("link")
@spec.doc("Connect a CRM record to an existing ERP actor (the ERP tab's Connect)", tag="records", scope="link",
             body=s.LinkRequest, responses={200: s.LinkOut, 201: s.LinkOut, 403: s.Error, 404: s.Error,
                                            409: s.Error, 422: s.Error, 502: s.Error})
def record_link(crm_type: str, record_id: int):
    data = _body(s.LinkRequest())
    record = erp_tab.load_record(crm_type, record_id)
    section = erp_tab.section_for(g.user, crm_type, record, data["connection_id"])
    config = section.actor_type(data["actor_type"])
    erp_tab.require_connect(section)
    link = section.link
    if link is not None and link.erp_actor_type == config.erp_actor_type and link.erp_key == data["erp_key"].strip():
        outcome = erp_tab.LinkOutcome(link, already=True)  # a repeated request: answer the link that is there
        return _link_json(outcome, 200)
    comparison = erp_tab.compare(section, config, data["erp_key"])
    picks = _decide(section, comparison, data.get("picks") or {})
    answers = {**comparison.prefill, **(data.get("answers") or {})}
    ctx = {k: v for k, v in audit_ctx().items() if k != "actor"}
    outcome = erp_tab.connect(section, config, data["erp_key"], picks, answers, erp_stamp=comparison.erp_stamp,
                              crm_stamp=comparison.crm_stamp, user=g.user, **ctx)
    return _link_json(outcome, 200 if outcome.already else 201)


def _link_json(outcome, status: int):
    link = outcome.link
    response = jsonify({"connection_id": link.connection_id, "crm_type": link.crm_type, "crm_id": link.crm_id,
                        "actor_type": link.erp_actor_type, "erp_key": link.erp_key, "already": outcome.already,
                        "to_erp": list(outcome.to_erp), "to_crm": list(outcome.to_crm),
                        "warnings": list(outcome.warnings)})
    response.status_code = status
    return response


@bp.delete(f"/records/{CRM_TYPE}/<int:record_id>/link")
@requires("link")
@spec.doc("Disconnect a CRM record on a connection (the ERP is not touched)", tag="records", scope="link",
             query=s.UnlinkQuery, responses={204: None, 403: s.Error, 404: s.Error})
def record_unlink(crm_type: str, record_id: int):
    data = _query(s.UnlinkQuery())
    record = erp_tab.load_record(crm_type, record_id)
    section = erp_tab.section_for(g.user, crm_type, record, data["connection_id"])
    ctx = {k: v for k, v in audit_ctx().items() if k != "actor"}
    removed = erp_tab.disconnect(section, user=g.user, **ctx)
    if removed is None:
        raise ApiError(404, f"This record is not connected to {section.connection.name}.")
    return "", 204


# ------------------------------------------------------------------------------------------------ runs, changes


@bp.get("/runs")
@requires("read", admin=True)
@spec.doc("Sync runs, newest first", tag="runs", scope="read", admin=True, query=s.RunsQuery,
             responses={200: s.RunList})
def run_list():
    data = _query(s.RunsQuery())
    stmt = select(SyncRun).order_by(SyncRun.created_at.desc(), SyncRun.id.desc()).limit(data["limit"])
    if data.get("connection_id"):
        stmt = stmt.where(SyncRun.connection_id == data["connection_id"])
    return jsonify({"runs": [_run_json(run) for run in db.session.scalars(stmt)]})


@bp.get("/runs/<int:run_id>")
@requires("read", admin=True)
@spec.doc("One sync run: status, counts, timestamps", tag="runs", scope="read", admin=True,
             responses={200: s.RunOut, 404: s.Error})
def run(run_id: int):
    found = db.session.get(SyncRun, run_id)
    if found is None:
        raise ApiError(404, "There is no such sync run.")
    return jsonify(_run_json(found))


@bp.get("/changes")
@requires("read", admin=True)
@spec.doc("The field-level change log, newest first", tag="runs", scope="read", admin=True,
             query=s.ChangesQuery, responses={200: s.ChangeList})
def changes():
    data = _query(s.ChangesQuery())
    stmt = runs.change_query(runs.ChangeFilter(run_id=data.get("run_id"), crm_type=data.get("crm_type")))
    if data.get("crm_id"):
        stmt = stmt.where(SyncChange.crm_id == data["crm_id"])
    rows = db.session.scalars(stmt.limit(data["limit"]))
    return jsonify({"changes": [{
        "id": c.id, "run_id": c.run_id, "connection_id": c.connection_id, "crm_type": c.crm_type, "crm_id": c.crm_id,
        "erp_actor_type": c.erp_actor_type or "", "erp_key": c.erp_key or "", "direction": c.direction,
        "erp_field_key": c.erp_field_key or "", "crm_field_key": c.crm_field_key or "", "old_value": c.old_value,
        "new_value": c.new_value, "conflict": bool(c.conflict), "other_value": c.other_value, "rule": c.rule or "",
        "at": _iso(c.at)} for c in rows]})


# ------------------------------------------------------------------------------------------------ anything else


@bp.route("/<path:rest>", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
@spec.doc("", hidden=True)
def not_found(rest: str):
    raise ApiError(404, "There is no such API endpoint (or it does not take this method); see /api/v1/openapi.json.")

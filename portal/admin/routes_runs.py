"""Settings → Sync → Show log: sync runs with live progress, the field-level change log, log retention, and the
manual triggers (Sync all now, Sync now on a connection, Resync from CRM, Resync from ERP connection) with their
**Preview** (a dry run, ``portal.services.sync.preview``) and its **Run it**.

Requests only enqueue runs (``runs.request_run``) and hand them to the scheduler of this process; progress is
read from the database (the polling endpoint never calls a connector). A preview, and the Run it of a preview, are
executed in the request when their connections have at most ``SYNC_PREVIEW_INLINE_LINKS`` links (default 1,000),
else queued like the others while their page follows their progress by htmx polling.
"""

from __future__ import annotations

import secrets
from datetime import date, datetime, time, timedelta

from flask import abort, current_app, g, redirect, render_template, request, url_for
from sqlalchemy import func, select

from portal.admin import bp
from portal.admin.forms_runs import ChangeFilterForm, PreviewForm, RetentionForm, RunRequestForm
from portal.extensions import db
from portal.htmx import hx_trigger, is_htmx, redirect_for, stop_polling, toast, wants_partial
from portal.models import CRM_MODELS, Connection, Link, RunKind, RunStatus, SyncRun
from portal.services import audit, labels
from portal.services.bootstrap import sync_settings
from portal.services.connectors import ServiceError
from portal.services.sync import preview, runs
from portal.web import audit_ctx, get_or_404

RUN_PAGE_SIZE = 20
CHANGE_PAGE_SIZE = 50
PLAN_PAGE_SIZE = 50  # records of a preview's plan a page
GROUP_SPAN = 1000  # the runs of one group are requested together: their ids lie within this of each other
INLINE_LINKS = 1000  # SYNC_PREVIEW_INLINE_LINKS: a preview (or its Run it) of at most this many links runs in the request


@bp.context_processor
def _run_labels():
    return {"kind_labels": runs.KIND_LABELS, "trigger_labels": runs.TRIGGER_LABELS,
            "describe_busy": runs.describe_busy, "is_preview": runs.is_preview}


def _connections() -> list[Connection]:
    return list(db.session.scalars(select(Connection).where(Connection.deleted.is_(False))
                                   .order_by(Connection.name)))


def _filters() -> tuple[ChangeFilterForm, runs.ChangeFilter]:
    form = ChangeFilterForm(request.args)
    form.connection.choices = [(0, "All connections")] + [(c.id, c.name) for c in _connections()]
    form.validate()
    since = form.since.data if not form.since.errors else None
    until = form.until.data if not form.until.errors else None
    if until is not None and until >= date.max:  # "to 9999-12-31" is no limit (the day after overflows)
        until = None
    connection_id = form.connection.data if not form.connection.errors else 0
    filters = runs.ChangeFilter(
        connection_id=connection_id or None,
        crm_type=form.crm_type.data if form.crm_type.data in CRM_MODELS else None,
        record=(form.record.data or "").strip() if not form.record.errors else "",
        since=datetime.combine(since, time.min) if since else None,
        until=datetime.combine(until, time.min) + timedelta(days=1) if until else None,
        run_id=request.args.get("run", type=int),
        only=form.only.data if form.only.data in ("conflicts", "errors") else "",
    )
    return form, filters


def _record_names(changes) -> dict[tuple[str, int], str]:
    wanted: dict[str, set[int]] = {}
    for change in changes:
        wanted.setdefault(change.crm_type, set()).add(change.crm_id)
    names = {}
    for crm_type, ids in wanted.items():
        model = CRM_MODELS.get(crm_type)
        if model is None:
            continue
        for record in db.session.scalars(select(model).where(model.id.in_(ids))):
            names[(crm_type, record.id)] = record.display_name
    return names


def _change_context(filters: runs.ChangeFilter) -> dict:
    page = runs.change_page(filters, request.args.get("page", 1), CHANGE_PAGE_SIZE)
    names = {c.id: c.name for c in _connections()}
    return {"changes": page, "record_names": _record_names(page.items), "connection_names": names,
            "change_texts": labels.change_texts(page.items)}


def _runs_context() -> dict:
    return {"run_list": runs.run_page(request.args.get("runs_page", 1), RUN_PAGE_SIZE),
            "active": runs.active_runs()}


@bp.route("/sync/log")
def sync_log():
    form, filters = _filters()
    section = request.args.get("section")
    if wants_partial() and section == "changes":
        return render_template("admin/runs/_changes.html", filter_form=form, **_change_context(filters))
    if wants_partial() and section == "runs":
        return render_template("admin/runs/_runs.html", **_runs_context())
    if wants_partial() and section == "active":
        return render_template("admin/runs/_active.html", active=runs.active_runs())
    settings = sync_settings()
    db.session.commit()
    return render_template(
        "admin/runs/log.html", filter_form=form, request_form=RunRequestForm(),
        retention_form=RetentionForm(log_retention_days=settings.log_retention_days), settings=settings,
        connections=[c for c in _connections() if c.active], next_due=runs.next_due_text(settings),
        last_runs={c.id: runs.last_runs(c.id, 1) for c in _connections()},
        **_runs_context(), **_change_context(filters))


@bp.route("/sync/runs/<int:run_id>")
def run_detail(run_id: int):
    run = get_or_404(SyncRun, run_id)
    filters = runs.ChangeFilter(run_id=run_id)
    form = ChangeFilterForm(formdata=None)
    form.connection.choices = [(0, "All connections")]
    if wants_partial() and request.args.get("section") == "changes":
        return render_template("admin/runs/_changes.html", filter_form=form, run_view=True,
                               **_change_context(filters))
    return render_template("admin/runs/detail.html", run=run, tallies=runs.count_changes(run_id), run_view=True,
                           filter_form=form, **_change_context(filters))


@bp.route("/sync/runs/<int:run_id>/progress")
def run_progress(run_id: int):
    run = get_or_404(SyncRun, run_id)
    html = render_template("admin/runs/_progress.html", run=run)
    if run.is_active:
        return html
    if is_htmx():
        hx_trigger("sync-finished", {"run_id": run.id})
        level = {RunStatus.SUCCEEDED: "success", RunStatus.PARTIAL: "warning"}.get(run.status, "error")
        toast(level, f"{run.connection.name}: {run.error or run.message}"[:300])
    return stop_polling(html)


def _request_form_or_400() -> RunRequestForm:
    form = RunRequestForm()
    if not form.validate_on_submit():
        abort(400)
    return form


@bp.route("/sync/run-all", methods=["POST"])
def run_all():
    """Sync all now: a run for every active connection (even with automatic sync Off), in priority order."""
    form = _request_form_or_400()
    options = {"no_blank": bool(form.no_blank.data)}
    requested = runs.request_all(kind=RunKind.SYNC, trigger="manual", requested_by=g.get("user"),
                                 options=options)
    created = [run.id for run, made in requested if made]
    audit.record("sync.run_all", object_type="sync_settings", object_id=1, object_repr="Sync all now",
                 after={"runs": created, "no_blank": options["no_blank"]}, **audit_ctx())
    db.session.commit()
    runs.submit(created)
    if not requested:
        toast("warning", "No active connection has an active actor type: nothing to sync.")
    elif not created:
        toast("info", "Every connection is already syncing.")
    else:
        busy = len(requested) - len(created)
        toast("success", f"Sync started for {len(created)} connection(s)"
                         + (f"; {busy} already running." if busy else "."))
    if is_htmx():
        return render_template("admin/runs/_active.html", active=runs.active_runs())
    return redirect(url_for("admin.sync_log"))


def _resync(connection_id: int, kind: str):
    connection = get_or_404(Connection, connection_id)
    if connection.deleted:
        abort(404)
    form = RunRequestForm()
    busy = runs.active_run(connection.id)
    status = 200
    if request.method == "POST":
        if not form.validate_on_submit():
            abort(400)
        options = {"no_blank": bool(form.no_blank.data)}
        try:
            run, created = runs.request_run(connection.id, kind=kind, trigger="manual", requested_by=g.get("user"),
                                            options=options)
        except runs.RunError as exc:
            toast("error", str(exc))
            status = 409
        else:
            if created:
                audit.record(f"sync.{kind}", connection, after={"run": run.id, **options}, **audit_ctx())
                db.session.commit()
                runs.submit([run.id])
                toast("success", f"{runs.KIND_LABELS[kind]} of {connection.name} started.")
                target = url_for("admin.run_detail", run_id=run.id)
                return redirect_for(target)
            toast("error", runs.describe_busy(run))
            busy, status = run, 409
    db.session.commit()
    return render_template("admin/runs/resync.html", connection=connection, form=form, kind=kind,
                           kind_label=runs.KIND_LABELS[kind], busy=busy), status


@bp.route("/connections/<int:connection_id>/resync", methods=["GET", "POST"])
def resync(connection_id: int):
    """Resync from CRM: one way CRM → ERP for every linked record of the connection, ignoring timestamps."""
    return _resync(connection_id, RunKind.RESYNC_FROM_CRM)


@bp.route("/connections/<int:connection_id>/resync-from-erp", methods=["GET", "POST"])
def resync_erp(connection_id: int):
    """Resync from ERP connection: one way ERP → CRM, then on to the other connections."""
    return _resync(connection_id, RunKind.RESYNC_FROM_ERP)


@bp.route("/sync/log/retention", methods=["POST"])
def sync_log_retention():
    form = RetentionForm()
    settings = sync_settings()
    if form.validate_on_submit():
        try:
            settings = runs.set_retention(form.log_retention_days.data, **audit_ctx())
        except ServiceError as exc:
            form.log_retention_days.errors = [*form.log_retention_days.errors, exc.message]
        else:
            toast("success", f"The sync log is kept for {settings.log_retention_days} days.")
            if is_htmx():
                return render_template("admin/runs/_retention.html", retention_form=form, settings=settings)
            return redirect(url_for("admin.sync_log"))
    db.session.rollback()
    return render_template("admin/runs/_retention.html", retention_form=form, settings=sync_settings()), 422


# ------------------------------------------------------------------------------------- Sync now on a connection


@bp.route("/connections/<int:connection_id>/sync-now", methods=["POST"])
def connection_sync(connection_id: int):
    """Sync now on one connection: a normal sync (both ways, from its cursors), queued for the scheduler."""
    connection = get_or_404(Connection, connection_id)
    if connection.deleted:
        abort(404)
    form = _request_form_or_400()
    options = {"no_blank": bool(form.no_blank.data)}
    try:
        run, created = runs.request_run(connection.id, kind=RunKind.SYNC, trigger="manual",
                                        requested_by=g.get("user"), options=options)
    except runs.RunError as exc:
        toast("error", str(exc))
        return redirect_for(url_for("admin.sync_log"))
    if not created:
        toast("error", runs.describe_busy(run))
        return redirect_for(url_for("admin.run_detail", run_id=run.id))
    audit.record("sync.connection_sync", connection, after={"run": run.id, **options}, **audit_ctx())
    db.session.commit()
    runs.submit([run.id])
    toast("success", f"Sync of {connection.name} started.")
    return redirect_for(url_for("admin.run_detail", run_id=run.id))


# ------------------------------------------------------------------------------------------ Preview, Run it


def _inline_limit() -> int:
    try:
        return max(0, int(current_app.config.get("SYNC_PREVIEW_INLINE_LINKS", INLINE_LINKS)))
    except (TypeError, ValueError):
        return INLINE_LINKS


def _inline(connection_ids: list[int]) -> bool:
    """Small enough to execute in this request (the admin waits for the answer)?"""
    if not connection_ids:
        return False
    links = db.session.scalar(select(func.count()).select_from(Link)
                              .where(Link.connection_id.in_(connection_ids))) or 0
    db.session.commit()
    return links <= _inline_limit()


def _start(run_ids: list[int], inline: bool, *, followups: bool) -> None:
    """Execute the runs now in this request (as a cycle, like the scheduler), or hand them to the scheduler."""
    from portal.services.sync import engine

    if not run_ids:
        return
    if inline:
        engine.execute_cycle(run_ids, followups=followups)
    else:
        runs.submit(run_ids)


def _group(run: SyncRun) -> list[SyncRun]:
    """The runs started together with ``run`` (a Preview of Sync all, a Run it …), in order; else the run."""
    group = (run.options or {}).get("group")
    if not isinstance(group, str) or not group:
        return [run]
    # started in one request: their ids are close (a range of the primary key, then the JSON compared)
    near = SyncRun.id.between(run.id - GROUP_SPAN, run.id + GROUP_SPAN)
    found = list(db.session.scalars(select(SyncRun).where(near, SyncRun.options["group"].as_string() == group)
                                    .order_by(SyncRun.id).limit(200)))
    return found or [run]


@bp.route("/sync/preview", methods=["POST"])
def sync_preview():
    """Preview of Sync all (no connection), Sync now on a connection, Resync from CRM / from ERP: dry runs that
    read and compare only (``preview.py``); their page lists what would change and offers Run it."""
    form = PreviewForm()
    if not form.validate_on_submit():
        abort(400)
    kind, connection_id = form.kind.data, form.connection.data or 0
    if kind != RunKind.SYNC and not connection_id:
        abort(400)
    options = {"dry_run": True, "no_blank": bool(form.no_blank.data), "group": secrets.token_hex(8)}
    what = {"kind": kind, "trigger": "manual", "requested_by": g.get("user"), "options": options}
    if connection_id:
        connection = db.session.get(Connection, connection_id)
        if connection is None or connection.deleted:
            abort(404)
        inline = _inline([connection.id])
        try:
            requested = [runs.request_run(connection.id, own=inline, **what)]
        except runs.RunError as exc:
            toast("error", str(exc))
            return redirect_for(url_for("admin.sync_log"))
    else:
        connections = [c.id for c in runs.syncable_connections()]
        inline = _inline(connections)
        requested = runs.request_all(**what)
    created = [run.id for run, made in requested if made]
    for run, made in requested:
        if not made:
            toast("warning", runs.describe_busy(run))
    if not created:
        if not requested:
            toast("warning", "No active connection has an active actor type: nothing to preview.")
        return redirect_for(url_for("admin.sync_log"))
    _start(created, inline, followups=False)
    return redirect_for(url_for("admin.preview_page", run_id=created[0]))


def _plan_context(run: SyncRun, page: int) -> dict:
    counts = run.counts or {}
    entries = counts.get("plan") if isinstance(counts.get("plan"), list) else []
    pages = max(1, -(-len(entries) // PLAN_PAGE_SIZE))
    page = min(max(1, page), pages)
    return {"run": run, "entries": entries[(page - 1) * PLAN_PAGE_SIZE:page * PLAN_PAGE_SIZE], "page": page,
            "pages": pages, "kept": len(entries), "total": int(counts.get("plan_records") or 0),
            "new_lines": set(counts.get("plan_new") or []), "directions": preview.DIRECTION_LABELS}


def _runnable(run: SyncRun) -> bool:
    """A finished preview whose plan Run it can execute (not run yet)."""
    counts = run.counts or {}
    return (runs.is_preview(run) and not run.is_active and bool(counts.get("plan_fingerprint"))
            and not (run.options or {}).get("ran_as"))


@bp.route("/sync/previews/<int:run_id>")
def preview_page(run_id: int):
    """A preview's page: per connection what would change (paged), progress while it runs, and Run it."""
    run = get_or_404(SyncRun, run_id)
    group = _group(run)
    if not any(runs.is_preview(r) for r in group) and len(group) == 1:
        return redirect(url_for("admin.run_detail", run_id=run.id))
    shown = request.args.get("run", type=int)
    page = request.args.get("page", 1, type=int) or 1
    if wants_partial() and request.args.get("section") == "plan":
        member = next((r for r in group if r.id == shown), None)
        if member is None:
            abort(404)
        return render_template("admin/runs/_plan.html", **_plan_context(member, page))
    plans = {r.id: _plan_context(r, page if r.id == shown else 1) for r in group if runs.is_preview(r)}
    return render_template("admin/runs/preview.html", run=run, group=group, plans=plans,
                           active=any(r.is_active for r in group), runnable=[r for r in group if _runnable(r)],
                           ran={r.id: (r.options or {}).get("ran_as") for r in group}, form=RunRequestForm())


@bp.route("/sync/previews/<int:run_id>/run", methods=["POST"])
def preview_run(run_id: int):
    """Run it: the previewed action for real. Each real run first runs the preview again under its connection's
    lock and writes only when the plan is the one shown (else it becomes a fresh preview: "the data changed")."""
    _request_form_or_400()
    run = get_or_404(SyncRun, run_id)
    group = _group(run)
    back = url_for("admin.preview_page", run_id=run.id)
    if any(r.is_active for r in group):
        toast("error", "The preview is still running; wait for it to finish.")
        return redirect_for(back)
    todo = [r for r in group if _runnable(r)]
    if not todo:
        toast("error", "There is no finished preview here that has not been run yet.")
        return redirect_for(back)
    inline = _inline(sorted({r.connection_id for r in todo}))
    token = secrets.token_hex(8)
    created = []
    for shown in todo:
        counts, options = shown.counts or {}, shown.options or {}
        plan = {"run_id": shown.id, "fingerprint": counts["plan_fingerprint"]}
        real_options = {"no_blank": bool(options.get("no_blank")), "group": token, "plan": plan}
        try:
            real, made = runs.request_run(shown.connection_id, kind=shown.kind, trigger="manual",
                                          requested_by=g.get("user"), options=real_options, own=inline)
        except runs.RunError as exc:
            toast("error", str(exc))
            continue
        if not made:
            toast("error", runs.describe_busy(real))
            continue
        runs.update_options(shown.id, ran_as=real.id)
        audit.record("sync.run_it", real.connection, after={"run": real.id, "kind": shown.kind, "preview": shown.id,
                                                            "no_blank": real_options["no_blank"]}, **audit_ctx())
        db.session.commit()
        created.append(real.id)
    if not created:
        return redirect_for(back)
    _start(created, inline, followups=True)
    return redirect_for(url_for("admin.preview_page", run_id=created[0]))

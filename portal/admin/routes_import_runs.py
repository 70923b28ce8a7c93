"""Settings → Import: an import run once queued (spec §5, issue #6): the progress page and its polled partial,
the Done view with the new and updated records, and "Run this import again".

Split from routes_import (the wizard) so that each module stays small enough to read; the undo of a run is in
routes_import_undo. Endpoints: ``admin.import_run_detail``, ``admin.import_run_progress``,
``admin.import_run_records``, ``admin.import_rerun``; also the ``import_record_url`` template helper.
"""

from __future__ import annotations

from flask import redirect, render_template, request, url_for
from werkzeug.routing import BuildError

from portal.admin import bp
from portal.admin.routes_import import _import_run_or_404, _steps
from portal.htmx import hx_trigger, is_htmx, redirect_for, stop_polling, toast, wants_partial
from portal.models import CrmType, SyncRun
from portal.services import import_undo
from portal.services.import_run import rerun, run_records
from portal.services.import_settings import ImportProblem, ImportRequest, settings_summary
from portal.web import audit_ctx

# --------------------------------------------------------------------------------- progress and done


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

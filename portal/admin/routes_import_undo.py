"""Settings → Import: undo of an import run (issue #18 point 3): a preview of what undo would remove and keep,
then a confirm that checks everything again (portal.services.import_undo).

Endpoints: ``admin.import_undo_preview`` (GET /settings/import/runs/<id>/undo) and ``admin.import_undo`` (POST).
"""

from __future__ import annotations

from flask import abort, current_app, redirect, render_template, request, url_for
from itsdangerous import BadSignature, URLSafeTimedSerializer

from portal.admin import bp
from portal.admin.forms_import import UndoForm
from portal.admin.routes_import import _import_run_or_404
from portal.htmx import is_htmx, redirect_for, toast
from portal.services import import_undo as undo_service
from portal.web import audit_ctx

PER_PAGE = 50
PREVIEW_MAX_AGE = 24 * 3600


def _signer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt="import-undo")


def _render(run, undo_plan, *, status: int = 200, message: str | None = None, form: UndoForm | None = None):
    form = form or UndoForm()
    form.previewed.data = _signer().dumps({"run": run.id, "items": undo_plan.fingerprint()})
    remove = undo_plan.remove + undo_plan.unlink
    page_items, page, pages = undo_service.page(remove, request.args.get("page", 1, type=int), PER_PAGE)
    kept_items, kept_page, kept_pages = undo_service.page(undo_plan.kept, request.args.get("kept_page", 1, type=int),
                                                         PER_PAGE)
    return render_template("admin/import/undo.html", run=run, plan=undo_plan, form=form, message=message,
                           remove_items=page_items, page=page, pages=pages, remove_total=len(remove),
                           kept_items=kept_items, kept_page=kept_page, kept_pages=kept_pages,
                           info=undo_service.undo_info(run)), status


@bp.route("/import/runs/<int:run_id>/undo")
def import_undo_preview(run_id: int):
    """What undo of the import would remove (and keep, with the reason); reads only."""
    run = _import_run_or_404(run_id)
    return _render(run, undo_service.plan(run))


@bp.route("/import/runs/<int:run_id>/undo", methods=["POST"])
def import_undo(run_id: int):
    """Undo: remove what the preview listed and is still unchanged, in one transaction; audited."""
    run = _import_run_or_404(run_id)
    form = UndoForm()
    if not form.validate_on_submit():
        abort(400, "The undo form has expired. Open the preview again.")
    try:
        data = _signer().loads(form.previewed.data or "", max_age=PREVIEW_MAX_AGE)
        if data.get("run") != run.id:
            raise BadSignature("another run")
        expected = [str(item) for item in data["items"]]
    except (BadSignature, KeyError, TypeError, AttributeError):
        abort(400, "The preview is missing or has expired. Open the preview again.")
    ctx = audit_ctx()
    try:
        done = undo_service.undo(run.id, expected=expected, **ctx)
    except undo_service.UndoProblem as exc:
        toast("error", exc.message)
        return _render(run, undo_service.plan(run), status=409, message=exc.message)
    summary = undo_service.undo_info(run) or {}
    text = f"Import #{run.id} undone: {len(done.remove)} record(s) removed, {done.links_removed} link(s) removed"
    if done.kept:
        text += f", {len(done.kept)} kept because they changed"
    if summary.get("kept_since_preview"):
        text += f" ({summary['kept_since_preview']} of them since the preview)"
    toast("success", text + ".")
    target = url_for("admin.import_run_detail", run_id=run.id)
    return redirect_for(target) if is_htmx() else redirect(target, code=303)

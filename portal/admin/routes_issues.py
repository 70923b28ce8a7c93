"""Settings → Sync → Issues: every record with an open sync problem, grouped by reason, filterable, paged, with
Retry now, Uncouple, Ignore / Stop ignoring per record and for the ticked ones.

The list is a GET form (htmx swaps ``#issues``). The actions are POSTs of one form (CSRF): the ticked records
(``link``) or the one row whose button was pressed (``row``), with the list's filters carried along so the answer
is the same list, redrawn. No record chosen answers 422 with the reason. Rules live in
``portal/services/sync_issues.py`` and ``portal/services/sync_issue_actions.py``.
"""

from __future__ import annotations

from flask import redirect, render_template, request, url_for
from sqlalchemy import select

from portal.admin import bp
from portal.admin.forms_issues import IssueFilterForm
from portal.extensions import db
from portal.htmx import is_htmx, toast, wants_partial
from portal.models import Connection
from portal.services import sync_issue_actions as actions
from portal.services import sync_issues
from portal.web import audit_ctx


def _filters(source) -> tuple[IssueFilterForm, sync_issues.IssueFilter]:
    form = IssueFilterForm(source)
    connections = db.session.execute(select(Connection.id, Connection.name).where(Connection.deleted.is_(False))
                                     .order_by(Connection.name, Connection.id)).all()
    form.connection.choices = [(0, "All connections")] + [(cid, name) for cid, name in connections]
    form.validate()
    for name, default in (("connection", 0), ("crm_type", ""), ("reason", ""), ("age", ""), ("show", "open")):
        field = getattr(form, name)
        if field.errors:  # an unknown value (an old link, a deleted connection) filters nothing
            field.data, field.errors = default, []
    filters = sync_issues.IssueFilter(
        connection_id=form.connection.data or None, crm_type=form.crm_type.data or None,
        reason=form.reason.data or None, age=form.age.data or None, ignored=form.show.data == "ignored")
    return form, filters


def _query(form: IssueFilterForm, page: int | None = None) -> dict:
    """The filters as query arguments (blank ones left out)."""
    values = {"connection": form.connection.data or None, "crm_type": form.crm_type.data or None,
              "reason": form.reason.data or None, "age": form.age.data or None,
              "show": form.show.data if form.show.data == "ignored" else None, "page": page if page != 1 else None}
    return {key: value for key, value in values.items() if value}


def _context(form: IssueFilterForm, filters: sync_issues.IssueFilter, page, **extra) -> dict:
    issues = sync_issues.issue_page(filters, page)
    return {"filter_form": form, "filters": filters, "issues": issues, "query": _query(form),
            "page_query": _query(form, issues.page), "reasons": sync_issues.REASON_BY_KEY, **extra}


@bp.route("/sync/issues")
def sync_issues_inbox():
    form, filters = _filters(request.args)
    context = _context(form, filters, request.args.get("page", 1))
    if wants_partial():
        return render_template("admin/issues/_issues.html", **context)
    return render_template("admin/issues/index.html", **context)


def _act(name: str):
    form, filters = _filters(request.form)
    row = request.form.get("row", type=int)
    ids = [row] if row else request.form.getlist("link", type=int)
    links = actions.load_links(ids)
    result = actions.ACTIONS[name](links, **audit_ctx()) if links else actions.ActionResult(
        "error", "Choose at least one record: tick it, or use the button on its row.")
    status = 422 if result.level == "error" and not result.done else 200
    if status == 200:
        toast(result.level, result.message)
    if not is_htmx():
        if status == 422:
            toast("error", result.message)
        return redirect(url_for("admin.sync_issues_inbox", **_query(form, request.form.get("page", type=int))))
    return render_template("admin/issues/_issues.html", notice=result, **_context(
        form, filters, request.form.get("page", 1))), status


@bp.route("/sync/issues/retry", methods=["POST"])
def sync_issues_retry():
    """Retry now: one record is synced at once; several are queued for a sync run of their connection."""
    return _act("retry")


@bp.route("/sync/issues/uncouple", methods=["POST"])
def sync_issues_uncouple():
    """Delete the links (like the ERP tab's Disconnect), audited."""
    return _act("uncouple")


@bp.route("/sync/issues/ignore", methods=["POST"])
def sync_issues_ignore():
    """Hide the issues until their error changes."""
    return _act("ignore")


@bp.route("/sync/issues/unignore", methods=["POST"])
def sync_issues_unignore():
    """Show ignored issues again."""
    return _act("unignore")

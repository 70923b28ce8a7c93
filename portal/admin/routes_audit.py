"""The audit log of admin changes (read-only, paged, filterable)."""

from __future__ import annotations

from flask import render_template, request
from sqlalchemy import select

from portal.admin import bp
from portal.extensions import db
from portal.htmx import wants_partial
from portal.models import AuditEvent
from portal.services import audit


@bp.route("/audit")
def audit_log():
    query = select(AuditEvent).order_by(AuditEvent.id.desc())
    action = (request.args.get("action") or "").strip()
    if action:
        query = query.where(AuditEvent.action.startswith(action))
    object_type = (request.args.get("object_type") or "").strip()
    if object_type:
        query = query.where(AuditEvent.object_type == object_type)
    page = db.paginate(query, page=request.args.get("page", 1, type=int), per_page=50, error_out=False)
    template = "admin/audit/_table.html" if wants_partial() else "admin/audit/index.html"
    changes = {event.id: audit.diff(event.before, event.after) for event in page.items}
    return render_template(template, page=page, action=action, object_type=object_type, changes=changes)

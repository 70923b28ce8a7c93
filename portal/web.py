"""Helpers shared by the blueprints (request-bound glue that services must not contain)."""

from __future__ import annotations

from collections.abc import Mapping

from flask import abort, g, render_template, request

from portal.extensions import db
from portal.htmx import wants_partial


def audit_ctx() -> dict:
    """The who/where of an admin action, for portal.services.audit.record(**audit_ctx())."""
    return {"actor": g.get("user"), "request_id": g.get("request_id", ""), "ip": request.remote_addr or ""}


def apply_form_errors(form, errors: Mapping[str, str]) -> None:
    """Put a service's messages ({field name: message}) on the matching inputs, the rest on the form."""
    for key, message in errors.items():
        if key in form:
            form[key].errors = [*form[key].errors, message]
        else:
            form.form_errors.append(message)


def get_or_404(model, ident):
    obj = db.session.get(model, ident)
    if obj is None:
        abort(404)
    return obj


def render_form(template: str, partial: str | None, form, **context):
    """Render a form page (or its partial for htmx); invalid submissions answer 422 with field errors."""
    status = 422 if request.method == "POST" and form.errors else 200
    name = partial if partial and wants_partial() else template
    return render_template(name, form=form, **context), status


def require_admin() -> None:
    if g.get("user") is None:
        abort(401)
    if not g.user.is_admin:
        abort(403)

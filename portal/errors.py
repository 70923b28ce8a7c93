"""Error pages that leak nothing, answered as partials/toasts for htmx and as pages otherwise."""

from __future__ import annotations

import logging

from flask import render_template, request, url_for
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from portal.extensions import db
from portal.htmx import hx_redirect, is_htmx, toast

log = logging.getLogger(__name__)

MESSAGES = {
    400: "The request could not be understood.",
    403: "You do not have permission to do that.",
    404: "That page or record does not exist.",
    405: "That action is not allowed here.",
    413: "The request is too large.",
    422: "Some values are not valid.",
    429: "Too many requests; please wait a moment.",
    500: "Something went wrong on our side. The error has been logged.",
}


def render_error(status: int, message: str | None = None):
    message = message or MESSAGES.get(status, "Something went wrong.")
    if is_htmx():
        toast("error", message)
        return render_template("errors/_error.html", status=status, message=message), status
    return render_template("errors/error.html", status=status, message=message), status


def init_app(app) -> None:
    @app.errorhandler(CSRFError)
    def _csrf(error):
        if is_htmx():
            response = hx_redirect(request.headers.get("HX-Current-URL") or url_for("crm.home"), 400)
            return response
        return render_error(400, "Your form expired or was sent from elsewhere. Reload the page and try again.")

    @app.errorhandler(HTTPException)
    def _http(error: HTTPException):
        if error.code in (301, 302, 303, 307, 308):
            return error
        return render_error(error.code or 500, error.description if error.code == 422 else None)

    @app.errorhandler(Exception)
    def _unexpected(error: Exception):
        db.session.rollback()
        log.exception("unhandled error on %s %s", request.method, request.path)
        return render_error(500)

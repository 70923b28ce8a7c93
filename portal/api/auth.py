"""Bearer-token authentication, scopes and JSON errors of the API blueprint.

Each request: the token (401 when missing, unknown, expired, revoked, its user deactivated or their password
changed since it was made), then the user's standing (403 without a licence unless admin — the token never has
more rights than its user has now), then the per-token rate limit (429 with Retry-After). Each view then asks for
its scope and, where needed, admin (:func:`requires`); licence, connection scope and can-connect are checked by the
ERP tab service on every link/unlink, exactly as on the ERP tab.
"""

from __future__ import annotations

import functools

from flask import g, jsonify, request
from flask_limiter import RateLimitExceeded
from werkzeug.exceptions import HTTPException

from portal.api import bp, tokens
from portal.extensions import db
from portal.security import limits
from portal.services import erp_tab as erp_tab_svc

PUBLIC = {"api.openapi", "api.not_found"}  # the JSON 404 of any other path needs no token

ERROR_CODES = {400: "bad_request", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
               409: "conflict", 413: "too_large", 415: "unsupported_media_type", 422: "invalid", 429: "rate_limited",
               500: "server_error", 502: "connector_failed", 503: "unavailable"}


class ApiError(Exception):
    def __init__(self, status: int, message: str, details: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.details = status, message, details


def error_response(status: int, message: str, details: dict | None = None, headers: dict | None = None):
    body = {"error": ERROR_CODES.get(status, "error"), "message": message}
    if details:
        body["details"] = details
    response = jsonify(body)
    response.status_code = status
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="api"'
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def bearer() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


@bp.before_request
def authenticate():
    g.user = None
    g.api_token = None
    if request.endpoint in PUBLIC:
        return None
    secret = bearer()
    if secret is None:
        return error_response(401, "Send a personal API token: Authorization: Bearer <token>.")
    token = tokens.find(secret)
    if token is None:
        return error_response(401, "The API token is not valid (unknown, expired or revoked).")
    user = token.user
    if not tokens.may_hold_tokens(user):
        return error_response(403, "Your account may no longer use the API (no ERP Sync licence).")
    g.user, g.api_token = user, token
    limits.check(limits.api_per_token)
    return None


def requires(scope: str, *, admin: bool = False):
    """The view needs the token's ``scope`` and, with ``admin``, a user who is an admin now."""

    def decorate(view):
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            token = g.get("api_token")
            if token is None or not token.has_scope(scope):
                raise ApiError(403, f"The token lacks the '{scope}' scope.")
            if admin and not g.user.is_admin:
                raise ApiError(403, "Only admins may do this.")
            return view(*args, **kwargs)

        wrapper.api_scope = scope
        wrapper.api_admin = admin
        return wrapper

    return decorate


def audit_ctx() -> dict:
    """The who/where of an API action for ``audit.record``."""
    return {"actor": g.get("user"), "request_id": g.get("request_id", ""), "ip": request.remote_addr or ""}


@bp.errorhandler(ApiError)
def _api_error(error: ApiError):
    db.session.rollback()
    return error_response(error.status, error.message, error.details)


@bp.errorhandler(erp_tab_svc.ErpTabError)
def _erp_tab_error(error: erp_tab_svc.ErpTabError):
    db.session.rollback()
    details = getattr(error, "errors", None) or None
    return error_response(error.status, error.message, details)


@bp.errorhandler(RateLimitExceeded)
def _too_many(error: RateLimitExceeded):
    seconds = limits.retry_after()
    return error_response(429, limits.too_many_message(error, seconds), headers={"Retry-After": str(seconds)})


@bp.errorhandler(HTTPException)
def _http(error: HTTPException):
    status = error.code or 500
    message = error.description if status in (400, 404, 405, 413, 422) and error.description else \
        ERROR_CODES.get(status, "error").replace("_", " ").capitalize() + "."
    return error_response(status, message)


@bp.errorhandler(Exception)
def _unexpected(error: Exception):
    import logging

    db.session.rollback()
    logging.getLogger(__name__).exception("unhandled API error on %s %s", request.method, request.path)
    return error_response(500, "Something went wrong on our side. The error has been logged.")

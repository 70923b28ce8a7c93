"""Request ids and the security headers of every response.

* ``g.request_id`` is the client's ``X-Request-ID`` only when it is a plain token (1–64 of ``A-Z a-z 0-9 . _ -``,
  see :data:`REQUEST_ID_RE`); anything else (too long, spaces, quotes, control characters) is replaced by a
  generated id. It is echoed in the response, written to the audit log (a 64-character column) and shown in
  error toasts, so it must never carry arbitrary client text.
* Every response gets ``X-Content-Type-Options``, ``X-Frame-Options``, ``Referrer-Policy`` and the CSP (with
  ``base-uri 'none'``, ``form-action 'self'`` and ``object-src 'none'``); every response but a static file gets
  ``Cache-Control: no-store``, so no page with CRM or ERP data (or a CSRF token) is kept by a browser or proxy
  cache.
"""

from __future__ import annotations

import re
import uuid

from flask import Flask, g, request

REQUEST_ID_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


def new_request_id() -> str:
    return uuid.uuid4().hex[:16]


def request_id_from(header: str | None) -> str:
    """The client's request id when it is a plain token of at most 64 characters, else a new one."""
    if header and REQUEST_ID_RE.fullmatch(header):
        return header
    return new_request_id()


def _request_id() -> None:
    g.request_id = request_id_from(request.headers.get("X-Request-ID"))


def _security_headers(response):
    headers = response.headers
    headers["X-Request-ID"] = g.get("request_id") or new_request_id()
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("X-Frame-Options", "DENY")
    headers.setdefault("Referrer-Policy", "same-origin")
    headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
    if request.endpoint != "static" and "Cache-Control" not in headers:
        headers["Cache-Control"] = "no-store"
    return response


def init_app(app: Flask) -> None:
    """Register the hooks; call before the blueprints so the request id exists before any other hook runs."""
    app.before_request(_request_id)
    app.after_request(_security_headers)

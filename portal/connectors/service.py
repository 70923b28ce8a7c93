"""Base class for connectors that ship with the portal, and the WSGI app that serves one over HTTP.

A connector built into the portal answers exactly the JSON documents of the protocol: the in-process
transport (``builtin:<name>`` URLs) and the HTTP server below both go through ``ConnectorService.handle``.
"""

from __future__ import annotations

import hmac
import json
import logging
import traceback

from werkzeug.wrappers import Request, Response

from portal.connectors.protocol import METHODS, error_response

log = logging.getLogger(__name__)


class ProtocolError(Exception):
    """Raised inside a connector method to answer ``IsOk: false`` with these explanations."""

    def __init__(self, user_explanation: str, tech_explanation: str = "", error_code: str = ""):
        super().__init__(user_explanation)
        self.user_explanation = user_explanation
        self.tech_explanation = tech_explanation
        self.error_code = error_code


class ConnectorService:
    """Subclasses define one method per protocol method, named as in the protocol (``GetActors`` …),
    taking the request body (a dict) and returning a full response document (see protocol.ok_response)."""

    def handle(self, method: str, body: dict) -> dict:
        if method not in METHODS or not hasattr(self, method):
            return error_response(f"Unknown method {method}.", error_code="UNKNOWN_METHOD")
        if not isinstance(body, dict):
            return error_response("The request body must be a JSON object.", error_code="BAD_REQUEST")
        try:
            return getattr(self, method)(body)
        except ProtocolError as exc:
            return error_response(exc.user_explanation, exc.tech_explanation, exc.error_code)
        except Exception as exc:  # a connector answers errors in the response, never by crashing
            log.exception("connector method %s failed", method)
            return error_response("The connector failed to process the request.",
                                  "".join(traceback.format_exception_only(exc)).strip(), "INTERNAL_ERROR")


def make_wsgi_app(service: ConnectorService, token: str | None = None, prefix: str = ""):
    """Serve ``service`` as ``POST {prefix}/{MethodName}`` with JSON bodies (and an optional bearer token)."""

    @Request.application
    def app(request: Request) -> Response:
        def answer(doc: dict, status: int = 200) -> Response:
            return Response(json.dumps(doc), status=status, mimetype="application/json")

        if token is not None:
            sent = request.headers.get("Authorization", "")
            if not hmac.compare_digest(sent.encode(), f"Bearer {token}".encode()):
                return answer(error_response("Not authorised.", error_code="UNAUTHORIZED"), 401)
        path = request.path
        if prefix and path.startswith(prefix):
            path = path[len(prefix):]
        method = path.strip("/")
        if request.method != "POST":
            return answer(error_response("Use POST."), 405)
        if method not in METHODS:
            return answer(error_response(f"Unknown method {method}.", error_code="UNKNOWN_METHOD"), 404)
        try:
            body = json.loads(request.get_data(as_text=True) or "{}")
        except ValueError:
            return answer(error_response("The request body is not JSON.", error_code="BAD_REQUEST"), 400)
        return answer(service.handle(method, body))

    return app


def serve(service: ConnectorService, host: str = "127.0.0.1", port: int = 8100, token: str | None = None,
          prefix: str = "") -> None:
    """Run a connector as its own HTTP server (blocking). Used by ``flask --app wsgi … serve`` commands."""
    from werkzeug.serving import run_simple

    run_simple(host, port, make_wsgi_app(service, token=token, prefix=prefix), threaded=True)

"""The automation API: a token-authenticated JSON API under ``/api/v1/`` (issue #18, point 4; docs/api.md).

* ``Authorization: Bearer esp_…`` only — no cookie is read, so the blueprint is exempt from CSRF
  (``portal/__init__.py``) and a signed-in browser cannot be made to call it.
* Every answer is JSON, errors included (``{"error": code, "message": text}``); malformed JSON is a 400, invalid
  values a 422, and a path under /api/v1/ that is no endpoint a JSON 404.
* The OpenAPI document is generated from the code (apispec + marshmallow) at ``GET /api/v1/openapi.json``.
"""

from flask import Blueprint

bp = Blueprint("api", __name__, url_prefix="/api/v1")

from portal.api import auth, routes  # noqa: E402,F401

"""The OpenAPI 3 document, generated from the code: every rule of the ``api`` blueprint in ``app.url_map`` with
the operation its view declares (:func:`doc`) and the marshmallow schemas of portal/api/schemas.py (apispec)."""

from __future__ import annotations

import re

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import current_app

VERSION = "1.0.0"
_OPERATIONS: dict[str, dict] = {}  # view function name -> what doc() declared
_CONVERTER = re.compile(r"<(?:(\w+)(?:\(([^)]*)\))?:)?(\w+)>")
STATUS_TEXT = {200: "OK", 201: "Linked", 202: "Queued", 204: "Done, no content", 400: "Malformed request",
               401: "No valid token", 403: "Not allowed (scope or rights)", 404: "Not found", 409: "Conflict",
               422: "Invalid values", 429: "Rate limited (see Retry-After)", 501: "Not supported by this server",
               502: "The ERP connector failed"}


def doc(summary: str, *, tag: str = "", scope: str = "", admin: bool = False, public: bool = False, body=None,
        body_optional: bool = False, query=None, responses: dict | None = None, hidden: bool = False):
    """Declare a view's operation for the OpenAPI document (the decorator changes nothing else)."""

    def decorate(view):
        _OPERATIONS[view.__name__] = {"summary": summary, "tag": tag, "scope": scope, "admin": admin,
                                      "public": public, "body": body, "body_optional": body_optional,
                                      "query": query, "responses": responses or {}, "hidden": hidden}
        return view

    return decorate


def _path(rule) -> tuple[str, list[dict]]:
    params = []

    def replace(match):
        converter, args, name = match.group(1), match.group(2), match.group(3)
        schema: dict = {"type": "string"}
        if converter == "int":
            schema = {"type": "integer", "minimum": 0}
        elif converter == "any" and args:
            schema = {"type": "string", "enum": [a.strip().strip("'\"") for a in args.split(",")]}
        params.append({"name": name, "in": "path", "required": True, "schema": schema})
        return "{" + name + "}"

    return _CONVERTER.sub(replace, rule.rule), params


def _schema_name(schema) -> str:
    return schema.__name__ if isinstance(schema, type) else type(schema).__name__


def document() -> dict:
    spec = APISpec(title="ERP Sync Portal automation API", version=VERSION, openapi_version="3.0.3",
                   plugins=[MarshmallowPlugin()],
                   info={"description": "Token-authenticated JSON API (docs/api.md). Send "
                                        "`Authorization: Bearer esp_…`; make tokens on your Account page."},
                   servers=[{"url": "/"}])
    spec.components.security_scheme("bearer", {"type": "http", "scheme": "bearer",
                                               "description": "A personal API token (esp_…)"})
    from portal.api import schemas

    spec.components.schema("Error", schema=schemas.Error)
    for rule in sorted(current_app.url_map.iter_rules(), key=lambda r: (r.rule, r.endpoint)):
        if not rule.endpoint.startswith("api."):
            continue
        view = current_app.view_functions[rule.endpoint]
        op = _OPERATIONS.get(getattr(view, "__name__", ""))
        if op is None or op["hidden"]:
            continue
        path, params = _path(rule)
        operations = {}
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            operation: dict = {"summary": op["summary"], "operationId": rule.endpoint.split(".", 1)[1],
                               "tags": [op["tag"]] if op["tag"] else [], "responses": {}}
            notes = []
            if op["scope"]:
                notes.append(f"Scope `{op['scope']}`.")
            if op["admin"]:
                notes.append("Admins only.")
            if notes:
                operation["description"] = " ".join(notes)
            if params:
                operation["parameters"] = list(params)
            if op["query"] is not None:
                operation.setdefault("parameters", []).append({"in": "query", "schema": op["query"]})
            if op["body"] is not None:
                operation["requestBody"] = {"required": not op["body_optional"], "content": {
                    "application/json": {"schema": op["body"]}}}
            statuses = dict(op["responses"])
            if not op["public"]:
                operation["security"] = [{"bearer": []}]
                statuses.setdefault(401, schemas.Error)
                statuses.setdefault(403, schemas.Error)
                statuses.setdefault(429, schemas.Error)
            if op["body"] is not None:
                statuses.setdefault(400, schemas.Error)
                statuses.setdefault(422, schemas.Error)
            for status, schema in sorted(statuses.items()):
                response: dict = {"description": STATUS_TEXT.get(status, "")}
                if schema is not None:
                    response["content"] = {"application/json": {"schema": schema}}
                elif status == 200:
                    response["content"] = {"application/json": {"schema": {"type": "object"}}}
                operation["responses"][str(status)] = response
            operations[method.lower()] = operation
        spec.path(path=path, operations=operations)
    return spec.to_dict()

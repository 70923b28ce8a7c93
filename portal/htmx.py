"""Small htmx helpers: detect htmx requests, send HX-Trigger events and toasts, redirect, stop polling."""

from __future__ import annotations

import contextlib
import json

from flask import Response, g, get_flashed_messages, make_response, request

from portal import i18n  # connector explanations in toasts are shown in the user's language


def is_htmx() -> bool:
    return request.headers.get("HX-Request") == "true" and "HX-History-Restore-Request" not in request.headers


def wants_partial() -> bool:
    """A boosted request must get a whole page; a plain htmx request gets the partial."""
    return is_htmx() and request.headers.get("HX-Boosted") != "true"


def hx_trigger(name: str, detail=None) -> None:
    g.setdefault("hx_triggers", {})[name] = detail if detail is not None else True


def toast(level: str, message: str) -> None:
    """Queue a toast; for htmx responses it travels in HX-Trigger, for pages it is flashed."""
    g.setdefault("toasts", []).append({"level": level, "message": i18n.localize(message)})


def hx_redirect(url: str, status: int = 200) -> Response:
    """htmx ignores headers on 3xx, so redirects for htmx answer 200 with HX-Redirect."""
    response = make_response("", status)
    response.headers["HX-Redirect"] = url
    return response


def redirect_for(url: str) -> Response:
    from flask import redirect

    return hx_redirect(url) if is_htmx() else redirect(url)


def stop_polling(body: str = "") -> Response:
    return make_response(body, 286)


def vary_on_htmx(response: Response) -> Response:
    """For ``bp.after_request``: the same URL answers with a page or a partial, so caches must keep them apart
    (init_app only marks the htmx responses)."""
    response.vary.add("HX-Request")
    return response


def init_app(app) -> None:
    @app.after_request
    def _hx_headers(response: Response) -> Response:
        if is_htmx():
            triggers = dict(g.get("hx_triggers", {}))
            toasts = list(g.get("toasts", []))
            # flash() messages of htmx responses are shown as toasts rather than waiting for a page load.
            if response.status_code < 300 and "HX-Redirect" not in response.headers:
                toasts += [{"level": cat if cat != "message" else "info", "message": i18n.localize(msg)}
                           for cat, msg in get_flashed_messages(with_categories=True)]
            if toasts:
                triggers["toast"] = toasts
            if triggers:
                existing = response.headers.get("HX-Trigger")
                if existing:
                    with contextlib.suppress(ValueError):
                        triggers = {**json.loads(existing), **triggers}
                response.headers["HX-Trigger"] = json.dumps(triggers)
            response.vary.add("HX-Request")
        else:
            from flask import flash

            for item in g.get("toasts", []):
                flash(item["message"], item["level"])
        return response

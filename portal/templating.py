"""Template filters and globals shared by every page."""

from __future__ import annotations

from datetime import UTC, date, datetime

from flask import g, request, url_for

from portal import i18n


def format_datetime(value) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.replace(tzinfo=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    if isinstance(value, date):
        return value.isoformat()
    return str(value)


def init_app(app) -> None:
    app.jinja_env.filters["dt"] = format_datetime
    # Connector texts in SuperOffice's multi-language form (US:"…";NO:"…") in the reader's language (portal/i18n.py)
    app.jinja_env.filters["lang"] = i18n.localize
    app.jinja_env.trim_blocks = True
    app.jinja_env.lstrip_blocks = True

    @app.context_processor
    def _globals():
        def url_with(**changes):
            args = request.args.to_dict()
            args.update({k: v for k, v in changes.items()})
            args = {k: v for k, v in args.items() if v not in (None, "")}
            return url_for(request.endpoint, **(request.view_args or {}), **args)

        def optional_url(endpoint: str, **values):
            """url_for, or None while the endpoint does not exist (screens of later issues)."""
            from werkzeug.routing import BuildError

            try:
                return url_for(endpoint, **values)
            except BuildError:
                return None

        from portal.services.actor_labels import actor_label

        # actor_label(connection_or_config, actor_type): what people call an ERP actor type on a connection
        # ("Vendor" for Supplier) — every screen prints actor types through it (portal/services/actor_labels.py)
        return {"current_user": g.get("user"), "url_with": url_with, "optional_url": optional_url,
                "current_language": i18n.current_language, "actor_label": actor_label}

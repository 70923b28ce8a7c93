"""The ERP Sync Portal: ``create_app()`` wires configuration, extensions, blueprints and commands.

The scheduler is never started here (see wsgi.py and jobs/scheduler.py), so CLI commands and tests
never run background jobs.
"""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

from flask import Flask, g, request

from portal.config import STATIC_CONFIG, load_config
from portal.extensions import csrf, db, migrate

ROOT = Path(__file__).resolve().parent.parent


def create_app(overrides: dict | None = None, environ: dict | None = None) -> Flask:
    app = Flask(
        __name__,
        instance_path=str((overrides or {}).get("INSTANCE_PATH") or ROOT / "instance"),
        template_folder=str(ROOT / "templates"),
        static_folder=str(ROOT / "static"),
    )
    Path(app.instance_path).mkdir(parents=True, exist_ok=True)
    app.config.update(STATIC_CONFIG)
    app.config.update(load_config(app.instance_path, environ))
    app.config["INSTANCE_PATH"] = app.instance_path
    if overrides:
        app.config.update(overrides)

    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("portal").setLevel(app.config["LOG_LEVEL"])
    logging.getLogger("jobs").setLevel(app.config["LOG_LEVEL"])

    import portal.database  # noqa: F401  (registers the SQLite pragma listener)

    db.init_app(app)
    csrf.init_app(app)
    migrate.init_app(app, db, directory=str(ROOT / "portal" / "migrations"))

    from portal import errors, htmx, templating
    from portal.admin import bp as admin_bp
    from portal.auth import bp as auth_bp
    from portal.crm import bp as crm_bp
    from portal.demo_erp import bp as demo_erp_bp
    from portal.erp_tab import bp as erp_tab_bp

    app.register_blueprint(auth_bp)
    app.register_blueprint(crm_bp)
    app.register_blueprint(admin_bp)
    app.register_blueprint(erp_tab_bp)
    app.register_blueprint(demo_erp_bp)
    errors.init_app(app)
    htmx.init_app(app)
    templating.init_app(app)

    @app.before_request
    def _request_id():
        g.request_id = request.headers.get("X-Request-ID") or uuid.uuid4().hex[:16]

    @app.after_request
    def _security_headers(response):
        response.headers.setdefault("X-Request-ID", g.get("request_id", ""))
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault(
            "Content-Security-Policy",
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            "frame-ancestors 'none'; form-action 'self'",
        )
        return response

    from portal.cli import register_commands

    register_commands(app)
    return app

"""The ERP Sync Portal: ``create_app()`` wires configuration, extensions, blueprints and commands.

The scheduler is never started here (see wsgi.py and jobs/scheduler.py), so CLI commands and tests
never run background jobs. ``reap_at_startup(app)`` is the startup hook wsgi.py calls in every web process.
"""

from __future__ import annotations

import logging
from pathlib import Path

from flask import Flask

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
    from portal.security import files, headers, params, passwords

    files.private_dir(app.instance_path)  # 0700: databases, keys and connector state live here
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

    # Before any blueprint: the bounded <int:> converter is looked up when a rule is added, and the request id
    # must exist before every other hook (portal/security/params.py, headers.py).
    headers.init_app(app)
    params.init_app(app)
    passwords.init_app(app)

    from portal import demo_erp, errors, htmx, templating
    from portal.admin import bp as admin_bp
    from portal.api import bp as api_bp
    from portal.auth import bp as auth_bp
    from portal.crm import bp as crm_bp
    from portal.erp_tab import bp as erp_tab_bp

    app.register_blueprint(auth_bp)
    app.register_blueprint(crm_bp)
    app.register_blueprint(admin_bp)
    app.register_blueprint(erp_tab_bp)
    # The automation API reads no cookie (Bearer tokens only, portal/api/auth.py), so CSRF does not apply to it
    app.register_blueprint(api_bp)
    csrf.exempt(api_bp)
    # the Demo ERP's pages (admins only) exist only while the demo is on
    app.jinja_env.globals["demo_erp_enabled"] = demo_erp.enabled(app)
    if demo_erp.enabled(app):
        app.register_blueprint(demo_erp.bp)
    errors.init_app(app)
    htmx.init_app(app)
    templating.init_app(app)

    from portal.cli import register_commands

    register_commands(app)
    return app


def reap_at_startup(app: Flask) -> int:
    """The startup hook of a web process (wsgi.py, before the scheduler starts): fail the sync runs nobody executes
    any more — their process on this host is gone (a killed ``erp sync``, a crashed web process), or their heartbeat
    is older than the lease — so nothing waits a minute for the scheduler's reaper, and a process without a
    scheduler reaps too. A conditional UPDATE per run: safe in every process at once. Skipped when a CLI command
    loaded wsgi.py (the ``erp`` commands reap for themselves; ``init`` may find no tables yet). Returns the number
    of runs reaped."""
    import click

    context = click.get_current_context(silent=True)
    if context is not None and context.info_name != "run":
        return 0
    from sqlalchemy import inspect

    from portal.models import SyncRun
    from portal.services.sync import runs

    with app.app_context():
        try:
            if not inspect(db.engine).has_table(SyncRun.__tablename__):
                # a database nobody has initialised: say what to do, not a traceback of "no such table"
                logging.getLogger(__name__).warning(
                    "the database %s has no tables yet: run `flask --app wsgi init` to create them and the first "
                    "admin", db.engine.url.render_as_string(hide_password=True))
                db.session.remove()
                return 0
            return runs.reap_stale()
        except Exception:  # e.g. a database not initialised yet: the web process starts anyway
            db.session.rollback()
            logging.getLogger(__name__).warning("could not reap abandoned sync runs at startup", exc_info=True)
            return 0

"""Shared set-up for the tests that build the schema with the Alembic migrations themselves (instead of the
``app`` fixture's ``create_all``): an app on an empty database, emptied again afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from flask import Flask

from portal import create_app
from portal.extensions import db


def _empty(app: Flask) -> None:
    """PostgreSQL (``PORTAL_TEST_DATABASE_URL``) outlives a test: drop the models' tables and Alembic's version
    table. A SQLite database is a new file in the test's temporary folder, empty already."""
    if app.config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql"):
        db.drop_all()
        with db.engine.begin() as connection:
            connection.exec_driver_sql("DROP TABLE IF EXISTS alembic_version")


@contextmanager
def migration_app(app_config: dict) -> Iterator[Flask]:
    """An app on an empty database (``app_config``'s: a fresh SQLite file, or PostgreSQL emptied), inside its app
    context, for a test that runs ``flask_migrate.upgrade``; the database is emptied again when the test ends,
    passed or failed."""
    app = create_app(app_config, environ={})
    with app.app_context():
        _empty(app)
        try:
            yield app
        finally:
            db.session.remove()
            _empty(app)
            db.engine.dispose()

"""The Alembic migrations build exactly the schema the models describe, so an upgrade keeps data."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import upgrade

from portal.extensions import db
from tests.integration.helpers_migration import migration_app


def test_migrations_upgrade_an_empty_database_to_the_models(app_config):
    with migration_app(app_config) as app:
        url = app.config["SQLALCHEMY_DATABASE_URI"]
        upgrade()
        with db.engine.connect() as connection:
            from portal.services.search_index import include_name  # the search index is not in the models

            context = MigrationContext.configure(connection, opts={"compare_type": True, "include_name": include_name})
            differences = compare_metadata(context, db.metadata)
        assert differences == [], f"models and migrations differ; run `flask --app wsgi db migrate`: {differences}"
        if url.startswith("postgresql"):  # table storage options are not compared by Alembic: the link's room for
            # in-place updates (models/sync.py) is there after the migrations as after create_all
            with db.engine.connect() as connection:
                assert connection.exec_driver_sql(
                    "SELECT reloptions FROM pg_class WHERE relname = 'link'").scalar() == ["fillfactor=80"]
        from portal.services.bootstrap import initialise

        initialise({**app.config, "ADMIN_PASSWORD": "a-long-password", "DEMO_DATA": True})

"""Flask CLI commands: ``flask --app wsgi <command>``."""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import with_appcontext
from sqlalchemy import func, select

from portal.extensions import db
from portal.models import User


@click.command("init")
@with_appcontext
def init_command():
    """Create or upgrade the database schema and set up a fresh installation."""
    from flask_migrate import upgrade

    from portal.services.bootstrap import initialise

    upgrade()
    fresh = not db.session.scalar(select(func.count()).select_from(User))
    generated = initialise(current_app.config)
    if generated:
        click.echo("=" * 64)
        click.echo("First admin created. This password is shown only once:")
        click.echo(f"  e-mail:   {current_app.config['ADMIN_EMAIL']}")
        click.echo(f"  password: {generated}")
        click.echo("=" * 64)
    elif fresh:  # the password came from PORTAL_ADMIN_PASSWORD: still say whom to sign in as
        click.echo(f"First admin created: sign in as {current_app.config['ADMIN_EMAIL']} with the password set in "
                   "PORTAL_ADMIN_PASSWORD.")
    click.echo("Database ready.")


@click.command("create-user")
@click.option("--email", required=True)
@click.option("--name", default="")
@click.option("--admin", "is_admin", is_flag=True, help="Give the user the admin role.")
@click.option("--licence/--no-licence", default=False, help="Assign an ERP Sync licence seat.")
@click.password_option(help="At least 12 characters (prompted when omitted).")
@with_appcontext
def create_user_command(email, name, is_admin, licence, password):
    """Create a user."""
    from portal.services.users import UserError, create_user

    try:
        user = create_user(email=email, name=name or email.split("@")[0], password=password,
                           role="admin" if is_admin else "user", erp_licence=licence, actor="cli")
    except UserError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"Created {user.role} {user.email}.")


@click.command("rotate-keys")
@with_appcontext
def rotate_keys_command():
    """Re-encrypt every stored secret under the newest key of PORTAL_ENCRYPTION_KEYS."""
    from portal.models import Connection, Connector
    from portal.security.crypto import rotate

    count = 0
    for connector in db.session.scalars(select(Connector).where(Connector.token_encrypted.is_not(None))):
        connector.token_encrypted = rotate(connector.token_encrypted)
        count += 1
    for connection in db.session.scalars(select(Connection).where(Connection.secrets_encrypted.is_not(None))):
        connection.secrets_encrypted = rotate(connection.secrets_encrypted)
        count += 1
    db.session.commit()
    click.echo(f"Re-encrypted {count} secret(s).")


@click.command("check-db")
@with_appcontext
def check_db_command():
    """Print the number of rows per main table (a quick health check)."""
    from portal.models import Company, Connection, Connector, Contact, Link, Project, User

    for model in (User, Company, Contact, Project, Connector, Connection, Link):
        click.echo(f"{model.__tablename__:12} {db.session.scalar(select(func.count()).select_from(model))}")


def register_commands(app) -> None:
    for command in (init_command, create_user_command, rotate_keys_command, check_db_command):
        app.cli.add_command(command)
    # Command groups owned by their areas.
    from portal.demo_erp.cli import demo_erp_group

    app.cli.add_command(demo_erp_group)
    try:
        from portal.tryton_admin import tryton_group

        app.cli.add_command(tryton_group)
    except ImportError:  # pragma: no cover - during development the module may not exist yet
        pass
    try:
        from portal.sync_cli import erp_group

        app.cli.add_command(erp_group)
    except ImportError:  # pragma: no cover
        pass
    try:
        from portal.connector_cli import connector_group

        app.cli.add_command(connector_group)
    except ImportError:  # pragma: no cover
        pass

"""``flask demo-erp …`` commands: serve the Demo ERP's connector over HTTP, or reset its database.

The lead wires them with ``app.cli.add_command(demo_erp_group)``.
"""

from __future__ import annotations

import ipaddress

import click
from flask import current_app
from flask.cli import AppGroup

from portal.connectors.builtin.demo import DemoErpConnector
from portal.connectors.service import serve

demo_erp_group = AppGroup("demo-erp", help="The built-in Demo ERP: serve its connector over HTTP, or reset it.")

_DB_OPTION = click.option("--db", "db_path", type=click.Path(dir_okay=False), default=None,
                          help="SQLite file of the Demo ERP (default: the portal's DEMO_ERP_DB).")


def _connector(db_path: str | None) -> DemoErpConnector:
    return DemoErpConnector(db_path or current_app.config["DEMO_ERP_DB"])


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@demo_erp_group.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8100, show_default=True, type=click.IntRange(1, 65535), help="Port to listen on.")
@_DB_OPTION
@click.option("--token", default=None, help="Require 'Authorization: Bearer TOKEN' on every call.")
def serve_command(host: str, port: int, db_path: str | None, token: str | None) -> None:
    """Serve the Demo ERP connector protocol at http://HOST:PORT/ (POST /GetConfigData …)."""
    connector = _connector(db_path)
    counts = connector.counts()  # create and seed the database now rather than on the first call
    if not token and not _is_loopback(host):
        click.secho(f"Warning: serving on {host} without --token; anyone who can reach it can read and change "
                    "the Demo ERP.", fg="yellow", err=True)
    click.echo(f"Demo ERP connector: http://{host}:{port}/  (database {connector.path}; "
               + ", ".join(f"{n} {t.lower()}s" for t, n in counts.items()) + ")")
    click.echo("Register that URL as a connector in the portal; stop with Ctrl+C.")
    serve(connector, host=host, port=port, token=token)


@demo_erp_group.command("reset")
@_DB_OPTION
@click.option("--no-seed", is_flag=True, help="Leave the Demo ERP empty instead of loading the demo records.")
@click.confirmation_option(prompt="Erase every Demo ERP record and connection, then seed it again?")
def reset_command(db_path: str | None, no_seed: bool) -> None:
    """Erase the Demo ERP (records, connections) and load the demo records again."""
    connector = _connector(db_path)
    connector.reset(seed=not no_seed)
    counts = connector.counts()
    click.echo(f"Demo ERP reset ({connector.path}): " + ", ".join(f"{n} {t.lower()}s" for t, n in counts.items()))

"""CLI: ``flask --app wsgi connector check URL …`` runs the conformance kit (``portal.connectors.conformance``)
against a connector with the app's client limits, prints the table and exits with status 1 on a FAIL. It lives
above the kit: the client comes from the services layer, which the connectors package never imports."""

from __future__ import annotations

from collections.abc import Sequence

import click
from flask.cli import AppGroup

from portal.connectors.conformance.kit import run_checks
from portal.connectors.conformance.results import format_table, has_failures
from portal.connectors.conformance.runner import quiet_client_log
from portal.connectors.protocol import ACTOR_TYPES
from portal.services.connectors import make_client

connector_group = AppGroup("connector", help="Tools for sync connectors.")


def _parse_config(items: Sequence[str]) -> dict[str, str]:
    config: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint="--config")
        config[key.strip()] = value
    return config


@connector_group.command("check")
@click.argument("url")
@click.option("--config", "config_items", multiple=True, metavar="KEY=VALUE",
              help="A ConnectionInfo value (repeat for each config field); fields left out get their DefaultValue.")
@click.option("--token", default=None, envvar="PORTAL_CONNECTOR_CHECK_TOKEN",
              help="Bearer token for the connector (or set PORTAL_CONNECTOR_CHECK_TOKEN).")
@click.option("--actor-type", "actor_types", multiple=True, type=click.Choice(ACTOR_TYPES),
              help="Check only this actor type (repeatable); default: every supported type.")
@click.option("--no-write", is_flag=True, help="Leave out the write checks (they add records to the ERP).")
@click.option("--timeout", type=float, default=None, help="Seconds to wait for each answer (default: the portal's).")
def check_command(url: str, config_items: tuple[str, ...], token: str | None, actor_types: tuple[str, ...],
                  no_write: bool, timeout: float | None) -> None:
    """Run every protocol method against the connector at URL (http(s)://… or builtin:<name>) and print a
    PASS/FAIL/WARN/SKIP table. Exits with status 1 when a check FAILed."""
    config = _parse_config(config_items)
    client = make_client(url, token, timeout=timeout, retries=1)
    try:
        with quiet_client_log():  # every failure is in the table, with its reason
            results = run_checks(client, config, actor_types=actor_types or None, write=not no_write)
    finally:
        client.close()
    click.echo(f"Conformance check of {url}" + (" (read-only)" if no_write else ""))
    click.echo(format_table(results))
    if has_failures(results):
        raise SystemExit(1)

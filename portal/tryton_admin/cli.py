"""``tryton_group``: the ``flask --app wsgi tryton setup|start|stop|status|serve-connector`` commands (registered
by ``portal.cli.register_commands``), thin wrappers of the functions of this package."""

from __future__ import annotations

import time

import click
from flask import current_app
from flask.cli import AppGroup

from portal.tryton_admin.home import (
    ADMIN_USER,
    DEFAULT_DB,
    DEFAULT_PORT,
    TrytonHome,
    default_home,
    is_set_up,
    read_password,
)
from portal.tryton_admin.pins import TRYTON_SERIES
from portal.tryton_admin.provision import setup
from portal.tryton_admin.server import _is_trytond, _pid_alive, ping, server_url, start_server, stop_server, wait_ready

tryton_group = AppGroup("tryton", help="Install and run a local Tryton ERP (GPL, separate process) for demos/tests.")


def _cli_home(home: str | None) -> TrytonHome:
    return TrytonHome(home) if home else TrytonHome(default_home(current_app.instance_path))


_home_option = click.option("--home", default=None, type=click.Path(file_okay=False),
                            help="Tryton home folder (default: PORTAL_TRYTON_HOME or instance/tryton).")


@tryton_group.command("setup")
@_home_option
@click.option("--db", "name", default=DEFAULT_DB, show_default=True, help="Database name.")
@click.option("--all-subdivisions", is_flag=True, help="Import all ~5000 country subdivisions (+~45 s).")
def setup_command(home, name, all_subdivisions):
    """Install Tryton in its own venv, create the database with demo data and a test template."""
    h = _cli_home(home)
    click.echo(f"Setting up Tryton {TRYTON_SERIES} in {h.root}")
    try:
        report = setup(h, name, all_subdivisions=all_subdivisions, log=click.echo)
    except RuntimeError as exc:
        raise click.ClickException(str(exc)) from exc
    versions = ", ".join(f"{k} {v}" for k, v in sorted(report["versions"].items()))
    click.echo(f"Installed: {versions}")
    click.echo(f"Database '{name}': {h.db_file(name)}  template: {h.template}")
    click.echo(f"Admin user: {ADMIN_USER}  password: {read_password(h)}  (kept in {h.passfile})")
    click.echo("Timings (s): " + ", ".join(f"{k} {v:.1f}" for k, v in report["timings"].items()))


@tryton_group.command("start")
@_home_option
@click.option("--port", default=DEFAULT_PORT, show_default=True, type=int)
@click.option("--db", "name", default=None, help="Database name (default: the one setup created).")
def start_command(home, port, name):
    """Start trytond in the background (127.0.0.1 only) and wait until it answers."""
    h = _cli_home(home)
    name = name or h.state().get("database") or DEFAULT_DB
    if not h.bin("trytond").exists() or not h.db_file(name).exists():
        raise click.ClickException(f"Tryton is not set up in {h.root}: run `flask --app wsgi tryton setup` first.")
    if h.pidfile.exists():
        pid = int(h.pidfile.read_text().strip() or 0)
        if pid and _pid_alive(pid) and _is_trytond(pid):
            raise click.ClickException(f"Tryton is already running (pid {pid}); `flask --app wsgi tryton stop` first.")
    t0 = time.monotonic()
    proc = start_server(h, port=port, name=name, detach=True)
    h.pidfile.write_text(f"{proc.pid}\n")
    url = server_url(port)
    try:
        version = wait_ready(url, 60, proc, h.logfile)
    except RuntimeError as exc:
        stop_server(proc)
        h.pidfile.unlink(missing_ok=True)
        raise click.ClickException(str(exc)) from exc
    click.echo(f"Tryton {version} running (pid {proc.pid}, ready in {time.monotonic() - t0:.1f} s)")
    click.echo(f"  URL:      {url}")
    click.echo(f"  database: {name}")
    click.echo(f"  user:     {ADMIN_USER} (password in {h.passfile})")
    click.echo(f"  log:      {h.logfile}")


@tryton_group.command("stop")
@_home_option
def stop_command(home):
    """Stop the trytond started by `tryton start` (by its PID file)."""
    h = _cli_home(home)
    if not h.pidfile.exists():
        click.echo("Tryton is not running (no PID file).")
        return
    pid = int(h.pidfile.read_text().strip() or 0)
    if pid and _pid_alive(pid) and _is_trytond(pid):
        stop_server(pid)
        click.echo(f"Stopped Tryton (pid {pid}).")
    else:
        click.echo("Tryton was not running (stale PID file removed).")
    h.pidfile.unlink(missing_ok=True)
    for run_conf in h.root.glob("trytond-*.conf"):
        run_conf.unlink(missing_ok=True)


@tryton_group.command("status")
@_home_option
@click.option("--port", default=DEFAULT_PORT, show_default=True, type=int)
def status_command(home, port):
    """Show whether Tryton is set up and answering."""
    h = _cli_home(home)
    state = h.state()
    click.echo(f"home:     {h.root} ({'set up' if is_set_up(h) else 'not set up'})")
    if state:
        click.echo(f"versions: {', '.join(f'{k} {v}' for k, v in sorted(state.get('versions', {}).items()))}")
    version = ping(server_url(port))
    click.echo(f"server:   {server_url(port)} {'answers (Tryton ' + version + ')' if version else 'not answering'}")


@tryton_group.command("serve-connector")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8101, show_default=True, type=int)
@click.option("--token", envvar="PORTAL_TRYTON_CONNECTOR_TOKEN", default=None,
              help="Require 'Authorization: Bearer <token>' (env PORTAL_TRYTON_CONNECTOR_TOKEN).")
def serve_connector_command(host, port, token):
    """Serve the Tryton sync connector on its own over HTTP (POST /<MethodName>)."""
    from portal.connectors.builtin.tryton import make_connector
    from portal.connectors.service import serve

    config = {**current_app.config, "INSTANCE_PATH": current_app.config.get("INSTANCE_PATH")
              or current_app.instance_path}
    service = make_connector(config)
    click.echo(f"Tryton connector on http://{host}:{port}/ (state: {service.store.path})")
    serve(service, host=host, port=port, token=token)

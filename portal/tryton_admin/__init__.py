"""Install, initialise, start and stop a local Tryton ERP (trytond 8.0 LTS, SQLite) for demos and tests.

Tryton is GPL-3.0: it is **never imported into the portal's process**. It lives in its own virtualenv under the
Tryton home (default ``instance/tryton``, or ``PORTAL_TRYTON_HOME``) and runs as its own server process; the
portal talks to it over HTTP (``portal.connectors.builtin.tryton``). The only Tryton code this module runs is
started as separate processes from that virtualenv (``trytond-admin``, ``trytond``, a country-import driver).

Layout of a Tryton home::

    venv/                Tryton's own virtualenv (pinned versions below)
    constraints.txt      the pins, as given to pip
    trytond.conf         [web] listen = 127.0.0.1:<port>, [database] uri = sqlite://, path = db/
    passfile             the admin password (0600), read by trytond-admin via TRYTONPASSFILE
    db/<name>.sqlite     the database
    template.sqlite      a copy of the initialised database with demo data; tests copy it per run
    setup.json           what setup did: versions, database, user, demo record ids, timings
    trytond.pid/.log     the server started by ``flask tryton start``

Plain functions (importable by tests): ``install``, ``init_database``, ``populate_demo_data``,
``make_template``, ``setup``, ``start_server``, ``wait_ready``, ``stop_server``, ``free_port``,
``read_password``, ``is_set_up``. The ``tryton_group`` click group wraps them as
``flask --app wsgi tryton setup|start|stop|status|serve-connector``.

The modules, lower layers first (a module imports only the ones above it):

* pins.py — what is installed and activated: the pinned versions, the modules, the subdivision countries;
* home.py — a Tryton home: its layout (``TrytonHome``), the defaults, trytond.conf, the passfile, the processes'
  environment;
* venv.py — Tryton's own virtualenv: created and pip-installed from the pins; how its tools are run;
* database.py — the SQLite database: trytond-admin, the country import, the template and its copies;
* server.py — the trytond process: free port, start, wait until it answers, stop;
* demo_data.py — the demo records, created through JSON-RPC;
* provision.py — ``setup``: all of the above in order, one setup per home at a time;
* cli.py — ``tryton_group``, the ``flask tryton`` commands.

Callers use this package's names (``from portal import tryton_admin``); a test that replaces a helper must patch
the module that looks it up (e.g. ``tryton_admin.server``), not this package.
"""

from portal.tryton_admin.cli import tryton_group
from portal.tryton_admin.database import copy_template, import_countries, init_database, make_template
from portal.tryton_admin.demo_data import (
    DEMO_CUSTOMERS,
    DEMO_PERSONS,
    DEMO_PROJECTS,
    DEMO_SUPPLIERS,
    populate_demo_data,
)
from portal.tryton_admin.home import (
    ADMIN_EMAIL,
    ADMIN_USER,
    DEFAULT_DB,
    DEFAULT_PORT,
    Log,
    TrytonHome,
    default_home,
    is_set_up,
    read_password,
    write_config,
)
from portal.tryton_admin.pins import CONSTRAINTS, MODULES, REQUIREMENTS, SUBDIVISION_COUNTRIES, TRYTON_SERIES
from portal.tryton_admin.provision import setup
from portal.tryton_admin.server import free_port, ping, server_url, start_server, stop_server, wait_ready
from portal.tryton_admin.venv import install, installed_versions

__all__ = [
    "ADMIN_EMAIL", "ADMIN_USER", "CONSTRAINTS", "DEFAULT_DB", "DEFAULT_PORT", "DEMO_CUSTOMERS", "DEMO_PERSONS",
    "DEMO_PROJECTS", "DEMO_SUPPLIERS", "MODULES", "REQUIREMENTS", "SUBDIVISION_COUNTRIES", "TRYTON_SERIES", "Log",
    "TrytonHome", "copy_template", "default_home", "free_port", "import_countries", "init_database", "install",
    "installed_versions", "is_set_up", "make_template", "ping", "populate_demo_data", "read_password", "server_url",
    "setup", "start_server", "stop_server", "tryton_group", "wait_ready", "write_config",
]

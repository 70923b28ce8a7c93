"""Fixtures for tests against a live Tryton server (issue #7).

Tryton runs as its own process from its own virtualenv (GPL-3: never imported here). One server per test
session, on a copy of the template database that ``flask --app wsgi tryton setup`` made.

Where Tryton comes from
    ``PORTAL_TRYTON_HOME`` or ``<repo>/instance/tryton``. If it is not set up there:
    * with ``CI=true`` (or ``PORTAL_TRYTON_SETUP=1``) the session sets it up (``tryton_admin.setup``, ~20 s
      with a warm pip cache) and **fails** if that fails — CI never skips these tests;
    * otherwise the tests are skipped, with the command to run.

Fixture API (use these from portal-level tests too)
    ``tryton_home``   (session) ``TrytonHome`` — paths of the Tryton install (venv, template, passfile …).
    ``tryton``        (session) ``TrytonServer`` handle of the running server:
                      ``.url``, ``.database``, ``.user``, ``.password``, ``.port``, ``.db_dir``, ``.log_file``,
                      ``.demo`` (ids of the demo records from setup.json: ``demo["parties"]["Acme Industries GmbH"]``,
                      ``demo["projects"]["Website relaunch"]``, ``demo["categories"]["Customer"]`` …),
                      ``.rpc`` — a ``TrytonClient`` logged in as admin, to read/edit records through Tryton's own API
                      (``tryton.rpc.model("party.party", "write", [pid], {"name": "X"})``),
                      ``.connection_info(**overrides)`` — the ConnectionInfo dict for the ``tryton`` connector.
    ``tryton_connector`` (function) a fresh ``TrytonConnector`` with its own state file under tmp_path.
    ``tryton_guid``   (function) the GUID of a connection saved on ``tryton_connector`` for this server.
    ``call``          (function) ``call(method, **body)`` → response of ``tryton_connector.handle`` with the body
                      and the answer JSON round-tripped (as over HTTP); ``ConnectionGuid`` defaults to ``tryton_guid``.

Tests share one server: create records with unique names (``unique("Acme")``) instead of relying on counts.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from portal import tryton_admin
from portal.connectors.builtin.tryton import TrytonConnector
from portal.connectors.builtin.tryton_rpc import TrytonClient

REPO = Path(__file__).resolve().parents[2]


def _ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"1", "true", "yes", "on"}


def _auto_setup() -> bool:
    return _ci() or os.environ.get("PORTAL_TRYTON_SETUP", "").strip().lower() in {"1", "true", "yes", "on"}


@dataclass
class TrytonServer:
    """Handle of the Tryton server started for the test session."""

    url: str
    database: str
    user: str
    password: str
    port: int
    db_dir: Path
    log_file: Path
    home: tryton_admin.TrytonHome
    demo: dict = field(default_factory=dict)
    process: object = None
    rpc: TrytonClient | None = None

    def connection_info(self, **overrides) -> dict:
        info = {"url": self.url, "database": self.database, "user": self.user, "password": self.password,
                "company": "", "timeout": "30"}
        info.update(overrides)
        return info

    def client(self) -> TrytonClient:
        """A new admin JSON-RPC client (its own session)."""
        return TrytonClient(self.url, self.database, self.user, self.password)


@pytest.fixture(scope="session")
def tryton_home() -> tryton_admin.TrytonHome:
    home = tryton_admin.TrytonHome(tryton_admin.default_home(REPO / "instance"))
    wanted = {req.split("==")[0]: req.split("==")[1] for req in tryton_admin.REQUIREMENTS}
    ready = tryton_admin.is_set_up(home) and home.state().get("versions") == wanted
    if not ready:
        if not _auto_setup():
            pytest.skip(f"Tryton is not set up in {home.root}: run `flask --app wsgi tryton setup` "
                        "(or set CI=true / PORTAL_TRYTON_SETUP=1 to let the tests set it up)")
        try:
            tryton_admin.setup(home, tryton_admin.DEFAULT_DB, log=print)
        except Exception as exc:  # under CI a missing/broken Tryton must fail, never skip
            pytest.fail(f"Setting up Tryton in {home.root} failed: {exc}", pytrace=False)
    return home


@pytest.fixture(scope="session")
def tryton(tryton_home, tmp_path_factory) -> TrytonServer:
    state = tryton_home.state()
    name = state.get("database", tryton_admin.DEFAULT_DB)
    db_dir = tmp_path_factory.mktemp("tryton-db")
    tryton_admin.copy_template(tryton_home, db_dir, name)
    port = tryton_admin.free_port()
    log_file = db_dir / "trytond.log"
    proc = tryton_admin.start_server(tryton_home, db_dir, port, name=name, log_file=log_file)
    server = TrytonServer(url=tryton_admin.server_url(port), database=name, user=state.get("user", "admin"),
                          password=tryton_admin.read_password(tryton_home), port=port, db_dir=db_dir,
                          log_file=log_file, home=tryton_home, demo=state.get("demo", {}), process=proc)
    try:
        tryton_admin.wait_ready(server.url, 60, proc, log_file)
        server.rpc = server.client()
        server.rpc.login()
    except Exception as exc:
        tryton_admin.stop_server(proc)
        pytest.fail(f"Tryton did not start: {exc}", pytrace=False)
    yield server
    if server.rpc is not None:
        server.rpc.logout()
    tryton_admin.stop_server(proc)


@pytest.fixture
def tryton_connector(tmp_path) -> TrytonConnector:
    return TrytonConnector(tmp_path / "tryton_connector.sqlite")


@pytest.fixture
def tryton_guid(tryton, tryton_connector) -> str:
    guid = str(uuid.uuid4())
    answer = tryton_connector.handle("SaveConnection", {"ConnectionGuid": guid,
                                                        "ConnectionInfo": tryton.connection_info()})
    assert answer["IsOk"], answer
    return guid


@pytest.fixture
def call(tryton_connector, tryton_guid):
    """call(method, **body): the connector's answer, body and answer JSON round-tripped like over HTTP."""

    def _call(method: str, **body):
        body.setdefault("ConnectionGuid", tryton_guid)
        answer = tryton_connector.handle(method, json.loads(json.dumps(body)))
        return json.loads(json.dumps(answer))

    return _call


@pytest.fixture
def unique():
    """unique("Acme") → "Acme 3f9a1c" so tests sharing one server do not collide."""
    return lambda prefix: f"{prefix} {uuid.uuid4().hex[:6]}"

"""Shared fixtures: an app on a fresh database per test, personas, htmx-aware clients.

Set PORTAL_TEST_DATABASE_URL (e.g. postgresql://user@127.0.0.1:5432/portal_test) to run the
database-touching tests against PostgreSQL instead of a temporary SQLite file.
"""

from __future__ import annotations

import os
import re
import threading
from contextlib import contextmanager

import pytest
from cryptography.fernet import Fernet
from werkzeug.serving import make_server

from portal import create_app
from portal.connectors.conformance import FAIL, format_table
from portal.connectors.service import make_wsgi_app
from portal.extensions import db
from tests.htmx_client import HtmxClient

PASSWORD = "correct horse battery"


def _database_url(tmp_path) -> str:
    return os.environ.get("PORTAL_TEST_DATABASE_URL") or f"sqlite:///{tmp_path / 'portal.db'}"


@pytest.fixture
def app_config(tmp_path):
    """Overrides for create_app(); tests may tweak it before the app fixture runs."""
    return {
        "TESTING": True,
        "SQLALCHEMY_DATABASE_URI": _database_url(tmp_path),
        "INSTANCE_PATH": str(tmp_path / "instance"),
        "DEMO_ERP_DB": str(tmp_path / "demo_erp.db"),
        "ENCRYPTION_KEYS": [Fernet.generate_key().decode()],
        "SECRET_KEY": "test-secret-key-0123456789",
        "WTF_CSRF_ENABLED": False,
        "SCHEDULER": False,
        "DEMO_DATA": False,
        "ADMIN_PASSWORD": PASSWORD,
        "CONNECTOR_TIMEOUT": 5,
    }


@pytest.fixture
def app(app_config):
    application = create_app(app_config, environ={})
    application.test_client_class = HtmxClient
    with application.app_context():
        if application.config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql"):
            db.drop_all()
        db.create_all()
        from portal.services.bootstrap import ensure_default_lists, sync_settings

        sync_settings()
        db.session.commit()
        ensure_default_lists()
    yield application
    with application.app_context():
        db.session.remove()
        if application.config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql"):
            db.drop_all()
        db.engine.dispose()


@pytest.fixture
def app_ctx(app):
    with app.app_context():
        yield


_HASHES: dict[str, str] = {}


@pytest.fixture(scope="module")
def fake_server():
    """A fake connector served on 127.0.0.1 for the whole test module (tests/fakes/connector_app.py)."""
    from tests.fakes.connector_app import FakeConnector

    with FakeConnector() as fake:
        yield fake


@pytest.fixture
def fake(fake_server):
    """The module's fake connector, reset to its seed state and with no faults scripted."""
    fake_server.reset()
    return fake_server


def make_user(email: str, *, role: str = "user", licence: bool = False, name: str | None = None,
              password: str = PASSWORD):
    from portal.models import User

    user = User(email=email, name=name or email.split("@")[0].title(), role=role, erp_licence=licence)
    # scrypt costs ~80 ms a hash; every persona of every test shares one hash per password.
    if password not in _HASHES:
        user.set_password(password)
        _HASHES[password] = user.password_hash
    user.password_hash = _HASHES[password]
    db.session.add(user)
    db.session.commit()
    return user


def add_record(app, model, **values) -> int:
    """A CRM record (``Company``, ``Contact`` …) added straight to the database; returns its id."""
    with app.app_context():
        record = model(**values)
        db.session.add(record)
        db.session.commit()
        return record.id


@pytest.fixture
def users(app):
    """Personas: alice (admin, licensed), bob (user, licensed), carol (user, no licence)."""
    with app.app_context():
        alice = make_user("alice@example.com", role="admin", licence=True, name="Alice Admin")
        bob = make_user("bob@example.com", licence=True, name="Bob User")
        carol = make_user("carol@example.com", name="Carol Outsider")
        return {"alice": alice.id, "bob": bob.id, "carol": carol.id}


def login(client, user_id: int) -> None:
    """Sign in by writing the session directly (fast); tests/integration/test_auth.py covers the form."""
    with client.session_transaction() as session:
        session["user_id"] = user_id


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def admin_client(app, users):
    client = app.test_client()
    login(client, users["alice"])
    return client


@pytest.fixture
def user_client(app, users):
    client = app.test_client()
    login(client, users["bob"])
    return client


@pytest.fixture
def outsider_client(app, users):
    client = app.test_client()
    login(client, users["carol"])
    return client


def csrf_token_from(html: str) -> str:
    match = re.search(r'"X-CSRFToken": "([^"]+)"', html)
    assert match, "no CSRF token in page"
    return match.group(1)


def form_of(html: str) -> dict:
    """The inputs of a rendered form with their values (checked radios/checkboxes only): enough to submit it."""
    data = {}
    for tag in re.findall(r"<input[^>]*>", html):
        name = re.search(r'name="([^"]+)"', tag)
        value = re.search(r'value="([^"]*)"', tag)
        kind = re.search(r'type="([^"]+)"', tag)
        if not name or (kind and kind.group(1) in ("radio", "checkbox") and "checked" not in tag):
            continue
        data[name.group(1)] = value.group(1) if value else ""
    return data


@contextmanager
def served(service, token: str | None = None):
    """A connector ``service`` over real HTTP on 127.0.0.1 (a free port), as ``flask demo-erp serve`` or
    ``flask tryton serve-connector`` would; yields its base URL."""
    server = make_server("127.0.0.1", 0, make_wsgi_app(service, token=token), threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def assert_conformant(results) -> dict[str, str]:
    """Fails with the conformance table if any check failed; returns {check name: status}."""
    failed = [f"{r.name}: {r.reason}" for r in results if r.status == FAIL]
    assert not failed, "conformance failures:\n" + "\n".join(failed) + "\n\n" + format_table(results)
    return {r.name: r.status for r in results}

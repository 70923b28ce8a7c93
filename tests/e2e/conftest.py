"""Browser tests: Playwright driving Debian's Chromium against the portal served on 127.0.0.1.

Fixtures:
- ``live_server`` — a fresh portal (file SQLite DB, Demo ERP data, CSRF on) served by a threaded Werkzeug
  server on 127.0.0.1; ``.url``, ``.app``. Parametrise with ``@pytest.mark.live_server(scheduler=True)`` to
  run the sync scheduler in it (dispatch every few seconds).
- ``admin_page`` — a Playwright page signed in as the first admin (admin@example.com / ADMIN_PASSWORD).
- ``sign_in(page, email, password=PASSWORD)`` — signs a page in through the login form.
- ``make_portal_user(email, licence=True, role="user")`` — creates a user in the live server's database.

Chromium comes from Debian (/usr/bin/chromium); Playwright never downloads a browser. Without Chromium the
tests are skipped — except under CI=true, where they fail.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest
from cryptography.fernet import Fernet
from werkzeug.serving import make_server

from tests.conftest import PASSWORD

CHROMIUM = "/usr/bin/chromium"
ADMIN_EMAIL = "admin@example.com"


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "/e2e/" in str(item.fspath):
            item.add_marker(pytest.mark.e2e)


def pytest_configure(config):
    config.addinivalue_line("markers", "live_server(scheduler=False): options of the live_server fixture")


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    if not Path(CHROMIUM).exists():
        message = f"{CHROMIUM} is missing: install Debian's chromium package (make test does it as root)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return {
        **browser_type_launch_args,
        "executable_path": CHROMIUM,
        "args": ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic", "--disable-dev-shm-usage"],
    }


@pytest.fixture
def browser_context_args(browser_context_args):
    return {**browser_context_args, "viewport": {"width": 1400, "height": 1000}}


@pytest.fixture
def live_server(request, tmp_path):
    from portal import create_app
    from portal.extensions import db
    from portal.services.bootstrap import initialise

    marker = request.node.get_closest_marker("live_server")
    options = marker.kwargs if marker else {}
    instance = tmp_path / "instance"
    config = {
        "TESTING": False,
        "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / 'portal.db'}",
        "INSTANCE_PATH": str(instance),
        "DEMO_ERP_DB": str(tmp_path / "demo_erp.db"),
        "ENCRYPTION_KEYS": [Fernet.generate_key().decode()],
        "SECRET_KEY": "e2e-secret-key-0123456789",
        "SCHEDULER": bool(options.get("scheduler", False)),
        "SCHEDULER_DISPATCH_SECONDS": options.get("dispatch_seconds", 2),
        "DEMO_DATA": True,
        "ADMIN_EMAIL": ADMIN_EMAIL,
        "ADMIN_PASSWORD": PASSWORD,
        "CONNECTOR_TIMEOUT": 10,
    }
    app = create_app(config, environ={})
    with app.app_context():
        db.create_all()
        initialise(app.config)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    scheduler = None
    if config["SCHEDULER"]:
        from jobs.scheduler import start_scheduler

        scheduler = start_scheduler(app)
    yield SimpleNamespace(url=f"http://127.0.0.1:{server.server_port}", app=app)
    if scheduler is not None:
        from jobs import scheduler as scheduler_module

        scheduler.shutdown(wait=True)
        lock = scheduler_module._state.get("lock")
        if lock is not None:
            lock.close()
        scheduler_module._state.update(app=None, scheduler=None, lock=None)
    server.shutdown()
    thread.join(timeout=5)
    with app.app_context():
        db.session.remove()
        db.engine.dispose()


def _sign_in(page, base_url: str, email: str, password: str = PASSWORD) -> None:
    page.goto(f"{base_url}/login")
    page.get_by_label("E-mail").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: "/login" not in url)


@pytest.fixture
def sign_in(live_server):
    def sign_in(page, email: str, password: str = PASSWORD):
        _sign_in(page, live_server.url, email, password)
        return page

    return sign_in


@pytest.fixture
def admin_page(page, live_server):
    page.on("dialog", lambda dialog: dialog.accept())  # hx-confirm / confirm() dialogs
    _sign_in(page, live_server.url, ADMIN_EMAIL)
    return page


@pytest.fixture
def make_portal_user(live_server):
    def make(email: str, *, licence: bool = True, role: str = "user", name: str | None = None) -> int:
        from tests.conftest import make_user

        with live_server.app.app_context():
            return make_user(email, role=role, licence=licence, name=name).id

    return make

"""A sync subprocess killed (SIGKILL) in the middle of a run leaves no half-applied record, and the next run
completes the work: both sides end up exactly as after a run that was never interrupted."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select

from portal import create_app
from portal.extensions import db
from portal.models import Company, Connection, Link, RunStatus
from portal.services.sync import fieldmap, runs
from tests import sync_support as s
from tests.fakes.connector_app import FakeConnector

ROOT = Path(__file__).resolve().parents[2]
COMPANIES = 120
CHILD = """
import json, os
from portal import create_app
app = create_app(json.loads(os.environ["CRASH_CONFIG"]), environ={})
with app.app_context():
    from portal.services.sync import engine
    print(engine.execute_run(int(os.environ["CRASH_RUN"])).status, flush=True)
"""


@pytest.fixture(scope="module")
def fake():
    with FakeConnector() as server:
        yield server


def _config(tmp_path: Path, name: str, key: str) -> dict:
    return {
        "TESTING": True, "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path / name}.db",
        "INSTANCE_PATH": str(tmp_path / f"{name}-instance"), "DEMO_ERP_DB": str(tmp_path / f"{name}-demo.db"),
        "ENCRYPTION_KEYS": [key], "SECRET_KEY": "crash-test-secret-key-0123", "WTF_CSRF_ENABLED": False,
        "SCHEDULER": False, "DEMO_DATA": False, "CONNECTOR_TIMEOUT": 30, "SYNC_BATCH_SIZE": 10,
        "SYNC_PAGE_SIZE": 25,
    }


def _scenario(config: dict, fake) -> tuple:
    """The same start on both sides for every caller: linked companies, then edits in the CRM, the ERP, both."""
    fake.reset()
    app = create_app(config, environ={})
    with app.app_context():
        db.create_all()
        from portal.services.bootstrap import ensure_default_lists, sync_settings

        sync_settings()
        db.session.commit()
        ensure_default_lists()
        cid = s.make_connection(fake)
        linked = [s.link_company(fake, cid, name=f"Company {n:03d}", phone=f"{n}", email=f"c{n}@example.com")
                  for n in range(COMPANIES)]
        for n, (company_id, key, _link) in enumerate(linked):
            if n % 3 == 0:
                s.edit_company(company_id, phone=f"crm-{n}")
            if n % 3 == 1:
                fake.update_actor("Customer", key, {"email": f"erp-{n}@example.com"})
            if n % 4 == 0:  # both sides: a conflict (the CRM wins by priority)
                fake.update_actor("Customer", key, {"phone": f"erp-{n}"})
            if n % 5 == 0:
                s.edit_company(company_id, vat_no=f"VAT{n}")
    return app, cid


def _sides(app, fake) -> tuple[dict, dict]:
    with app.app_context():
        crm = {c.name: (c.phone, c.email, c.vat_no, c.country_id) for c in db.session.scalars(select(Company))}
        db.session.remove()
    erp = {a["FieldValues"]["name"]: tuple(a["FieldValues"].get(k) for k in ("phone", "email", "orgnr"))
           for a in fake.service.all_actors("Customer")}
    return crm, erp


def _assert_no_half_applied_record(app, cid) -> int:
    """Every link the killed run marked as synced has the CRM record's values as its base."""
    checked = 0
    with app.app_context():
        connection = db.session.get(Connection, cid)
        fields = fieldmap.mapped_fields(connection.actor_type("Customer"), synced_only=True)
        for link in db.session.scalars(select(Link).where(Link.connection_id == cid)):
            company = db.session.get(Company, link.crm_id)
            if link.crm_synced_at == company.updated_at:
                values, _errors = fieldmap.crm_side(company, fields, link.base)
                assert values == {k: link.base.get(k) for k in values}, (company.name, values, link.base)
                checked += 1
        db.session.remove()
    return checked


def test_a_killed_sync_leaves_nothing_half_done_and_the_next_run_completes_it(tmp_path, fake):
    key = Fernet.generate_key().decode()

    # The reference: a run that is never interrupted.
    reference_app, reference_cid = _scenario(_config(tmp_path, "reference", key), fake)
    with reference_app.app_context():
        outcome = s.run(reference_cid)
        assert outcome.status == RunStatus.SUCCEEDED, outcome.message
        assert outcome.counts["conflicts"] > 0 and outcome.counts["to_crm"] > 0 and outcome.counts["to_erp"] > 0
    expected = _sides(reference_app, fake)
    with reference_app.app_context():
        db.engine.dispose()

    # The same start again; the sync runs in a subprocess that is killed mid-run.
    config = _config(tmp_path, "crashed", key)
    app, cid = _scenario(config, fake)
    with app.app_context():
        run_id = s.run_request(cid)
        db.session.remove()
    fake.requests.clear()
    fake.delay(0.3, method="SaveActors", after_processing=True)  # the ERP writes, then answers late
    env = {**os.environ, "CRASH_CONFIG": json.dumps(config), "CRASH_RUN": str(run_id),
           "PYTHONPATH": str(ROOT), "PORTAL_SCHEDULER": "off"}
    child = subprocess.Popen([sys.executable, "-c", CHILD], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while len(fake.calls_to("SaveActors")) < 4:
            assert child.poll() is None, child.communicate()
            assert time.monotonic() < deadline, "the sync never reached its fourth SaveActors"
            time.sleep(0.02)
        time.sleep(0.1)  # the fourth batch is written in the ERP; its answer (and the CRM side) is pending
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
    finally:
        if child.poll() is None:
            child.kill()
        child.communicate()
    fake.delay(0)
    assert child.returncode == -signal.SIGKILL

    assert _sides(app, fake) != expected  # it really was interrupted
    assert _assert_no_half_applied_record(app, cid) > 0
    with app.app_context():
        killed = s.get_run(run_id)
        assert killed.status == RunStatus.RUNNING and killed.progress_done > 0
        assert runs.reap_stale(lease_seconds=0) == 1
        killed = s.get_run(run_id)
        assert killed.status == RunStatus.FAILED and killed.error.startswith("Abandoned")
        recovery = s.run(cid)
        assert recovery.status == RunStatus.SUCCEEDED, recovery.message
        assert s.run(cid).counts.get("to_crm", 0) == 0  # and nothing is left over
        db.session.remove()
    assert _sides(app, fake) == expected
    with app.app_context():
        db.engine.dispose()

"""Benchmark of one sync run against a live Tryton (issue #7): 500 linked parties, 50 of them changed.

    .venv/bin/python -m bench.tryton_bench                         # 500 parties, 25 changed in Tryton + 25 in the CRM
    .venv/bin/python -m bench.tryton_bench --parties 2000 --changes 200 --keep

Needs ``flask --app wsgi tryton setup`` (or ``PORTAL_TRYTON_HOME`` pointing at a Tryton home). What it does:

1. starts ``trytond`` from the Tryton home's virtualenv on a free port of 127.0.0.1, on a fresh copy of
   ``template.sqlite`` in a temporary folder (exactly like the test fixtures in tests/tryton/conftest.py);
2. creates N customers in Tryton through its JSON-RPC API in batches (one ``create`` call per 250 parties, each with
   the "Customer" category, an e-mail, a phone and an address);
3. builds a temporary portal database (SQLite): a ``builtin:tryton`` connector, a connection saved on it, Customer
   mapped to companies (NAME, EMAIL, PHONE, POSTALCITY both ways) and active, and — with bulk inserts, as
   bench/sync_bench.py does for the Demo ERP — N companies with the same values linked to the N parties with the
   agreed base, each link's LastModified as the connector reports it, and the connection's cursor after the last;
4. in this process (like the long-lived web process that runs the scheduler), runs one sync with nothing changed
   (it warms up: the connector logs in to Tryton), then changes C/2 parties in Tryton (name, and the e-mail
   contact mechanism on its own) and C/2 other companies in the CRM (phone, city), and times **one** sync run;
5. checks that every change arrived on the other side, prints the table and stops the server.

Columns: connector seconds is the time spent inside connector calls (``SyncRun.connector_seconds``; the in-process
connector's time is mostly waiting on Tryton), portal seconds = run − connector.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from bench import markdown_table

ROOT = Path(__file__).resolve().parent.parent
GUID = "7d3c9b2e-4f5a-4e61-9a8b-0c1d2e3f4a5b"
MAPPED = {"NAME": "name", "EMAIL": "email", "PHONE": "phone", "POSTALCITY": "postal_city"}
CITIES = ("Leipzig", "Trondheim", "Uppsala", "Odense", "Tampere", "Graz", "Basel", "Utrecht")
CREATE_CHUNK = 250


@dataclass
class TrytonServer:
    url: str
    database: str
    user: str
    password: str
    customer_category: int


@contextmanager
def tryton_server(work: Path):
    """A trytond on a free port of 127.0.0.1 serving a fresh copy of the template database (stopped after)."""
    from portal import tryton_admin

    home = tryton_admin.TrytonHome(tryton_admin.default_home(ROOT / "instance"))
    if not tryton_admin.is_set_up(home):
        raise SystemExit(f"Tryton is not set up in {home.root}: run `flask --app wsgi tryton setup` first.")
    state = home.state()
    name = state.get("database", tryton_admin.DEFAULT_DB)
    db_dir = work / "tryton-db"
    tryton_admin.copy_template(home, db_dir, name)
    port = tryton_admin.free_port()
    log_file = db_dir / "trytond.log"
    proc = tryton_admin.start_server(home, db_dir, port, name=name, log_file=log_file)
    try:
        url = tryton_admin.server_url(port)
        tryton_admin.wait_ready(url, 60, proc, log_file)
        yield TrytonServer(url, name, state.get("user", "admin"), tryton_admin.read_password(home),
                           state["demo"]["categories"]["Customer"])
    finally:
        tryton_admin.stop_server(proc)


def _config(work: Path) -> dict:
    from cryptography.fernet import Fernet

    return {
        "TESTING": False, "SCHEDULER": False, "DEMO_DATA": False, "WTF_CSRF_ENABLED": False,
        "SQLALCHEMY_DATABASE_URI": f"sqlite:///{work / 'portal.db'}", "INSTANCE_PATH": str(work / "instance"),
        "DEMO_ERP_DB": str(work / "unused-demo.db"), "TRYTON_CONNECTOR_STATE": str(work / "tryton_connector.sqlite"),
        "SECRET_KEY": "benchmark-secret-key-0123456789", "ENCRYPTION_KEYS": [Fernet.generate_key().decode()],
        "CONNECTOR_TIMEOUT": 120, "LOG_LEVEL": "WARNING",
    }


def _party_values(n: int, tag: str) -> dict:
    return {"name": f"Bench Party {tag} {n:05d}", "email": f"post{n}@party{n}.example",
            "phone": f"+49 30 {1000000 + n}", "city": CITIES[n % len(CITIES)]}


# ------------------------------------------------------------------------------------------------ setup


def create_parties(rpc, server: TrytonServer, count: int, tag: str) -> list[int]:
    """``count`` customers in Tryton, a few batched ``create`` calls; returns their ids in order."""
    ids: list[int] = []
    for start in range(0, count, CREATE_CHUNK):
        batch = []
        for n in range(start, min(count, start + CREATE_CHUNK)):
            v = _party_values(n, tag)
            batch.append({"name": v["name"], "categories": [["add", [server.customer_category]]],
                          "contact_mechanisms": [["create", [{"type": "email", "value": v["email"]},
                                                             {"type": "phone", "value": v["phone"]}]]],
                          "addresses": [["create", [{"city": v["city"]}]]]})
        ids += rpc.model("party.party", "create", batch)
    return ids


def build(server: TrytonServer, party_ids: list[int]) -> int:
    """Connection, mapping and N linked companies (bulk). Call inside an app context; returns the connection id."""
    from sqlalchemy import insert

    from portal.database import utcnow
    from portal.extensions import db
    from portal.models import Company, Connection, Connector, Link
    from portal.services.bootstrap import ensure_default_lists, sync_settings
    from portal.services.connections import apply_catalogue, fetch_catalogue
    from portal.services.connectors import client_for
    from portal.services.sync import fieldmap
    from portal.services.sync.engine import stamp_key
    from portal.services.sync_settings import ensure_in_priority

    db.create_all()
    settings = sync_settings()
    settings.auto_sync = False
    db.session.commit()
    ensure_default_lists()
    connector = Connector(name="Tryton (builtin)", url="builtin:tryton")
    db.session.add(connector)
    db.session.flush()
    info = {"url": server.url, "database": server.database, "user": server.user, "password": server.password,
            "company": "", "timeout": "60"}
    client = client_for(connector, timeout=120)
    client.save_connection(GUID, info)
    connection = Connection(connector=connector, name="Tryton", guid=GUID, active=True, last_test_ok=True,
                            config_values={k: v for k, v in info.items() if k != "password"})
    from portal.security import crypto

    connection.secrets_encrypted = crypto.encrypt_json({"password": server.password})
    db.session.add(connection)
    db.session.flush()
    apply_catalogue(connection, fetch_catalogue(connector, GUID))
    config = connection.actor_type("Customer")
    config.is_active = True
    for erp_field in config.fields:
        erp_field.crm_field = MAPPED.get(erp_field.field_key)
        erp_field.sync_to_crm = erp_field.sync_to_erp = erp_field.crm_field is not None
    ensure_in_priority(connection.id)
    db.session.commit()
    fields = fieldmap.mapped_fields(config, synced_only=True)

    # What the engine will see: the parties as the connector reports them (values and LastModified).
    actors = client.get_actors(GUID, "Customer", [str(i) for i in party_ids], list(MAPPED))
    client.close()
    assert len(actors) == len(party_ids), f"the connector returned {len(actors)} of {len(party_ids)} parties"
    now = utcnow()
    rows, bases = [], []
    for actor in actors:
        base, errors = fieldmap.erp_side(actor["FieldValues"], fields)
        assert not errors, errors
        crm, errors = fieldmap.to_crm_values(base, fields)
        assert not errors, errors
        rows.append({**crm, "created_at": now, "updated_at": now})
        bases.append(base)
    ids = db.session.execute(insert(Company).returning(Company.id), rows).scalars().all()
    db.session.execute(insert(Link), [
        {"connection_id": connection.id, "crm_type": "company", "crm_id": company_id, "erp_actor_type": "Customer",
         "erp_key": actor["ErpKey"], "base": base, "status": "ok", "status_message": "", "last_result": "",
         "failures": 0, "erp_last_modified": actor["LastModified"], "last_synced_at": now, "crm_synced_at": now,
         "created_at": now, "updated_at": now}
        for company_id, actor, base in zip(ids, actors, bases, strict=True)])
    connection.cursors = {"Customer": max((a["LastModified"] for a in actors), key=stamp_key)}
    db.session.commit()
    return connection.id


def make_changes(rpc, party_ids: list[int], changes: int) -> tuple[dict[int, dict], dict[int, dict]]:
    """Half of ``changes`` parties edited in Tryton (name, and the e-mail mechanism on its own), the other half
    other companies edited in the CRM (phone, city). Returns ({party id: new values}, {company id: new values})."""
    from sqlalchemy import select, update

    from portal.database import utcnow
    from portal.extensions import db
    from portal.models import Company, Link

    in_tryton = changes // 2
    step = max(1, len(party_ids) // changes)
    picked = [party_ids[i * step] for i in range(changes)]
    tryton_side, crm_side = picked[:in_tryton], picked[in_tryton:]

    tryton_new = {pid: {"name": f"Renamed in Tryton {pid}", "email": f"changed{pid}@tryton.example"}
                  for pid in tryton_side}
    pairs: list = []
    for pid, values in tryton_new.items():
        pairs += [[pid], {"name": values["name"]}]
    rpc.model("party.party", "write", *pairs)
    mechanisms = rpc.search_read("party.contact_mechanism", [["party", "in", tryton_side], ["type", "=", "email"]],
                                 ["party"])
    pairs = []
    for row in mechanisms:
        pairs += [[row["id"]], {"value": tryton_new[row["party"]]["email"]}]
    rpc.model("party.contact_mechanism", "write", *pairs)

    company_of = dict(db.session.execute(select(Link.erp_key, Link.crm_id)).all())
    crm_new = {company_of[str(pid)]: {"phone": f"+49 40 {pid:07d}", "postal_city": "Changed City"}
               for pid in crm_side}
    moment = utcnow() + timedelta(microseconds=1)
    db.session.execute(update(Company), [{"id": cid, **values, "updated_at": moment}
                                         for cid, values in crm_new.items()])
    db.session.commit()
    return tryton_new, crm_new


def one_run(connection_id: int) -> dict:
    from portal.extensions import db
    from portal.models import RunKind, SyncRun
    from portal.services.sync import engine, runs

    run, _created = runs.request_run(connection_id, kind=RunKind.SYNC, trigger="cli", requested_by="benchmark")
    started = time.perf_counter()
    outcome = engine.execute_run(run.id)
    seconds = time.perf_counter() - started
    row = db.session.get(SyncRun, run.id)
    result = {"status": str(outcome.status), "message": outcome.message, "seconds": seconds,
              "connector_seconds": row.connector_seconds or 0.0, "calls": outcome.counts.get("connector_calls", 0),
              "records": outcome.counts.get("records", 0), "to_crm": outcome.counts.get("to_crm", 0),
              "to_erp": outcome.counts.get("to_erp", 0), "conflicts": outcome.counts.get("conflicts", 0)}
    db.session.commit()
    return result


def verify(rpc, tryton_new: dict[int, dict], crm_new: dict[int, dict]) -> list[str]:
    """Every change arrived on the other side: the problems (empty = all good)."""
    from sqlalchemy import select

    from portal.extensions import db
    from portal.models import Company, Link

    problems = []
    db.session.expire_all()
    company_of = dict(db.session.execute(select(Link.erp_key, Link.crm_id)).all())
    for pid, values in tryton_new.items():
        company = db.session.get(Company, company_of[str(pid)])
        if (company.name, company.email) != (values["name"], values["email"]):
            problems.append(f"party {pid}: the CRM has {company.name!r}/{company.email!r}")
    party_of = {cid: int(key) for key, cid in company_of.items()}
    pids = [party_of[cid] for cid in crm_new]
    phones = {row["party"]: row["value"] for row in rpc.search_read(
        "party.contact_mechanism", [["party", "in", pids], ["type", "=", "phone"]], ["party", "value"])}
    cities = {row["party"]: row["city"] for row in rpc.search_read(
        "party.address", [["party", "in", pids]], ["party", "city"])}
    for cid, values in crm_new.items():
        pid = party_of[cid]
        if (phones.get(pid), cities.get(pid)) != (values["phone"], values["postal_city"]):
            problems.append(f"company {cid}: Tryton has {phones.get(pid)!r}/{cities.get(pid)!r}")
    db.session.commit()
    return problems


# ------------------------------------------------------------------------------------------------ the run


def measure(server: TrytonServer, work: Path, parties: int, changes: int, out=sys.stdout,
            app_config: dict | None = None) -> list[dict]:
    """Set up against a running ``server``, time the runs, print the table; returns the measured rows.
    ``app_config`` overrides the portal's config (tests keep their log level)."""
    import uuid

    from portal import create_app
    from portal.connectors.builtin.tryton_rpc import TrytonClient
    from portal.extensions import db

    rpc = TrytonClient(server.url, server.database, server.user, server.password, timeout=300)
    rpc.login()
    app = create_app({**_config(work), **(app_config or {})}, environ={})
    try:
        started = time.perf_counter()
        party_ids = create_parties(rpc, server, parties, uuid.uuid4().hex[:6])
        created = time.perf_counter() - started
        with app.app_context():
            connection_id = build(server, party_ids)
            print(f"setup: {parties:,} parties created in Tryton in {created:.1f} s, linked in "
                  f"{time.perf_counter() - started - created:.1f} s ({work})", file=out)
            results = [{"scenario": "nothing changed (warm-up: logs in)", "changed": 0, **one_run(connection_id)}]
            tryton_new, crm_new = make_changes(rpc, party_ids, changes)
            label = f"{len(tryton_new)} changed in Tryton + {len(crm_new)} in the CRM"
            results.append({"scenario": label, "changed": changes, **one_run(connection_id)})
            problems = verify(rpc, tryton_new, crm_new)
            results.append({"scenario": "nothing changed (after the changes)", "changed": 0,
                            **one_run(connection_id)})
            db.session.remove()
            db.engine.dispose()
    finally:
        rpc.logout()
    rows = [[r["scenario"], f"{parties:,}", str(r["changed"]), r["status"], str(r["records"]), str(r["to_crm"]),
             str(r["to_erp"]), str(r["calls"]), f"{r['seconds']:.2f}", f"{r['connector_seconds']:.2f}",
             f"{r['seconds'] - r['connector_seconds']:.2f}"] for r in results]
    print(markdown_table(rows, ["Run", "Parties", "Changed", "Status", "Records", "To CRM", "To Tryton", "Connector calls",
                        "Run s", "Connector s", "Portal s"]), file=out)
    print("every change arrived on the other side" if not problems else
          f"{len(problems)} change(s) did NOT arrive: " + "; ".join(problems[:5]), file=out)
    for r in results:
        r["problems"] = problems
    return results


def run_benchmark(parties: int = 500, changes: int = 50, keep: bool = False, out=sys.stdout) -> list[dict]:
    work = Path(tempfile.mkdtemp(prefix="tryton-bench-"))
    try:
        with tryton_server(work) as server:
            return measure(server, work, parties, changes, out)
    finally:
        if not keep:
            shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parties", type=int, default=500)
    parser.add_argument("--changes", type=int, default=50, help="half changed in Tryton, half in the CRM")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (databases, Tryton log)")
    args = parser.parse_args(argv)
    if args.parties < 1 or not 2 <= args.changes <= args.parties:
        parser.error("--changes must be between 2 and --parties")
    results = run_benchmark(args.parties, args.changes, keep=args.keep)
    return 1 if results[1]["problems"] or results[1]["status"] != "succeeded" else 0


if __name__ == "__main__":
    sys.exit(main())

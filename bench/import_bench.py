"""Benchmark of Import from ERP (issue #6): 5,000 customers and 10,000 persons from the Demo ERP over HTTP.

Budget: the import (one run: customers, then their persons, with duplicate matching by name, "merge", new list
items added) takes at most 30 s and the portal process peaks at no more than 300 MB.

    python -m bench.import_bench                      # the issue's figures
    python -m bench.import_bench --customers 500 --persons 1000   # a quick run

The Demo ERP is seeded and served by a child process (a threaded Werkzeug server on 127.0.0.1), so the portal
process measured here does only the portal's work: HTTP client, planning, SQLite writes. The portal uses a
file SQLite database in a temporary directory (WAL, as in production). A second, unchanged run is timed too:
it shows that re-running an import updates nothing and creates nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import memory

BUDGET_SECONDS = 30.0
BUDGET_MB = 300.0


def serve_demo(path: str, customers: int, persons: int) -> None:
    """Child process: seed a Demo ERP with ``customers``/``persons`` and serve it; prints the port, then blocks."""
    from werkzeug.serving import WSGIRequestHandler, make_server

    from portal.connectors.builtin.demo import DemoErpConnector
    from portal.connectors.builtin.demo_seed import generate_seed
    from portal.connectors.service import make_wsgi_app

    demo = DemoErpConnector(path, seed=False)
    data = generate_seed(customers=customers, suppliers=0, persons=persons, projects=0)
    keys = demo.bulk_create("Customer", data.customers)
    demo.bulk_create("Person", [fields for _t, _i, fields in data.persons],
                     parent=[("Customer", keys[index]) for _t, index, _f in data.persons])

    class QuietHandler(WSGIRequestHandler):
        def log_request(self, *args, **kwargs):
            pass

    server = make_server("127.0.0.1", 0, make_wsgi_app(demo), threaded=True, request_handler=QuietHandler)
    print(server.server_port, flush=True)
    server.serve_forever()


def _setup_portal(tmp: Path, url: str):
    from cryptography.fernet import Fernet

    from portal import create_app
    from portal.extensions import db
    from portal.models import Connection, Connector, CrmList, ListItem, ListItemMapping
    from portal.services.bootstrap import ensure_default_lists, sync_settings
    from portal.services.connections import apply_catalogue, fetch_catalogue
    from portal.services.connectors import client_for

    app = create_app({
        "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp / 'portal.db'}", "INSTANCE_PATH": str(tmp / "instance"),
        "SECRET_KEY": "bench-secret-key-0123456789", "ENCRYPTION_KEYS": [Fernet.generate_key().decode()],
        "SCHEDULER": False, "DEMO_DATA": False, "CONNECTOR_TIMEOUT": 60, "LOG_LEVEL": "WARNING",
        "DEMO_ERP_DB": str(tmp / "unused_demo.db"),
    }, environ={})
    with app.app_context():
        db.create_all()
        sync_settings()
        db.session.commit()
        ensure_default_lists()
        connector = Connector(name="Demo ERP over HTTP", url=url)
        db.session.add(connector)
        db.session.commit()
        guid = "6f1c3f8e-2b7a-4d0e-9a51-0c7f2d1b9e11"
        client_for(connector).save_connection(guid, {"CompanyDb": "DEMO"})
        connection = Connection(connector_id=connector.id, name="Demo ERP", guid=guid, active=True,
                                last_test_ok=True, config_values={"CompanyDb": "DEMO"})
        db.session.add(connection)
        db.session.flush()
        apply_catalogue(connection, fetch_catalogue(connector, guid))
        for actor_type in ("Customer", "Person"):
            config = connection.actor_type(actor_type)
            config.is_active = True
            for erp_field in config.fields:  # the automatic pre-mapping (spec §3.5), both directions
                if erp_field.crm_field:
                    erp_field.sync_to_crm = True
                    erp_field.sync_to_erp = not erp_field.read_only
        # Map the countries the CRM knows by name; the rest are added by the import (list policy "add").
        names = {i.name: i.id for i in db.session.query(ListItem).filter(ListItem.list_name == CrmList.COUNTRY)}
        country = next(f for f in connection.actor_type("Customer").fields if f.field_key == "COUNTRY")
        texts = client_for(connector).get_list(guid, "countries")
        country.list_mappings = [ListItemMapping(erp_item_key=key, erp_item_text=text, crm_item_id=names[text])
                                 for key, text in texts.items() if text in names]
        db.session.commit()
        return app, connection.id


def _run(app, connection_id: int) -> tuple[float, dict, int]:
    from portal.extensions import db
    from portal.models import Connection, SyncRun
    from portal.services.importer import ImportRequest, ImportSettings, execute_import, start_import

    with app.app_context():
        connection = db.session.get(Connection, connection_id)
        request = ImportRequest(connection_id, "Customer", restrictions=[], all_results=True,
                                settings=ImportSettings(company_match="name", company_action="merge",
                                                        contact_match="name", contact_action="merge",
                                                        list_policy="add", include_persons=True))
        run_id = start_import(connection, request).id
    started = time.perf_counter()
    with app.app_context():
        execute_import(run_id)
    seconds = time.perf_counter() - started
    with app.app_context():
        run = db.session.get(SyncRun, run_id)
        return seconds, dict(run.counts or {}), run.progress_done, run.status


def _database_counts(app) -> dict:
    from sqlalchemy import func, select

    from portal.extensions import db
    from portal.models import Company, Contact, Link, SyncChange

    with app.app_context():
        return {name: db.session.scalar(select(func.count()).select_from(model))
                for name, model in (("companies", Company), ("contacts", Contact), ("links", Link),
                                    ("sync_log_rows", SyncChange))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=5000)
    parser.add_argument("--persons", type=int, default=10000)
    parser.add_argument("--serve-demo", metavar="PATH", help=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    if args.serve_demo:
        serve_demo(args.serve_demo, args.customers, args.persons)
        return 0

    with tempfile.TemporaryDirectory(prefix="import-bench-") as tmpdir:
        tmp = Path(tmpdir)
        seeding = time.perf_counter()
        child = subprocess.Popen(
            [sys.executable, "-m", "bench.import_bench", "--serve-demo", str(tmp / "demo_erp.db"),
             "--customers", str(args.customers), "--persons", str(args.persons)],
            stdout=subprocess.PIPE, text=True, cwd=str(Path(__file__).resolve().parent.parent),
            env={**os.environ, "PYTHONUNBUFFERED": "1"})
        try:
            port_line = child.stdout.readline().strip()
            if not port_line.isdigit():
                print("the Demo ERP server did not start", file=sys.stderr)
                return 2
            seed_seconds = time.perf_counter() - seeding
            app, connection_id = _setup_portal(tmp, f"http://127.0.0.1:{port_line}/")
            before_mb = memory.current_mb()
            memory.reset_peak()
            seconds, counts, done, status = _run(app, connection_id)
            peak_mb = memory.peak_mb()
            totals = _database_counts(app)
            memory.reset_peak()
            rerun_seconds, rerun_counts, _done, rerun_status = _run(app, connection_id)
            rerun_peak_mb = memory.peak_mb()
        finally:
            child.terminate()
            child.wait(timeout=10)

    figures = {
        "customers": args.customers, "persons": args.persons, "status": status, "actors_processed": done,
        "import_seconds": round(seconds, 2), "actors_per_second": round(done / seconds) if seconds else None,
        "peak_rss_mb": round(peak_mb, 1), "rss_before_import_mb": round(before_mb, 1),
        "new": counts.get("new"), "updated": counts.get("updated"), "errors": counts.get("errors"),
        "list_items_added": counts.get("list_items_added"), **totals,
        "rerun_seconds": round(rerun_seconds, 2), "rerun_status": rerun_status,
        "rerun_new": rerun_counts.get("new"), "rerun_unchanged": rerun_counts.get("unchanged"),
        "peak_rss_after_rerun_mb": round(rerun_peak_mb, 1), "demo_erp_seed_seconds": round(seed_seconds, 1),
        "budget_seconds": BUDGET_SECONDS, "budget_mb": BUDGET_MB,
    }
    ok = (status == "succeeded" and seconds <= BUDGET_SECONDS and peak_mb <= BUDGET_MB
          and totals["companies"] == args.customers and totals["contacts"] == args.persons)
    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        print(f"Import from ERP: {args.customers} customers + {args.persons} persons over HTTP")
        print(f"  import: {seconds:.2f} s ({figures['actors_per_second']} actors/s), status {status}")
        print(f"  peak RSS: {peak_mb:.1f} MB (before the import {before_mb:.1f} MB)")
        print(f"  created: {totals['companies']} companies, {totals['contacts']} contacts, {totals['links']} links, "
              f"{totals['sync_log_rows']} sync-log rows; {counts.get('list_items_added')} list item(s) added")
        print(f"  re-run: {rerun_seconds:.2f} s, {rerun_counts.get('new')} new, "
              f"{rerun_counts.get('unchanged')} unchanged (status {rerun_status})")
        print(f"  budget: <= {BUDGET_SECONDS:.0f} s and <= {BUDGET_MB:.0f} MB -> {'OK' if ok else 'OVER BUDGET'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

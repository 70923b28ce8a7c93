"""Benchmark of Import from ERP (issue #6): 5,000 customers and 10,000 persons from the Demo ERP over HTTP.

Budget: the import (one run: customers, then their persons, with duplicate matching by name, "merge", new list
items added) takes at most 30 s and the portal process peaks at no more than 300 MB.

    python -m bench.import_bench                      # the issue's figures
    python -m bench.import_bench --customers 500 --persons 1000   # a quick run

The Demo ERP is seeded and served by a child process (a threaded Werkzeug server on 127.0.0.1), so the portal
process measured here does only the portal's work: HTTP client, planning, SQLite writes. The portal uses a
file SQLite database in a temporary directory (WAL, as in production). A second, unchanged run is timed too:
it shows that re-running an import updates nothing and creates nothing.

Issue #19's target: the import's own time at most 2x its **floor** per actor. The portal's own time is the run's
seconds minus the seconds it waited on the connector (``SyncRun.connector_seconds``); the floor is plain ``sqlite3``
(or ``psycopg``) code, on a copy of the database taken just before the import (same schema: the portal's metadata,
search-index triggers included), that does what the import must do in the database: the reads the import makes
(its SELECTs as sent, replayed), and the rows it wrote — companies, contacts, links, change-log rows, exactly as
stored after the run — each as one ``executemany`` per table (one ``COPY`` on PostgreSQL, as the portal's bulk
INSERTs) in the same transactions as the portal (the same number of rows of each table in each transaction), plus
its other writes (the run's progress, list items) as sent.
Whatever the shape of the portal's writes (row by row or in bulk), the floor writes the same rows the fast way; a
leaner change log makes the floor leaner too. The unchanged re-run's floor is the plain replay of its statements
(``bench/floor.py``).

    python -m bench.import_bench --database-url postgresql://portal@127.0.0.1:55460/portal_test   # also PostgreSQL
    python -m bench.import_bench --repeat 3                                                         # medians
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import floor, memory

BUDGET_SECONDS = 30.0
BUDGET_MB = 300.0
TARGET_RATIO = 2.0  # issue #19: the import's own time per actor at most 2x its floor
FLOOR_TABLES = ("company", "contact", "link", "sync_change")  # the rows written as executemany by the floor


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


def _setup_portal(tmp: Path, url: str, database_url: str | None = None):
    from cryptography.fernet import Fernet

    from portal import create_app
    from portal.extensions import db
    from portal.models import Connection, Connector, CrmList, ListItem, ListItemMapping
    from portal.services.bootstrap import ensure_default_lists, sync_settings
    from portal.services.connections import apply_catalogue, fetch_catalogue
    from portal.services.connectors import client_for

    app = create_app({
        "SQLALCHEMY_DATABASE_URI": database_url or f"sqlite:///{tmp / 'portal.db'}",
        "INSTANCE_PATH": str(tmp / "instance"),
        "SECRET_KEY": "bench-secret-key-0123456789", "ENCRYPTION_KEYS": [Fernet.generate_key().decode()],
        "SCHEDULER": False, "DEMO_DATA": False, "CONNECTOR_TIMEOUT": 60, "LOG_LEVEL": "WARNING",
        "DEMO_ERP_DB": str(tmp / "unused_demo.db"),
    }, environ={})
    with app.app_context():
        if db.engine.dialect.name != "sqlite":
            db.drop_all()  # a server database outlives the bench's temporary directory
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


def _run(app, connection_id: int, record: bool = False, before=None):
    """Start an import (queued) and execute it, timed; ``before(app)`` runs in between (the floor's snapshot)."""
    from portal.extensions import db
    from portal.models import Connection, SyncRun
    from portal.services.import_run import execute_import, start_import
    from portal.services.import_settings import ImportRequest, ImportSettings

    with app.app_context():
        connection = db.session.get(Connection, connection_id)
        request = ImportRequest(connection_id, "Customer", restrictions=[], all_results=True,
                                settings=ImportSettings(company_match="name", company_action="merge",
                                                        contact_match="name", contact_action="merge",
                                                        list_policy="add", include_persons=True))
        run_id = start_import(connection, request).id
        engine = db.engine
    extra = before(app) if before is not None else None
    recorder = floor.Recorder(engine) if record else None
    started = time.perf_counter()
    try:
        with app.app_context():
            execute_import(run_id)
        seconds = time.perf_counter() - started
    finally:
        ops = recorder.stop() if recorder is not None else []
    with app.app_context():
        run = db.session.get(SyncRun, run_id)
        return dict(seconds=seconds, counts=dict(run.counts or {}), done=run.progress_done, status=run.status,
                    connector_seconds=run.connector_seconds or 0.0, run_id=run_id, ops=ops,
                    summary=recorder.summary() if recorder is not None else {}, before=extra)


# ------------------------------------------------------------------------------------------------------ the floor

_INSERT = re.compile(r'^\s*INSERT INTO "?(\w+)"?\s*\(([^)]*)\)', re.IGNORECASE)
_COPY = re.compile(r'^\s*COPY "?(\w+)"?\s*\(', re.IGNORECASE)


def _inserted(kind: str, statement: str, parameters) -> tuple[str, int] | None:
    """(table, rows) of a recorded INSERT into one of FLOOR_TABLES: executemany, one (multi-row) statement, or
    PostgreSQL's COPY of a bulk INSERT (portal.services.sync.bulk)."""
    if kind == "copy":
        match = _COPY.match(statement or "")
        return (match.group(1).lower(), len(parameters)) if match and match.group(1).lower() in FLOOR_TABLES else None
    match = _INSERT.match(statement or "")
    if match is None or match.group(1).lower() not in FLOOR_TABLES:
        return None
    flat = not parameters or not isinstance(parameters[0] if isinstance(parameters, list | tuple) else None,
                                            tuple | list | dict)
    if kind == "many" and not flat:
        return match.group(1).lower(), len(parameters)
    # one statement: a single row, or several as VALUES (...), (...) (SQLAlchemy's "insertmanyvalues")
    columns = len(match.group(2).split(","))
    return match.group(1).lower(), max(1, len(parameters or ()) // columns)


def floor_plan(ops: list) -> list:
    """The import's recorded statements turned into the floor's: SELECTs and other writes as sent; the INSERTs into
    FLOOR_TABLES of a transaction replaced by ("rows", table, n) — n more of that table's stored rows, at commit."""
    plan, pending = [], {}
    for kind, statement, parameters in ops:
        if kind in ("commit", "rollback"):
            if kind == "commit":
                plan.extend(("rows", table, n) for table, n in pending.items())
            pending = {}
            plan.append((kind, None, None))
            continue
        found = _inserted(kind, statement, parameters)
        if found is not None:
            pending[found[0]] = pending.get(found[0], 0) + found[1]
        else:
            plan.append((kind, statement, parameters))
    return plan


def stored_rows(app, run_id: int, first_ids: dict) -> dict:
    """The rows the import wrote, as stored, by table: (column names, rows in id order)."""
    from sqlalchemy import text

    from portal.extensions import db

    rows = {}
    with app.app_context():
        conn = db.session.connection()
        generated: dict[str, set[str]] = {}
        if conn.dialect.name == "postgresql":
            for table, column in conn.execute(text(
                    "SELECT table_name, column_name FROM information_schema.columns "
                    "WHERE table_schema = current_schema() AND is_generated = 'ALWAYS'")):
                generated.setdefault(table, set()).add(column)
        for table in FLOOR_TABLES:
            where = "run_id = :bound" if table == "sync_change" else "id >= :bound"
            bound = run_id if table == "sync_change" else first_ids[table]
            result = conn.execute(text(f"SELECT * FROM {table} WHERE {where} ORDER BY id"), {"bound": bound})
            names = list(result.keys())
            # a generated column (PostgreSQL's search_text, search layout 3) is computed by the database on the
            # floor's COPY as on the portal's INSERT, and cannot be written
            keep = [n for n, name in enumerate(names) if name not in generated.get(table, ())]
            rows[table] = ([names[n] for n in keep], [tuple(r[n] for n in keep) for r in result])  # as stored
        db.session.rollback()
    return rows


def next_ids(app) -> dict:
    from sqlalchemy import text

    from portal.extensions import db

    with app.app_context():
        ids = {t: (db.session.scalar(text(f"SELECT max(id) FROM {t}")) or 0) + 1 for t in FLOOR_TABLES}
        db.session.rollback()
    return ids


def _table_of(statement: str) -> str:
    """The table of an ``INSERT INTO t (…)`` or a ``COPY t (…) FROM STDIN``."""
    return statement.split()[2 if statement.upper().startswith("INSERT") else 1]


def floor_seconds(target, plan: list, rows: dict) -> float:
    """Seconds plain sqlite3 (a path) or psycopg (a URL) takes for the floor ``plan`` on the copy ``target``."""
    offsets = dict.fromkeys(rows, 0)
    if isinstance(target, str):
        import psycopg
        from psycopg.types.json import Json

        conn = psycopg.connect(target)
        mark = "%s"

        def adapt(values):
            return tuple(Json(v) if isinstance(v, dict | list) else v for v in values)
    else:
        conn = floor._connect(target)
        mark = "?"

        def adapt(values):
            return values
    # The fast way of each database: executemany on SQLite, COPY on PostgreSQL (as the portal's bulk INSERTs)
    statements = {table: f'COPY {table} ({", ".join(columns)}) FROM STDIN' if isinstance(target, str) else
                  f'INSERT INTO {table} ({", ".join(columns)}) VALUES ({", ".join([mark] * len(columns))})'
                  for table, (columns, _rows) in rows.items()}
    prepared = []
    for step in plan:
        if step[0] == "rows":
            table, n = step[1], step[2]
            chunk = rows[table][1][offsets[table]:offsets[table] + n]
            offsets[table] += n
            prepared.append(("rows", statements[table], [adapt(r) for r in chunk]))
        else:
            prepared.append(step)
    order = {"company": 0, "contact": 1, "link": 2, "sync_change": 3}  # foreign keys: records before their rows

    def write(cursor, statement, rows_) -> None:
        if statement.startswith("COPY"):
            with cursor.copy(statement) as copy:
                for row in rows_:
                    copy.write_row(row)
        else:
            cursor.executemany(statement, rows_)
    try:
        cursor = conn.cursor()
        started = time.perf_counter()
        batch = []
        for kind, statement, parameters in prepared:
            if kind == "rows":
                batch.append((statement, parameters))
                continue
            if kind == "one":
                cursor.execute(statement, parameters or None) if isinstance(target, str) else \
                    cursor.execute(statement, parameters)
                if cursor.description is not None:
                    cursor.fetchall()
            elif kind == "many":
                cursor.executemany(statement, parameters)
            elif kind == "copy":
                write(cursor, statement, parameters)
            elif kind == "commit":
                for statement_, parameters_ in sorted(batch, key=lambda b: order[_table_of(b[0])]):
                    if parameters_:
                        write(cursor, statement_, parameters_)
                batch = []
                conn.commit()
            else:
                batch = []
                conn.rollback()
        seconds = time.perf_counter() - started
        missing = {t: len(r[1]) - offsets[t] for t, r in rows.items() if len(r[1]) != offsets[t]}
        if missing:
            print(f"  (floor: rows not placed in a transaction: {missing})", file=sys.stderr)
        return seconds
    finally:
        conn.close()


def measure(tmp: Path, url: str, database_url: str | None, args) -> dict:
    """One import (and its unchanged re-run) on a fresh portal database, with the floors of both."""
    app, connection_id = _setup_portal(tmp, url, database_url)
    from portal.extensions import db

    def snapshot(app):
        with app.app_context():
            return floor.snapshot(db.engine)

    first_ids = next_ids(app)
    before_mb = memory.current_mb()
    memory.reset_peak()
    first = _run(app, connection_id, record=True, before=snapshot)
    copy = first["before"]
    peak_mb = memory.peak_mb()
    totals = _database_counts(app)
    rows = stored_rows(app, first["run_id"], first_ids)
    first_floor = floor_seconds(copy, floor_plan(first.pop("ops")), rows)
    # What was recorded is dropped before the next measured run: kept, its hundreds of thousands of objects would
    # be walked by every garbage collection of that run and counted as the portal's time
    del rows
    gc.collect()
    memory.reset_peak()
    rerun = _run(app, connection_id, record=True, before=snapshot)
    rerun_copy = rerun["before"]
    rerun_peak_mb = memory.peak_mb()
    rerun_floor = floor.replay(rerun_copy, rerun.pop("ops"))
    gc.collect()
    with app.app_context():
        dialect = db.engine.dialect.name
        db.session.remove()
        db.engine.dispose()
    if isinstance(copy, Path):
        for path in (copy, rerun_copy):
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
    else:
        _drop_copies(database_url, [copy, rerun_copy])
    return dict(dialect=dialect, first=first, rerun=rerun, first_floor=first_floor, rerun_floor=rerun_floor,
                totals=totals, peak_mb=peak_mb, before_mb=before_mb, rerun_peak_mb=rerun_peak_mb)


def _drop_copies(database_url: str, urls: list[str]) -> None:
    import psycopg
    from sqlalchemy.engine import make_url

    maintenance = make_url(database_url).set(drivername="postgresql", database="postgres")
    with psycopg.connect(maintenance.render_as_string(hide_password=False), autocommit=True) as conn:
        for url in urls:
            conn.execute(f'DROP DATABASE IF EXISTS "{make_url(url).database}"')


def _database_counts(app) -> dict:
    from sqlalchemy import func, select

    from portal.extensions import db
    from portal.models import Company, Contact, Link, SyncChange

    with app.app_context():
        return {name: db.session.scalar(select(func.count()).select_from(model))
                for name, model in (("companies", Company), ("contacts", Contact), ("links", Link),
                                    ("sync_log_rows", SyncChange))}


def _figures(m: dict, actors: int) -> dict:
    first, rerun = m["first"], m["rerun"]
    own = first["seconds"] - first["connector_seconds"]
    rerun_own = rerun["seconds"] - rerun["connector_seconds"]
    return {
        "database": m["dialect"], "status": first["status"], "actors_processed": first["done"],
        "import_seconds": first["seconds"], "connector_seconds": first["connector_seconds"],
        "portal_ms_per_actor": 1000 * own / actors, "run_ms_per_actor": 1000 * first["seconds"] / actors,
        "floor_ms_per_actor": 1000 * m["first_floor"] / actors, "ratio": own / m["first_floor"],
        "statements": first["summary"].get("statements"), "commits": first["summary"].get("commits"),
        "rerun_seconds": rerun["seconds"], "rerun_portal_ms_per_actor": 1000 * rerun_own / actors,
        "rerun_floor_ms_per_actor": 1000 * m["rerun_floor"] / actors, "rerun_ratio": rerun_own / m["rerun_floor"],
        "rerun_statements": rerun["summary"].get("statements"), "rerun_commits": rerun["summary"].get("commits"),
        "rerun_status": rerun["status"], "rerun_new": rerun["counts"].get("new"),
        "rerun_unchanged": rerun["counts"].get("unchanged"),
        "new": first["counts"].get("new"), "updated": first["counts"].get("updated"),
        "errors": first["counts"].get("errors"), "list_items_added": first["counts"].get("list_items_added"),
        **m["totals"], "peak_rss_mb": m["peak_mb"], "rss_before_import_mb": m["before_mb"],
        "peak_rss_after_rerun_mb": m["rerun_peak_mb"],
    }


def _median(runs: list[dict]) -> dict:
    out = dict(runs[0])
    for key, value in runs[0].items():
        if isinstance(value, float):
            out[key] = statistics.median(r[key] for r in runs)
    return out


def _print(f: dict, args) -> None:
    actors = args.customers + args.persons
    print(f"  database {f['database']}: status {f['status']}, {f['actors_processed']} actors")
    print(f"    created: {f['companies']} companies, {f['contacts']} contacts, {f['links']} links, "
          f"{f['sync_log_rows']} change-log rows; {f['list_items_added']} list item(s) added")
    print(f"    import {f['import_seconds']:.2f} s ({actors / f['import_seconds']:.0f} actors/s), connector "
          f"{f['connector_seconds']:.2f} s; {f['statements']} statements, {f['commits']} commits; "
          f"peak RSS {f['peak_rss_mb']:.0f} MB")
    print(f"    re-run {f['rerun_seconds']:.2f} s: {f['rerun_new']} new, {f['rerun_unchanged']} unchanged "
          f"({f['rerun_status']}); {f['rerun_statements']} statements, {f['rerun_commits']} commits")
    print(f"    {'':10} {'portal ms/actor':>16} {'floor ms/actor':>15} {'ratio':>6}  (run ms/actor, with connector)")
    print(f"    {'import':10} {f['portal_ms_per_actor']:16.3f} {f['floor_ms_per_actor']:15.3f} {f['ratio']:6.2f}"
          f"  ({f['run_ms_per_actor']:.3f})  target <= {TARGET_RATIO:.0f}x: "
          f"{'OK' if f['ratio'] <= TARGET_RATIO else 'MISSED'}")
    print(f"    {'re-run':10} {f['rerun_portal_ms_per_actor']:16.3f} {f['rerun_floor_ms_per_actor']:15.3f} "
          f"{f['rerun_ratio']:6.2f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=5000)
    parser.add_argument("--persons", type=int, default=10000)
    parser.add_argument("--database-url", metavar="URL",
                        help="also measure on this PostgreSQL database (emptied first), with a psycopg floor")
    parser.add_argument("--repeat", type=int, default=1, help="fresh portal databases, medians printed")
    parser.add_argument("--serve-demo", metavar="PATH", help=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    if args.serve_demo:
        serve_demo(args.serve_demo, args.customers, args.persons)
        return 0

    actors = args.customers + args.persons
    results: dict[str, list[dict]] = {}
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
            url = f"http://127.0.0.1:{port_line}/"
            for repeat in range(args.repeat):  # SQLite and PostgreSQL alternate
                for database_url in [None] + ([args.database_url] if args.database_url else []):
                    work = tmp / f"run{repeat}-{'pg' if database_url else 'sqlite'}"
                    work.mkdir()
                    m = measure(work, url, database_url, args)
                    results.setdefault(m["dialect"], []).append(_figures(m, actors))
        finally:
            child.terminate()
            child.wait(timeout=10)

    figures = {name: _median(runs) for name, runs in results.items()}
    sqlite = figures["sqlite"]
    ok = (sqlite["status"] == "succeeded" and sqlite["import_seconds"] <= BUDGET_SECONDS
          and sqlite["peak_rss_mb"] <= BUDGET_MB and sqlite["companies"] == args.customers
          and sqlite["contacts"] == args.persons)
    if args.json:
        print(json.dumps({"customers": args.customers, "persons": args.persons, "repeat": args.repeat,
                          "demo_erp_seed_seconds": round(seed_seconds, 1), "results": figures,
                          "budget_seconds": BUDGET_SECONDS, "budget_mb": BUDGET_MB, "target_ratio": TARGET_RATIO},
                         indent=2, default=str))
    else:
        print(f"Import from ERP: {args.customers} customers + {args.persons} persons over HTTP"
              f"{f' (medians of {args.repeat})' if args.repeat > 1 else ''}")
        for f in figures.values():
            _print(f, args)
        if "postgresql" in figures:
            pg = figures["postgresql"]
            print(f"  PostgreSQL over SQLite: portal {pg['portal_ms_per_actor'] / sqlite['portal_ms_per_actor']:.2f}x,"
                  f" floor {pg['floor_ms_per_actor'] / sqlite['floor_ms_per_actor']:.2f}x")
        print(f"  budget (SQLite): <= {BUDGET_SECONDS:.0f} s and <= {BUDGET_MB:.0f} MB -> "
              f"{'OK' if ok else 'OVER BUDGET'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

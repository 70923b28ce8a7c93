"""Benchmark of the sync engine against the Demo ERP served over HTTP on 127.0.0.1, with SQLite.

    .venv/bin/python -m bench.sync_bench                      # 10,000 links, 1,000 + 1,000 changes
    .venv/bin/python -m bench.sync_bench --links 2000 --changes 200 --batch 100
    .venv/bin/python -m bench.sync_bench --trace-alloc        # + peak Python allocations (slower runs)
    .venv/bin/python -m bench.sync_bench --profile /tmp/sync.html   # + a pyinstrument profile of each change run

What it does (see bench/README.md):

1. starts ``flask --app wsgi demo-erp serve`` on a free port of 127.0.0.1 with its own temporary database;
2. builds a temporary portal database: a connection to that connector (10 company fields mapped both ways,
   the country list mapped), N companies in the CRM and N customers in the Demo ERP with equal values, and a link
   between each pair with the agreed base (bulk inserts on both sides: setup is not measured);
3. starts one portal process that executes the measured runs (like the long-lived web process that runs the
   scheduler; a first run warms it up) and measures:
   * an incremental run with nothing changed;
   * an incremental run after C companies were changed in the CRM and C other customers in the ERP,
     for each batch size given with ``--batch`` (the changes are made again before each run);
   * an incremental run with nothing changed again (after the changes: their echoes are skipped);
4. prints a table: connector calls, run seconds, connector seconds (waiting on the connector), portal seconds
   (run − connector), the CPU seconds of the portal process during the run, peak RSS of the portal process so far
   and, with ``--trace-alloc``, the peak of Python allocations during the run (tracemalloc: it slows the portal's
   Python code about threefold, so the timings of a traced invocation are not the portal's speed).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from datetime import timedelta
from pathlib import Path

from bench import floor, markdown_table, memory

ROOT = Path(__file__).resolve().parent.parent
MAPPED = {  # Demo ERP Customer field -> CRM company attribute
    "NAME": "name", "DEPARTMENT": "department", "VATNO": "vat_no", "PHONE": "phone", "EMAIL": "email",
    "URL": "url", "POSTALAD1": "postal_address1", "POSTALZIP": "postal_zip", "POSTALCITY": "postal_city",
    "COUNTRY": "country_id",
}
COUNTRIES = {"NO": "Norway", "SE": "Sweden", "DK": "Denmark", "FI": "Finland", "DE": "Germany"}
GUID = "3b0f4a9e-6c1d-4e2f-8a7b-5c9d0e1f2a3b"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _config(work: Path, port: int, batch: int = 200) -> dict:
    return {
        "TESTING": False, "SCHEDULER": False, "DEMO_DATA": False, "WTF_CSRF_ENABLED": False,
        # BENCH_DATABASE_URL (--database-url): the portal on PostgreSQL instead of its SQLite file
        "SQLALCHEMY_DATABASE_URI": os.environ.get("BENCH_DATABASE_URL") or f"sqlite:///{work / 'portal.db'}",
        "INSTANCE_PATH": str(work / "instance"),
        "DEMO_ERP_DB": str(work / "unused-demo.db"), "SECRET_KEY": "benchmark-secret-key-0123456789",
        "ENCRYPTION_KEYS": [_fernet_key(work)], "CONNECTOR_TIMEOUT": 60, "SYNC_BATCH_SIZE": batch,
        "LOG_LEVEL": "WARNING", "DEMO_PORT": port,
    }


def _fernet_key(work: Path) -> str:
    path = work / "fernet.key"
    if not path.exists():
        from cryptography.fernet import Fernet

        path.write_text(Fernet.generate_key().decode())
    return path.read_text().strip()


# ------------------------------------------------------------------------------------------------ the ERP


def start_demo_erp(work: Path) -> tuple[subprocess.Popen, int]:
    from portal.connectors.builtin.demo import DemoErpConnector

    db_path = work / "demo.db"
    DemoErpConnector(db_path, seed=False).counts()  # schema, lists, no demo records
    port = _free_port()
    env = {**os.environ, "PORTAL_SCHEDULER": "off", "PORTAL_DEMO_DATA": "off", "PORTAL_LOG_LEVEL": "WARNING",
           "PORTAL_DATABASE_URL": f"sqlite:///{work / 'demo-cli.db'}"}
    process = subprocess.Popen([sys.executable, "-m", "flask", "--app", "wsgi", "demo-erp", "serve", "--host",
                                "127.0.0.1", "--port", str(port), "--db", str(db_path)], cwd=ROOT, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return process, port
        except OSError:
            if process.poll() is not None:
                raise RuntimeError(f"the Demo ERP did not start: {process.stderr.read().decode()[-2000:]}")
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("the Demo ERP did not start listening within 30 s")


def _company_values(n: int) -> dict:
    rng = random.Random(n)
    return {
        "NAME": f"Benchmark Company {n:05d} AS", "DEPARTMENT": rng.choice(["", "Sales", "Oslo office"]),
        "VATNO": f"NO{900000000 + n}", "PHONE": f"+47 {rng.randint(20000000, 99999999)}",
        "EMAIL": f"post{n}@company{n}.example", "URL": f"https://company{n}.example",
        "POSTALAD1": f"{rng.randint(1, 200)} Harbour Street", "POSTALZIP": f"{rng.randint(1000, 9999)}",
        "POSTALCITY": rng.choice(["Oslo", "Bergen", "Stockholm", "Aarhus", "Helsinki", "Hamburg"]),
        "COUNTRY": rng.choice(list(COUNTRIES)),
    }


# ------------------------------------------------------------------------------------------------ setup


def build(work: Path, port: int, links: int) -> None:
    """Portal database + Demo ERP data: ``links`` linked companies agreeing on every mapped field."""
    from sqlalchemy import insert, select

    from portal import create_app
    from portal.connectors.builtin.demo import DemoErpConnector, format_timestamp
    from portal.database import utcnow
    from portal.extensions import db
    from portal.models import Company, Connection, Connector, CrmList, Link, ListItem, ListItemMapping
    from portal.services.bootstrap import ensure_default_lists, sync_settings
    from portal.services.connections import apply_catalogue, fetch_catalogue
    from portal.services.connectors import client_for
    from portal.services.sync import fieldmap
    from portal.services.sync_settings import ensure_in_priority

    app = create_app(_config(work, port), environ={})
    with app.app_context():
        if db.engine.dialect.name != "sqlite":
            db.drop_all()  # a server database outlives the bench's temporary directory
        db.create_all()
        settings = sync_settings()
        settings.auto_sync = False
        db.session.commit()
        ensure_default_lists()
        connector = Connector(name="Demo ERP over HTTP", url=f"http://127.0.0.1:{port}")
        db.session.add(connector)
        db.session.flush()
        client_for(connector).save_connection(GUID, {"CompanyDb": "benchmark"})
        connection = Connection(connector=connector, name="Demo ERP", guid=GUID, active=True, last_test_ok=True,
                                config_values={"CompanyDb": "benchmark"})
        db.session.add(connection)
        db.session.flush()
        apply_catalogue(connection, fetch_catalogue(connector, GUID))
        countries = {i.name: i.id for i in db.session.scalars(select(ListItem).where(
            ListItem.list_name == CrmList.COUNTRY))}
        config = connection.actor_type("Customer")
        config.is_active = True
        for erp_field in config.fields:
            erp_field.crm_field = MAPPED.get(erp_field.field_key)
            erp_field.sync_to_crm = erp_field.sync_to_erp = erp_field.crm_field is not None
            if erp_field.field_key == "COUNTRY":
                for key, name in COUNTRIES.items():
                    erp_field.list_mappings.append(ListItemMapping(erp_item_key=key, erp_item_text=name,
                                                                   crm_item_id=countries[name]))
        ensure_in_priority(connection.id)
        db.session.commit()
        fields = fieldmap.mapped_fields(config, synced_only=True)

        demo = DemoErpConnector(work / "demo.db", seed=False)
        values = [_company_values(n) for n in range(links)]
        keys: list[str] = []
        for start in range(0, links, 2000):
            keys += demo.bulk_create("Customer", values[start:start + 2000])
        with sqlite3.connect(work / "demo.db") as conn:
            stamps = dict(conn.execute("SELECT erp_key, last_modified FROM actors WHERE actor_type = 'Customer'"))
        # a steady state: the records were last saved (and synced) a day ago, long before the runs' CRM look-back
        now = utcnow() - timedelta(days=1)
        for start in range(0, links, 2000):
            chunk = range(start, min(links, start + 2000))
            rows = []
            for n in chunk:
                crm = {MAPPED[k]: (countries[COUNTRIES[v]] if k == "COUNTRY" else v) for k, v in values[n].items()}
                rows.append({**crm, "created_at": now, "updated_at": now})
            ids = db.session.execute(insert(Company).returning(Company.id), rows).scalars().all()
            link_rows = []
            for n, company_id in zip(chunk, ids, strict=True):
                base, errors = fieldmap.erp_side(values[n], fields)
                assert not errors, errors
                link_rows.append({"connection_id": connection.id, "crm_type": "company", "crm_id": company_id,
                                  "erp_actor_type": "Customer", "erp_key": keys[n], "base": base, "status": "ok",
                                  "status_message": "", "last_result": "", "failures": 0,
                                  "erp_last_modified": format_timestamp(stamps[keys[n]]), "last_synced_at": now,
                                  "crm_synced_at": now, "created_at": now, "updated_at": now})
            db.session.execute(insert(Link), link_rows)
            db.session.commit()
        connection = db.session.get(Connection, connection.id)
        connection.cursors = {"Customer": format_timestamp(max(stamps.values()))}
        db.session.commit()
        if db.engine.dialect.name == "postgresql":
            # the planner's statistics, as autovacuum gathers them within a minute of a bulk load in any real
            # database: without them PostgreSQL takes the just-filled tables for empty and walks every link
            # for each batch (15 ms a SELECT instead of 0.2 ms)
            with db.engine.connect() as conn:
                conn.exec_driver_sql("ANALYZE")
                conn.commit()
        db.engine.dispose()


def make_changes(work: Path, port: int, links: int, changes: int, round_no: int) -> None:
    """``changes`` companies edited in the CRM and ``changes`` other customers edited in the ERP."""
    from sqlalchemy import select, update

    from portal import create_app
    from portal.connectors.builtin.demo import DemoErpConnector
    from portal.database import utcnow
    from portal.extensions import db
    from portal.models import Company, Link

    rng = random.Random(round_no)
    picked = rng.sample(range(links), 2 * changes)
    crm_side, erp_side = picked[:changes], picked[changes:]
    app = create_app(_config(work, port), environ={})
    with app.app_context():
        ids = db.session.scalars(select(Company.id).order_by(Company.id)).all()
        keys = dict(db.session.execute(select(Link.crm_id, Link.erp_key)).all())
        now = utcnow() + timedelta(microseconds=1)
        db.session.execute(update(Company), [
            {"id": ids[n], "phone": f"+47 {round_no}{n:07d}", "postal_city": f"Changed City {round_no}",
             "updated_at": now} for n in crm_side])
        db.session.commit()
        erp_keys = [keys[ids[n]] for n in erp_side]
        db.engine.dispose()
    demo = DemoErpConnector(work / "demo.db", seed=False)
    for key in erp_keys:
        demo.update_fields("Customer", key, {"EMAIL": f"changed{round_no}@{key.lower()}.example",
                                             "DEPARTMENT": f"ERP dept {round_no}"})


# ------------------------------------------------------------------------------------------------ measuring


def _one_run(batch: int, profile: str | None = None, trace: bool = False) -> dict:
    """One incremental run of the benchmark connection, in this process; its numbers as a dict.

    ``trace``: trace Python allocations during the run (tracemalloc) for the peak-allocation column. tracemalloc
    hooks every allocation and makes the portal's Python code ~3x slower, so a traced run's seconds are not the
    portal's speed (run the benchmark once with and once without ``--trace-alloc``). ``profile`` (a file name
    ending in .txt, .html or .prof): profile the run (pyinstrument, or cProfile for .prof) into that file; its
    timings are not comparable either."""
    from flask import current_app

    from portal.extensions import db
    from portal.models import RunKind, SyncRun
    from portal.services.sync import engine, runs

    current_app.config["SYNC_BATCH_SIZE"] = batch
    connection_id = runs.syncable_connections()[0].id
    run, _created = runs.request_run(connection_id, kind=RunKind.SYNC, trigger="cli", requested_by="benchmark")
    db.session.commit()
    # the floor (bench/floor.py): the database as it is now, and the statements the run sends to it
    floor_copy = floor.snapshot(db.engine)
    recorder = floor.Recorder(db.engine)
    profiler = _profiler(profile)
    if trace:
        tracemalloc.start()
    memory.reset_peak()
    cpu, started = time.process_time(), time.perf_counter()
    if profiler is not None:
        profiler.start() if hasattr(profiler, "start") else profiler.enable()
    outcome = engine.execute_run(run.id)
    if profiler is not None:
        profiler.stop() if hasattr(profiler, "stop") else profiler.disable()
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    ops = recorder.stop()
    statements = recorder.summary()
    if os.environ.get("BENCH_SQL_LOG"):
        floor.write_log(os.environ["BENCH_SQL_LOG"], f"run {run.id}, batch {batch}", ops)
    floor_seconds = floor.replay(floor_copy, ops)
    traced_peak = 0
    if trace:
        _current, traced_peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    if profiler is not None:
        _write_profile(profiler, profile)
    row = db.session.get(SyncRun, run.id)
    result = {"status": str(outcome.status), "message": outcome.message, "seconds": seconds, "cpu_seconds": cpu,
              "connector_seconds": row.connector_seconds, "calls": outcome.counts.get("connector_calls", 0),
              "records": outcome.counts.get("records", 0), "to_crm": outcome.counts.get("to_crm", 0),
              "to_erp": outcome.counts.get("to_erp", 0), "traced_peak_mb": traced_peak / 2**20,
              "rss_peak_mb": memory.peak_mb(), "batch": batch, "floor_seconds": floor_seconds, **statements}
    db.session.commit()
    return result


def _profiler(profile: str | None):
    if not profile:
        return None
    if profile.endswith(".prof"):
        import cProfile

        return cProfile.Profile()
    from pyinstrument import Profiler  # not a requirement: pip install pyinstrument to profile

    return Profiler(interval=0.0005)


def _write_profile(profiler, profile: str) -> None:
    if profile.endswith(".prof"):
        profiler.dump_stats(profile)
    elif profile.endswith(".html"):
        Path(profile).write_text(profiler.output_html())
    else:
        Path(profile).write_text(profiler.output_text(unicode=True, color=False, show_all=False))


def serve_runs(work: Path, port: int) -> None:
    """The measuring process: one portal process (like the web process that runs the scheduler) that executes a
    run for every line "run BATCH" on stdin and answers one JSON line per run."""
    from portal import create_app

    app = create_app(_config(work, port), environ={})
    checkpointer = _Checkpointer(app)
    with app.app_context():
        for line in sys.stdin:
            command = line.split()
            if command[:1] == ["forget-marks"]:  # as right after the upgrade that introduced the CRM mark
                _forget_crm_marks()
                print("{}", flush=True)
                continue
            if not command or command[0] != "run":
                break
            profile = command[2] if len(command) > 2 and command[2] != "-" else None
            trace = len(command) > 3 and command[3] == "trace"
            before = checkpointer.snapshot()
            result = _one_run(int(command[1]), profile, trace)
            result["checkpoints"], result["checkpoint_seconds"] = checkpointer.since(before)
            print(json.dumps(result), flush=True)
    checkpointer.stop()


def _forget_crm_marks() -> None:
    from sqlalchemy import update

    from portal.extensions import db
    from portal.models import Connection

    db.session.execute(update(Connection).values(crm_cursors={}))
    db.session.commit()


class _Checkpointer:
    """The web process's background WAL checkpoint (jobs.tasks.checkpoint_database, every CHECKPOINT_SECONDS), in
    a thread of the measuring process as the scheduler would run it; counts the checkpoints and their seconds."""

    def __init__(self, app) -> None:
        import threading

        from portal.database import CHECKPOINT_SECONDS

        self.app, self.interval = app, CHECKPOINT_SECONDS
        self.count, self.seconds = 0, 0.0
        self.lock, self.stopped = threading.Lock(), threading.Event()
        self.thread = threading.Thread(target=self._loop, name="checkpoint", daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        from portal.database import checkpoint_wal
        from portal.extensions import db

        with self.app.app_context():
            while not self.stopped.wait(self.interval):
                started = time.perf_counter()
                done = checkpoint_wal(db.engine)
                with self.lock:
                    if done is not None and done.checkpointed > 0:
                        self.count += 1
                    self.seconds += time.perf_counter() - started

    def snapshot(self) -> tuple[int, float]:
        with self.lock:
            return self.count, self.seconds

    def since(self, before: tuple[int, float]) -> tuple[int, float]:
        count, seconds = self.snapshot()
        return count - before[0], seconds - before[1]

    def stop(self) -> None:
        self.stopped.set()
        self.thread.join(timeout=10)


class _Runner:
    """Talks to the measuring process."""

    def __init__(self, work: Path, port: int) -> None:
        env = {**os.environ, "PORTAL_SCHEDULER": "off", "PYTHONPATH": str(ROOT)}
        self.process = subprocess.Popen([sys.executable, "-m", "bench.sync_bench", "--measure", str(work), "--port",
                                         str(port)], cwd=ROOT, env=env, stdin=subprocess.PIPE,
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def run(self, batch: int, profile: str | None = None, trace: bool = False) -> dict:
        return self._ask(f"run {batch} {profile or '-'} {'trace' if trace else 'notrace'}")

    def forget_marks(self) -> None:
        self._ask("forget-marks")

    def _ask(self, command: str) -> dict:
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the measuring process died:\n{self.process.stderr.read()[-4000:]}")
        return json.loads(line)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.stdin.close()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()


def run_benchmark(links: int, changes: int, batches: list[int], keep: bool = False, out=sys.stdout,
                  profile: str | None = None, trace: bool = False, repeat: int = 1,
                  database_url: str | None = None) -> list[dict]:
    """Runs the scenarios ``repeat`` times (each time from a fresh setup) and prints one table; with more than
    one invocation every number is the median of its invocations (the portal's seconds and the ratio are taken
    per invocation, then their median). Returns the table's rows as dicts."""
    if database_url:
        os.environ["BENCH_DATABASE_URL"] = database_url  # build, make_changes and the measuring process
    else:
        os.environ.pop("BENCH_DATABASE_URL", None)
    print(f"database: {'PostgreSQL' if database_url else 'SQLite'}", file=out)
    invocations = [_scenarios(links, changes, batches, keep, out, profile, trace) for _ in range(max(1, repeat))]
    results = [_median(group) for group in zip(*invocations, strict=True)]
    rows = [[r["scenario"], str(r["batch"]), r["status"], f"{r['records']:,}", f"{r['to_crm']:,}", f"{r['to_erp']:,}",
             str(r["calls"]), f"{r['seconds']:.3f}", f"{r['connector_seconds']:.3f}", f"{r['portal_seconds']:.3f}",
             f"{r['floor_seconds']:.3f}", "-" if r["ratio"] is None else f"{r['ratio']:.2f}",
             _per_record(r["portal_seconds"], r["records"]), _per_record(r["floor_seconds"], r["records"]),
             f"{r['statements']} / {r['commits']}", f"{r['cpu_seconds']:.3f}",
             f"{r['checkpoints']} ({r['checkpoint_seconds']:.2f} s)", f"{r['rss_peak_mb']:.0f}",
             f"{r['traced_peak_mb']:.1f}" if trace else "-"] for r in results]
    if len(invocations) > 1:
        print(f"medians of {len(invocations)} invocations", file=out)
    print(markdown_table(rows, ["Scenario", "Batch", "Status", "Records", "To CRM", "To ERP", "Connector calls",
                        "Run s", "Connector s", "Portal s", "Floor s", "Portal ÷ floor (target ≤ 1.5)",
                        "Portal ms/record", "Floor ms/record", "Statements / commits", "Portal CPU s",
                        "Background checkpoints", "Peak RSS MB", "Peak alloc MB"]),
          file=out)
    return results


def _per_record(seconds: float, records: int) -> str:
    return f"{seconds * 1000 / records:.3f}" if records else "-"


def _median(group: tuple[dict, ...]) -> dict:
    """One scenario's results over several invocations: the median of every number, the text of the first."""
    merged = dict(group[0])
    for key, value in group[0].items():
        if key in ("batch", "ratio") or isinstance(value, bool):
            continue
        if isinstance(value, int):  # counts stay whole numbers
            merged[key] = statistics.median_low(r[key] for r in group)
        elif isinstance(value, float):
            merged[key] = statistics.median(r[key] for r in group)
    if any(r["status"] != merged["status"] for r in group):
        merged["status"] = "/".join(sorted({r["status"] for r in group}))
    ratios = [r["ratio"] for r in group if r["ratio"] is not None]
    merged["ratio"] = statistics.median(ratios) if len(ratios) == len(group) else None
    return merged


def _scenarios(links: int, changes: int, batches: list[int], keep: bool, out, profile: str | None,
               trace: bool) -> list[dict]:
    """One invocation: a fresh setup, then the runs of every scenario, each as a dict."""
    work = Path(tempfile.mkdtemp(prefix="sync-bench-"))
    server, port = start_demo_erp(work)
    results = []
    runner = None
    try:
        started = time.perf_counter()
        build(work, port, links)
        print(f"setup: {links:,} linked companies in {time.perf_counter() - started:.1f} s ({work})", file=out)
        runner = _Runner(work, port)
        runner.run(200, trace=trace)  # warm-up: the web process that runs the scheduler is long-lived
        results.append({"scenario": f"{links:,} links, nothing changed", **runner.run(200, trace=trace)})
        runner.forget_marks()
        results.append({"scenario": f"{links:,} links, nothing changed, no CRM mark yet (every link read)",
                        **runner.run(200, trace=trace)})
        for round_no, batch in enumerate(batches, start=1):
            make_changes(work, port, links, changes, round_no)
            target = None
            if profile:
                stem, dot, ext = profile.rpartition(".")
                name = f"{stem}-{round_no}-batch{batch}.{ext}" if dot else f"{profile}-{round_no}-batch{batch}"
                target = str(Path(name).resolve())
            results.append({"scenario": f"{links:,} links, {changes:,} CRM + {changes:,} ERP changes",
                            **runner.run(batch, target, trace)})
        results.append({"scenario": f"{links:,} links, nothing changed (after the changes)",
                        **runner.run(200, trace=trace)})
    finally:
        if runner is not None:
            runner.close()
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
        if not keep:
            import shutil

            shutil.rmtree(work, ignore_errors=True)
    for r in results:
        r["portal_seconds"] = r["seconds"] - r["connector_seconds"]
        # issue #19's target: the portal's own time (the run less the time waiting on the connector) at most 1.5x
        # the database's floor for the same statements (bench/floor.py), when there was work to do
        r["ratio"] = r["portal_seconds"] / r["floor_seconds"] if r["records"] and r["floor_seconds"] > 0 else None
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--links", type=int, default=10_000)
    parser.add_argument("--changes", type=int, default=1_000)
    parser.add_argument("--batch", type=int, action="append", help="batch size(s) of the change run (default 200)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary databases")
    parser.add_argument("--repeat", type=int, default=1, metavar="N",
                        help="run everything N times, each from a fresh setup, and print the medians")
    parser.add_argument("--profile", metavar="FILE",
                        help="profile each change run into FILE-<round>-batch<N>.<ext> (.txt/.html: pyinstrument, "
                             ".prof: cProfile); profiled timings are not comparable")
    parser.add_argument("--trace-alloc", action="store_true",
                        help="trace Python allocations during the runs (tracemalloc) for the Peak alloc column; "
                             "slows the portal's Python code ~3x, so the seconds of such runs are not its speed")
    parser.add_argument("--database-url", metavar="URL",
                        help="also run everything with the portal on this PostgreSQL database (emptied first) and "
                             "print PostgreSQL's run time over SQLite's per scenario (issue #19: at most 1.3)")
    parser.add_argument("--sql-log", metavar="FILE", help="append every measured run's statements to FILE")
    parser.add_argument("--measure", metavar="WORKDIR", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.measure:
        serve_runs(Path(args.measure), args.port)
        return 0
    if args.changes * 2 > args.links:
        parser.error("--changes can be at most half of --links")
    if args.sql_log:
        os.environ["BENCH_SQL_LOG"] = str(Path(args.sql_log).resolve())
    options = {"keep": args.keep, "profile": args.profile, "trace": args.trace_alloc, "repeat": args.repeat}
    sqlite = run_benchmark(args.links, args.changes, args.batch or [200], **options)
    if args.database_url:
        postgresql = run_benchmark(args.links, args.changes, args.batch or [200], database_url=args.database_url,
                                   **options)
        rows = [[lite["scenario"], f"{lite['seconds']:.3f}", f"{pg['seconds']:.3f}",
                 f"{pg['seconds'] / lite['seconds']:.2f}", f"{lite['portal_seconds']:.3f}",
                 f"{pg['portal_seconds']:.3f}", f"{pg['portal_seconds'] / lite['portal_seconds']:.2f}"]
                for lite, pg in zip(sqlite, postgresql, strict=True)]
        print(markdown_table(rows, ["Scenario", "SQLite run s", "PostgreSQL run s", "PostgreSQL ÷ SQLite (target ≤ 1.3)",
                                    "SQLite portal s", "PostgreSQL portal s", "Portal PostgreSQL ÷ SQLite"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())

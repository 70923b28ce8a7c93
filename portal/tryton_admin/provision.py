"""``setup``: everything in order (install, trytond.conf, database, demo data through a temporary server,
template), one setup per home at a time (a file lock: parallel test workers), with timings in ``setup.json``."""

from __future__ import annotations

import fcntl
import time

from portal.tryton_admin.database import init_database, make_template
from portal.tryton_admin.demo_data import populate_demo_data
from portal.tryton_admin.home import (
    ADMIN_USER,
    DEFAULT_DB,
    Log,
    TrytonHome,
    _ensure_passfile,
    _home,
    _quiet,
    write_config,
)
from portal.tryton_admin.pins import MODULES, TRYTON_SERIES
from portal.tryton_admin.server import free_port, server_url, start_server, stop_server, wait_ready
from portal.tryton_admin.venv import install


def setup(home, name: str = DEFAULT_DB, *, all_subdivisions: bool = False, log: Log = _quiet) -> dict:
    """Everything: install → trytond.conf → database → demo data (through a temporary server on a free
    port) → template.sqlite. Idempotent. Returns a report with versions and timings (seconds)."""
    h = _home(home)
    timings: dict[str, float] = {}
    started = time.monotonic()

    def step(label: str, func, *args, **kwargs):
        t0 = time.monotonic()
        result = func(*args, **kwargs)
        timings[label] = round(time.monotonic() - t0, 2)
        log(f"  … {label}: {timings[label]:.2f} s")
        return result

    h.root.mkdir(parents=True, exist_ok=True)
    with open(h.root / ".setup.lock", "w") as lock:  # one setup per home at a time (parallel test workers)
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            return _setup_locked(h, name, all_subdivisions, log, step, timings, started)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _setup_locked(h: TrytonHome, name: str, all_subdivisions: bool, log: Log, step, timings: dict,
                  started: float) -> dict:
    versions = step("install", install, h, log=log)
    if not h.conf.exists():
        write_config(h)
    password = _ensure_passfile(h)
    step("database", init_database, h, name, log=log, all_subdivisions=all_subdivisions)
    port = free_port()
    url = server_url(port)
    log_file = h.root / "setup-server.log"
    proc = start_server(h, port=port, name=name, log_file=log_file)
    try:
        step("server start", wait_ready, url, 60, proc, log_file)
        demo = step("demo data", populate_demo_data, url, name, ADMIN_USER, password, log=log)
    finally:
        stop_server(proc)
    step("template", make_template, h, name)
    timings["total"] = round(time.monotonic() - started, 2)
    h.save_state(database=name, user=ADMIN_USER, series=TRYTON_SERIES, versions=versions, demo=demo,
                 timings=timings, template=str(h.template), modules=list(MODULES))
    return {"home": str(h.root), "database": name, "user": ADMIN_USER, "versions": versions, "timings": timings,
            "demo": demo}

"""Isolation benchmark: does a slow and a dripping ERP leave the rest of the portal alone?

    .venv/bin/python -m bench.isolation_bench                    # 16 clients, 20 s of load per phase
    .venv/bin/python -m bench.isolation_bench --quick            # a shorter run (about a minute and a half)
    .venv/bin/python -m bench.isolation_bench --slow-seconds 60 --drip-interval 2 --timeout 10 --seconds 30

What it does (see bench/README.md):

1. starts ``flask --app wsgi demo-erp serve`` on a free port of 127.0.0.1 (connection **H**, the healthy one) and
   two fake connectors on 127.0.0.1 in this process (tests/fakes/connector_app.py): **A** (answers after
   ``--slow-seconds`` in the degraded phase) and **B** (sends status and headers, then its body one byte every
   ``--drip-interval`` seconds in the degraded phase);
2. builds a temporary SQLite portal database: N companies linked to N Demo ERP customers (bench/sync_bench.py's
   ``build``), 50 more companies each linked to an actor on A and one on B, the three connections active with
   Show-in-ERP-tab fields, and one licensed user;
3. serves the portal as the README's deployment section does (``gunicorn --workers 1 --threads 8 --timeout 120
   wsgi:app`` on 127.0.0.1, ``PORTAL_SCHEDULER=off``: the only runs are the ones started here);
4. runs two phases against the same web process, each with ``--clients`` signed-in browsing clients for
   ``--seconds``: company list pages, company searches (the htmx active search), H's ERP tab values, and A's and
   B's ERP tab values (``--erp-share`` of the requests, half each). During each phase one ``flask erp sync
   --connection "Demo ERP"`` runs (after C companies changed in the CRM and C customers in the ERP). The
   *healthy* phase has A and B answering normally; the *degraded* phase makes A slow and B drip, first loads B's
   and A's ERP tab once each (timed), and starts one ``erp sync`` of B before the load (timed, its attempts read
   from its log);
5. prints three tables (page latencies, the healthy connection's sync, how long the slow and dripping calls took to
   be ended) with the issue's targets next to the numbers, and exits 0 (a measurement; a missed target is printed).
"""

from __future__ import annotations

import argparse
import collections
import logging
import math
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import requests

from bench import markdown_table
from bench.sync_bench import ROOT, _config, _fernet_key, _free_port, build, make_changes, start_demo_erp

USERS = 8  # licensed users; the clients share their sessions (sign-ins per minute are rate-limited)
PASSWORD = "isolation-bench-password-0123"
H_NAME, A_NAME, B_NAME = "Demo ERP", "Slow ERP (A)", "Dripping ERP (B)"
A_GUID, B_GUID = "5a1e0c3d-7b2a-4c9e-8f10-aa0000000001", "5a1e0c3d-7b2a-4c9e-8f10-bb0000000002"
AB_COMPANIES = 50  # companies linked to an actor on A and one on B
H_TAB_FIELDS = ("NAME", "EMAIL", "PHONE", "POSTALCITY", "COUNTRY")  # H's Show in ERP tab fields
FAKE_MAP = {"name": "name", "email": "email", "phone": "phone", "country": "country_id"}  # A and B (both ways)
FAKE_COUNTRIES = {"NO": "Norway", "SE": "Sweden", "DK": "Denmark", "FI": "Finland", "DE": "Germany"}

LIST, SEARCH, TAB_H, TAB_A, TAB_B = "company list", "company search", "ERP tab of H", "ERP tab of A", "ERP tab of B"
KINDS = (LIST, SEARCH, TAB_H, TAB_A, TAB_B)
NON_ERP = (LIST, SEARCH)  # the pages the 1.5x target applies to
PAGE_TARGET, SYNC_TARGET, DEADLINE_SLACK = 1.5, 1.2, 1.0
ATTEMPT_LINE = re.compile(r"connector (\S+) (\w+) failed after ([\d.]+)s")


# ------------------------------------------------------------------------------------------------ setup


def _portal_env(work: Path, timeout: int) -> dict:
    """The environment of the web process and of the ``erp sync`` commands (same database, keys, timeout)."""
    return {**os.environ, "PYTHONPATH": str(ROOT),
            "PORTAL_DATABASE_URL": f"sqlite:///{work / 'portal.db'}", "PORTAL_SECRET_KEY": "isolation-bench-secret-key",
            "PORTAL_ENCRYPTION_KEYS": _fernet_key(work), "PORTAL_SCHEDULER": "off", "PORTAL_DEMO_DATA": "off",
            "PORTAL_DEMO_ERP_DB": str(work / "unused-demo.db"), "PORTAL_CONNECTOR_TIMEOUT": str(timeout),
            "PORTAL_LOG_LEVEL": "WARNING"}


def _drain(stream, keep: collections.deque) -> None:
    """Read a child's output to the end (a full pipe would stall it: the Demo ERP logs every request)."""
    for line in iter(stream.readline, b""):
        keep.append(line.decode(errors="replace"))


def _fake_connection(name: str, guid: str, fake, companies: list[int], values: list[dict]) -> int:
    """A connection on a fake connector: Customer mapped to companies and shown on the ERP tab, one actor per
    company linked with the agreed base (inside an app context)."""
    from sqlalchemy import insert, select

    from portal.database import utcnow
    from portal.extensions import db
    from portal.models import Connection, Connector, CrmList, Link, ListItem, ListItemMapping
    from portal.security import crypto
    from portal.services.connections import apply_catalogue, fetch_catalogue
    from portal.services.sync import fieldmap
    from portal.services.sync_settings import ensure_in_priority

    fake.add_connection(guid, {"Company": name, "ApiKey": "bench-key"})
    connector = Connector(name=f"{name} connector", url=fake.url)
    db.session.add(connector)
    db.session.flush()
    connection = Connection(connector=connector, name=name, guid=guid, active=True, last_test_ok=True,
                            config_values={"Company": name})
    connection.secrets_encrypted = crypto.encrypt_json({"ApiKey": "bench-key"})
    db.session.add(connection)
    db.session.flush()
    apply_catalogue(connection, fetch_catalogue(connector, guid))
    countries = {i.name: i.id for i in db.session.scalars(select(ListItem).where(
        ListItem.list_name == CrmList.COUNTRY))}
    config = connection.actor_type("Customer")
    config.is_active = True
    for erp_field in config.fields:
        erp_field.crm_field = FAKE_MAP.get(erp_field.field_key)
        erp_field.sync_to_crm = erp_field.sync_to_erp = erp_field.show_in_gui = erp_field.crm_field is not None
        if erp_field.field_key == "country":
            for key, country in FAKE_COUNTRIES.items():
                erp_field.list_mappings.append(ListItemMapping(erp_item_key=key, erp_item_text=country,
                                                               crm_item_id=countries[country]))
    ensure_in_priority(connection.id)
    db.session.commit()
    fields = fieldmap.mapped_fields(config, synced_only=True)
    now = utcnow() - timedelta(days=1)
    rows, stamps = [], []
    for company_id, value in zip(companies, values, strict=True):
        key = fake.add_actor("Customer", value)
        stamp = fake.get_actor("Customer", key)["LastModified"]
        stamps.append(stamp)
        base, errors = fieldmap.erp_side(value, fields)
        assert not errors, errors
        rows.append({"connection_id": connection.id, "crm_type": "company", "crm_id": company_id,
                     "erp_actor_type": "Customer", "erp_key": key, "base": base, "status": "ok", "status_message": "",
                     "last_result": "", "failures": 0, "erp_last_modified": stamp, "last_synced_at": now,
                     "crm_synced_at": now, "created_at": now, "updated_at": now})
    db.session.execute(insert(Link), rows)
    connection.cursors = {"Customer": max(stamps)}
    db.session.commit()
    return connection.id


def setup(work: Path, demo_port: int, links: int, fake_a, fake_b) -> dict:
    """The portal database: H (bench/sync_bench.py's build), A and B, a licensed user. Returns the ids."""
    from sqlalchemy import insert, select, update

    from portal import create_app
    from portal.database import utcnow
    from portal.extensions import db
    from portal.models import Company, Connection, CrmList, ErpField, ListItem, User

    build(work, demo_port, links)
    app = create_app(_config(work, demo_port), environ={})
    with app.app_context():
        h = db.session.scalar(select(Connection).where(Connection.name == H_NAME))
        config = h.actor_type("Customer")
        db.session.execute(update(ErpField).where(ErpField.actor_type_id == config.id,
                                                  ErpField.field_key.in_(H_TAB_FIELDS)).values(show_in_gui=True))
        hashed = None
        for n in range(USERS):
            user = User(email=_email(n), name=f"Isolation Bench {n}", role="user", erp_licence=True)
            if hashed is None:
                user.set_password(PASSWORD)
                hashed = user.password_hash
            user.password_hash = hashed
            db.session.add(user)
        db.session.commit()
        h_companies = db.session.scalars(select(Company.id).order_by(Company.id)).all()
        countries = {i.name: i.id for i in db.session.scalars(select(ListItem).where(
            ListItem.list_name == CrmList.COUNTRY))}
        rng = random.Random(7)
        values = [{"name": f"Isolation Company {n:03d} AS", "email": f"post@isolation{n}.example",
                   "phone": f"+47 {rng.randint(20000000, 99999999)}", "country": rng.choice(list(FAKE_COUNTRIES))}
                  for n in range(AB_COMPANIES)]
        day_ago = utcnow() - timedelta(days=1)
        ab_companies = db.session.execute(insert(Company).returning(Company.id), [
            {"name": v["name"], "email": v["email"], "phone": v["phone"],
             "country_id": countries[FAKE_COUNTRIES[v["country"]]], "created_at": day_ago, "updated_at": day_ago}
            for v in values]).scalars().all()
        db.session.commit()
        a = _fake_connection(A_NAME, A_GUID, fake_a, list(ab_companies), values)
        b = _fake_connection(B_NAME, B_GUID, fake_b, list(ab_companies), values)
        ids = {"h": h.id, "a": a, "b": b, "h_companies": list(h_companies), "ab_companies": list(ab_companies)}
        db.session.remove()
        db.engine.dispose()
    return ids


def start_gunicorn(work: Path, env: dict, log_path: Path) -> tuple[subprocess.Popen, str]:
    """The portal as README § Deployment serves it (one worker, 8 threads), on a free port of 127.0.0.1."""
    port = _free_port()
    log = open(log_path, "ab")  # noqa: SIM115 - closed by the caller's finally through the process
    process = subprocess.Popen([sys.executable, "-m", "gunicorn", "--workers", "1", "--threads", "8", "--timeout",
                                "120", "--bind", f"127.0.0.1:{port}", "wsgi:app"], cwd=ROOT, env=env,
                               stdout=log, stderr=subprocess.STDOUT)
    log.close()  # the child holds its own descriptor
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn did not start:\n{log_path.read_text()[-3000:]}")
        try:
            if requests.get(f"{base}/login", timeout=2).status_code == 200:
                return process, base
        except requests.RequestException:
            pass
        time.sleep(0.2)
    _stop(process)
    raise RuntimeError("gunicorn did not answer within 60 s")


def _stop(process: subprocess.Popen | None, grace: float = 35) -> None:
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


# ------------------------------------------------------------------------------------------------ clients


def _email(n: int) -> str:
    return f"isolation.bench{n}@example.com"


def sessions_for(base: str, clients: int) -> list[requests.Session]:
    """One signed-in session per client: ``USERS`` sign-ins (the portal limits sign-ins per minute per address),
    each shared by every USERS-th client through a copy of its cookie."""
    signed = [sign_in(base, _email(n)) for n in range(min(USERS, clients))]
    return [signed[n] if n < len(signed) else clone(signed[n % len(signed)]) for n in range(clients)]


def browser() -> requests.Session:
    """A session that, like a browser, sends a GET again once when a kept-alive connection turns out closed (gunicorn
    closes idle ones after 2 s; a request sent at that moment would otherwise fail)."""
    from urllib3.util.retry import Retry

    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter(max_retries=Retry(total=1, connect=1, read=1, status=0, other=0,
                                                              allowed_methods=["GET"], raise_on_status=False))
    session.mount("http://", adapter)
    return session


def clone(session: requests.Session) -> requests.Session:
    """Another browser of the same signed-in user (its own connections, the same session cookie)."""
    copy = browser()
    copy.cookies.update(session.cookies)
    return copy


def sign_in(base: str, email: str) -> requests.Session:
    session = browser()
    page = session.get(f"{base}/login", timeout=30)
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page.text)
    if token is None:
        raise RuntimeError("no CSRF token on the login page")
    answer = session.post(f"{base}/login", data={"csrf_token": token.group(1), "email": email, "password": PASSWORD,
                                                  "next": ""}, allow_redirects=False, timeout=30)
    if answer.status_code != 302:
        raise RuntimeError(f"sign-in failed: HTTP {answer.status_code}")
    return session


def tab_outcome(status: int, html: str) -> str:
    """What an ERP tab values answer showed: ok, busy (bulkhead), breaker (open), timeout, error."""
    if status != 200:
        return f"HTTP {status}"
    if '<dl class="fields">' in html:
        return "ok"
    if "is slow:" in html or "The ERPs are slow" in html:
        return "busy"
    if "is not answering since" in html:
        return "breaker"
    if "did not answer within" in html:
        return "timeout"
    return "error" if "could not be loaded" in html else "other"


@dataclass
class Sample:
    kind: str
    started: float  # seconds since the phase began
    seconds: float
    outcome: str


@dataclass
class Workload:
    base: str
    ids: dict
    links: int
    erp_share: float
    think: float
    patience: float
    probe_companies: tuple[int, ...] = ()  # kept out of the clients' picks (never cached when probed)

    def request(self, session: requests.Session, kind: str, rng: random.Random) -> tuple[int, str]:
        ids, htmx = self.ids, {"HX-Request": "true"}
        if kind == LIST:
            url, headers = f"/companies?page={rng.randint(1, max(1, min(20, self.links // 25)))}", {}
        elif kind == SEARCH:
            url, headers = f"/companies?q=Company+{rng.randrange(max(1, self.links // 10)):04d}", htmx
        else:
            conn = {TAB_H: ids["h"], TAB_A: ids["a"], TAB_B: ids["b"]}[kind]
            pool = ids["h_companies"] if kind == TAB_H else ids["ab_companies"][len(self.probe_companies):]
            url, headers = f"/erp/company/{rng.choice(pool)}/connections/{conn}/values", htmx
        answer = session.get(self.base + url, headers=headers, timeout=300, allow_redirects=False)
        return answer.status_code, answer.text

    def pick(self, rng: random.Random) -> str:
        other = (1 - self.erp_share) / 3
        return rng.choices(KINDS, weights=(other, other, other, self.erp_share / 2, self.erp_share / 2))[0]

    def timed(self, session, kind, rng, origin: float, record_id: int | None = None) -> Sample:
        started = time.monotonic()
        try:
            if record_id is not None:  # a probe of one given record's ERP tab
                conn = self.ids["a" if kind == TAB_A else "b"]
                answer = session.get(f"{self.base}/erp/company/{record_id}/connections/{conn}/values",
                                     headers={"HX-Request": "true"}, timeout=300, allow_redirects=False)
                status, html = answer.status_code, answer.text
            else:
                status, html = self.request(session, kind, rng)
            outcome = ("ok" if status == 200 else f"HTTP {status}") if kind in NON_ERP else tab_outcome(status, html)
        except requests.RequestException as exc:
            outcome = f"failed: {type(exc).__name__}"
        return Sample(kind, started - origin, time.monotonic() - started, outcome)

    def client(self, session, seed: int, origin: float, stop: threading.Event, out: list[Sample],
               lazy: list[threading.Thread]) -> None:
        """One browsing user until ``stop`` is set: a page, a think time, the next page. An ERP tab loads lazily (htmx):
        the user waits for it at most ``patience`` seconds, then browses on while it still loads (its own
        connection, like a browser's; the web thread serving it is held either way)."""
        rng = random.Random(seed)
        while not stop.is_set():
            kind = self.pick(rng)
            if kind in NON_ERP:
                out.append(self.timed(session, kind, rng, origin))
            else:
                tab = clone(session)
                thread = threading.Thread(target=self._lazy, args=(tab, kind, random.Random(rng.random()), origin, out),
                                          daemon=True)
                thread.start()
                lazy.append(thread)
                thread.join(self.patience)
            stop.wait(rng.uniform(0, 2 * self.think))

    def _lazy(self, tab: requests.Session, kind: str, rng: random.Random, origin: float, out: list[Sample]) -> None:
        try:
            out.append(self.timed(tab, kind, rng, origin))
        finally:
            tab.close()


def peak_in_flight(samples: list[Sample], longer_than: float = 1.0) -> int:
    """The most requests of more than ``longer_than`` seconds in flight at once (each holds a web thread)."""
    events = sorted([(s.started, 1) for s in samples if s.seconds > longer_than]
                    + [(s.started + s.seconds, -1) for s in samples if s.seconds > longer_than])
    peak = current = 0
    for _moment, step in events:
        current += step
        peak = max(peak, current)
    return peak


# ------------------------------------------------------------------------------------------------ sync runs


class SyncCommand:
    """``flask --app wsgi erp sync --connection NAME`` in a subprocess, timed; its run id and the connector
    attempts its log reports as failed (``connector URL Method failed after N.NNNs``)."""

    def __init__(self, env: dict, name: str, children: list) -> None:
        self.name = name
        self.started = time.monotonic()
        self.process = subprocess.Popen([sys.executable, "-m", "flask", "--app", "wsgi", "erp", "sync", "--connection",
                                         name], cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE)
        children.append(self.process)
        self.stdout: collections.deque = collections.deque()
        self.stderr: collections.deque = collections.deque()
        self.running = threading.Event()  # its run was requested (the command printed "run #N")
        self.seconds: float | None = None
        self._threads = [threading.Thread(target=self._read_stdout, daemon=True),
                         threading.Thread(target=_drain, args=(self.process.stderr, self.stderr), daemon=True)]
        for thread in self._threads:
            thread.start()

    def _read_stdout(self) -> None:
        for line in iter(self.process.stdout.readline, b""):
            text = line.decode(errors="replace")
            self.stdout.append(text)
            if "run #" in text:
                self.running.set()
        self.running.set()

    def wait(self, timeout: float = 900) -> SyncCommand:
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=10)
        self.seconds = time.monotonic() - self.started
        for thread in self._threads:
            thread.join(timeout=5)
        return self

    @property
    def run_id(self) -> int | None:
        match = re.search(r"run #(\d+)", "".join(self.stdout))
        return int(match.group(1)) if match else None

    def attempts(self, url: str) -> list[tuple[str, float]]:
        return failed_attempts("".join(self.stderr), url)


def failed_attempts(log: str, url: str) -> list[tuple[str, float]]:
    """(method, seconds) of every failed connector attempt to ``url`` the portal logged."""
    return [(m.group(2), float(m.group(3))) for m in ATTEMPT_LINE.finditer(log) if m.group(1) == url]


def run_details(work: Path, demo_port: int, run_id: int | None) -> dict:
    """The run's own numbers from the database (its duration without the command's start-up)."""
    from portal import create_app
    from portal.extensions import db
    from portal.models import SyncRun

    if run_id is None:
        return {"status": "no run", "run_seconds": None, "records": 0, "message": ""}
    app = create_app(_config(work, demo_port), environ={})
    with app.app_context():
        run = db.session.get(SyncRun, run_id)
        seconds = ((run.finished_at - run.started_at).total_seconds()
                   if run.finished_at is not None and run.started_at is not None else None)
        details = {"status": str(run.status), "run_seconds": seconds, "records": (run.counts or {}).get("records", 0),
                   "message": (run.message or run.error or "")[:160], "connector_seconds": run.connector_seconds}
        db.session.remove()
        db.engine.dispose()
    return details


# ------------------------------------------------------------------------------------------------ phases


@dataclass
class Phase:
    name: str
    samples: list[Sample] = field(default_factory=list)
    seconds: float = 0.0
    h_syncs: list[dict] = field(default_factory=list)
    b_sync: dict = field(default_factory=dict)
    probes: dict[str, Sample] = field(default_factory=dict)
    web_attempts: dict[str, list[tuple[str, float]]] = field(default_factory=dict)  # from the web process's log


@dataclass
class Bench:
    args: argparse.Namespace
    work: Path
    demo_port: int
    env: dict
    workload: Workload
    sessions: list[requests.Session]
    fake_a: object
    fake_b: object
    log_path: Path
    children: list = field(default_factory=list)

    def phase(self, name: str, round_no: int, degraded: bool) -> Phase:
        args, result = self.args, Phase(name)
        make_changes(self.work, self.demo_port, args.links, args.changes, round_no)  # what H's sync will carry
        log_offset = self.log_path.stat().st_size
        b_sync = None
        origin = time.monotonic()
        probes: list[threading.Thread] = []
        if degraded:
            self.fake_a.delay(args.slow_seconds)
            self.fake_b.drip(args.drip_interval, times=None)
            # one ERP tab load of B and of A, before the clients take the slots (timed: the deadline)
            for kind, record_id in zip((TAB_B, TAB_A), self.workload.probe_companies, strict=True):
                session = clone(self.sessions[0])

                def probe(kind=kind, session=session, record_id=record_id):
                    result.probes[kind] = self.workload.timed(session, kind, None, origin, record_id)

                probes.append(threading.Thread(target=probe, daemon=True))
                probes[-1].start()
                time.sleep(0.2)
            seen = len(self.fake_b.requests)
            b_sync = SyncCommand(self.env, B_NAME, self.children)
            deadline = time.monotonic() + 60  # started, and now only waiting on B (its start-up CPU is over)
            while len(self.fake_b.requests) == seen and b_sync.process.poll() is None and time.monotonic() < deadline:
                time.sleep(0.1)
        load_origin = time.monotonic()
        stop = threading.Event()
        lazy: list[threading.Thread] = []
        clients = [threading.Thread(target=self.workload.client,
                                    args=(session, 1000 * round_no + n, load_origin, stop, result.samples, lazy),
                                    daemon=True) for n, session in enumerate(self.sessions)]
        for thread in clients:
            thread.start()
        time.sleep(min(args.sync_after, args.seconds / 2))
        h_syncs = []
        for n in range(args.sync_runs):  # the load goes on until the last one has ended
            if n:
                make_changes(self.work, self.demo_port, args.links, args.changes, 100 * round_no + n)
            h_syncs.append(SyncCommand(self.env, H_NAME, self.children).wait())
        time.sleep(max(0.0, load_origin + args.seconds - time.monotonic()))
        stop.set()
        result.seconds = time.monotonic() - load_origin
        for thread in clients:
            thread.join()
        for thread in lazy:
            thread.join()
        for thread in probes:
            thread.join()
        if b_sync is not None:
            b_sync.wait()
        self.fake_a.clear_faults()
        self.fake_b.clear_faults()
        result.h_syncs = [{"command_seconds": h.seconds, "exit": h.process.returncode,
                           **run_details(self.work, self.demo_port, h.run_id)} for h in h_syncs]
        if b_sync is not None:
            result.b_sync = {"command_seconds": b_sync.seconds, "exit": b_sync.process.returncode,
                             "attempts": b_sync.attempts(self.fake_b.url),
                             **run_details(self.work, self.demo_port, b_sync.run_id)}
        with open(self.log_path, "rb") as log:
            log.seek(log_offset)
            text = log.read().decode(errors="replace")
        result.web_attempts = {"a": failed_attempts(text, self.fake_a.url), "b": failed_attempts(text, self.fake_b.url)}
        return result


def warm_up(workload: Workload, sessions: list[requests.Session]) -> None:
    """Every session loads each page type a few times (templates compiled, connections pooled): not measured."""
    rng = random.Random(0)
    origin = time.monotonic()
    for session in sessions:
        for kind in KINDS:
            workload.timed(session, kind, rng, origin)


# ------------------------------------------------------------------------------------------------ report


def percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value * 1000:,.0f}"


def _s(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def _outcomes(samples: list[Sample]) -> str:
    counts = collections.Counter(s.outcome for s in samples)
    return ", ".join(f"{name} {count}" for name, count in counts.most_common())


def _verdict(ok: bool | None) -> str:
    return "-" if ok is None else ("met" if ok else "target missed")


def report(args, healthy: Phase, degraded: Phase, web_timeout: float, out=sys.stdout) -> list[str]:
    """Prints the tables; returns the missed targets."""
    missed: list[str] = []
    rows = []
    for kind in KINDS:
        before = [s for s in healthy.samples if s.kind == kind]
        after = [s for s in degraded.samples if s.kind == kind]
        p95_before = percentile([s.seconds for s in before], 95)
        p95_after = percentile([s.seconds for s in after], 95)
        ratio = p95_after / p95_before if p95_before and p95_after is not None else None
        ok = None
        if kind in NON_ERP:
            ok = ratio is not None and ratio <= PAGE_TARGET
            if not ok:
                missed.append(f"{kind}: p95 {_ms(p95_after)} ms is {_s(ratio)}x its healthy {_ms(p95_before)} ms")
        threads = [sum(s.seconds for s in group) / phase.seconds
                   for group, phase in ((before, healthy), (after, degraded))]
        rows.append([kind, str(len(before)), _ms(percentile([s.seconds for s in before], 50)), _ms(p95_before),
                     str(len(after)), _ms(percentile([s.seconds for s in after], 50)), _ms(p95_after),
                     f"{_s(ratio)}x", f"<= {PAGE_TARGET}x" if kind in NON_ERP else "none (ERP page)", _verdict(ok),
                     f"{threads[0]:.1f} → {threads[1]:.1f}", _outcomes(before), _outcomes(after)])
    rate = [len(p.samples) / p.seconds if p.seconds else 0 for p in (healthy, degraded)]
    print(f"\nPages ({args.clients} clients; {len(healthy.samples)} requests in {healthy.seconds:.1f} s of load = "
          f"{rate[0]:.1f}/s healthy, {len(degraded.samples)} in {degraded.seconds:.1f} s = {rate[1]:.1f}/s degraded; "
          "requests of more than 1 s "
          f"in flight at once, at most: {peak_in_flight(healthy.samples)} healthy, "
          f"{peak_in_flight(degraded.samples)} degraded, of gunicorn's 8 threads)", file=out)
    print(markdown_table(rows, ["Page", "Healthy n", "Healthy p50 ms", "Healthy p95 ms", "Degraded n",
                                "Degraded p50 ms", "Degraded p95 ms", "p95 ÷ healthy", "Target", "Verdict",
                                "In flight (mean)", "Healthy outcomes", "Degraded outcomes"]), file=out)
    for phase in (healthy, degraded):
        tabs = [s for s in phase.samples if s.kind == TAB_H]
        shown = sum(s.outcome == "ok" for s in tabs)
        if tabs and shown < len(tabs):
            print(f"note: H's ERP tab showed values in {shown} of {len(tabs)} loads in the {phase.name} phase "
                  f"({_outcomes(tabs)})", file=out)

    rows = []
    medians = {}
    for phase in (healthy, degraded):
        seconds = [r["run_seconds"] for r in phase.h_syncs if r.get("run_seconds") is not None]
        medians[phase.name] = statistics.median(seconds) if seconds else None
    base_run = medians[healthy.name]
    for phase in (healthy, degraded):
        syncs, median = phase.h_syncs, medians[phase.name]
        ratio = median / base_run if base_run and median is not None else None
        ok = None
        if phase is degraded:
            ok = ratio is not None and ratio <= SYNC_TARGET
            if not ok:
                missed.append(f"H's sync: {_s(median)} s is {_s(ratio)}x its healthy {_s(base_run)} s")
        statuses = "/".join(sorted({r["status"] for r in syncs}))
        each = " ".join(_s(r.get("run_seconds")) for r in syncs) if len(syncs) > 1 else ""
        rows.append([f"erp sync --connection \"{H_NAME}\" ({phase.name})", str(len(syncs)), statuses,
                     f"{statistics.median(r['records'] for r in syncs):,.0f}", _s(median) + (f" ({each})" if each else ""),
                     _s(statistics.median(r.get("connector_seconds") or 0 for r in syncs)),
                     _s(statistics.median(r["command_seconds"] for r in syncs)),
                     f"{_s(ratio)}x", f"<= {SYNC_TARGET}x" if phase is degraded else "", _verdict(ok)])
    print(f"\nThe healthy connection's sync ({args.changes} CRM + {args.changes} ERP changes before each run, during "
          "the load; medians)", file=out)
    print(markdown_table(rows, ["Run", "Runs", "Status", "Records", "Run s", "Connector s", "Command s", "÷ healthy",
                                "Target", "Verdict"]), file=out)

    rows = []
    target = f"{web_timeout:g} ± {DEADLINE_SLACK:g} s"

    def within(seconds: list[float], deadline: float) -> bool:
        return bool(seconds) and all(abs(s - deadline) <= DEADLINE_SLACK for s in seconds)

    for kind, label in ((TAB_B, "B (drip): one ERP tab load, before the load"),
                        (TAB_A, "A (slow): one ERP tab load, before the load")):
        probe = degraded.probes.get(kind)
        seconds = [probe.seconds] if probe is not None and probe.outcome == "timeout" else []
        ok = within(seconds, web_timeout) if kind == TAB_B else None
        if kind == TAB_B and not ok:
            missed.append(f"B's ERP tab load: {_s(probe.seconds if probe else None)} s ({probe.outcome if probe else '-'})")
        rows.append([label, probe.outcome if probe else "-", "1", _s(probe.seconds if probe else None),
                     target if kind == TAB_B else "(info)", _verdict(ok)])
    for key, label in (("b", "B (drip): ERP tab calls of the degraded phase, the probe too (web log)"),
                       ("a", "A (slow): ERP tab calls of the degraded phase, the probe too (web log)")):
        seconds = [s for _m, s in degraded.web_attempts.get(key, [])]
        ok = within(seconds, web_timeout) if key == "b" and seconds else None
        if key == "b" and seconds and not ok:
            missed.append(f"B's ERP tab calls ended after {_s(min(seconds))}–{_s(max(seconds))} s")
        rows.append([label, "failed attempts", str(len(seconds)),
                     f"{_s(min(seconds))}–{_s(max(seconds))}" if seconds else "-",
                     target if key == "b" else "(info)", _verdict(ok)])
    sync = degraded.b_sync
    if sync:
        seconds = [s for _m, s in sync["attempts"]]
        ok = within(seconds, args.timeout)
        if not ok:
            missed.append(f"B's sync attempts ended after {_s(min(seconds) if seconds else None)}–"
                          f"{_s(max(seconds) if seconds else None)} s")
        rows.append([f"B (drip): one erp sync --connection \"{B_NAME}\", each attempt", sync["status"],
                     str(len(seconds)), f"{_s(min(seconds))}–{_s(max(seconds))}" if seconds else "-",
                     f"{args.timeout} ± {DEADLINE_SLACK:g} s", _verdict(ok)])
        rows.append(["B (drip): that whole sync run (all attempts and back-off)", sync["status"], "1",
                     f"{_s(sync.get('run_seconds'))} (command {_s(sync['command_seconds'])})", "(info)", "-"])
    print(f"\nSlow and dripping calls: how long until the portal ended them (deadline: PORTAL_CONNECTOR_TIMEOUT="
          f"{args.timeout} s; the ERP tab's is {web_timeout:g} s)", file=out)
    print(markdown_table(rows, ["Call", "Outcome", "n", "Ended after s", "Target", "Verdict"]), file=out)
    if sync and sync.get("message"):
        print(f"B's run message: {sync['message']}", file=out)
    return missed


def log_findings(log_path: Path, out=sys.stdout) -> None:
    """Errors the web process logged (tracebacks, worker timeouts): a sign of a portal problem, not of the ERPs."""
    text = log_path.read_text(errors="replace")
    errors = [line for line in text.splitlines() if " ERROR " in line or "CRITICAL" in line or "[ERROR]" in line]
    tracebacks = text.count("Traceback (most recent call last)")
    print(f"web process log: {len(errors)} error line(s), {tracebacks} traceback(s)", file=out)
    for line in errors[:5]:
        print(f"  {line[:200]}", file=out)


# ------------------------------------------------------------------------------------------------ main


def run_benchmark(args, out=sys.stdout) -> list[str]:
    from portal.services.erp_tab import DEFAULT_TIMEOUT as ERP_TAB_TIMEOUT
    from tests.fakes.connector_app import FakeConnector

    logging.getLogger("urllib3").setLevel(logging.ERROR)  # the clients' one retry of a closed keep-alive connection
    work = Path(tempfile.mkdtemp(prefix="isolation-bench-"))
    demo = gunicorn = None
    demo_log: collections.deque = collections.deque(maxlen=50)
    fakes = [FakeConnector(), FakeConnector()]
    bench = None
    try:
        demo, demo_port = start_demo_erp(work)
        threading.Thread(target=_drain, args=(demo.stderr, demo_log), daemon=True).start()
        fake_a, fake_b = (fake.start() for fake in fakes)
        started = time.perf_counter()
        ids = setup(work, demo_port, args.links, fake_a, fake_b)
        env = _portal_env(work, args.timeout)
        log_path = work / "gunicorn.log"
        gunicorn, base = start_gunicorn(work, env, log_path)
        workload = Workload(base, ids, args.links, args.erp_share, args.think, args.patience,
                            tuple(ids["ab_companies"][:2]))
        sessions = sessions_for(base, args.clients)
        warm_up(workload, sessions)
        web_timeout = min(float(ERP_TAB_TIMEOUT), float(args.timeout))  # the ERP tab's own cap
        print(f"setup: {args.links:,} companies linked to H (Demo ERP), {AB_COMPANIES} linked to A and B, "
              f"gunicorn -w 1 --threads 8 on {base}, in {time.perf_counter() - started:.1f} s ({work})", file=out)
        print(f"settings: PORTAL_CONNECTOR_TIMEOUT={args.timeout} s (ERP tab: {web_timeout:g} s), ERP tab "
              "concurrency 2 per connection / 4 in all, cache 10 s, breaker 5 failures / 30 s (the defaults); "
              f"degraded: A answers after {args.slow_seconds:g} s, B drips 1 byte / {args.drip_interval:g} s; "
              f"load: {args.clients} clients x {args.seconds:g} s per phase, think 0–{2 * args.think:g} s, "
              f"{args.erp_share:.0%} of requests open A's or B's ERP tab", file=out, flush=True)
        bench = Bench(args, work, demo_port, env, workload, sessions, fake_a, fake_b, log_path)
        healthy = bench.phase("healthy", 1, degraded=False)
        print(f"healthy phase done ({len(healthy.samples)} requests)", file=out, flush=True)
        degraded = bench.phase("degraded", 2, degraded=True)
        print(f"degraded phase done ({len(degraded.samples)} requests)", file=out, flush=True)
        missed = report(args, healthy, degraded, web_timeout, out)
        log_findings(log_path, out)
        print("\n" + ("all targets met" if not missed else "target missed:\n  " + "\n  ".join(missed)), file=out)
        return missed
    finally:
        for fake in fakes:
            fake.clear_faults()
        for process in bench.children if bench else []:
            _stop(process, grace=10)
        _stop(gunicorn)
        for fake in fakes:
            fake.stop()
        _stop(demo, grace=10)
        if args.keep:
            print(f"kept {work}", file=out)
        else:
            shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=None, help="seconds of load per phase (default 20)")
    parser.add_argument("--links", type=int, default=None, help="companies linked to H (default 2000)")
    parser.add_argument("--changes", type=int, default=None,
                        help="CRM and ERP changes H's sync carries in each phase (default 500 + 500; --quick 250 + 250)")
    parser.add_argument("--timeout", type=int, default=10, help="PORTAL_CONNECTOR_TIMEOUT of the portal (default 10)")
    parser.add_argument("--slow-seconds", type=float, default=60, help="A answers this late (default 60)")
    parser.add_argument("--drip-interval", type=float, default=2, help="B sends one byte this often (default 2 s)")
    parser.add_argument("--erp-share", type=float, default=0.25, help="share of requests to A's or B's ERP tab")
    parser.add_argument("--think", type=float, default=0.25,
                        help="mean think time of a client between two requests (uniform 0 to twice it)")
    parser.add_argument("--patience", type=float, default=2,
                        help="seconds a client waits for an ERP tab before browsing on while it loads (default 2)")
    parser.add_argument("--sync-runs", type=int, default=1, metavar="N",
                        help="H's syncs per phase, one after the other during the load (their median is compared)")
    parser.add_argument("--sync-after", type=float, default=2, help="seconds into the load H's sync starts")
    parser.add_argument("--quick", action="store_true", help="10 s per phase, 1,000 links, 250 + 250 changes")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (databases, web log)")
    args = parser.parse_args(argv)
    quick = {"seconds": 10, "links": 1000, "changes": 250}
    full = {"seconds": 20, "links": 2000, "changes": 500}
    for name, value in (quick if args.quick else full).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.changes * 2 > args.links:
        parser.error("--changes can be at most half of --links")
    if not 0 <= args.erp_share < 1:
        parser.error("--erp-share must be in [0, 1)")
    run_benchmark(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())

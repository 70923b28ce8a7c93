"""Install, initialise, start and stop a local Tryton ERP (trytond 8.0 LTS, SQLite) for demos and tests.

Tryton is GPL-3.0: it is **never imported into the portal's process**. It lives in its own virtualenv under the
Tryton home (default ``instance/tryton``, or ``PORTAL_TRYTON_HOME``) and runs as its own server process; the
portal talks to it over HTTP (``portal.connectors.builtin.tryton``). The only Tryton code this module runs is
started as separate processes from that virtualenv (``trytond-admin``, ``trytond``, a country-import driver).

Layout of a Tryton home::

    venv/                Tryton's own virtualenv (pinned versions below)
    constraints.txt      the pins, as given to pip
    trytond.conf         [web] listen = 127.0.0.1:<port>, [database] uri = sqlite://, path = db/
    passfile             the admin password (0600), read by trytond-admin via TRYTONPASSFILE
    db/<name>.sqlite     the database
    template.sqlite      a copy of the initialised database with demo data; tests copy it per run
    setup.json           what setup did: versions, database, user, demo record ids, timings
    trytond.pid/.log     the server started by ``flask tryton start``

Plain functions (importable by tests): ``install``, ``init_database``, ``populate_demo_data``,
``make_template``, ``setup``, ``start_server``, ``wait_ready``, ``stop_server``, ``free_port``,
``read_password``, ``is_set_up``. The ``tryton_group`` click group wraps them as
``flask --app wsgi tryton setup|start|stop|status|serve-connector``.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import click
from flask import current_app
from flask.cli import AppGroup

# ------------------------------------------------------------------------------------------ versions
TRYTON_SERIES = "8.0"  # the LTS line; every module pins trytond<8.1, so all stay on the same series
#: What we install, exactly pinned (the Tryton modules and the two tools used by the country import).
REQUIREMENTS = (
    "trytond==8.0.12",
    "trytond-party==8.0.4",
    "trytond-company==8.0.1",
    "trytond-currency==8.0.0",
    "trytond-country==8.0.0",
    "trytond-project==8.0.4",
    "trytond-party-relationship==8.0.0",
    "proteus==8.0.0",  # Tryton's client library: used only by trytond's own country-import script
    "pycountry==26.2.16",  # ISO 3166 data for that script
)
#: Their dependencies, pinned too (pip -c), as resolved on 2026-11-25.
CONSTRAINTS = REQUIREMENTS + (
    "trytond-timesheet==8.0.0",
    "trytond-company-work-time==8.0.0",
    "argon2-cffi==25.1.0",
    "argon2-cffi-bindings==26.2.0",
    "cffi==2.1.1",
    "defusedxml==0.7.1",
    "Genshi==0.7.12",
    "lxml==6.1.3",
    "MarkupSafe==3.0.4",
    "polib==1.2.0",
    "puremagic==1.30",
    "pwdlib==0.3.1",
    "pycparser==3.12",
    "python-dateutil==4.0.0",
    "python-sql==1.8.1",
    "python-stdnum==2.2",
    "relatorio==1.0.0",
    "simpleeval==1.0.8",
    "tzdata==2026.6",
    "Werkzeug==3.1.9",
)
#: Modules activated in the database (their dependencies come with --activate-dependencies).
MODULES = ("party", "company", "project", "party_relationship", "country", "currency")
#: Countries whose subdivisions (states, regions …) the default setup imports (all 249 countries are
#: always imported; all ~5000 subdivisions take ~45 s more: ``setup --all-subdivisions``).
SUBDIVISION_COUNTRIES = ("AT", "CH", "DE", "DK", "FI", "NL", "NO", "SE", "US", "CA")

DEFAULT_PORT = 8765
DEFAULT_DB = "erp"
ADMIN_USER = "admin"
ADMIN_EMAIL = "admin@example.com"

Log = Callable[[str], None]


def _quiet(_message: str) -> None:
    pass


# --------------------------------------------------------------------------------------------- paths
class TrytonHome:
    """Paths inside a Tryton home folder."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).resolve()
        self.venv = self.root / "venv"
        self.python = self.venv / "bin" / "python"
        self.conf = self.root / "trytond.conf"
        self.passfile = self.root / "passfile"
        self.db_dir = self.root / "db"
        self.template = self.root / "template.sqlite"
        self.state_file = self.root / "setup.json"
        self.constraints = self.root / "constraints.txt"
        self.pidfile = self.root / "trytond.pid"
        self.logfile = self.root / "trytond.log"

    def bin(self, name: str) -> Path:
        return self.venv / "bin" / name

    def db_file(self, name: str = DEFAULT_DB, db_dir: Path | None = None) -> Path:
        return Path(db_dir or self.db_dir) / f"{name}.sqlite"

    def state(self) -> dict:
        try:
            return json.loads(self.state_file.read_text())
        except (OSError, ValueError):
            return {}

    def save_state(self, **changes) -> dict:
        state = self.state()
        state.update(changes)
        self.state_file.write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")
        return state

    def __fspath__(self) -> str:
        return str(self.root)

    def __repr__(self) -> str:
        return f"TrytonHome({str(self.root)!r})"


def _home(home) -> TrytonHome:
    return home if isinstance(home, TrytonHome) else TrytonHome(home)


def default_home(instance_path: str | os.PathLike | None = None) -> Path:
    """``PORTAL_TRYTON_HOME`` if set, else ``<instance>/tryton``."""
    if os.environ.get("PORTAL_TRYTON_HOME"):
        return Path(os.environ["PORTAL_TRYTON_HOME"])
    return Path(instance_path or "instance") / "tryton"


def read_password(home) -> str:
    return _home(home).passfile.read_text().strip()


def is_set_up(home, name: str | None = None) -> bool:
    """True when the venv has trytond and the template database exists."""
    h = _home(home)
    return h.bin("trytond").exists() and h.template.exists() and (name is None or h.state().get("database") == name)


# ------------------------------------------------------------------------------------------- install
def _run(cmd: list, *, env: dict | None = None, timeout: float = 600, what: str = "") -> str:
    try:
        done = subprocess.run([str(part) for part in cmd], env=env, stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"{what or cmd[0]} did not finish within {timeout:g} s") from exc
    if done.returncode != 0:
        output = "\n".join(line for line in (done.stdout + done.stderr).splitlines()
                           if "is ignored: it is neither a file nor a directory" not in line)
        raise RuntimeError(f"{what or cmd[0]} failed (exit {done.returncode}):\n{output[-4000:]}")
    return done.stdout


def installed_versions(home) -> dict[str, str]:
    """Versions of the Tryton packages in the home's venv (asked to the venv's own Python)."""
    h = _home(home)
    if not h.python.exists():
        return {}
    names = [requirement.split("==")[0] for requirement in REQUIREMENTS]
    code = ("import json, importlib.metadata as m, sys\n"
            "out = {}\n"
            "for n in sys.argv[1:]:\n"
            "    try: out[n] = m.version(n)\n"
            "    except m.PackageNotFoundError: pass\n"
            "print(json.dumps(out))")
    try:
        return json.loads(_run([h.python, "-c", code, *names], timeout=60, what="version check"))
    except (RuntimeError, ValueError):
        return {}


def install(home, *, log: Log = _quiet, python: str | None = None) -> dict[str, str]:
    """Create ``<home>/venv`` and pip-install the pinned Tryton packages (skipped when already there)."""
    h = _home(home)
    h.root.mkdir(parents=True, exist_ok=True)
    wanted = {req.split("==")[0]: req.split("==")[1] for req in REQUIREMENTS}
    have = installed_versions(h)
    if have == wanted:
        log(f"venv: Tryton {have['trytond']} already installed in {h.venv}")
        return have
    if not h.python.exists():
        log(f"venv: creating {h.venv}")
        _run([python or sys.executable, "-m", "venv", h.venv], what="python -m venv", timeout=300)
    h.constraints.write_text("# Pins for the Tryton virtualenv, written by portal.tryton_admin\n"
                             + "\n".join(CONSTRAINTS) + "\n")
    log(f"venv: pip install {' '.join(REQUIREMENTS)}")
    _run([h.python, "-m", "pip", "install", "--disable-pip-version-check", "--no-input", "-q",
          "-c", h.constraints, *REQUIREMENTS], what="pip install", timeout=900,
         env={**os.environ, "PIP_NO_INPUT": "1"})
    have = installed_versions(h)
    if have != wanted:
        raise RuntimeError(f"pip installed {have}, expected {wanted}")
    return have


def write_config(home, port: int = DEFAULT_PORT) -> Path:
    """trytond.conf: loopback only, SQLite files in <home>/db. Port/path can be overridden per process
    with TRYTOND_WEB__LISTEN / TRYTOND_DATABASE__PATH (start_server does)."""
    h = _home(home)
    h.db_dir.mkdir(parents=True, exist_ok=True)
    h.conf.write_text(
        "# Written by portal.tryton_admin. Listens on loopback only.\n"
        "[web]\n"
        f"listen = 127.0.0.1:{int(port)}\n\n"
        "[database]\n"
        "uri = sqlite://\n"
        f"path = {h.db_dir}\n\n"
        "[session]\n"
        "# idle sessions expire after 5 min (Tryton's default); the connector logs in again\n"
        "timeout = 300\n"
    )
    return h.conf


def _ensure_passfile(home) -> str:
    h = _home(home)
    if h.passfile.exists() and h.passfile.read_text().strip():
        return read_password(h)
    password = secrets.token_urlsafe(18)
    fd = os.open(h.passfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(password + "\n")
    return password


def _activated_modules(db_file: Path) -> set[str]:
    if not db_file.exists() or db_file.stat().st_size == 0:
        return set()
    try:
        with sqlite3.connect(f"file:{db_file}?mode=ro", uri=True) as conn:
            rows = conn.execute("SELECT name FROM ir_module WHERE state = 'activated'").fetchall()
    except sqlite3.Error:
        return set()
    return {row[0] for row in rows}


def _count_rows(db_file: Path, table: str) -> int:
    try:
        with sqlite3.connect(f"file:{db_file}?mode=ro", uri=True) as conn:
            return conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]  # noqa: S608 - fixed names
    except sqlite3.Error:
        return 0


def _tryton_env(h: TrytonHome) -> dict:
    # TRYTOND_* variables would be overridden by the config file anyway; drop them to avoid surprises.
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRYTOND_")}
    env.update({"TRYTONPASSFILE": str(h.passfile), "PYTHONUNBUFFERED": "1"})
    return env


_COUNTRY_DRIVER = '''\
"""Runs in Tryton's own virtualenv (written by portal.tryton_admin): imports ISO countries with the
functions of trytond's country-import script, subdivisions only for the countries given."""
import sys, types
import pycountry
from proteus import config
from trytond.modules.country.scripts import import_countries as script

database, config_file, codes = sys.argv[1], sys.argv[2], sys.argv[3]
if codes != "*":
    wanted = set(codes.split(","))
    script.pycountry = types.SimpleNamespace(
        countries=pycountry.countries, LOCALES_DIR=pycountry.LOCALES_DIR,
        subdivisions=[s for s in pycountry.subdivisions if s.country_code in wanted])
config.set_trytond(database, config_file=config_file)
with config.get_config().set_context(active_test=False):
    script.do_import()
'''


def import_countries(home, name: str = DEFAULT_DB, *, all_subdivisions: bool = False, log: Log = _quiet) -> None:
    """Countries (all) and subdivisions (SUBDIVISION_COUNTRIES, or all) into the database."""
    h = _home(home)
    db_file = h.db_file(name)
    if _count_rows(db_file, "country_country") and not all_subdivisions:
        log("countries: already imported")
        return
    driver = h.root / "import_countries_driver.py"
    driver.write_text(_COUNTRY_DRIVER)
    codes = "*" if all_subdivisions else ",".join(SUBDIVISION_COUNTRIES)
    log(f"countries: importing ISO 3166 countries, subdivisions for {codes}")
    _run([h.python, driver, name, h.conf, codes], env=_tryton_env(h), timeout=900, what="country import")


def init_database(home, name: str = DEFAULT_DB, *, log: Log = _quiet, all_subdivisions: bool = False) -> Path:
    """Create the SQLite database ``name`` with MODULES activated (skipped when already done)."""
    h = _home(home)
    if not h.conf.exists():
        write_config(h)
    _ensure_passfile(h)
    h.db_dir.mkdir(parents=True, exist_ok=True)
    db_file = h.db_file(name)
    if set(MODULES) <= _activated_modules(db_file):
        log(f"database: {db_file} already has {', '.join(MODULES)}")
    else:
        db_file.touch()  # trytond-admin refuses to create a SQLite database whose file does not exist
        log(f"database: trytond-admin -d {name} --all -u {' '.join(MODULES)} --activate-dependencies")
        _run([h.bin("trytond-admin"), "-c", h.conf, "-d", name, "--all", "-u", *MODULES,
              "--activate-dependencies", "--email", ADMIN_EMAIL],
             env=_tryton_env(h), timeout=900, what="trytond-admin")
        missing = set(MODULES) - _activated_modules(db_file)
        if missing:
            raise RuntimeError(f"trytond-admin left modules not activated: {sorted(missing)}")
    import_countries(h, name, all_subdivisions=all_subdivisions, log=log)
    return db_file


# ------------------------------------------------------------------------------------------ process
def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def server_url(port: int) -> str:
    return f"http://127.0.0.1:{int(port)}"


def start_server(home, db_dir: str | os.PathLike | None = None, port: int = DEFAULT_PORT, *,
                 name: str = DEFAULT_DB, log_file: str | os.PathLike | None = None,
                 detach: bool = False) -> subprocess.Popen:
    """Start ``trytond`` from the home's venv on 127.0.0.1:``port`` serving database ``name`` from the
    SQLite files in ``db_dir`` (default ``<home>/db``). Returns the Popen; pair with ``wait_ready`` and
    ``stop_server``. (``-d name`` is required: trytond 8.0 does not load a database's modules lazily.)"""
    h = _home(home)
    if not h.bin("trytond").exists():
        raise RuntimeError(f"Tryton is not installed in {h.venv}; run `flask --app wsgi tryton setup`.")
    if not h.conf.exists():
        write_config(h, port)
    log_path = Path(log_file) if log_file else h.logfile
    log_path.parent.mkdir(parents=True, exist_ok=True)
    # Later config files override earlier ones (and beat TRYTOND_* variables): a small per-run file sets
    # the port and the database folder on top of trytond.conf.
    run_conf = log_path.parent / f"trytond-{int(port)}.conf"
    run_conf.write_text(f"[web]\nlisten = 127.0.0.1:{int(port)}\n\n[database]\nuri = sqlite://\n"
                        f"path = {Path(db_dir).resolve() if db_dir else h.db_dir}\n")
    with open(log_path, "ab") as out:
        proc = subprocess.Popen([str(h.bin("trytond")), "-c", str(h.conf), str(run_conf), "-d", name],
                                env=_tryton_env(h), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=detach, cwd=str(h.root))
    proc.run_conf = run_conf  # removed by stop_server
    return proc


def ping(url: str, timeout: float = 2.0) -> str | None:
    """Tryton's version string if ``common.server.version`` answers at ``url``, else None."""
    import requests

    from portal.security.urlguard import guarded_session

    try:  # the portal's one guarded transport, like every outbound request (no proxy, no redirect)
        with guarded_session() as session:
            response = session.post(url.rstrip("/") + "/rpc/", json={"id": 0, "method": "common.server.version",
                                                                     "params": []}, timeout=timeout)
        if response.status_code == 200:
            return response.json().get("result")
    except (requests.RequestException, ValueError):  # UrlNotAllowed is a ValueError
        return None
    return None


def wait_ready(url: str, timeout: float = 60.0, proc: subprocess.Popen | None = None,
               log_file: str | os.PathLike | None = None) -> str:
    """Poll until Tryton answers ``common.server.version``; returns the version. Raises RuntimeError (with
    the tail of the server log) if the process exits or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        version = ping(url, timeout=2.0)
        if version:
            return version
        if proc is not None and proc.poll() is not None:
            break
        time.sleep(0.1)
    tail = ""
    if log_file and Path(log_file).exists():
        tail = "\n".join(Path(log_file).read_text(errors="replace").splitlines()[-30:])
    state = f"exited with {proc.returncode}" if proc is not None and proc.poll() is not None else "did not answer"
    raise RuntimeError(f"Tryton at {url} {state} within {timeout:g} s.\n{tail}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _is_trytond(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return _pid_alive(pid)
    return b"trytond" in cmdline


def stop_server(proc_or_pid: subprocess.Popen | int, timeout: float = 10.0) -> None:
    """Terminate the server (SIGTERM), wait, then SIGKILL if needed. Only touches that one process."""
    if isinstance(proc_or_pid, subprocess.Popen):
        proc = proc_or_pid
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout)
        run_conf = getattr(proc, "run_conf", None)
        if run_conf is not None:
            Path(run_conf).unlink(missing_ok=True)
        return
    pid = int(proc_or_pid)
    if not _pid_alive(pid) or not _is_trytond(pid):
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:  # reap it if it is our child; otherwise just poll
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return
        except ChildProcessError:
            pass
        if not _pid_alive(pid):
            return
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)


# --------------------------------------------------------------------------------------- demo data
DEMO_CUSTOMERS = (
    {"name": "Acme Industries GmbH", "email": "info@acme.example", "phone": "+49 30 1234567",
     "website": "https://acme.example", "street": "Hauptstraße 1\nHinterhaus", "postal_code": "10115",
     "city": "Berlin", "country": "DE", "subdivision": "DE-BE", "lang": "de"},
    {"name": "Globex Nordic AS", "email": "post@globex.example", "phone": "+47 22 00 00 00",
     "street": "Karl Johans gate 1", "postal_code": "0154", "city": "Oslo", "country": "NO", "lang": "en"},
    {"name": "Müller & Söhne KG", "email": "kontakt@mueller.example", "street": "Königsallee 5",
     "postal_code": "40212", "city": "Düsseldorf", "country": "DE"},
    {"name": "Initech Ltd", "phone": "+44 20 7946 0000", "mobile": "+44 7700 900000"},  # no address
)
DEMO_SUPPLIERS = (
    {"name": "Northwind Traders Inc", "email": "sales@northwind.example", "street": "1 Market St",
     "postal_code": "94105", "city": "San Francisco", "country": "US", "subdivision": "US-CA"},
    {"name": "Contoso Supplies BV", "email": "orders@contoso.example", "street": "Damrak 1",
     "postal_code": "1012 LG", "city": "Amsterdam", "country": "NL"},
)
DEMO_PERSONS = (
    {"name": "Anna Schmidt", "employer": "Acme Industries GmbH", "email": "anna.schmidt@acme.example",
     "phone": "+49 30 1234568"},
    {"name": "Ola Nordmann", "employer": "Globex Nordic AS", "email": "ola@globex.example",
     "mobile": "+47 900 00 000"},
    {"name": "Peter Gibbons", "employer": "Initech Ltd", "email": "peter@initech.example"},
    {"name": "Jane Doe", "employer": "Northwind Traders Inc", "email": "jane@northwind.example"},
)
DEMO_PROJECTS = (
    {"name": "Website relaunch", "party": "Acme Industries GmbH", "comment": "New public website.",
     "status": "Open"},
    {"name": "ERP rollout", "party": "Globex Nordic AS", "comment": "Go-live of the ERP.", "status": "Done"},
)


def populate_demo_data(url: str, database: str, user: str, password: str, *, log: Log = _quiet) -> dict:
    """Create (or find) the demo records through JSON-RPC: a currency and company (needed by projects),
    party categories Customer/Supplier, relation types Employee of/Employer of, customers, suppliers,
    persons and projects. Idempotent: every record is looked up by name first."""
    from portal.connectors.builtin.tryton_rpc import TrytonClient

    client = TrytonClient(url, database, user, password, timeout=60)
    created = 0

    def find_or_create(model: str, domain: list, values: dict) -> int:
        nonlocal created
        found = client.search(model, domain, limit=1, context={"active_test": False})
        if found:
            return found[0]
        created += 1
        return client.model(model, "create", [values])[0]

    ids: dict = {}
    ids["currency"] = find_or_create("currency.currency", [["code", "=", "EUR"]],
                                     {"name": "Euro", "code": "EUR", "symbol": "€", "digits": 2,
                                      "rounding": Decimal("0.01")})
    company_party = find_or_create("party.party", [["name", "=", "Portal Demo Company AS"]],
                                   {"name": "Portal Demo Company AS"})
    ids["company"] = find_or_create("company.company", [["party", "=", company_party]],
                                    {"party": company_party, "currency": ids["currency"]})
    client.model("res.user", "write", [client.user_id or client.login()],
                 {"companies": [["add", [ids["company"]]]], "company": ids["company"]})
    client.login()  # refresh the context: it now carries the company
    ids["categories"] = {name: find_or_create("party.category", [["name", "=", name], ["parent", "=", None]],
                                              {"name": name}) for name in ("Customer", "Supplier")}
    employee_of = find_or_create("party.relation.type", [["name", "=", "Employee of"]], {"name": "Employee of"})
    employer_of = find_or_create("party.relation.type", [["name", "=", "Employer of"]],
                                 {"name": "Employer of", "reverse": employee_of})
    client.model("party.relation.type", "write", [employee_of], {"reverse": employer_of})
    ids["relation_types"] = {"Employee of": employee_of, "Employer of": employer_of}

    countries = {row["code"]: row["id"] for row in client.search_read("country.country", [], ["code"])}
    langs = {row["code"]: row["id"] for row in client.search_read("ir.lang", [], ["code"])}

    def party_values(spec: dict, category: str | None) -> dict:
        values: dict = {"name": spec["name"]}
        if category:
            values["categories"] = [["add", [ids["categories"][category]]]]
        mechanisms = [{"type": kind, "value": spec[key]} for key, kind in
                      (("email", "email"), ("phone", "phone"), ("mobile", "mobile"), ("website", "website"))
                      if spec.get(key)]
        if mechanisms:
            values["contact_mechanisms"] = [["create", mechanisms]]
        if spec.get("city"):
            address = {"street": spec.get("street"), "postal_code": spec.get("postal_code"), "city": spec["city"],
                       "country": countries.get(spec.get("country"))}
            if spec.get("subdivision"):
                found = client.search("country.subdivision", [["code", "=", spec["subdivision"]]], limit=1)
                address["subdivision"] = found[0] if found else None
            values["addresses"] = [["create", [address]]]
        if spec.get("lang") in langs:
            values["lang"] = langs[spec["lang"]]
        return values

    parties: dict[str, int] = {}
    for category, specs in (("Customer", DEMO_CUSTOMERS), ("Supplier", DEMO_SUPPLIERS)):
        for spec in specs:
            parties[spec["name"]] = find_or_create("party.party", [["name", "=", spec["name"]]],
                                                   party_values(spec, category))
    for spec in DEMO_PERSONS:
        values = party_values(spec, None)
        values["relations"] = [["create", [{"to": parties[spec["employer"]], "type": employee_of}]]]
        parties[spec["name"]] = find_or_create("party.party", [["name", "=", spec["name"]]], values)
    statuses = {row["name"]: row for row in client.search_read("project.work.status", [], ["name", "progress"])}
    projects = {}
    for spec in DEMO_PROJECTS:
        projects[spec["name"]] = find_or_create(
            "project.work", [["name", "=", spec["name"]], ["type", "=", "project"]],
            {"name": spec["name"], "type": "project", "company": ids["company"], "party": parties[spec["party"]],
             "comment": spec["comment"], "status": statuses[spec["status"]]["id"],
             # a "Done" status requires the work's progress to reach the status's progress (100 %)
             "progress": statuses[spec["status"]]["progress"]})
    ids["parties"], ids["projects"] = parties, projects
    log(f"demo data: {created} record(s) created, {len(parties)} parties and {len(projects)} projects present")
    client.logout()
    return ids


def make_template(home, name: str = DEFAULT_DB) -> Path:
    """Copy ``db/<name>.sqlite`` to ``template.sqlite`` with SQLite's online backup (consistent even while a
    server has the file open). Tests copy the template per run instead of initialising (ms instead of s)."""
    h = _home(home)
    source = h.db_file(name)
    partial = h.template.with_suffix(".partial")
    partial.unlink(missing_ok=True)
    with sqlite3.connect(f"file:{source}?mode=ro", uri=True) as src, sqlite3.connect(partial) as dst:
        src.backup(dst)
    src.close()
    dst.close()
    os.replace(partial, h.template)
    return h.template


def copy_template(home, db_dir: str | os.PathLike, name: str = DEFAULT_DB) -> Path:
    """Put a fresh copy of the template into ``db_dir`` as ``<name>.sqlite`` (for a test server)."""
    h = _home(home)
    target = Path(db_dir) / f"{name}.sqlite"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(h.template, target)
    return target


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


# ------------------------------------------------------------------------------------------------ CLI
tryton_group = AppGroup("tryton", help="Install and run a local Tryton ERP (GPL, separate process) for demos/tests.")


def _cli_home(home: str | None) -> TrytonHome:
    return TrytonHome(home) if home else TrytonHome(default_home(current_app.instance_path))


_home_option = click.option("--home", default=None, type=click.Path(file_okay=False),
                            help="Tryton home folder (default: PORTAL_TRYTON_HOME or instance/tryton).")


@tryton_group.command("setup")
@_home_option
@click.option("--db", "name", default=DEFAULT_DB, show_default=True, help="Database name.")
@click.option("--all-subdivisions", is_flag=True, help="Import all ~5000 country subdivisions (+~45 s).")
def setup_command(home, name, all_subdivisions):
    """Install Tryton in its own venv, create the database with demo data and a test template."""
    h = _cli_home(home)
    click.echo(f"Setting up Tryton {TRYTON_SERIES} in {h.root}")
    try:
        report = setup(h, name, all_subdivisions=all_subdivisions, log=click.echo)
    except RuntimeError as exc:
        raise click.ClickException(str(exc)) from exc
    versions = ", ".join(f"{k} {v}" for k, v in sorted(report["versions"].items()))
    click.echo(f"Installed: {versions}")
    click.echo(f"Database '{name}': {h.db_file(name)}  template: {h.template}")
    click.echo(f"Admin user: {ADMIN_USER}  password: {read_password(h)}  (kept in {h.passfile})")
    click.echo("Timings (s): " + ", ".join(f"{k} {v:.1f}" for k, v in report["timings"].items()))


@tryton_group.command("start")
@_home_option
@click.option("--port", default=DEFAULT_PORT, show_default=True, type=int)
@click.option("--db", "name", default=None, help="Database name (default: the one setup created).")
def start_command(home, port, name):
    """Start trytond in the background (127.0.0.1 only) and wait until it answers."""
    h = _cli_home(home)
    name = name or h.state().get("database") or DEFAULT_DB
    if not h.bin("trytond").exists() or not h.db_file(name).exists():
        raise click.ClickException(f"Tryton is not set up in {h.root}: run `flask --app wsgi tryton setup` first.")
    if h.pidfile.exists():
        pid = int(h.pidfile.read_text().strip() or 0)
        if pid and _pid_alive(pid) and _is_trytond(pid):
            raise click.ClickException(f"Tryton is already running (pid {pid}); `flask --app wsgi tryton stop` first.")
    t0 = time.monotonic()
    proc = start_server(h, port=port, name=name, detach=True)
    h.pidfile.write_text(f"{proc.pid}\n")
    url = server_url(port)
    try:
        version = wait_ready(url, 60, proc, h.logfile)
    except RuntimeError as exc:
        stop_server(proc)
        h.pidfile.unlink(missing_ok=True)
        raise click.ClickException(str(exc)) from exc
    click.echo(f"Tryton {version} running (pid {proc.pid}, ready in {time.monotonic() - t0:.1f} s)")
    click.echo(f"  URL:      {url}")
    click.echo(f"  database: {name}")
    click.echo(f"  user:     {ADMIN_USER} (password in {h.passfile})")
    click.echo(f"  log:      {h.logfile}")


@tryton_group.command("stop")
@_home_option
def stop_command(home):
    """Stop the trytond started by `tryton start` (by its PID file)."""
    h = _cli_home(home)
    if not h.pidfile.exists():
        click.echo("Tryton is not running (no PID file).")
        return
    pid = int(h.pidfile.read_text().strip() or 0)
    if pid and _pid_alive(pid) and _is_trytond(pid):
        stop_server(pid)
        click.echo(f"Stopped Tryton (pid {pid}).")
    else:
        click.echo("Tryton was not running (stale PID file removed).")
    h.pidfile.unlink(missing_ok=True)
    for run_conf in h.root.glob("trytond-*.conf"):
        run_conf.unlink(missing_ok=True)


@tryton_group.command("status")
@_home_option
@click.option("--port", default=DEFAULT_PORT, show_default=True, type=int)
def status_command(home, port):
    """Show whether Tryton is set up and answering."""
    h = _cli_home(home)
    state = h.state()
    click.echo(f"home:     {h.root} ({'set up' if is_set_up(h) else 'not set up'})")
    if state:
        click.echo(f"versions: {', '.join(f'{k} {v}' for k, v in sorted(state.get('versions', {}).items()))}")
    version = ping(server_url(port))
    click.echo(f"server:   {server_url(port)} {'answers (Tryton ' + version + ')' if version else 'not answering'}")


@tryton_group.command("serve-connector")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8101, show_default=True, type=int)
@click.option("--token", envvar="PORTAL_TRYTON_CONNECTOR_TOKEN", default=None,
              help="Require 'Authorization: Bearer <token>' (env PORTAL_TRYTON_CONNECTOR_TOKEN).")
def serve_connector_command(host, port, token):
    """Serve the Tryton sync connector on its own over HTTP (POST /<MethodName>)."""
    from portal.connectors.builtin.tryton import make_connector
    from portal.connectors.service import serve

    config = {**current_app.config, "INSTANCE_PATH": current_app.config.get("INSTANCE_PATH")
              or current_app.instance_path}
    service = make_connector(config)
    click.echo(f"Tryton connector on http://{host}:{port}/ (state: {service.store.path})")
    serve(service, host=host, port=port, token=token)

"""The Tryton database (SQLite): created with ``trytond-admin`` and the MODULES activated, countries imported by a
driver script run in Tryton's venv, then kept as ``template.sqlite``, which tests copy per run."""

from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path

from portal.tryton_admin.home import (
    ADMIN_EMAIL,
    DEFAULT_DB,
    Log,
    _ensure_passfile,
    _home,
    _quiet,
    _tryton_env,
    write_config,
)
from portal.tryton_admin.pins import MODULES, SUBDIVISION_COUNTRIES
from portal.tryton_admin.venv import _run


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

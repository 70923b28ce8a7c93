"""A Tryton home folder: its layout (``TrytonHome``), where it is (``default_home``), the defaults (port, database,
admin user), and the small files setup writes into it besides the venv and the database: ``trytond.conf`` and
the admin ``passfile``; also the environment every Tryton process is started with."""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable
from pathlib import Path

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


def _tryton_env(h: TrytonHome) -> dict:
    # TRYTOND_* variables would be overridden by the config file anyway; drop them to avoid surprises.
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRYTOND_")}
    env.update({"TRYTONPASSFILE": str(h.passfile), "PYTHONUNBUFFERED": "1"})
    return env

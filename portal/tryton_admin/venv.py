"""Tryton's own virtualenv: created under the home and pip-installed from the pins (skipped when the versions
already match), and ``_run``, how every Tryton command-line tool is run (output kept for the error message)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from portal.tryton_admin.home import Log, _home, _quiet
from portal.tryton_admin.pins import CONSTRAINTS, REQUIREMENTS


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

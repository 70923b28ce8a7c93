"""The ``trytond`` server process: a free port, ``start_server`` (a per-run config file on top of trytond.conf),
``ping``/``wait_ready`` over JSON-RPC, and ``stop_server``, which only ever touches that one process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from portal.tryton_admin.home import DEFAULT_DB, DEFAULT_PORT, _home, _tryton_env, write_config


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

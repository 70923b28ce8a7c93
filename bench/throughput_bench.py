"""Throughput of the browsing mix with 1, 2 and 4 gunicorn workers (issue #19, "Several nodes").

    .venv/bin/python -m bench.throughput_bench                                   # SQLite only
    .venv/bin/python -m bench.throughput_bench --database-url postgresql://portal@127.0.0.1:5432/portal_bench
    .venv/bin/python -m bench.throughput_bench --workers 1 --workers 4 --seconds 30 --clients 32

Builds N companies (one contact each, N/5 projects; ``search_bench.build``) and a signed-in admin on a temporary
SQLite database — and on the PostgreSQL database given (emptied first) — then, per database and worker count,
starts the portal as the README says (``gunicorn --workers W --threads 8 wsgi:app`` on 127.0.0.1, the scheduler on:
every worker runs one, one of them leads) and lets ``--clients`` closed-loop clients (no think time, in 4 processes)
browse for ``--seconds``: the company list (a random page), a company page, its ERP tab and a company search, in
equal shares. Printed: requests, errors (any answer but 200), requests per second, p50/p95 latency and the speed-up
over one worker. The clients run on the same machine as the server, so on a small machine they take CPU from it:
read the speed-up, not the absolute numbers, and compare with ``nproc``.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import random
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "throughput bench 0123"
EMAIL = "bench@example.com"
SECRET_KEY = "throughput-bench-secret-key-0123456789"
CLIENT_PROCESSES = 4
WORDS = ["bygg", "as", "holm", "vik", "data", "ø", "consulting", "strand"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def prepare(url: str, work: Path, companies: int, keys: str) -> int:
    """An empty portal database with the records and the bench user; returns the largest company id."""
    from sqlalchemy import func, select

    from bench.search_bench import build
    from portal import create_app
    from portal.extensions import db
    from portal.models import Company, User
    from portal.services.bootstrap import ensure_default_lists, sync_settings

    app = create_app({"TESTING": False, "SCHEDULER": False, "DEMO_DATA": False, "SQLALCHEMY_DATABASE_URI": url,
                      "INSTANCE_PATH": str(work / "instance"), "DEMO_ERP_DB": str(work / "demo.db"),
                      "SECRET_KEY": SECRET_KEY, "LOG_LEVEL": "WARNING", "ENCRYPTION_KEYS": [keys]}, environ={})
    with app.app_context():
        if url.startswith("postgresql"):
            db.drop_all()
        db.create_all()
        sync_settings()
        db.session.commit()
        ensure_default_lists()
        build(companies)
        user = User(email=EMAIL, name="Bench", role="admin", erp_licence=True)
        user.set_password(PASSWORD)
        db.session.add(user)
        db.session.commit()
        top = db.session.scalar(select(func.max(Company.id)))
        db.session.remove()
        db.engine.dispose()
    return int(top or 1)


def start(url: str, work: Path, workers: int, keys: str) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    env = {**os.environ, "PORTAL_DATABASE_URL": url, "PORTAL_SECRET_KEY": SECRET_KEY,
           "PORTAL_ENCRYPTION_KEYS": keys, "PORTAL_DEMO_DATA": "off", "PORTAL_SCHEDULER": "on",
           "PORTAL_DEMO_ERP_DB": str(work / "demo.db"), "PORTAL_LOG_LEVEL": "WARNING"}
    log = open(work / f"gunicorn-{workers}.log", "wb")  # noqa: SIM115 - handed to the child
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--workers", str(workers), "--threads", "8", "--timeout", "120",
         "--bind", f"127.0.0.1:{port}", "--log-level", "warning", "wsgi:app"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    log.close()
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError((work / f"gunicorn-{workers}.log").read_text()[-3000:])
        try:
            if requests.get(base + "/login", timeout=2).status_code == 200:
                return process, base
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise RuntimeError("gunicorn did not answer within 60 s")


def stop(process: subprocess.Popen) -> None:
    import signal

    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=20)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def sign_in(base: str) -> dict:
    session = requests.Session()
    page = session.get(f"{base}/login", timeout=30)
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page.text)
    if token is None:
        raise RuntimeError("no CSRF token on the login page")
    answer = session.post(f"{base}/login", data={"csrf_token": token.group(1), "email": EMAIL, "password": PASSWORD,
                                                  "next": ""}, allow_redirects=False, timeout=30)
    if answer.status_code != 302:
        raise RuntimeError(f"sign-in failed: HTTP {answer.status_code}")
    return session.cookies.get_dict()


def _paths(rng: random.Random, top: int, pages: int) -> str:
    company = rng.randint(1, top)
    return rng.choice([
        f"/companies?page={rng.randint(1, pages)}",
        f"/companies/{company}",
        f"/erp/company/{company}",
        f"/companies?q={rng.choice(WORDS)}",
    ])


def _client_process(base: str, cookies: dict, threads: int, seconds: float, top: int, seed: int, queue) -> None:
    """``threads`` closed-loop clients for ``seconds``; puts (latencies of answers 200, errors) on ``queue``."""
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    end = time.monotonic() + seconds
    pages = max(1, top // 50)

    def loop(index: int) -> None:
        rng = random.Random(seed * 1000 + index)
        session = requests.Session()
        session.cookies.update(cookies)
        mine: list[float] = []
        failed = 0
        while time.monotonic() < end:
            path = _paths(rng, top, pages)
            started = time.perf_counter()
            try:
                # the ERP tab is loaded by htmx (without HX-Request it redirects to the company page)
                headers = {"HX-Request": "true"} if path.startswith("/erp/") else None
                answer = session.get(base + path, timeout=30, allow_redirects=False, headers=headers)
                ok = answer.status_code == 200
            except requests.RequestException:
                ok = False
            if ok:
                mine.append(time.perf_counter() - started)
            else:
                failed += 1
        with lock:
            latencies.extend(mine)
            errors[0] += failed

    workers = [threading.Thread(target=loop, args=(index,)) for index in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    queue.put((latencies, errors[0]))


def load(base: str, cookies: dict, clients: int, seconds: float, top: int) -> tuple[list[float], int, float]:
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    processes = min(CLIENT_PROCESSES, clients)
    shares = [clients // processes + (1 if i < clients % processes else 0) for i in range(processes)]
    started = time.monotonic()
    children = [context.Process(target=_client_process, args=(base, cookies, share, seconds, top, i, queue))
                for i, share in enumerate(shares)]
    for child in children:
        child.start()
    results = [queue.get() for _ in children]
    for child in children:
        child.join()
    elapsed = time.monotonic() - started
    latencies = sorted(value for part, _errors in results for value in part)
    return latencies, sum(errors for _part, errors in results), elapsed


def _pct(values: list[float], share: float) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(share * len(values)))] * 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database-url", help="an empty PostgreSQL database (also measured: SQLite)")
    parser.add_argument("--no-sqlite", action="store_true", help="only the PostgreSQL database")
    parser.add_argument("--companies", type=int, default=5000)
    parser.add_argument("--workers", type=int, action="append", help="worker counts (default 1, 2, 4)")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--warmup", type=float, default=3)
    args = parser.parse_args(argv)
    worker_counts = args.workers or [1, 2, 4]

    from cryptography.fernet import Fernet

    keys = Fernet.generate_key().decode()
    rows = []
    with tempfile.TemporaryDirectory(prefix="throughput-bench-") as tmp:
        work = Path(tmp)
        databases = [] if args.no_sqlite else [("SQLite", f"sqlite:///{work / 'portal.db'}")]
        if args.database_url:
            databases.append(("PostgreSQL", args.database_url))
        for label, url in databases:
            started = time.perf_counter()
            top = prepare(url, work, args.companies, keys)
            print(f"{label}: {args.companies:,} companies built in {time.perf_counter() - started:.0f} s",
                  file=sys.stderr)
            base_rate = None
            for workers in worker_counts:
                process, base = start(url, work, workers, keys)
                try:
                    cookies = sign_in(base)
                    load(base, cookies, args.clients, args.warmup, top)  # warm every worker up
                    latencies, errors, elapsed = load(base, cookies, args.clients, args.seconds, top)
                finally:
                    stop(process)
                rate = len(latencies) / elapsed
                base_rate = base_rate or rate
                rows.append((label, workers, len(latencies), errors, rate, _pct(latencies, 0.5),
                             _pct(latencies, 0.95), rate / base_rate))
                print(f"  {workers} worker(s): {rate:.1f} req/s", file=sys.stderr)
    print(f"\nBrowsing mix (company list, company page, ERP tab, search), {args.clients} clients, "
          f"{args.seconds:.0f} s each, {args.companies:,} companies, {os.cpu_count()} CPUs, "
          "gunicorn --threads 8:\n")
    print("| database | workers | requests | errors | req/s | p50 ms | p95 ms | vs 1 worker |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for label, workers, count, errors, rate, p50, p95, ratio in rows:
        print(f"| {label} | {workers} | {count:,} | {errors} | {rate:.1f} | {p50:.1f} | {p95:.1f} | {ratio:.2f}× |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

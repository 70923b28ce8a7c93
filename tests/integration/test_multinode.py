"""Several nodes on one PostgreSQL (issue #19): three real portal processes (gunicorn, one worker each), 50
simultaneous Sync now requests spread across them make exactly one run, executed once; the API's rate limit is
counted across all three (database:// storage); the scheduler leader is killed with SIGKILL and another process
takes the advisory lock within one interval and does the leader's work (it sweeps a queued run whose process died).

PostgreSQL only (``PORTAL_TEST_DATABASE_URL``): skipped on SQLite, where one process per host is the deployment.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from sqlalchemy import select

from jobs import leader
from portal.api import tokens as api_tokens
from portal.database import utcnow
from portal.extensions import db
from portal.models import RunKind, RunStatus, SyncRun, SyncSettings, User
from portal.services.sync import owner
from tests import sync_support as s
from tests.conftest import make_user

pytestmark = [
    pytest.mark.db,
    pytest.mark.slow,
    pytest.mark.skipif(not (os.environ.get("PORTAL_TEST_DATABASE_URL") or "").startswith("postgres"),
                       reason="several nodes need PostgreSQL: set PORTAL_TEST_DATABASE_URL"),
]

ROOT = Path(__file__).resolve().parents[2]
NODES = 3
REQUESTS = 50
API_LIMIT = 40  # per minute per token, counted over all nodes: 10 of the 50 get 429
LEADER_RETRY = 1  # PORTAL_SCHEDULER_LEADER_RETRY
INTERVAL = 60  # the sync interval (the shortest allowed): a dead leader must be replaced within it


@dataclass
class Node:
    name: str
    port: int
    process: subprocess.Popen
    log_path: Path
    killed: bool = False
    pids: set[int] = field(default_factory=set)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _ppid(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            return int(handle.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def _start(name: str, env: dict, tmp_path: Path) -> Node:
    port = _free_port()
    log_path = tmp_path / f"{name}.log"
    handle = open(log_path, "wb")  # noqa: SIM115 - the child writes to it; closed with the node
    process = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--workers", "1", "--threads", "8", "--timeout", "60",
         "--bind", f"127.0.0.1:{port}", "--log-level", "warning", "wsgi:app"],
        cwd=ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)
    handle.close()
    return Node(name, port, process, log_path)


def _wait_ready(node: Node, deadline: float) -> None:
    while time.monotonic() < deadline:
        if node.process.poll() is not None:
            raise AssertionError(f"{node.name} exited: {node.log_path.read_text()[-3000:]}")
        try:
            if requests.get(node.url + "/login", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{node.name} did not answer: {node.log_path.read_text()[-3000:]}")


def _stop(node: Node) -> None:
    if node.process.poll() is None:
        try:
            os.killpg(node.process.pid, signal.SIGTERM)
            node.process.wait(timeout=10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(node.process.pid, signal.SIGKILL)
            node.process.wait(timeout=10)


def _leader(app) -> tuple[int, str] | None:
    with app.app_context(), db.engine.connect() as connection:
        return leader.current_leader(connection)


def _node_of(nodes: list[Node], pid: int) -> Node | None:
    """The node whose gunicorn master (the process we started) is the parent of worker ``pid``."""
    parent = _ppid(pid)
    return next((node for node in nodes if pid == node.process.pid or parent == node.process.pid), None)


def _wait(predicate, timeout: float, step: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    return predicate()


def _run(app, run_id: int) -> SyncRun:
    with app.app_context():
        run = db.session.get(SyncRun, run_id)
        db.session.expunge_all()
        db.session.rollback()
        return run


def test_three_nodes_one_run_shared_limits_and_leader_takeover(app, fake, tmp_path):
    timeline: list[tuple[float, str]] = []
    t0 = time.monotonic()

    def mark(text: str) -> None:
        timeline.append((time.monotonic() - t0, text))

    with app.app_context():
        connection_id = s.make_connection(fake)
        admin = make_user("ops@example.com", role="admin", licence=True)
        _token, secret = api_tokens.create(db.session.get(User, admin.id), "multinode", ["sync", "read"])
        settings = db.session.get(SyncSettings, 1) or db.session.scalar(select(SyncSettings))
        settings.auto_sync = False
        settings.interval_seconds = INTERVAL
        db.session.commit()
        database_url = app.config["SQLALCHEMY_DATABASE_URI"]
        keys = ",".join(app.config["ENCRYPTION_KEYS"])

    env = {**os.environ, "PORTAL_DATABASE_URL": database_url, "PORTAL_SECRET_KEY": app.config["SECRET_KEY"],
           "PORTAL_ENCRYPTION_KEYS": keys, "PORTAL_DEMO_DATA": "off", "PORTAL_SCHEDULER": "on",
           "PORTAL_SCHEDULER_LEADER_RETRY": str(LEADER_RETRY), "PORTAL_RATELIMIT_API": f"{API_LIMIT}/minute",
           "PORTAL_DEMO_ERP_DB": str(tmp_path / "demo_erp.db"), "PORTAL_LOG_LEVEL": "INFO",
           "PORTAL_RATELIMIT_STORAGE_URI": ""}  # the default on PostgreSQL: database://
    env.pop("PORTAL_TEST_DATABASE_URL", None)
    nodes: list[Node] = []
    try:
        for index in range(NODES):
            nodes.append(_start(f"node{index + 1}", env, tmp_path))
        for node in nodes:
            _wait_ready(node, time.monotonic() + 60)
        mark(f"{NODES} nodes answering on ports {', '.join(str(n.port) for n in nodes)}")

        first = _wait(lambda: _leader(app), 10)
        assert first is not None, "no process took the scheduler's advisory lock"
        old_leader = _node_of(nodes, first[0])
        assert old_leader is not None, f"the leader pid {first[0]} is none of the nodes"
        mark(f"leader: {old_leader.name} (worker pid {first[0]})")

        # --- 50 Sync now at once, spread over the three nodes -----------------------------------------------
        fake.delay(1.0)  # every connector call answers 1 s late: the run is still active while the burst lands

        def sync_now(index: int) -> tuple[int, int | None]:
            node = nodes[index % NODES]
            answer = requests.post(f"{node.url}/api/v1/connections/{connection_id}/sync", json={},
                                   headers={"Authorization": f"Bearer {secret}"}, timeout=30)
            return answer.status_code, answer.json().get("run_id") if answer.status_code == 202 else None

        with ThreadPoolExecutor(REQUESTS) as pool:
            answers = list(pool.map(sync_now, range(REQUESTS)))
        statuses = Counter(status for status, _run_id in answers)
        mark(f"{REQUESTS} Sync now answered: {dict(statuses)}")
        assert statuses[202] == 1, statuses
        assert statuses[429] == REQUESTS - API_LIMIT, f"the API limit is not shared across the nodes: {statuses}"
        assert statuses[409] == API_LIMIT - 1, statuses
        [run_id] = [run_id for status, run_id in answers if status == 202]

        def finished():
            run = _run(app, run_id)
            return run if run.status not in (RunStatus.QUEUED, RunStatus.RUNNING) else None

        run = _wait(finished, 60, 0.2)
        fake.delay(0)
        assert run is not None and run.status == RunStatus.SUCCEEDED, (run.status, run.error) if run else None
        with app.app_context():
            all_runs = db.session.scalars(select(SyncRun).where(SyncRun.connection_id == connection_id)).all()
            assert [r.id for r in all_runs] == [run_id], "more than one run for 50 Sync now"
        runner = _node_of(nodes, owner.pid_of(run.worker))
        assert runner is not None
        mark(f"run #{run_id} executed once by {runner.name} (pid {owner.pid_of(run.worker)}), {run.status}")

        # --- kill the leader -------------------------------------------------------------------------------------
        os.killpg(old_leader.process.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        old_leader.process.wait(timeout=10)
        old_leader.killed = True
        mark(f"SIGKILL {old_leader.name} (the leader)")

        def new_leader():
            current = _leader(app)
            return current if current is not None and current[0] != first[0] else None

        second = _wait(new_leader, INTERVAL)
        took = time.monotonic() - killed_at
        assert second is not None, "nobody took over the scheduler leadership"
        successor = _node_of(nodes, second[0])
        assert successor is not None and successor is not old_leader
        mark(f"new leader: {successor.name} (worker pid {second[0]}), {took:.2f} s after the kill")
        assert took < INTERVAL, f"the takeover took {took:.1f} s, more than one interval ({INTERVAL} s)"

        # --- the new leader does the leader's work: it sweeps a run queued by a process that died --------------
        with app.app_context():
            orphan = SyncRun(connection_id=connection_id, kind=RunKind.SYNC, trigger="manual", status=RunStatus.QUEUED,
                             requested_by_label="a node that died", options={}, counts={},
                             created_at=utcnow() - timedelta(minutes=2))
            db.session.add(orphan)
            db.session.commit()
            orphan_id = orphan.id
        mark(f"run #{orphan_id} queued by a process that died (2 min old)")

        def orphan_done():
            run = _run(app, orphan_id)
            return run if run.status not in (RunStatus.QUEUED, RunStatus.RUNNING) else None

        swept = _wait(orphan_done, 45, 0.2)
        assert swept is not None and swept.status == RunStatus.SUCCEEDED, swept and (swept.status, swept.error)
        assert owner.pid_of(swept.worker) == second[0], "the orphaned run was not executed by the new leader"
        mark(f"run #{orphan_id} swept and executed by the new leader {successor.name}")

        for node in nodes:
            if not node.killed:
                assert node.process.poll() is None, f"{node.name} died: {node.log_path.read_text()[-2000:]}"
    finally:
        for node in nodes:
            _stop(node)
        print("\nmulti-node timeline (seconds since start):")
        for at, text in timeline:
            print(f"  {at:7.2f}  {text}")


def test_the_advisory_lock_has_one_holder_and_passes_on_when_its_session_ends(app):
    url = app.config["SQLALCHEMY_DATABASE_URI"]
    first, second = leader.AdvisoryLock(url), leader.AdvisoryLock(url)
    try:
        assert first.attempt() and not second.attempt()
        assert _leader(app) == (os.getpid(), leader.application_name().split("@", 1)[1])
        backend = first._connection.info.backend_pid
        with app.app_context(), db.engine.begin() as connection:  # the leader's session dies (a killed process)
            connection.exec_driver_sql(f"SELECT pg_terminate_backend({int(backend)})")
        assert _wait(second.attempt, 5)
        assert not first.attempt() and not first.leader  # the old leader notices and steps down
        second.release()
        assert _leader(app) is None
        assert first.attempt()
    finally:
        first.release()
        second.release()

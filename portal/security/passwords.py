"""Password hashing with bounded concurrency.

Werkzeug's scrypt (``scrypt:32768:8:1``) takes 32 MiB and ~80 ms per hash or check. Eight logins at once (a
thread each under gunicorn ``--threads 8``) took the worker from 95 to 360 MB, and more threads or a login flood
would take more. Every hash and check therefore runs under one process-wide semaphore: at most
:data:`MAX_CONCURRENT` (2) at a time, the others wait their turn (about 40 ms each), so memory stays bounded at
~2 × 32 MiB whatever the number of requests. A wait longer than :data:`WAIT_SECONDS` gives up with
:class:`PasswordHashingBusy` rather than piling up threads.

Use :func:`hash_password` and :func:`check_password` instead of ``werkzeug.security`` directly.
"""

from __future__ import annotations

import threading

from werkzeug.security import check_password_hash, generate_password_hash

MAX_CONCURRENT = 2
WAIT_SECONDS = 30.0

_slots = threading.BoundedSemaphore(MAX_CONCURRENT)


class PasswordHashingBusy(RuntimeError):
    """No hashing slot came free within WAIT_SECONDS (the server is flooded with logins)."""


def _acquire() -> None:
    if not _slots.acquire(timeout=WAIT_SECONDS):
        raise PasswordHashingBusy("Too many sign-ins at once; try again in a moment.")


def hash_password(password: str) -> str:
    """``generate_password_hash(password)`` (scrypt), at most MAX_CONCURRENT at a time in this process."""
    _acquire()
    try:
        return generate_password_hash(password)
    finally:
        _slots.release()


def check_password(password_hash: str, password: str) -> bool:
    """``check_password_hash(password_hash, password)``, at most MAX_CONCURRENT at a time in this process."""
    _acquire()
    try:
        return check_password_hash(password_hash, password)
    finally:
        _slots.release()


def init_app(app) -> None:
    """Answer 503 (with Retry-After) instead of 500 when no hashing slot came free in time."""
    from portal.errors import render_error

    @app.errorhandler(PasswordHashingBusy)
    def _busy(error: PasswordHashingBusy):
        body, status = render_error(503, str(error))
        return body, status, {"Retry-After": "5"}

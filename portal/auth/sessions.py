"""Signed-in sessions that can be revoked.

The session is Flask's signed cookie: ``user_id``, the user's ``epoch`` when the session began and ``login_at``
(Unix seconds). The cookie cannot be changed without the secret key, but a copy of it (a captured cookie) used to
work until it expired — and its expiry slid forward with every request. Two checks close that, on every request
(:func:`valid`):

* **epoch** — ``user.session_epoch`` is raised (:meth:`User.end_sessions`) by sign-out, a password change or
  reset, a role, licence or active (deactivate/reactivate) change and "sign out everywhere"; a session whose epoch
  differs is refused, so each of those ends *every* session of that user, on every device. A session without an
  epoch reads as 0 (the migration put every existing user at 1, so cookies from before it are all refused).
* **absolute lifetime** — a session ends ``SESSION_MAX_HOURS`` (PORTAL_SESSION_MAX_HOURS, default 12) after
  ``login_at``, however active it is; ``PERMANENT_SESSION_LIFETIME`` (8 h) still ends idle ones sooner.

The CSRF token lives in the same session (``WTF_CSRF_TIME_LIMIT = None``), so it dies with it.
"""

from __future__ import annotations

import time

from flask import current_app, session

from portal.models import User

# Clock skew tolerated for a login_at in the future (several processes, one clock each).
SKEW_SECONDS = 300


def now() -> int:
    return int(time.time())


def start(user: User) -> None:
    """Begin a fresh session for ``user`` (after checking the password): nothing of the anonymous one is kept."""
    session.clear()
    session.permanent = True
    stamp(user, login_at=now())


def stamp(user: User, *, login_at: int | None = None) -> None:
    """Write the user and their current epoch into the session; keeps ``login_at`` unless one is given. Used after
    the epoch moved under the current session when it must stay signed in (own password change, sign out
    everywhere else)."""
    session["user_id"] = user.id
    session["epoch"] = user.session_epoch or 0
    if login_at is not None or "login_at" not in session:
        session["login_at"] = login_at if login_at is not None else now()


def max_age() -> int:
    return int(current_app.config.get("SESSION_MAX_HOURS", 12)) * 3600


def ends_at(login_at: int | None = None) -> int:
    """When the current session ends at the latest (Unix seconds)."""
    start_ = login_at if login_at is not None else int(session.get("login_at") or now())
    return start_ + max_age()


def valid(user: User | None) -> bool:
    """Whether the current session may act as ``user`` (the one named by its ``user_id``)."""
    if user is None or not user.is_active:
        return False
    if int(session.get("epoch", 0) or 0) != (user.session_epoch or 0):
        return False
    login_at = session.get("login_at")
    if login_at is None:
        # Only a session the portal wrote without signing in (a test's, never the login's): it starts now.
        session["login_at"] = now()
        return True
    try:
        login_at = int(login_at)
    except (TypeError, ValueError):
        return False
    current = now()
    return login_at - SKEW_SECONDS <= current < login_at + max_age()

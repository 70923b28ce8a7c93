"""Rate limits (Flask-Limiter): sign-in per account+address and per address, ERP search and Test connection per user.

The limits are read from the config on every request, so each app (and each test) sets its own:

=====================  ==========================  =================================================================
``LIMIT_LOGIN``        10/minute per account       ``PORTAL_RATELIMIT_LOGIN``: POST /login, keyed by the e-mail typed
                       and client address          (hashed) and the address — a guesser of one account is stopped,
                                                   its owner signing in from elsewhere is not
``LIMIT_LOGIN_ADDRESS`` 30/minute per address      ``PORTAL_RATELIMIT_LOGIN_ADDRESS``: POST /login from one address,
                                                   whatever the e-mail (password spraying)
``LIMIT_ERP_SEARCH``   60/minute per user          ``PORTAL_RATELIMIT_ERP_SEARCH``: the Connect dialog's simple and
                                                   advanced search together (each one is a call to the ERP)
``LIMIT_TEST_CONNECTION`` 10/minute per user       ``PORTAL_RATELIMIT_TEST_CONNECTION``: Test on the connection row
                                                   and in the connection form together
``LIMIT_API``          120/minute per API token    every request to /api/v1/ with a valid token (portal/api/), counted
                                                   after the token is checked (``PORTAL_RATELIMIT_API`` once
                                                   portal/config.py reads it; until then the default)
=====================  ==========================  =================================================================

A refused request answers **429** with ``Retry-After`` (seconds) and a readable message: the sign-in page with the
message above the form, an error page, or for htmx the error partial and a toast. The check runs before the view,
so a refused sign-in costs no password hash and writes no audit row.

**Per app, per process.** One :data:`limiter` serves every app of the process, but each app gets its own counter
storage when it is created (:func:`init_app`), looked up from the app in use — a test's app starts with fresh
counters, and two apps never share them. The storage is ``RATELIMIT_STORAGE_URI`` (``PORTAL_RATELIMIT_STORAGE_URI``):
by default ``database://`` on PostgreSQL — counters in the portal's own database (``limit_storage.py``), shared by
every process and host — and ``memory://`` on SQLite (one process: counters in memory). ``redis://host:6379`` and
the other storages of :mod:`limits` work as well.

Failed sign-ins are also audited at most once per account+address per minute (:func:`audit_failed_login`); the
failures in between are counted and reported by the next audit row for that account and address.
"""

from __future__ import annotations

import hashlib
import logging
import time

from flask import current_app, g, has_app_context, request
from flask_limiter import Limiter, RateLimitExceeded
from limits import RateLimitItemPerMinute

from portal.security import limit_storage  # registers the database:// storage (and its table) with limits

log = logging.getLogger(__name__)

_EXTENSION_KEY = "portal_rate_limiter"


class PortalLimiter(Limiter):
    """A :class:`~flask_limiter.Limiter` whose counters belong to the app in use (see the module docstring)."""

    def init_app(self, app) -> None:
        super().init_app(app)
        # init_app built a new storage and strategy from this app's config: keep them with the app.
        if isinstance(self._storage, limit_storage.DatabaseStorage):
            self._storage.bind(app)  # database://: the counters live in this app's database
        app.extensions[_EXTENSION_KEY] = (self._storage, self._limiter)

    def _own(self):
        if has_app_context():
            return current_app.extensions.get(_EXTENSION_KEY)
        return None

    @property
    def storage(self):
        own = self._own()
        return own[0] if own else super().storage

    @property
    def limiter(self):
        own = self._own()
        return own[1] if own else super().limiter


def client_address() -> str:
    return request.remote_addr or "unknown"


def _digest(value: str) -> str:
    """Storage keys never hold what a visitor typed (memcached refuses spaces, and keys may be listed)."""
    return hashlib.sha256(value.encode("utf-8", "replace")).hexdigest()[:32]


def login_email() -> str:
    return (request.form.get("email") or "").strip().lower()[:254]


def account_key() -> str:
    return f"{_digest(login_email())}@{client_address()}"


def user_key() -> str:
    user = g.get("user")
    return f"user-{user.id}" if user is not None else f"anonymous@{client_address()}"


def api_token_key() -> str:
    token = g.get("api_token")
    return f"token-{token.id}" if token is not None else f"anonymous@{client_address()}"


def _rate(name: str, default: str | None = None):
    if default is not None:
        return lambda: current_app.config.get(name) or default
    return lambda: current_app.config[name]


limiter = PortalLimiter(key_func=client_address, strategy="fixed-window", headers_enabled=False,
                        key_prefix="portal")

LOGIN_MESSAGE = "Too many sign-in attempts."
login_per_account = limiter.limit(_rate("LIMIT_LOGIN"), key_func=account_key, methods=["POST"], scope="account",
                                  error_message=LOGIN_MESSAGE)
login_per_address = limiter.limit(_rate("LIMIT_LOGIN_ADDRESS"), key_func=client_address, methods=["POST"],
                                  scope="address", error_message=LOGIN_MESSAGE)
# Changing one's own password checks the current one: the same guessing, limited the same way per user.
password_change = limiter.limit(_rate("LIMIT_LOGIN"), key_func=user_key, methods=["POST"],
                                error_message="Too many password changes.")
erp_search = limiter.shared_limit(_rate("LIMIT_ERP_SEARCH"), scope="erp-search", key_func=user_key,
                                  error_message="Too many ERP searches.")
test_connection = limiter.shared_limit(_rate("LIMIT_TEST_CONNECTION"), scope="test-connection", key_func=user_key,
                                       methods=["POST"], error_message="Too many connection tests.")

# The automation API, per token (portal/api/auth.py counts it once the token is known).
API_DEFAULT = "120/minute"
api_per_token = limiter.shared_limit(_rate("LIMIT_API", API_DEFAULT), scope="api-token", key_func=api_token_key,
                                     error_message="Too many API requests for this token.")


def check(limit) -> None:
    """Count one use of ``limit`` (e.g. :data:`test_connection`) inside a view that does more than that one thing;
    raises :class:`RateLimitExceeded` (answered 429) past it."""
    with limit:
        pass


def retry_after() -> int:
    """Seconds until the limit that refused the current request lets it through again (at least 1)."""
    current = limiter.current_limit
    if current is None:
        return 60
    return max(1, int(current.reset_at - time.time()))


def too_many_message(error: RateLimitExceeded, seconds: int) -> str:
    description = error.description or "Too many requests."
    wait = f"{seconds} seconds" if seconds != 1 else "1 second"
    return f"{description} Please wait {wait} and try again."


# --- throttled audit of failed sign-ins ------------------------------------------------------------------------

_AUDIT_EVERY = RateLimitItemPerMinute(1)
_UNAUDITED_SECONDS = 24 * 3600


def audit_failed_login(email: str) -> int:
    """Whether to write an audit row for this failed sign-in: 0 = no (counted instead), otherwise the number of
    failures this row stands for (this one plus those counted since the previous row for the account+address)."""
    address = client_address()
    key = f"{_digest(email)}@{address}"
    strategy, storage = limiter.limiter, limiter.storage
    counter = f"portal/login-failed-unaudited/{key}"
    try:
        if strategy.hit(_AUDIT_EVERY, "login-failed-audit", key):
            unaudited = storage.get(counter) or 0
            if unaudited:
                storage.clear(counter)
            return 1 + int(unaudited)
        storage.incr(counter, _UNAUDITED_SECONDS)
    except Exception:  # a storage outage must not turn a failed sign-in into a 500: audit it
        log.exception("rate-limit storage failed while throttling the audit of a failed sign-in")
        return 1
    log.warning("failed sign-in for %r from %s (audit row throttled)", email, address)
    return 0


# --- wiring ----------------------------------------------------------------------------------------------------


def init_app(app) -> None:
    """Give ``app`` its own counters and answer 429 readably (with Retry-After)."""
    limiter.init_app(app)

    from portal.errors import render_error

    @app.errorhandler(RateLimitExceeded)
    def _too_many(error: RateLimitExceeded):
        seconds = retry_after()
        body, status = render_error(429, too_many_message(error, seconds))
        return body, status, {"Retry-After": str(seconds)}

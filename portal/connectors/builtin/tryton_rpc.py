"""A small JSON-RPC client for a Tryton server (trytond 8.x), spoken over HTTP with ``requests``.

Tryton is GPL-3: it is never imported here. It runs as its own server; this module only sends JSON to
``{url}/{database}/rpc/`` (and ``{url}/rpc/`` for calls that need no database).

What it takes care of:

* Tryton's JSON value convention: ``datetime``/``date``/``time``/``timedelta``/``Decimal``/``bytes`` travel as
  ``{"__class__": "datetime", "year": …}`` objects (``encode_value`` / ``decode_value``). Tryton's timestamps are
  naive UTC; they are decoded as naive ``datetime`` objects.
* Sessions: ``common.db.login`` gives ``[user_id, token, …]``; later calls send
  ``Authorization: Session base64(login:user_id:token)``. Tryton forgets idle sessions (5 min by default) and
  then answers HTTP 401: the client logs in again once and repeats the call.
* Timeouts (connect and read) and readable errors: every failure is a ``TrytonError`` subclass whose message
  can be shown to a person (``TrytonUnreachable``, ``TrytonAuthError``, ``TrytonUnknownDatabase``,
  ``TrytonUserError``, ``TrytonConcurrencyError``, ``TrytonForbidden``, ``TrytonTimeout``, ``TrytonServerError``,
  ``TrytonAddressNotAllowed``). A refused connection, a closed port, an unreachable host and a timeout all read
  the same ("not reachable or did not answer within N seconds") so the message cannot be used to scan ports;
  what happened is in ``tech`` (the server log).
* The transport is the portal's guarded one (``portal.security.urlguard.guarded_session``): the connected peer is
  checked against the always-denied addresses and ``PORTAL_CONNECTOR_ALLOWED_NETWORKS`` before a byte (the
  password included) is sent, no proxy, no redirect.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import json
import threading
from decimal import Decimal
from urllib.parse import quote

import requests

from portal.security.urlguard import GuardedSession, UrlNotAllowed, guarded_session

__all__ = [
    "TrytonAddressNotAllowed",
    "TrytonAuthError",
    "TrytonClient",
    "TrytonConcurrencyError",
    "TrytonError",
    "TrytonForbidden",
    "TrytonServerError",
    "TrytonTimeout",
    "TrytonUnknownDatabase",
    "TrytonUnreachable",
    "TrytonUserError",
    "decode_value",
    "dumps",
    "encode_value",
    "loads",
]


# --------------------------------------------------------------------------------------------- errors
class TrytonError(Exception):
    """Base of every error this client raises. ``str(exc)`` is meant for people; ``tech`` for the log."""

    def __init__(self, message: str, tech: str = ""):
        super().__init__(message)
        self.message = message
        self.tech = tech or message


class TrytonUnreachable(TrytonError):
    """No TCP connection could be made (server down, wrong host or port)."""


class TrytonTimeout(TrytonUnreachable):
    """Tryton accepted the connection but did not answer in time (same message as TrytonUnreachable)."""


class TrytonAddressNotAllowed(TrytonError):
    """The URL's host is (or resolved to) an address the portal never connects to; nothing was sent."""


class TrytonAuthError(TrytonError):
    """Tryton refused the user name or password (HTTP 401 on login), or rate-limited logins (429)."""


class TrytonUnknownDatabase(TrytonError):
    """No database of that name on the server (HTTP 404 on ``/<db>/rpc/``)."""


class TrytonForbidden(TrytonError):
    """HTTP 403: the method or model is not exposed, or the user lacks the access right."""


class TrytonUserError(TrytonError):
    """Tryton's ``UserError``/``UserWarning``: a validation message written for people."""


class TrytonConcurrencyError(TrytonError):
    """Tryton's ``ConcurrencyException``: the record changed since the ``_timestamp`` we sent."""


class TrytonServerError(TrytonError):
    """Anything else: HTTP 5xx, a body that is not JSON-RPC, an unexpected server exception."""


# ------------------------------------------------------------------------------------ value encoding
def encode_value(value):
    """Python value → Tryton JSON value (recursively through lists, tuples and dicts)."""
    if isinstance(value, dt.datetime):  # before date: datetime is a date subclass
        if value.tzinfo is not None:
            value = value.astimezone(dt.UTC).replace(tzinfo=None)
        return {"__class__": "datetime", "year": value.year, "month": value.month, "day": value.day,
                "hour": value.hour, "minute": value.minute, "second": value.second,
                "microsecond": value.microsecond}
    if isinstance(value, dt.date):
        return {"__class__": "date", "year": value.year, "month": value.month, "day": value.day}
    if isinstance(value, dt.time):
        return {"__class__": "time", "hour": value.hour, "minute": value.minute, "second": value.second,
                "microsecond": value.microsecond}
    if isinstance(value, dt.timedelta):
        return {"__class__": "timedelta", "seconds": value.total_seconds()}
    if isinstance(value, Decimal):
        return {"__class__": "Decimal", "decimal": str(value)}
    if isinstance(value, (bytes, bytearray)):
        return {"__class__": "bytes", "base64": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, dict):
        return {key: encode_value(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [encode_value(item) for item in value]
    return value


def decode_value(obj: dict):
    """``json.loads`` object hook: Tryton ``{"__class__": …}`` objects → Python values."""
    kind = obj.get("__class__")
    if kind is None:
        return obj
    try:
        if kind == "datetime":
            return dt.datetime(obj["year"], obj["month"], obj["day"], obj.get("hour", 0), obj.get("minute", 0),
                               obj.get("second", 0), obj.get("microsecond", 0))
        if kind == "date":
            return dt.date(obj["year"], obj["month"], obj["day"])
        if kind == "time":
            return dt.time(obj.get("hour", 0), obj.get("minute", 0), obj.get("second", 0),
                           obj.get("microsecond", 0))
        if kind == "timedelta":
            return dt.timedelta(seconds=obj["seconds"])
        if kind == "Decimal":
            return Decimal(obj["decimal"])
        if kind == "bytes":
            return base64.b64decode(obj["base64"])
    except (KeyError, TypeError, ValueError, ArithmeticError):
        return obj
    return obj


def dumps(value) -> str:
    return json.dumps(encode_value(value), separators=(",", ":"))


def loads(text: str):
    return json.loads(text, object_hook=decode_value)


# ------------------------------------------------------------------------------------------- client
class TrytonClient:
    """One user's JSON-RPC session on one Tryton database. Thread-safe; share one per connection.

    ``model(name, method, *args)`` calls ``model.<name>.<method>`` with ``args`` followed by the context
    (the user's preferences, as Tryton's own clients do, updated with ``extra_context`` and ``context=``).
    """

    def __init__(self, url: str, database: str, user: str, password: str, *, timeout: float = 30.0,
                 connect_timeout: float = 5.0, language: str = "en", extra_context: dict | None = None,
                 allowed_networks=(), http: GuardedSession | None = None):
        self.url = url.rstrip("/")
        self.database = database
        self.user = user
        self._password = password
        self.timeout = (connect_timeout, timeout)
        self.language = language
        self.extra_context = dict(extra_context or {})
        if http is not None and not isinstance(http, GuardedSession):
            raise TypeError("TrytonClient sends through portal.security.urlguard.guarded_session() only")
        # the guarded transport: peer address checked before any byte is sent, no proxy, no redirect
        self._http = http if http is not None else guarded_session(allowed_networks)
        self._lock = threading.Lock()
        self._auth: str | None = None
        self._context: dict | None = None
        self.user_id: int | None = None
        self.logins = 0  # how many times we (re-)established a session: handy for tests and logs
        self._ids = 0

    # -- urls
    @property
    def rpc_url(self) -> str:
        return f"{self.url}/{quote(self.database, safe='')}/rpc/"

    @property
    def root_rpc_url(self) -> str:
        return f"{self.url}/rpc/"

    def __repr__(self) -> str:
        return f"<TrytonClient {self.user}@{self.url}/{self.database}>"

    # -- transport
    def _post(self, url: str, method: str, params: list, auth: str | None):
        with self._lock:
            self._ids += 1
            request_id = self._ids
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if auth:
            headers["Authorization"] = auth
        body = dumps({"id": request_id, "method": method, "params": params})
        try:
            response = self._http.post(url, data=body.encode("utf-8"), headers=headers, timeout=self.timeout,
                                       allow_redirects=False)
        except UrlNotAllowed as exc:
            raise TrytonAddressNotAllowed(exc.user_message, f"{method}: {exc.tech_message}") from exc
        except requests.exceptions.ConnectTimeout as exc:  # (a subclass of both ConnectionError and Timeout)
            raise TrytonUnreachable(self.unreachable_message, f"{method}: connect timeout: {exc!r}") from exc
        except requests.exceptions.ConnectionError as exc:
            raise TrytonUnreachable(self.unreachable_message, f"{method}: connection failed: {exc!r}") from exc
        except requests.exceptions.Timeout as exc:
            raise TrytonTimeout(self.unreachable_message, f"{method}: read timeout: {exc!r}") from exc
        except requests.exceptions.RequestException as exc:
            raise TrytonUnreachable(self.unreachable_message, f"{method}: {exc!r}") from exc
        return response

    @property
    def unreachable_message(self) -> str:
        """One text for a refused connection, a closed or filtered port, an unreachable host and a timeout: which
        of them it was would tell an admin (or a forged request) whether a port is open."""
        return (f"Tryton at {self.url} is not reachable or did not answer within {self.timeout[1]:g} seconds. "
                "Check the address and that the Tryton server is running.")

    def _raise_for_status(self, response, method: str):
        status = response.status_code
        if status == 200:
            return
        tech = f"HTTP {status} from {response.url} for {method}"
        if status == 401:
            raise TrytonAuthError("Tryton refused the user name or password.", tech)
        if status == 429:
            raise TrytonAuthError("Tryton refused the login for now: too many failed attempts. Wait a minute and "
                                  "try again.", tech)
        if status == 404:
            raise TrytonUnknownDatabase(f"Tryton at {self.url} has no database '{self.database}'.", tech)
        if status == 403:
            raise TrytonForbidden(f"Tryton refused the call {method}: it is not allowed for user '{self.user}'.",
                                  tech)
        if status == 405:
            raise TrytonServerError(f"The address {self.url} does not look like a Tryton 8 server (HTTP 405).", tech)
        if status >= 500:
            raise TrytonServerError(f"Tryton at {self.url} failed with an internal error (HTTP {status}).",
                                    tech + ": " + response.text[:500])
        raise TrytonServerError(f"Tryton at {self.url} answered HTTP {status}.", tech + ": " + response.text[:500])

    def _result(self, response, method: str):
        self._raise_for_status(response, method)
        try:
            payload = loads(response.text)
        except ValueError as exc:
            raise TrytonServerError(f"Tryton at {self.url} sent an answer that is not JSON.",
                                    f"{method}: {response.text[:300]!r}") from exc
        if not isinstance(payload, dict):
            raise TrytonServerError(f"Tryton at {self.url} sent an unexpected answer.", f"{method}: {payload!r}")
        if payload.get("error") is not None:
            raise self._error(payload["error"], method)
        return payload.get("result")

    def _error(self, error, method: str) -> TrytonError:
        kind, detail = (error[0], error[1] if len(error) > 1 else "") if isinstance(error, list) and error else (
            str(error), "")
        tech = f"{method}: {json.dumps(error, default=str)[:2000]}"
        if kind in ("UserError", "UserWarning"):
            message = detail[0] if isinstance(detail, list) and detail else str(detail)
            description = detail[1] if isinstance(detail, list) and len(detail) > 1 and detail[1] else ""
            text = f"{message} {description}".strip()
            return TrytonUserError(f"Tryton rejected the change: {text}", tech)
        if kind == "ConcurrencyException":
            return TrytonConcurrencyError("The record was changed in Tryton in the meantime.", tech)
        if kind in ("LoginException", "RateLimitException"):
            return TrytonAuthError("Tryton needs another login step for this user (not supported).", tech)
        return TrytonServerError(f"Tryton failed to run {method}.", tech)

    # -- public API
    def server_version(self) -> str:
        """``common.server.version`` (no database, no login): proves a Tryton server answers at ``url``."""
        return self._result(self._post(self.root_rpc_url, "common.server.version", [], None),
                            "common.server.version")

    def login(self) -> int:
        """Log in (again) and load the user's preferences as the call context. Returns the user id."""
        method = "common.db.login"
        response = self._post(self.rpc_url, method, [self.user, {"password": self._password}, self.language], None)
        if response.status_code == 401:
            raise TrytonAuthError("Tryton refused the user name or password.",
                                  f"HTTP 401 on {method} for user {self.user!r} at {self.rpc_url}")
        result = self._result(response, method)
        if not isinstance(result, list) or len(result) < 2:
            raise TrytonAuthError("Tryton did not open a session for this user.", f"{method} returned {result!r}")
        user_id, token = result[0], result[1]
        auth = "Session " + base64.b64encode(f"{self.user}:{user_id}:{token}".encode()).decode("ascii")
        preferences = self._result(self._post(self.rpc_url, "model.res.user.get_preferences", [True, {}], auth),
                                   "model.res.user.get_preferences") or {}
        context = {key: value for key, value in preferences.items() if key not in ("locale", "groups")}
        context.update(self.extra_context)
        with self._lock:
            self._auth, self._context, self.user_id = auth, context, user_id
            self.logins += 1
        return user_id

    def logout(self) -> None:
        with self._lock:
            auth, self._auth = self._auth, None
        if auth:
            with contextlib.suppress(TrytonError):
                self._result(self._post(self.rpc_url, "common.db.logout", [], auth), "common.db.logout")

    @property
    def context(self) -> dict:
        """The call context (user preferences + extra context). Logs in when needed."""
        if self._context is None:
            self.login()
        return dict(self._context or {})

    def call(self, method: str, *params):
        """Call ``method`` on the database with a session; on HTTP 401 (session expired or forgotten)
        log in again once and repeat the call."""
        if self._auth is None:
            self.login()
        response = self._post(self.rpc_url, method, list(params), self._auth)
        if response.status_code == 401:
            self.login()
            response = self._post(self.rpc_url, method, list(params), self._auth)
        return self._result(response, method)

    def model(self, model: str, method: str, *args, context: dict | None = None):
        """``model.<model>.<method>(*args, context)`` with the user's context (plus ``context``)."""
        ctx = self.context
        if context:
            ctx.update(context)
        return self.call(f"model.{model}.{method}", *args, ctx)

    def search_read(self, model: str, domain: list, fields: list[str], *, offset: int = 0, limit: int | None = None,
                    order: list | None = None, context: dict | None = None) -> list[dict]:
        return self.model(model, "search_read", domain, offset, limit, order, fields, context=context)

    def read(self, model: str, ids: list[int], fields: list[str], *, context: dict | None = None) -> list[dict]:
        """``read`` — note Tryton does not keep the order of ``ids``: index the answer by ``id``."""
        if not ids:
            return []
        return self.model(model, "read", list(ids), fields, context=context)

    def search(self, model: str, domain: list, *, offset: int = 0, limit: int | None = None,
               order: list | None = None, context: dict | None = None) -> list[int]:
        return self.model(model, "search", domain, offset, limit, order, context=context)

    def forget_session(self) -> None:
        """Drop the session locally (next call logs in). Tests use ``corrupt_session`` instead."""
        with self._lock:
            self._auth = None

    def corrupt_session(self) -> None:
        """Replace the session token by a wrong one, as if Tryton had expired it (for tests)."""
        with self._lock:
            self._auth = "Session " + base64.b64encode(f"{self.user}:{self.user_id}:expired".encode()).decode()

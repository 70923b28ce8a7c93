"""The portal's client for sync connectors (shared/docs/connector-protocol.md).

``ConnectorClient(url).call("GetActors", {...})`` posts one protocol method and returns a :class:`Reply`;
every failure — transport, HTTP status, garbage answer or ``IsOk: false`` — raises :class:`ConnectorError`.
Typed helpers (``get_actors`` …) build the request members and check the shape of the payload.

Two transports behave alike:

* ``http(s)://host/base`` → ``POST {base}/{Method}`` through a ``requests.Session`` whose adapters check the
  connected peer address (``portal.security.urlguard.GuardedHTTPAdapter``); no redirects, answers streamed with
  a byte cap, and a **total deadline** per attempt (below);
* ``builtin:<name>`` → the in-process connector ``portal.connectors.builtin.get_builtin(name, app_config)``;
  request and answer go through ``json.dumps``/``json.loads`` exactly as over HTTP, with the same cap.

Transient failures (timeouts, connection errors, 5xx, 408/425/429) are retried with exponential backoff and
full jitter. A connector that lost a connection's configuration (``UNKNOWN_CONNECTION_ID``) gets it re-sent
with ``SaveConnection`` (through ``resend_config``) and the call is retried once.

Deadlines, not only timeouts. ``requests``' timeouts bound each socket operation, so a peer that drips its
answer one byte at a time (or its headers, or a TLS handshake) is never cut off. Here:

* ``timeout`` (``PORTAL_CONNECTOR_TIMEOUT``) is the **total** time one HTTP attempt may take: connect, send,
  status, headers and the whole body. ``connect_timeout`` still bounds the TCP connect alone.
* ``budget`` bounds one **logical call**: every attempt, the backoff waits between them and an
  ``UNKNOWN_CONNECTION_ID`` re-send. An attempt gets ``min(timeout, time left)``; a wait (backoff or
  ``Retry-After``) that would not leave time for another attempt ends the call at once with the last (transient)
  error. ``with client.deadline(seconds):`` caps every call inside the block further (a web request's or a sync
  run's own budget).
* Running out of time raises ``ConnectorError`` ``TIMEOUT`` (transient): "Demo ERP did not answer within 30 s."

How the deadline is enforced whatever the peer does (a watchdog thread that shuts down the socket of an
attempt past its deadline): ``portal.connectors.deadlines``.

The **built-in** connectors run in-process as a plain function call: the deadline is checked before the call
but cannot interrupt it (that would need a thread per call); their own back-ends (e.g. Tryton's RPC) have their
own timeouts.

A client is meant for one operation in one thread; create one per operation and ``close()`` it (or use it
as a context manager).
"""

from __future__ import annotations

import email.utils
import json
import logging
import math
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Self

import requests
import urllib3.exceptions

from portal.connectors import deadlines
from portal.connectors.deadlines import DeadlineAdapter
from portal.connectors.guard import GUARD_CODES, CallGuard, GuardRefused, Lane
from portal.connectors.protocol import METHODS, UNKNOWN_CONNECTION_ID, ZERO_GUID, State
from portal.security.urlguard import UrlNotAllowed, builtin_name, check_url_syntax, guarded_session

log = logging.getLogger(__name__)

TECH_LIMIT = 2000  # characters of tech_message kept
BODY_SNIPPET = 500  # characters of a raw remote body ever quoted in a message
RETRY_AFTER_CAP = 30.0  # seconds: the longest Retry-After honoured
MIN_ATTEMPT_SECONDS = 0.1  # a retry is only worth it with at least this much time left after its wait
TRANSIENT_STATUSES = frozenset({408, 425, 429})  # plus every 5xx
ALWAYS_TRIED = frozenset({"TestConnection"})  # an admin's explicit test goes even while the breaker is open
DEFAULT_WARNING = "The connector reported a warning: the operation was done, but not completely."


def _truncate(text: str, limit: int) -> str:
    text = str(text or "")
    return text if len(text) <= limit else text[: limit - 1] + "…"


class ConnectorError(Exception):
    """A connector call that failed.

    ``user_message`` is readable text for the screen; ``tech_message`` goes to the log; ``error_code`` is the
    connector's ErrorCode or one of ``TIMEOUT``, ``UNREACHABLE``, ``HTTP_<status>``, ``BAD_RESPONSE``,
    ``TOO_LARGE``, ``REDIRECT``, ``ADDRESS_NOT_ALLOWED``, ``UNKNOWN_BUILTIN``; ``transient`` says whether
    trying again later may help.
    """

    def __init__(self, user_message: str, *, tech_message: str = "", error_code: str = "", transient: bool = False,
                 method: str = ""):
        super().__init__(user_message)
        self.user_message = str(user_message)
        self.tech_message = _truncate(tech_message, TECH_LIMIT)
        self.error_code = error_code or ""
        self.transient = bool(transient)
        self.method = method or ""
        self.retry_after: float | None = None  # seconds asked for by the connector (Retry-After), if any
        self.before_send = False  # True when the request surely never reached the connector

    def __str__(self) -> str:
        return self.user_message

    def __repr__(self) -> str:
        return (f"ConnectorError({self.user_message!r}, error_code={self.error_code!r}, "
                f"transient={self.transient!r}, method={self.method!r})")


def is_transient(exc: BaseException) -> bool:
    """True when ``exc`` is a failure worth retrying later (a transient ConnectorError or network error)."""
    if isinstance(exc, ConnectorError):
        return exc.transient
    if isinstance(exc, requests.Timeout | requests.ConnectionError):
        return not isinstance(exc, requests.exceptions.SSLError)
    return bool(getattr(exc, "transient", False))


@dataclass
class Reply:
    """A successful answer (``IsOk: true``); ``data`` is the whole response document."""

    method: str
    data: dict

    @property
    def state(self) -> str:
        state = self.data.get("State")
        return state if isinstance(state, str) and state else State.OK.value

    @property
    def user_explanation(self) -> str:
        return str(self.data.get("UserExplanation") or "")

    @property
    def tech_explanation(self) -> str:
        return str(self.data.get("TechExplanation") or "")

    @property
    def warning(self) -> str | None:
        """What to show the user when the connector answered ``State: Warning``; None otherwise."""
        if self.state != State.WARNING.value:
            return None
        return self.user_explanation or DEFAULT_WARNING

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)


def _reject_constant(name: str):
    raise ValueError(f"{name} is not valid JSON")


def _describe_remote_body(raw: bytes) -> str:
    """A short description of an error body for the log: its explanations when it is a protocol document,
    otherwise the first characters."""
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError):
        doc = None
    if isinstance(doc, dict) and any(k in doc for k in ("UserExplanation", "TechExplanation", "ErrorCode")):
        parts = [f"{k}={_truncate(doc.get(k), BODY_SNIPPET)!r}" for k in ("ErrorCode", "UserExplanation",
                                                                           "TechExplanation") if doc.get(k)]
        return "; ".join(parts)
    text = raw[:BODY_SNIPPET * 4].decode("utf-8", "replace")
    return f"body: {_truncate(text, BODY_SNIPPET)!r}" if text else "empty body"


def _parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - datetime.now(UTC)).total_seconds()
    if math.isnan(seconds):
        return None
    return max(0.0, min(seconds, RETRY_AFTER_CAP))


def _seconds(value: float) -> str:
    """A duration for a message: ``30``, ``0.5``, ``2.5``."""
    return f"{value:.0f}" if value >= 10 else f"{value:.2g}"


class ConnectorClient:
    """Talks the connector protocol to one connector. See the module docstring.

    ``timeout``: seconds one HTTP attempt may take in total (connect, send, the whole answer); ``connect_timeout``:
    seconds for the TCP connect alone; ``budget``: seconds one logical call may take, retries and their waits
    included (default: every attempt its whole ``timeout`` plus one capped Retry-After wait); ``name``: how
    messages call the connector ("Demo ERP did not answer within 30 s."; default "The connector").
    """

    def __init__(self, url: str, *, token: str | None = None, timeout: float = 30, connect_timeout: float = 5,
                 max_bytes: int = 10 * 1024 * 1024, retries: int = 3, backoff: float = 0.5,
                 allowed_networks: Sequence[str] = (), app_config: Mapping | None = None,
                 resend_config: Callable[[str], dict | None] | None = None, sleep: Callable[[float], Any] = time.sleep,
                 budget: float | None = None, name: str | None = None, guard: CallGuard | None = None,
                 lane: Lane = Lane.SYNC):
        self.url = url
        self._token = token
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.max_bytes = int(max_bytes)
        self.retries = max(0, int(retries))
        self.backoff = backoff
        self.allowed_networks = tuple(allowed_networks or ())
        self.app_config = app_config
        self.resend_config = resend_config
        self.sleep = sleep
        self.budget = float(budget) if budget is not None else self.timeout * (self.retries + 1) + RETRY_AFTER_CAP
        self.name = name
        self.guard = guard  # breaker and bulkheads per connection (portal.connectors.guard); None: unguarded
        self.lane = lane
        self._outer_deadline: float | None = None  # time.monotonic() set by deadline()
        self._call_started = 0.0
        self.warnings: list[tuple[str, str]] = []
        self.calls = 0  # logical protocol calls (a SaveConnection re-send and the replayed call count too)
        self.attempts = 0  # every attempt, retries included
        self.seconds = 0.0  # wall time spent waiting on the connector (backoff sleeps excluded)
        self._builtin = builtin_name(url) if isinstance(url, str) else None
        self._base = url.rstrip("/") if isinstance(url, str) and self._builtin is None else ""
        self._session: requests.Session | None = None
        try:
            check_url_syntax(url)
            self._url_error: UrlNotAllowed | None = None
        except UrlNotAllowed as exc:  # reported by call(), so constructing a client never raises
            self._url_error = exc

    def __repr__(self) -> str:  # never shows the token
        return f"<ConnectorClient {self.url!r}>"

    # -- lifecycle --------------------------------------------------------------------------------------

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    @contextmanager
    def deadline(self, seconds: float) -> Iterator[Self]:
        """Every call made inside the block ends within ``seconds`` from now (attempts, retries, waits); nested
        blocks keep the earlier deadline."""
        previous = self._outer_deadline
        end = time.monotonic() + max(0.0, float(seconds))
        self._outer_deadline = end if previous is None else min(previous, end)
        try:
            yield self
        finally:
            self._outer_deadline = previous

    def _get_session(self) -> requests.Session:
        if self._session is None:
            self._session = guarded_session(self.allowed_networks, adapter_class=DeadlineAdapter)
        return self._session

    # -- the protocol call -------------------------------------------------------------------------------

    def call(self, method: str, body: dict | None = None) -> Reply:
        """Call ``method`` with the request members in ``body``; see the module docstring."""
        if method not in METHODS:
            raise ValueError(f"{method!r} is not a connector protocol method")
        if body is not None and not isinstance(body, dict):
            raise TypeError("the request body must be a dict")
        body = dict(body or {})
        guid = body.get("ConnectionGuid")
        if self.guard is None or not isinstance(guid, str) or not guid or guid == ZERO_GUID:
            return self._call(method, body)
        try:
            with self.guard.calling(guid, self._who(), self.lane, probe_now=method in ALWAYS_TRIED) as report:
                try:
                    reply = self._call(method, body)
                except ConnectorError as exc:
                    # only an ERP that gave no answer counts against it; any answer proves it alive
                    report(exc if exc.transient and exc.error_code not in GUARD_CODES else None)
                    raise
                report(None)
                return reply
        except GuardRefused as refused:
            self.calls += 1
            err = ConnectorError(refused.message, tech_message=f"{method}: not sent ({refused.code})",
                                 error_code=refused.code, transient=True, method=method)
            err.before_send = True
            raise err from None

    def _call(self, method: str, body: dict) -> Reply:
        self._call_started = time.monotonic()
        deadline = self._call_started + self.budget
        if self._outer_deadline is not None:
            deadline = min(deadline, self._outer_deadline)
        try:
            return self._call_with_retries(method, body, deadline)
        except ConnectorError as exc:
            guid = body.get("ConnectionGuid")
            if (exc.error_code != UNKNOWN_CONNECTION_ID or method == "SaveConnection" or self.resend_config is None
                    or not isinstance(guid, str) or not guid or guid == ZERO_GUID):
                raise
            info = self.resend_config(guid)
            if info is None:
                raise
            log.info("connector %s lost connection %s; re-sending its configuration", self._where(), guid)
            self._call_with_retries("SaveConnection", {"ConnectionGuid": guid, "ConnectionInfo": info}, deadline)
            return self._call_with_retries(method, body, deadline)

    def _where(self) -> str:
        return self.url if isinstance(self.url, str) else "?"

    def _who(self) -> str:
        return self.name or "The connector"

    def _call_with_retries(self, method: str, body: dict, deadline: float) -> Reply:
        self.calls += 1
        if self._url_error is not None:
            err = self._url_error
            raise ConnectorError(err.user_message, tech_message=err.tech_message, error_code="ADDRESS_NOT_ALLOWED",
                                 method=method)
        payload = json.dumps(body, allow_nan=False, ensure_ascii=False).encode("utf-8")
        headers = {}
        if method == "CreateActor" and body.get("IdempotencyKey"):
            headers["Idempotency-Key"] = str(body["IdempotencyKey"])  # the ext body member, also as a header
        attempt = 0
        while True:
            started = time.monotonic()
            left = deadline - started
            if left <= 0:
                raise self._out_of_time(method, before_send=True)
            allowance = min(self.timeout, left)
            self.attempts += 1
            try:
                try:
                    if self._builtin is not None:
                        raw = self._send_builtin(method, payload)
                    else:
                        raw = self._send_http(method, payload, headers, allowance)
                finally:
                    elapsed = time.monotonic() - started
                    self.seconds += elapsed
                log.debug("connector %s %s answered in %.3fs (attempt %d)", self._where(), method, elapsed,
                          attempt + 1)
                return self._reply(method, self._parse(method, raw))
            except ConnectorError as exc:
                if exc.transient and attempt < self.retries and self._may_retry(method, body, exc):
                    delay = exc.retry_after if exc.retry_after is not None else random.uniform(
                        0, self.backoff * 2 ** attempt)
                    left = deadline - time.monotonic()
                    if delay + MIN_ATTEMPT_SECONDS > left:  # never wait past the deadline: give up now
                        log.warning("connector %s %s failed after %.3fs (%s: %s); no retry: waiting %.2fs would "
                                    "leave no time of the %.2fs left", self._where(), method, elapsed,
                                    exc.error_code, exc.tech_message, delay, max(0.0, left))
                        raise
                    log.warning("connector %s %s failed after %.3fs (%s: %s); retry %d/%d in %.2fs", self._where(),
                                method, elapsed, exc.error_code, exc.tech_message, attempt + 1, self.retries, delay)
                    self.sleep(delay)
                    attempt += 1
                    continue
                log.warning("connector %s %s failed after %.3fs: %s [%s] %s", self._where(), method, elapsed,
                            exc.user_message, exc.error_code or "-", exc.tech_message)
                raise

    @staticmethod
    def _may_retry(method: str, body: dict, exc: ConnectorError) -> bool:
        # A create without an idempotency key is repeated only when the first try surely did not arrive:
        # otherwise the ERP could end up with two records. The caller's outbox handles the rest.
        if method == "CreateActor" and not body.get("IdempotencyKey"):
            return exc.before_send or exc.error_code == "HTTP_429"
        return True

    def _reply(self, method: str, doc: dict) -> Reply:
        if doc["IsOk"] is not True:
            code = doc.get("ErrorCode")
            code = code if isinstance(code, str) else ""
            user = doc.get("UserExplanation")
            user = user if isinstance(user, str) and user.strip() else "The connector reported an error."
            tech = doc.get("TechExplanation")
            tech = tech if isinstance(tech, str) else ""
            raise ConnectorError(user, tech_message=f"{method}: {tech}" if tech else f"{method}: {code or 'error'}",
                                 error_code=code, transient=False, method=method)
        reply = Reply(method, doc)
        warning = reply.warning
        if warning is not None:
            self.warnings.append((method, warning))
            log.warning("connector %s %s answered with a warning: %s %s", self._where(), method, warning,
                        _truncate(reply.tech_explanation, BODY_SNIPPET))
        return reply

    def _parse(self, method: str, raw: bytes) -> dict:
        try:
            doc = json.loads(raw, parse_constant=_reject_constant)
        except (ValueError, RecursionError) as exc:
            raise self._bad(method, "The connector's answer is not valid JSON.", f"{exc}; {_describe_remote_body(raw)}")
        if not isinstance(doc, dict):
            raise self._bad(method, "The connector's answer is not a JSON object.",
                            f"got {type(doc).__name__}; {_describe_remote_body(raw)}")
        if not isinstance(doc.get("IsOk"), bool):
            raise self._bad(method, "The connector's answer has no IsOk member.",
                            f"IsOk is {doc.get('IsOk')!r}; {_describe_remote_body(raw)}")
        return doc

    def _bad(self, method: str, detail: str, tech: str = "") -> ConnectorError:
        return ConnectorError(f"The connector sent an answer the portal could not understand. {detail}",
                              tech_message=f"{method}: {tech or detail}", error_code="BAD_RESPONSE", method=method)

    # -- transports --------------------------------------------------------------------------------------

    def _too_large(self, method: str, size: str) -> ConnectorError:
        return ConnectorError(f"The connector's answer is larger than the allowed {_human_size(self.max_bytes)}.",
                              tech_message=f"{method}: answer of {size} bytes exceeds max_bytes={self.max_bytes}",
                              error_code="TOO_LARGE", method=method)

    def _send_builtin(self, method: str, payload: bytes) -> bytes:
        from portal.connectors import builtin

        name = self._builtin
        try:
            service = builtin.get_builtin(name, self.app_config or {})
        except Exception as exc:  # a factory that fails (bad config, missing module)
            raise ConnectorError(f"The built-in connector {name!r} could not be started.",
                                 tech_message=f"{method}: get_builtin({name!r}) failed: {exc!r}",
                                 error_code="UNREACHABLE", method=method) from exc
        if service is None:
            raise ConnectorError(f"There is no built-in connector called {name!r}.",
                                 tech_message=f"{method}: unknown builtin {name!r}", error_code="UNKNOWN_BUILTIN",
                                 method=method)
        try:
            doc = service.handle(method, json.loads(payload))
        except Exception as exc:  # handle() answers errors itself; this is a bug in the connector
            raise ConnectorError("The built-in connector failed while processing the request.",
                                 tech_message=f"{method}: {type(exc).__name__}: {exc}", error_code="BAD_RESPONSE",
                                 method=method) from exc
        try:
            raw = json.dumps(doc, allow_nan=False, ensure_ascii=False).encode("utf-8")
        except (TypeError, ValueError, RecursionError) as exc:
            raise self._bad(method, "The built-in connector's answer cannot be encoded as JSON.",
                            f"json.dumps failed: {exc}") from exc
        if len(raw) > self.max_bytes:
            raise self._too_large(method, str(len(raw)))
        return raw

    def _send_http(self, method: str, payload: bytes, extra_headers: Mapping[str, str], allowance: float) -> bytes:
        """One attempt, ended by the watchdog ``allowance`` seconds from now whatever the peer does."""
        attempt = deadlines.begin(time.monotonic() + allowance)
        error: ConnectorError | None = None
        raw = b""
        try:
            raw = self._exchange(method, payload, extra_headers, allowance)
        except ConnectorError as exc:
            error = exc
        finally:
            fired = deadlines.end(attempt)
        if fired:
            self.close()  # its connection was shut down: never hand it out again
            # What was read before the shutdown may be cut short (a body read to the end of the connection looks
            # complete): unless the answer was already judged on its status or size, the attempt timed out.
            if error is None or error.error_code in ("UNREACHABLE", "BAD_RESPONSE", "TIMEOUT"):
                timeout = self._timeout_error(method, allowance, tech=f"{method}: deadline of {allowance:.3f}s "
                                              f"reached (watchdog); {error.tech_message if error else 'no error'}")
                raise timeout from error
        if error is not None:
            raise error
        return raw

    def _exchange(self, method: str, payload: bytes, extra_headers: Mapping[str, str], allowance: float) -> bytes:
        url = f"{self._base}/{method}"
        headers = {"Content-Type": "application/json", "Accept": "application/json", **extra_headers}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        connect_timeout = min(self.connect_timeout, allowance)
        try:
            resp = self._get_session().post(url, data=payload, headers=headers, allow_redirects=False, stream=True,
                                            timeout=(connect_timeout, allowance))
        except UrlNotAllowed as exc:
            raise ConnectorError(exc.user_message, tech_message=f"{method}: {exc.tech_message}",
                                 error_code="ADDRESS_NOT_ALLOWED", method=method) from exc
        except (requests.RequestException, OSError) as exc:
            raise self._transport_error(method, exc, allowance, connect_timeout) from exc
        try:
            return self._read_answer(method, resp)
        except (requests.RequestException, OSError, urllib3.exceptions.HTTPError) as exc:
            raise self._transport_error(method, exc, allowance, connect_timeout) from exc
        finally:
            resp.close()

    def _read_answer(self, method: str, resp: requests.Response) -> bytes:
        status = resp.status_code
        if 300 <= status < 400:
            location = _truncate(resp.headers.get("Location", ""), BODY_SNIPPET)
            raise ConnectorError("The connector answered with a redirect, which the portal does not follow. "
                                 "Check the connector's address.",
                                 tech_message=f"{method}: HTTP {status} to {location!r}", error_code="REDIRECT",
                                 method=method)
        if status != 200:
            try:  # the error body only feeds the log: read a little, best effort
                raw = self._read_capped(method, resp, limit=min(self.max_bytes, 64 * 1024), truncate=True)
            except (requests.RequestException, OSError, urllib3.exceptions.HTTPError):
                raw = b""
            raise self._status_error(method, status, raw, resp.headers.get("Retry-After"))
        length = resp.headers.get("Content-Length")
        if length and length.strip().isdigit() and int(length) > self.max_bytes:
            raise self._too_large(method, length.strip())
        return self._read_capped(method, resp, limit=self.max_bytes)

    def _read_capped(self, method: str, resp: requests.Response, *, limit: int, truncate: bool = False) -> bytes:
        chunks: list[bytes] = []
        total = 0
        for chunk in resp.iter_content(chunk_size=64 * 1024):
            chunks.append(chunk)
            total += len(chunk)
            if total > limit:
                if truncate:
                    break
                raise self._too_large(method, f"more than {limit}")
        return b"".join(chunks)

    def _status_error(self, method: str, status: int, raw: bytes, retry_after: str | None) -> ConnectorError:
        transient = status >= 500 or status in TRANSIENT_STATUSES
        if status in (401, 403):
            user = f"The connector refused access (HTTP {status}). Check the connector's token."
        elif status == 404:
            user = ("The connector does not know this function (HTTP 404). Check the connector's address "
                    "and that it implements the sync connector protocol.")
        elif status == 429:
            user = "The connector is busy (HTTP 429: too many requests). Try again later."
        elif status >= 500:
            user = f"The connector failed with an internal error (HTTP {status})."
        else:
            user = f"The connector answered with an unexpected HTTP status {status}."
        exc = ConnectorError(user, tech_message=f"{method}: HTTP {status}; {_describe_remote_body(raw)}",
                             error_code=f"HTTP_{status}", transient=transient, method=method)
        if transient:
            exc.retry_after = _parse_retry_after(retry_after)
        return exc

    def _timeout_error(self, method: str, allowance: float, *, tech: str) -> ConnectorError:
        # An attempt cut short by the call's budget reports the time the whole call took.
        seconds = allowance if allowance >= self.timeout else time.monotonic() - self._call_started
        return ConnectorError(f"{self._who()} did not answer within {_seconds(seconds)} s.", tech_message=tech,
                              error_code="TIMEOUT", transient=True, method=method)

    def _out_of_time(self, method: str, *, before_send: bool) -> ConnectorError:
        spent = time.monotonic() - self._call_started
        err = ConnectorError(f"{self._who()} did not answer within {_seconds(spent)} s.",
                             tech_message=f"{method}: no time left for another attempt after {spent:.3f}s",
                             error_code="TIMEOUT", transient=True, method=method)
        err.before_send = before_send
        return err

    def _transport_error(self, method: str, exc: BaseException, allowance: float | None = None,
                         connect_timeout: float | None = None) -> ConnectorError:
        tech = f"{method}: {type(exc).__name__}: {exc}"
        reason = exc
        for _ in range(10):  # unwrap requests → urllib3 MaxRetryError → the underlying error
            inner = getattr(reason, "reason", None)
            if inner is None and reason.args and isinstance(reason.args[0], BaseException):
                inner = reason.args[0]
            if not isinstance(inner, BaseException) or inner is reason:
                break
            reason = inner
        if isinstance(exc, requests.exceptions.SSLError) or isinstance(reason, urllib3.exceptions.SSLError):
            return ConnectorError("The connector's TLS certificate could not be verified.", tech_message=tech,
                                  error_code="UNREACHABLE", transient=False, method=method)
        refused = isinstance(reason, urllib3.exceptions.NewConnectionError | ConnectionRefusedError)
        # (urllib3's NewConnectionError subclasses ConnectTimeoutError, hence the check on `refused`)
        if not refused and (isinstance(exc, requests.exceptions.ConnectTimeout)
                            or isinstance(reason, urllib3.exceptions.ConnectTimeoutError)):
            seconds = self.connect_timeout if connect_timeout is None else connect_timeout
            err = ConnectorError(f"{self._who()} could not be reached within {_seconds(seconds)} s.",
                                 tech_message=tech, error_code="TIMEOUT", transient=True, method=method)
            err.before_send = True
            return err
        if isinstance(exc, requests.Timeout | TimeoutError) or isinstance(
                reason, urllib3.exceptions.ReadTimeoutError | TimeoutError):
            return self._timeout_error(method, self.timeout if allowance is None else allowance, tech=tech)
        if isinstance(exc, requests.exceptions.ContentDecodingError):
            return self._bad(method, "Its compressed answer could not be decoded.", tech)
        if isinstance(exc, requests.exceptions.InvalidURL | requests.exceptions.InvalidSchema
                      | requests.exceptions.MissingSchema | requests.exceptions.InvalidHeader):
            return ConnectorError("The connector address is not valid.", tech_message=tech,
                                  error_code="UNREACHABLE", transient=False, method=method)
        err = ConnectorError("The connector could not be reached. Check that it is running and that its address "
                             "is correct.", tech_message=tech, error_code="UNREACHABLE", transient=True,
                             method=method)
        err.before_send = refused or isinstance(reason, urllib3.exceptions.NameResolutionError)
        return err

    # -- payload checks ----------------------------------------------------------------------------------

    def _member(self, reply: Reply, name: str) -> Any:
        if name not in reply.data:
            raise self._bad(reply.method, f"The member {name} is missing.")
        return reply.data[name]

    def _objects(self, reply: Reply, name: str, *, required_key: str | None = None) -> list[dict]:
        value = self._member(reply, name)
        if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
            raise self._bad(reply.method, f"{name} must be a list of objects.", f"{name} is {_short(value)}")
        if required_key is not None:
            for item in value:
                if not isinstance(item.get(required_key), str) or not item[required_key]:
                    raise self._bad(reply.method, f"An entry of {name} has no {required_key}.",
                                    f"entry {_short(item)}")
        return value

    def _actors(self, reply: Reply, name: str = "Actors") -> list[dict]:
        actors = self._objects(reply, name)
        for actor in actors:
            values = actor.get("FieldValues", {})
            if values is not None and not isinstance(values, dict):
                raise self._bad(reply.method, "An actor's FieldValues is not an object.", f"actor {_short(actor)}")
        return actors

    def _strings(self, reply: Reply, name: str) -> list[str]:
        value = self._member(reply, name)
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise self._bad(reply.method, f"{name} must be a list of strings.", f"{name} is {_short(value)}")
        return value

    def _list_items(self, reply: Reply) -> dict[str, str]:
        value = self._member(reply, "ListItems")
        if not isinstance(value, dict) or not all(isinstance(text, str) for text in value.values()):
            raise self._bad(reply.method, "ListItems must be an object of texts.", f"ListItems is {_short(value)}")
        return value

    # -- typed helpers -----------------------------------------------------------------------------------

    def get_config_data(self) -> list[dict]:
        return self._objects(self.call("GetConfigData"), "FieldMetaDataObjects", required_key="FieldKey")

    def test_config_data(self, info: dict) -> Reply:
        return self.call("TestConfigData", {"ConnectionInfo": info})

    def save_connection(self, guid: str, info: dict) -> Reply:
        return self.call("SaveConnection", {"ConnectionGuid": guid, "ConnectionInfo": info})

    def test_connection(self, guid: str) -> Reply:
        return self.call("TestConnection", {"ConnectionGuid": guid})

    def delete_connection(self, guid: str) -> Reply:
        return self.call("DeleteConnection", {"ConnectionGuid": guid})

    def get_supported_actor_types(self, guid: str) -> list[str]:
        return self._strings(self.call("GetSupportedActorTypes", {"ConnectionGuid": guid}), "Items")

    def get_supported_actor_type_fields(self, guid: str, actor_type: str) -> list[dict]:
        reply = self.call("GetSupportedActorTypeFields", {"ConnectionGuid": guid, "ActorType": actor_type})
        return self._objects(reply, "FieldMetaDataObjects", required_key="FieldKey")

    def get_searchable_fields(self, guid: str, actor_type: str) -> list[str]:
        reply = self.call("GetSearchableFields", {"ConnectionGuid": guid, "ActorType": actor_type})
        return self._strings(reply, "Items")

    def get_actors(self, guid: str, actor_type: str, erp_keys: Sequence[str], field_keys: Sequence[str]) -> list[dict]:
        reply = self.call("GetActors", {"ConnectionGuid": guid, "ActorType": actor_type, "ErpKeys": list(erp_keys),
                                        "FieldKeys": list(field_keys)})
        return self._actors(reply)

    def search_actors(self, guid: str, actor_type: str, search_text: str, field_keys: Sequence[str],
                      limit: int | None = None) -> list[dict]:
        body = {"ConnectionGuid": guid, "ActorType": actor_type, "SearchText": search_text,
                "FieldKeys": list(field_keys)}
        if limit is not None:
            body["Limit"] = limit
        return self._actors(self.call("SearchActors", body))

    def search_actor_by_parent(self, guid: str, actor_type: str, search_text: str, parent_actor_type: str,
                               parent_erp_key: str, field_keys: Sequence[str]) -> list[dict]:
        reply = self.call("SearchActorByParent", {
            "ConnectionGuid": guid, "ActorType": actor_type, "SearchText": search_text,
            "ParentActorType": parent_actor_type, "ParentErpKey": parent_erp_key, "FieldKeys": list(field_keys)})
        return self._actors(reply)

    def search_actors_advanced(self, guid: str, actor_type: str, restrictions: Sequence[dict],
                               field_keys: Sequence[str]) -> list[dict]:
        reply = self.call("SearchActorsAdvanced", {"ConnectionGuid": guid, "ActorType": actor_type,
                                                   "Restrictions": list(restrictions), "FieldKeys": list(field_keys)})
        return self._actors(reply)

    def create_actor(self, guid: str, actor: dict, idempotency_key: str | None = None) -> dict:
        body = {"ConnectionGuid": guid, "Actor": actor}
        if idempotency_key is not None:
            body["IdempotencyKey"] = idempotency_key
        reply = self.call("CreateActor", body)
        created = self._member(reply, "Actor")
        if not isinstance(created, dict):
            raise self._bad(reply.method, "Actor must be an object.", f"Actor is {_short(created)}")
        if not isinstance(created.get("ErpKey"), str) or not created["ErpKey"]:
            raise self._bad(reply.method, "The created actor has no ErpKey.", f"Actor is {_short(created)}")
        return created

    def save_actors(self, guid: str, actors: Sequence[dict]) -> list[dict]:
        return self._actors(self.call("SaveActors", {"ConnectionGuid": guid, "Actors": list(actors)}))

    def get_list(self, guid: str, list_name: str) -> dict[str, str]:
        return self._list_items(self.call("GetList", {"ConnectionGuid": guid, "ListName": list_name}))

    def get_list_items(self, guid: str, list_name: str, keys: Sequence[str]) -> dict[str, str]:
        reply = self.call("GetListItems", {"ConnectionGuid": guid, "ListName": list_name,
                                           "ListItemKeys": list(keys)})
        return self._list_items(reply)

    def get_actors_by_timestamp(self, guid: str, updated_on_or_after: str, actor_type: str,
                                field_keys: Sequence[str], limit: int | None = None,
                                cursor: str | None = None) -> tuple[list[dict], str | None]:
        body = {"ConnectionGuid": guid, "UpdatedOnOrAfter": updated_on_or_after or "", "ActorType": actor_type,
                "FieldKeys": list(field_keys)}
        if limit is not None:
            body["Limit"] = limit
        if cursor is not None:
            body["Cursor"] = cursor
        reply = self.call("GetActorsByTimestamp", body)
        actors = self._actors(reply)
        next_cursor = reply.get("NextCursor")
        if next_cursor is not None and not isinstance(next_cursor, str):
            raise self._bad(reply.method, "NextCursor must be a string or null.", f"NextCursor is {_short(next_cursor)}")
        return actors, next_cursor or None


def _human_size(size: int) -> str:
    if size >= 1024 * 1024:
        return f"{size / (1024 * 1024):.3g} MB"
    if size >= 1024:
        return f"{size / 1024:.3g} KB"
    return f"{size} bytes"


def _short(value: Any) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False, default=repr)
    except (TypeError, ValueError, RecursionError):
        text = repr(value)
    return _truncate(text, 200)

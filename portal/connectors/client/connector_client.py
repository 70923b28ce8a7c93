"""The :class:`ConnectorClient`: its settings, lifecycle and deadline, and one logical protocol call — the
breaker and bulkheads of the connection's guard, the call's budget, the retries with backoff and the
``UNKNOWN_CONNECTION_ID`` re-send. Sending, reading, errors and the typed methods come from its parts.

"The module docstring" that the class and ``call`` refer to is the package's (``portal/connectors/client/__init__.py``):
transports, retries and deadlines."""

from __future__ import annotations

import json
import logging
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Self

import requests

from portal.connectors.client.answers import AnswerReading, Reply
from portal.connectors.client.errors import ConnectorError
from portal.connectors.client.failures import FailureErrors
from portal.connectors.client.methods import ProtocolMethods
from portal.connectors.client.retries import MIN_ATTEMPT_SECONDS, RETRY_AFTER_CAP
from portal.connectors.client.transport import Transports
from portal.connectors.deadlines import DeadlineAdapter
from portal.connectors.guard import GUARD_CODES, CallGuard, GuardRefused, Lane
from portal.connectors.protocol import METHODS, UNKNOWN_CONNECTION_ID, ZERO_GUID
from portal.security.urlguard import UrlNotAllowed, builtin_name, check_url_syntax, guarded_session

log = logging.getLogger("portal.connectors.client")  # the one logger of the whole client (as before the split)

ALWAYS_TRIED = frozenset({"TestConnection"})  # an admin's explicit test goes even while the breaker is open


class ConnectorClient(ProtocolMethods, Transports, AnswerReading, FailureErrors):
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
        self._call_deadline = 0.0
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
        self._call_deadline = deadline
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

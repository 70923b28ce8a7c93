"""Every failure the connector client meets, worded as a :class:`ConnectorError`: an answer it cannot understand or
too large, an HTTP status, a timeout or a call out of time, a transport error (TLS, refused, unreachable …),
each with its error code and whether it is transient."""

from __future__ import annotations

import time

import requests
import urllib3.exceptions

from portal.connectors.client.errors import ConnectorError, _describe_remote_body, _human_size, _seconds
from portal.connectors.client.retries import TRANSIENT_STATUSES, _parse_retry_after


class FailureErrors:
    """Part of :class:`~portal.connectors.client.connector_client.ConnectorClient`: the errors it raises (uses the
    client's ``timeout``, ``connect_timeout``, ``max_bytes``, ``_call_started``, ``_call_deadline`` and ``_who``)."""

    def _bad(self, method: str, detail: str, tech: str = "") -> ConnectorError:
        return ConnectorError(f"The connector sent an answer the portal could not understand. {detail}",
                              tech_message=f"{method}: {tech or detail}", error_code="BAD_RESPONSE", method=method)

    def _too_large(self, method: str, size: str) -> ConnectorError:
        return ConnectorError(f"The connector's answer is larger than the allowed {_human_size(self.max_bytes)}.",
                              tech_message=f"{method}: answer of {size} bytes exceeds max_bytes={self.max_bytes}",
                              error_code="TOO_LARGE", method=method)

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
        # An attempt cut short by the call's budget (or the caller's deadline) reports the time the whole call was
        # given, not the clock: a watchdog woken late on a busy machine must not turn "2.5 s" into "2.9 s".
        seconds = allowance if allowance >= self.timeout else self._call_deadline - self._call_started
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

"""The two transports of the connector client: one HTTP attempt (``POST {base}/{Method}`` under the watchdog
deadline of portal.connectors.deadlines, the answer read with a byte cap) and the in-process ``builtin:``
connectors (request and answer through JSON as over HTTP)."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping

import requests
import urllib3.exceptions

from portal.connectors import deadlines
from portal.connectors.client.errors import BODY_SNIPPET, ConnectorError, _truncate
from portal.security.urlguard import UrlNotAllowed


class Transports:
    """Part of :class:`~portal.connectors.client.connector_client.ConnectorClient`: sending a request and reading
    the raw answer (uses the client's address, token, timeouts, ``max_bytes``, session and error builders)."""

    # -- transports --------------------------------------------------------------------------------------

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

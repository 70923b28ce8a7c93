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

The package, lowest layer first (each module imports only those above it):

* ``errors``: :class:`ConnectorError` and the texts of its messages;
* ``retries``: what is transient, ``Retry-After``, the retry constants;
* ``answers``: :class:`Reply` and the parsing of an answer document;
* ``failures``: every failure worded as a ConnectorError (status, timeout, transport …);
* ``transport``: one HTTP attempt under its deadline, and the built-in connectors;
* ``methods``: the typed protocol methods and their payload checks;
* ``connector_client``: :class:`ConnectorClient` itself — settings, deadline, guard, budget and retries.

Callers use the names re-exported here (``from portal.connectors.client import ConnectorClient``); a test that
replaces a helper must patch the module that looks it up (e.g. ``client.connector_client.random``), not this
package. Every module logs to the one logger ``portal.connectors.client``.
"""

from portal.connectors.client.answers import DEFAULT_WARNING, Reply
from portal.connectors.client.connector_client import ALWAYS_TRIED, ConnectorClient
from portal.connectors.client.errors import BODY_SNIPPET, TECH_LIMIT, ConnectorError
from portal.connectors.client.retries import MIN_ATTEMPT_SECONDS, RETRY_AFTER_CAP, TRANSIENT_STATUSES, is_transient

__all__ = [
    "ALWAYS_TRIED",
    "BODY_SNIPPET",
    "DEFAULT_WARNING",
    "MIN_ATTEMPT_SECONDS",
    "RETRY_AFTER_CAP",
    "TECH_LIMIT",
    "TRANSIENT_STATUSES",
    "ConnectorClient",
    "ConnectorError",
    "Reply",
    "is_transient",
]

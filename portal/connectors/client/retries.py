"""What is worth trying again, and how long to wait: transient failures and statuses, the ``Retry-After`` a
connector asks for (capped), and the least time a retry must still have. The backoff loop itself is
``ConnectorClient._call_with_retries`` (connector_client.py)."""

from __future__ import annotations

import email.utils
import math
from datetime import UTC, datetime

import requests

from portal.connectors.client.errors import ConnectorError

RETRY_AFTER_CAP = 30.0  # seconds: the longest Retry-After honoured
MIN_ATTEMPT_SECONDS = 0.1  # a retry is only worth it with at least this much time left after its wait
TRANSIENT_STATUSES = frozenset({408, 425, 429})  # plus every 5xx


def is_transient(exc: BaseException) -> bool:
    """True when ``exc`` is a failure worth retrying later (a transient ConnectorError or network error)."""
    if isinstance(exc, ConnectorError):
        return exc.transient
    if isinstance(exc, requests.Timeout | requests.ConnectionError):
        return not isinstance(exc, requests.exceptions.SSLError)
    return bool(getattr(exc, "transient", False))


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

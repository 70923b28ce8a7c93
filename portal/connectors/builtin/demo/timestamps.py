"""``LastModified``: stored as integer microseconds since the epoch, answered as ISO-8601 UTC
(``2026-11-25T17:02:06.123456Z``). The clock the storage reads is ``_now_micros``."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def format_timestamp(micros: int) -> str:
    """Integer microseconds since the epoch -> ``2026-11-25T17:02:06.123456Z``."""
    return (_EPOCH + timedelta(microseconds=micros)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_timestamp(text: str) -> int:
    """An ISO-8601 timestamp or date (naive = UTC), or a decimal count of microseconds -> microseconds."""
    text = text.strip()
    if text.isdigit():
        return int(text)
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // timedelta(microseconds=1)


def _now_micros() -> int:
    return time.time_ns() // 1000

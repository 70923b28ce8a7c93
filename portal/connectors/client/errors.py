"""The connector client's errors and their texts: :class:`ConnectorError` (what the screen shows, what the log
gets, the error code) and the helpers that word sizes, durations and remote bodies for those messages."""

from __future__ import annotations

import json
from typing import Any

TECH_LIMIT = 2000  # characters of tech_message kept
BODY_SNIPPET = 500  # characters of a raw remote body ever quoted in a message


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


def _seconds(value: float) -> str:
    """A duration for a message: ``30``, ``0.5``, ``2.5``."""
    return f"{value:.0f}" if value >= 10 else f"{value:.2g}"


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

"""How the checks word their reasons: values quoted short, lists of problems cut off, JSON types named, connector
errors spelled out (with a hint when they are transient)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from portal.connectors.client import ConnectorError

MAX_LISTED = 5  # problems quoted in one reason


def _short(value: Any, limit: int = 80) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False, default=repr)
    except (TypeError, ValueError, RecursionError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _listing(items: Sequence[str], limit: int = MAX_LISTED) -> str:
    items = list(items)
    shown = "; ".join(items[:limit])
    return shown + (f"; and {len(items) - limit} more" if len(items) > limit else "")


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _error_text(exc: ConnectorError) -> str:
    text = exc.user_message
    if exc.error_code:
        text += f" [{exc.error_code}]"
    if exc.tech_message:
        text += f" ({exc.tech_message})"
    if exc.transient:  # 408, 425, 429, 5xx, timeouts, connection errors
        text += " — a transient error: the portal retries it with backoff; run the kit again"
    return text

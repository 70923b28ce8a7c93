"""Values as Tryton and the protocol spell them: timestamps (naive UTC ↔ ISO-8601), dates, a person's name split
into first and last name and joined again, LIKE patterns and the text match that checks them after a query."""

from __future__ import annotations

import datetime as dt

from portal.connectors.builtin.tryton.catalogue import NEGATIVE
from portal.connectors.service import ProtocolError


def iso_utc(value: dt.datetime | None) -> str:
    """Tryton's naive-UTC timestamp → '2026-11-25T17:02:06.123456Z'."""
    if value is None:
        return ""
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    return value.strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z"


def parse_timestamp(text, what: str = "timestamp") -> dt.datetime | None:
    """An ISO-8601 date or date-time (Z, offset or naive = UTC) → naive UTC datetime; blank → None."""
    if text is None or (isinstance(text, str) and not text.strip()):
        return None
    if not isinstance(text, str):
        raise ProtocolError(f"The {what} must be an ISO-8601 string, not {text!r}.", error_code="INVALID_VALUE")
    value = text.strip()
    try:
        parsed = dt.datetime.fromisoformat(value[:-1] + "+00:00" if value.endswith(("Z", "z")) else value)
    except ValueError:
        raise ProtocolError(f"The {what} '{value}' is not an ISO-8601 date-time.",
                            error_code="INVALID_VALUE") from None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(dt.UTC).replace(tzinfo=None)
    return parsed


def parse_date(value) -> dt.date:
    if isinstance(value, str):
        text = value.strip()
        try:
            return dt.date.fromisoformat(text[:10]) if len(text) >= 10 else dt.date.fromisoformat(text)
        except ValueError:
            pass
    raise ValueError(f"'{value}' is not a date (YYYY-MM-DD)")


def split_person_name(name: str | None) -> tuple[str | None, str | None]:
    """'Anna Maria Schmidt' → ('Anna Maria', 'Schmidt'); 'Madonna' → (None, 'Madonna')."""
    text = " ".join((name or "").split())
    if not text:
        return None, None
    first, _, last = text.rpartition(" ")
    return (first or None), last


def join_person_name(first: str | None, last: str | None) -> str:
    return " ".join(part.strip() for part in (first, last) if part and part.strip())


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _case_variants(text: str) -> list[str]:
    # SQLite's LIKE folds ASCII letters only: try the usual spellings of non-ASCII text too.
    if text.isascii():
        return [text]
    return list(dict.fromkeys([text, text.lower(), text.upper(), text.capitalize(), text.title()]))


def _like_patterns(operator: str, text: str) -> list[str]:
    esc = _escape_like
    form = {"=": "{}", "begins": "{}%", "contains": "%{}%", "ends": "%{}"}[operator]
    return [form.format(esc(variant)) for variant in _case_variants(text)]


def _text_match(operator: str, actual: str | None, wanted: str) -> bool:
    actual, wanted = (actual or "").casefold(), (wanted or "").casefold()
    positive = NEGATIVE.get(operator, operator)
    result = {"=": actual == wanted, "begins": actual.startswith(wanted), "contains": wanted in actual,
              "ends": actual.endswith(wanted)}[positive]
    return not result if operator in NEGATIVE else result

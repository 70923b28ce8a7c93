"""``normalize_erp``: the canonical ERP form of a value (see the package docstring), one normalizer per ERP type."""

from __future__ import annotations

import math
import re
from datetime import UTC, date, datetime, time, timedelta, timezone

from portal.models.erp import FieldType
from portal.services.values.compatibility import _field_type
from portal.services.values.errors import ConversionError, _quote
from portal.services.values.helpers import number_text

_INT_RE = re.compile(r"[+-]?\d+(?:\.0*)?")
_FLOAT_RE = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_DATE_RE = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})"
    r"(?:[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d+))?)?"
    r"([Zz]|[+-]\d{2}:?\d{2})?)?"
)
_TRUE_WORDS = frozenset({"true", "1", "yes", "on"})
_FALSE_WORDS = frozenset({"false", "0", "no", "off"})


def _norm_text(value: object) -> str | None:
    if isinstance(value, str):
        return value or None
    if isinstance(value, int | float) and not isinstance(value, bool):
        if isinstance(value, float) and not math.isfinite(value):
            raise ConversionError(f"{_quote(value)} is not text")
        return number_text(value)
    raise ConversionError(f"{_quote(value)} is not text")


def _norm_list(value: object) -> str | None:
    if isinstance(value, str):
        return value or None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise ConversionError(f"{_quote(value)} is not a list item key")


def _norm_integer(value: object) -> int | None:
    if isinstance(value, bool):
        raise ConversionError(f"{_quote(value)} is not a whole number")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer():
            return int(value)
        raise ConversionError(f"{_quote(value)} is not a whole number")
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        if _INT_RE.fullmatch(text):
            try:
                return int(text.split(".")[0])
            except ValueError:  # more digits than Python converts
                raise ConversionError(f"{_quote(value)} is too large a number") from None
        raise ConversionError(f"{_quote(value)} is not a whole number")
    raise ConversionError(f"{_quote(value)} is not a whole number")


def _norm_double(value: object) -> float | None:
    if isinstance(value, bool):
        raise ConversionError(f"{_quote(value)} is not a number")
    if isinstance(value, int | float):
        try:
            number = float(value)
        except OverflowError:
            raise ConversionError(f"{_quote(value)} is too large a number") from None
    elif isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        if not _FLOAT_RE.fullmatch(text):
            hint = " (use a point as the decimal separator)" if "," in text else ""
            raise ConversionError(f"{_quote(value)} is not a number{hint}")
        number = float(text)
    else:
        raise ConversionError(f"{_quote(value)} is not a number")
    if not math.isfinite(number):
        raise ConversionError(f"{_quote(value)} is not a finite number")
    return number + 0.0  # -0.0 -> 0.0


def _norm_checkbox(value: object) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if not word:
            return None
        if word in _TRUE_WORDS:
            return True
        if word in _FALSE_WORDS:
            return False
    raise ConversionError(f"{_quote(value)} is not a yes/no value")


def _format_datetime(moment: datetime) -> str:
    """Canonical Date text of a datetime (naive = UTC): date only at midnight, else seconds precision + 'Z'."""
    if moment.tzinfo is not None and moment.utcoffset() is not None:
        try:
            moment = moment.astimezone(UTC)
        except OverflowError:
            raise ConversionError(f"{_quote(moment.isoformat())} is out of the supported date range") from None
    if moment.time().replace(microsecond=0) == time(0, 0, 0):
        return moment.date().isoformat()
    return (
        f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}"
        f"T{moment.hour:02d}:{moment.minute:02d}:{moment.second:02d}Z"
    )


def _parse_date_text(text: str, original: object) -> str | None:
    stripped = text.strip()
    if not stripped:
        return None
    match = _DATE_RE.fullmatch(stripped)
    if not match:
        raise ConversionError(f"{_quote(original)} is not a date (expected YYYY-MM-DD)")
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    try:
        if hour is None:
            return date(int(year), int(month), int(day)).isoformat()
        tz = UTC
        if offset and offset not in ("Z", "z"):
            sign = -1 if offset[0] == "-" else 1
            digits = offset[1:].replace(":", "")
            tz = timezone(sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:])))
        micro = int((fraction or "0")[:6].ljust(6, "0"))
        moment = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second or 0), micro, tzinfo=tz)
    except ValueError:
        raise ConversionError(f"{_quote(original)} is not a valid date") from None
    return _format_datetime(moment)


def _norm_date(value: object) -> str | None:
    if isinstance(value, datetime):
        return _format_datetime(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, str):
        return _parse_date_text(value, value)
    raise ConversionError(f"{_quote(value)} is not a date")


_NORMALIZERS = {
    FieldType.TEXT: _norm_text,
    FieldType.PASSWORD: _norm_text,
    FieldType.LABEL: _norm_text,
    FieldType.LIST: _norm_list,
    FieldType.INTEGER: _norm_integer,
    FieldType.DOUBLE: _norm_double,
    FieldType.CHECKBOX: _norm_checkbox,
    FieldType.DATE: _norm_date,
}


def normalize_erp(erp_type: str, value: object) -> object:
    """The canonical ERP form of ``value`` for ``erp_type`` (see the module docstring); idempotent.

    Raises ``ConversionError`` for values that are not of the type (``'not a date'`` for a Date, ``'x'`` for an
    Integer, ``1.5`` for an Integer, ...) and for an unknown field type.
    """
    ftype = _field_type(erp_type)
    if value is None:
        return None
    return _NORMALIZERS[ftype](value)

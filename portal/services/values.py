"""Field values between the CRM and the ERP: type compatibility, conversion, normalization, parsing and display.

Pure functions: no Flask, no database, no I/O.

Two representations meet here:

* **CRM values** -- Python values as stored on the SQLAlchemy models (``portal.models.crm``):
  ``text``/``longtext`` -> ``str`` (``''`` = blank), ``date`` -> ``datetime.date | None``,
  ``list`` -> ``int`` (a ``ListItem`` id) ``| None``, ``checkbox`` -> ``bool`` (never blank: ``False``),
  ``integer`` -> ``int | None`` (within ±``MAX_INTEGER``), ``decimal`` -> finite ``float | None`` (within
  ±``MAX_DECIMAL``); the limits are portal/services/crm_rules.py's, the rules every CRM value obeys.
* **ERP values** -- JSON-native per connector ``FieldType`` (connector-protocol.md, Types):
  Text/Password/Label -> ``str``, Integer -> ``int``, Double -> ``float``, Checkbox -> ``bool``,
  Date -> ``'YYYY-MM-DD'`` or ``'YYYY-MM-DDTHH:MM:SSZ'`` (UTC), List -> ``str`` item key; ``None`` = blank.

``normalize_erp`` gives the *canonical* ERP form of a value; the sync merge compares canonical forms only, so
every function here that returns an ERP value returns it normalized. Canonical forms:

* blank is always ``None`` (``''`` for Text/Password/Label/List, ``''`` or whitespace for the other types);
  text is otherwise kept exactly as given (nothing is stripped);
* Integer -> ``int`` (from ints, whole floats and strings such as ``'42'``, ``'-7'``, ``'12.0'``);
* Double -> finite ``float`` (``-0.0`` becomes ``0.0``);
* Checkbox -> ``bool`` (from ``true/false``, ``1/0``, ``yes/no``, ``on/off``, case-insensitive);
* Date -> ``'YYYY-MM-DD'`` when the time is midnight UTC (or there is no time), else
  ``'YYYY-MM-DDTHH:MM:SSZ'`` in UTC with sub-second digits dropped; a time without offset is taken as UTC;
* List -> ``str`` key (integer keys become strings).

Every conversion failure raises ``ConversionError`` (a ``ValueError``) whose message can be shown to an admin or
user as is, e.g. ``'abc' is not a whole number``. ``UnmappedListItem`` is the subclass for a list item that has no
counterpart in the list mapping; the engine records it as a per-field issue.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, time, timedelta, timezone

from portal.models.crm import CrmFieldType
from portal.models.erp import FieldType
from portal.services.crm_rules import MAX_DECIMAL, MAX_INTEGER

__all__ = [
    "ConversionError",
    "UnmappedListItem",
    "compatible",
    "crm_to_erp",
    "display",
    "erp_to_crm",
    "invert_list_map",
    "is_blank",
    "normalize_erp",
    "number_text",
    "parse_input",
    "to_crm_precision",
]

_TEXT_TYPES = frozenset({FieldType.TEXT, FieldType.PASSWORD, FieldType.LABEL})
_CRM_TEXT_TYPES = frozenset({CrmFieldType.TEXT, CrmFieldType.LONGTEXT})
_CRM_NUMBER_TYPES = frozenset({CrmFieldType.INTEGER, CrmFieldType.DECIMAL})
# What each ERP type may map to (Password: nothing). The CRM checkbox, integer and decimal fields take only these.
_ALLOWED = {
    FieldType.TEXT: _CRM_TEXT_TYPES,
    FieldType.LABEL: _CRM_TEXT_TYPES,
    FieldType.INTEGER: _CRM_TEXT_TYPES | _CRM_NUMBER_TYPES,
    FieldType.DOUBLE: _CRM_TEXT_TYPES | {CrmFieldType.DECIMAL},
    FieldType.CHECKBOX: frozenset({CrmFieldType.CHECKBOX}),
    FieldType.DATE: frozenset({CrmFieldType.DATE}),
    FieldType.LIST: frozenset({CrmFieldType.LIST}),
}
_PASSWORD_MASK = "\u2022" * 8

# The compatibility reasons name what the CRM field is and what the ERP field type can be mapped to instead:
# an admin reads them in the tooltip of a disabled choice, so each must say the rule that applies (issue #17).
_CRM_KIND = {
    CrmFieldType.TEXT: "a text field",
    CrmFieldType.LONGTEXT: "a long text field",
    CrmFieldType.DATE: "a date field",
    CrmFieldType.LIST: "a list",
    CrmFieldType.CHECKBOX: "a checkbox",
    CrmFieldType.INTEGER: "a whole number field",
    CrmFieldType.DECIMAL: "a decimal number field",
}
_CRM_TARGET = {
    FieldType.TEXT: "a CRM text or long text field",
    FieldType.LABEL: "a CRM text or long text field",
    FieldType.INTEGER: "a CRM whole number, decimal number, text or long text field",
    FieldType.DOUBLE: "a CRM decimal number, text or long text field",
    FieldType.CHECKBOX: "a CRM checkbox",
    FieldType.DATE: "a CRM date field",
    FieldType.LIST: "a CRM list field",
}

_INT_RE = re.compile(r"[+-]?\d+(?:\.0*)?")
_FLOAT_RE = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_DATE_RE = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})"
    r"(?:[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d+))?)?"
    r"([Zz]|[+-]\d{2}:?\d{2})?)?"
)
_TRUE_WORDS = frozenset({"true", "1", "yes", "on"})
_FALSE_WORDS = frozenset({"false", "0", "no", "off"})


class ConversionError(ValueError):
    """A value that cannot be converted; ``str(error)`` is a readable sentence for an admin or user."""


class UnmappedListItem(ConversionError):
    """A list item without a counterpart in the list mapping.

    ``key`` is the ERP item key (``side == 'erp'``, converting to the CRM) or the CRM ``ListItem`` id
    (``side == 'crm'``, converting to the ERP).
    """

    def __init__(self, key: str | int, side: str) -> None:
        self.key = key
        self.side = side
        if side == "erp":
            message = f"ERP list item {_quote(key)} is not mapped to a CRM list item"
        else:
            message = f"CRM list item {_quote(key)} is not mapped to an ERP list item"
        super().__init__(message)


# --------------------------------------------------------------------------------------------- helpers


def _quote(value: object, limit: int = 40) -> str:
    """A value as it appears in a message: strings in single quotes, shortened to ``limit`` characters."""
    if isinstance(value, str):
        text = value if len(value) <= limit else value[: limit - 1] + "\u2026"
        return f"'{text}'"
    try:
        text = repr(value)
    except ValueError:  # an int with more digits than Python converts to text
        return "the number"
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def _field_type(erp_type: object) -> FieldType:
    try:
        return FieldType(erp_type)
    except ValueError:
        raise ConversionError(f"Unknown ERP field type {_quote(erp_type)}") from None


def _crm_type(crm_field_type: object) -> CrmFieldType:
    try:
        return CrmFieldType(crm_field_type)
    except ValueError:
        raise ConversionError(f"Unknown CRM field type {_quote(crm_field_type)}") from None


def same_value(a: object, b: object) -> bool:
    """Equal as field values: ``True`` is not ``1`` and ``False`` is not ``0`` (a checkbox is not a number), NaN
    equals NaN, and an object whose ``==`` fails is different."""
    if a is b:
        return True
    if isinstance(a, bool) != isinstance(b, bool):
        return False
    if isinstance(a, float) and isinstance(b, float) and a != a and b != b:  # NaN
        return True
    try:
        return bool(a == b)
    except Exception:  # pragma: no cover - exotic objects with a broken __eq__
        return False


def is_blank(value: object) -> bool:
    """``None``, a string of only whitespace, or an empty collection. ``0`` and ``False`` are not blank."""
    if value is None:
        return True
    if isinstance(value, str):
        return not value.strip()
    if isinstance(value, list | tuple | dict | set | frozenset):
        return len(value) == 0
    return False


def number_text(value: int | float) -> str:
    """A number as text without needless zeros: ``3.0`` -> ``'3'``, ``1.50`` -> ``'1.5'``, ``1e20`` -> ``'1e+20'``.

    ``float(number_text(x)) == x`` for every finite float (the shortest round-tripping representation).
    """
    if isinstance(value, bool):
        return "1" if value else "0"
    try:
        if isinstance(value, int):
            return str(value)
    except ValueError:  # more digits than Python converts to text
        raise ConversionError("The number is too large") from None
    if value == 0:
        return "0"
    if value.is_integer() and abs(value) < 1e16:
        return str(int(value))
    return repr(value)


def _crm_integer(value: int) -> int:
    """``value`` when a CRM integer field can hold it (±``MAX_INTEGER``), else ``ConversionError``."""
    if not -MAX_INTEGER <= value <= MAX_INTEGER:
        raise ConversionError(f"{_quote(value)} is out of range for a CRM whole number "
                              f"(-{MAX_INTEGER} to {MAX_INTEGER})")
    return value


def _crm_decimal(value: int | float) -> float:
    """``value`` as a float when a CRM decimal field can hold it (finite, ±``MAX_DECIMAL``), else
    ``ConversionError``."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ConversionError(f"{_quote(value)} is not a finite number")
    if not -MAX_DECIMAL <= value <= MAX_DECIMAL:
        raise ConversionError(f"{_quote(value)} is out of range for a CRM decimal number "
                              f"(-{number_text(MAX_DECIMAL)} to {number_text(MAX_DECIMAL)})")
    return float(value) + 0.0  # -0.0 -> 0.0


def _check_length(text: str, max_length: int) -> str:
    if max_length and max_length > 0 and len(text) > max_length:
        raise ConversionError(f"{_quote(text)} is longer than {max_length} characters")
    return text


# ------------------------------------------------------------------------------------ per-type normalizers


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


# ------------------------------------------------------------------------------------------------ API


def compatible(erp_type: str, crm_field_type: str, crm_label: str = "") -> tuple[bool, str]:
    """Whether an ERP field of ``erp_type`` may map to a CRM field of ``crm_field_type``: ``(ok, reason)``.

    ``reason`` is ``''`` when ok, else a short sentence for the tooltip of a disabled choice, naming the CRM field
    (``crm_label``, e.g. ``'Country is a list in the CRM; an ERP Text field can only be mapped to a CRM text or
    long text field'``). Rules: CRM text and long text take ERP Text, Label, Integer and Double (that a Label only
    syncs to the CRM is enforced by the mapping screen); CRM date takes only Date; CRM list takes only List;
    CRM checkbox takes only Checkbox (and a Checkbox maps to nothing else); CRM integer (a whole number) takes
    only Integer; CRM decimal takes Integer and Double; Password never maps. A Double is refused by a CRM
    integer field because the fraction would be lost, and the reason says so.
    """
    try:
        ftype = _field_type(erp_type)
    except ConversionError as error:
        return False, str(error)
    try:
        ctype = _crm_type(crm_field_type)
    except ConversionError as error:
        return False, str(error)
    if ftype == FieldType.PASSWORD:
        return False, "An ERP Password field is never synced, so it cannot be mapped"
    if ctype in _ALLOWED[ftype]:
        return True, ""
    kind = _CRM_KIND[ctype]
    crm_side = f"{crm_label} is {kind} in the CRM" if crm_label else f"The CRM field is {kind}"
    reason = f"{crm_side}; an ERP {ftype.value} field can only be mapped to {_CRM_TARGET[ftype]}"
    if ftype == FieldType.DOUBLE and ctype == CrmFieldType.INTEGER:
        reason += " (a whole number field would lose the fraction)"
    return False, reason


def _require_compatible(erp_type: str, crm_field_type: str) -> tuple[FieldType, CrmFieldType]:
    ftype = _field_type(erp_type)
    ctype = _crm_type(crm_field_type)
    ok, reason = compatible(ftype, ctype)
    if not ok:
        raise ConversionError(reason)
    return ftype, ctype


def normalize_erp(erp_type: str, value: object) -> object:
    """The canonical ERP form of ``value`` for ``erp_type`` (see the module docstring); idempotent.

    Raises ``ConversionError`` for values that are not of the type (``'not a date'`` for a Date, ``'x'`` for an
    Integer, ``1.5`` for an Integer, ...) and for an unknown field type.
    """
    ftype = _field_type(erp_type)
    if value is None:
        return None
    return _NORMALIZERS[ftype](value)


def erp_to_crm(
    erp_type: str,
    crm_field_type: str,
    value: object,
    list_map: Mapping[str, int | None] | None = None,
    max_length: int = 0,
) -> object:
    """An ERP value as the CRM stores it in a field of ``crm_field_type``.

    * text/longtext: blank -> ``''``; numbers without needless zeros (``3.0`` -> ``'3'``); longer than
      ``max_length`` (the CRM field's length, 0 = unlimited) -> ``ConversionError``.
    * date: ``'YYYY-MM-DD...'`` -> ``datetime.date`` (the UTC date of a date-time); blank -> ``None``.
    * list: ERP item key -> CRM ``ListItem`` id through ``list_map``; a key that is not in the map or is mapped to
      ``None`` ("No selection") raises ``UnmappedListItem`` (``side='erp'``). Blank -> ``None``.
    * checkbox: ``bool``; blank -> ``False`` (a CRM checkbox is never blank).
    * integer: ``int``; beyond ±``MAX_INTEGER`` -> ``ConversionError``. Blank -> ``None``.
    * decimal: ``float`` (from an Integer or a Double); beyond ±``MAX_DECIMAL`` -> ``ConversionError``.
      Blank -> ``None``.

    Incompatible types raise ``ConversionError`` with the ``compatible()`` reason.
    """
    ftype, ctype = _require_compatible(erp_type, crm_field_type)
    normalized = normalize_erp(ftype, value)
    if ctype in _CRM_TEXT_TYPES:
        if normalized is None:
            return ""
        text = number_text(normalized) if isinstance(normalized, int | float) else str(normalized)
        return _check_length(text, max_length)
    if ctype == CrmFieldType.CHECKBOX:
        return bool(normalized)
    if normalized is None:
        return None
    if ctype == CrmFieldType.INTEGER:
        return _crm_integer(normalized)
    if ctype == CrmFieldType.DECIMAL:
        return _crm_decimal(normalized)
    if ctype == CrmFieldType.DATE:
        return date.fromisoformat(str(normalized)[:10])
    # list
    crm_id = (list_map or {}).get(str(normalized))
    if crm_id is None:
        raise UnmappedListItem(str(normalized), "erp")
    return crm_id


def crm_to_erp(
    erp_type: str,
    crm_field_type: str,
    value: object,
    reverse_list_map: Mapping[int, str] | None = None,
    max_length: int = 0,
) -> object:
    """A CRM value as the (normalized) ERP value of a field of ``erp_type``.

    * text/longtext -> Text/Label: ``''`` -> ``None``; longer than ``max_length`` (the ERP field's MaxLength,
      0 = unlimited) -> ``ConversionError``. -> Integer/Double: parsed (``'abc'`` -> ``ConversionError``).
    * date -> ``'YYYY-MM-DD'``.
    * list: CRM ``ListItem`` id -> ERP item key through ``reverse_list_map`` (see ``invert_list_map``); an id
      without a key raises ``UnmappedListItem`` (``side='crm'``).
    * checkbox -> Checkbox: ``bool`` (``None`` counts as ``False``).
    * integer -> Integer/Double, decimal -> Double: the number; decimal -> Integer: a whole number only (``1.5``
      -> ``ConversionError``). Out of the CRM's range, or not finite -> ``ConversionError``.

    Incompatible types raise ``ConversionError`` with the ``compatible()`` reason.
    """
    ftype, ctype = _require_compatible(erp_type, crm_field_type)
    if ctype == CrmFieldType.CHECKBOX:
        if value is None:
            return False
        if not isinstance(value, bool):
            raise ConversionError(f"{_quote(value)} is not a yes/no value")
        return value
    if value is None:
        return None
    if ctype in _CRM_NUMBER_TYPES:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConversionError(f"{_quote(value)} is not a number")
        if ctype == CrmFieldType.INTEGER:
            if not isinstance(value, int):
                raise ConversionError(f"{_quote(value)} is not a whole number")
            number: int | float = _crm_integer(value)
        else:
            number = _crm_decimal(value)
        if ftype == FieldType.INTEGER:
            if isinstance(number, float) and not number.is_integer():
                raise ConversionError(f"{number_text(number)} is not a whole number, and the ERP field holds only "
                                      "whole numbers")
            return int(number)
        return normalize_erp(ftype, number)
    if ctype == CrmFieldType.LIST:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConversionError(f"{_quote(value)} is not a list item")
        key = (reverse_list_map or {}).get(value)
        if key is None or key == "":
            raise UnmappedListItem(value, "crm")
        return normalize_erp(ftype, key)
    if ctype == CrmFieldType.DATE:
        return normalize_erp(ftype, value)
    # text / longtext
    if not isinstance(value, str):
        raise ConversionError(f"{_quote(value)} is not text")
    normalized = normalize_erp(ftype, value)
    if isinstance(normalized, str):
        _check_length(normalized, max_length)
    return normalized


def invert_list_map(list_map: Mapping[str, int | None] | None, prefer: Iterable[str | None] = ()) -> dict[int, str]:
    """The reverse of a list mapping (ERP key -> CRM id) for ``crm_to_erp``: CRM id -> ERP key.

    When several ERP items map to one CRM item, the key in ``prefer`` wins (pass the ERP record's current key, so
    an unchanged CRM value converts back to the very key the ERP holds and is not seen as a change); otherwise
    the smallest key wins, so the result is deterministic. Items mapped to ``None`` are left out.
    """
    preferred = {key for key in prefer if key is not None}
    result: dict[int, str] = {}
    for key in sorted((list_map or {}), key=lambda k: (k not in preferred, str(k))):
        crm_id = (list_map or {})[key]
        if crm_id is not None and crm_id not in result:
            result[crm_id] = key
    return result


def to_crm_precision(
    erp_type: str, crm_field_type: str, value: object, list_map: Mapping[str, int | None] | None = None
) -> object:
    """An ERP value reduced to what the CRM field can hold, in normalized ERP form (for the merge's comparisons).

    Example: Date ``'2026-11-25T10:00:00Z'`` mapped to a CRM date -> ``'2026-11-25'``; without this the CRM's
    date (converted to ``'2026-11-25'``) would never equal the ERP's value and would be seen as a CRM change.
    Values that do not survive the round trip (unmapped list items, too long texts) come back normalized but
    otherwise unchanged. Raises ``ConversionError`` only when ``value`` is not of ``erp_type`` at all.
    """
    normalized = normalize_erp(erp_type, value)
    try:
        crm_value = erp_to_crm(erp_type, crm_field_type, normalized, list_map)
        return crm_to_erp(erp_type, crm_field_type, crm_value, invert_list_map(list_map, prefer=[normalized]))
    except ConversionError:
        return normalized


def parse_input(erp_type: str, text: str) -> object:
    """A value typed into a form (default values, ask-user answers) as a normalized ERP value.

    ``''`` -> ``None``. Checkbox accepts ``on/true/1/yes`` and ``off/false/0/no``; Integer, Double and Date are
    parsed with readable ``ConversionError`` messages; Text, Password, Label and List (a key) are taken as typed.
    """
    ftype = _field_type(erp_type)
    if text is None:
        return None
    if not isinstance(text, str):
        return normalize_erp(ftype, text)
    if text == "":
        return None
    if ftype in _TEXT_TYPES or ftype == FieldType.LIST:
        return text
    return normalize_erp(ftype, text)


def display(erp_type: str, value: object, list_texts: Mapping[str, str] | None = None) -> str:
    """A value for the UI; never raises.

    ``None`` -> ``''``; Checkbox -> ``'Yes'``/``'No'``; List key -> its text when known, else the key; numbers
    without needless zeros; dates in ISO form; Password -> a mask, never the secret.
    """
    if value is None:
        return ""
    try:
        ftype: FieldType | None = FieldType(erp_type)
    except ValueError:
        ftype = None
    if ftype == FieldType.PASSWORD:
        return "" if is_blank(value) else _PASSWORD_MASK
    if isinstance(value, bool):
        return "Yes" if value else "No"
    if ftype is not None:
        try:
            normalized = normalize_erp(ftype, value)
        except ConversionError:
            normalized = value
    else:
        normalized = value
    if normalized is None:
        return ""
    if isinstance(normalized, bool):
        return "Yes" if normalized else "No"
    if ftype == FieldType.LIST and list_texts:
        text = list_texts.get(str(normalized))
        if text is not None:
            return text
    if isinstance(normalized, int | float):
        if isinstance(normalized, float) and not math.isfinite(normalized):
            return str(normalized)
        return number_text(normalized)
    if isinstance(normalized, datetime):
        return normalized.isoformat()
    if isinstance(normalized, date):
        return normalized.isoformat()
    return str(normalized)

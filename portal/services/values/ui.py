"""Values and the UI: ``parse_input`` (a value typed into a form, as a normalized ERP value) and ``display`` (a
value as text for the UI; never raises, never shows a password)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import date, datetime

from portal.models.erp import FieldType
from portal.services.values.compatibility import _field_type
from portal.services.values.errors import ConversionError
from portal.services.values.helpers import is_blank, number_text
from portal.services.values.normalize import normalize_erp

_TEXT_TYPES = frozenset({FieldType.TEXT, FieldType.PASSWORD, FieldType.LABEL})

_PASSWORD_MASK = "\u2022" * 8


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

"""Pure rules of the contract that need no connector: the LastModified format, a field value against its
FieldType, a FieldMetaDataObjects array, and a config value given as text converted to its field type."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import date, datetime
from typing import Any

from portal.connectors.conformance.wording import _json_type, _short
from portal.connectors.protocol import ACCESS_VALUES, FIELD_TYPES

TEXT_TYPES = ("Text", "Password", "Label")

_ISO_UTC = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2})?)(?:[.,](\d{1,9}))?(Z|[+-]00:?00)$", re.IGNORECASE)
_ISO_ANY = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}")
_DECIMAL = re.compile(r"^\d+$")


def parse_last_modified(value: Any) -> tuple[str, Any]:
    """``(kind, sort key)`` of a LastModified value: kind ``"iso"`` (ISO-8601 UTC) or ``"int"`` (decimal integer).

    Raises ValueError with a readable reason for anything else.
    """
    if not isinstance(value, str):
        raise ValueError(f"is {_json_type(value)} ({_short(value)}), not a string")
    text = value.strip()
    if text != value or not text:
        raise ValueError(f"{_short(value)} is blank or has surrounding spaces")
    if _DECIMAL.match(text):
        return "int", int(text)
    match = _ISO_UTC.match(text)
    if match:
        base, fraction = match.group(1), match.group(2) or ""
        try:
            moment = datetime.fromisoformat(base)
        except ValueError:
            raise ValueError(f"{_short(value)} is not a valid date-time") from None
        return "iso", (moment, int((fraction + "000000000")[:9]))
    if _ISO_ANY.match(text):
        raise ValueError(f"{_short(value)} is not marked as UTC (it must end in Z or +00:00)")
    raise ValueError(f"{_short(value)} is neither an ISO-8601 UTC timestamp nor a decimal integer")


def value_problem(meta: Mapping, value: Any) -> str | None:
    """Why ``value`` is not a valid JSON-native value of the field ``meta`` (None when it is)."""
    if value is None:
        return None
    ftype = meta.get("FieldType")
    if ftype in TEXT_TYPES or ftype == "List":
        if not isinstance(value, str):
            return f"is {_json_type(value)} ({_short(value)}), a {ftype} value must be a string"
        return None
    if ftype == "Integer":
        if isinstance(value, bool) or not isinstance(value, int):
            return f"is {_json_type(value)} ({_short(value)}), an Integer value must be a whole JSON number"
        return None
    if ftype == "Double":
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            return f"is {_json_type(value)} ({_short(value)}), a Double value must be a JSON number"
        return None
    if ftype == "Checkbox":
        if not isinstance(value, bool):
            return f"is {_json_type(value)} ({_short(value)}), a Checkbox value must be true or false"
        return None
    if ftype == "Date":
        if not isinstance(value, str):
            return f"is {_json_type(value)} ({_short(value)}), a Date value must be an ISO-8601 string"
        try:
            if len(value) == 10:
                date.fromisoformat(value)
            else:
                datetime.fromisoformat(value)
        except ValueError:
            return f"is {_short(value)}, not an ISO-8601 date (2026-11-25) or date-time (2026-11-25T10:00:00Z)"
        return None
    return None  # unknown field types are reported by the metadata checks


def metadata_problems(fields: Any, what: str) -> list[str]:
    """Problems of a FieldMetaDataObjects array (FieldMetadataInfo shape, valid FieldType/Access values)."""
    if not isinstance(fields, list):
        return [f"{what} is {_json_type(fields)}, not an array"]
    problems: list[str] = []
    seen: set[str] = set()
    for number, meta in enumerate(fields, start=1):
        if not isinstance(meta, dict):
            problems.append(f"entry #{number} is {_json_type(meta)}, not an object")
            continue
        key = meta.get("FieldKey")
        label = f"field {key!r}" if isinstance(key, str) and key else f"entry #{number}"
        if not isinstance(key, str) or not key:
            problems.append(f"{label}: FieldKey is missing or not a non-empty string")
        elif key in seen:
            problems.append(f"{label}: FieldKey appears twice")
        else:
            seen.add(key)
        for member in ("DisplayName", "DisplayDescription", "ListName"):
            if member not in meta:
                problems.append(f"{label}: {member} is missing")
            elif meta[member] is not None and not isinstance(meta[member], str):
                problems.append(f"{label}: {member} is {_json_type(meta[member])}, not a string")
        if "DefaultValue" not in meta:
            problems.append(f"{label}: DefaultValue is missing")
        elif isinstance(meta["DefaultValue"], list | dict):
            problems.append(f"{label}: DefaultValue is {_json_type(meta['DefaultValue'])}, not a simple value")
        if meta.get("FieldType") not in FIELD_TYPES:
            problems.append(f"{label}: FieldType {_short(meta.get('FieldType'))} is not one of "
                            f"{', '.join(FIELD_TYPES)}")
        if meta.get("Access") not in ACCESS_VALUES:
            problems.append(f"{label}: Access {_short(meta.get('Access'))} is not one of {', '.join(ACCESS_VALUES)}")
        for member in ("MaxLength", "Rank"):
            number_value = meta.get(member)
            if member not in meta:
                problems.append(f"{label}: {member} is missing")
            elif isinstance(number_value, bool) or not isinstance(number_value, int):
                problems.append(f"{label}: {member} is {_json_type(number_value)}, not a whole number")
            elif member == "MaxLength" and number_value < 0:
                problems.append(f"{label}: MaxLength is negative (0 means unlimited)")
        if meta.get("FieldType") == "List" and not (isinstance(meta.get("ListName"), str) and meta["ListName"]):
            problems.append(f"{label}: a List field needs a ListName")
    return problems


def convert_config_value(meta: Mapping | None, value: Any) -> Any:
    """A config value given as text (``--config Key=Value``) → the JSON-native value of its field type, as the
    portal's connection form sends it. Non-strings and unknown keys are returned unchanged."""
    if meta is None or not isinstance(value, str):
        return value
    ftype = meta.get("FieldType")
    text = value.strip()
    if ftype == "Checkbox":
        return text.lower() in {"1", "true", "yes", "on", "y", "[i:1]"}
    if ftype in ("Integer", "Double") and text == "":
        return None
    if ftype == "Integer":
        try:
            return int(text)
        except ValueError:
            return value
    if ftype == "Double":
        try:
            return float(text.replace(",", "."))
        except ValueError:
            return value
    if ftype == "Password":
        return value
    return text

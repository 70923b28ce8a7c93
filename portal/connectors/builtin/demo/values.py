"""Field values: the validation error, a value coerced to what its FieldType stores, and the display name and
search text kept beside each actor."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import datetime

from portal.connectors.builtin.demo.catalogue import SEARCH_TEXT_FIELDS


class DemoErpValidationError(ValueError):
    """Invalid field values; ``errors`` maps FieldKey (or "" for the record) to a readable message."""

    def __init__(self, errors: Mapping[str, str]):
        self.errors = dict(errors)
        super().__init__("; ".join(self.errors.values()))


def _truthy(value) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in {"1", "true", "yes", "on", "[i:1]"}
    return bool(value)


def coerce_value(meta: dict, value, list_keys: Mapping[str, Iterable[str]]):
    """A field value as stored: JSON-native for its FieldType. Raises ValueError with a readable reason."""
    field_type = meta["FieldType"]
    if field_type == "Checkbox":
        if value is None or isinstance(value, bool):
            return bool(value)
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in {"", "0", "1", "true", "false", "yes", "no",
                                                                 "on", "off"}:
            return _truthy(value)
        raise ValueError("must be true or false")
    if value is None:
        return None
    if field_type in ("Text", "Password", "Label"):
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise ValueError("must be text")
        value = str(value)
        if meta["MaxLength"] and len(value) > meta["MaxLength"]:
            raise ValueError(f"is longer than {meta['MaxLength']} characters")
        return value
    if isinstance(value, str):
        value = value.strip()
        if value == "":
            return None
    if field_type == "Integer":
        if isinstance(value, bool):
            raise ValueError("must be a whole number")
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, int):
            return value
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        raise ValueError("must be a whole number")
    if field_type == "Double":
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise ValueError("must be a number")
        try:
            number = float(value)
        except ValueError:
            raise ValueError("must be a number") from None
        if not math.isfinite(number):
            raise ValueError("must be a finite number")
        return number
    if field_type == "Date":
        if not isinstance(value, str):
            raise ValueError("must be a date (YYYY-MM-DD)")
        try:
            return datetime.fromisoformat(value).date().isoformat()
        except ValueError:
            raise ValueError("must be a date (YYYY-MM-DD)") from None
    if field_type == "List":
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise ValueError("must be a list item key")
        value = str(value)
        if value not in list_keys.get(meta["ListName"], ()):
            raise ValueError(f"has no item {value!r} in list {meta['ListName']}")
        return value
    raise ValueError(f"has an unsupported field type {field_type}")


def _blank(value) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def display_name(actor_type: str, fields: Mapping) -> str:
    if actor_type == "Person":
        return " ".join(str(fields[k]) for k in ("FIRSTNAME", "MIDDLENAME", "LASTNAME") if not _blank(fields.get(k)))
    return str(fields.get("NAME") or "")


def _search_text(actor_type: str, fields: Mapping) -> str:
    parts = [str(fields[k]) for k in SEARCH_TEXT_FIELDS[actor_type] if not _blank(fields.get(k))]
    if actor_type == "Person":
        parts.append(display_name(actor_type, fields))
        parts.append(f"{fields.get('FIRSTNAME') or ''} {fields.get('LASTNAME') or ''}")
    return "\n".join(parts).casefold()

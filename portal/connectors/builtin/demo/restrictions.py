"""SearchActorsAdvanced: each SearchRestriction checked against the field catalogue and compiled to a test of a
stored row and its parsed fields."""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Callable, Mapping
from datetime import datetime

from portal.connectors.builtin.demo.catalogue import FIELD_INDEX, SEARCHABLE_FIELDS
from portal.connectors.builtin.demo.values import _truthy
from portal.connectors.protocol import OPERATORS, SPECIAL_SEARCH_KEYS
from portal.connectors.service import ProtocolError


def _restriction_value(field_type: str, value, field_key: str):
    """A search value parsed for comparison with stored values of this type."""
    try:
        if field_type in ("Integer", "Double"):
            if isinstance(value, bool):
                raise ValueError
            number = float(value)
            if not math.isfinite(number):
                raise ValueError
            return number
        if field_type == "Checkbox":
            if isinstance(value, bool):
                return value
            if isinstance(value, int | str) and str(value).strip().lower() in {"0", "1", "true", "false"}:
                return _truthy(value)
            raise ValueError
        if field_type == "Date":
            return datetime.fromisoformat(str(value)).date().isoformat()
    except (ValueError, TypeError):
        raise ProtocolError(f"Search value {value!r} does not suit field {field_key} ({field_type}).",
                            error_code="BAD_RESTRICTION") from None
    if value is None:
        return ""
    return str(value).casefold()


def _compile_restriction(actor_type: str, restriction: Mapping) -> Callable[[sqlite3.Row, dict], bool]:
    key, operator = restriction.get("FieldKey"), restriction.get("Operator")
    values = restriction.get("Values")
    if values is None:
        values = []
    elif not isinstance(values, list):
        values = [values]
    if key in SPECIAL_SEARCH_KEYS:
        field_type = "Text"
        allowed = (*OPERATORS["Text"], "oneof", "notoneof")
        column = "parent_key" if key == "ParentErpKey" else "parent_type"

        def get(row: sqlite3.Row, fields: dict):
            return row[column]
    else:
        meta = FIELD_INDEX[actor_type].get(key)
        if meta is None:
            raise ProtocolError(f"{actor_type} has no field {key!r} to search on. Searchable fields: "
                                f"{', '.join(SEARCHABLE_FIELDS[actor_type])}.", error_code="UNKNOWN_FIELD")
        field_type = meta["FieldType"]
        allowed = OPERATORS.get(field_type, ())

        def get(row: sqlite3.Row, fields: dict):
            return fields.get(key)
    if operator not in allowed:
        raise ProtocolError(f"Operator {operator!r} cannot be used on {key} ({field_type}); use one of "
                            f"{', '.join(allowed)}.", error_code="BAD_RESTRICTION")
    needed = 2 if operator == "between" else 1
    if len(values) < needed:
        raise ProtocolError(f"Operator {operator!r} on {key} needs {needed} value{'s' if needed > 1 else ''}.",
                            error_code="BAD_RESTRICTION")
    if operator in ("oneof", "notoneof"):
        wanted = {str(v).casefold() for v in values if v is not None}
        inside = operator == "oneof"

        def one_of(row: sqlite3.Row, fields: dict) -> bool:
            value = get(row, fields)
            return (value is not None and str(value).casefold() in wanted) == inside

        return one_of
    args = [_restriction_value(field_type, v, key) for v in values[:needed]]
    if operator == "between" and args[0] > args[1]:
        args.reverse()
    first = args[0]

    if field_type == "Checkbox":
        return lambda row, fields: bool(get(row, fields)) == first

    if field_type in ("Text", "Password", "Label"):
        text_tests: dict[str, Callable[[str], bool]] = {
            "=": lambda v: v == first,
            "isnot": lambda v: v != first,
            "begins": lambda v: v.startswith(first),
            "contains": lambda v: first in v,
            "ends": lambda v: v.endswith(first),
            "notbegins": lambda v: not v.startswith(first),
            "notcontains": lambda v: first not in v,
            "notends": lambda v: not v.endswith(first),
            "between": lambda v: args[0] <= v <= args[1],
        }
        text_test = text_tests[operator]
        return lambda row, fields: text_test(str(get(row, fields) or "").casefold())

    compare: dict[str, Callable] = {
        "=": lambda v: v == first, "!=": lambda v: v != first, ">": lambda v: v > first, "<": lambda v: v < first,
        ">=": lambda v: v >= first, "<=": lambda v: v <= first, "between": lambda v: args[0] <= v <= args[1],
        "before": lambda v: v < first, "after": lambda v: v > first, "beforeOrEqual": lambda v: v <= first,
        "afterOrEqual": lambda v: v >= first,
    }
    value_test = compare[operator]

    def number_or_date(row: sqlite3.Row, fields: dict) -> bool:
        value = get(row, fields)
        if value is None:
            return operator == "!="  # a blank value is "not equal" to anything, and fails every other test
        if field_type == "Date":
            value = str(value)[:10]
        return value_test(value)

    return number_or_date

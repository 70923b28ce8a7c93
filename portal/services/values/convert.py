"""Conversion both ways: ``erp_to_crm`` (ERP value -> what the CRM field stores), ``crm_to_erp`` (CRM value -> the
normalized ERP value), ``invert_list_map`` for the latter, and ``to_crm_precision`` (the round trip)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import date

from portal.models.crm import CrmFieldType
from portal.models.erp import FieldType
from portal.services.crm_rules import MAX_DECIMAL, MAX_INTEGER
from portal.services.values.compatibility import _CRM_NUMBER_TYPES, _CRM_TEXT_TYPES, _require_compatible
from portal.services.values.errors import ConversionError, UnmappedListItem, _quote
from portal.services.values.helpers import number_text
from portal.services.values.normalize import normalize_erp


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

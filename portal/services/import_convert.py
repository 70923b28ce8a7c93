"""Import from ERP: each mapped field's value conversions, prepared once per run (issue #19).

For every actor, the import needs three conversions per mapped field (``portal.services.values``):

* the ERP value normalized and reduced to CRM precision (``to_crm_precision``, as ``fieldmap.erp_side``): what the
  link's base is made of;
* that value as the CRM stores it (``erp_to_crm``): what the import writes;
* the record's CRM value back in ERP form (``crm_to_erp``, as ``fieldmap.crm_side``): compared with the ERP's for
  the base.

Through the generic functions every call resolves both field types again (enum look-ups and the compatibility
check), and the reduction converts the value there and back; at 15,000 actors of 10 to 17 fields that was most
of the import's own time. A :class:`FieldConverter` does the type work once per field and answers the common values
directly: blank (computed once, by the generic functions), a text for a text field, a list item key, a
``YYYY-MM-DD`` date. Everything
else goes through the generic functions, and where the answer cannot depend on the list mapping (every type but
List) it is remembered for the run, keyed by the value's exact type and the value. So every answer is the generic
function's: tests/unit/test_import_convert.py compares the two over every type pair and a grid of values.

:func:`link_base` is the link base of an imported actor (the rule in ``portal.services.importer``'s docstring),
computed with these converters.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date

from portal.models import CrmFieldType, FieldType
from portal.services.sync.fieldmap import MappedField
from portal.services.values import (
    ConversionError,
    crm_to_erp,
    erp_to_crm,
    invert_list_map,
    same_value,
    to_crm_precision,
)

_TEXT_ERP = frozenset({FieldType.TEXT, FieldType.LABEL})
_TEXT_CRM = frozenset({CrmFieldType.TEXT, CrmFieldType.LONGTEXT})
# Types whose equal values (same exact type) convert alike, so an answer may be reused for an equal value (-0.0
# and 0.0 are equal and every conversion turns -0.0 into 0.0). An aware datetime is left out: two of them in
# different zones are equal yet are different dates.
_MEMO_TYPES = frozenset({str, int, float, bool, date})
MEMO_LIMIT = 10_000  # answers remembered per field and conversion: bounds the memory of a run of unique values
_UNSET = object()


class FieldConverter:
    """The three conversions of one mapped field. ``list_map`` is the field's own dict, which the import extends
    while it runs (new list mappings): List answers are therefore never remembered."""

    __slots__ = ("field", "list_map", "max_length", "kind", "_erp_blank", "_crm_blank", "_back_blank",
                 "_erp_memo", "_crm_memo", "_back_memo")

    def __init__(self, f: MappedField):
        self.field = f
        self.list_map = f.list_map
        self.max_length = f.crm_max_length or 0
        if f.erp_type in _TEXT_ERP and f.crm_type in _TEXT_CRM:
            self.kind = "text"
        elif f.erp_type == FieldType.LIST:
            self.kind = "list"
        elif f.erp_type == FieldType.DATE and f.crm_type == CrmFieldType.DATE:
            self.kind = "date"
        else:
            self.kind = "other"
        # Blank is the commonest value of all; its answers come from the generic functions, once.
        self._erp_blank = to_crm_precision(f.erp_type, f.crm_type, None, f.list_map)
        self._crm_blank = erp_to_crm(f.erp_type, f.crm_type, None, f.list_map, f.crm_max_length)
        self._back_blank = crm_to_erp(f.erp_type, f.crm_type, None, {}, 0)
        self._erp_memo: dict = {}
        self._crm_memo: dict = {}
        self._back_memo: dict = {}

    def erp(self, raw):
        """``to_crm_precision(raw)``: the ERP value normalized, in CRM precision. Raises ConversionError."""
        if raw is None:
            return self._erp_blank
        if type(raw) is str:
            if self.kind == "text":
                return raw or None
            if self.kind == "list":
                # A key maps to an item id (and back to itself: it is the preferred key) or to nothing (kept).
                crm_id = self.list_map.get(raw)
                if crm_id is None or type(crm_id) is int:
                    return raw or None
            elif self.kind == "date" and _iso_date(raw) is not None:
                return raw  # YYYY-MM-DD is its own normal form, and a CRM date holds it whole
        f = self.field
        if self.kind == "list":
            return to_crm_precision(f.erp_type, f.crm_type, raw, self.list_map)
        return self._remember(self._erp_memo, raw, lambda v: to_crm_precision(f.erp_type, f.crm_type, v, {}))

    def crm(self, value):
        """``erp_to_crm(value)`` of a value ``erp`` returned: what the CRM stores. Raises ConversionError
        (``UnmappedListItem`` for a list key without a mapping)."""
        if value is None:
            return self._crm_blank
        if type(value) is str:
            if self.kind == "text" and (self.max_length <= 0 or len(value) <= self.max_length):
                return value
            if self.kind == "list" and value:
                crm_id = self.list_map.get(value)
                if crm_id is not None:
                    return crm_id
            elif self.kind == "date" and (day := _iso_date(value)) is not None:
                return day
        f = self.field
        if self.kind == "list":
            return erp_to_crm(f.erp_type, f.crm_type, value, self.list_map, f.crm_max_length)
        return self._remember(self._crm_memo, value,
                              lambda v: erp_to_crm(f.erp_type, f.crm_type, v, {}, f.crm_max_length))

    def back(self, value, erp_now=None):
        """``crm_to_erp(value)`` of a CRM value, a list item converting back to ``erp_now`` (the ERP's key) when
        that key maps to it. Raises ConversionError."""
        if value is None:
            return self._back_blank
        kind = self.kind
        if kind == "text" and type(value) is str:
            return value or None
        if kind == "date" and type(value) is date:
            return value.isoformat()
        f = self.field
        if kind == "list":
            if type(value) is int and type(erp_now) is str and erp_now:
                crm_id = self.list_map.get(erp_now)
                if type(crm_id) is int and crm_id == value:
                    return erp_now
            return crm_to_erp(f.erp_type, f.crm_type, value, invert_list_map(self.list_map, prefer=[erp_now]), 0)
        return self._remember(self._back_memo, value, lambda v: crm_to_erp(f.erp_type, f.crm_type, v, {}, 0))

    @staticmethod
    def _remember(memo: dict, value, compute):
        if type(value) not in _MEMO_TYPES:
            return compute(value)
        key = (type(value), value)
        found = memo.get(key, _UNSET)
        if found is _UNSET:
            found = compute(value)  # a ConversionError is raised, not remembered
            if len(memo) < MEMO_LIMIT:
                memo[key] = found
        return found


def _iso_date(text: str) -> date | None:
    """The date of a ``YYYY-MM-DD`` text, None for any other text (left to the generic functions)."""
    if len(text) != 10:
        return None
    try:
        day = date.fromisoformat(text)
    except ValueError:
        return None
    return day if day.isoformat() == text else None  # fromisoformat also reads other forms, e.g. 2026-W48-3


def converters(fields) -> dict[str, FieldConverter]:
    """A converter per mapped field, by ERP field key."""
    return {f.erp_key: FieldConverter(f) for f in fields}


def base_plan(fields, convert: Mapping[str, FieldConverter], field_ids: Mapping[str, int]) -> list[tuple]:
    """What :func:`link_base` goes through, once per actor type: per mapped field (ERP key, CRM key, converter,
    ERP field id)."""
    return [(f.erp_key, f.crm_key, convert[f.erp_key], field_ids.get(f.erp_key, 0)) for f in fields]


def link_base(plan: Sequence[tuple], record, erp_values: Mapping, old: Mapping | None, mapped_now: Mapping) -> dict:
    """The link base of an imported actor: per mapped field (``plan``, :func:`base_plan`), the ERP's value where the
    CRM record now holds it; else the previous base (``old``, an actor linked before) or, for a new link, the CRM's
    value. A list value the CRM cannot convert back is agreed only when this import mapped that item to the
    record's value (``mapped_now``: (ERP field id, item key) → CRM item id)."""
    base = {}
    linked = old is not None
    old = old or {}
    for key, crm_key, conv, field_id in plan:
        erp_value = erp_values.get(key)
        crm_value = getattr(record, crm_key)
        if conv.kind == "text" and type(crm_value) is str:
            crm_now = crm_value or None  # FieldConverter.back's first answer, without the call: most fields
        else:
            try:
                crm_now = conv.back(crm_value, erp_value)
            except ConversionError:
                if erp_value is not None and mapped_now.get((field_id, erp_value)) == crm_value:
                    base[key] = erp_value  # a list item mapped by this import: both sides agree
                elif key in old:
                    base[key] = old[key]
                continue
        if key in erp_values and (crm_now is erp_value or same_value(crm_now, erp_value)):
            base[key] = erp_value
        elif linked:
            if key in old:
                base[key] = old[key]
        else:
            base[key] = crm_now
    return base

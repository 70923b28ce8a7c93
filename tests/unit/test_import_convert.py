"""The import's prepared conversions (portal.services.import_convert) answer exactly what the generic functions of
portal.services.values answer (the value and its exact type, or the same error), for every pair of field types a
mapping allows and a grid of values, twice (the second answer may be a remembered one); and the link base they
compute is the one fieldmap.crm_side gives. No database, no app."""

from __future__ import annotations

import itertools
import math
from datetime import UTC, date, datetime

import pytest

from portal.models import CrmFieldType, FieldType
from portal.services.import_convert import FieldConverter, base_plan, converters, link_base
from portal.services.sync.fieldmap import MappedField, crm_side, erp_side
from portal.services.values import (
    ConversionError,
    compatible,
    crm_to_erp,
    erp_to_crm,
    invert_list_map,
    same_value,
    to_crm_precision,
)

PAIRS = [(e, c) for e in FieldType for c in CrmFieldType if compatible(e, c)[0]]
LIST_MAP = {"SE": 1, "NO": 2, "NOR": 2, "XX": None, "7": 3}
ERP_VALUES = [None, "", " ", "abc", "Storgatan 59", "x" * 300, "42", "-7", "12.0", "1.5", "1,5", "1e3", "true", "No",
              "on", "2026-11-25", "0999-01-01", "2026-W48-3", "20261125", " 2026-11-25", "2026-11-25T10:00:00Z", "2026-11-25T00:30:00+02:00", "2026-02-30", "SE", "NO",
              "NOR", "XX", "ZZ", "7", "\x00", "\ud800", 0, 1, -1, 7, 2**40, 2**70, 1.0, 1.5, -0.0, 0.0, 1e300,
              float("nan"), float("inf"), True, False, [1], {"a": 1}]
CRM_VALUES = [None, "", " ", "abc", "42", "1.5", 0, 1, 2, 3, 99, -1, 2**40, 1.0, 1.5, -0.0, float("nan"), True,
              False, date(2026, 11, 25), date(999, 1, 1), datetime(2026, 11, 25, 10, tzinfo=UTC), datetime(2026, 11, 25), [1]]


def mapped(erp_type, crm_type, max_length=0) -> MappedField:
    return MappedField(erp_key="F", erp_type=erp_type, erp_label="F", erp_max_length=0, crm_key="f",
                       crm_type=crm_type, crm_label="F", crm_max_length=max_length, to_crm=True, to_erp=True,
                       read_only=False, list_map=dict(LIST_MAP) if erp_type == FieldType.LIST else {})


def outcome(call, *args):
    try:
        return "ok", call(*args)
    except ConversionError as exc:
        return type(exc), str(exc)


def same(a, b) -> bool:
    if a[0] != b[0] or type(a[1]) is not type(b[1]):
        return False
    if isinstance(a[1], float) and math.isnan(a[1]):
        return math.isnan(b[1])
    return a[1] == b[1] and same_value(a[1], b[1])


@pytest.mark.parametrize("erp_type, crm_type", PAIRS)
@pytest.mark.parametrize("max_length", [0, 5])
def test_prepared_conversions_answer_as_the_generic_functions(erp_type, crm_type, max_length):
    f = mapped(erp_type, crm_type, max_length)
    conv = FieldConverter(f)
    for _round in range(2):
        for raw in ERP_VALUES:
            expected = outcome(to_crm_precision, erp_type, crm_type, raw, f.list_map)
            assert same(outcome(conv.erp, raw), expected), (raw, expected)
            expected = outcome(erp_to_crm, erp_type, crm_type, raw, f.list_map, max_length)
            assert same(outcome(conv.crm, raw), expected), (raw, expected)
        for value, erp_now in itertools.product(CRM_VALUES, [None, "SE", "NO", "NOR", "XX", "ZZ", 2]):
            expected = outcome(crm_to_erp, erp_type, crm_type, value,
                               invert_list_map(f.list_map, prefer=[erp_now]), 0)
            assert same(outcome(conv.back, value, erp_now), expected), (value, erp_now, expected)


def test_a_list_mapping_added_during_the_run_is_used_at_once():
    f = mapped(FieldType.LIST, CrmFieldType.LIST)
    conv = FieldConverter(f)
    assert conv.erp("DK") == "DK"
    with pytest.raises(ConversionError):
        conv.crm("DK")
    f.list_map["DK"] = 9  # the import mapped the item (Importer.after_commit)
    assert (conv.erp("DK"), conv.crm("DK"), conv.back(9, "DK")) == ("DK", 9, "DK")


class Record:
    def __init__(self, **values):
        self.__dict__.update(values)


def reference_base(fields, record, erp_values, old, mapped_now, field_ids) -> dict:
    """The link base as the import computed it before issue #19 (fieldmap.crm_side)."""
    crm_now, crm_errors = crm_side(record, fields, erp_now=erp_values)
    base = {}
    for f in fields:
        key = f.erp_key
        if key in crm_errors:
            erp_value = erp_values.get(key)
            if erp_value is not None and mapped_now.get((field_ids.get(key, 0), erp_value)) == \
                    getattr(record, f.crm_key):
                base[key] = erp_value
            elif key in (old or {}):
                base[key] = old[key]
            continue
        if key in erp_values and same_value(crm_now.get(key), erp_values.get(key)):
            base[key] = erp_values[key]
        elif old is not None:
            if key in old:
                base[key] = old[key]
        else:
            base[key] = crm_now.get(key)
    return base


def test_link_base_is_the_one_crm_side_gives():
    fields = [
        MappedField("NAME", FieldType.TEXT, "Name", 0, "name", CrmFieldType.TEXT, "Name", 200, True, True, False),
        MappedField("NOTE", FieldType.TEXT, "Note", 0, "note", CrmFieldType.LONGTEXT, "Note", 0, False, True, False),
        MappedField("COUNTRY", FieldType.LIST, "Country", 0, "country_id", CrmFieldType.LIST, "Country", 0, True,
                    True, False, dict(LIST_MAP)),
        MappedField("BORN", FieldType.DATE, "Born", 0, "birth_date", CrmFieldType.DATE, "Born", 0, True, True, False),
        MappedField("STAFF", FieldType.INTEGER, "Staff", 0, "employees", CrmFieldType.TEXT, "Staff", 0, True, True,
                    False),
    ]
    convert = converters(fields)
    raws = [{"NAME": "Acme", "NOTE": "x", "COUNTRY": "NOR", "BORN": "2026-11-25T10:00:00Z", "STAFF": 5},
            {"NAME": None, "COUNTRY": "ZZ", "BORN": None, "STAFF": "5"}, {"COUNTRY": "XX", "STAFF": 7.0}]
    records = [Record(name="Acme", note="", country_id=2, birth_date=date(2026, 11, 25), employees="5"),
               Record(name="", note="kept", country_id=77, birth_date=None, employees="abc"),
               Record(name="Other", note=None, country_id=None, birth_date=date(2020, 1, 1), employees="")]
    olds = [None, {}, {"NAME": "old", "COUNTRY": "SE", "STAFF": 4}]
    mapped_nows = [{}, {(3, "ZZ"): 77}]
    for raw, record, old, mapped_now in itertools.product(raws, records, olds, mapped_nows):
        erp_values, _errors = erp_side(raw, fields)
        field_ids = {"COUNTRY": 3}
        expected = reference_base(fields, record, erp_values, old, mapped_now, field_ids)
        got = link_base(base_plan(fields, convert, field_ids), record, erp_values, old, mapped_now)
        assert got == expected and all(type(got[k]) is type(expected[k]) for k in got)

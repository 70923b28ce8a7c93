"""Unit tests of portal.services.values: compatibility, normalization, conversion, parsing, display."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from portal.models.crm import BUILTIN_CRM_FIELDS, CrmFieldType
from portal.models.erp import FieldType
from portal.services.values import (
    ConversionError,
    UnmappedListItem,
    compatible,
    crm_to_erp,
    display,
    erp_to_crm,
    invert_list_map,
    is_blank,
    normalize_erp,
    number_text,
    parse_input,
    to_crm_precision,
)

T, P, L, INT, D, C, LST, DT = (
    FieldType.TEXT,
    FieldType.PASSWORD,
    FieldType.LABEL,
    FieldType.INTEGER,
    FieldType.DOUBLE,
    FieldType.CHECKBOX,
    FieldType.LIST,
    FieldType.DATE,
)
CT, CLT, CD, CL = CrmFieldType.TEXT, CrmFieldType.LONGTEXT, CrmFieldType.DATE, CrmFieldType.LIST
CB, CI, CDEC = CrmFieldType.CHECKBOX, CrmFieldType.INTEGER, CrmFieldType.DECIMAL


# ------------------------------------------------------------------------------------------ compatible

COMPATIBLE = {
    (T, CT),
    (T, CLT),
    (L, CT),
    (L, CLT),
    (INT, CT),
    (INT, CLT),
    (D, CT),
    (D, CLT),
    (DT, CD),
    (LST, CL),
    # issue #18: CRM checkbox and number fields
    (C, CB),
    (INT, CI),
    (INT, CDEC),
    (D, CDEC),
}


@pytest.mark.parametrize("erp_type", list(FieldType))
@pytest.mark.parametrize("crm_type", list(CrmFieldType))
def test_compatible_matrix(erp_type, crm_type):
    ok, reason = compatible(erp_type, crm_type)
    assert ok == ((erp_type, crm_type) in COMPATIBLE)
    if ok:
        assert reason == ""
    else:
        assert reason and reason[0].isupper() and not reason.endswith(".")


def test_compatible_accepts_plain_strings():
    assert compatible("Date", "date") == (True, "")
    assert compatible("Text", "longtext") == (True, "")


@pytest.mark.parametrize(
    "erp_type, crm_type, reason",
    [
        (DT, CT, "The CRM field is a text field; an ERP Date field can only be mapped to a CRM date field"),
        (LST, CT, "The CRM field is a text field; an ERP List field can only be mapped to a CRM list field"),
        (C, CT, "The CRM field is a text field; an ERP Checkbox field can only be mapped to a CRM checkbox"),
        (C, CL, "The CRM field is a list; an ERP Checkbox field can only be mapped to a CRM checkbox"),
        (P, CT, "An ERP Password field is never synced, so it cannot be mapped"),
        (P, CB, "An ERP Password field is never synced, so it cannot be mapped"),
        (INT, CD, "The CRM field is a date field; an ERP Integer field can only be mapped to a CRM whole number, "
                  "decimal number, text or long text field"),
        (D, CL, "The CRM field is a list; an ERP Double field can only be mapped to a CRM decimal number, text or "
                "long text field"),
        (D, CI, "The CRM field is a whole number field; an ERP Double field can only be mapped to a CRM decimal "
                "number, text or long text field (a whole number field would lose the fraction)"),
        (T, CB, "The CRM field is a checkbox; an ERP Text field can only be mapped to a CRM text or long text "
                "field"),
        (T, CI, "The CRM field is a whole number field; an ERP Text field can only be mapped to a CRM text or "
                "long text field"),
        (LST, CDEC, "The CRM field is a decimal number field; an ERP List field can only be mapped to a CRM list "
                    "field"),
        (DT, CB, "The CRM field is a checkbox; an ERP Date field can only be mapped to a CRM date field"),
        (T, CD, "The CRM field is a date field; an ERP Text field can only be mapped to a CRM text or long text "
                "field"),
        (L, CL, "The CRM field is a list; an ERP Label field can only be mapped to a CRM text or long text field"),
        (DT, CLT, "The CRM field is a long text field; an ERP Date field can only be mapped to a CRM date field"),
    ],
)
def test_compatible_reasons(erp_type, crm_type, reason):
    assert compatible(erp_type, crm_type) == (False, reason)


@pytest.mark.parametrize(
    "erp_type, crm_type, label, reason",
    [
        # issue #17: it used to say "A Text field can only map to a text field" for Country
        (T, CL, "Country", "Country is a list in the CRM; an ERP Text field can only be mapped to a CRM text or "
                           "long text field"),
        (INT, CD, "Birth date", "Birth date is a date field in the CRM; an ERP Integer field can only be mapped to "
                                "a CRM whole number, decimal number, text or long text field"),
        (DT, CT, "Name", "Name is a text field in the CRM; an ERP Date field can only be mapped to a CRM date field"),
        (LST, CLT, "Description", "Description is a long text field in the CRM; an ERP List field can only be "
                                  "mapped to a CRM list field"),
        (C, CL, "Country", "Country is a list in the CRM; an ERP Checkbox field can only be mapped to a CRM "
                           "checkbox"),
        (D, CI, "Employees", "Employees is a whole number field in the CRM; an ERP Double field can only be mapped "
                             "to a CRM decimal number, text or long text field (a whole number field would lose "
                             "the fraction)"),
        (P, CT, "Name", "An ERP Password field is never synced, so it cannot be mapped"),
    ],
)
def test_compatible_reasons_name_the_crm_field_and_what_the_erp_type_takes(erp_type, crm_type, label, reason):
    assert compatible(erp_type, crm_type, label) == (False, reason)


def test_every_incompatible_pair_names_the_crm_field_unless_the_erp_type_never_maps():
    for erp_type in FieldType:
        for crm_type in CrmFieldType:
            ok, reason = compatible(erp_type, crm_type, "Target")
            if ok:
                continue
            assert not reason.endswith(".") and reason[0].isupper()
            if erp_type == P:
                assert "Target" not in reason
            else:
                assert reason.startswith("Target is ") and f"an ERP {erp_type.value} field" in reason
                assert "can only map to" not in reason  # the old, misleading wording


def test_compatible_unknown_types():
    ok, reason = compatible("Blob", "text")
    assert not ok and "Blob" in reason
    ok, reason = compatible("Text", "rich")
    assert not ok and "rich" in reason


def test_every_crm_field_type_in_catalogue_is_known():
    for fields in BUILTIN_CRM_FIELDS.values():
        for crm_field in fields:
            assert any(compatible(ft, crm_field.type)[0] for ft in FieldType)


# ----------------------------------------------------------------------------------------- normalize_erp


@pytest.mark.parametrize(
    "erp_type, value, expected",
    [
        (T, None, None),
        (T, "", None),
        (T, "  a  ", "  a  "),
        (T, " ", " "),
        (T, 42, "42"),
        (T, 1.0, "1"),
        (T, 1.25, "1.25"),
        (L, "", None),
        (P, "secret", "secret"),
        (LST, "", None),
        (LST, "NO", "NO"),
        (LST, 7, "7"),
        (INT, 5, 5),
        (INT, 5.0, 5),
        (INT, "42", 42),
        (INT, " -7 ", -7),
        (INT, "+3", 3),
        (INT, "12.0", 12),
        (INT, "", None),
        (INT, "  ", None),
        (D, 1, 1.0),
        (D, "1.5", 1.5),
        (D, " -2e3 ", -2000.0),
        (D, ".5", 0.5),
        (D, -0.0, 0.0),
        (D, "", None),
        (C, True, True),
        (C, False, False),
        (C, "true", True),
        (C, "TRUE", True),
        (C, "1", True),
        (C, "0", False),
        (C, "no", False),
        (C, "on", True),
        (C, 0, False),
        (C, 1, True),
        (C, "", None),
        (DT, "2026-11-25", "2026-11-25"),
        (DT, "2026-11-25T00:00:00Z", "2026-11-25"),
        (DT, "2026-11-25T00:00:00", "2026-11-25"),
        (DT, "2026-11-25T10:00:00Z", "2026-11-25T10:00:00Z"),
        (DT, "2026-11-25T10:00Z", "2026-11-25T10:00:00Z"),
        (DT, "2026-11-25T17:02:06.123456Z", "2026-11-25T17:02:06Z"),
        (DT, "2026-11-25T10:00:00+01:00", "2026-11-25T09:00:00Z"),
        (DT, "2026-11-25T01:00:00+01:00", "2026-11-25"),
        (DT, "2026-11-25T00:30:00+01:00", "2026-11-24T23:30:00Z"),
        (DT, "2026-11-25 10:00:00", "2026-11-25T10:00:00Z"),
        (DT, date(2026, 1, 2), "2026-01-02"),
        (DT, datetime(2026, 1, 2, 3, 4, 5), "2026-01-02T03:04:05Z"),
        (DT, datetime(2026, 1, 2, tzinfo=UTC), "2026-01-02"),
        (DT, datetime(2026, 1, 2, 5, tzinfo=timezone(timedelta(hours=5))), "2026-01-02"),
        (DT, "", None),
    ],
)
def test_normalize_erp(erp_type, value, expected):
    result = normalize_erp(erp_type, value)
    assert result == expected
    assert type(result) is type(expected)


@pytest.mark.parametrize(
    "erp_type, value, message",
    [
        (DT, "not a date", "'not a date' is not a date (expected YYYY-MM-DD)"),
        (DT, "2026-02-30", "'2026-02-30' is not a valid date"),
        (DT, "2026-11-25T25:00:00Z", "'2026-11-25T25:00:00Z' is not a valid date"),
        (DT, "25/11/2026", "'25/11/2026' is not a date (expected YYYY-MM-DD)"),
        (DT, 20261125, "20261125 is not a date"),
        (INT, "x", "'x' is not a whole number"),
        (INT, "abc", "'abc' is not a whole number"),
        (INT, 1.5, "1.5 is not a whole number"),
        (INT, "1.5", "'1.5' is not a whole number"),
        (INT, "1_000", "'1_000' is not a whole number"),
        (INT, True, "True is not a whole number"),
        (INT, float("inf"), "inf is not a whole number"),
        (D, "x", "'x' is not a number"),
        (D, "1,5", "'1,5' is not a number (use a point as the decimal separator)"),
        (D, "nan", "'nan' is not a number"),
        (D, "inf", "'inf' is not a number"),
        (D, float("nan"), "nan is not a finite number"),
        (D, 10**400, "is too large a number"),
        (C, "maybe", "'maybe' is not a yes/no value"),
        (C, 2, "2 is not a yes/no value"),
        (T, True, "True is not text"),
        (T, ["a"], "['a'] is not text"),
        (LST, 1.5, "1.5 is not a list item key"),
        ("Blob", "x", "Unknown ERP field type 'Blob'"),
    ],
)
def test_normalize_erp_garbage(erp_type, value, message):
    with pytest.raises(ConversionError) as info:
        normalize_erp(erp_type, value)
    assert message in str(info.value)
    assert isinstance(info.value, ValueError)


def test_messages_shorten_long_values():
    with pytest.raises(ConversionError) as info:
        normalize_erp(INT, "y" * 500)
    assert len(str(info.value)) < 80


def test_normalize_none_is_none_for_every_type():
    for erp_type in FieldType:
        assert normalize_erp(erp_type, None) is None


JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=30)


@settings(max_examples=300, deadline=None)
@given(erp_type=st.sampled_from(list(FieldType)), value=JSON_SCALARS)
def test_normalize_is_idempotent_or_raises_conversion_error(erp_type, value):
    try:
        once = normalize_erp(erp_type, value)
    except ConversionError:
        return
    assert normalize_erp(erp_type, once) == once


@settings(max_examples=200, deadline=None)
@given(moment=st.datetimes(timezones=st.none() | st.just(UTC) | st.timezones()))
def test_normalize_datetime_shape(moment):
    try:
        text = normalize_erp(DT, moment)
    except ConversionError:
        return  # out of range after moving to UTC
    assert len(text) in (10, 20)
    assert normalize_erp(DT, text) == text


# ---------------------------------------------------------------------------------------- number_text


@pytest.mark.parametrize(
    "value, text", [(3.0, "3"), (1.5, "1.5"), (0.1, "0.1"), (-0.0, "0"), (42, "42"), (1e20, "1e+20"), (-2.0, "-2")]
)
def test_number_text(value, text):
    assert number_text(value) == text


@settings(max_examples=300, deadline=None)
@given(st.floats(allow_nan=False, allow_infinity=False))
def test_number_text_round_trips(value):
    assert float(number_text(value)) == value


# ------------------------------------------------------------------------------------------ erp_to_crm


def test_erp_to_crm_text():
    assert erp_to_crm(T, CT, "Acme") == "Acme"
    assert erp_to_crm(T, CT, None) == ""
    assert erp_to_crm(T, CT, "") == ""
    assert erp_to_crm(L, CLT, "label") == "label"
    assert erp_to_crm(INT, CT, 42) == "42"
    assert erp_to_crm(D, CT, 3.0) == "3"
    assert erp_to_crm(D, CT, 2.50) == "2.5"
    assert erp_to_crm(D, CT, None) == ""


def test_erp_to_crm_max_length():
    assert erp_to_crm(T, CT, "abcd", max_length=4) == "abcd"
    with pytest.raises(ConversionError, match="'abcde' is longer than 4 characters"):
        erp_to_crm(T, CT, "abcde", max_length=4)
    with pytest.raises(ConversionError, match="longer than 2 characters"):
        erp_to_crm(INT, CT, 123, max_length=2)
    assert erp_to_crm(T, CLT, "x" * 10_000, max_length=0) == "x" * 10_000


def test_erp_to_crm_date():
    assert erp_to_crm(DT, CD, "2026-11-25") == date(2026, 11, 25)
    assert erp_to_crm(DT, CD, "2026-11-25T10:00:00Z") == date(2026, 11, 25)
    assert erp_to_crm(DT, CD, None) is None
    assert erp_to_crm(DT, CD, "") is None
    with pytest.raises(ConversionError, match="is not a date"):
        erp_to_crm(DT, CD, "soon")


def test_erp_to_crm_list():
    mapping = {"NO": 1, "SE": 2, "DK": None}
    assert erp_to_crm(LST, CL, "NO", mapping) == 1
    assert erp_to_crm(LST, CL, None, mapping) is None
    assert erp_to_crm(LST, CL, "", mapping) is None
    with pytest.raises(UnmappedListItem) as info:
        erp_to_crm(LST, CL, "FI", mapping)
    assert info.value.key == "FI" and info.value.side == "erp"
    assert str(info.value) == "ERP list item 'FI' is not mapped to a CRM list item"
    with pytest.raises(UnmappedListItem) as info:
        erp_to_crm(LST, CL, "DK", mapping)  # mapped to "(No selection)"
    assert info.value.key == "DK"
    with pytest.raises(UnmappedListItem):
        erp_to_crm(LST, CL, "NO", None)
    assert issubclass(UnmappedListItem, ConversionError)


@pytest.mark.parametrize("erp_type, crm_type", [(C, CT), (P, CT), (DT, CT), (T, CD), (LST, CT), ("Blob", CT)])
def test_erp_to_crm_incompatible(erp_type, crm_type):
    with pytest.raises(ConversionError):
        erp_to_crm(erp_type, crm_type, "x")


# ------------------------------------------------------------------------------------------ crm_to_erp


def test_crm_to_erp_text():
    assert crm_to_erp(T, CT, "Acme") == "Acme"
    assert crm_to_erp(T, CT, "") is None
    assert crm_to_erp(T, CT, None) is None
    assert crm_to_erp(T, CT, "  padded ") == "  padded "
    assert crm_to_erp(INT, CT, "42") == 42
    assert crm_to_erp(INT, CT, " 007 ") == 7
    assert crm_to_erp(INT, CT, "") is None
    assert crm_to_erp(D, CLT, "1.25") == 1.25
    assert crm_to_erp(D, CT, "3") == 3.0 and isinstance(crm_to_erp(D, CT, "3"), float)


def test_crm_to_erp_text_garbage():
    with pytest.raises(ConversionError, match="'abc' is not a whole number"):
        crm_to_erp(INT, CT, "abc")
    with pytest.raises(ConversionError, match="'12 kr' is not a number"):
        crm_to_erp(D, CT, "12 kr")
    with pytest.raises(ConversionError, match="is not text"):
        crm_to_erp(T, CT, 12)


def test_crm_to_erp_max_length():
    assert crm_to_erp(T, CT, "abc", max_length=3) == "abc"
    with pytest.raises(ConversionError, match="'abcd' is longer than 3 characters"):
        crm_to_erp(T, CT, "abcd", max_length=3)
    assert crm_to_erp(T, CT, "abcd", max_length=0) == "abcd"
    assert crm_to_erp(INT, CT, "12345", max_length=3) == 12345  # MaxLength applies to text values


def test_crm_to_erp_date():
    assert crm_to_erp(DT, CD, date(2026, 11, 25)) == "2026-11-25"
    assert crm_to_erp(DT, CD, None) is None


def test_crm_to_erp_list():
    reverse = {1: "NO", 2: "SE"}
    assert crm_to_erp(LST, CL, 1, reverse) == "NO"
    assert crm_to_erp(LST, CL, None, reverse) is None
    with pytest.raises(UnmappedListItem) as info:
        crm_to_erp(LST, CL, 3, reverse)
    assert info.value.key == 3 and info.value.side == "crm"
    assert str(info.value) == "CRM list item 3 is not mapped to an ERP list item"
    with pytest.raises(UnmappedListItem):
        crm_to_erp(LST, CL, 1, None)
    with pytest.raises(ConversionError, match="is not a list item"):
        crm_to_erp(LST, CL, "NO", reverse)


@pytest.mark.parametrize("erp_type, crm_type", [(C, CT), (P, CT), (DT, CT), (LST, CT), (INT, CD)])
def test_crm_to_erp_incompatible(erp_type, crm_type):
    with pytest.raises(ConversionError):
        crm_to_erp(erp_type, crm_type, "x")


# ---------------------------------------------------------------------------------------- round trips

TEXTS = st.text(max_size=40)


@settings(max_examples=200, deadline=None)
@given(text=TEXTS, erp_type=st.sampled_from([T, L]), crm_type=st.sampled_from([CT, CLT]))
def test_round_trip_text(text, erp_type, crm_type):
    assert erp_to_crm(erp_type, crm_type, crm_to_erp(erp_type, crm_type, text)) == text


@settings(max_examples=200, deadline=None)
@given(number=st.integers(min_value=-(10**30), max_value=10**30), crm_type=st.sampled_from([CT, CLT]))
def test_round_trip_integer(number, crm_type):
    text = erp_to_crm(INT, crm_type, number)
    assert text == str(number)
    assert crm_to_erp(INT, crm_type, text) == number
    assert erp_to_crm(INT, crm_type, crm_to_erp(INT, crm_type, text)) == text


@settings(max_examples=300, deadline=None)
@given(number=st.floats(allow_nan=False, allow_infinity=False), crm_type=st.sampled_from([CT, CLT]))
def test_round_trip_double(number, crm_type):
    text = erp_to_crm(D, crm_type, number)
    assert crm_to_erp(D, crm_type, text) == number
    assert erp_to_crm(D, crm_type, crm_to_erp(D, crm_type, text)) == text


@settings(max_examples=200, deadline=None)
@given(day=st.dates() | st.none())
def test_round_trip_date(day):
    assert erp_to_crm(DT, CD, crm_to_erp(DT, CD, day)) == day


@settings(max_examples=100, deadline=None)
@given(
    mapping=st.dictionaries(st.text(min_size=1, max_size=5), st.integers(1, 50), max_size=8).filter(
        lambda m: len(set(m.values())) == len(m)
    ),
    data=st.data(),
)
def test_round_trip_list_bijective(mapping, data):
    reverse = invert_list_map(mapping)
    assert reverse == {v: k for k, v in mapping.items()}
    crm_id = data.draw(st.sampled_from([*mapping.values(), None]))
    assert erp_to_crm(LST, CL, crm_to_erp(LST, CL, crm_id, reverse), mapping) == crm_id


def test_round_trip_each_compatible_pair_example():
    cases = {
        (T, CT): "Acme AS",
        (T, CLT): "line 1\nline 2",
        (L, CT): "Label",
        (L, CLT): "",
        (INT, CT): "123",
        (INT, CLT): "-5",
        (D, CT): "1.5",
        (D, CLT): "100",
        (DT, CD): date(2024, 2, 29),
        (LST, CL): 2,
        (C, CB): True,
        (INT, CI): 250,
        (INT, CDEC): 1500.0,
        (D, CDEC): 1250.5,
    }
    assert set(cases) == COMPATIBLE
    list_map = {"NO": 1, "SE": 2}
    for (erp_type, crm_type), crm_value in cases.items():
        erp_value = crm_to_erp(erp_type, crm_type, crm_value, invert_list_map(list_map))
        assert erp_to_crm(erp_type, crm_type, erp_value, list_map) == crm_value, (erp_type, crm_type)


# ------------------------------------------------------------------------- checkbox and number fields (#18)

MAX_I, MAX_DEC = 2**31 - 1, 1e15
CRM_INTS = st.integers(min_value=-MAX_I, max_value=MAX_I)
CRM_DECIMALS = st.floats(min_value=-MAX_DEC, max_value=MAX_DEC, allow_nan=False, allow_infinity=False)


def test_number_limits_are_the_crm_rules():
    from portal.services import crm_rules

    assert (crm_rules.MAX_INTEGER, crm_rules.MAX_DECIMAL) == (MAX_I, MAX_DEC)


def test_erp_to_crm_checkbox():
    assert erp_to_crm(C, CB, True) is True
    assert erp_to_crm(C, CB, False) is False
    assert erp_to_crm(C, CB, None) is False  # a CRM checkbox is never blank
    assert erp_to_crm(C, CB, "") is False
    assert erp_to_crm(C, CB, "yes") is True
    with pytest.raises(ConversionError, match="not a yes/no value"):
        erp_to_crm(C, CB, "maybe")


def test_erp_to_crm_numbers():
    assert erp_to_crm(INT, CI, 42) == 42 and type(erp_to_crm(INT, CI, 42)) is int
    assert erp_to_crm(INT, CI, "-7") == -7
    assert erp_to_crm(INT, CI, None) is None
    assert erp_to_crm(INT, CDEC, 3) == 3.0 and type(erp_to_crm(INT, CDEC, 3)) is float
    assert erp_to_crm(D, CDEC, 1250.5) == 1250.5
    assert erp_to_crm(D, CDEC, -0.0) == 0.0 and str(erp_to_crm(D, CDEC, -0.0)) == "0.0"
    assert erp_to_crm(D, CDEC, "") is None
    assert erp_to_crm(INT, CI, MAX_I) == MAX_I
    with pytest.raises(ConversionError, match="out of range for a CRM whole number"):
        erp_to_crm(INT, CI, MAX_I + 1)
    with pytest.raises(ConversionError, match="out of range for a CRM decimal number"):
        erp_to_crm(D, CDEC, 1e16)
    with pytest.raises(ConversionError, match="out of range for a CRM decimal number"):
        erp_to_crm(INT, CDEC, 10**20)
    with pytest.raises(ConversionError, match="not a finite number"):
        erp_to_crm(D, CDEC, float("inf"))
    with pytest.raises(ConversionError, match="not a whole number"):
        erp_to_crm(INT, CI, 1.5)
    with pytest.raises(ConversionError, match="lose the fraction"):
        erp_to_crm(D, CI, 2.0)


def test_crm_to_erp_checkbox():
    assert crm_to_erp(C, CB, True) is True
    assert crm_to_erp(C, CB, False) is False
    assert crm_to_erp(C, CB, None) is False
    with pytest.raises(ConversionError, match="not a yes/no value"):
        crm_to_erp(C, CB, 1)  # a checkbox is not a number
    with pytest.raises(ConversionError):
        crm_to_erp(T, CB, True)


def test_crm_to_erp_numbers():
    assert crm_to_erp(INT, CI, 250) == 250
    assert crm_to_erp(INT, CI, None) is None
    assert crm_to_erp(INT, CDEC, 3.0) == 3 and type(crm_to_erp(INT, CDEC, 3.0)) is int
    assert crm_to_erp(D, CDEC, 1250.5) == 1250.5
    assert crm_to_erp(D, CDEC, 7) == 7.0 and type(crm_to_erp(D, CDEC, 7)) is float
    with pytest.raises(ConversionError, match="1.5 is not a whole number, and the ERP field holds only whole"):
        crm_to_erp(INT, CDEC, 1.5)
    with pytest.raises(ConversionError, match="out of range"):
        crm_to_erp(INT, CI, MAX_I + 1)
    with pytest.raises(ConversionError, match="out of range"):
        crm_to_erp(D, CDEC, -2e15)
    with pytest.raises(ConversionError, match="not a finite number"):
        crm_to_erp(D, CDEC, float("nan"))
    with pytest.raises(ConversionError, match="not a finite number"):
        crm_to_erp(INT, CDEC, float("-inf"))
    with pytest.raises(ConversionError, match="not a number"):
        crm_to_erp(INT, CI, True)
    with pytest.raises(ConversionError, match="not a number"):
        crm_to_erp(D, CDEC, "12")
    with pytest.raises(ConversionError, match="not a whole number"):
        crm_to_erp(INT, CI, 2.0)
    with pytest.raises(ConversionError, match="lose the fraction"):
        crm_to_erp(D, CI, 2)


def test_to_crm_precision_checkbox_and_numbers():
    # a blank ERP checkbox is an unticked CRM one: they compare equal, no change is seen
    assert to_crm_precision(C, CB, None) is False
    assert to_crm_precision(C, CB, "on") is True
    assert to_crm_precision(INT, CDEC, 7) == 7 and type(to_crm_precision(INT, CDEC, 7)) is int
    assert to_crm_precision(D, CDEC, 1.25) == 1.25
    # beyond what the CRM holds: returned normalized, unchanged (the write reports the error)
    assert to_crm_precision(INT, CI, 2**40) == 2**40
    assert to_crm_precision(C, CB, None) == crm_to_erp(C, CB, False)


@given(value=st.booleans() | st.none())
def test_round_trip_checkbox(value):
    crm = erp_to_crm(C, CB, value)
    assert crm is bool(value)
    assert erp_to_crm(C, CB, crm_to_erp(C, CB, crm)) is crm


@given(number=CRM_INTS | st.none())
def test_round_trip_crm_integer(number):
    assert erp_to_crm(INT, CI, crm_to_erp(INT, CI, number)) == number


@given(number=CRM_DECIMALS | st.none())
def test_round_trip_crm_decimal_via_double(number):
    back = erp_to_crm(D, CDEC, crm_to_erp(D, CDEC, number))
    assert back == number and (number is None or type(back) is float)


@given(number=CRM_DECIMALS | st.none())
def test_round_trip_crm_decimal_via_integer(number):
    if number is not None and not number.is_integer():
        with pytest.raises(ConversionError, match="not a whole number"):
            crm_to_erp(INT, CDEC, number)
        return
    assert erp_to_crm(INT, CDEC, crm_to_erp(INT, CDEC, number)) == number


@given(pair=st.sampled_from(sorted(COMPATIBLE)), data=st.data())
def test_every_compatible_pair_round_trips_crm_values(pair, data):
    """CRM value -> ERP -> CRM is unchanged, for every compatible pair and every CRM value that converts."""
    erp_type, crm_type = pair
    strategies = {
        CT: TEXTS, CLT: TEXTS, CD: st.dates() | st.none(), CL: st.sampled_from([1, 2, None]),
        CB: st.booleans(), CI: CRM_INTS | st.none(), CDEC: CRM_DECIMALS | st.none(),
    }
    crm_value = data.draw(strategies[crm_type])
    list_map = {"NO": 1, "SE": 2}
    try:
        erp_value = crm_to_erp(erp_type, crm_type, crm_value, invert_list_map(list_map))
    except ConversionError:
        return  # e.g. 'abc' into an ERP Integer, 1.5 into an ERP Integer: refused, never changed
    back = erp_to_crm(erp_type, crm_type, erp_value, list_map)
    if crm_type in (CT, CLT) and erp_type in (INT, D):
        # a number typed as text comes back in its canonical form ('007' -> '7'), and stays there
        assert erp_to_crm(erp_type, crm_type, crm_to_erp(erp_type, crm_type, back)) == back
    elif crm_type in (CT, CLT):
        assert back == (crm_value or "")
    else:
        assert back == crm_value and type(back) is type(crm_value)


# ---------------------------------------------------------------------------------------- list helpers


def test_invert_list_map_duplicates_and_prefer():
    mapping = {"B": 1, "A": 1, "C": 2, "X": None}
    assert invert_list_map(mapping) == {1: "A", 2: "C"}
    assert invert_list_map(mapping, prefer=["B"]) == {1: "B", 2: "C"}
    assert invert_list_map(mapping, prefer=[None, "Q"]) == {1: "A", 2: "C"}
    assert invert_list_map(None) == {}


def test_to_crm_precision():
    assert to_crm_precision(DT, CD, "2026-11-25T10:00:00Z") == "2026-11-25"
    assert to_crm_precision(DT, CD, "2026-11-25") == "2026-11-25"
    assert to_crm_precision(DT, CD, None) is None
    assert to_crm_precision(INT, CT, "42") == 42
    assert to_crm_precision(D, CT, 1.5) == 1.5
    assert to_crm_precision(T, CT, "") is None
    # Several ERP items for one CRM item: the ERP's own key stays.
    assert to_crm_precision(LST, CL, "B", {"A": 1, "B": 1}) == "B"
    # Unmapped items come back unchanged.
    assert to_crm_precision(LST, CL, "Z", {"A": 1}) == "Z"
    with pytest.raises(ConversionError):
        to_crm_precision(DT, CD, "garbage")


def test_crm_value_compares_equal_to_precision_reduced_erp_value():
    crm_side = crm_to_erp(DT, CD, date(2026, 11, 25))
    assert crm_side == to_crm_precision(DT, CD, "2026-11-25T10:00:00Z")
    mapping = {"A": 1, "B": 1}
    assert crm_to_erp(LST, CL, 1, invert_list_map(mapping, prefer=["B"])) == to_crm_precision(LST, CL, "B", mapping)


# --------------------------------------------------------------------------------------- parse_input


@pytest.mark.parametrize(
    "erp_type, text, expected",
    [
        (T, "", None),
        (T, " hi ", " hi "),
        (P, "s3cret", "s3cret"),
        (LST, "NO", "NO"),
        (LST, "", None),
        (C, "on", True),
        (C, "true", True),
        (C, "1", True),
        (C, "yes", True),
        (C, "Yes", True),
        (C, "off", False),
        (C, "false", False),
        (C, "0", False),
        (C, "no", False),
        (C, "", None),
        (INT, "42", 42),
        (INT, " 42 ", 42),
        (INT, "", None),
        (D, "3.25", 3.25),
        (D, "4", 4.0),
        (DT, "2026-11-25", "2026-11-25"),
        (DT, "2026-11-25T08:30", "2026-11-25T08:30:00Z"),
        (DT, "", None),
    ],
)
def test_parse_input(erp_type, text, expected):
    result = parse_input(erp_type, text)
    assert result == expected
    assert type(result) is type(expected)


@pytest.mark.parametrize(
    "erp_type, text, message",
    [
        (INT, "twelve", "'twelve' is not a whole number"),
        (INT, "1.5", "'1.5' is not a whole number"),
        (D, "1,5", "'1,5' is not a number (use a point as the decimal separator)"),
        (DT, "31.12.2026", "'31.12.2026' is not a date (expected YYYY-MM-DD)"),
        (DT, "2026-13-01", "'2026-13-01' is not a valid date"),
        (C, "perhaps", "'perhaps' is not a yes/no value"),
    ],
)
def test_parse_input_garbage(erp_type, text, message):
    with pytest.raises(ConversionError) as info:
        parse_input(erp_type, text)
    assert str(info.value) == message


# ------------------------------------------------------------------------------------------- display


@pytest.mark.parametrize(
    "erp_type, value, expected",
    [
        (T, None, ""),
        (T, "Acme", "Acme"),
        (C, True, "Yes"),
        (C, False, "No"),
        (C, "true", "Yes"),
        (INT, 42, "42"),
        (D, 1.0, "1"),
        (D, 1.5, "1.5"),
        (D, 0.1, "0.1"),
        (DT, "2026-11-25T00:00:00Z", "2026-11-25"),
        (DT, "2026-11-25T10:00:00Z", "2026-11-25T10:00:00Z"),
        (DT, date(2026, 11, 25), "2026-11-25"),
        (LST, "NO", "Norway"),
        (LST, "FI", "FI"),
        (P, "secret", "\u2022" * 8),
        (P, None, ""),
        (DT, "garbage", "garbage"),
        (INT, "x", "x"),
        ("Blob", 3, "3"),
    ],
)
def test_display(erp_type, value, expected):
    assert display(erp_type, value, {"NO": "Norway"}) == expected


@settings(max_examples=200, deadline=None)
@given(erp_type=st.sampled_from([*FieldType, "Blob"]), value=JSON_SCALARS | st.lists(st.integers(), max_size=2))
def test_display_never_raises(erp_type, value):
    assert isinstance(display(erp_type, value), str)


def test_display_never_shows_password():
    assert "hunter2" not in display(P, "hunter2")


# ------------------------------------------------------------------------------------------ is_blank


@pytest.mark.parametrize("value", [None, "", "   ", "\n", [], {}, ()])
def test_is_blank(value):
    assert is_blank(value)


@pytest.mark.parametrize("value", [0, 0.0, False, "a", " a ", [None], "0"])
def test_is_not_blank(value):
    assert not is_blank(value)

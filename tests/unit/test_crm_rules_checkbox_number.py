"""portal/services/crm_rules.py for the CRM checkbox and number fields (issue #18): a checkbox holds a bool, a whole
number an int within ±MAX_INTEGER, a decimal a finite number within ±MAX_DECIMAL; and the form parsing of
portal/services/crm.py that feeds them (``on``/blank, a comma or a point as the decimal separator)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from portal.models import BUILTIN_CRM_FIELDS, CrmFieldType, crm_field
from portal.services import crm as crm_service
from portal.services.crm_rules import MAX_DECIMAL, MAX_INTEGER, check_crm_value, value_problem

CHECKBOXES = [("company", "no_mailings"), ("contact", "no_mailings"), ("project", "completed")]


def test_the_new_fields_are_in_the_catalogue():
    assert crm_field("company", "no_mailings").type == CrmFieldType.CHECKBOX
    assert crm_field("company", "employees").type == CrmFieldType.INTEGER
    assert crm_field("company", "credit_limit").type == CrmFieldType.DECIMAL
    assert crm_field("contact", "no_mailings").type == CrmFieldType.CHECKBOX
    assert crm_field("project", "completed").type == CrmFieldType.CHECKBOX
    for specs in BUILTIN_CRM_FIELDS.values():
        for spec in specs:
            if spec.type in (CrmFieldType.CHECKBOX, CrmFieldType.INTEGER, CrmFieldType.DECIMAL):
                assert not spec.erp_aliases and not spec.required and not spec.max_length


@pytest.mark.parametrize("crm_type, key", CHECKBOXES)
def test_a_checkbox_holds_a_bool_only(crm_type, key):
    assert check_crm_value(crm_type, key, True) is None
    assert check_crm_value(crm_type, key, False) is None
    label = crm_field(crm_type, key).label
    for bad in (None, "", "on", 1, 0, 1.0):
        problem = value_problem(crm_type, key, bad)
        assert problem is not None, bad
        assert problem.message == f"Tick {label.lower()} or leave it unticked."
        assert problem.reason.endswith("is not a yes/no value")
    assert check_crm_value(crm_type, key, 1, current=True) is not None  # 1 is not the stored True


def test_a_whole_number():
    for good in (0, 25, -3, MAX_INTEGER, -MAX_INTEGER, None, "", "  "):
        assert check_crm_value("company", "employees", good) is None, good
    problem = value_problem("company", "employees", "abc")
    assert problem.message == "Enter employees as a whole number, such as 25."
    assert problem.reason == '"abc" is not a whole number'
    for bad in (True, 2.5, 3.0, "12"):
        assert check_crm_value("company", "employees", bad) is not None, bad
    problem = value_problem("company", "employees", MAX_INTEGER + 1)
    assert problem.message == f"Enter employees between -{MAX_INTEGER} and {MAX_INTEGER}."
    assert problem.reason == f'"{MAX_INTEGER + 1}" is out of range for Employees (-{MAX_INTEGER} to {MAX_INTEGER})'
    assert check_crm_value("company", "employees", 10**5000) is not None  # too many digits to print: no crash


def test_a_decimal_number():
    for good in (0.0, 1250.5, -3.25, 7, MAX_DECIMAL, -MAX_DECIMAL, None, ""):
        assert check_crm_value("company", "credit_limit", good) is None, good
    problem = value_problem("company", "credit_limit", "abc")
    assert problem.message == "Enter credit limit as a number, such as 1250.50."
    assert problem.reason == '"abc" is not a number'
    for bad in (math.inf, -math.inf, math.nan):
        assert value_problem("company", "credit_limit", bad).reason.endswith("is not a finite number")
    assert check_crm_value("company", "credit_limit", False) is not None
    problem = value_problem("company", "credit_limit", 2e15)
    assert problem.message == "Enter credit limit between -1000000000000000 and 1000000000000000."
    assert "out of range for Credit limit" in problem.reason


@given(st.floats(allow_nan=False, allow_infinity=False, min_value=-MAX_DECIMAL, max_value=MAX_DECIMAL))
def test_every_finite_decimal_in_range_is_accepted(number):
    assert check_crm_value("company", "credit_limit", number) is None


# --- form parsing (portal/services/crm.py) --------------------------------------------------------------------


@pytest.mark.parametrize("raw, expected", [
    (True, True), (False, False), (None, False), ("", False), ("on", True), ("y", True), ("off", False),
    ("maybe", "maybe"),
])
def test_checkbox_input(raw, expected):
    assert crm_service._clean_checkbox(raw) == expected


@pytest.mark.parametrize("raw, expected", [
    ("25", 25), (" -3 ", -3), ("", None), ("  ", None), (None, None), ("abc", "abc"), ("2.5", "2.5"),
    ("1 000", "1 000"), (7, 7),
])
def test_integer_input(raw, expected):
    assert crm_service._clean_integer(raw) == expected


@pytest.mark.parametrize("raw, expected", [
    ("1250.50", 1250.5), ("1250,5", 1250.5), (",5", 0.5), ("-3", -3.0), ("", None), (None, None),
    ("abc", "abc"), ("1.000,50", "1.000,50"), ("inf", "inf"), ("nan", "nan"), ("1e5", "1e5"), (7, 7.0),
])
def test_decimal_input(raw, expected):
    assert crm_service._clean_decimal(raw) == expected

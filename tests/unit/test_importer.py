"""Pure rules of Import from ERP: search criteria → SearchRestrictions, settings and request round trips,
duplicate-key normalization, required fields, and the wizard's form parsing. No database, no app."""

from __future__ import annotations

import pytest
from werkzeug.datastructures import MultiDict

from portal.admin.forms_import import criteria_from_form, list_defaults_from_form
from portal.connectors.protocol import OPERATORS
from portal.models import ActorTypeConfig, ErpField
from portal.services import import_count, import_decide, import_plan, import_rules
from portal.services.import_search import OPERATOR_LABELS, Criterion, SearchField, build_restrictions, search_fields
from portal.services.import_settings import ImportProblem, ImportRequest, ImportSettings

FIELDS = [
    SearchField("NAME", "Name", "Text"),
    SearchField("EMPLOYEES", "Employees", "Integer"),
    SearchField("CREDITLIMIT", "Credit limit", "Double"),
    SearchField("BLOCKED", "Blocked", "Checkbox"),
    SearchField("LASTINVOICEDATE", "Last invoice", "Date"),
    SearchField("COUNTRY", "Country", "List", "countries"),
]


def row(field, operator, *values, active=True):
    return Criterion(field=field, operator=operator, values=list(values), active=active)


@pytest.mark.parametrize("criterion, expected", [
    (row("NAME", "begins", " Acme "), {"FieldKey": "NAME", "Operator": "begins", "Values": ["Acme"]}),
    (row("EMPLOYEES", ">", "10"), {"FieldKey": "EMPLOYEES", "Operator": ">", "Values": [10]}),
    (row("EMPLOYEES", "between", "10", "50"), {"FieldKey": "EMPLOYEES", "Operator": "between", "Values": [10, 50]}),
    (row("CREDITLIMIT", "<=", "2500.5"), {"FieldKey": "CREDITLIMIT", "Operator": "<=", "Values": [2500.5]}),
    (row("BLOCKED", "=", "false"), {"FieldKey": "BLOCKED", "Operator": "=", "Values": [False]}),
    (row("BLOCKED", "="), {"FieldKey": "BLOCKED", "Operator": "=", "Values": [False]}),
    (row("LASTINVOICEDATE", "afterOrEqual", "2026-01-31"),
     {"FieldKey": "LASTINVOICEDATE", "Operator": "afterOrEqual", "Values": ["2026-01-31"]}),
    (row("COUNTRY", "oneof", "NO", "SE", ""), {"FieldKey": "COUNTRY", "Operator": "oneof", "Values": ["NO", "SE"]}),
])
def test_criteria_become_typed_search_restrictions(criterion, expected):
    assert build_restrictions([criterion], FIELDS) == [expected]


def test_inactive_rows_and_rows_without_a_value_are_left_out_and_no_rows_means_everything():
    assert build_restrictions([row("NAME", "=", "x", active=False)], FIELDS) == []
    assert build_restrictions([row("NAME", "contains", "  "), row("COUNTRY", "oneof"), row("EMPLOYEES", ">")],
                              FIELDS) == []
    assert build_restrictions([], FIELDS) == []


@pytest.mark.parametrize("criterion, message", [
    (row("EMPLOYEES", ">", "many"), "is not a whole number"),
    (row("CREDITLIMIT", "=", "1,5"), "decimal separator"),
    (row("LASTINVOICEDATE", "before", "31.12.2026"), "is not a date"),
    (row("EMPLOYEES", "between", "10"), "Enter two values"),
    (row("EMPLOYEES", "between", "", "9"), "Enter two values"),
    (row("NAME", "oneof", "x"), "Choose an operator"),
    (row("SECRET", "=", "x"), "Choose a field"),
])
def test_bad_criteria_are_marked_on_their_row(criterion, message):
    good = row("NAME", "=", "ok")
    with pytest.raises(ImportProblem):
        build_restrictions([good, criterion], FIELDS)
    assert good.error == ""
    assert message in criterion.error


def test_search_fields_take_type_label_and_list_from_the_cached_metadata():
    config = ActorTypeConfig(erp_actor_type="Customer", crm_type="company",
                             searchable_fields=["NAME", "COUNTRY", "GONE"])
    config.fields = [ErpField(field_key="NAME", display_name="Name", field_type="Text"),
                     ErpField(field_key="COUNTRY", display_name="Country", field_type="List", list_name="countries")]
    fields = {f.key: f for f in search_fields(config)}
    assert fields["COUNTRY"].is_list and fields["COUNTRY"].list_name == "countries"
    assert [op for op, _label in fields["COUNTRY"].operators] == ["oneof", "notoneof"]
    assert fields["GONE"].field_type == "Text" and fields["GONE"].label == "GONE"
    assert fields["NAME"].operators[0] == ("=", "Equals")


def test_every_protocol_operator_has_a_label():
    assert {op for ops in OPERATORS.values() for op in ops} <= set(OPERATOR_LABELS)


def test_input_types_follow_the_field_type():
    assert [f.input_type for f in FIELDS] == ["text", "number", "number", "text", "date", "text"]


# --------------------------------------------------------------------------------------------- form parsing


def test_criteria_rows_are_parsed_in_order_with_between_and_list_values():
    form = MultiDict([
        ("crit-10-field", "COUNTRY"), ("crit-10-op", "oneof"), ("crit-10-value", "NO"), ("crit-10-value", "SE"),
        ("crit-2-field", "EMPLOYEES"), ("crit-2-op", "between"), ("crit-2-value", "1"), ("crit-2-value2", "9"),
        ("crit-2-active", "1"), ("unrelated", "x"), ("crit-x-field", "bad"),
    ])
    rows = criteria_from_form(form)
    assert [(r.field, r.operator, r.values, r.active) for r in rows] == [
        ("EMPLOYEES", "between", ["1", "9"], True),
        ("COUNTRY", "oneof", ["NO", "SE"], False),
    ]


def test_list_defaults_are_read_from_their_selects():
    form = MultiDict([("default-Customer.COUNTRY", "7"), ("default-Person.X", ""), ("other", "3")])
    assert list_defaults_from_form(form) == {"Customer.COUNTRY": 7}


def test_criterion_survives_a_round_trip():
    original = row("EMPLOYEES", "between", "1", "9", active=False)
    assert Criterion.from_dict(original.to_dict()) == original


# ------------------------------------------------------------------------------------ settings and request


def test_settings_defaults_validate_and_ignore_unknown_keys():
    settings = ImportSettings.from_dict({"company_match": "vat_no", "list_defaults": {"Customer.COUNTRY": "4"},
                                         "include_persons": 1, "unknown": "x"})
    assert settings.company_match == "vat_no" and settings.company_action == "merge"
    assert settings.list_defaults == {"Customer.COUNTRY": 4} and settings.include_persons is True
    assert settings.match("contact") == "name" and settings.action("project") == "merge"


@pytest.mark.parametrize("data, field", [
    ({"company_match": "email"}, "company_match"),  # a contact rule is not a company rule
    ({"contact_match": "vat_no"}, "contact_match"),
    ({"contact_action": "delete"}, "contact_action"),
    ({"list_policy": "ignore"}, "list_policy"),
    ({"person_policy": "create_company_from_name"}, "person_policy"),
])
def test_settings_refuse_unknown_choices(data, field):
    with pytest.raises(ImportProblem) as info:
        ImportSettings.from_dict(data)
    assert info.value.field == field


def test_request_round_trips_through_run_options():
    request = ImportRequest(3, "Customer", restrictions=[{"FieldKey": "NAME", "Operator": "=", "Values": ["A"]}],
                            all_results=True, excluded=["Customer:C1", "Person:P2"],
                            settings=ImportSettings(include_persons=True, company_action="replace"))
    again = ImportRequest.from_options(request.to_options())
    assert again.to_options() == request.to_options()
    assert again.is_excluded("Person", "P2") and not again.is_excluded("Customer", "P2")
    assert again.crm_type == "company" and ImportRequest(3, "Person").crm_type == "contact"


# ---------------------------------------------------------------------------------- matching and names


@pytest.mark.parametrize("value, expected", [
    ("  Acme   AS ", "acme as"), ("ÆRØ Fisk", "ærø fisk"), (None, ""), ("Straße", "strasse"),
])
def test_text_keys_ignore_case_and_spacing(value, expected):
    assert import_rules.norm_text(value) == expected


@pytest.mark.parametrize("value, expected", [
    ("+47 912 34 567", "+4791234567"), ("(0)22-33.44", "0223344"), ("", ""), ("+", ""),
])
def test_phone_keys_keep_only_digits_and_a_leading_plus(value, expected):
    assert import_rules.norm_phone(value) == expected


def test_required_fields_per_record_type():
    assert import_decide._required_problem("company", {"name": " "}, None) == "Name is blank, and a company needs one."
    assert import_decide._required_problem("company", {"name": "Acme"}, None) == ""
    assert "first name or a last name" in import_decide._required_problem("contact", {"first_name": ""}, None)
    assert import_decide._required_problem("contact", {"last_name": "Berg"}, None) == ""
    assert "Project name is blank" in import_decide._required_problem("project", {}, None)


def test_actor_names_come_from_the_values_or_the_record():
    assert import_plan.actor_name("contact", {"first_name": "Kari", "last_name": "Nordmann"}) == "Kari Nordmann"
    assert import_plan.actor_name("company", {"name": "Acme"}) == "Acme"

    class Record:
        name = "Existing"

    assert import_plan.actor_name("company", {}, Record()) == "Existing"


def test_skip_reasons_are_grouped():
    assert import_count._reason_kind("matches the existing company Acme") == "duplicate skipped"
    assert import_count._reason_kind("its company (Customer C1) is not in the CRM") == "company not in the CRM"

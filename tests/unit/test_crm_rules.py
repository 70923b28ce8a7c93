"""portal/services/crm_rules.py: what a CRM field may hold (the one definition used by the forms, the import and
the sync). Plain functions: no app is needed except for the tests marked ``db`` (list items read from the
database)."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import pytest
from sqlalchemy import event, select

from portal.extensions import db
from portal.models import BUILTIN_CRM_FIELDS, Company, CrmFieldType, CrmList, CrmType, ListItem
from portal.services import crm_rules
from portal.services.crm_rules import (
    MISSING,
    ListItemInfo,
    check_crm_value,
    check_crm_values,
    is_email,
    is_web_address,
    value_problem,
)

# A small set of list items, as load_list_items() returns them (no database needed).
ITEMS = {
    1: ListItemInfo(CrmList.COUNTRY, "Norway", False),
    2: ListItemInfo(CrmList.COUNTRY, "Atlantis", True),  # deleted
    3: ListItemInfo(CrmList.BUSINESS, "Retail", False),
    4: ListItemInfo(CrmList.PROJECT_STATUS, "Open", False),
}


def check(crm_type, key, value, **kwargs):
    return check_crm_value(crm_type, key, value, list_items=ITEMS, **kwargs)


# --- e-mail ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("email", ["post@acme.example", "a.b+c@sub.example.no", "jørgen@firma.no",
                                   "  post@acme.example  ", "x@y.z", "POST@ACME.EXAMPLE"])
def test_emails_the_form_accepts_are_accepted(email):
    assert is_email(email)
    assert check("company", "email", email) is None
    assert check("contact", "email", email) is None


@pytest.mark.parametrize("email", ["post10@erp", "no-at-sign", "a@b", "two words@example.com", "a@@example.com",
                                   "a@b.", "@example.com", "post@", "a@b.c\nd"])
def test_emails_the_form_refuses_are_refused_with_the_value_in_the_reason(email):
    assert not is_email(email)
    for crm_type in ("company", "contact"):
        reason = check(crm_type, "email", email)
        assert reason is not None and reason.endswith("is not a valid e-mail address")


def test_the_reported_erp_email_reads_well():
    assert check("company", "email", "post10@erp") == '"post10@erp" is not a valid e-mail address'
    problem = value_problem("contact", "email", "post10@erp")
    assert problem.message == "Enter a valid e-mail address, such as name@example.com."  # the form's wording
    assert (problem.crm_type, problem.key, problem.label) == ("contact", "email", "E-mail")


# --- web sites ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("url", ["http://acme.example", "HTTPS://acme.example/x?y=1", "https://localhost:8080/p",
                                 "https://xn--bcher-kva.example/", "http://192.168.1.10/"])
def test_http_and_https_addresses_are_accepted(url):
    assert is_web_address(url)
    assert check("company", "url", url) is None
    assert check("project", "url", url) is None


@pytest.mark.parametrize("url", ["javascript:alert(1)", "JavaScript:alert(document.cookie)", " javascript:alert(1)",
                                 "data:text/html,<script>alert(1)</script>", "vbscript:msgbox(1)",
                                 "ftp://files.example", "mailto:post@acme.example", "file:///etc/passwd",
                                 "www.example.com", "//example.com", "https://", "http://exa mple.com",
                                 "http://exa\u00a0mple.com", "http://[::1", "https:///path-only"])
def test_other_schemes_bare_domains_and_broken_addresses_are_refused(url):
    assert not is_web_address(url)
    for crm_type in ("company", "project"):
        reason = check(crm_type, "url", url)
        assert reason is not None and reason.endswith("is not a web address starting with http:// or https://")


def test_a_javascript_url_is_named_in_the_reason():
    assert check("company", "url", "javascript:alert(1)") == (
        '"javascript:alert(1)" is not a web address starting with http:// or https://')
    assert value_problem("project", "url", "javascript:alert(1)").message == (
        "Enter a web address starting with http:// or https://.")


# --- text -----------------------------------------------------------------------------------------------------


def test_every_text_field_holds_its_column_length_and_no_more():
    for crm_type, specs in BUILTIN_CRM_FIELDS.items():
        for spec in specs:
            if spec.type != CrmFieldType.TEXT or spec.key in ("email", "url"):
                continue
            assert check(crm_type, spec.key, "x" * spec.max_length) is None, spec.key
            reason = check(crm_type, spec.key, "x" * (spec.max_length + 1))
            assert reason is not None and f"is longer than {spec.max_length} characters" in reason, spec.key


def test_over_long_text_is_quoted_cut_at_60_characters():
    reason = check("company", "name", "N" * 250)
    assert reason == '"' + "N" * 59 + '…" is longer than 200 characters (250)'
    assert value_problem("company", "name", "N" * 250).message == "Name can be at most 200 characters."
    # an over-long e-mail is refused for its length first (the column cannot hold it)
    assert "longer than 254" in check("contact", "email", "a" * 250 + "@example.com")


def test_length_is_counted_as_stored():
    # the form trims before it checks; a raw value from the ERP is stored as it is, so it is counted as it is
    assert check("company", "code", "C" * 40) is None
    assert "longer than 40" in check("company", "code", "C" * 40 + " ")


def test_long_text_has_no_length_limit():
    assert check("project", "description", "line\n" * 10_000) is None


@pytest.mark.parametrize("value, shown", [("Acme\x00AS", r'"Acme\x00AS"'), ("Acme \ud800", r'"Acme \ud800"')])
def test_characters_no_database_can_store_are_refused_and_shown_escaped(value, shown):
    for crm_type, key in (("company", "name"), ("contact", "last_name"), ("project", "description"),
                          ("company", "email")):
        assert check(crm_type, key, value) == f"{shown} contains a character the CRM cannot store"
    assert crm_rules.storable_text(value) == shown.strip('"')


def test_text_fields_hold_text_only():
    assert check("company", "phone", 22334455) == '"22334455" is not text'
    assert "is not text" in check("company", "name", ["Acme"])


# --- blank and required ---------------------------------------------------------------------------------------


def test_blank_is_allowed_in_every_field_that_is_not_required():
    for crm_type, specs in BUILTIN_CRM_FIELDS.items():
        for spec in specs:
            for blank in (None, "", "   "):
                if not spec.required and spec.type != CrmFieldType.CHECKBOX:  # a checkbox is never blank
                    assert check(crm_type, spec.key, blank) is None, spec.key


@pytest.mark.parametrize("crm_type, label", [("company", "Name"), ("project", "Project name")])
def test_a_required_field_must_not_be_blank(crm_type, label):
    # (the sync engine and the import check required fields themselves too; the rules report it as well)
    for blank in (None, "", "  "):
        assert check(crm_type, "name", blank) == f"{label} is blank, and a {crm_type} needs one"
    assert value_problem(crm_type, "name", "").message == f"{label} is required."
    assert check(crm_type, "name", "", current="") is not None  # even when the record has no name today


# --- dates ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [date(2030, 1, 31), "2030-01-31", datetime(2030, 1, 31, 12, 30), "1800-01-01"])
def test_dates_are_dates(value):
    assert check("project", "end_date", value) is None
    assert crm_rules.as_date(value) in (date(2030, 1, 31), date(1800, 1, 1))


@pytest.mark.parametrize("value", ["31.01.2030", "2030-1-5", "1981-02-29", "tomorrow", 20300101, 2030.5, True])
def test_what_is_not_a_date_is_refused(value):
    reason = check("project", "end_date", value)
    assert reason is not None and reason.endswith("is not a date (YYYY-MM-DD)")
    assert value_problem("contact", "birth_date", value).message == "Enter birth date as a date (YYYY-MM-DD)."
    with pytest.raises(ValueError):
        crm_rules.as_date(value)


def test_dates_before_1800_are_refused():
    assert check("project", "end_date", date(1799, 12, 31)) == '"1799-12-31" is before the year 1800'
    assert value_problem("project", "end_date", "1066-10-14").message == "Enter a realistic end date."
    assert check("contact", "birth_date", date(1799, 1, 1)) is not None


def test_a_birth_date_cannot_be_in_the_future_but_an_end_date_can():
    future = date.today() + timedelta(days=2)
    assert check("contact", "birth_date", future) == f'"{future.isoformat()}" is in the future, and a birth date ' \
                                                     "cannot be"
    assert value_problem("contact", "birth_date", future).message == "The birth date cannot be in the future."
    assert check("contact", "birth_date", date.today() - timedelta(days=1)) is None
    assert check("project", "end_date", future) is None


# --- lists ----------------------------------------------------------------------------------------------------


def test_a_list_field_holds_a_live_item_of_its_own_list():
    assert check("company", "country_id", 1) is None
    assert check("company", "business_id", 3) is None
    assert check("project", "status_id", 4) is None


@pytest.mark.parametrize("crm_type, key, value, reason", [
    ("company", "country_id", 999999, "#999999 is not an item of the Country list"),
    ("company", "country_id", 3, '"Retail" (#3) is an item of another list, not the Country list'),
    ("project", "status_id", 1, '"Norway" (#1) is an item of another list, not the Status list'),
    ("company", "country_id", 2, '"Atlantis" (#2) is a deleted item of the Country list'),
    ("company", "category_id", "abc", '"abc" is not a list item id'),
    ("company", "category_id", "1", '"1" is not a list item id'),  # ids, as stored; parsing is the caller's
    ("company", "category_id", True, '"True" is not a list item id'),
    ("company", "category_id", 1.0, '"1.0" is not a list item id'),
])
def test_bad_list_ids_are_refused(crm_type, key, value, reason):
    result = check(crm_type, key, value)
    assert result is not None and result.endswith(reason)
    spec_label = {"country_id": "country", "status_id": "status", "category_id": "category"}[key]
    assert value_problem(crm_type, key, value, list_items=ITEMS).message == f"Choose a {spec_label} from the list."


def test_a_deleted_item_stays_on_the_record_that_has_it():
    assert check("company", "country_id", 2, current=2) is None
    assert check("company", "country_id", 2, current=1) is not None
    assert check("company", "country_id", 2, current=None) is not None


# --- the record's own value -----------------------------------------------------------------------------------


def test_a_value_the_record_already_holds_is_accepted():
    # legacy data (stored before these rules, or by a path that did not check) never blocks a save
    assert check("company", "email", "post10@erp", current="post10@erp") is None
    assert check("company", "url", "javascript:alert(1)", current="javascript:alert(1)") is None
    assert check("contact", "birth_date", date(2999, 1, 1), current=date(2999, 1, 1)) is None
    # ...but a new value is checked, and no current value (a new record) exempts nothing
    assert check("company", "email", "post10@erp", current="post11@erp") is not None
    assert check("company", "email", "post10@erp", current=MISSING) is not None
    assert check("company", "email", "post10@erp", current=None) is not None
    # a date is not "the same" as a datetime or a text of it
    assert check("contact", "birth_date", "2999-01-01", current=date(2999, 1, 1)) is not None


# --- several values, arguments --------------------------------------------------------------------------------


def test_check_crm_values_reports_the_failing_keys_only():
    values = {"name": "Acme AS", "email": "post10@erp", "url": "javascript:alert(1)", "phone": "+47 22 00 00 00",
              "country_id": 2, "business_id": 3, "code": "C" * 41}
    assert check_crm_values("company", values, list_items=ITEMS) == {
        "email": '"post10@erp" is not a valid e-mail address',
        "url": '"javascript:alert(1)" is not a web address starting with http:// or https://',
        "country_id": '"Atlantis" (#2) is a deleted item of the Country list',
        "code": '"' + "C" * 41 + '" is longer than 40 characters (41)',
    }
    assert check_crm_values("company", {"name": "Acme AS", "email": "post@acme.example"}, list_items=ITEMS) == {}


def test_check_crm_values_leaves_non_fields_alone_and_exempts_the_records_values():
    assert check_crm_values("contact", {"company_id": "whatever", "last_name": "Berg"}, list_items=ITEMS) == {}
    record = Company(name="Acme", email="post10@erp", country_id=2)
    assert check_crm_values("company", {"email": "post10@erp", "country_id": 2}, record=record,
                            list_items=ITEMS) == {}
    assert set(check_crm_values("company", {"email": "other@erp", "url": "data:x"}, record=record,
                                list_items=ITEMS)) == {"email", "url"}


def test_crm_types_are_the_keys_of_crm_models_and_unknown_keys_raise():
    assert check(CrmType.COMPANY, "email", "post10@erp") == check("company", "email", "post10@erp")
    with pytest.raises(ValueError):
        check_crm_value("customer", "email", "x")
    with pytest.raises(KeyError):
        check_crm_value("company", "no_such_field", "x")
    with pytest.raises(KeyError):
        check_crm_value("contact", "company_id", 1)  # not a CRM field: the caller checks the company


@pytest.mark.parametrize("crm_type, key, error", [
    ("Company", "email", ValueError), ("company ", "email", ValueError), (["company"], "email", ValueError),
    ("company", "Email", KeyError), ("company", " email", KeyError), ("company", "udf_text_1", KeyError),
    ("company", ["email"], TypeError),
])
def test_record_types_and_field_keys_are_exact(crm_type, key, error):
    """The built-in fields' lookup table folds nothing: other cases and spaces are unknown as before."""
    with pytest.raises(error):
        value_problem(crm_type, key, "x", list_items=ITEMS)


def test_a_problem_names_the_record_type_as_plain_text():
    found = value_problem(CrmType.COMPANY, "email", "post10@erp", list_items=ITEMS)
    assert (found.crm_type, type(found.crm_type), found.key, found.label) == ("company", str, "email", "E-mail")


# --- list items from the database -----------------------------------------------------------------------------


@pytest.mark.db
def test_without_list_items_the_database_is_asked_once(app_ctx):
    norway, retail = (db.session.scalar(select(ListItem.id).where(ListItem.list_name == list_name,
                                                                   ListItem.name == name))
                      for list_name, name in ((CrmList.COUNTRY, "Norway"), (CrmList.BUSINESS, "Retail")))
    assert check_crm_value("company", "country_id", norway) is None
    assert "another list" in check_crm_value("company", "country_id", retail)
    seen = []

    def count(_conn, _cursor, statement, *_args):
        seen.append(statement)

    event.listen(db.engine, "before_cursor_execute", count)
    try:
        problems = check_crm_values("company", {"country_id": norway, "business_id": norway,
                                                "category_id": 10 ** 9})
    finally:
        event.remove(db.engine, "before_cursor_execute", count)
    assert set(problems) == {"business_id", "category_id"}
    assert len([q for q in seen if "list_item" in q]) == 1
    items = crm_rules.load_list_items()
    assert items[norway] == ListItemInfo(CrmList.COUNTRY, "Norway", False)
    assert crm_rules.load_list_items([]) == {}

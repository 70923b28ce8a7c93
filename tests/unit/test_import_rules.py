"""Unit tests of portal.services.import_rules (issue #18 point 3): the phone/e-mail/web-site policies on a CRM
record that already exists, the ID rule's settings and helpers."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from portal.services import import_rules as rules
from portal.services.import_settings import ImportProblem, ImportSettings


def _contact(**values):
    base = dict(phone_direct="", phone_mobile="", phone_private="", phone_other="", email="", url="")
    return SimpleNamespace(**{**base, **values})


def _plan(record, key, new, policy, written=(), taken=None):
    return rules.plan_contact_info("contact", record, key, new, policy, written=set(written).__contains__,
                                   taken=set() if taken is None else taken, label=lambda k: k)


@pytest.mark.parametrize("policy, old, new, changes", [
    ("add", "", "+47 2", [("phone_mobile", "", "+47 2")]),
    ("add", "+47 1", "+47 2", [("phone_other", "", "+47 2")]),
    ("keep", "", "+47 2", [("phone_mobile", "", "+47 2")]),
    ("keep", "+47 1", "+47 2", []),
    ("replace", "+47 1", "+47 2", [("phone_mobile", "+47 1", "+47 2")]),
    ("replace", "+47 1", "", []),  # no policy blanks a CRM value
    ("ignore", "", "+47 2", []),
    ("ignore", "+47 1", "+47 2", []),
])
def test_phone_policies(policy, old, new, changes):
    assert _plan(_contact(phone_mobile=old), "phone_mobile", new, policy)[0] == changes


def test_add_uses_the_spare_field_once_and_only_when_it_is_free():
    record = _contact(phone_mobile="1", phone_direct="2")
    taken: set[str] = set()
    assert _plan(record, "phone_mobile", "3", "add", taken=taken)[0] == [("phone_other", "", "3")]
    changes, note = _plan(record, "phone_direct", "4", "add", taken=taken)
    assert changes == [] and "no free field" in note
    assert _plan(record, "phone_mobile", "3", "add", written={"phone_other"})[0] == []  # the import writes it
    assert _plan(_contact(phone_mobile="1", phone_other="9"), "phone_mobile", "3", "add")[0] == []
    changes, note = _plan(_contact(phone_mobile="1", phone_direct="+47 3"), "phone_mobile", "+473", "add")
    assert changes == [] and "already in phone_direct" in note


def test_email_add_has_no_spare_field():
    changes, note = _plan(_contact(email="a@x.example"), "email", "b@x.example", "add")
    assert changes == [] and "keeps a@x.example" in note


def test_policy_applies_only_to_phone_email_and_web_fields():
    settings = ImportSettings(phone_policy="add", email_policy="action", url_policy="ignore")
    assert rules.contact_info_policy(settings, "contact", "phone_private") == "add"
    assert rules.contact_info_policy(settings, "company", "fax") == "add"
    assert rules.contact_info_policy(settings, "company", "email") is None
    assert rules.contact_info_policy(settings, "project", "url") == "ignore"
    assert rules.contact_info_policy(settings, "company", "name") is None


@pytest.mark.parametrize("settings, field", [
    (dict(company_match="id", company_action="add"), "company_action"),
    (dict(contact_match="id", contact_id_source="field"), "contact_id_field"),
    (dict(project_match="id", project_id_source="nonsense"), "project_id_source"),
    (dict(email_policy="sometimes"), "email_policy"),
    (dict(company_from_name=True), "company_name_field"),
])
def test_invalid_settings_name_their_field(settings, field):
    with pytest.raises(ImportProblem) as caught:
        ImportSettings(**settings).validate()
    assert caught.value.field == field


def test_old_options_without_the_new_settings_still_load():
    settings = ImportSettings.from_dict({"company_match": "name", "company_action": "merge"})
    assert (settings.phone_policy, settings.company_id_source, settings.company_from_name) == ("action", "link", False)
    assert ImportSettings.from_dict(ImportSettings(company_match="id", company_id_source="field",
                                                   company_id_field="NUMBER1").to_dict()).company_id_field == "NUMBER1"


def test_id_text_and_company_name_helpers():
    assert rules.id_text(10042.0) == "10042" and rules.id_text(" C-7 ") == "C-7" and rules.id_text(None) == ""
    assert rules.guess_company_name_field([("TITLE", "Title"), ("COMPANYNAME", "Company name")]) == "COMPANYNAME"
    assert rules.guess_company_name_field([("org", "Company (as typed)")]) == "org"
    assert rules.company_name_of({"FieldValues": {"C": "  Nordic   AS "}}, "C") == "Nordic AS"
    assert rules.company_name_of({"FieldValues": {}}, "C") == ""

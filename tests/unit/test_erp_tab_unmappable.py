"""The ERP tab's rules for values one side cannot hold (Connect / Create in ERP never blank them): which compare
rows are left as they are on both sides, the link base Connect writes for them, and what Create leaves out.

Models are built in memory (never added to a session); ``app_ctx`` where a CRM list item name is looked up.
"""

from __future__ import annotations

from sqlalchemy import select

from portal.extensions import db
from portal.models import Company, ListItem, ListItemMapping
from portal.services import erp_tab as svc
from portal.services.erp_tab.comparison import _plan
from portal.services.erp_tab.create_in_erp import _new_values
from portal.services.sync.fieldmap import crm_side, erp_side, mapped_fields, rules
from portal.services.sync.merge import merge
from tests.unit.test_erp_tab_rules import config, erp_field


def _item(name: str) -> ListItem:
    return db.session.scalar(select(ListItem).where(ListItem.name == name, ListItem.list_name == "country"))


def _countries(**extra):
    """A Country list field with only NO ↔ Norway mapped."""
    country = erp_field("country", "List", fid=1, crm="country_id", list_name="Countries", **extra)
    country.list_mappings = [ListItemMapping(erp_item_key="NO", crm_item_id=_item("Norway").id)]
    return country


def _next_merge(record, cfg, base, erp_values, *, crm_first=True):
    """The engine's next three-way merge of these values (fields whose CRM value fails to convert are skipped,
    as the engine does)."""
    fields = mapped_fields(cfg, synced_only=True)
    crm, crm_errors = crm_side(record, fields, erp_now=erp_values)
    erp, _errors = erp_side(erp_values, fields)
    usable = [rule for rule in rules(fields) if rule.key not in crm_errors]
    return merge(usable, base, crm, erp, policy="priority", crm_rank=0 if crm_first else 1,
                 erp_rank=1 if crm_first else 0)


def test_an_unmapped_erp_item_over_a_blank_crm_value_is_left_as_it_is_and_offers_no_blank(app_ctx):
    cfg = config([_countries()])
    rows, unsyncable, _same = _plan(Company(name="Acme"), cfg, {"FieldValues": {"country": "DK"}},
                                    {"country": {"DK": "Denmark"}})
    [row] = rows
    assert unsyncable == [] and row.kept == "Country “Denmark” has no list mapping: left as it is on both sides"
    comparison = svc.Comparison(actor={}, rows=rows, unsyncable=[], same=0, ask=[], lists={}, prefill={},
                                erp_stamp="", crm_stamp="")
    assert comparison.choices == []  # nothing to pick: no "(blank)" on offer


def test_an_unmapped_crm_item_is_left_as_it_is_whatever_the_erp_holds(app_ctx):
    cfg = config([_countries()])
    record = Company(name="Acme", country_id=_item("Germany").id)
    for erp_value in (None, "NO"):
        [row] = _plan(record, cfg, {"FieldValues": {"country": erp_value}})[0]
        assert row.kept == "Country “Germany” has no list mapping: left as it is on both sides"


def test_both_items_unmapped_and_one_way_fields_are_kept_too(app_ctx):
    cfg = config([_countries(to_crm=False)])  # CRM -> ERP only: the list mapping's promise holds all the same
    record = Company(name="Acme", country_id=_item("Germany").id)
    [row] = _plan(record, cfg, {"FieldValues": {"country": "DK"}}, {"country": {"DK": "Denmark"}})[0]
    assert row.kept == "Country “Germany” and “Denmark” have no list mapping: left as it is on both sides"
    [row] = _plan(Company(name="Acme"), cfg, {"FieldValues": {"country": "DK"}})[0]
    assert row.kept.startswith("Country “DK” has no list mapping")  # no list texts read: the key


def test_texts_too_long_or_of_the_wrong_type_are_kept_and_mappable_blanks_stay_a_choice():
    cfg = config([erp_field("orgnr", fid=1, crm="vat_no", max_length=5),
                  erp_field("count", "Integer", fid=2, crm="department"),
                  erp_field("email", fid=3, crm="email")])
    record = Company(name="Acme", vat_no="1234567", department=None, email="a@x.example")
    rows, _unsyncable, _same = _plan(record, cfg, {"FieldValues": {"orgnr": None, "count": "many",
                                                                   "email": None}})
    by_key = {row.key: row for row in rows}
    assert by_key["orgnr"].kept == ("Orgnr “1234567” cannot be stored in the ERP (Orgnr can hold at most 5 "
                                    "characters in the ERP): left as it is on both sides")
    assert by_key["count"].kept.startswith("Count “many” cannot be stored in the CRM (")
    assert by_key["email"].kept == "" and by_key["email"].only is None  # both mappable: the user chooses


def test_the_link_base_takes_the_side_that_can_be_carried_over(app_ctx):
    cfg = config([_countries(), erp_field("name", fid=2, crm="name")])
    blank = Company(name="Acme")
    base = svc.link_base(blank, cfg, {"name": "Acme", "country": "DK"})
    assert base == {"name": "Acme", "country": None}  # the CRM's blank: Denmark reads as an ERP-side change
    planned = _next_merge(blank, cfg, base, {"name": "Acme", "country": "DK"})
    assert planned.to_erp == {} and not planned.conflicts  # the next sync never blanks the ERP's Denmark
    # The base the bug's fix must not write: no base for the field, so the next sync calls it a conflict, and the
    # CRM (on top of the sync priority) wins with its blank.
    assert _next_merge(blank, cfg, {"name": "Acme"}, {"name": "Acme", "country": "DK"}).to_erp == {"country": None}

    germany = Company(name="Acme", country_id=_item("Germany").id)
    assert svc.link_base(germany, cfg, {"name": "Acme", "country": None}) == {"name": "Acme", "country": None}
    both = svc.link_base(germany, cfg, {"name": "Acme", "country": "DK"})
    assert both == {"name": "Acme"}  # neither side can be carried over: never agreed


def test_create_leaves_an_unmappable_crm_value_out_and_says_so(app_ctx):
    cfg = config([erp_field("name", fid=1, crm="name"), _countries()])
    notes: list[str] = []
    values, problems = _new_values(Company(name="Acme", country_id=_item("Germany").id), cfg, notes)
    assert values == {"name": "Acme"} and problems == []
    assert notes == ["Country “Germany” has no list mapping: left out of the new Customer; the CRM keeps it."]

    defaulted = config([erp_field("name", fid=1, crm="name"), _countries(has_default=True, default_value="NO")])
    notes = []
    values, _problems = _new_values(Company(name="Acme", country_id=_item("Germany").id), defaulted, notes)
    assert values == {"name": "Acme", "country": "NO"}
    assert notes == ["Country “Germany” has no list mapping: the new Customer gets the default value instead; "
                     "the CRM keeps it."]


def test_create_is_stopped_only_when_the_erp_needs_the_value_left_out():
    cfg = config([erp_field("name", fid=1, crm="name", max_length=2, access="Mandatory")])
    notes: list[str] = []
    values, problems = _new_values(Company(name="Acme"), cfg, notes)
    assert values == {} and notes == []
    assert problems == ["Name “Acme” cannot be stored in the ERP (Name can hold at most 2 characters in the ERP), "
                        "and the ERP needs a value for Name."]

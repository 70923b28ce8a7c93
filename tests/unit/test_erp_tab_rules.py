"""The ERP tab's rules that need no connector: scope → rights, actor types per record type, idempotency keys,
advanced-search restrictions, the value comparison of the connect step, ask-user answers and engine results.

Models are built in memory (never added to a session) unless a test says otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from portal.models import (
    ActorTypeConfig,
    Company,
    Connection,
    ConnectionAccess,
    Contact,
    ErpField,
    ListItemMapping,
    User,
    UserGroup,
)
from portal.services import erp_tab as svc
from portal.services import sync_now_text
from portal.services.erp_tab import ask_user, comparison, create_in_erp, linking


def user(uid: int = 1, *, licence: bool = True, active: bool = True, groups=()) -> User:
    person = User(id=uid, email=f"u{uid}@example.com", name=f"User {uid}", erp_licence=licence, is_active=active)
    person.groups = list(groups)
    return person


def connection(*, all_access=True, all_can_create=True, access=()) -> Connection:
    conn = Connection(id=7, name="ERP", guid="g-1", all_access=all_access, all_can_create=all_can_create)
    conn.access = list(access)
    return conn


def erp_field(key, field_type="Text", *, fid=None, crm=None, to_crm=True, to_erp=True, access="Normal", **extra):
    values = {"field_key": key, "display_name": key.title(), "field_type": field_type, "crm_field": crm,
              "sync_to_crm": to_crm if crm else False, "sync_to_erp": to_erp if crm else False, "access": access,
              "missing_in_erp": False, "max_length": 0, "list_name": "", "rank": 0, "connector_rank": 0,
              "ask_user": False, "mandatory": False, "has_default": False, "show_in_gui": False,
              "show_in_search": False, **extra}
    f = ErpField(id=fid, **values)
    f.list_mappings = []
    return f


def config(fields, *, actor_type="Customer", crm_type="company", searchable=(), active=True) -> ActorTypeConfig:
    cfg = ActorTypeConfig(erp_actor_type=actor_type, crm_type=crm_type, is_active=active, supported=True,
                          searchable_fields=list(searchable))
    cfg.fields = list(fields)
    return cfg


# ------------------------------------------------------------------------------------------------ scope


def test_everyone_scope_lets_licensed_users_connect_and_create_when_allowed():
    assert svc.user_access(user(), connection()) == svc.Access(True, True)
    assert svc.user_access(user(), connection(all_can_create=False)) == svc.Access(True, False)


def test_no_licence_no_user_or_an_inactive_user_has_no_access():
    assert svc.user_access(user(licence=False), connection()) is None
    assert svc.user_access(user(active=False), connection()) is None
    assert svc.user_access(None, connection()) is None


def test_specific_scope_combines_the_users_entry_and_the_entries_of_their_groups():
    sales = UserGroup(id=3, name="Sales")
    other = UserGroup(id=4, name="Other")
    entries = [ConnectionAccess(user_id=1, can_connect=True, can_create=False),
               ConnectionAccess(group_id=3, can_connect=True, can_create=True),
               ConnectionAccess(group_id=4, can_connect=True, can_create=True)]
    conn = connection(all_access=False, access=entries)
    assert svc.user_access(user(1), conn) == svc.Access(True, False)  # the user's own entry: connect only
    assert svc.user_access(user(1, groups=[other]), conn) == svc.Access(True, True)  # create through a group
    assert svc.user_access(user(2, groups=[sales]), conn) == svc.Access(True, True)
    assert svc.user_access(user(2), conn) is None  # neither the user nor a group of theirs is in the scope


def test_create_needs_connect_too_and_a_view_only_entry_can_do_neither():
    conn = connection(all_access=False, access=[ConnectionAccess(user_id=1, can_connect=False, can_create=True)])
    assert svc.user_access(user(1), conn) == svc.Access(False, False)


def test_only_active_supported_actor_types_of_the_record_type_count_in_protocol_order():
    conn = connection()
    supplier = config([], actor_type="Supplier")
    customer = config([], actor_type="Customer")
    person = config([], actor_type="Person", crm_type="contact")
    inactive = config([], actor_type="Partner", active=False)
    gone = config([], actor_type="Project", crm_type="project")
    gone.supported = False
    conn.actor_types = [supplier, person, inactive, customer, gone]
    assert [c.erp_actor_type for c in svc.tab_actor_types(conn, "company")] == ["Customer", "Supplier"]
    assert [c.erp_actor_type for c in svc.tab_actor_types(conn, "contact")] == ["Person"]
    assert svc.tab_actor_types(conn, "project") == []


def test_section_rights_follow_access_and_the_contact_rule():
    section = svc.Section(connection(), svc.Access(True, True), "contact", Contact(), [], None,
                          blocked="Connect the company first.")
    assert section.can_connect is False and section.can_create is False
    with pytest.raises(svc.RuleBroken, match="Connect the company first"):
        svc.require_connect(section)
    section.blocked = ""
    assert section.can_connect and section.can_create
    section.access = svc.Access(True, False)
    with pytest.raises(svc.Refused, match="may not create records in the ERP on ERP"):
        svc.require_create(section)
    section.access = svc.Access(False, False)
    with pytest.raises(svc.Refused, match="may not connect or disconnect"):
        svc.require_disconnect(section)


# ------------------------------------------------------------------------------------------ idempotency


def test_the_idempotency_key_is_stable_per_dialog_and_record():
    key = svc.idempotency_key("g-1", "company", 5, "n" * 24)
    assert key == svc.idempotency_key("g-1", "company", 5, "n" * 24)
    assert key.startswith("erp-tab-") and len(key) == len("erp-tab-") + 40
    others = {svc.idempotency_key("g-2", "company", 5, "n" * 24), svc.idempotency_key("g-1", "contact", 5, "n" * 24),
              svc.idempotency_key("g-1", "company", 6, "n" * 24), svc.idempotency_key("g-1", "company", 5, "m" * 24)}
    assert key not in others and len(others) == 4


@pytest.mark.parametrize("nonce, ok", [("A" * 16, True), ("a_b-c" * 4, True), ("short", False), ("x" * 65, False),
                                       ("bad nonce with spaces!", False), ("", False)])
def test_nonces_are_checked(nonce, ok):
    assert bool(svc.NONCE_RE.match(nonce)) is ok


# --------------------------------------------------------------------------------------- restrictions


def _search_config():
    return config([erp_field("name", fid=1), erp_field("employees", "Integer", fid=2),
                   erp_field("country", "List", fid=3, list_name="Countries"),
                   erp_field("active", "Checkbox", fid=4), erp_field("founded", "Date", fid=5),
                   erp_field("notes", fid=6)],
                  searchable=["name", "employees", "country", "active", "founded", "gone"])


def test_restrictions_use_the_operators_and_value_types_of_each_field():
    form = {"use_1": ["1"], "op_1": ["contains"], "v_1": ["acme"],
            "use_2": ["1"], "op_2": ["between"], "v_2": ["10"], "v2_2": ["50"],
            "use_3": ["1"], "op_3": ["oneof"], "v_3": ["NO", "SE"],
            "use_4": ["1"], "op_4": ["="], "v_4": ["true"],
            "use_5": ["1"], "op_5": ["afterOrEqual"], "v_5": ["2020-01-31"],
            "use_6": ["1"], "op_6": ["="], "v_6": ["not searchable"]}
    assert svc.parse_restrictions(_search_config(), form) == [
        {"FieldKey": "name", "Operator": "contains", "Values": ["acme"]},
        {"FieldKey": "employees", "Operator": "between", "Values": [10, 50]},
        {"FieldKey": "country", "Operator": "oneof", "Values": ["NO", "SE"]},
        {"FieldKey": "active", "Operator": "=", "Values": [True]},
        {"FieldKey": "founded", "Operator": "afterOrEqual", "Values": ["2020-01-31"]},
    ]


def test_unticked_criteria_are_ignored_and_none_ticked_is_an_error():
    with pytest.raises(svc.InvalidInput, match="Tick at least one criterion"):
        svc.parse_restrictions(_search_config(), {"op_1": ["contains"], "v_1": ["acme"]})


@pytest.mark.parametrize("form, name, message", [
    ({"use_1": ["1"], "op_1": [">"], "v_1": ["x"]}, "op_1", "Choose how to compare Name"),
    ({"use_2": ["1"], "op_2": ["="], "v_2": ["many"]}, "v_2", "is not a whole number"),
    ({"use_2": ["1"], "op_2": ["between"], "v_2": ["1"]}, "v_2", "Enter both values"),
    ({"use_1": ["1"], "op_1": ["="], "v_1": ["  "]}, "v_1", "Enter a value for Name"),
    ({"use_5": ["1"], "op_5": ["before"], "v_5": ["31.01.2020"]}, "v_5", "is not a date"),
])
def test_bad_criteria_are_named(form, name, message):
    with pytest.raises(svc.InvalidInput) as caught:
        svc.parse_restrictions(_search_config(), form)
    assert message in caught.value.errors[name]


# --------------------------------------------------------------------------------------------- compare


def test_compare_rows_are_the_differing_synced_fields_with_what_each_side_may_take(app_ctx):
    cfg = config([
        erp_field("name", fid=1, crm="name"),
        erp_field("email", fid=2, crm="email"),
        erp_field("phone", fid=3, crm="phone", to_erp=False),  # only ERP -> CRM
        erp_field("orgnr", fid=4, crm="vat_no", to_crm=False),  # only CRM -> ERP
        erp_field("number", fid=5, crm="code", access="ReadOnly"),  # read-only in the ERP
        erp_field("fax", fid=6, crm="fax", to_crm=False, to_erp=False),  # mapped without direction: ignored
        erp_field("dept", fid=7, crm="department", max_length=3),  # the CRM value is too long for the ERP
    ])
    record = Company(name="Acme", email="a@x.no", phone="1", vat_no="9", code="C1", fax="f", department="Sales")
    actor = {"FieldValues": {"name": "Acme", "email": "b@x.no", "phone": "2", "orgnr": "8", "number": "C2",
                             "fax": "g", "dept": "HQ"}}
    rows, unsyncable, same = comparison._plan(record, cfg, actor)
    by_key = {row.key: row for row in rows}
    assert same == 1 and unsyncable == [] and set(by_key) == {"email", "phone", "orgnr", "number", "dept"}
    assert by_key["email"].only is None and by_key["email"].name == "pick_2"
    assert (by_key["email"].crm_value, by_key["email"].erp_value) == ("a@x.no", "b@x.no")
    assert by_key["phone"].only == "erp" and "only ERP → CRM" in by_key["phone"].crm_blocked
    assert by_key["orgnr"].only == "crm" and "only CRM → ERP" in by_key["orgnr"].erp_blocked
    assert by_key["number"].only == "erp" and "read-only in the ERP" in by_key["number"].crm_blocked
    assert by_key["dept"].only == "erp" and "at most 3 characters" in by_key["dept"].crm_blocked


def test_a_blank_erp_value_cannot_empty_a_required_crm_field_and_unusable_rows_are_reported(app_ctx):
    cfg = config([erp_field("name", fid=1, crm="name", to_erp=False)])
    rows, unsyncable, _same = comparison._plan(Company(name="Acme"), cfg, {"FieldValues": {"name": ""}})
    assert rows == []
    assert unsyncable[0][0] == "Name" and "the CRM needs a value for Name" in unsyncable[0][1]


def test_list_values_compare_through_the_list_mapping(app_ctx):
    from sqlalchemy import select

    from portal.extensions import db
    from portal.models import ListItem

    norway = db.session.scalar(select(ListItem).where(ListItem.name == "Norway"))
    country = erp_field("country", "List", fid=1, crm="country_id", list_name="Countries")
    country.list_mappings = [ListItemMapping(erp_item_key="NO", crm_item_id=norway.id)]
    cfg = config([country])
    record = Company(name="Acme", country_id=norway.id)
    assert comparison._plan(record, cfg, {"FieldValues": {"country": "NO"}})[0] == []
    rows, _unsyncable, _same = comparison._plan(record, cfg, {"FieldValues": {"country": "XX"}}, {"country": {"XX": "Ruritania"}})
    assert rows[0].crm_text == "Norway" and rows[0].erp_text == "Ruritania"
    assert rows[0].only == "crm" and "not mapped to a CRM list item" in rows[0].erp_blocked


def test_the_agreed_base_holds_only_the_fields_both_sides_share():
    cfg = config([erp_field("name", fid=1, crm="name"), erp_field("email", fid=2, crm="email"),
                  erp_field("phone", fid=3, crm="phone")])
    record = Company(name="Acme", email="a@x", phone=None)
    assert linking._agreed(record, cfg, {"name": "Acme", "email": "b@x", "phone": None}) == {"name": "Acme",
                                                                                            "phone": None}


def test_ask_user_fields_skip_labels_read_only_and_missing_fields():
    cfg = config([erp_field("a", fid=1, ask_user=True, rank=2), erp_field("b", "Label", fid=2, ask_user=True),
                  erp_field("c", fid=3, ask_user=True, access="ReadOnly"),
                  erp_field("d", fid=4, ask_user=True, missing_in_erp=True), erp_field("e", fid=5, ask_user=True,
                                                                                       rank=1)])
    assert [f.field_key for f in svc.ask_fields(cfg)] == ["e", "a"]


def test_answers_are_checked_for_mandatory_type_and_length():
    credit = erp_field("credit", "Double", fid=1, ask_user=True, mandatory=True)
    code = erp_field("code", fid=2, ask_user=True, max_length=2)
    flag = erp_field("flag", "Checkbox", fid=3, ask_user=True, mandatory=True)
    with pytest.raises(svc.InvalidInput) as caught:
        ask_user._check_answers([credit, code, flag], {"credit": None, "code": "ABC", "flag": False})
    assert caught.value.errors == {"ask_1": "Credit is required.", "ask_2": "Code can be at most 2 characters."}
    assert ask_user._check_answers([credit, code, flag], {"credit": "12.5", "code": "AB", "flag": False}) == {
        "credit": 12.5, "code": "AB", "flag": False}


def test_prefill_prefers_the_erp_value_then_the_default():
    credit = erp_field("credit", "Double", fid=1, ask_user=True, has_default=True, default_value=100.0)
    group = erp_field("group", "List", fid=2, ask_user=True)
    cfg = config([credit, group])
    assert ask_user._ask_prefill(cfg, {"credit": 5, "group": "VIP"}) == {"credit": 5.0, "group": "VIP"}
    assert ask_user._ask_prefill(cfg, {}) == {"credit": 100.0, "group": None}


def test_new_actor_values_are_defaults_overlaid_with_the_mapped_crm_values():
    cfg = config([
        erp_field("name", fid=1, crm="name"),
        erp_field("email", fid=2, crm="email", has_default=True, default_value="none@x"),
        erp_field("terms", fid=3, has_default=True, default_value="NET30"),
        erp_field("phone", fid=4, crm="phone", to_erp=False),  # ERP -> CRM only: not sent
        erp_field("asked", fid=5, has_default=True, default_value="x", ask_user=True),  # asked, not defaulted
    ])
    values, problems = create_in_erp._new_values(Company(name="Acme", email=None, phone="1"), cfg)
    assert values == {"name": "Acme", "email": "none@x", "terms": "NET30"} and problems == []
    too_long = config([erp_field("name", fid=1, crm="name", max_length=2)])
    notes = []  # a value the ERP cannot hold is left out of the new actor and said so, not refused or blanked
    _values, problems = create_in_erp._new_values(Company(name="Acme"), too_long, notes)
    assert problems == [] and notes == ["Name “Acme” cannot be stored in the ERP (Name can hold at most 2 characters "
                                        "in the ERP): left out of the new Customer; the CRM keeps it."]


# --------------------------------------------------------------------------------------------- display


@dataclass
class FakeConflict:
    label: str
    crm_value: str
    erp_value: str
    winner: str
    rule: str


def test_engine_results_are_worded_for_the_screen():
    assert sync_now_text.conflict_text(FakeConflict("E-mail", "a@x", "b@x", "CRM", "CRM wins (sync priority)")) == (
        "E-mail: CRM had “a@x”, ERP had “b@x”; CRM wins (sync priority)")
    assert sync_now_text.conflict_text("plain text") == "plain text"
    assert sync_now_text.conflict_text(("Phone", 1, True)) == "Phone · 1 · Yes"
    assert sync_now_text.triples([("Credit", 1.0, None), "odd"]) == [("Credit", "1", ""), ("odd", "", "")]


@pytest.mark.parametrize("field_type, value, text", [
    ("Text", None, ""), ("Checkbox", True, "y"), ("Checkbox", False, ""), ("Double", 2.50, "2.5"),
    ("Integer", 7, "7"), ("Date", "2026-11-25T10:00:00Z", "2026-11-25"), ("List", "NO", "NO"),
])
def test_values_prefill_inputs_as_text(field_type, value, text):
    assert svc.value_text(field_type, value) == text


def test_crm_checkbox_and_number_values_read_as_people_write_them():
    from types import SimpleNamespace

    record = SimpleNamespace(no_mailings=True, employees=250, credit_limit=3000.0, other=False)
    as_text = {key: svc.crm_value_text(record, SimpleNamespace(crm_key=key, crm_type="checkbox"))
               for key in ("no_mailings", "other")}
    assert as_text == {"no_mailings": "Yes", "other": "No"}
    assert svc.crm_value_text(record, SimpleNamespace(crm_key="employees", crm_type="integer")) == "250"
    assert svc.crm_value_text(record, SimpleNamespace(crm_key="credit_limit", crm_type="decimal")) == "3000"

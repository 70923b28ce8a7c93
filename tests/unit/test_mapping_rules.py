"""Unit tests of the mapping rules (portal/services/mapping/): type compatibility of choices and directions,
automatic pre-mapping, every activation rule, and the all-or-nothing saves (mapping rows, list mapping, defaults,
rank) with their audit trail. No connector is called: GetList is replaced where a rule needs it."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import select

from portal.connectors.protocol import field_metadata
from portal.extensions import db
from portal.models import (
    AuditEvent,
    Connection,
    Connector,
    CrmList,
    Link,
    ListItem,
    ListItemMapping,
    SyncRun,
    crm_fields,
)
from portal.services import connections as connection_service
from portal.services import mapping
from portal.services.connections import Catalogue, apply_catalogue
from portal.services.mapping import MappingError, MappingState

FIELDS = {
    "Customer": [
        field_metadata("NAME", "Name", access="Mandatory", max_length=20, rank=1),
        field_metadata("NUMBER1", "Customer number", access="ReadOnly", rank=2),
        field_metadata("email", "E-mail", rank=3),  # lower case: still pre-mapped
        field_metadata("PostalCity", "City", rank=4),
        field_metadata("COUNTRY", "Country", "List", list_name="countries", rank=5),
        field_metadata("FOUNDED", "Founded", "Date", rank=6),
        field_metadata("ACTIVE", "Active", "Checkbox", rank=7),
        field_metadata("EMPLOYEES", "Employees", "Integer", rank=8),
        field_metadata("CREDIT", "Credit limit", "Double", rank=9),
        field_metadata("INFO", "Info", "Label", rank=10),
        field_metadata("SECRET", "Secret", "Password", rank=11),
        field_metadata("PHONE", "Phone", "Date", rank=12),  # a known key with a type that does not fit
    ],
    "Supplier": [
        field_metadata("NAME", "Name", rank=1),
        field_metadata("TERMS", "Payment terms", "List", list_name="terms", access="Mandatory", rank=2),
    ],
    "Person": [
        field_metadata("FIRSTNAME", "First name", rank=1),
        field_metadata("LASTNAME", "Last name", access="Mandatory", rank=2),
        field_metadata("BIRTHDATE", "Birth date", "Date", rank=3),
    ],
}
ERP_COUNTRIES = {"NO": "Norway", "SE": "Sweden", "DK": "Denmark"}


@pytest.fixture
def ctx(app):
    with app.app_context():
        yield


def build(name: str = "Main", *, types=("Customer",), active=(), tested: bool = True, fields=None) -> Connection:
    connector = Connector(name=f"{name} connector", url="http://127.0.0.1:9/erp")
    connection = Connection(connector=connector, name=name, guid=str(uuid.uuid4()), last_test_ok=tested)
    db.session.add(connection)
    db.session.flush()
    apply_catalogue(connection, Catalogue({t: ((fields or FIELDS)[t], []) for t in types}))
    for actor_type in active:
        connection.actor_type(actor_type).is_active = True
    db.session.commit()
    return connection


def field(connection: Connection, key: str, actor_type: str = "Customer"):
    return next(f for f in connection.actor_type(actor_type).fields if f.field_key == key)


def state(crm=None, to_crm=False, to_erp=False, search=False, gui=False) -> MappingState:
    return MappingState(crm, to_crm, to_erp, search, gui)


def country(name: str) -> int:
    return db.session.scalar(select(ListItem.id).where(ListItem.list_name == CrmList.COUNTRY, ListItem.name == name))


def make_valid(connection: Connection) -> None:
    """Customer switched on, its Mandatory NAME synced both ways."""
    connection.actor_type("Customer").is_active = True
    name = field(connection, "NAME")
    name.sync_to_crm = name.sync_to_erp = True
    db.session.commit()


# ============================================================================== type compatibility

@pytest.mark.parametrize("key, enabled", [
    ("NAME", {"name", "department", "email", "postal_city"}),  # text → every text field, no lists
    ("EMPLOYEES", {"name", "number"}),
    ("COUNTRY", {"country_id", "business_id", "category_id"}),
    ("FOUNDED", set()),  # Company has no date field
    ("ACTIVE", {"no_mailings"}),  # a Checkbox → only the CRM checkbox (issue #18)
    ("SECRET", set()),
])
def test_crm_choices_offer_only_fields_whose_type_fits(ctx, key, enabled):
    connection = build()
    erp_field = field(connection, key)
    choices = {c.key: c for c in mapping.crm_choices(erp_field, "company", {}, {})}
    assert set(choices) == {f.key for f in crm_fields("company")}  # every CRM field is listed
    for crm_key in enabled:
        assert not choices[crm_key].disabled
    for choice in choices.values():
        if choice.disabled:
            assert choice.reason  # a disabled choice always says why
    if not enabled:
        assert all(c.disabled for c in choices.values())


def test_disabled_choice_reasons_name_the_type_rule(ctx):
    connection = build()
    choices = {c.key: c for c in mapping.crm_choices(field(connection, "NAME"), "company", {}, {})}
    assert choices["country_id"].reason == ("Country is a list in the CRM; an ERP Text field can only be mapped to a "
                                            "CRM text or long text field")
    checkbox = {c.key: c for c in mapping.crm_choices(field(connection, "ACTIVE"), "company", {}, {})}
    assert checkbox["country_id"].reason == ("Country is a list in the CRM; an ERP Checkbox field can only be mapped "
                                             "to a CRM checkbox")
    assert not checkbox["no_mailings"].disabled


def test_contact_date_field_takes_only_the_date_field(ctx):
    connection = build(types=("Person",))
    birth = field(connection, "BIRTHDATE", "Person")
    enabled = [c.key for c in mapping.crm_choices(birth, "contact", {}, {}) if not c.disabled]
    assert enabled == ["birth_date"]


@pytest.mark.parametrize("key, crm_key, types, message", [
    ("FIRSTNAME", "birth_date", ("Person",),  # text onto a date
     "Birth date is a date field in the CRM; an ERP Text field can only be mapped to a CRM text or long text field"),
    ("ACTIVE", "country_id", ("Customer",),  # checkbox onto a list
     "Country is a list in the CRM; an ERP Checkbox field can only be mapped to a CRM checkbox"),
    ("NAME", "shoe_size", ("Customer",), "Unknown CRM field “shoe_size”"),
    ("FOUNDED", "name", ("Customer",),
     "Name is a text field in the CRM; an ERP Date field can only be mapped to a CRM date field"),
])
def test_bad_mapping_is_refused_with_the_reason_and_nothing_saved(ctx, key, crm_key, types, message):
    connection = build(types=types)
    actor_type = types[0]
    erp_field = field(connection, key, actor_type)
    before = MappingState.of(erp_field)
    with pytest.raises(MappingError) as refused:
        mapping.save_row(erp_field, state(crm_key, to_crm=True))
    assert message in refused.value.message
    db.session.rollback()
    assert MappingState.of(field(db.session.get(Connection, connection.id), key, actor_type)) == before
    assert db.session.scalars(select(AuditEvent).where(AuditEvent.action == "mapping.update")).all() == []


def test_to_erp_is_impossible_for_read_only_key_and_label_fields(ctx):
    connection = build()
    number = field(connection, "NUMBER1")
    assert "read-only" in mapping.direction_to_erp(number, "company", "code").reason
    assert mapping.direction_to_crm(number, "company", "code", {}).ok  # it can still be shown in the CRM
    with pytest.raises(MappingError, match="cannot sync to the ERP: the field is read-only"):
        mapping.save_row(number, state("code", to_erp=True))
    assert "Label field" in mapping.direction_to_erp(field(connection, "INFO"), "company", "department").reason


def test_directions_need_a_crm_field(ctx):
    connection = build()
    email = field(connection, "email")
    assert mapping.direction_to_crm(email, "company", None, {}).reason == "no CRM field is chosen"
    assert mapping.direction_to_erp(email, "company", None).reason == "no CRM field is chosen"
    assert mapping.validate_row(email, state(None, to_crm=True)) == ["Choose a CRM field before choosing a direction."]


def test_clearing_the_crm_field_clears_both_directions(ctx):
    connection = build()
    email = field(connection, "email")
    mapping.save_row(email, state("email", to_crm=True, to_erp=True))
    mapping.save_row(email, state(None, to_crm=True, to_erp=True, search=True))
    assert MappingState.of(email) == state(None, search=True)


def test_a_crm_field_is_the_to_crm_target_of_one_connection_only(ctx):
    other = build("Other ERP")
    field(other, "email").sync_to_crm = True
    db.session.commit()
    connection = build("Main")
    email = field(connection, "email")
    view = mapping.row_view(email)
    assert view.already_mapped_by == "Other ERP"
    assert not view.to_crm.ok and "connection Other ERP" in view.to_crm.reason
    assert view.to_erp.ok  # it may still sync the other way
    with pytest.raises(MappingError, match="already the to-CRM target of connection Other ERP"):
        mapping.save_row(email, state("email", to_crm=True))
    mapping.save_row(email, state("email", to_erp=True))
    other.deleted = True  # a deleted connection no longer holds the target
    db.session.commit()
    assert mapping.row_view(email).to_crm.ok


def test_a_crm_field_is_mapped_from_one_erp_field_per_tab(ctx):
    connection = build()
    choices = {c.key: c for c in mapping.crm_choices(field(connection, "NAME"), "company",
                                                     mapping.rules._used_in_tab(connection.actor_type("Customer")), {})}
    assert choices["email"].disabled and "already mapped from ERP field E-mail" in choices["email"].reason
    with pytest.raises(MappingError, match="already mapped from ERP field E-mail"):
        mapping.save_row(field(connection, "NAME"), state("email"))


def test_a_field_missing_in_erp_can_only_be_unmapped(ctx):
    connection = build()
    email = field(connection, "email")
    email.missing_in_erp = True
    db.session.commit()
    with pytest.raises(MappingError, match="can only be unmapped"):
        mapping.save_row(email, state("email", to_crm=True))
    mapping.unmap(email)
    assert MappingState.of(email) == state(None)


# ============================================================================== automatic pre-mapping

def test_premapping_matches_known_keys_case_insensitively_and_sets_no_direction(ctx):
    connection = build(types=("Customer", "Person"))
    assert field(connection, "NAME").crm_field == "name"
    assert field(connection, "email").crm_field == "email"
    assert field(connection, "PostalCity").crm_field == "postal_city"
    assert field(connection, "COUNTRY").crm_field == "country_id"
    assert field(connection, "LASTNAME", "Person").crm_field == "last_name"
    assert field(connection, "BIRTHDATE", "Person").crm_field == "birth_date"
    for config in connection.actor_types:
        for erp_field in config.fields:
            assert not erp_field.sync_to_crm and not erp_field.sync_to_erp
    connection.actor_type("Customer").is_active = True
    # pre-mapped fields without a direction block nothing (only the Mandatory NAME lacks a value source)
    assert mapping.mapping_problems(connection) == [
        "Customer: “Name” is Mandatory in the ERP but has neither a direction to the ERP nor a default value."]


def test_the_person_premapping_of_spec_3_5_is_complete(ctx):
    """Every Person key of spec §3.5 pre-maps to a contact field, the postal address, country and web site too."""
    keys = {"FIRSTNAME": "first_name", "MIDDLENAME": "middle_name", "LASTNAME": "last_name", "TITLE": "title",
            "NUMBER": "number", "PHONE_DIRECT": "phone_direct", "PHONE_PRIVATE": "phone_private",
            "PHONE_MOBILE": "phone_mobile", "PHONE_OTHER": "phone_other", "EMAIL": "email", "POSITION": "position",
            "BIRTHDATE": "birth_date", "URL": "url", "POSTALAD1": "postal_address1", "POSTALAD2": "postal_address2",
            "POSTALAD3": "postal_address3", "POSTALZIP": "postal_zip", "POSTALCITY": "postal_city",
            "POSTALSTATE": "postal_state", "POSTALCOUNTY": "postal_county", "POSTALCOUNTRY": "country_id"}
    types = {"BIRTHDATE": "Date", "POSTALCOUNTRY": "List"}
    person = [field_metadata(key, key.title(), types.get(key, "Text"), rank=n,
                             list_name="countries" if key == "POSTALCOUNTRY" else "")
              for n, key in enumerate(keys, start=1)]
    connection = build(types=("Person",), fields={"Person": person})
    assert {key: field(connection, key, "Person").crm_field for key in keys} == keys


def test_premapping_skips_unknown_keys_and_types_that_do_not_fit(ctx):
    connection = build()
    assert field(connection, "PHONE").crm_field is None  # PHONE is known, but this one is a Date
    assert field(connection, "EMPLOYEES").crm_field is None
    assert field(connection, "ACTIVE").crm_field is None


def test_refresh_keeps_mappings_flags_vanished_fields_and_premaps_new_ones(ctx):
    connection = build()
    mapping.save_row(field(connection, "email"), state("email", to_crm=True))
    mapping.save_row(field(connection, "CREDIT"), state("department", to_erp=True))
    fields = [f for f in FIELDS["Customer"] if f["FieldKey"] != "CREDIT"]
    fields.append(field_metadata("FAX", "Fax", rank=20))
    report = apply_catalogue(connection, Catalogue({"Customer": (fields, [])}))
    db.session.commit()
    assert report.missing == ["Customer.CREDIT"] and report.added == ["Customer.FAX"]
    assert MappingState.of(field(connection, "email")) == state("email", to_crm=True)
    credit = field(connection, "CREDIT")
    assert credit.missing_in_erp and credit.crm_field == "department"
    assert field(connection, "FAX").crm_field == "fax" and not field(connection, "FAX").sync_to_crm


# ============================================================================== activation rules

def test_a_valid_connection_has_no_problems(ctx):
    connection = build()
    make_valid(connection)
    assert connection_service.activation_problems(connection) == []


def test_activation_needs_a_passed_test(ctx):
    connection = build(tested=False)
    make_valid(connection)
    assert connection_service.activation_problems(connection) == ["The connection has not passed a test."]


def test_no_actor_type_switched_on_is_a_problem(ctx):
    connection = build()
    problems = mapping.mapping_problems(connection)
    assert len(problems) == 1 and problems[0].startswith("No actor type is switched on")


@pytest.mark.parametrize("setup, blocked", [
    ({}, True),
    ({"sync_to_crm": True}, True),  # a value from the ERP does not help when the CRM creates the actor
    ({"sync_to_erp": True}, False),
    ({"has_default": True, "default_value": "ACME"}, False),
    ({"ask_user": True, "mandatory": True}, False),
    ({"has_default": True, "default_value": None}, True),
])
def test_mandatory_field_needs_a_direction_to_the_erp_or_a_default(ctx, setup, blocked):
    connection = build(active=("Customer",))
    name = field(connection, "NAME")
    for attribute, value in setup.items():
        setattr(name, attribute, value)
    db.session.commit()
    problems = mapping.mapping_problems(connection)
    expected = "Customer: “Name” is Mandatory in the ERP but has neither a direction to the ERP nor a default value."
    assert (expected in problems) is blocked


def test_mandatory_read_only_field_is_assigned_by_the_erp(ctx):
    fields = {"Customer": [field_metadata("NAME", "Name", rank=1),
                           field_metadata("NUMBER1", "Number", access="Mandatory", rank=2)]}
    connection = build(fields=fields, active=("Customer",))
    assert any("Number" in p for p in mapping.mapping_problems(connection))
    field(connection, "NUMBER1").access = "ReadOnly"
    db.session.commit()
    assert mapping.mapping_problems(connection) == []


def test_mapped_field_missing_in_erp_is_a_problem_until_unmapped(ctx):
    connection = build()
    make_valid(connection)
    email = field(connection, "email")
    email.missing_in_erp = True
    db.session.commit()
    assert mapping.mapping_problems(connection) == [
        "Customer: “E-mail” is missing in the ERP but still mapped; unmap it."]
    mapping.unmap(email)
    assert mapping.mapping_problems(connection) == []


def test_mapping_to_a_crm_field_that_no_longer_exists_is_a_problem(ctx):
    connection = build()
    make_valid(connection)
    email = field(connection, "email")
    email.crm_field = "fax_number_2"
    db.session.commit()
    view = mapping.row_view(email)
    assert view.missing_in_crm and view.flagged
    assert mapping.mapping_problems(connection) == [
        "Customer: “E-mail” is mapped to CRM field “fax_number_2”, which is missing in the CRM; unmap it."]
    mapping.unmap(email)
    assert mapping.mapping_problems(connection) == []


def test_two_erp_items_on_one_crm_item_is_a_problem(ctx):
    connection = build()
    make_valid(connection)
    erp_country = field(connection, "COUNTRY")
    erp_country.list_mappings.append(ListItemMapping(erp_item_key="NO", erp_item_text="Norway",
                                                     crm_item_id=country("Norway")))
    erp_country.list_mappings.append(ListItemMapping(erp_item_key="SE", erp_item_text="Sweden",
                                                     crm_item_id=country("Norway")))
    db.session.commit()
    assert mapping.mapping_problems(connection) == [
        "Customer: “Country”: in the list mapping, ERP items “Norway” and “Sweden” all map to CRM item “Norway”."]


def test_an_already_mapped_to_crm_target_is_a_problem(ctx):
    connection = build()
    make_valid(connection)
    field(connection, "email").sync_to_crm = True
    other = build("Other ERP")
    field(other, "email").sync_to_crm = True
    db.session.commit()
    assert mapping.mapping_problems(connection) == [
        "Customer: “E-mail” syncs to CRM field E-mail, which connection Other ERP already syncs to."]


def test_only_switched_on_actor_types_are_checked(ctx):
    connection = build(types=("Customer", "Person"))
    make_valid(connection)  # Person (LASTNAME Mandatory without value) is off
    assert mapping.mapping_problems(connection) == []
    connection.actor_type("Person").is_active = True
    assert mapping.mapping_problems(connection) == [
        "Person: “Last name” is Mandatory in the ERP but has neither a direction to the ERP nor a default value."]


def test_actor_type_the_connector_no_longer_offers_cannot_stay_on(ctx):
    connection = build()
    make_valid(connection)
    config = connection.actor_type("Customer")
    config.supported = False
    db.session.commit()
    assert mapping.mapping_problems(connection) == [
        "Customer: the connector no longer offers this actor type; switch it off."]
    mapping.set_actor_type_active(config, False)
    with pytest.raises(MappingError, match="no longer offers Customer"):
        mapping.set_actor_type_active(config, True)


def test_activation_lists_every_reason_and_deactivation_is_always_allowed(ctx):
    connection = build(tested=False, active=("Customer",))
    problems = connection_service.set_active(connection, True)
    assert "The connection has not passed a test." in problems
    assert any("Mandatory" in p for p in problems) and not connection.active
    connection.active = True  # e.g. active from before a rule changed
    db.session.commit()
    assert connection_service.set_active(connection, False) == [] and not connection.active


def test_customer_and_supplier_may_both_sync_to_companies(ctx):
    connection = build(types=("Customer", "Supplier"))
    mapping.set_actor_type_active(connection.actor_type("Customer"), True)
    mapping.set_actor_type_active(connection.actor_type("Supplier"), True)
    assert connection.actor_type("Customer").is_active and connection.actor_type("Supplier").is_active


# ============================================================================== editing while active

def test_a_change_that_would_invalidate_the_active_connection_is_refused(ctx):
    connection = build()
    make_valid(connection)
    connection.active = True
    db.session.commit()
    name = field(connection, "NAME")
    with pytest.raises(MappingError) as refused:
        mapping.save_row(name, state("name", to_crm=True))  # removes ←: NAME would have no value source
    assert "The connection is active" in refused.value.message and "“Name” is Mandatory" in refused.value.message
    db.session.rollback()
    assert field(db.session.get(Connection, connection.id), "NAME").sync_to_erp is True
    with pytest.raises(MappingError, match="No actor type is switched on"):
        mapping.set_actor_type_active(connection.actor_type("Customer"), False)
    db.session.rollback()
    mapping.save_row(field(connection, "email"), state("email", to_crm=True))  # harmless edits are fine
    assert field(connection, "email").sync_to_crm


def test_retargeting_a_field_forgets_its_agreed_value_on_links(ctx):
    connection = build()
    email = field(connection, "email")
    mapping.save_row(email, state("email", to_crm=True))
    link = Link(connection_id=connection.id, crm_type="company", crm_id=1, erp_actor_type="Customer", erp_key="C1",
                base={"email": "a@example.com", "NAME": "Acme"})
    db.session.add(link)
    db.session.commit()
    mapping.save_row(email, state("email", to_crm=True, to_erp=True))  # a direction only: base kept
    assert db.session.get(Link, link.id).base == {"email": "a@example.com", "NAME": "Acme"}
    mapping.save_row(email, state("department", to_crm=True))
    assert db.session.get(Link, link.id).base == {"NAME": "Acme"}


def test_retargeting_is_refused_while_a_sync_runs(ctx):
    connection = build()
    db.session.add(SyncRun(connection_id=connection.id, status="running"))
    db.session.commit()
    with pytest.raises(MappingError, match="sync of this connection is running"):
        mapping.save_row(field(connection, "email"), state("department"))
    db.session.rollback()
    mapping.save_row(field(connection, "email"), state("email", to_crm=True))  # directions are fine


def test_row_save_is_audited_with_before_and_after(ctx):
    connection = build()
    mapping.save_row(field(connection, "email"), state("email", to_crm=True, to_erp=True), actor="admin@x")
    event = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "mapping.update"))
    assert event.before == {"to_crm": False, "to_erp": False} and event.after == {"to_crm": True, "to_erp": True}
    assert event.object_repr == "Main / Customer: “E-mail”" and event.actor_label == "admin@x"


# ============================================================================== list mapping

def test_list_mapping_refuses_items_the_erp_no_longer_has_and_saves_nothing(ctx):
    connection = build()
    erp_country = field(connection, "COUNTRY")
    with pytest.raises(MappingError) as refused:
        mapping.save_list_mapping(erp_country, {"NO": country("Norway"), "XX": country("Sweden")},
                                  erp_items=ERP_COUNTRIES)
    assert refused.value.by_key == {"XX": "ERP item “XX” no longer exists in the ERP list countries; it can only be "
                                          "removed."}
    db.session.rollback()
    assert field(db.session.get(Connection, connection.id), "COUNTRY").list_mappings == []


def test_list_mapping_refuses_items_of_another_crm_list(ctx):
    connection = build()
    business = db.session.scalar(select(ListItem.id).where(ListItem.list_name == CrmList.BUSINESS))
    with pytest.raises(MappingError, match="not an item of the CRM list Countries"):
        mapping.save_list_mapping(field(connection, "COUNTRY"), {"NO": business}, erp_items=ERP_COUNTRIES)


def test_list_mapping_saves_flags_duplicates_and_allows_no_selection(ctx):
    connection = build()
    erp_country = field(connection, "COUNTRY")
    changed = mapping.save_list_mapping(
        erp_country, {"NO": country("Norway"), "SE": country("Norway"), "DK": None}, erp_items=ERP_COUNTRIES)
    assert changed == ["NO", "SE"]
    rows = {r.erp_key: r for r in mapping.list_rows(erp_country, ERP_COUNTRIES)}
    assert rows["NO"].duplicate_of == ["Sweden"] and rows["SE"].duplicate_of == ["Norway"]
    assert rows["DK"].crm_item_id is None and not rows["DK"].duplicate_of
    event = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "list_mapping.update"))
    assert event.after == {"NO": "Norway", "SE": "Norway"}


def test_match_by_name_pairs_equal_texts_one_to_one(ctx):
    connection = build()
    suggestions = mapping.match_by_name(field(connection, "COUNTRY"), ERP_COUNTRIES)
    assert suggestions == {"NO": country("Norway"), "SE": country("Sweden"), "DK": country("Denmark")}


# ============================================================================== defaults

@pytest.mark.parametrize("key, text, message", [
    ("EMPLOYEES", "abc", "'abc' is not a whole number"),
    ("CREDIT", "1,5", "not a number (use a point as the decimal separator)"),
    ("FOUNDED", "31.12.2024", "is not a date"),
    ("NAME", "x" * 21, "at most 20 characters"),
    ("NAME", "", "Enter a default value"),
])
def test_default_that_does_not_parse_is_refused(ctx, key, text, message):
    connection = build()
    with pytest.raises(MappingError) as refused:
        mapping.save_default(field(connection, key), set_default=True, value_text=text, ask_user=False,
                             mandatory=False)
    assert message in refused.value.by_key["value"]
    db.session.rollback()
    assert not field(db.session.get(Connection, connection.id), key).has_default


@pytest.mark.parametrize("key, text, stored", [
    ("EMPLOYEES", "12", 12), ("CREDIT", "1.5", 1.5), ("FOUNDED", "2024-12-31", "2024-12-31"),
    ("ACTIVE", "0", False), ("ACTIVE", "1", True), ("NAME", "ACME", "ACME"),
])
def test_default_is_stored_typed(ctx, key, text, stored):
    connection = build()
    erp_field = field(connection, key)
    mapping.save_default(erp_field, set_default=True, value_text=text, ask_user=False, mandatory=False)
    assert erp_field.has_default and erp_field.default_value == stored


def test_list_default_must_be_an_item_of_the_erp_list(ctx, monkeypatch):
    connection = build()
    monkeypatch.setattr(mapping.defaults, "erp_list", lambda connection, name: ERP_COUNTRIES)
    erp_country = field(connection, "COUNTRY")
    with pytest.raises(MappingError, match="not an item of the ERP list countries"):
        mapping.save_default(erp_country, set_default=True, value_text="XX", ask_user=False, mandatory=False)
    db.session.rollback()
    mapping.save_default(erp_country, set_default=True, value_text="SE", ask_user=True, mandatory=False)
    assert erp_country.default_value == "SE"
    assert mapping.default_display(erp_country, {"countries": {"SE": "Sweden"}}) == "Sweden"


def test_mandatory_needs_a_default_or_ask_user_and_is_forced_by_the_connector(ctx):
    connection = build()
    email = field(connection, "email")
    with pytest.raises(MappingError, match="needs a default value or Ask user"):
        mapping.save_default(email, set_default=False, value_text="", ask_user=False, mandatory=True)
    db.session.rollback()
    name = field(db.session.get(Connection, connection.id), "NAME")
    mapping.save_default(name, set_default=False, value_text="", ask_user=True, mandatory=False)
    assert name.mandatory is True  # the connector says Mandatory: forced on
    mapping.remove_default(name)
    assert name.mandatory is True and not name.ask_user and name in mapping.default_rows(name.actor_type)
    event = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "default.update")).all()
    assert len(event) == 2


def test_read_only_and_password_fields_get_no_default(ctx):
    connection = build()
    for key in ("NUMBER1", "SECRET", "INFO"):
        assert not mapping.can_have_default(field(connection, key))
        with pytest.raises(MappingError, match="cannot have a default value"):
            mapping.save_default(field(connection, key), set_default=True, value_text="1", ask_user=False,
                                 mandatory=False)
    candidates = [f.field_key for f in mapping.default_candidates(connection.actor_type("Customer"))]
    assert "NUMBER1" not in candidates and "NAME" not in candidates and "email" in candidates


# ============================================================================== rank

def test_rank_moves_swap_neighbours_and_stop_at_the_ends(ctx):
    connection = build()
    config = connection.actor_type("Customer")
    first, second = mapping.ordered_fields(config)[:2]
    assert mapping.move_field(second, -1, actor="admin@x")
    assert mapping.ordered_fields(config)[:2] == [second, first]
    assert [f.rank for f in mapping.ordered_fields(config)] == list(range(1, len(config.fields) + 1))
    assert not mapping.move_field(second, -1)
    assert not mapping.move_field(mapping.ordered_fields(config)[-1], +1)
    event = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "rank.move"))
    assert event.before == {"position": 2, "swapped_with": None}
    assert event.after == {"position": 1, "swapped_with": "Name"}


def test_rank_moves_to_the_top_and_bottom_keep_the_others_in_order(ctx):
    connection = build()
    config = connection.actor_type("Customer")
    before = mapping.ordered_fields(config)
    moved = before[3]
    assert mapping.move_field(moved, "top")
    assert mapping.ordered_fields(config) == [moved] + [f for f in before if f is not moved]
    assert not mapping.move_field(moved, "top")  # already first
    assert mapping.move_field(moved, "bottom")
    assert mapping.ordered_fields(config) == [f for f in before if f is not moved] + [moved]
    assert not mapping.move_field(moved, "bottom")
    assert [f.rank for f in mapping.ordered_fields(config)] == list(range(1, len(config.fields) + 1))

"""User-defined fields (issue #18, point 1): defined by an admin, in the forms, details, lists, mapping, sync
and import, and deleted with their values and mappings."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select

from portal.extensions import db
from portal.models import AuditEvent, Company, Connection, CrmList, ListItem, RunStatus, UserField, crm_field
from portal.services import mapping
from portal.services import user_fields as service
from portal.services.mapping import MappingError, MappingState
from tests import sync_support as s
from tests.integration.test_crm_checkbox_number_fields import _field
from tests.integration.test_crm_form_rules import _field_error, _text

pytestmark = pytest.mark.db


def _add(client, crm_type="company", **data):
    form = {"label": "", "field_type": "text", "list_name": ""} | data
    return client.post(f"/settings/fields/{crm_type}", htmx=True, data=form)


def _definition(app, label):
    with app.app_context():
        definition = db.session.scalar(select(UserField).where(UserField.label == label))
        if definition is not None:
            db.session.expunge(definition)
        return definition


# ------------------------------------------------------------------------------------------ definitions


def test_an_admin_adds_fields_each_in_a_free_slot_of_its_type_and_it_is_audited(app, admin_client):
    response = _add(admin_client, label="Key account", field_type="checkbox", show_in_list="y")
    assert response.status_code == 200
    assert "Key account" in _text(response)
    assert "Field \\u201cKey account\\u201d added" in response.headers["HX-Trigger"]
    _add(admin_client, label="Region code", field_type="text")
    _add(admin_client, label="Partner since", field_type="date")
    _add(admin_client, "contact", label="Newsletter", field_type="checkbox")
    assert _definition(app, "Key account").slot == "udf_checkbox_1"
    assert _definition(app, "Region code").slot == "udf_text_1"
    assert _definition(app, "Partner since").slot == "udf_date_1"
    assert _definition(app, "Newsletter").slot == "udf_checkbox_1"  # the slots are per record type
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(AuditEvent)
                                 .where(AuditEvent.action == "user_field.create")) == 4
        assert crm_field("company", "udf_checkbox_1").label == "Key account"
    page = _text(admin_client.get("/settings/fields?type=company"))
    assert "Key account" in page and "Partner since" in page and "Newsletter" not in page


@pytest.mark.parametrize("data, field, message", [
    ({"label": "  "}, "label", "Enter a label."),
    ({"label": "Name"}, "label", "Company already has a built-in field “Name”."),
    ({"label": "x" * 81}, "label", "The label can be at most 80 characters."),
    ({"label": "Tier", "field_type": "list"}, "list_name", "Choose the list its items come from."),
    ({"label": "Tier", "field_type": "list", "list_name": "nonsense"}, "list_name",
     "Choose the list its items come from."),
    ({"label": "Tier", "field_type": "colour"}, "field_type", "Choose a type."),
    ({"label": "VIP", "field_type": "checkbox", "required": "y"}, "required",
     "A checkbox always has a value (ticked or not): it cannot be required."),
])
def test_a_bad_definition_is_refused_with_422_and_a_field_message(app, admin_client, data, field, message):
    response = _add(admin_client, **data)
    assert response.status_code == 422
    assert _field_error(_text(response), field) == message
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(UserField)) == 0


def test_a_duplicate_label_and_a_full_type_are_refused(app, admin_client):
    assert _add(admin_client, label="Tier", field_type="integer").status_code == 200
    response = _add(admin_client, label="tier", field_type="text")
    assert response.status_code == 422 and "Company already has a field “Tier”." in _text(response)
    for n in range(2, 4):
        assert _add(admin_client, label=f"Count {n}", field_type="integer").status_code == 200
    response = _add(admin_client, label="One too many", field_type="integer")
    assert response.status_code == 422
    assert "All 3 whole number fields of company records are in use; delete one first." in _text(response)


def test_non_admins_cannot_define_fields(user_client):
    assert user_client.get("/settings/fields").status_code == 403
    assert _add(user_client, label="Sneaky").status_code == 403


# ------------------------------------------------------------------------------------------ records


@pytest.fixture
def fields(app, admin_client):
    _add(admin_client, label="Key account", field_type="checkbox", show_in_list="y")
    _add(admin_client, label="Region code", field_type="text", required="y", show_in_list="y")
    _add(admin_client, label="Seats", field_type="integer")
    _add(admin_client, label="Discount", field_type="decimal")
    _add(admin_client, label="Partner since", field_type="date")
    _add(admin_client, label="Tier", field_type="list", list_name="category")
    with app.app_context():
        tier = db.session.scalar(select(ListItem).where(ListItem.list_name == CrmList.CATEGORY))
        return {"tier_id": tier.id, "tier": tier.name}


def test_the_record_form_details_and_list_show_and_save_user_fields(app, user_client, fields):
    form = _text(user_client.get("/companies/new"))
    assert "<legend><strong>More fields</strong></legend>" in form
    for key, label in (("udf_checkbox_1", "Key account"), ("udf_text_1", "Region code"), ("udf_integer_1", "Seats"),
                       ("udf_decimal_1", "Discount"), ("udf_date_1", "Partner since"), ("udf_list_1", "Tier")):
        assert re.search(rf'<label for="{key}">[^<]*(<input[^>]*>)?\s*{label}', form), label
    assert fields["tier"] in form  # the list field offers the CRM list's items
    response = user_client.post("/companies/new", htmx=True, data={
        "name": "Acme AS", "udf_checkbox_1": "y", "udf_text_1": " NORD ", "udf_integer_1": "12",
        "udf_decimal_1": "7,5", "udf_date_1": "2024-03-01", "udf_list_1": str(fields["tier_id"])})
    assert response.status_code == 200 and "HX-Redirect" in response.headers
    with app.app_context():
        company = db.session.scalar(select(Company).where(Company.name == "Acme AS"))
        assert (company.udf_checkbox_1, company.udf_text_1, company.udf_integer_1, company.udf_decimal_1,
                str(company.udf_date_1), company.udf_list_1) == (True, "NORD", 12, 7.5, "2024-03-01",
                                                                  fields["tier_id"])
        company_id = company.id
    details = _text(user_client.get(f"/companies/{company_id}"))
    assert re.search(r"<dt>Key account</dt>\s*<dd>Yes</dd>", details)
    assert re.search(r"<dt>Region code</dt>\s*<dd>NORD</dd>", details)
    assert re.search(r"<dt>Discount</dt>\s*<dd>7.5</dd>", details)
    assert re.search(rf"<dt>Tier</dt>\s*<dd>{re.escape(fields['tier'])}</dd>", details)
    listing = _text(user_client.get("/companies?q=Acme"))
    assert "<th scope=\"col\">Key account</th>" in listing and "<th scope=\"col\">Region code</th>" in listing
    assert "<th scope=\"col\">Seats</th>" not in listing  # not shown in the list
    assert re.search(r"<td>Yes</td>\s*<td>NORD</td>", listing)


def test_the_search_box_finds_records_by_their_text_user_fields(app, user_client, fields):
    with app.app_context():
        db.session.add_all([Company(name="Acme AS", udf_text_1="Fjordline"), Company(name="Other AS")])
        db.session.commit()
    listing = _text(user_client.get("/companies?q=FJORDL"))
    assert "Acme AS" in listing and "Other AS" not in listing
    with app.app_context():  # deleting the field blanks it: the value is no longer found
        service.delete(db.session.scalar(select(UserField).where(UserField.label == "Region code")))
    assert "Acme AS" not in _text(user_client.get("/companies?q=fjordline"))


@pytest.mark.parametrize("data, field, message", [
    ({"udf_text_1": ""}, "udf_text_1", "Region code is required."),
    ({"udf_text_1": "N", "udf_integer_1": "twelve"}, "udf_integer_1", "Enter seats as a whole number"),
    ({"udf_text_1": "N", "udf_decimal_1": "1.2.3"}, "udf_decimal_1", "number"),
    ({"udf_text_1": "N", "udf_list_1": "999999"}, "udf_list_1", ""),
])
def test_bad_user_field_values_are_refused_with_422_and_nothing_saved(app, user_client, fields, data, field,
                                                                      message):
    response = user_client.post("/companies/new", htmx=True, data={"name": "Refused AS"} | data)
    assert response.status_code == 422
    assert message in _field_error(_text(response), field)
    with app.app_context():
        assert db.session.scalar(select(Company).where(Company.name == "Refused AS")) is None


def test_deleting_a_field_says_what_it_does_then_blanks_the_values_and_unmaps_it(app, admin_client, fake, fields):
    with app.app_context():
        company = Company(name="Acme AS", udf_checkbox_1=True, udf_text_1="N")
        db.session.add_all([company, Company(name="Other AS", udf_text_1="S")])
        cid = s.make_connection(fake, mapping={"name": "name", "active": "udf_checkbox_1"})
        db.session.commit()
        definition_id = db.session.scalar(select(UserField.id).where(UserField.label == "Key account"))
    confirm = _text(admin_client.get(f"/settings/fields/{definition_id}/delete"))
    assert "1 company record has a value in it" in confirm
    assert "1 ERP field mapping to it will be removed" in confirm
    response = admin_client.post(f"/settings/fields/{definition_id}/delete", htmx=True)
    assert response.status_code == 200 and response.headers["HX-Redirect"] == "/settings/fields?type=company"
    with app.app_context():
        assert db.session.get(UserField, definition_id) is None
        assert db.session.scalar(select(func.count()).select_from(Company).where(Company.udf_checkbox_1)) == 0
        assert {c.udf_text_1 for c in db.session.scalars(select(Company))} == {"N", "S"}  # others untouched
        erp_field = next(f for f in db.session.get(Connection, cid).actor_type("Customer").fields
                         if f.field_key == "active")
        assert (erp_field.crm_field, erp_field.sync_to_crm, erp_field.sync_to_erp) == (None, False, False)
    # the slot is free again and a new field there starts blank
    _add(admin_client, label="Reseller", field_type="checkbox")
    assert _definition(app, "Reseller").slot == "udf_checkbox_1"


def test_move_and_edit_keep_type_and_slot(app, admin_client, fields):
    seats = _definition(app, "Seats")
    admin_client.post(f"/settings/fields/{seats.id}/move", htmx=True, data={"direction": "up"})
    with app.app_context():
        labels = [d.label for d in service.definitions("company")]
    assert labels.index("Seats") == 1
    response = admin_client.post(f"/settings/fields/{seats.id}/edit", htmx=True,
                                 data={"label": "Licences", "field_type": "text", "show_in_list": "y"})
    assert response.status_code == 200
    renamed = _definition(app, "Licences")
    assert (renamed.slot, renamed.field_type, renamed.show_in_list) == ("udf_integer_1", "integer", True)


# ------------------------------------------------------------------------------------------ mapping and sync


def test_user_fields_map_with_directions_and_sync_both_ways(app, fake):
    with app.app_context():
        service.create("company", label="Key account", field_type="checkbox")
        service.create("company", label="Headcount", field_type="integer")
        cid = s.make_connection(fake, mapping={"name": "name"})
        for erp_key, crm_key in (("active", "udf_checkbox_1"), ("employees", "udf_integer_1")):
            saved = mapping.save_row(_field(cid, erp_key), MappingState(crm_key, True, True, False, False))
            assert saved.crm_field == crm_key
            db.session.commit()
        with pytest.raises(MappingError, match="can only be mapped to a CRM checkbox"):
            mapping.save_row(_field(cid, "active"), MappingState("udf_integer_1", True, False, False, False))
        db.session.rollback()
        company_id, key, _link = s.link_company(fake, cid, name="Acme AS")
        fake.update_actor("Customer", key, {"active": True, "employees": 42})
        outcome = s.run(cid)
        assert outcome.status == RunStatus.SUCCEEDED, outcome.message
        db.session.expire_all()
        record = s.company(company_id)
        assert (record.udf_checkbox_1, record.udf_integer_1) == (True, 42)
        logged = {c.crm_field_key: (c.old_value, c.new_value) for c in s.changes(outcome.run_id)}
        assert logged == {"udf_checkbox_1": ("No", "Yes"), "udf_integer_1": ("", "42")}
        s.edit_company(company_id, udf_checkbox_1=False, udf_integer_1=7)
        outcome = s.run(cid)
        assert outcome.status == RunStatus.SUCCEEDED, outcome.message
        values = fake.get_actor("Customer", key)["FieldValues"]
        assert (values["active"], values["employees"]) == (False, 7)
        again = s.run(cid)
        assert again.counts.get("to_erp", 0) == 0 and again.counts.get("to_crm", 0) == 0


def test_the_import_fills_user_fields(app, fake):
    from tests.integration.test_import import companies, run_import

    with app.app_context():
        service.create("company", label="Key account", field_type="checkbox")
        connection_id = s.make_connection(fake, mapping={"name": "name", "active": "udf_checkbox_1"})
    ticked = fake.add_actor("Customer", {"name": "Ticked AS", "active": True})
    plain = fake.add_actor("Customer", {"name": "Plain AS"})
    run = run_import(app, connection_id, keys=[ticked, plain])
    assert run.counts["new"] == 2, run.counts
    assert {c.name: c.udf_checkbox_1 for c in companies(app)} == {"Ticked AS": True, "Plain AS": False}

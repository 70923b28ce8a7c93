"""Issue #18: the CRM checkbox and number fields (company No mailings / Employees / Credit limit, contact No
mailings, project Completed) on the forms and the detail page, and an ERP Checkbox, Integer and Double field mapped
to them through the mapping service and synced both ways."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from portal.extensions import db
from portal.models import Company, Connection, Contact, Project, RunStatus
from portal.services import mapping
from portal.services.mapping import MappingError, MappingState
from tests import sync_support as s
from tests.conftest import add_record
from tests.integration.test_crm_form_rules import _field_error, _text

pytestmark = pytest.mark.db




def _company(app, company_id=None):
    with app.app_context():
        company = db.session.get(Company, company_id) if company_id else db.session.scalar(select(Company))
        if company is not None:
            db.session.expunge(company)
        return company


# ------------------------------------------------------------------------------------------------ forms


def test_the_company_form_shows_a_checkbox_and_number_inputs(app, user_client):
    body = _text(user_client.get("/companies/new"))
    assert re.search(r'<input[^>]*id="no_mailings"[^>]*type="checkbox"|<input[^>]*type="checkbox"[^>]*'
                     r'id="no_mailings"', body)
    assert re.search(r'<input[^>]*id="employees"[^>]*inputmode="numeric"|<input[^>]*inputmode="numeric"[^>]*'
                     r'id="employees"', body)
    assert re.search(r'<input[^>]*id="credit_limit"[^>]*inputmode="decimal"|<input[^>]*inputmode="decimal"[^>]*'
                     r'id="credit_limit"', body)


def test_the_company_form_saves_no_mailings_employees_and_credit_limit(app, user_client):
    response = user_client.post("/companies/new", htmx=True, data={
        "name": "Acme AS", "no_mailings": "y", "employees": " 250 ", "credit_limit": "1250,50"})
    assert response.status_code == 200 and "HX-Redirect" in response.headers
    company = _company(app)
    assert (company.no_mailings, company.employees, company.credit_limit) == (True, 250, 1250.5)
    body = _text(user_client.get(f"/companies/{company.id}"))
    assert re.search(r"<dt>No mailings</dt>\s*<dd>Yes</dd>", body)
    assert re.search(r"<dt>Employees</dt>\s*<dd>250</dd>", body)
    assert re.search(r"<dt>Credit limit</dt>\s*<dd>1250.5</dd>", body)
    # the edit form shows the numbers without needless zeros; an unticked box (not sent) saves False, blank numbers
    # are blank
    form = _text(user_client.get(f"/companies/{company.id}/edit"))
    assert 'value="1250.5"' in form and 'value="250"' in form
    response = user_client.post(f"/companies/{company.id}/edit", htmx=True, data={
        "name": "Acme AS", "employees": "", "credit_limit": "3000.00"})
    assert response.status_code == 200
    company = _company(app, company.id)
    assert (company.no_mailings, company.employees, company.credit_limit) == (False, None, 3000.0)
    body = _text(user_client.get(f"/companies/{company.id}"))
    assert re.search(r"<dt>No mailings</dt>\s*<dd>No</dd>", body)
    assert re.search(r"<dt>Credit limit</dt>\s*<dd>3000</dd>", body)
    assert re.search(r'<dt>Employees</dt>\s*<dd><span class="muted">—</span></dd>', body)


@pytest.mark.parametrize("field, value, message", [
    ("employees", "abc", "Enter employees as a whole number, such as 25."),
    ("employees", "2.5", "Enter employees as a whole number, such as 25."),
    ("employees", "99999999999", "Enter employees between -2147483647 and 2147483647."),
    ("credit_limit", "abc", "Enter credit limit as a number, such as 1250.50."),
    ("credit_limit", "1.000,50", "Enter credit limit as a number, such as 1250.50."),
    ("credit_limit", "inf", "Enter credit limit as a number, such as 1250.50."),
    ("credit_limit", "1" * 20, "Enter credit limit between -1000000000000000 and 1000000000000000."),
])
def test_a_number_that_is_not_one_is_refused_with_422_and_nothing_saved(app, user_client, field, value, message):
    response = user_client.post("/companies/new", htmx=True, data={"name": "Acme AS", field: value})
    body = _text(response)
    assert response.status_code == 422 and "<html" not in body
    assert _field_error(body, field) == message
    assert f'value="{value}"' in body  # the input is kept
    assert _company(app) is None


def test_contact_and_project_checkboxes_save(app, user_client):
    response = user_client.post("/contacts/new", htmx=True, data={"last_name": "Hansen", "no_mailings": "y"})
    assert response.status_code == 200
    response = user_client.post("/projects/new", htmx=True, data={"name": "Launch", "completed": "y"})
    assert response.status_code == 200
    with app.app_context():
        assert db.session.scalar(select(Contact.no_mailings)) is True
        project = db.session.scalar(select(Project))
        assert project.completed is True
        project_id = project.id
    body = _text(user_client.get(f"/projects/{project_id}"))
    assert re.search(r"<dt>Completed</dt>\s*<dd>Yes</dd>", body)


def test_new_records_default_to_unticked(app):
    company_id = add_record(app, Company, name="Plain AS")
    company = _company(app, company_id)
    assert company.no_mailings is False and company.employees is None and company.credit_limit is None


# ---------------------------------------------------------------------------------------- mapping and sync

MAPPING = {"name": "name", "active": "no_mailings", "employees": "employees", "creditlimit": "credit_limit"}


@pytest.fixture
def ctx(app):
    with app.app_context():
        yield app


def _field(connection_id, key):
    connection = db.session.get(Connection, connection_id)
    return next(f for f in connection.actor_type("Customer").fields if f.field_key == key)


def test_the_mapping_service_accepts_checkbox_and_numbers_and_refuses_a_double_into_a_whole_number(ctx, fake):
    cid = s.make_connection(fake, mapping={"name": "name"})
    for erp_key, crm_key in (("active", "no_mailings"), ("creditlimit", "credit_limit"),
                             ("employees", "employees")):
        saved = mapping.save_row(_field(cid, erp_key), MappingState(crm_key, True, True, False, False))
        assert saved.crm_field == crm_key and saved.sync_to_crm and saved.sync_to_erp
        db.session.commit()
    with pytest.raises(MappingError, match="lose the fraction"):
        mapping.save_row(_field(cid, "creditlimit"), MappingState("employees", True, False, False, False))
    db.session.rollback()
    with pytest.raises(MappingError, match="can only be mapped to a CRM checkbox"):
        mapping.save_row(_field(cid, "active"), MappingState("employees", True, False, False, False))
    db.session.rollback()


def test_checkbox_and_numbers_sync_both_ways(ctx, fake):
    cid = s.make_connection(fake, mapping=MAPPING)
    company = Company(name="Acme AS")
    db.session.add(company)
    db.session.flush()
    key = fake.add_actor("Customer", {"name": "Acme AS"})  # a blank ERP checkbox equals an unticked CRM one
    actor = fake.get_actor("Customer", key)
    from portal.models import Link

    db.session.add(Link(connection_id=cid, crm_type="company", crm_id=company.id, erp_actor_type="Customer",
                        erp_key=key, base={}, status="ok"))
    db.session.commit()
    first = s.run(cid)
    assert first.status == RunStatus.SUCCEEDED, first.message
    assert actor is not None
    # ERP -> CRM
    fake.update_actor("Customer", key, {"active": True, "employees": 42, "creditlimit": 2500.5})
    outcome = s.run(cid)
    assert outcome.status == RunStatus.SUCCEEDED, outcome.message
    db.session.expire_all()
    record = s.company(company.id)
    assert (record.no_mailings, record.employees, record.credit_limit) == (True, 42, 2500.5)
    logged = {c.crm_field_key: (c.old_value, c.new_value) for c in s.changes(outcome.run_id)}
    assert logged == {"no_mailings": ("No", "Yes"), "employees": ("", "42"), "credit_limit": ("", "2500.5")}
    assert s.run(cid).counts.get("records", 0) == 0  # nothing flows back
    # CRM -> ERP
    s.edit_company(company.id, no_mailings=False, employees=7, credit_limit=100.0)
    outcome = s.run(cid)
    assert outcome.status == RunStatus.SUCCEEDED, outcome.message
    values = fake.get_actor("Customer", key)["FieldValues"]
    assert (values["active"], values["employees"], values["creditlimit"]) == (False, 7, 100.0)
    again = s.run(cid)
    assert again.counts.get("to_erp", 0) == 0 and again.counts.get("to_crm", 0) == 0


def test_an_erp_integer_mapped_to_a_crm_decimal_syncs_whole_values_and_refuses_a_fraction(ctx, fake):
    cid = s.make_connection(fake, mapping={"name": "name", "employees": "credit_limit"})
    company_id, key, _link = s.link_company(fake, cid, name="Acme AS")
    fake.update_actor("Customer", key, {"employees": 12})
    assert s.run(cid).status == RunStatus.SUCCEEDED
    db.session.expire_all()
    assert s.company(company_id).credit_limit == 12.0
    s.edit_company(company_id, credit_limit=12.5)  # cannot be written to the ERP's whole number
    outcome = s.run(cid)
    assert outcome.counts.get("errors") == 1
    assert fake.get_actor("Customer", key)["FieldValues"]["employees"] == 12  # the ERP keeps its value
    errors = [c.rule for c in s.changes(outcome.run_id) if c.direction == "error"]
    assert errors == ["Credit limit in the CRM: 12.5 is not a whole number, and the ERP field holds only whole "
                      "numbers"]


# ------------------------------------------------------------------------------------------------ import


def test_the_import_fills_checkbox_and_numbers_and_stops_at_an_out_of_range_number(app, fake):
    from tests.integration.test_import import _map, companies, run_import

    with app.app_context():
        from portal.models import Connector
        from portal.services.connections import apply_catalogue, fetch_catalogue

        connector = Connector(name="Fake ERP", url=fake.url)
        db.session.add(connector)
        db.session.commit()
        guid = fake.add_connection()
        connection = Connection(connector_id=connector.id, name="Fake production", guid=guid, active=True,
                                last_test_ok=True, config_values={"Company": "Fake AS"})
        db.session.add(connection)
        db.session.flush()
        apply_catalogue(connection, fetch_catalogue(connector, guid))
        _map(connection, "Customer", MAPPING)
        db.session.commit()
        connection_id = connection.id
    ticked = fake.add_actor("Customer", {"name": "Ticked AS", "active": True, "employees": 12,
                                         "creditlimit": 1500.0})
    plain = fake.add_actor("Customer", {"name": "Plain AS"})
    huge = fake.add_actor("Customer", {"name": "Huge AS", "employees": 2**40})
    run = run_import(app, connection_id, keys=[ticked, plain, huge])
    # a number the CRM cannot hold is a conversion error of that record, as a too long text is
    assert run.counts["new"] == 2 and run.counts["by_type"]["company"]["error"] == 1, run.counts
    rows = {c.name: (c.no_mailings, c.employees, c.credit_limit) for c in companies(app)}
    assert rows == {"Ticked AS": (True, 12, 1500.0), "Plain AS": (False, None, None)}
    assert "is out of range for a CRM whole number" in json_text(run.counts["problems"])


def json_text(value) -> str:
    import json

    return json.dumps(value)

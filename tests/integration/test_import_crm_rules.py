"""Import from ERP and the CRM's own rules (portal/services/crm_rules.py): an ERP value the CRM cannot hold — an
e-mail such as ``post10@erp``, a ``javascript:`` web site, a birth date in the future, a deleted list item — is not
stored (blank on a new record, unchanged on an existing one) and is reported with the ERP value; the rest of the
record is imported and linked, and the CRM form can save the record afterwards.

The ERP is tests/fakes/connector_app.FakeConnector; the fixtures and helpers are those of test_import.py.
"""

from __future__ import annotations

from datetime import date

import pytest
from sqlalchemy import select

from portal.extensions import db
from portal.models import Company, Connection, CrmList, ListItem, RunStatus, SyncChange
from portal.services import import_preview
from portal.services.import_settings import ImportRequest, ImportSettings
from tests.conftest import add_record
from tests.integration import test_import
from tests.integration.test_import import CUSTOMER_MAP, companies, contacts, links, remap, run_import

pytestmark = pytest.mark.db

connection_id = test_import.connection_id  # the fixture: an active connection to the fake ERP


def _log(app, run_id, direction="error") -> list[SyncChange]:
    with app.app_context():
        rows = db.session.scalars(select(SyncChange).where(SyncChange.run_id == run_id,
                                                           SyncChange.direction == direction)
                                  .order_by(SyncChange.id)).all()
        db.session.expunge_all()
        return rows


def test_an_erp_email_the_crm_refuses_is_left_out_reported_and_the_form_still_saves(app, fake, connection_id,
                                                                                     user_client):
    key = fake.add_actor("Customer", {"name": "Post Ten AS", "email": "post10@erp", "phone": "+47 22 00 00 10"})
    run = run_import(app, connection_id, keys=[key])

    # The company is imported and linked, without the e-mail.
    [company] = companies(app)
    assert (company.name, company.email, company.phone) == ("Post Ten AS", "", "+47 22 00 00 10")
    [link] = links(app)
    assert (link.erp_key, link.crm_id) == (key, company.id)
    # The base holds the CRM's (blank) value: the next sync reads "changed in the ERP", never "agreed".
    assert "email" in link.base and link.base["email"] is None and link.base["name"] == "Post Ten AS"

    # Reported: the run is partial, its message says so, the record is listed with the reason and the ERP value.
    assert run.status == RunStatus.PARTIAL
    assert run.counts["new"] == 1 and run.counts["errors"] == 0 and run.counts["problems"] == []
    assert "1 ERP value(s) the CRM cannot hold left out of 1 record(s)" in run.message
    assert run.counts["values_refused_count"] == 1 and run.counts["values_refused_records"] == 1
    [refused] = run.counts["values_refused"]
    assert (refused["erp_key"], refused["name"], refused["fields"]) == (key, "Post Ten AS", ["email"])
    assert refused["message"] == 'E-mail: "post10@erp" is not a valid e-mail address (left blank)'
    # The sync log has an error row with the ERP value; nothing claims the e-mail was written.
    [error] = _log(app, run.id)
    assert (error.crm_id, error.link_id, error.erp_key) == (company.id, link.id, key)
    assert (error.erp_field_key, error.crm_field_key) == ("email", "email")
    assert (error.old_value, error.new_value) == (None, "post10@erp")
    assert "is not a valid e-mail address" in error.rule
    assert "email" not in {c.crm_field_key for c in _log(app, run.id, "to_crm")}

    # The CRM form saves the company (before the fix: 422 on every save, "Enter a valid e-mail address").
    response = user_client.post(f"/companies/{company.id}/edit", htmx=True,
                                data={"name": "Post Ten AS", "email": "", "postal_city": "Oslo"})
    assert response.status_code == 200 and response.headers["HX-Redirect"] == f"/companies/{company.id}"


def test_a_person_with_an_erp_email_the_crm_refuses_becomes_a_contact_without_it(app, fake, connection_id):
    good = fake.add_actor("Person", {"firstname": "Kari", "lastname": "Nordmann", "email": "kari@erp.example"})
    bad = fake.add_actor("Person", {"firstname": "Ola", "lastname": "Hansen", "email": "post10@erp",
                                    "birthdate": "2999-01-01"})
    run = run_import(app, connection_id, "Person", keys=[good, bad], person_policy="no_company")
    by_name = {c.last_name: c for c in contacts(app)}
    assert by_name["Nordmann"].email == "kari@erp.example"
    assert (by_name["Hansen"].email, by_name["Hansen"].birth_date) == ("", None)
    assert run.status == RunStatus.PARTIAL and run.counts["new"] == 2 and run.counts["errors"] == 0
    assert run.counts["values_refused_count"] == 2
    [refused] = run.counts["values_refused"]
    assert refused["erp_key"] == bad and refused["fields"] == ["email", "birth_date"]
    assert '"post10@erp" is not a valid e-mail address' in refused["message"]
    assert '"2999-01-01" is in the future, and a birth date cannot be' in refused["message"]
    assert {(e.crm_field_key, e.new_value) for e in _log(app, run.id)} == {("email", "post10@erp"),
                                                                             ("birth_date", "2999-01-01")}


def test_a_javascript_web_site_is_never_stored(app, fake, connection_id):
    remap(app, connection_id, "Customer", {**CUSTOMER_MAP, "crmref": "url"})
    bad = fake.add_actor("Customer", {"name": "Evil AS", "crmref": "javascript:alert(1)"})
    ok = fake.add_actor("Customer", {"name": "Fine AS", "crmref": "https://fine.example"})
    run = run_import(app, connection_id, keys=[bad, ok])
    assert {c.name: c.url for c in companies(app)} == {"Evil AS": "", "Fine AS": "https://fine.example"}
    [error] = _log(app, run.id)
    assert (error.erp_key, error.crm_field_key, error.new_value) == (bad, "url", "javascript:alert(1)")
    assert error.rule == ('Web site: "javascript:alert(1)" is not a web address starting with http:// or '
                          "https:// (left blank)")


def test_an_existing_record_keeps_its_value_when_the_erp_changes_it_to_one_the_crm_refuses(app, fake,
                                                                                          connection_id):
    key = fake.add_actor("Customer", {"name": "Acme AS", "email": "post@acme.example"})
    run_import(app, connection_id, keys=[key])
    fake.update_actor("Customer", key, {"email": "post10@erp", "phone": "+47 22 00 00 00"})
    # a re-run updates the linked record (replace: merge would only fill the CRM's empty fields)
    run = run_import(app, connection_id, keys=[key], company_action="replace")
    [company] = companies(app)
    assert (company.email, company.phone) == ("post@acme.example", "+47 22 00 00 00")
    assert run.counts["updated"] == 1 and run.status == RunStatus.PARTIAL
    assert run.counts["values_refused"][0]["message"] == (
        'E-mail: "post10@erp" is not a valid e-mail address (left unchanged)')
    [error] = _log(app, run.id)
    assert (error.old_value, error.new_value) == ("post@acme.example", "post10@erp")
    # The agreed value stays the one both sides last agreed on.
    assert links(app)[0].base["email"] == "post@acme.example"


def test_merge_does_not_fill_an_empty_field_with_a_value_the_crm_refuses(app, fake, connection_id):
    existing = add_record(app, Company, name="Blank AS", email="")
    key = fake.add_actor("Customer", {"name": "Blank AS", "email": "post10@erp", "phone": "+47 1"})
    run = run_import(app, connection_id, keys=[key], company_match="name", company_action="merge")
    [company] = companies(app)
    assert (company.id, company.email, company.phone) == (existing, "", "+47 1")
    assert run.counts["linked_existing"] == 1 and run.counts["updated"] == 1
    assert run.counts["values_refused"][0]["message"].endswith("(left unchanged)")
    [error] = _log(app, run.id)
    assert (error.old_value, error.new_value) == ("", "post10@erp")


def test_a_record_that_already_holds_the_value_is_not_reported(app, fake, connection_id):
    # legacy data: the CRM already holds the value (written before these rules); matching it changes nothing
    existing = add_record(app, Company, name="Legacy AS", email="post10@erp")
    key = fake.add_actor("Customer", {"name": "Legacy AS", "email": "post10@erp"})
    run = run_import(app, connection_id, keys=[key], company_match="name", company_action="replace")
    assert run.status == RunStatus.SUCCEEDED and run.counts["values_refused_count"] == 0
    assert links(app)[0].crm_id == existing and links(app)[0].base["email"] == "post10@erp"


def test_a_list_mapping_to_a_deleted_crm_item_is_not_stored_on_a_new_record(app, fake, connection_id):
    with app.app_context():
        norway = db.session.scalar(select(ListItem).where(ListItem.list_name == CrmList.COUNTRY,
                                                          ListItem.name == "Norway"))
        norway.deleted = True
        db.session.commit()
    key = fake.add_actor("Customer", {"name": "Fjord AS", "country": "NO"})
    run = run_import(app, connection_id, keys=[key])
    [company] = companies(app)
    assert company.country_id is None
    [error] = _log(app, run.id)
    assert (error.crm_field_key, error.new_value) == ("country_id", "NO")
    assert "is a deleted item of the Country list (left blank)" in error.rule


def test_a_required_name_the_crm_cannot_hold_is_a_row_error(app, fake, connection_id):
    key = fake.add_actor("Customer", {"name": "Null\x00Byte AS"})
    run = run_import(app, connection_id, keys=[key])
    assert companies(app) == [] and links(app) == []
    assert run.counts["errors"] == 1 and run.counts["values_refused"] == []
    [problem] = run.counts["problems"]
    assert problem["message"] == ('Name: "Null\\x00Byte AS" contains a character the CRM cannot store; '
                                  "Name is blank, and a company needs one.")


def test_the_preview_says_which_values_are_left_out(app, fake, connection_id):
    key = fake.add_actor("Customer", {"name": "Post Ten AS", "email": "post10@erp"})
    with app.app_context():
        connection = db.session.get(Connection, connection_id)
        page = import_preview.preview(connection, ImportRequest(connection_id, "Customer", keys=[key],
                                                          settings=ImportSettings()))
        [row] = page.rows
        assert row.planned.outcome == "new"
        assert 'E-mail: "post10@erp" is not a valid e-mail address (left blank)' in row.planned.notes
        assert "E-mail" not in [label for label, _old, _new in row.fields]


def test_dates_from_the_erp_before_1800_are_left_out(app, fake, connection_id):
    key = fake.add_actor("Person", {"lastname": "Old", "birthdate": "1700-05-01"})
    ok = fake.add_actor("Person", {"lastname": "Young", "birthdate": "1990-05-01"})
    run = run_import(app, connection_id, "Person", keys=[key, ok], person_policy="no_company")
    assert {c.last_name: c.birth_date for c in contacts(app)} == {"Old": None, "Young": date(1990, 5, 1)}
    assert '"1700-05-01" is before the year 1800' in run.counts["values_refused"][0]["message"]

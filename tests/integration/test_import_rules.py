"""Import from ERP, issue #18 point 3: the ID duplicate rule, phone/e-mail/web-site policies on a match, and a
company made from a person's company name — run, previewed, stored in the run's options, audited, batched, and
refused with a field error when the combination is invalid.

The ERP is tests/fakes/connector_app.FakeConnector (its persons may have no parent; its Text field ``crmref``
stands in for an ERP number / company-name field).
"""

from __future__ import annotations

import re

import pytest
from sqlalchemy import event, select

from portal.extensions import db
from portal.models import AuditEvent, Company, Connection, Contact, RunStatus, SyncChange
from portal.services import import_preview, import_run, import_settings, import_write
from portal.services.import_settings import ImportProblem, ImportRequest, ImportSettings
from tests.conftest import add_record
from tests.integration import test_import as _base
from tests.integration.test_import import (
    CUSTOMER_MAP,
    companies,
    contacts,
    links,
    remap,
    run_import,
)


@pytest.fixture
def connection_id(app, fake):
    """test_import's connection to the fake ERP (Customer → company, Person → contact)."""
    return _base.connection_id._get_wrapped_function()(app, fake)


def _state(html: str) -> str:
    return re.search(r'name="state"[^>]*value="([^"]+)"', html).group(1)


# ---------------------------------------------------------------------------------------------- ID rule


def test_id_rule_on_a_mapped_number_field_matches_whatever_the_name(app, fake, connection_id):
    remap(app, connection_id, "Customer", {**CUSTOMER_MAP, "crmref": "number"})
    existing = add_record(app, Company, name="Old name AS", number="10042")
    other = add_record(app, Company, name="Acme AS")  # same name, another number: not the same company
    key = fake.add_actor("Customer", {"name": "Acme AS", "crmref": "10042"})
    run = run_import(app, connection_id, keys=[key], company_match="id", company_id_source="field",
                     company_id_field="crmref", company_action="replace")
    assert run.status == RunStatus.SUCCEEDED, run.message
    [link] = links(app)
    assert link.crm_id == existing and link.crm_id != other
    assert {c.name for c in companies(app)} == {"Acme AS"}  # replaced, and no third company
    assert run.options["settings"]["company_id_field"] == "crmref"


def test_id_rule_by_link_never_matches_by_value_and_skip_leaves_linked_records_alone(app, fake, connection_id):
    key = fake.add_actor("Customer", {"name": "Acme AS", "email": "one@acme.example"})
    run_import(app, connection_id, keys=[key])
    add_record(app, Company, name="Beta AS")
    beta = fake.add_actor("Customer", {"name": "Beta AS"})
    fake.update_actor("Customer", key, {"email": "two@acme.example"})
    run = run_import(app, connection_id, keys=[key, beta], company_match="id", company_id_source="link",
                     company_action="skip")
    assert run.status == RunStatus.SUCCEEDED, run.message
    assert run.counts["by_type"]["company"] == {"skip": 1, "new": 1}
    assert run.counts["skip_reasons"] == {"duplicate skipped": 1}
    names = [c.name for c in companies(app)]
    assert names.count("Beta AS") == 2  # the ID rule does not take a record for its name
    assert companies(app)[0].email == "one@acme.example"  # skipped: the linked record is left alone


def test_id_rule_lookups_are_one_query_per_batch(app, fake, connection_id):
    remap(app, connection_id, "Customer", {**CUSTOMER_MAP, "crmref": "number"})

    def company_selects(count: int) -> int:
        keys = [fake.add_actor("Customer", {"name": f"Co {count} {i}", "crmref": f"{count}-{i}"})
                for i in range(count)]
        for i in range(count):
            add_record(app, Company, name=f"Old {count} {i}", number=f"{count}-{i}")
        seen = []
        with app.app_context():
            engine = db.engine

        def listen(_conn, _cursor, statement, *_args):
            if statement.lstrip().upper().startswith("SELECT") and "FROM company" in statement:
                seen.append(statement)

        event.listen(engine, "before_cursor_execute", listen)
        try:
            run = run_import(app, connection_id, keys=keys, company_match="id", company_id_source="field",
                             company_id_field="crmref", company_action="merge")
        finally:
            event.remove(engine, "before_cursor_execute", listen)
        assert run.counts["linked_existing"] == count, run.counts
        return len(seen)

    assert company_selects(2) == company_selects(12)


def test_invalid_id_combinations_are_refused_with_the_field(app, fake, connection_id):
    with pytest.raises(ImportProblem) as caught:
        ImportSettings(company_match="id", company_action="add").validate()
    assert caught.value.field == "company_action"
    with pytest.raises(ImportProblem) as caught:
        ImportSettings(company_match="id", company_id_source="field").validate()
    assert caught.value.field == "company_id_field"
    with app.app_context():
        connection = db.session.get(Connection, connection_id)
        request = ImportRequest(connection_id, "Customer", keys=["C1"], settings=ImportSettings(
            company_match="id", company_id_source="field", company_id_field="orgnr"))  # orgnr maps to vat_no
        with pytest.raises(ImportProblem) as caught:
            import_settings.check_settings(connection, request)
        assert caught.value.field == "company_id_field"
        request.settings = ImportSettings(company_from_name=True, company_name_field="crmref")
        with pytest.raises(ImportProblem) as caught:
            import_run.start_import(connection, request)  # a customer import has no persons without a company
        assert caught.value.field == "company_from_name"


# ----------------------------------------------------------------------------- phones, e-mails, web sites


def _existing_contact(app, fake, phone_erp="+47 222", email_erp="erp@x.example", **existing):
    contact_id = add_record(app, Contact, last_name="Berg", email=existing.pop("email", "per@x.example"),
                            **existing)
    key = fake.add_actor("Person", {"lastname": "Berg", "email": email_erp, "phone": phone_erp})
    return contact_id, key


@pytest.mark.parametrize("policy, mobile, other", [
    ("add", "+47 111", "+47 222"),
    ("keep", "+47 111", ""),
    ("replace", "+47 222", ""),
    ("ignore", "+47 111", ""),
    ("action", "+47 111", ""),  # merge keeps a filled field, as before
])
def test_phone_policy_on_a_matched_contact(app, fake, connection_id, policy, mobile, other):
    contact_id, key = _existing_contact(app, fake, phone_mobile="+47 111", email="per@x.example",
                                        email_erp="per@x.example")
    run = run_import(app, connection_id, "Person", keys=[key], contact_match="email", contact_action="merge",
                     person_policy="no_company", phone_policy=policy)
    assert run.status == RunStatus.SUCCEEDED, run.message
    [contact] = contacts(app)
    assert contact.id == contact_id
    assert (contact.phone_mobile, contact.phone_other) == (mobile, other)
    assert run.options["settings"]["phone_policy"] == policy
    if policy == "add":
        with app.app_context():
            row = db.session.scalar(select(SyncChange).where(SyncChange.run_id == run.id,
                                                             SyncChange.crm_field_key == "phone_other"))
            assert row.new_value == "+47 222" and row.erp_field_key == "phone"


def test_add_does_not_repeat_a_number_the_contact_has(app, fake, connection_id):
    _id, key = _existing_contact(app, fake, phone_erp="+47 999", phone_mobile="+47 111", phone_direct="+47999",
                                 email="per@x.example", email_erp="per@x.example")
    run_import(app, connection_id, "Person", keys=[key], contact_match="email",
               person_policy="no_company", phone_policy="add")
    [contact] = contacts(app)
    assert contact.phone_other == ""  # +47 999 is already the direct phone


def test_email_and_url_policies_on_companies(app, fake, connection_id):
    remap(app, connection_id, "Customer", {**CUSTOMER_MAP, "crmref": "url"})
    add_record(app, Company, name="Acme AS", email="crm@acme.example", url="", phone="")
    key = fake.add_actor("Customer", {"name": "Acme AS", "email": "erp@acme.example",
                                      "crmref": "https://acme.example", "phone": "+47 22"})
    run = run_import(app, connection_id, keys=[key], company_match="name", company_action="merge",
                     email_policy="replace", url_policy="ignore", phone_policy="keep")
    assert run.status == RunStatus.SUCCEEDED, run.message
    [company] = companies(app)
    assert company.email == "erp@acme.example"  # replace wins over merge
    assert company.url == ""  # ignored, even though the field was empty
    assert company.phone == "+47 22"  # keep fills an empty field


def test_ignore_leaves_new_records_without_them(app, fake, connection_id):
    key = fake.add_actor("Customer", {"name": "Acme AS", "email": "erp@acme.example", "phone": "+47 22"})
    run_import(app, connection_id, keys=[key], phone_policy="ignore")
    [company] = companies(app)
    assert company.phone == "" and company.email == "erp@acme.example"


# ------------------------------------------------------------------------------ a company from a name


def test_persons_without_a_company_get_one_from_their_company_name(app, fake, connection_id):
    acme_id = add_record(app, Company, name="Acme AS")
    keys = [fake.add_actor("Person", {"lastname": "Berg", "crmref": "Nordic  AS"}),
            fake.add_actor("Person", {"lastname": "Dahl", "crmref": "nordic as"}),
            fake.add_actor("Person", {"lastname": "Lie", "crmref": "ACME AS"}),
            fake.add_actor("Person", {"lastname": "Moe"})]
    run = run_import(app, connection_id, "Person", keys=keys, person_policy="skip", company_from_name=True,
                     company_name_field="crmref", company_match="name", company_action="merge")
    assert run.status == RunStatus.SUCCEEDED, run.message
    by_name = {c.last_name: c for c in contacts(app)}
    assert set(by_name) == {"Berg", "Dahl", "Lie"}  # Moe has no company name: the person policy skips him
    nordic = [c for c in companies(app) if c.name == "Nordic AS"]
    assert len(nordic) == 1 and by_name["Berg"].company_id == by_name["Dahl"].company_id == nordic[0].id
    assert by_name["Lie"].company_id == acme_id
    assert run.counts["companies_from_names"] == 1 and run.counts["by_type"]["company"] == {"new": 1}
    with app.app_context():
        assert db.session.scalar(select(SyncChange.crm_id).where(
            SyncChange.run_id == run.id, SyncChange.crm_type == "company", SyncChange.rule == import_write.RULE_NEW)) \
            == nordic[0].id
        audit = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "import.start")).all()[-1]
        assert audit.after["settings"]["company_from_name"] is True
    again = run_import(app, connection_id, "Person", keys=keys, person_policy="skip", company_from_name=True,
                       company_name_field="crmref")
    assert again.status == RunStatus.SUCCEEDED and len(companies(app)) == 2 and len(contacts(app)) == 3


def test_undo_removes_a_company_made_from_a_name_with_its_contacts(app, fake, connection_id):
    from portal.models import SyncRun
    from portal.services import import_undo

    keys = [fake.add_actor("Person", {"lastname": "Berg", "crmref": "Nordic AS"}),
            fake.add_actor("Person", {"lastname": "Dahl", "crmref": "Nordic AS"})]
    run = run_import(app, connection_id, "Person", keys=keys, person_policy="skip", company_from_name=True,
                     company_name_field="crmref")
    assert run.status == RunStatus.SUCCEEDED, run.message
    with app.app_context():
        plan = import_undo.plan(db.session.get(SyncRun, run.id))
        # the company has no link of its own (it came from a name, not an ERP customer): not "disconnected"
        assert [(i.crm_type, i.name) for i in plan.kept] == []
        assert sorted((i.crm_type, i.name) for i in plan.remove) == [
            ("company", "Nordic AS"), ("contact", "Berg"), ("contact", "Dahl")]
        import_undo.undo(run.id)
    assert companies(app) == [] and contacts(app) == []


def test_add_anyway_creates_one_company_per_name(app, fake, connection_id):
    add_record(app, Company, name="Nordic AS")
    keys = [fake.add_actor("Person", {"lastname": n, "crmref": "Nordic AS"}) for n in ("Berg", "Dahl")]
    run_import(app, connection_id, "Person", keys=keys, person_policy="no_company", company_from_name=True,
               company_name_field="crmref", company_action="add")
    assert [c.name for c in companies(app)] == ["Nordic AS", "Nordic AS"]
    assert len({c.company_id for c in contacts(app)}) == 1


# ----------------------------------------------------------------------------- preview and the wizard


def test_preview_tells_what_each_option_does(app, fake, connection_id):
    add_record(app, Contact, last_name="Berg", email="per@x.example", phone_mobile="+47 111")
    keys = [fake.add_actor("Person", {"lastname": "Berg", "email": "per@x.example", "phone": "+47 222"}),
            fake.add_actor("Person", {"lastname": "Dahl", "crmref": "Nordic AS"})]
    with app.app_context():
        connection = db.session.get(Connection, connection_id)
        request = ImportRequest(connection_id, "Person", keys=keys, settings=ImportSettings(
            contact_match="email", phone_policy="add", person_policy="no_company", company_from_name=True,
            company_name_field="crmref"))
        page = import_preview.preview(connection, request)
        notes = {row.planned.key: " | ".join(row.planned.notes) for row in page.rows}
        assert "the ERP's +47 222 is added as Other phone" in notes[keys[0]]
        assert "creates the company Nordic AS" in notes[keys[1]]
        summary = dict(import_settings.settings_summary(connection, request))
        assert summary["Phone numbers"].startswith("Add") and "crmref" in summary["Persons without a company"]
    assert companies(app) == []  # a preview writes nothing


def _settings_page(admin_client, fake, connection_id, actor_type="Customer"):
    key = fake.add_actor(actor_type, {"name": "Acme AS", "lastname": "Berg"})
    base = {"connection_id": connection_id, "actor_type": actor_type, "crit-0-field": "email",
            "crit-0-op": "contains", "crit-0-value": "", "crit-0-active": "1"}
    page = admin_client.post("/settings/import/erp/settings", data={**base, "keys": [key]})
    assert page.status_code == 200, page.get_data(as_text=True)
    return page.get_data(as_text=True)


SETTINGS = {"company_match": "name", "company_action": "merge", "contact_match": "name", "contact_action": "merge",
            "project_match": "name", "project_action": "merge", "list_policy": "blank",
            "person_policy": "import_company", "company_id_source": "link", "contact_id_source": "link",
            "project_id_source": "link", "phone_policy": "action", "email_policy": "action", "url_policy": "action"}


def test_settings_step_offers_the_options_with_labels(app, admin_client, fake, connection_id):
    remap(app, connection_id, "Customer", {**CUSTOMER_MAP, "crmref": "number"})
    html = _settings_page(admin_client, fake, connection_id)
    for label in ("The ID rule for companies compares", "ERP number field of the company ID rule", "Phone numbers",
                  "E-mail addresses", "Web sites"):
        assert f">{label}</label>" in html, label
    assert '<option selected value="crmref">' in html  # the only mapped number field is preselected
    person = _settings_page(admin_client, fake, connection_id, "Person")
    assert "Create the company from the person&#39;s company name" in person
    assert 'for="company_name_field"' in person


@pytest.mark.parametrize("changes, field, text", [
    ({"company_match": "id", "company_action": "add"}, "company_action", "cannot be combined with the ID rule"),
    ({"company_match": "id", "company_id_source": "field", "company_id_field": ""}, "company_id_field",
     "Choose the ERP number field"),
    ({"company_match": "id", "company_id_source": "field", "company_id_field": "orgnr"}, "company_id_field",
     "No ERP field is mapped"),
    ({"phone_policy": "sometimes"}, "phone_policy", "Not a valid choice"),
])
def test_invalid_settings_answer_422_with_a_field_error(app, admin_client, fake, connection_id, changes, field,
                                                        text):
    state = _state(_settings_page(admin_client, fake, connection_id))
    response = admin_client.post("/settings/import/erp/preview", htmx=True,
                                 data={"state": state, **SETTINGS, **changes})
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    assert f'id="{field}-error"' in html and text in html and f'aria-describedby="{field}-error"' in html


def test_company_from_name_is_refused_for_a_customer_import(app, admin_client, fake, connection_id):
    state = _state(_settings_page(admin_client, fake, connection_id))
    response = admin_client.post("/settings/import/erp/preview", data={
        "state": state, **SETTINGS, "company_from_name": "y", "company_name_field": "crmref"})
    assert response.status_code == 422
    assert "only when persons are imported on their own" in response.get_data(as_text=True)


def test_wizard_preview_shows_the_options_and_rerun_repeats_them(app, admin_client, fake, connection_id):
    add_record(app, Company, name="Acme AS", phone="+47 11")
    fake_key = fake.add_actor("Customer", {"name": "Acme AS", "phone": "+47 22"})
    base = {"connection_id": connection_id, "actor_type": "Customer", "crit-0-field": "name",
            "crit-0-op": "contains", "crit-0-value": "", "crit-0-active": "1"}
    state = _state(admin_client.post("/settings/import/erp/settings",
                                     data={**base, "keys": [fake_key]}).get_data(as_text=True))
    preview = admin_client.post("/settings/import/erp/preview", data={"state": state, **SETTINGS,
                                                                       "phone_policy": "keep"})
    html = preview.get_data(as_text=True)
    assert preview.status_code == 200, html
    assert "Options of this import" in html and "Keep the existing value" in html
    assert "Telephone: keeps +47 11; the ERP&#39;s +47 22 is not imported (phone numbers: keep)" in html
    started = admin_client.post("/settings/import/erp/run", data={"state": _state(html)})
    run_id = int(started.headers["Location"].rstrip("/").split("/")[-1])
    with app.app_context():
        import_run.execute_import(run_id)
    page = admin_client.get(f"/settings/import/runs/{run_id}").get_data(as_text=True)
    assert "Options of this import" in page
    rerun = admin_client.post(f"/settings/import/runs/{run_id}/rerun")
    new_id = int(rerun.headers["Location"].rstrip("/").split("/")[-1])
    with app.app_context():
        from portal.models import SyncRun

        assert db.session.get(SyncRun, new_id).options["settings"]["phone_policy"] == "keep"

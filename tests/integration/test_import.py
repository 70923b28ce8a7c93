"""Import from ERP (issue #6): duplicate rules and actions, list values, persons under companies, re-running,
a connector failing mid-import, invalid rows, and the wizard's pages (search → settings → preview → run → done).

The ERP is tests/fakes/connector_app.FakeConnector over real HTTP on 127.0.0.1.
"""

from __future__ import annotations

import json
import re
from datetime import date

import pytest
from sqlalchemy import func, select

from portal.extensions import db
from portal.models import (
    AuditEvent,
    Company,
    Connection,
    Connector,
    Contact,
    CrmList,
    Link,
    ListItem,
    ListItemMapping,
    RunKind,
    RunStatus,
    SyncChange,
    SyncRun,
)
from portal.services import import_run
from portal.services.connections import apply_catalogue, fetch_catalogue
from portal.services.import_run import execute_import, start_import
from portal.services.import_settings import ImportRequest, ImportSettings
from tests.conftest import add_record

CUSTOMER_MAP = {"name": "name", "orgnr": "vat_no", "email": "email", "phone": "phone", "country": "country_id"}
PERSON_MAP = {"firstname": "first_name", "lastname": "last_name", "email": "email", "phone": "phone_mobile",
              "birthdate": "birth_date"}


def _map(connection: Connection, actor_type: str, mapping: dict[str, str | None]) -> None:
    config = connection.actor_type(actor_type)
    config.is_active = True
    for erp_field in config.fields:
        if erp_field.field_key in mapping:
            erp_field.crm_field = mapping[erp_field.field_key]
            erp_field.sync_to_crm = mapping[erp_field.field_key] is not None
            erp_field.sync_to_erp = mapping[erp_field.field_key] is not None
        elif erp_field.crm_field:
            erp_field.crm_field, erp_field.sync_to_crm, erp_field.sync_to_erp = None, False, False


def _items() -> dict[str, int]:
    return {item.name: item.id for item in db.session.scalars(select(ListItem).where(
        ListItem.list_name == CrmList.COUNTRY))}


@pytest.fixture
def connection_id(app, fake):
    """An active connection to the fake ERP: Customer → company and Person → contact mapped both ways,
    countries NO and SE mapped (DK, FI, DE are not)."""
    with app.app_context():
        connector = Connector(name="Fake ERP", url=fake.url)
        db.session.add(connector)
        db.session.commit()
        guid = fake.add_connection()
        connection = Connection(connector_id=connector.id, name="Fake production", guid=guid, active=True,
                                last_test_ok=True, config_values={"Company": "Fake AS"})
        db.session.add(connection)
        db.session.flush()
        apply_catalogue(connection, fetch_catalogue(connector, guid))
        _map(connection, "Customer", CUSTOMER_MAP)
        _map(connection, "Person", PERSON_MAP)
        country = next(f for f in connection.actor_type("Customer").fields if f.field_key == "country")
        items = _items()
        country.list_mappings = [ListItemMapping(erp_item_key="NO", erp_item_text="Norway", crm_item_id=items["Norway"]),
                                 ListItemMapping(erp_item_key="SE", erp_item_text="Sweden", crm_item_id=items["Sweden"])]
        db.session.commit()
        return connection.id


def remap(app, connection_id, actor_type, mapping):
    with app.app_context():
        _map(db.session.get(Connection, connection_id), actor_type, mapping)
        db.session.commit()


def run_import(app, connection_id, actor_type="Customer", keys=None, *, all_results=False, restrictions=(),
               excluded=(), **settings) -> SyncRun:
    """Queue an import through the service and execute it as the background job would."""
    with app.app_context():
        connection = db.session.get(Connection, connection_id)
        request = ImportRequest(connection_id, actor_type, restrictions=list(restrictions),
                                all_results=all_results, keys=list(keys or []), excluded=list(excluded),
                                settings=ImportSettings(**settings))
        run = start_import(connection, request)
        run_id = run.id
    with app.app_context():
        execute_import(run_id)
    with app.app_context():
        run = db.session.get(SyncRun, run_id)
        db.session.expunge(run)
        return run


def companies(app) -> list[Company]:
    with app.app_context():
        rows = db.session.scalars(select(Company).order_by(Company.id)).all()
        db.session.expunge_all()
        return rows


def contacts(app) -> list[Contact]:
    with app.app_context():
        rows = db.session.scalars(select(Contact).order_by(Contact.id)).all()
        db.session.expunge_all()
        return rows


def links(app, actor_type=None) -> list[Link]:
    with app.app_context():
        query = select(Link).order_by(Link.id)
        if actor_type:
            query = query.where(Link.erp_actor_type == actor_type)
        rows = db.session.scalars(query).all()
        db.session.expunge_all()
        return rows


# ------------------------------------------------------------------------------------------ basic import


def test_import_creates_linked_companies_with_base_values_and_logs_the_run(app, fake, connection_id):
    key = fake.add_actor("Customer", {"name": "Acme AS", "orgnr": "NO 123", "email": "post@acme.example",
                                      "country": "NO", "employees": 5})
    run = run_import(app, connection_id, keys=[key])
    assert run.status == RunStatus.SUCCEEDED and run.kind == RunKind.IMPORT
    assert run.counts["new"] == 1 and run.progress_done == run.progress_total == 1
    [company] = companies(app)
    assert (company.name, company.vat_no, company.email) == ("Acme AS", "NO 123", "post@acme.example")
    with app.app_context():
        assert company.country_id == _items()["Norway"]
        link = db.session.scalar(select(Link))
        actor = fake.get_actor("Customer", key)
        assert (link.crm_type, link.crm_id, link.erp_actor_type, link.erp_key) == ("company", company.id,
                                                                                  "Customer", key)
        assert link.erp_last_modified == actor["LastModified"]
        assert link.crm_synced_at == db.session.get(Company, company.id).updated_at
        # The base holds the agreed values in ERP form (the list item as its ERP key).
        assert link.base["name"] == "Acme AS" and link.base["country"] == "NO" and link.base["orgnr"] == "NO 123"
        changes = db.session.scalars(select(SyncChange).where(SyncChange.run_id == run.id)).all()
        assert {c.crm_field_key for c in changes} >= {"name", "vat_no", "email", "country_id"}
        assert all(c.direction == "to_crm" and c.link_id == link.id for c in changes)
        assert next(c for c in changes if c.crm_field_key == "country_id").new_value == "Norway"
        assert db.session.scalar(select(AuditEvent).where(AuditEvent.action == "import.start")) is not None
    # GetActors asked for the mapped fields of exactly the chosen keys.
    body = fake.calls_to("GetActors")[-1]
    assert body["ErpKeys"] == [key] and set(body["FieldKeys"]) >= set(CUSTOMER_MAP)


def test_all_results_reruns_the_search_server_side_and_excluded_rows_are_left_out(app, fake, connection_id):
    keys = [fake.add_actor("Customer", {"name": f"Nordic {i}"}) for i in range(4)]
    fake.add_actor("Customer", {"name": "Other Ltd"})
    restriction = {"FieldKey": "name", "Operator": "begins", "Values": ["nordic"]}
    run = run_import(app, connection_id, all_results=True, restrictions=[restriction],
                     excluded=[f"Customer:{keys[1]}"])
    assert run.counts["new"] == 3
    assert sorted(c.name for c in companies(app)) == ["Nordic 0", "Nordic 2", "Nordic 3"]
    assert fake.calls_to("SearchActorsAdvanced")[-1]["Restrictions"] == [restriction]


# -------------------------------------------------------------------------------------- duplicate rules


@pytest.mark.parametrize("rule, mapping, existing, actor, matches", [
    ("name", {}, {"name": "acme  as"}, {"name": "ACME AS"}, True),
    ("name", {}, {"name": "Acme Holding"}, {"name": "Acme AS"}, False),
    ("name", {}, {"name": "Østfold  Bygg AS"}, {"name": "ØSTFOLD BYGG AS"}, True),  # not only A-Z folded
    ("name_department", {"crmref": "department"}, {"name": "Acme", "department": "Sales"},
     {"name": "Acme", "crmref": "sales"}, True),
    ("name_department", {"crmref": "department"}, {"name": "Acme", "department": "Support"},
     {"name": "Acme", "crmref": "Sales"}, False),
    ("number", {"crmref": "number"}, {"name": "Old name", "number": "10042"}, {"name": "Acme", "crmref": "10042"},
     True),
    ("code", {"crmref": "code"}, {"name": "Old name", "code": "ACM"}, {"name": "Acme", "crmref": "acm"}, True),
    ("vat_no", {}, {"name": "Old name", "vat_no": "NO987654321"}, {"name": "Acme", "orgnr": "no987654321"}, True),
    ("none", {}, {"name": "Acme"}, {"name": "Acme"}, False),
])
def test_company_duplicate_rules(app, fake, connection_id, rule, mapping, existing, actor, matches):
    if mapping:
        remap(app, connection_id, "Customer", {**CUSTOMER_MAP, **mapping})
    existing_id = add_record(app, Company, **existing)
    key = fake.add_actor("Customer", actor)
    run = run_import(app, connection_id, keys=[key], company_match=rule, company_action="merge")
    [link] = links(app)
    if matches:
        assert len(companies(app)) == 1 and link.crm_id == existing_id
        assert run.counts["linked_existing"] == 1 and run.counts["new"] == 0
    else:
        assert len(companies(app)) == 2 and link.crm_id != existing_id
        assert run.counts["new"] == 1


def test_a_record_already_linked_on_the_connection_is_never_a_duplicate_candidate(app, fake, connection_id):
    first = fake.add_actor("Customer", {"name": "Twin AS"})
    run_import(app, connection_id, keys=[first])
    second = fake.add_actor("Customer", {"name": "Twin AS"})
    run_import(app, connection_id, keys=[second], company_match="name", company_action="merge")
    assert len(companies(app)) == 2 and len(links(app)) == 2


def test_two_actors_matching_the_same_record_in_one_import_link_it_once(app, fake, connection_id):
    existing_id = add_record(app, Company, name="Twin AS")
    keys = [fake.add_actor("Customer", {"name": "Twin AS"}), fake.add_actor("Customer", {"name": "twin as"})]
    run_import(app, connection_id, keys=keys, company_match="name", company_action="merge")
    rows = links(app)
    assert len(rows) == 2 and rows[0].crm_id == existing_id and rows[1].crm_id != existing_id


@pytest.mark.parametrize("rule, mapping, existing, actor, matches", [
    ("name", {}, {"first_name": "Kari", "last_name": "Nordmann"}, {"firstname": "kari", "lastname": "NORDMANN"}, True),
    ("name", {}, {"first_name": "Ola", "last_name": "Nordmann"}, {"firstname": "Kari", "lastname": "Nordmann"}, False),
    ("email", {}, {"last_name": "X", "email": "Kari@Example.com"}, {"lastname": "Y", "email": "kari@example.com"}, True),
    ("mobile", {}, {"last_name": "X", "phone_mobile": "+47 912 34 567"}, {"lastname": "Y", "phone": "+4791234567"},
     True),
    ("mobile", {}, {"last_name": "X", "phone_mobile": "+47 912 34 567"}, {"lastname": "Y", "phone": "+4791234000"},
     False),
    ("number", {"crmref": "number"}, {"last_name": "X", "number": "P-7"}, {"lastname": "Y", "crmref": "p-7"}, True),
    ("none", {}, {"first_name": "Kari", "last_name": "Nordmann"}, {"firstname": "Kari", "lastname": "Nordmann"},
     False),
])
def test_contact_duplicate_rules(app, fake, connection_id, rule, mapping, existing, actor, matches):
    if mapping:
        remap(app, connection_id, "Person", {**PERSON_MAP, **mapping})
    existing_id = add_record(app, Contact, **existing)
    key = fake.add_actor("Person", actor)
    run = run_import(app, connection_id, "Person", keys=[key], contact_match=rule, contact_action="merge",
                     person_policy="no_company")
    assert run.status == RunStatus.SUCCEEDED, run.message
    [link] = links(app)
    assert (link.crm_id == existing_id) is matches
    assert len(contacts(app)) == (1 if matches else 2)


def test_contact_matching_is_limited_to_the_persons_company(app, fake, connection_id):
    customer = fake.add_actor("Customer", {"name": "Acme AS"})
    run_import(app, connection_id, keys=[customer])
    other_company = add_record(app, Company, name="Elsewhere Ltd")
    add_record(app, Contact, first_name="Kari", last_name="Nordmann", company_id=other_company)
    person = fake.add_actor("Person", {"firstname": "Kari", "lastname": "Nordmann"}, parent=("Customer", customer))
    run_import(app, connection_id, "Person", keys=[person], contact_match="name", contact_action="merge")
    acme = next(c for c in companies(app) if c.name == "Acme AS")
    kari = [c for c in contacts(app) if c.last_name == "Nordmann"]
    assert len(kari) == 2 and any(c.company_id == acme.id for c in kari)


# ------------------------------------------------------------------------------------------------ actions


def test_action_add_creates_a_new_record_even_when_one_matches(app, fake, connection_id):
    existing_id = add_record(app, Company, name="Acme AS", email="old@acme.example")
    key = fake.add_actor("Customer", {"name": "Acme AS", "email": "new@acme.example"})
    run = run_import(app, connection_id, keys=[key], company_match="name", company_action="add")
    assert run.counts["new"] == 1 and len(companies(app)) == 2
    assert links(app)[0].crm_id != existing_id


def test_action_merge_fills_only_empty_fields_and_links(app, fake, connection_id):
    existing_id = add_record(app, Company, name="Acme AS", email="kept@acme.example", phone="")
    key = fake.add_actor("Customer", {"name": "Acme AS", "email": "erp@acme.example", "phone": "+47 22 00 00 00"})
    run = run_import(app, connection_id, keys=[key], company_match="name", company_action="merge")
    [company] = companies(app)
    assert company.id == existing_id and company.email == "kept@acme.example" and company.phone == "+47 22 00 00 00"
    assert run.counts["updated"] == 1 and run.counts["linked_existing"] == 1
    [link] = links(app)
    # Agreed fields carry the ERP value; the e-mail the CRM kept carries the CRM's value, so the next sync sees
    # "changed in the ERP" and never writes the CRM's value over the ERP's.
    assert link.base["phone"] == "+47 22 00 00 00" and link.base["email"] == "kept@acme.example"


def test_action_replace_overwrites_the_existing_record(app, fake, connection_id):
    existing_id = add_record(app, Company, name="Acme AS", email="old@acme.example", phone="123")
    key = fake.add_actor("Customer", {"name": "Acme AS", "email": "erp@acme.example"})
    run_import(app, connection_id, keys=[key], company_match="name", company_action="replace")
    [company] = companies(app)
    assert company.id == existing_id and company.email == "erp@acme.example" and company.phone == ""
    assert links(app)[0].base["email"] == "erp@acme.example"


def test_action_skip_leaves_the_match_alone_and_unlinked(app, fake, connection_id):
    existing_id = add_record(app, Company, name="Acme AS", email="old@acme.example")
    matched = fake.add_actor("Customer", {"name": "Acme AS", "email": "erp@acme.example"})
    fresh = fake.add_actor("Customer", {"name": "Fresh AS"})
    run = run_import(app, connection_id, keys=[matched, fresh], company_match="name", company_action="skip")
    assert run.counts["skipped"] == 1 and run.counts["new"] == 1
    assert run.counts["skip_reasons"] == {"duplicate skipped": 1}
    with app.app_context():
        assert db.session.get(Company, existing_id).email == "old@acme.example"
    assert [link.erp_key for link in links(app)] == [fresh]


# ------------------------------------------------------------------------------------------------- lists


def test_list_policy_add_maps_the_erp_item_to_the_crm_item_of_the_same_name(app, fake, connection_id):
    keys = [fake.add_actor("Customer", {"name": "Dansk A/S", "country": "DK"}),
            fake.add_actor("Customer", {"name": "Dansk B A/S", "country": "DK"})]
    run = run_import(app, connection_id, keys=keys, list_policy="add")
    assert run.status == RunStatus.SUCCEEDED and run.counts["list_items_added"] == 0
    with app.app_context():
        denmark = _items()["Denmark"]  # the default lists have Denmark: the ERP text finds the existing item
        assert {c.country_id for c in db.session.scalars(select(Company))} == {denmark}
        mapping = db.session.scalar(select(ListItemMapping).where(ListItemMapping.erp_item_key == "DK"))
        assert mapping.crm_item_id == denmark
        assert links(app)[0].base["country"] == "DK"


def test_list_policy_add_creates_an_item_that_does_not_exist_yet(app, fake, connection_id):
    with app.app_context():
        db.session.execute(ListItem.__table__.delete().where(ListItem.name == "Finland"))
        db.session.commit()
    key = fake.add_actor("Customer", {"name": "Suomi Oy", "country": "FI"})
    run = run_import(app, connection_id, keys=[key], list_policy="add")
    with app.app_context():
        finland = db.session.scalar(select(ListItem).where(ListItem.list_name == CrmList.COUNTRY,
                                                           ListItem.name == "Finland"))
        assert finland is not None and companies(app)[0].country_id == finland.id
    assert run.counts["list_items_added"] == 1


def test_list_policy_default_uses_the_chosen_item(app, fake, connection_id):
    with app.app_context():
        germany = _items()["Germany"]
    key = fake.add_actor("Customer", {"name": "Berlin GmbH", "country": "DE"})
    run_import(app, connection_id, keys=[key], list_policy="default", list_defaults={"Customer.country": germany})
    assert companies(app)[0].country_id == germany
    # The two sides hold different items and the CRM's has no ERP counterpart: no agreed value is recorded.
    assert "country" not in links(app)[0].base


def test_list_policy_blank_leaves_the_field_empty_and_reports_nothing_as_an_error(app, fake, connection_id):
    key = fake.add_actor("Customer", {"name": "Berlin GmbH", "country": "DE"})
    run = run_import(app, connection_id, keys=[key], list_policy="blank")
    assert run.status == RunStatus.SUCCEEDED and companies(app)[0].country_id is None
    with app.app_context():
        assert db.session.scalar(select(func.count()).select_from(ListItemMapping)) == 2


# -------------------------------------------------------------------------------------- persons and companies


def _acme_with_people(fake):
    acme = fake.add_actor("Customer", {"name": "Acme AS"})
    beta = fake.add_actor("Customer", {"name": "Beta AS"})
    people = [fake.add_actor("Person", {"firstname": "Kari", "lastname": "Nordmann"}, parent=("Customer", acme)),
              fake.add_actor("Person", {"firstname": "Ola", "lastname": "Hansen"}, parent=("Customer", acme)),
              fake.add_actor("Person", {"firstname": "Per", "lastname": "Berg"}, parent=("Customer", beta))]
    return acme, beta, people


def test_customers_with_their_persons_land_under_their_company(app, fake, connection_id):
    acme, beta, people = _acme_with_people(fake)
    fake.add_actor("Person", {"firstname": "Not", "lastname": "Selected"},
                   parent=("Customer", fake.add_actor("Customer", {"name": "Gamma AS"})))
    run = run_import(app, connection_id, keys=[acme, beta], include_persons=True)
    assert run.status == RunStatus.SUCCEEDED, run.message
    assert run.counts["by_type"] == {"company": {"new": 2}, "contact": {"new": 3}}
    assert run.progress_total == 5
    by_name = {c.name: c.id for c in companies(app)}
    placed = {c.last_name: c.company_id for c in contacts(app)}
    assert placed == {"Nordmann": by_name["Acme AS"], "Hansen": by_name["Acme AS"], "Berg": by_name["Beta AS"]}
    person_links = links(app, "Person")
    assert {link.erp_key: link.parent_erp_key for link in person_links} == {people[0]: acme, people[1]: acme,
                                                                          people[2]: beta}
    # The fake refuses "ParentErpKey oneof": the import falls back to SearchActorByParent per company.
    assert fake.calls_to("SearchActorByParent")


def test_persons_imported_alone_go_under_an_already_linked_company(app, fake, connection_id):
    acme, _beta, people = _acme_with_people(fake)
    run_import(app, connection_id, keys=[acme])
    run = run_import(app, connection_id, "Person", keys=people[:2], person_policy="skip")
    acme_id = companies(app)[0].id
    assert run.counts["new"] == 2 and {c.company_id for c in contacts(app)} == {acme_id}


def test_person_policy_import_company_imports_the_company_first(app, fake, connection_id):
    _acme, _beta, people = _acme_with_people(fake)
    run = run_import(app, connection_id, "Person", keys=[people[2]], person_policy="import_company")
    assert run.counts["by_type"] == {"company": {"new": 1}, "contact": {"new": 1}}
    [beta] = companies(app)
    assert beta.name == "Beta AS" and contacts(app)[0].company_id == beta.id
    assert {link.erp_actor_type for link in links(app)} == {"Customer", "Person"}


def test_person_policy_skip_skips_persons_whose_company_is_not_in_the_crm(app, fake, connection_id):
    _acme, _beta, people = _acme_with_people(fake)
    run = run_import(app, connection_id, "Person", keys=people, person_policy="skip")
    assert run.counts["skipped"] == 3 and contacts(app) == [] and companies(app) == []
    assert run.counts["skip_reasons"] == {"company not in the CRM": 3}


def test_person_policy_no_company_imports_them_without_a_company(app, fake, connection_id):
    _acme, _beta, people = _acme_with_people(fake)
    run_import(app, connection_id, "Person", keys=people, person_policy="no_company")
    assert [c.company_id for c in contacts(app)] == [None, None, None] and companies(app) == []


# -------------------------------------------------------------------------------------------- re-running


def test_running_an_import_again_updates_linked_actors_and_never_duplicates(app, fake, connection_id):
    acme, beta, _people = _acme_with_people(fake)
    first = run_import(app, connection_id, keys=[acme, beta], include_persons=True)
    assert first.counts["new"] == 5
    fake.update_actor("Customer", acme, {"email": "new@acme.example"})
    with app.app_context():
        again = import_run.rerun(db.session.get(SyncRun, first.id))
        again_id = again.id
    with app.app_context():
        execute_import(again_id)
        second = db.session.get(SyncRun, again_id)
        assert second.status == RunStatus.SUCCEEDED
        assert second.counts["new"] == 0 and second.counts["updated"] == 1 and second.counts["unchanged"] == 4
    assert len(companies(app)) == 2 and len(contacts(app)) == 3 and len(links(app)) == 5
    acme_company = next(c for c in companies(app) if c.name == "Acme AS")
    assert acme_company.email == "new@acme.example"
    link = next(li for li in links(app) if li.erp_key == acme)
    assert link.erp_last_modified == fake.get_actor("Customer", acme)["LastModified"]
    assert link.base["email"] == "new@acme.example"


def test_an_import_cannot_start_while_a_sync_runs_on_the_connection(app, fake, connection_id):
    key = fake.add_actor("Customer", {"name": "Acme AS"})
    with app.app_context():
        db.session.add(SyncRun(connection_id=connection_id, kind=RunKind.SYNC, status=RunStatus.RUNNING))
        db.session.commit()
        with pytest.raises(import_run.RunBusy, match="sync of Fake production is running"):
            start_import(db.session.get(Connection, connection_id),
                         ImportRequest(connection_id, "Customer", keys=[key]))
        assert db.session.scalar(select(func.count()).select_from(SyncRun)) == 1


def test_the_import_run_holds_the_connection_lock_against_a_second_run(app, fake, connection_id):
    key = fake.add_actor("Customer", {"name": "Acme AS"})
    with app.app_context():
        connection = db.session.get(Connection, connection_id)
        run_id = start_import(connection, ImportRequest(connection_id, "Customer", keys=[key])).id
        with pytest.raises(import_run.RunBusy, match="import of Fake production is queued"):
            start_import(connection, ImportRequest(connection_id, "Customer", keys=[key]))
        assert execute_import(run_id) == RunStatus.SUCCEEDED
        assert execute_import(run_id) is None  # a finished run is never executed twice


# ----------------------------------------------------------------------------------------- failures


def test_a_connector_failing_mid_import_leaves_consistent_links_and_a_rerun_completes(app, fake, connection_id,
                                                                                      monkeypatch):
    monkeypatch.setattr(import_run, "BATCH_SIZE", 2)
    keys = [fake.add_actor("Customer", {"name": f"Company {i}"}) for i in range(5)]
    original = import_run._write_batch
    batches = []

    def write_then_break(*args, **kwargs):
        original(*args, **kwargs)
        batches.append(1)
        if len(batches) == 1:  # the ERP goes down after the first batch
            fake.reply_error("GetActors", "The ERP database is offline.", error_code="DB_OFFLINE")

    monkeypatch.setattr(import_run, "_write_batch", write_then_break)
    run = run_import(app, connection_id, keys=keys)
    assert run.status == RunStatus.PARTIAL
    assert "The ERP database is offline." in run.message and "3 actor(s) were not imported" in run.message
    assert run.counts["remaining"] == 3 and run.counts["remaining_keys"] == keys[2:]
    assert [c.name for c in companies(app)] == ["Company 0", "Company 1"]
    assert sorted(link.erp_key for link in links(app)) == sorted(keys[:2])  # every record has its link

    with app.app_context():
        again = import_run.rerun(db.session.get(SyncRun, run.id))
        again_id = again.id
    with app.app_context():
        assert execute_import(again_id) == RunStatus.SUCCEEDED
        second = db.session.get(SyncRun, again_id)
        assert second.counts["new"] == 3 and second.counts["unchanged"] == 2
    assert len(companies(app)) == 5 and len(links(app)) == 5


def test_a_connector_down_from_the_start_fails_the_run(app, fake, connection_id):
    key = fake.add_actor("Customer", {"name": "Acme AS"})
    fake.reply_error("GetActors", "Maintenance window.", error_code="MAINTENANCE")
    run = run_import(app, connection_id, keys=[key])
    assert run.status == RunStatus.FAILED and "Maintenance window." in run.message
    assert run.counts["remaining"] == 1 and companies(app) == []


def test_invalid_rows_are_reported_and_the_rest_is_imported(app, fake, connection_id):
    good = fake.add_actor("Person", {"firstname": "Kari", "lastname": "Nordmann", "birthdate": "1980-02-01"})
    bad_date = fake.add_actor("Person", {"firstname": "Ola", "lastname": "Hansen", "birthdate": "31/12/1980"})
    long_name = fake.add_actor("Person", {"firstname": "Per", "lastname": "B" * 81})
    run = run_import(app, connection_id, "Person", keys=[good, bad_date, long_name], person_policy="no_company")
    assert run.status == RunStatus.PARTIAL and run.counts["new"] == 1 and run.counts["errors"] == 2
    problems = {p["erp_key"]: p["message"] for p in run.counts["problems"]}
    assert "not a date" in problems[bad_date] and "longer than 80 characters" in problems[long_name]
    [kari] = contacts(app)
    assert kari.birth_date == date(1980, 2, 1)
    with app.app_context():
        errors = db.session.scalars(select(SyncChange).where(SyncChange.run_id == run.id,
                                                             SyncChange.direction == "error")).all()
        assert {e.erp_key for e in errors} == {bad_date, long_name}
        assert {e.erp_field_key for e in errors} == {"birthdate", "lastname"}
    assert [link.erp_key for link in links(app)] == [good]


def test_an_over_long_company_name_is_an_error_row(app, fake, connection_id):
    key = fake.add_actor("Customer", {"name": "N" * 201})
    ok = fake.add_actor("Customer", {"name": "Fine AS"})
    run = run_import(app, connection_id, keys=[key, ok])
    assert run.counts["errors"] == 1 and run.counts["new"] == 1
    assert "longer than 200 characters" in run.counts["problems"][0]["message"]


def test_actors_gone_from_the_erp_are_reported_as_skipped(app, fake, connection_id):
    key = fake.add_actor("Customer", {"name": "Acme AS"})
    run = run_import(app, connection_id, keys=[key, "C-missing"])
    assert run.counts["new"] == 1 and run.counts["skip_reasons"] == {"no longer in the ERP": 1}
    assert run.status == RunStatus.SUCCEEDED
    # listed among the rows not imported, and counted there (the heading shows the count)
    assert [p["erp_key"] for p in run.counts["problems"]] == ["C-missing"] and run.counts["problem_count"] == 1


# ------------------------------------------------------------------------------------------ the wizard UI


def _state(html: str) -> str:
    match = re.search(r'name="state"[^>]*value="([^"]+)"', html) or re.search(r'value="([^"]+)"[^>]*name="state"',
                                                                               html)
    assert match, "no wizard state in the page"
    return match.group(1)


def test_import_pages_are_for_admins_only(user_client, connection_id):
    assert user_client.get("/settings/import").status_code == 403
    assert user_client.get(f"/settings/import/erp?connection_id={connection_id}").status_code == 403


def test_import_page_and_sync_tab_entry_offer_only_importable_actor_types(app, admin_client, connection_id):
    page = admin_client.get("/settings/import").get_data(as_text=True)
    assert "ERP Sync" in page and "Fake production" in page and 'aria-label="Import steps"' in page
    start = admin_client.get(f"/settings/import/erp?connection_id={connection_id}").get_data(as_text=True)
    assert 'value="Customer"' in start and 'value="Person"' in start
    assert 'value="Supplier"' not in start and 'value="Project"' not in start  # not active
    assert 'aria-current="step"' in start
    sync_tab = admin_client.get(f"/settings/sync?connection={connection_id}").get_data(as_text=True)
    assert f"/settings/import/erp?connection_id={connection_id}" in sync_tab
    options = admin_client.get(f"/settings/import/erp/actor-types?connection_id={connection_id}", htmx=True)
    assert "<html" not in options.get_data(as_text=True) and 'value="Customer"' in options.get_data(as_text=True)


def test_search_step_builds_typed_criteria_and_answers_422_for_bad_ones(app, admin_client, fake, connection_id):
    with app.app_context():
        config = db.session.get(Connection, connection_id).actor_type("Customer")
        config.searchable_fields = ["name", "employees", "country"]
        next(f for f in config.fields if f.field_key == "country").show_in_search = True
        db.session.commit()
    fake.add_actor("Customer", {"name": "Acme AS", "employees": 40, "country": "NO"})
    fake.add_actor("Customer", {"name": "Small AS", "employees": 3, "country": "SE"})
    page = admin_client.get(f"/settings/import/erp/search?connection_id={connection_id}&actor_type=Customer")
    assert page.status_code == 200 and 'name="crit-0-field"' in page.get_data(as_text=True)
    base = {"connection_id": connection_id, "actor_type": "Customer"}
    bad = admin_client.post("/settings/import/erp/search", htmx=True, data={
        **base, "action": "find", "crit-0-field": "employees", "crit-0-op": ">", "crit-0-value": "many",
        "crit-0-active": "1"})
    assert bad.status_code == 422 and "is not a whole number" in bad.get_data(as_text=True)
    added = admin_client.post("/settings/import/erp/search", htmx=True, data={
        **base, "action": "add", "crit-0-field": "country", "crit-0-op": "=", "crit-0-active": "1"})
    html = added.get_data(as_text=True)
    assert 'id="criteria"' in html and 'name="crit-1-field"' in html and "<html" not in html
    assert '<option value="NO"' in html and 'value="oneof"' in html  # a list field picks from GetList
    found = admin_client.post("/settings/import/erp/search", htmx=True, data={
        **base, "action": "find", "crit-0-field": "employees", "crit-0-op": ">", "crit-0-value": "10",
        "crit-0-active": "1", "crit-1-field": "country", "crit-1-op": "oneof", "crit-1-value": ["NO", "SE"],
        "crit-1-active": "1"})
    html = found.get_data(as_text=True)
    assert found.status_code == 200 and "Acme AS" in html and "Small AS" not in html and "Norway" in html
    restrictions = fake.calls_to("SearchActorsAdvanced")[-1]["Restrictions"]
    assert restrictions == [{"FieldKey": "employees", "Operator": ">", "Values": [10]},
                            {"FieldKey": "country", "Operator": "oneof", "Values": ["NO", "SE"]}]


def test_next_without_a_selection_is_refused(admin_client, connection_id):
    response = admin_client.post("/settings/import/erp/settings", data={
        "connection_id": connection_id, "actor_type": "Customer", "crit-0-field": "name", "crit-0-op": "begins",
        "crit-0-value": "a", "crit-0-active": "1"})
    assert response.status_code == 422 and "Select the actors to import" in response.get_data(as_text=True)


def test_tampered_wizard_state_is_rejected(admin_client, connection_id):
    response = admin_client.post("/settings/import/erp/preview", data={"state": "forged.token", "page": "1"})
    assert response.status_code == 400


def test_wizard_search_settings_preview_import_and_done(app, admin_client, fake, connection_id):
    existing_id = add_record(app, Company, name="Acme AS", email="kept@acme.example")
    acme, beta, people = _acme_with_people(fake)
    fake.update_actor("Customer", acme, {"phone": "+47 22 00 00 00", "email": "erp@acme.example"})
    base = {"connection_id": connection_id, "actor_type": "Customer", "crit-0-field": "name",
            "crit-0-op": "ends", "crit-0-value": "AS", "crit-0-active": "1"}
    results = admin_client.post("/settings/import/erp/search", htmx=True, data={**base, "action": "find"})
    html = results.get_data(as_text=True)
    assert "2</strong> Customer actor(s) found" in html and f'value="{acme}"' in html
    settings = admin_client.post("/settings/import/erp/settings", data={**base, "keys": [acme, beta]})
    assert settings.status_code == 200
    html = settings.get_data(as_text=True)
    assert "Find duplicate companies by" in html and "Also import the persons of these companies" in html
    state = _state(html)
    bad = admin_client.post("/settings/import/erp/preview", data={"state": state, "company_match": "nonsense"})
    assert bad.status_code == 422
    preview = admin_client.post("/settings/import/erp/preview", data={
        "state": state, "company_match": "name", "company_action": "merge", "contact_match": "name",
        "contact_action": "merge", "project_match": "name", "project_action": "merge", "list_policy": "blank",
        "include_persons": "y", "person_policy": "import_company"})
    html = preview.get_data(as_text=True)
    assert preview.status_code == 200, html
    assert "badge-outcome-update" in html and "badge-outcome-new" in html
    assert "links the existing company Acme AS" in html and "Kari Nordmann" in html and "Per Berg" in html
    assert "under the new company Beta AS" in html
    assert companies(app)[0].id == existing_id and len(companies(app)) == 1  # a preview writes nothing
    state = _state(html)
    shown = [f"Customer:{acme}", f"Customer:{beta}", *[f"Person:{p}" for p in people]]
    include = [s for s in shown if s != f"Person:{people[1]}"]  # untick Ola Hansen
    started = admin_client.post("/settings/import/erp/run", data={"state": state, "shown": shown, "include": include})
    assert started.status_code == 303
    run_id = int(started.headers["Location"].rstrip("/").split("/")[-1])
    progress = admin_client.get(f"/settings/import/runs/{run_id}/progress", htmx=True)
    assert progress.status_code == 200 and 'hx-trigger="every 1s"' in progress.get_data(as_text=True)
    with app.app_context():
        execute_import(run_id)
    done = admin_client.get(f"/settings/import/runs/{run_id}/progress", htmx=True)
    html = done.get_data(as_text=True)
    assert done.status_code == 286 and "hx-trigger" not in html and 'id="import-run"' in html
    assert json.loads(done.headers["HX-Trigger"])["toast"][0]["level"] == "success"
    assert f'href="/companies/{existing_id}"' in html and "Beta AS" in html and "Kari Nordmann" in html
    assert "Ola" not in html
    assert sorted(c.last_name for c in contacts(app)) == ["Berg", "Nordmann"]
    page = admin_client.get(f"/settings/import/runs/{run_id}").get_data(as_text=True)
    assert "New records (3)" in page and "Updated records (1)" in page
    records = admin_client.get(f"/settings/import/runs/{run_id}/records?which=new", htmx=True)
    assert "Beta AS" in records.get_data(as_text=True)
    assert f"/settings/import/runs/{run_id}" in admin_client.get("/settings/import").get_data(as_text=True)


def test_preview_paging_keeps_unticked_rows(app, admin_client, fake, connection_id, monkeypatch):
    from portal.admin import routes_import_preview

    monkeypatch.setattr(routes_import_preview, "PREVIEW_PER_PAGE", 2)
    keys = [fake.add_actor("Customer", {"name": f"Company {i}"}) for i in range(3)]
    base = {"connection_id": connection_id, "actor_type": "Customer", "crit-0-field": "name", "crit-0-op": "begins",
            "crit-0-value": "Company", "crit-0-active": "1", "all_results": "1"}
    state = _state(admin_client.post("/settings/import/erp/settings", data=base).get_data(as_text=True))
    first = admin_client.post("/settings/import/erp/preview", data={
        "state": state, "company_match": "name", "company_action": "merge", "contact_match": "name",
        "contact_action": "merge", "project_match": "name", "project_action": "merge", "list_policy": "blank",
        "person_policy": "import_company"}).get_data(as_text=True)
    assert "Page 1 of 2" in first
    state = _state(first)
    second = admin_client.post("/settings/import/erp/preview", htmx=True, data={
        "state": state, "page": "2", "shown": [f"Customer:{keys[0]}", f"Customer:{keys[1]}"],
        "include": [f"Customer:{keys[0]}"]}).get_data(as_text=True)
    assert "Company 2" in second and f'name="excluded" value="Customer:{keys[1]}"' in second
    started = admin_client.post("/settings/import/erp/run", data={
        "state": _state(second), "excluded": [f"Customer:{keys[1]}"], "shown": [f"Customer:{keys[2]}"],
        "include": [f"Customer:{keys[2]}"]})
    run_id = int(started.headers["Location"].rstrip("/").split("/")[-1])
    with app.app_context():
        execute_import(run_id)
    assert sorted(c.name for c in companies(app)) == ["Company 0", "Company 2"]


def test_starting_an_import_while_a_sync_runs_answers_409(app, admin_client, fake, connection_id):
    key = fake.add_actor("Customer", {"name": "Acme AS"})
    base = {"connection_id": connection_id, "actor_type": "Customer", "crit-0-field": "name", "crit-0-op": "begins",
            "crit-0-value": "Acme", "crit-0-active": "1", "keys": [key]}
    state = _state(admin_client.post("/settings/import/erp/settings", data=base).get_data(as_text=True))
    with app.app_context():
        db.session.add(SyncRun(connection_id=connection_id, kind=RunKind.SYNC, status=RunStatus.QUEUED))
        db.session.commit()
    response = admin_client.post("/settings/import/erp/run", data={"state": state})
    assert response.status_code == 409 and "sync of Fake production is queued" in response.get_data(as_text=True)


# --------------------------------------------------------------------------------- engine and reaper


def test_the_sync_engine_hands_import_runs_to_the_importer(app, fake, connection_id):
    from portal.services.sync import engine

    key = fake.add_actor("Customer", {"name": "Acme AS"})
    with app.app_context():
        run_id = start_import(db.session.get(Connection, connection_id),
                              ImportRequest(connection_id, "Customer", keys=[key])).id
    with app.app_context():
        engine.execute_run(run_id)
        assert db.session.get(SyncRun, run_id).status == RunStatus.SUCCEEDED
    assert [c.name for c in companies(app)] == ["Acme AS"]


def test_an_import_given_up_by_the_reaper_stops_without_writing_more(app, fake, connection_id, monkeypatch):
    from datetime import timedelta

    from portal.database import utcnow
    from portal.services.sync import runs

    monkeypatch.setattr(import_run, "BATCH_SIZE", 2)
    keys = [fake.add_actor("Customer", {"name": f"Company {i}"}) for i in range(5)]
    original = import_run._write_batch

    def write_then_reap(*args, **kwargs):
        original(*args, **kwargs)
        runs.reap_stale(now=utcnow() + timedelta(hours=1))

    monkeypatch.setattr(import_run, "_write_batch", write_then_reap)
    run = run_import(app, connection_id, keys=keys)
    assert run.status == RunStatus.FAILED and "Abandoned" in run.error
    assert [c.name for c in companies(app)] == ["Company 0", "Company 1"] and len(links(app)) == 2


def test_ticked_rows_survive_paging_and_back_from_the_settings(app, admin_client, fake, connection_id, monkeypatch):
    from portal.admin import routes_import

    monkeypatch.setattr(routes_import, "RESULTS_PER_PAGE", 2)
    keys = [fake.add_actor("Customer", {"name": f"Company {i}"}) for i in range(3)]
    base = {"connection_id": connection_id, "actor_type": "Customer", "crit-0-field": "name",
            "crit-0-op": "begins", "crit-0-value": "Company", "crit-0-active": "1"}
    page2 = admin_client.post("/settings/import/erp/search", htmx=True,
                              data={**base, "action": "page", "page": "2", "keys": [keys[0]]})
    html = page2.get_data(as_text=True)
    assert "Page 2 of 2" in html and "1 ticked on other pages" in html
    assert f'<input type="hidden" name="keys" value="{keys[0]}">' in html
    settings = admin_client.post("/settings/import/erp/settings", data={**base, "keys": [keys[0], keys[2]]})
    assert "2 selected Customer actor(s)" in settings.get_data(as_text=True)
    back = admin_client.post("/settings/import/erp/search", data={"state": _state(settings.get_data(as_text=True))})
    html = back.get_data(as_text=True)
    assert back.status_code == 200 and 'value="Company"' in html  # the criteria are back
    assert re.search(rf'value="{keys[0]}"[^>]*\s+checked', html)  # and so is the selection


@pytest.fixture
def csrf_on(app_config):
    app_config["WTF_CSRF_ENABLED"] = True


def test_wizard_posts_need_the_csrf_token(csrf_on, admin_client, connection_id):
    from tests.conftest import csrf_token_from

    page = admin_client.get(f"/settings/import/erp/search?connection_id={connection_id}&actor_type=Customer")
    data = {"connection_id": connection_id, "actor_type": "Customer", "action": "add"}
    assert admin_client.post("/settings/import/erp/search", data=data).status_code == 400
    token = csrf_token_from(page.get_data(as_text=True))
    assert 'name="csrf_token"' in page.get_data(as_text=True)
    accepted = admin_client.post("/settings/import/erp/search", data=data, htmx=True,
                                 headers={"X-CSRFToken": token})
    assert accepted.status_code == 200
    assert admin_client.post("/settings/import/runs/1/rerun").status_code == 400


def test_a_link_left_behind_by_a_deleted_record_is_reused(app, fake, connection_id):
    key = fake.add_actor("Customer", {"name": "Acme AS"})
    run_import(app, connection_id, keys=[key])
    with app.app_context():  # the record vanishes without the delete hook (e.g. removed in the database)
        db.session.execute(Company.__table__.delete())
        db.session.commit()
    run = run_import(app, connection_id, keys=[key])
    assert run.status == RunStatus.SUCCEEDED and run.counts["new"] == 1
    [company] = companies(app)
    [link] = links(app)
    assert link.crm_id == company.id and link.erp_key == key

"""portal/services/crm.py: validation rules, create/update/delete, search and paging."""

from __future__ import annotations

import sys
import types
from datetime import date, timedelta

import pytest
from sqlalchemy import event, insert, select

import portal.services
from portal.extensions import db
from portal.models import Company, Contact, CrmList, ListItem, Project
from portal.services import crm
from portal.services.crm import Page, ValidationError

pytestmark = pytest.mark.db


def _item(list_name: str, name: str | None = None) -> ListItem:
    stmt = select(ListItem).where(ListItem.list_name == list_name).order_by(ListItem.rank)
    if name:
        stmt = stmt.where(ListItem.name == name)
    return db.session.scalars(stmt).first()


def _errors(crm_type, data, record=None) -> dict:
    with pytest.raises(ValidationError) as info:
        crm.clean(crm_type, data, record)
    return info.value.errors


# --- validation ---------------------------------------------------------------------------------------------


def test_company_name_is_required_and_text_is_trimmed(app_ctx):
    assert _errors("company", {"name": "   "}) == {"name": "Name is required."}
    values = crm.clean("company", {"name": "  Acme AS  ", "postal_city": " Oslo "})
    assert values["name"] == "Acme AS"
    assert values["postal_city"] == "Oslo"
    assert values["department"] == ""  # a create treats missing keys as blank
    assert values["country_id"] is None


def test_lengths_follow_crm_fields(app_ctx):
    errors = _errors("company", {"name": "x" * 201, "code": "c" * 41})
    assert errors["name"] == "Name can be at most 200 characters."
    assert errors["code"] == "Code can be at most 40 characters."
    assert crm.clean("company", {"name": "x" * 200})["name"] == "x" * 200


@pytest.mark.parametrize("email", ["no-at-sign", "a@b", "two words@example.com", "a@@example.com"])
def test_bad_email_is_refused(app_ctx, email):
    assert "e-mail" in _errors("company", {"name": "A", "email": email})["email"]


@pytest.mark.parametrize("url", ["www.example.com", "ftp://example.com", "javascript:alert(1)", "https://",
                                 "http://exa mple.com"])
def test_web_address_must_be_http_or_https(app_ctx, url):
    assert _errors("company", {"name": "A", "url": url})["url"].startswith("Enter a web address")


def test_good_email_and_url_pass(app_ctx):
    values = crm.clean("company", {"name": "A", "email": "post@acme.example", "url": "HTTPS://acme.example/x?y=1"})
    assert values["email"] == "post@acme.example"
    assert values["url"] == "HTTPS://acme.example/x?y=1"


def test_list_field_accepts_only_items_of_its_own_list(app_ctx):
    country = _item(CrmList.COUNTRY, "Norway")
    business = _item(CrmList.BUSINESS)
    assert crm.clean("company", {"name": "A", "country_id": str(country.id)})["country_id"] == country.id
    errors = _errors("company", {"name": "A", "country_id": business.id, "category_id": 999999})
    assert errors == {"country_id": "Choose a country from the list.",
                      "category_id": "Choose a category from the list."}
    assert _errors("company", {"name": "A", "business_id": "abc"}) == {
        "business_id": "Choose a business from the list."}


def test_deleted_list_item_is_refused_for_new_choices_but_kept_on_old_records(app_ctx):
    status = _item(CrmList.PROJECT_STATUS, "On hold")
    project = crm.create_record("project", {"name": "Old", "status_id": status.id})
    status.deleted = True
    db.session.commit()
    assert _errors("project", {"name": "New", "status_id": status.id}) == {
        "status_id": "Choose a status from the list."}
    # The project that already has it may keep it when saved again...
    crm.update_record(project, {"name": "Old, renamed", "status_id": status.id})
    assert project.status_id == status.id
    # ...but another project may not pick it up.
    other = crm.create_record("project", {"name": "Other"})
    assert "status_id" in _errors("project", {"status_id": status.id}, other)


def test_contact_needs_a_first_or_last_name(app_ctx):
    assert _errors("contact", {"first_name": " ", "last_name": ""}) == {
        "first_name": "Enter a first name or a last name."}
    assert crm.clean("contact", {"last_name": "Berg"})["last_name"] == "Berg"
    assert crm.clean("contact", {"first_name": "Nora"})["first_name"] == "Nora"


def test_contact_name_rule_uses_the_stored_name_on_partial_updates(app_ctx):
    contact = crm.create_record("contact", {"first_name": "Nora"})
    crm.update_record(contact, {"email": "nora@example.com"})  # no name keys: the stored name counts
    assert _errors("contact", {"first_name": ""}, contact) == {"first_name": "Enter a first name or a last name."}


def test_contact_company_must_exist(app_ctx):
    company = crm.create_record("company", {"name": "Acme"})
    assert crm.clean("contact", {"last_name": "B", "company_id": str(company.id)})["company_id"] == company.id
    assert _errors("contact", {"last_name": "B", "company_id": 424242}) == {
        "company_id": "Choose an existing company."}
    assert _errors("contact", {"last_name": "B", "company_id": "Acme"}) == {
        "company_id": "Choose an existing company."}


def test_dates_are_parsed_and_checked(app_ctx):
    assert crm.clean("contact", {"last_name": "B", "birth_date": "1980-02-29"})["birth_date"] == date(1980, 2, 29)
    assert crm.clean("contact", {"last_name": "B", "birth_date": ""})["birth_date"] is None
    assert crm.clean("project", {"name": "P", "end_date": date(2030, 1, 31)})["end_date"] == date(2030, 1, 31)
    for bad in ("1981-02-29", "31.01.2030", "2030-1-5", 20300101):
        assert "YYYY-MM-DD" in _errors("project", {"name": "P", "end_date": bad})["end_date"]
    tomorrow = date.today() + timedelta(days=2)
    assert _errors("contact", {"last_name": "B", "birth_date": tomorrow}) == {
        "birth_date": "The birth date cannot be in the future."}


def test_all_errors_are_reported_at_once(app_ctx):
    errors = _errors("company", {"name": "", "email": "x", "url": "x", "country_id": "x"})
    assert set(errors) == {"name", "email", "url", "country_id"}


# --- create / update / delete --------------------------------------------------------------------------------


def test_create_and_update_keep_timestamps(app_ctx):
    company = crm.create_record("company", {"name": "Acme", "email": "post@acme.example"})
    assert company.id and company.created_at and company.updated_at
    created = company.created_at
    crm.update_record(company, {"name": "Acme Group"})
    db.session.refresh(company)
    assert company.name == "Acme Group"
    assert company.email == "post@acme.example"  # untouched: not in the update
    assert company.created_at == created
    assert company.updated_at >= created


def test_invalid_update_changes_nothing(app_ctx):
    company = crm.create_record("company", {"name": "Acme"})
    with pytest.raises(ValidationError):
        crm.update_record(company, {"name": "", "postal_city": "Bergen"})
    db.session.expire_all()
    assert db.session.get(Company, company.id).postal_city == ""
    assert db.session.get(Company, company.id).name == "Acme"


def test_invalid_create_saves_nothing(app_ctx):
    with pytest.raises(ValidationError):
        crm.create_record("project", {"name": "P", "url": "nope"})
    assert db.session.scalar(select(Project)) is None


def test_deleting_a_company_keeps_its_contacts(app_ctx):
    company = crm.create_record("company", {"name": "Acme"})
    first = crm.create_record("contact", {"first_name": "A", "company_id": company.id})
    second = crm.create_record("contact", {"first_name": "B", "company_id": company.id})
    before = second.updated_at
    result = crm.delete_record(company)
    assert result == {"contacts_detached": 2}
    db.session.expire_all()
    assert db.session.get(Company, company.id) is None
    kept = db.session.scalars(select(Contact).order_by(Contact.id)).all()
    assert [c.id for c in kept] == [first.id, second.id]
    assert all(c.company_id is None for c in kept)
    assert kept[1].updated_at >= before


def test_delete_calls_the_links_hook_in_the_same_transaction(app_ctx, monkeypatch):
    calls = []

    def on_crm_record_deleted(crm_type, crm_id):
        # Still inside the transaction: the record is not deleted yet.
        calls.append((crm_type, crm_id, db.session.get(Project, crm_id) is not None))

    module = types.ModuleType("portal.services.links")
    module.on_crm_record_deleted = on_crm_record_deleted
    monkeypatch.setitem(sys.modules, "portal.services.links", module)
    monkeypatch.setattr(portal.services, "links", module, raising=False)
    project = crm.create_record("project", {"name": "P"})
    crm.delete_record(project)
    assert calls == [("project", project.id, True)]


def test_delete_works_without_the_links_module(app_ctx, monkeypatch):
    monkeypatch.setitem(sys.modules, "portal.services.links", None)  # import raises ModuleNotFoundError
    monkeypatch.delattr(portal.services, "links", raising=False)
    contact = crm.create_record("contact", {"last_name": "Solo"})
    assert crm.delete_record(contact) == {"contacts_detached": 0}
    assert db.session.get(Contact, contact.id) is None


# --- search and paging ---------------------------------------------------------------------------------------


def _companies(*rows):
    for row in rows:
        db.session.add(Company(**row))
    db.session.commit()


def test_company_search_is_case_insensitive_over_the_documented_columns(app_ctx):
    _companies(
        {"name": "Nordlys Shipping", "postal_city": "Bergen"},
        {"name": "Fjord AS", "code": "NORD-7"},
        {"name": "Sol AB", "number": "4711", "street_city": "Malmö"},
        {"name": "Mail Co", "email": "post@nordic.example"},
        {"name": "Unrelated", "department": "nord"},  # department is not searched
    )
    names = [c.name for c in crm.search("company", "NORD").items]
    assert names == ["Fjord AS", "Mail Co", "Nordlys Shipping"]
    assert [c.name for c in crm.search("company", "bergen").items] == ["Nordlys Shipping"]
    assert [c.name for c in crm.search("company", "4711").items] == ["Sol AB"]
    assert [c.name for c in crm.search("company", "malmö").items] == ["Sol AB"]


def test_search_folds_the_case_of_every_letter_not_only_a_to_z(app_ctx):
    # SQLite's own lower()/LIKE fold A-Z only: "østfold" did not find "Østfold Bygg" there (PostgreSQL did)
    _companies({"name": "Østfold Bygg AS"}, {"name": "Ålesund Fisk", "postal_city": "ÅLESUND"},
               {"name": "Sol AB", "street_city": "Malmö"}, {"name": "Straße GmbH"}, {"name": "Oslo Data"})
    assert [c.name for c in crm.search("company", "østfold").items] == ["Østfold Bygg AS"]
    assert [c.name for c in crm.search("company", "ØSTFOLD BYGG").items] == ["Østfold Bygg AS"]
    assert [c.name for c in crm.search("company", "ålesund").items] == ["Ålesund Fisk"]
    assert [c.name for c in crm.search("company", "MALMÖ").items] == ["Sol AB"]
    assert [c.name for c in crm.search("company", "STRASSE").items] == []  # lower(), not a full case-fold
    assert [c.name for c in crm.search("company", "STRAßE").items] == ["Straße GmbH"]


def test_every_search_term_must_match(app_ctx):
    _companies({"name": "Nordlys Shipping", "postal_city": "Bergen"}, {"name": "Nordlys Energy", "postal_city": "Oslo"})
    assert [c.name for c in crm.search("company", "nordlys  bergen").items] == ["Nordlys Shipping"]
    assert crm.search("company", "nordlys trondheim").total == 0


def test_like_wildcards_are_literal(app_ctx):
    _companies({"name": "100% Organic"}, {"name": "Plain"}, {"name": "snake_case Ltd"}, {"name": "snakeXcase"})
    assert [c.name for c in crm.search("company", "%").items] == ["100% Organic"]
    assert [c.name for c in crm.search("company", "e_c").items] == ["snake_case Ltd"]


def test_contact_search_covers_names_email_and_company(app_ctx):
    acme = Company(name="Acme Industries")
    db.session.add_all([
        acme,
        Contact(first_name="Ingrid", last_name="Hansen", company=acme),
        Contact(first_name="Lars", last_name="Olsen", email="lars@ingrid.example"),
        Contact(first_name="Per", last_name="Berg"),
    ])
    db.session.commit()
    assert [c.display_name for c in crm.search("contact", "ingrid").items] == ["Ingrid Hansen", "Lars Olsen"]
    assert [c.display_name for c in crm.search("contact", "acme").items] == ["Ingrid Hansen"]
    assert [c.display_name for c in crm.search("contact", "ingrid hansen").items] == ["Ingrid Hansen"]
    assert crm.search("contact", "").total == 3


def test_project_search_by_name_and_number(app_ctx):
    db.session.add_all([Project(name="Roll-out", number="P-1"), Project(name="Website", number="P-22")])
    db.session.commit()
    assert [p.name for p in crm.search("project", "p-2").items] == ["Website"]
    assert [p.name for p in crm.search("project", "ROLL").items] == ["Roll-out"]


def test_paging_is_stable_and_clamped(app_ctx):
    _companies(*({"name": f"Company {i:02d}"} for i in range(60)))
    first = crm.search("company", "", 1)
    assert (first.total, first.pages, len(first.items), first.has_prev, first.has_next) == (60, 3, 25, False, True)
    assert first.items[0].name == "Company 00"
    last = crm.search("company", "", 3)
    assert [c.name for c in last.items] == [f"Company {i:02d}" for i in range(50, 60)]
    assert (last.first_index, last.last_index, last.next_num, last.prev_num) == (51, 60, None, 2)
    assert crm.search("company", "", 99).page == 3
    assert crm.search("company", "", "nonsense").page == 1
    assert crm.search("company", "", -4).page == 1


def test_empty_result_page():
    page = Page(items=[], page=1, per_page=25, total=0)
    assert (page.pages, page.has_next, page.has_prev, page.first_index, page.last_index) == (1, False, False, 0, 0)


def test_search_stays_in_sql_with_ten_thousand_companies(app_ctx):
    db.session.execute(insert(Company), [{"name": f"Firm {i:05d}", "postal_city": "Oslo" if i % 2 else "Bergen"}
                                         for i in range(10_050)])
    db.session.commit()
    statements = []

    def capture(conn, cursor, statement, parameters, context, executemany):
        statements.append(statement)

    event.listen(db.engine, "before_cursor_execute", capture)
    try:
        page = crm.search("company", "bergen", 7)
    finally:
        event.remove(db.engine, "before_cursor_execute", capture)
    # 5,025 match: more than crm.SEARCH_COUNT_CAP, so the count stops there (issue #19) and says "more than"
    assert page.capped and page.has_more and page.total > crm.SEARCH_COUNT_CAP
    assert len(page.items) == 25
    assert page.items[0].name == "Firm 00300"
    assert (page.first_index, page.last_index, page.next_num, page.prev_num) == (151, 175, 8, 6)
    selects = [s for s in statements if "FROM company" in s]
    assert any("LIMIT" in s and "OFFSET" in s for s in selects)
    assert [item.id for item in page.items] == [item.id for item in crm.paginate(
        crm.search_statement_scan("company", "bergen"), 7).items]
    exact = crm.search("company", "firm 001")  # fewer than the cap: counted exactly
    assert (exact.capped, exact.total) == (False, crm.paginate(crm.search_statement_scan("company", "firm 001")).total)
    assert 25 < exact.total <= crm.SEARCH_COUNT_CAP and exact.pages == -(-exact.total // 25)


def test_company_options_limit_and_more_flag(app_ctx):
    _companies(*({"name": f"Acme {i:02d}"} for i in range(25)), {"name": "Other"})
    rows, more = crm.company_options("acme", limit=20)
    assert len(rows) == 20 and more is True
    rows, more = crm.company_options("other")
    assert [c.name for c in rows] == ["Other"] and more is False


def test_counts_and_company_contacts(app_ctx):
    acme = crm.create_record("company", {"name": "Acme"})
    for i in range(3):
        crm.create_record("contact", {"last_name": f"L{i}", "company_id": acme.id})
    crm.create_record("contact", {"last_name": "Elsewhere"})
    assert crm.counts() == {"company": 1, "contact": 4, "project": 0}
    assert crm.contact_count(acme.id) == 3
    assert [c.last_name for c in crm.company_contacts(acme.id, 1, per_page=2).items] == ["L0", "L1"]

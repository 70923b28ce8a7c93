"""Import from ERP written in bulk (issue #19): new records, their links and change-log rows are inserted with one
executemany per table and batch, with ids taken beforehand — and hold exactly what a record created one by one
through the ORM holds."""

from __future__ import annotations

import time

from sqlalchemy import event, select, text

from portal.extensions import db
from portal.models import Company, Contact, SyncChange
from portal.services import import_run, import_write
from portal.services.sync import bulk
from tests.integration.test_import import companies, connection_id, contacts, links, run_import  # noqa: F401

_SKIP = {"id", "created_at", "updated_at"}


def _columns(record) -> dict:
    return {c.key: getattr(record, c.key) for c in record.__table__.c if c.key not in _SKIP}


def test_bulk_inserted_records_hold_what_an_orm_record_holds(app, fake, connection_id):  # noqa: F811
    key = fake.add_actor("Customer", {"name": "Acme AS", "orgnr": "NO 123", "email": "post@acme.example",
                                      "country": "NO"})
    person = fake.add_actor("Person", {"firstname": "Per", "lastname": "Hansen", "email": "per@acme.example"},
                            parent=("Customer", key))
    run = run_import(app, connection_id, keys=[key], include_persons=True)
    assert run.status == "succeeded", run.message
    [company], [contact] = companies(app), contacts(app)
    with app.app_context():
        same = Company(name="Acme AS", vat_no="NO 123", email="post@acme.example", country_id=company.country_id)
        other = Contact(first_name="Per", last_name="Hansen", email="per@acme.example", company_id=company.id)
        db.session.add_all([same, other])
        db.session.flush()
        assert _columns(company) == _columns(same)
        assert _columns(contact) == _columns(other)
        db.session.rollback()
    assert company.created_at == company.updated_at is not None
    by_key = {link.erp_key: link for link in links(app)}
    assert (by_key[key].crm_type, by_key[key].crm_id) == ("company", company.id)
    assert (by_key[person].crm_type, by_key[person].crm_id) == ("contact", contact.id)
    assert by_key[key].crm_synced_at == company.updated_at and by_key[key].import_run_id == run.id
    assert by_key[key].failures == 0 and by_key[key].status_message == "" and by_key[key].retry_at is None
    with app.app_context():
        rows = db.session.scalars(select(SyncChange).where(SyncChange.run_id == run.id,
                                                           SyncChange.rule == import_write.RULE_NEW)).all()
        assert {(r.crm_type, r.crm_id, r.link_id) for r in rows} == {
            ("company", company.id, by_key[key].id), ("contact", contact.id, by_key[person].id)}


def test_new_ids_follow_the_existing_records_and_the_writes_are_bulk(app, fake, connection_id):  # noqa: F811
    with app.app_context():
        db.session.add_all([Company(name=f"Existing {i}") for i in range(3)])
        db.session.commit()
        top = db.session.scalar(select(Company.id).order_by(Company.id.desc()).limit(1))
    keys = [fake.add_actor("Customer", {"name": f"Nordic {i}", "country": "NO"}) for i in range(7)]
    statements = []

    def count(_conn, _cursor, statement, parameters, _context, executemany):
        if statement.lstrip().upper().startswith("INSERT INTO"):
            statements.append((statement.split("(")[0].split()[-1].strip('"'), executemany))

    def copied(copy_sql, _rows):  # PostgreSQL: a bulk INSERT goes as one COPY (bulk.copy_rows)
        statements.append((copy_sql.split()[1].strip('"'), True))

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", count)
    bulk.COPY_LISTENERS.append(copied)
    try:
        run = run_import(app, connection_id, keys=keys, company_match="none")
    finally:
        event.remove(engine, "before_cursor_execute", count)
        bulk.COPY_LISTENERS.remove(copied)
    assert run.status == "succeeded", run.message
    new = [c for c in companies(app) if c.id > top]
    assert sorted(c.name for c in new) == sorted(f"Nordic {i}" for i in range(7))
    assert {link.crm_id for link in links(app, "Customer")} == {c.id for c in new}
    # One executemany each for the records, the links and the change log of the batch.
    written = sorted(s for s in statements if s[0] in ("company", "link", "sync_change"))
    assert written == [("company", True), ("link", True), ("sync_change", True)]


def test_a_company_saved_by_someone_else_between_the_id_and_the_insert_costs_nothing(
        app, fake, connection_id, monkeypatch):  # noqa: F811
    """Adversary: another writer commits a company right after the import took its ids (same next id on SQLite);
    the batch is planned again and every actor still arrives once, the other company untouched."""
    keys = [fake.add_actor("Customer", {"name": f"Bulk {n} AS"}) for n in range(3)]
    allocate = import_write.allocate_ids
    raced = []

    def allocate_then_race(table, count):
        ids = allocate(table, count)
        if table.name == "company" and not raced:
            raced.append(True)
            # a separate connection: the web process saving a company meanwhile
            with db.engine.connect() as other:
                other.execute(Company.__table__.insert().values(id=ids[0], name="Saved meanwhile AS"))
                other.commit()
        return ids

    monkeypatch.setattr(import_write, "allocate_ids", allocate_then_race)
    run = run_import(app, connection_id, keys=keys)
    assert run.status == "succeeded", run.message
    names = sorted(c.name for c in companies(app))
    assert names == ["Bulk 0 AS", "Bulk 1 AS", "Bulk 2 AS", "Saved meanwhile AS"]
    assert sorted(link.erp_key for link in links(app)) == sorted(keys)


def _updates(app, action):
    """The UPDATE statements sent while ``action()`` runs: (table, executemany, rows)."""
    sent = []

    def count(_conn, _cursor, statement, parameters, _context, executemany):
        if statement.lstrip().upper().startswith("UPDATE"):
            sent.append((statement.split()[1].strip('"'), executemany, len(parameters) if executemany else 1))

    with app.app_context():
        engine = db.engine
    event.listen(engine, "before_cursor_execute", count)
    try:
        result = action()
    finally:
        event.remove(engine, "before_cursor_execute", count)
    return result, sent


def test_a_rerun_updates_records_and_links_in_bulk_as_the_orm_did(app, fake, connection_id):  # noqa: F811
    """The second run of an import updates what changed in the ERP and every link, one UPDATE per table and set of
    columns (not one per row): the record's updated_at moves (the sync sees it changed by the import) and the link
    takes it as crm_synced_at, an unchanged base stays out of the statement."""
    keys = [fake.add_actor("Customer", {"name": f"Nordic {i} AS", "email": f"post{i}@nordic.example"})
            for i in range(4)]
    first = run_import(app, connection_id, keys=keys, company_action="replace")
    assert first.counts["new"] == 4
    before = {c.id: c for c in companies(app)}
    old_links = {link.erp_key: link for link in links(app)}
    fake.update_actor("Customer", keys[0], {"email": "new0@nordic.example"})
    fake.update_actor("Customer", keys[1], {"email": "new1@nordic.example"})
    second, sent = _updates(app, lambda: run_import(app, connection_id, keys=keys, company_action="replace"))
    assert second.status == "succeeded", second.message
    assert second.counts["updated"] == 2 and second.counts["unchanged"] == 2, second.counts
    assert sorted(s for s in sent if s[0] in ("company", "link")) == [
        ("company", True, 2), ("link", True, 2), ("link", True, 2)]  # links with and without a new base
    after = {c.id: c for c in companies(app)}
    for link in links(app):
        old, company = old_links[link.erp_key], after[link.crm_id]
        changed = link.erp_key in keys[:2]
        assert (company.updated_at > before[company.id].updated_at) is changed
        assert link.crm_synced_at == company.updated_at and link.last_synced_at > old.last_synced_at
        assert link.updated_at > old.updated_at and link.status == "ok" and link.status_message == ""
        assert link.last_result == "Updated by an import from the ERP"
        assert link.import_run_id == first.id  # made by the first run: undo of the second leaves it alone
        assert link.base["email"] == company.email and link.erp_last_modified == \
            fake.get_actor("Customer", link.erp_key)["LastModified"]
    assert after[old_links[keys[0]].crm_id].email == "new0@nordic.example"
    with app.app_context():
        rows = db.session.scalars(select(SyncChange).where(SyncChange.run_id == second.id)).all()
        assert sorted((r.crm_field_key, r.old_value, r.new_value, r.rule) for r in rows) == [
            ("email", "post0@nordic.example", "new0@nordic.example", import_write.RULE_UPDATED),
            ("email", "post1@nordic.example", "new1@nordic.example", import_write.RULE_UPDATED)]


def test_a_matched_record_is_updated_in_bulk_and_its_link_sees_the_new_updated_at(app, fake, connection_id):  # noqa: F811
    with app.app_context():
        existing = Company(name="Acme AS", email="kept@acme.example", phone="")
        db.session.add(existing)
        db.session.commit()
        existing_id, created = existing.id, existing.updated_at
    key = fake.add_actor("Customer", {"name": "Acme AS", "email": "erp@acme.example", "phone": "+47 22 00 00 00"})
    run = run_import(app, connection_id, keys=[key], company_match="name", company_action="merge")
    assert run.counts["updated"] == 1 and run.counts["linked_existing"] == 1
    [company], [link] = companies(app), links(app)
    assert company.id == existing_id and company.phone == "+47 22 00 00 00" and company.email == "kept@acme.example"
    assert company.updated_at > created and link.crm_synced_at == company.updated_at
    assert (link.last_result, link.import_run_id) == ("Imported from the ERP", run.id)


def test_a_stale_link_is_repointed_in_bulk(app, fake, connection_id):  # noqa: F811
    key = fake.add_actor("Customer", {"name": "Acme AS", "email": "post@acme.example"})
    first = run_import(app, connection_id, keys=[key])
    with app.app_context():  # the record vanishes without the delete hook (e.g. removed in the database)
        db.session.execute(Company.__table__.delete())
        db.session.commit()
    [old] = links(app)
    run = run_import(app, connection_id, keys=[key])
    assert run.status == "succeeded" and run.counts["new"] == 1 and first.id != run.id
    [company], [link] = companies(app), links(app)
    assert (link.id, link.crm_id, link.crm_type, link.import_run_id) == (old.id, company.id, "company", run.id)
    assert link.base == old.base and link.crm_synced_at == company.updated_at
    assert link.last_result == "Imported from the ERP" and link.updated_at > old.updated_at


def test_a_large_import_refreshes_the_planner_statistics_on_postgresql(
        app, fake, connection_id, monkeypatch):  # noqa: F811
    """PostgreSQL plans a sync right after a big import with statistics of the tables as they were before it
    (nearly empty), and walks every link per batch; the import ANALYZEs what it filled. SQLite: nothing to do."""
    monkeypatch.setattr(import_run, "ANALYZE_AFTER_NEW", 2)
    keys = [fake.add_actor("Customer", {"name": f"Planner {i}", "country": "NO"}) for i in range(3)]
    with app.app_context():
        postgresql = db.engine.dialect.name == "postgresql"
        if postgresql:
            db.session.execute(text("SELECT pg_stat_clear_snapshot()"))
            before = db.session.execute(text("SELECT analyze_count FROM pg_stat_user_tables "
                                             "WHERE relname = 'link'")).scalar()
            db.session.commit()
    run = run_import(app, connection_id, keys=keys, company_match="none")
    assert run.status == "succeeded", run.message
    if postgresql:
        with app.app_context():
            deadline = time.monotonic() + 5  # the statistics collector reports with a short delay
            while True:
                db.session.execute(text("SELECT pg_stat_clear_snapshot()"))
                after = db.session.execute(text("SELECT analyze_count FROM pg_stat_user_tables "
                                                "WHERE relname = 'link'")).scalar()
                db.session.commit()
                if after > before or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            assert after > before

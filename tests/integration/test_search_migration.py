"""The search index's layout 2 (migration a8c0e2f4b6d8) is built from the records a database already holds, finds
what the LIKE scan finds, and its downgrade gives back layout 1 (SQLite: rowid = id, no vocabulary; PostgreSQL: no
contact copy of the company's name)."""

from __future__ import annotations

from flask_migrate import downgrade, upgrade
from sqlalchemy import insert, select, text

from portal.extensions import db
from portal.models import Company, Contact, CrmType, Project
from portal.services import crm, search_index
from tests.integration.helpers_migration import migration_app

REVISION = "a8c0e2f4b6d8"


def _layout_2(url: str) -> bool:
    if url.startswith("postgresql"):
        return db.session.execute(text(
            "SELECT count(*) FROM information_schema.columns WHERE table_name = 'contact' "
            f"AND column_name = '{search_index.PG_COMPANY_NAME_COLUMN}'")).scalar() == 1
    vocabulary = db.session.execute(text(
        "SELECT count(*) FROM sqlite_master WHERE name = 'company_search_vocab'")).scalar()
    same_ids = db.session.execute(text(
        "SELECT count(*) FROM company JOIN company_search ON company_search.rowid = company.id")).scalar()
    assert (vocabulary, same_ids) in ((1, 0), (0, db.session.execute(text("SELECT count(*) FROM company")).scalar()))
    return vocabulary == 1


def test_the_index_is_rebuilt_from_the_records_both_ways(app_config):
    with migration_app(app_config) as app:
        url = app.config["SQLALCHEMY_DATABASE_URI"]
        upgrade(revision=f"{REVISION}-1")
        names = (("Østfold Bygg AS", "Oslo"), ("Hansen Rør", "Ålesund"), ("Berg", ""))
        ids = [db.session.execute(insert(Company).values(name=name, postal_city=city).returning(Company.id))
               .scalar() for name, city in names]
        db.session.execute(insert(Contact), [{"first_name": "Kari", "last_name": "Hansen", "company_id": ids[0]},
                                             {"first_name": "Ola", "last_name": "Aas", "company_id": ids[1]}])
        db.session.execute(insert(Project), [{"name": "Bygg prosjekt", "number": "P1"}])
        db.session.commit()
        assert not _layout_2(url)
        upgrade(revision=REVISION)
        assert _layout_2(url)
        for query in ("østfold", "hansen", "bygg kari", "ø", "as", "rør ålesund", "qx", "p1"):
            for crm_type in CrmType:
                found = [record.id for record in crm.search(crm_type, query).items]
                scanned = [record.id for record in db.session.scalars(crm.search_statement_scan(crm_type, query))]
                assert found == scanned, (crm_type, query)
        # the triggers of layout 2 keep it current: a rename reaches the contacts' texts
        db.session.execute(Company.__table__.update().where(Company.id == ids[1]).values(name="Vik Rør"))
        db.session.commit()
        assert [c.id for c in crm.search(CrmType.CONTACT, "vik").items] == list(db.session.scalars(
            select(Contact.id).where(Contact.company_id == ids[1])))
        db.session.remove()
        downgrade(revision=f"{REVISION}-1")
        assert not _layout_2(url)
        db.session.remove()
        upgrade(revision=REVISION)
        assert _layout_2(url)

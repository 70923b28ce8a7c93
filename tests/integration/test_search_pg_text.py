"""PostgreSQL's search layout 3 (issue #19, migration c6e8a0b2d4f7): the stored folded search text.

Read as plans and statements, not as time. Each GIN match is rechecked row by row; an ILIKE on the search
expression folded the whole expression again for each (3–4 µs a row: "hansen" rechecks 13,000 contacts), where a
LIKE on the stored ``search_text`` does not fold at all. A common 1–2 letter term is read from the records (its
substring index's bitmap holds most of the table: 17 ms for "ø" at 100,000 companies), a rare one from that
index; and the sample of 1,001 matches is read from the GIN index, not by a scan the planner prices too low.
"""

from __future__ import annotations

import os

import pytest
from flask_migrate import downgrade, upgrade
from sqlalchemy import event, insert, select
from sqlalchemy import text as sql

from portal.extensions import db
from portal.models import Company, Contact, CrmType, Project
from portal.services import crm, search_index, search_query
from tests.integration.helpers_migration import migration_app

POSTGRESQL = os.environ.get("PORTAL_TEST_DATABASE_URL", "").startswith("postgresql")
postgresql_only = pytest.mark.skipif(not POSTGRESQL, reason="PostgreSQL's layout 3")


def _statements(run) -> list[str]:
    """The SQL statements ``run()`` sends."""
    sent: list[str] = []

    def grab(_conn, _cursor, statement, _parameters, _context, _executemany):
        sent.append(statement)

    event.listen(db.engine, "before_cursor_execute", grab)
    try:
        run()
    finally:
        event.remove(db.engine, "before_cursor_execute", grab)
    return sent


def _plan(crm_type: str, query: str) -> str:
    model = crm.CRM_MODELS[CrmType(crm_type)]
    stmt = select(model.id).where(search_query.condition(crm_type, model, crm.search_terms(query), "postgresql"))
    statement = str(stmt.compile(dialect=db.engine.dialect, compile_kwargs={"literal_binds": True}))
    return "\n".join(db.session.execute(sql(f"EXPLAIN {statement}")).scalars())


def _same_first_pages(crm_type: str, query: str) -> None:
    for number in (1, 2):
        got = crm.search(crm_type, query, number)
        want = crm.paginate(crm.search_statement_scan(crm_type, query), number, crm.PAGE_SIZE)
        assert (got.page, [r.id for r in got.items]) == (want.page, [r.id for r in want.items]), (query, number)


@postgresql_only
def test_the_indexes_and_the_recheck_read_the_stored_folded_text(app_ctx):
    acme = crm.create_record(CrmType.COMPANY, {"name": "Østfold Bygg AS"})
    crm.create_record(CrmType.CONTACT, {"first_name": "Kari", "last_name": "Nordmann", "company_id": acme.id})
    crm.create_record(CrmType.PROJECT, {"name": "Rør prosjekt"})
    assert search_index.pg_layout() == 3
    db.session.execute(sql("SET LOCAL enable_seqscan = off"))  # the tables are tiny: ask for the indexes' plans
    for crm_type, query, index in (("company", "BYGG", "ix_company_search_trgm"),
                                   ("contact", "kari østfold", "ix_contact_search_trgm"),
                                   ("contact", "nord as", "ix_contact_search_trgm"),
                                   ("project", "prosjekt", "ix_project_search_trgm"),
                                   ("company", "ø", "ix_company_search_grams")):
        plan = _plan(crm_type, query)
        assert index in plan and "search_text" in plan, (query, plan)
        assert "~~*" not in plan and "coalesce" not in plan.lower(), (query, plan)  # no ILIKE of the expression
    db.session.rollback()


@postgresql_only
def test_a_common_short_term_is_read_from_the_records_a_rare_one_from_its_index(app_ctx):
    db.session.execute(insert(Company), [{"name": f"Firma {n:04d} AS", "postal_city": "Oslo"} for n in range(1500)]
                       + [{"name": "Qxa Handel"}])
    db.session.commit()
    db.session.execute(sql("ANALYZE company"))
    for query, grams in (("as", False), ("o", False), ("qx", True), ("zq", True)):
        sent = _statements(lambda query=query: crm.search("company", query))
        assert any(search_index.PG_GRAMS_FUNCTION in statement for statement in sent) == grams, (query, sent)
        _same_first_pages("company", query)
    assert crm.search("company", "as").capped and crm.search("company", "qx").total == 1


@postgresql_only
def test_the_sample_of_matches_is_read_from_the_index_and_the_setting_restored(app_ctx):
    db.session.execute(insert(Contact), [{"first_name": "Kari", "last_name": f"Aas{n:04d}"} for n in range(1200)]
                       + [{"first_name": "Ola", "last_name": "Hansen"} for _ in range(1100)])
    db.session.commit()
    sent = _statements(lambda: crm.search("contact", "hansen"))
    off = next(n for n, statement in enumerate(sent) if "'enable_seqscan', 'off'" in statement)
    back = next(n for n, statement in enumerate(sent) if n > off and "set_config('enable_seqscan', %s" in statement)
    assert any("count(*) OVER ()" in statement for statement in sent[off:back]), sent
    assert db.session.execute(sql("SHOW enable_seqscan")).scalar() == "on"
    _same_first_pages("contact", "hansen")


@postgresql_only
def test_matches_gathered_late_in_the_list_read_only_the_page_priced_as_a_like_costs(app_ctx, monkeypatch):
    """More matches than the cap, none among the list's first records ("hansen" after thousands of other
    surnames): the matches up to the sample's bound are read with a LIKE priced at what it costs (so PostgreSQL
    ANDs the GIN bitmap with the list-order range instead of rechecking every trigram candidate), and only the
    first ``need`` of them come back — the 1,100 "Hansen, Ola" all share the bound's two sort columns."""
    db.session.execute(insert(Contact), [{"first_name": "Kari", "last_name": f"Aas{n:04d}"} for n in range(1200)]
                       + [{"first_name": "Ola", "last_name": "Hansen"} for _ in range(1100)])
    db.session.commit()
    seen = []
    read = search_query._scalars

    def spy(stmt):
        seen.append(db.session.execute(sql("SHOW cpu_operator_cost")).scalar())
        return read(stmt)

    monkeypatch.setattr(search_query, "_scalars", spy)
    model, order = Contact, crm.ORDER[CrmType.CONTACT]
    plan = search_query.pg_plan("contact", model, order, ["hansen"], 1, crm.PAGE_SIZE, crm.SEARCH_COUNT_CAP)
    want = db.session.scalars(crm.search_statement_scan("contact", "hansen").limit(crm.PAGE_SIZE + 1)).all()
    assert plan.count is None and plan.candidates == [record.id for record in want]
    assert seen[-1] == search_query.PG_LIKE_COST  # the range read (the walk before it found nothing)
    assert db.session.execute(sql("SHOW cpu_operator_cost")).scalar() == "0.0025"
    monkeypatch.undo()
    _same_first_pages("contact", "hansen")


@postgresql_only
def test_writes_keep_the_stored_text_current(app_ctx):
    acme = crm.create_record(CrmType.COMPANY, {"name": "Østfold Bygg AS", "postal_city": "İzmir"})
    kari = crm.create_record(CrmType.CONTACT, {"first_name": "Kari", "last_name": "Nordmann",
                                               "company_id": acme.id})
    assert db.session.execute(sql("SELECT search_text FROM company WHERE id = :id"), {"id": acme.id}).scalar() == \
        db.session.execute(sql("SELECT lower(:text)"), {"text": "Østfold Bygg AS\x1f\x1f\x1fİzmir"
                                                        + "\x1f" * 8}).scalar()
    crm.update_record(db.session.get(Company, acme.id), {"name": "Vestfold Rør"})  # the contact's copy follows
    assert [c.id for c in crm.search(CrmType.CONTACT, "VESTFOLD").items] == [kari.id]
    assert crm.search(CrmType.CONTACT, "østfold").items == []
    for query in ("İZMIR", "izmir", "i̇zmir", "RØR"):  # folded as ILIKE folds (PostgreSQL's lower(), not Python's)
        _same_first_pages("company", query)


def test_the_migration_stores_the_text_and_its_downgrade_gives_layout_2_back(app_config):
    with migration_app(app_config) as app:
        postgresql = app.config["SQLALCHEMY_DATABASE_URI"].startswith("postgresql")
        upgrade(revision="d4f6b8c0e2a5")
        acme = db.session.execute(insert(Company).values(name="Østfold Bygg AS", postal_city="Oslo")
                                  .returning(Company.id)).scalar()
        db.session.execute(insert(Contact), [{"first_name": "Kari", "last_name": "Hansen", "company_id": acme}])
        db.session.execute(insert(Project), [{"name": "Bygg prosjekt", "number": "P1"}])
        db.session.commit()

        def stored() -> bool:
            return db.session.execute(sql(
                "SELECT count(*) FROM information_schema.columns WHERE table_name = 'contact' "
                f"AND column_name = '{search_index.PG_TEXT_COLUMN}'")).scalar() == 1

        def same() -> None:
            search_index._PG_READY.clear()
            for query in ("østfold", "hansen", "bygg kari", "ø", "as", "qx", "p1", "OSLO"):
                for crm_type in CrmType:
                    found = [record.id for record in crm.search(crm_type, query).items]
                    scanned = [r.id for r in db.session.scalars(crm.search_statement_scan(crm_type, query))]
                    assert found == scanned, (crm_type, query)
            db.session.remove()  # no transaction holds the tables while the migration alters them

        if postgresql:
            assert not stored()
        same()
        upgrade(revision="c6e8a0b2d4f7")
        if postgresql:
            assert stored()
            search_index._PG_READY.clear()
            assert search_index.pg_layout() == 3
        same()
        db.session.remove()
        downgrade(revision="d4f6b8c0e2a5")
        if postgresql:
            assert not stored()
            search_index._PG_READY.clear()
            assert search_index.pg_layout() == 2
        same()
        db.session.remove()
        upgrade(revision="c6e8a0b2d4f7")
        same()

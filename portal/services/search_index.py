"""The CRM search's index: company / contact / project search without a scan of every row (issue #19).

The search (``crm.search_statement``) keeps a record whose searched columns contain every term of the query, each
term in any one column, letters folded as Python's ``str.lower()`` folds them (``unicode_lower`` in
portal/database.py). ``crm.search_statement_scan`` is that rule written as the plain ``LIKE`` scan it used to be;
this module answers the same question from an index and returns exactly the same records.

**SQLite** — one FTS5 table per record type (``company_search``, ``contact_search``, ``project_search``; rowid =
the record's id) holding the record's *search text*: each searched column folded with ``lower()`` (replaced by
``unicode_lower`` on every connection the portal opens, so as Python folds), joined with U+001F. ``str.split()``
splits at U+001F, so no term contains it and no term can match across two columns. The tokenizer is ``trigram``
with ``case_sensitive 1``: the text is folded already, and FTS5's own folding differs from Python's ('İ', 'ß').
Database triggers keep the tables current on every write path — the CRM forms, the sync engine's bulk Core
updates, the import's bulk inserts, demo data, tests — without the application having to remember them; a
contact's text includes its company's name, so renaming a company rewrites its contacts' rows (and a deleted
company's ``ON DELETE SET NULL`` fires the contact's update trigger). A query term of 3 or more characters is an
FTS5 phrase (``"term"``: its trigrams at consecutive positions = the term as a substring); terms of 1–2
characters, which have no trigram, filter the candidates with ``instr()`` (a query of short terms only reads the
whole search table, ~100,000 ``instr`` calls in C).

Triggers written through the ``sqlite3`` shell (no ``unicode_lower``) fold ASCII only — edit through the portal.
A later migration that *recreates* ``company``, ``contact`` or ``project`` (Alembic's batch mode on SQLite:
copy, drop, rename) drops their triggers with the old table: it must call ``create_sqlite(op.get_bind())``
afterwards, which (re)creates the triggers and refills the tables.

**PostgreSQL** — no side table: the query's per-term test is ``<search expression> ILIKE '%term%'`` (as the scan's
``column ILIKE`` per column: PostgreSQL's ILIKE folds every letter by itself), and a GIN ``gin_trgm_ops`` index
on that expression (pg_trgm) answers it. Contacts test their company's name through an indexed
``coalesce(company.name, '')``. Without pg_trgm (``CREATE EXTENSION`` needs privileges) the indexes are left out
with a logged warning and the same query is a scan: same results, slower.

Schema: the migration ``d2f4a6c8e0b1`` builds all this for a migrated database; ``db.create_all()`` (tests,
benches) gets it through the metadata's ``after_create`` event registered below; Alembic's comparison of the
models with the database ignores it through ``include_name`` (portal/migrations/env.py, so `flask db migrate`
never proposes dropping it).
"""

from __future__ import annotations

import logging

from sqlalchemy import event, func, literal_column, select, table
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement

from portal.extensions import db
from portal.models.user_fields import slot_keys

log = logging.getLogger(__name__)

SEPARATOR = "\x1f"  # whitespace to str.split(): never inside a search term
MIN_INDEXED = 3  # the trigram tokenizer indexes substrings of 3 characters and more

# The searched columns of each record type, as crm.SEARCH_COLUMNS (a test checks they agree): the built-in ones
# (as the index was first built, revision d2f4a6c8e0b1) and the text slots of user-defined fields (e5a7c9b1d3f4;
# a free slot is blank, so only defined fields' values are ever found).
BASE_COLUMNS = {
    "company": ("name", "number", "code", "postal_city", "street_city", "email"),
    "contact": ("first_name", "middle_name", "last_name", "email"),  # + the company's name
    "project": ("name", "number"),
}
COLUMNS = {crm_type: columns + tuple(slot_keys("text")) for crm_type, columns in BASE_COLUMNS.items()}
Columns = dict[str, tuple[str, ...]]
TABLES = {crm_type: f"{crm_type}_search" for crm_type in COLUMNS}
_FTS5_SHADOWS = ("_data", "_idx", "_content", "_docsize", "_config")
PG_INDEXES = {"company": "ix_company_search_trgm", "contact": "ix_contact_search_trgm",
              "project": "ix_project_search_trgm"}
PG_COMPANY_NAME_INDEX = "ix_company_name_trgm"
# B-tree indexes in the list's order (crm.ORDER), both dialects: a page of a query matching thousands of records
# walks one of them and tests each record (``row_condition``) instead of sorting every match (revision f7b9d1e3a5c6)
ORDER_INDEXES = {"company": ("ix_company_search_order", "name, department, id"),
                 "contact": ("ix_contact_search_order", "last_name, first_name, id"),
                 "project": ("ix_project_search_order", "name, id")}
_SQLITE_TRIGGERS = [f"{crm_type}_search_{suffix}" for crm_type in COLUMNS for suffix in ("ai", "au", "ad")] + [
    "company_search_contacts_au"]


# ---------------------------------------------------------------------------------------------------------
# SQLite: FTS5 tables and triggers


def _sqlite_text(crm_type: str, row: str, company_name: str | None = None, columns: Columns | None = None) -> str:
    """The SQL of one record's search text (``row`` = new / old / a table alias)."""
    parts = [f"lower(coalesce({row}.{column}, ''))" for column in (columns or COLUMNS)[crm_type]]
    if crm_type == "contact":
        name = company_name or f"(SELECT company.name FROM company WHERE company.id = {row}.company_id)"
        parts.append(f"lower(coalesce({name}, ''))")
    return " || char(31) || ".join(parts)


def sqlite_statements(crm_type: str, searched: Columns | None = None) -> list[str]:
    """CREATE statements of ``crm_type``'s FTS5 table and triggers (idempotent); ``searched``: the columns as of a
    migration (default: ``COLUMNS``)."""
    searched = searched or COLUMNS
    fts = TABLES[crm_type]
    columns = ", ".join((*searched[crm_type], "company_id") if crm_type == "contact" else searched[crm_type])
    statements = [
        f"CREATE VIRTUAL TABLE IF NOT EXISTS {fts} USING fts5(text, tokenize = 'trigram case_sensitive 1')",
        f"CREATE TRIGGER IF NOT EXISTS {fts}_ai AFTER INSERT ON {crm_type} BEGIN "
        f"INSERT INTO {fts}(rowid, text) VALUES (new.id, {_sqlite_text(crm_type, 'new', columns=searched)}); END",
        # only when a searched value really changed: the sync engine's UPDATEs name every mapped column, and
        # re-folding unchanged texts cost the sync about as much as its own writes
        f"CREATE TRIGGER IF NOT EXISTS {fts}_au AFTER UPDATE OF id, {columns} ON {crm_type} "
        f"WHEN {' OR '.join(f'old.{c} IS NOT new.{c}' for c in ('id', *columns.split(', ')))} BEGIN "
        f"DELETE FROM {fts} WHERE rowid = old.id; "
        f"INSERT INTO {fts}(rowid, text) VALUES (new.id, {_sqlite_text(crm_type, 'new', columns=searched)}); END",
        f"CREATE TRIGGER IF NOT EXISTS {fts}_ad AFTER DELETE ON {crm_type} BEGIN "
        f"DELETE FROM {fts} WHERE rowid = old.id; END",
    ]
    if crm_type == "company":  # a contact's search text holds its company's name
        contact_text = _sqlite_text("contact", "contact", company_name="new.name", columns=searched)
        statements.append(
            "CREATE TRIGGER IF NOT EXISTS company_search_contacts_au AFTER UPDATE OF name ON company "
            "WHEN old.name IS NOT new.name BEGIN "
            "DELETE FROM contact_search WHERE rowid IN (SELECT id FROM contact WHERE company_id = new.id); "
            f"INSERT INTO contact_search(rowid, text) SELECT contact.id, {contact_text} FROM contact "
            "WHERE contact.company_id = new.id; END")
    return statements


def create_sqlite(connection: Connection, *, fill: bool = True, columns: Columns | None = None) -> None:
    """Create (if missing) the FTS5 tables and triggers; ``fill`` rebuilds each table from its records."""
    for crm_type in COLUMNS:
        for statement in sqlite_statements(crm_type, columns):
            connection.exec_driver_sql(statement)
    if fill:
        for crm_type in COLUMNS:
            fts = TABLES[crm_type]
            connection.exec_driver_sql(f"DELETE FROM {fts}")
            connection.exec_driver_sql(f"INSERT INTO {fts}(rowid, text) "
                                       f"SELECT id, {_sqlite_text(crm_type, crm_type, columns=columns)} "
                                       f"FROM {crm_type}")
            connection.exec_driver_sql(f"INSERT INTO {fts}({fts}) VALUES ('optimize')")


def drop_sqlite(connection: Connection) -> None:
    for trigger in _SQLITE_TRIGGERS:
        connection.exec_driver_sql(f"DROP TRIGGER IF EXISTS {trigger}")
    for fts in TABLES.values():
        connection.exec_driver_sql(f"DROP TABLE IF EXISTS {fts}")


# ---------------------------------------------------------------------------------------------------------
# PostgreSQL: pg_trgm expression indexes


def pg_expression(crm_type: str, qualifier: str = "", columns: Columns | None = None) -> str:
    """The search expression of ``crm_type`` (the columns joined with U+001F; without the company's name)."""
    prefix = f"{qualifier}." if qualifier else ""
    return "(" + " || E'\\x1f' || ".join(f"coalesce({prefix}{column}, '')"
                                         for column in (columns or COLUMNS)[crm_type]) + ")"


def pg_company_name(qualifier: str = "") -> str:
    return f"(coalesce({qualifier + '.' if qualifier else ''}name, ''))"


def has_pg_trgm(connection: Connection) -> bool:
    """pg_trgm is installed, or this role could install it; False (with a warning) otherwise."""
    if connection.exec_driver_sql("SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm'").first():
        return True
    try:
        with connection.begin_nested():
            connection.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        return True
    except Exception as error:  # noqa: BLE001 - any refusal: search works without the index
        log.warning("pg_trgm is not available (%s): the CRM search scans its tables instead of using an index; "
                    "a superuser can run CREATE EXTENSION pg_trgm and then `flask --app wsgi db upgrade` or "
                    "portal.services.search_index.create_postgresql", str(error).splitlines()[0])
        return False


def create_postgresql(connection: Connection, columns: Columns | None = None) -> bool:
    """Create (if missing) the GIN trigram indexes; False when pg_trgm is not available."""
    if not has_pg_trgm(connection):
        return False
    for crm_type, index in PG_INDEXES.items():
        connection.exec_driver_sql(f"CREATE INDEX IF NOT EXISTS {index} ON {crm_type} "
                                   f"USING gin ({pg_expression(crm_type, columns=columns)} gin_trgm_ops)")
    connection.exec_driver_sql(f"CREATE INDEX IF NOT EXISTS {PG_COMPANY_NAME_INDEX} ON company "
                               f"USING gin ({pg_company_name()} gin_trgm_ops)")
    return True


def drop_postgresql(connection: Connection) -> None:
    for index in (*PG_INDEXES.values(), PG_COMPANY_NAME_INDEX):
        connection.exec_driver_sql(f"DROP INDEX IF EXISTS {index}")


# ---------------------------------------------------------------------------------------------------------
# Schema hooks


def create(connection: Connection, *, fill: bool = True, columns: Columns | None = None,
           order_indexes: bool = False) -> None:
    """The index for the searched ``columns`` (default ``COLUMNS``; a migration passes the columns as of its
    revision) and, with ``order_indexes``, the list-order indexes (added by revision f7b9d1e3a5c6)."""
    if connection.dialect.name == "sqlite":
        create_sqlite(connection, fill=fill, columns=columns)
    elif connection.dialect.name == "postgresql":
        create_postgresql(connection, columns=columns)
    if order_indexes:
        create_order_indexes(connection)


def create_order_indexes(connection: Connection) -> None:
    for crm_type, (index, columns) in ORDER_INDEXES.items():
        connection.exec_driver_sql(f"CREATE INDEX IF NOT EXISTS {index} ON {crm_type} ({columns})")


def drop_order_indexes(connection: Connection) -> None:
    for index, _columns in ORDER_INDEXES.values():
        connection.exec_driver_sql(f"DROP INDEX IF EXISTS {index}")


def drop(connection: Connection, *, order_indexes: bool = False) -> None:
    if connection.dialect.name == "sqlite":
        drop_sqlite(connection)
    elif connection.dialect.name == "postgresql":
        drop_postgresql(connection)
    if order_indexes:
        drop_order_indexes(connection)


@event.listens_for(db.metadata, "after_create")
def _after_create(_metadata, connection, **_kw):
    if _has_record_tables(connection):
        create(connection, order_indexes=True)


@event.listens_for(db.metadata, "before_drop")
def _before_drop(_metadata, connection, **_kw):
    drop(connection, order_indexes=True)


def _has_record_tables(connection: Connection) -> bool:
    from sqlalchemy import inspect

    return set(COLUMNS) <= set(inspect(connection).get_table_names())


def include_name(name: str | None, type_: str, _parent_names: dict) -> bool:
    """Alembic's ``include_name``: leave the index's tables and indexes out of model comparisons."""
    if type_ == "table" and name:
        return not any(name == fts or (name.startswith(fts) and name[len(fts):] in _FTS5_SHADOWS)
                       for fts in TABLES.values())
    if type_ == "index":
        return name not in (*PG_INDEXES.values(), PG_COMPANY_NAME_INDEX,
                            *(index for index, _columns in ORDER_INDEXES.values()))
    return True


# ---------------------------------------------------------------------------------------------------------
# Query


def fold(term: str) -> str:
    return term.lower()


def _like_pattern(term: str) -> str:
    escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def fts_phrase(folded_term: str) -> str:
    return '"' + folded_term.replace('"', '""') + '"'


def condition(crm_type: str, model, terms: list[str], dialect: str) -> ColumnElement[bool]:
    """The WHERE condition keeping the records of ``model`` (of ``crm_type``) that match every term."""
    if dialect == "sqlite":
        return _sqlite_condition(crm_type, model, terms)
    return _expression_condition(crm_type, model, terms)


def _sqlite_condition(crm_type: str, model, terms: list[str]):
    fts = table(TABLES[crm_type])
    text_column = literal_column(f"{TABLES[crm_type]}.text")
    folded = [fold(term) for term in terms]
    long_terms = list(dict.fromkeys(term for term in folded if len(term) >= MIN_INDEXED))
    short_terms = list(dict.fromkeys(term for term in folded if len(term) < MIN_INDEXED))
    ids = select(literal_column(f"{TABLES[crm_type]}.rowid")).select_from(fts)
    if long_terms:
        ids = ids.where(literal_column(TABLES[crm_type]).op("MATCH")(" ".join(map(fts_phrase, long_terms))))
    for term in short_terms:
        ids = ids.where(func.instr(text_column, term) > 0)
    return model.id.in_(ids)


def _expression_condition(crm_type: str, model, terms: list[str]):
    """PostgreSQL (and any other database): ILIKE on the indexed expression, per term."""
    from sqlalchemy import and_, or_
    from sqlalchemy.orm import aliased

    from portal.models import Company, Contact

    expression = literal_column(pg_expression(crm_type, crm_type))
    conditions = []
    for term in terms:
        pattern = _like_pattern(term)
        matches = expression.ilike(pattern, escape="\\")
        if crm_type == "contact":
            company = aliased(Company, name="search_company")
            companies = select(company.id).where(
                literal_column(pg_company_name("search_company")).ilike(pattern, escape="\\"))
            matches = or_(matches, Contact.company_id.in_(companies))
        conditions.append(matches)
    return and_(*conditions)


def matching_ids(crm_type: str, model, terms: list[str], dialect: str, limit: int):
    """``SELECT`` of the ids of at most ``limit`` records matching every term, in no particular order: the capped
    count of ``crm.search`` (read from the search table alone on SQLite, without a join)."""
    if dialect != "sqlite":
        return select(model.id).where(_expression_condition(crm_type, model, terms)).limit(limit)
    folded = [fold(term) for term in terms]
    long_terms = list(dict.fromkeys(term for term in folded if len(term) >= MIN_INDEXED))
    short_terms = list(dict.fromkeys(term for term in folded if len(term) < MIN_INDEXED))
    if long_terms:
        fts = TABLES[crm_type]
        ids = select(literal_column(f"{fts}.rowid")).select_from(table(fts)).where(
            literal_column(fts).op("MATCH")(" ".join(map(fts_phrase, long_terms))))
        text_column = literal_column(f"{fts}.text")
    else:  # no trigram to look up: read the FTS5 table's own content table, twice as fast as through FTS5
        content = f"{TABLES[crm_type]}_content"
        ids = select(literal_column(f"{content}.id")).select_from(table(content))
        text_column = literal_column(f"{content}.c0")
    for term in short_terms:
        ids = ids.where(func.instr(text_column, term) > 0)
    return ids.limit(limit)


def row_condition(crm_type: str, model, terms: list[str], dialect: str) -> ColumnElement[bool]:
    """The same test as ``condition`` written per record, for a walk of the records in list order (a query
    matching many records: the walk stops after a page instead of sorting every match). SQLite: ``instr`` on the
    record's search text, looked up by id in the FTS5 table's content table."""
    if dialect != "sqlite":
        return _expression_condition(crm_type, model, terms)
    from sqlalchemy import and_

    content = table(f"{TABLES[crm_type]}_content")
    text_column = literal_column(f"{TABLES[crm_type]}_content.c0")
    folded = list(dict.fromkeys(fold(term) for term in terms))
    test = and_(*(func.instr(text_column, term) > 0 for term in folded))
    return select(test).select_from(content).where(
        literal_column(f"{TABLES[crm_type]}_content.id") == model.id).scalar_subquery().is_(True)

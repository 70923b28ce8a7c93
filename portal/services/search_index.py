"""The CRM search's index: company / contact / project search without a scan of every row (issue #19).

The search (``crm.search_statement``) keeps a record whose searched columns contain every term of the query, each
term in any one column, letters folded as Python's ``str.lower()`` folds them (``unicode_lower`` in
portal/database.py). ``crm.search_statement_scan`` is that rule written as the plain ``LIKE`` scan it used to be;
this module builds the index that answers the same question, and portal/services/search_query.py reads it.

**SQLite** — one FTS5 table per record type (``company_search``, ``contact_search``, ``project_search``) holding the
record's *search text*: each searched column folded with ``lower()`` (replaced by ``unicode_lower`` on every
connection the portal opens, so as Python folds), joined with U+001F, and two U+001F more at the end.
``str.split()`` splits at U+001F, so no term contains it and no term can match across two columns. The tokenizer
is ``trigram`` with ``case_sensitive 1``: the text is folded already, and FTS5's own folding differs from Python's
('İ', 'ß'). A query term of 3 or more characters is an FTS5 phrase (``"term"``: its trigrams at consecutive
positions = the term as a substring).

* **Rowids in list order.** A row's rowid is not the record's id but its *sort rowid*: the first characters of
  the list's leading column (company and project: name; contact: last name — ``crm.ORDER``) coded in the high 33
  bits, the record's id in the low 31 (``sqlite_rowid``). The code never goes down when the column's value goes up
  in SQLite's order (``BINARY``: by code point, NULL first), so FTS5, which returns rows by rowid, returns the
  matches in list order *group by group* — a group being the records whose leading column starts alike — and a
  page needs the matches of a few groups, not of all (search_query.py). Ids stay below 2**31: the models'
  ``Integer`` is PostgreSQL's 32-bit integer.
* **1–2 character terms** have no trigram, but every character of a search text begins a trigram (the two
  U+001F at the end see to the last ones), so the records holding a term of 1–2 characters are those holding a
  trigram that begins with it: the ``fts5vocab`` table ``<type>_search_vocab`` lists the index's trigrams in
  order, and those beginning with the term become one ``OR`` query (``search_query.short_term_trigrams``).

Database triggers keep the tables current on every write path — the CRM forms, the sync engine's bulk Core
updates, the import's bulk inserts, demo data, tests — without the application having to remember them; a
contact's text includes its company's name, so renaming a company rewrites its contacts' rows (and a deleted
company's ``ON DELETE SET NULL`` fires the contact's update trigger). Triggers written through the ``sqlite3``
shell (no ``unicode_lower``) fold ASCII only — edit through the portal. A later migration that *recreates*
``company``, ``contact`` or ``project`` (Alembic's batch mode on SQLite: copy, drop, rename) drops their triggers
with the old table: it must call ``drop`` before and ``create`` after.

**PostgreSQL** — no side table: the query's per-term test is ``<search expression> ILIKE '%term%'`` (as the scan's
``column ILIKE`` per column: PostgreSQL's ILIKE folds every letter by itself), and a GIN ``gin_trgm_ops`` index
on that expression (pg_trgm) answers it. A term of 1–2 characters has no trigram either: a GIN index on the
expression's 1- and 2-character substrings (``portal_search_grams``, an SQL function; ILIKE compares ``lower()``
of both sides, so ``lower`` before cutting gives the same answer) answers ``@> ARRAY[lower(term)]``. Contacts test
their company's name through the same two indexes on ``coalesce(company.name, '')``. Layout 3 (revision
``c6e8a0b2d4f7``) stores the folded expression as a generated column (``search_text``), which both indexes hold and
a query tests with LIKE: the recheck of each GIN match no longer folds the expression again. Without pg_trgm, or without
the right to create the function, those indexes are left out with a logged warning and the same query scans:
same results, slower.

Schema: the migrations ``d2f4a6c8e0b1`` (index), ``e5a7c9b1d3f4`` (user-defined text fields), ``f7b9d1e3a5c6``
(list-order indexes) and ``a8c0e2f4b6d8`` (layout 2: sort rowids, vocabularies, PostgreSQL's short-term indexes)
build all this for a migrated database — ``create`` takes the layout as of each revision; ``db.create_all()``
(tests, benches) gets the current one through the metadata's ``after_create`` event registered below; Alembic's
comparison of the models with the database ignores it through ``include_name`` (portal/migrations/env.py, so
`flask db migrate` never proposes dropping it).
"""

from __future__ import annotations

import logging

from sqlalchemy import event, literal_column, select, table
from sqlalchemy.engine import Connection

from portal.extensions import db
from portal.models.user_fields import slot_keys

log = logging.getLogger(__name__)

SEPARATOR = "\x1f"  # whitespace to str.split(): never inside a search term
MIN_INDEXED = 3  # the trigram tokenizer indexes substrings of 3 characters and more
# the current layout; 1 = rowid = id, no vocabularies, no short-term indexes (before a8c0e2f4b6d8); 3 = layout 2 with
# PostgreSQL's folded search texts stored (revision c6e8a0b2d4f7; SQLite's tables are layout 2's)
LAYOUT = 3

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
VOCABULARIES = {crm_type: f"{fts}_vocab" for crm_type, fts in TABLES.items()}
_FTS5_SHADOWS = ("_data", "_idx", "_content", "_docsize", "_config")
# the leading column of each list's order (crm.ORDER), whose first characters make a sort rowid's high bits
SORT_COLUMNS = {"company": "name", "contact": "last_name", "project": "name"}
ID_BITS = 31
ID_MASK = (1 << ID_BITS) - 1
_SORT_CHARS = 4  # 4 characters x 8 bits + 1 bit for NULL = the 33 bits above the id
PG_INDEXES = {"company": "ix_company_search_trgm", "contact": "ix_contact_search_trgm",
              "project": "ix_project_search_trgm"}
PG_COMPANY_NAME_INDEX = "ix_company_name_trgm"
PG_GRAM_INDEXES = {"company": "ix_company_search_grams", "contact": "ix_contact_search_grams",
                   "project": "ix_project_search_grams"}
PG_GRAMS_FUNCTION = "portal_search_grams"
PG_COMPANY_NAME_COLUMN = "search_company_name"  # layout 2: a contact's copy of its company's name (triggers)
# layout 3: each record's folded search text, a stored generated column — lower() of the search expression, which
# the indexes hold and a row's test reads (LIKE) instead of folding the expression again (ILIKE)
PG_TEXT_COLUMN = "search_text"
# B-tree indexes in the list's order (crm.ORDER), both dialects: a page walks one of them when the matches of one
# sort group are too many to sort (revision f7b9d1e3a5c6)
ORDER_INDEXES = {"company": ("ix_company_search_order", "name, department, id"),
                 "contact": ("ix_contact_search_order", "last_name, first_name, id"),
                 "project": ("ix_project_search_order", "name, id")}
_SQLITE_TRIGGERS = [f"{crm_type}_search_{suffix}" for crm_type in COLUMNS for suffix in ("ai", "au", "ad")] + [
    "company_search_contacts_au"]


# ---------------------------------------------------------------------------------------------------------
# SQLite: sort rowids


def _char_code(value: str, position: int) -> tuple[str, str]:
    """(SQL of the 8-bit code of the character at ``position``, SQL that is true when that code stands for one
    character only). ASCII and U+00C0–U+00FF (the accented Latin letters) keep a code each; the others share one
    per block, in order: 0 = no character, 128 = U+0080–U+00BF, 193–254 = blocks of 64 from U+0100, 255 = the
    rest. A shared code says nothing about the next characters, so the codes after it are 0 (else "Àb" would sort
    after "Áa")."""
    char = f"unicode(substr({value}, {position}, 1))"
    code = (f"CASE WHEN {char} < 128 THEN {char} WHEN {char} < 192 THEN 128 WHEN {char} < 256 THEN {char} - 63 "
            f"WHEN {char} < 4224 THEN 193 + ({char} - 256) / 64 WHEN {char} IS NOT NULL THEN 255 ELSE 0 END")
    return code, f"({char} < 128 OR {char} BETWEEN 192 AND 255)"


def sqlite_rowid(crm_type: str, row: str) -> str:
    """The SQL of the sort rowid of ``row`` (new / old / a table alias): ``(code << 31) + id`` where code holds the
    first 4 characters of the leading column, 8 bits each, or -2**32 when it is NULL (NULL sorts first)."""
    value = f"{row}.{SORT_COLUMNS[crm_type]}"
    codes, exact = [], []
    for position in range(1, _SORT_CHARS + 1):
        code, single = _char_code(value, position)
        codes.append(f"(CASE WHEN {' AND '.join(exact)} THEN {code} ELSE 0 END)" if exact else f"({code})")
        exact.append(single)
    packed = " + ".join(f"{code} * {1 << (8 * (_SORT_CHARS - 1 - n))}" for n, code in enumerate(codes))
    return (f"(CASE WHEN {value} IS NULL THEN (-9223372036854775807 - 1) + {row}.id "
            f"ELSE ({packed}) * {1 << ID_BITS} + {row}.id END)")


def record_id(rowid: int) -> int:
    return rowid & ID_MASK


def sort_group(rowid: int) -> int:
    """The sort group of a rowid (its high bits); the group's rowids run from ``group << 31`` up to the next's."""
    return rowid >> ID_BITS


def group_rowids(group: int) -> tuple[int, int]:
    """(first rowid of ``group``, first rowid of the next group)."""
    return group << ID_BITS, (group + 1) << ID_BITS


def group_floor(group: int) -> str | None:
    """The smallest value of the leading column that has ``group``'s code (None: the group of NULL): every record
    of the group has a value >= it and every record of an earlier group a smaller one, so a walk of the list's
    order index can start there."""
    if group < 0:
        return None
    chars = []
    for code in group.to_bytes(_SORT_CHARS, "big"):
        if code == 0:
            break
        if code < 128:
            chars.append(chr(code))
        elif 129 <= code <= 192:
            chars.append(chr(code + 63))
        else:  # a shared code: its block's first character, and nothing after it is coded
            chars.append(chr(128 if code == 128 else 256 + (code - 193) * 64 if code < 255 else 4224))
            break
    return "".join(chars)


# ---------------------------------------------------------------------------------------------------------
# SQLite: FTS5 tables and triggers


def _sqlite_text(crm_type: str, row: str, company_name: str | None = None, columns: Columns | None = None,
                 layout: int = LAYOUT) -> str:
    """The SQL of one record's search text (``row`` = new / old / a table alias)."""
    parts = [f"lower(coalesce({row}.{column}, ''))" for column in (columns or COLUMNS)[crm_type]]
    if crm_type == "contact":
        name = company_name or f"(SELECT company.name FROM company WHERE company.id = {row}.company_id)"
        parts.append(f"lower(coalesce({name}, ''))")
    # layout 2: every character begins a trigram, the last two too (search_query.short_term_trigrams)
    return " || char(31) || ".join(parts) + (" || char(31, 31)" if layout >= 2 else "")


def _rowid(crm_type: str, row: str, layout: int) -> str:
    return sqlite_rowid(crm_type, row) if layout >= 2 else f"{row}.id"


def sqlite_statements(crm_type: str, searched: Columns | None = None, layout: int = LAYOUT) -> list[str]:
    """CREATE statements of ``crm_type``'s FTS5 table, vocabulary and triggers (idempotent); ``searched``: the
    columns as of a migration (default: ``COLUMNS``), ``layout``: as of a migration (default: the current)."""
    searched = searched or COLUMNS
    fts = TABLES[crm_type]
    watched = (*searched[crm_type], "company_id") if crm_type == "contact" else searched[crm_type]
    text = _sqlite_text(crm_type, "new", columns=searched, layout=layout)
    new, old = _rowid(crm_type, "new", layout), _rowid(crm_type, "old", layout)
    statements = [
        f"CREATE VIRTUAL TABLE IF NOT EXISTS {fts} USING fts5(text, tokenize = 'trigram case_sensitive 1')",
        f"CREATE TRIGGER IF NOT EXISTS {fts}_ai AFTER INSERT ON {crm_type} BEGIN "
        f"INSERT INTO {fts}(rowid, text) VALUES ({new}, {text}); END",
        # only when a searched value really changed: the sync engine's UPDATEs name every mapped column, and
        # re-folding unchanged texts cost the sync about as much as its own writes (the leading column of the
        # list's order is a searched one, so a sort rowid changes only here)
        f"CREATE TRIGGER IF NOT EXISTS {fts}_au AFTER UPDATE OF id, {', '.join(watched)} ON {crm_type} "
        f"WHEN {' OR '.join(f'old.{c} IS NOT new.{c}' for c in ('id', *watched))} BEGIN "
        f"DELETE FROM {fts} WHERE rowid = {old}; "
        f"INSERT INTO {fts}(rowid, text) VALUES ({new}, {text}); END",
        f"CREATE TRIGGER IF NOT EXISTS {fts}_ad AFTER DELETE ON {crm_type} BEGIN "
        f"DELETE FROM {fts} WHERE rowid = {old}; END",
    ]
    if layout >= 2:
        statements.append(f"CREATE VIRTUAL TABLE IF NOT EXISTS {VOCABULARIES[crm_type]} USING fts5vocab({fts}, row)")
    if crm_type == "company":  # a contact's search text holds its company's name
        contact_text = _sqlite_text("contact", "contact", company_name="new.name", columns=searched, layout=layout)
        contact_rowid = _rowid("contact", "contact", layout)
        statements.append(
            "CREATE TRIGGER IF NOT EXISTS company_search_contacts_au AFTER UPDATE OF name ON company "
            "WHEN old.name IS NOT new.name BEGIN "
            f"DELETE FROM contact_search WHERE rowid IN (SELECT {contact_rowid} FROM contact "
            "WHERE company_id = new.id); "
            f"INSERT INTO contact_search(rowid, text) SELECT {contact_rowid}, {contact_text} FROM contact "
            "WHERE contact.company_id = new.id; END")
    return statements


def create_sqlite(connection: Connection, *, fill: bool = True, columns: Columns | None = None,
                  layout: int = LAYOUT) -> None:
    """Create (if missing) the FTS5 tables and triggers; ``fill`` rebuilds each table from its records."""
    for crm_type in COLUMNS:
        for statement in sqlite_statements(crm_type, columns, layout):
            connection.exec_driver_sql(statement)
    if fill:
        for crm_type in COLUMNS:
            fts = TABLES[crm_type]
            connection.exec_driver_sql(f"DELETE FROM {fts}")
            connection.exec_driver_sql(
                f"INSERT INTO {fts}(rowid, text) SELECT {_rowid(crm_type, crm_type, layout)}, "
                f"{_sqlite_text(crm_type, crm_type, columns=columns, layout=layout)} FROM {crm_type}")
            connection.exec_driver_sql(f"INSERT INTO {fts}({fts}) VALUES ('optimize')")


def drop_sqlite(connection: Connection) -> None:
    for trigger in _SQLITE_TRIGGERS:
        connection.exec_driver_sql(f"DROP TRIGGER IF EXISTS {trigger}")
    for vocabulary in VOCABULARIES.values():
        connection.exec_driver_sql(f"DROP TABLE IF EXISTS {vocabulary}")
    for fts in TABLES.values():
        connection.exec_driver_sql(f"DROP TABLE IF EXISTS {fts}")


# ---------------------------------------------------------------------------------------------------------
# PostgreSQL: pg_trgm expression indexes, and 1-2 character substrings


def pg_columns(crm_type: str, columns: Columns | None = None, extended: bool = False) -> tuple[str, ...]:
    """The columns of ``crm_type``'s search expression; ``extended`` (layout 2): a contact's ends with its copy of
    its company's name (``PG_COMPANY_NAME_COLUMN``), so one index answers for both."""
    own = (columns or COLUMNS)[crm_type]
    return (*own, PG_COMPANY_NAME_COLUMN) if crm_type == "contact" and extended else own


def pg_expression(crm_type: str, qualifier: str = "", columns: Columns | None = None, extended: bool = False) -> str:
    """The search expression of ``crm_type``: the columns joined with U+001F."""
    prefix = f"{qualifier}." if qualifier else ""
    return "(" + " || E'\\x1f' || ".join(f"coalesce({prefix}{column}, '')"
                                         for column in pg_columns(crm_type, columns, extended)) + ")"


def pg_text(crm_type: str, qualifier: str = "") -> str:
    """Layout 3: the stored folded search text (``PG_TEXT_COLUMN``), ``lower(pg_expression(..))``."""
    return f"{qualifier + '.' if qualifier else ''}{PG_TEXT_COLUMN}"


def pg_company_name(qualifier: str = "") -> str:
    return f"(coalesce({qualifier + '.' if qualifier else ''}name, ''))"


def pg_grams(expression: str, folded: bool = False) -> str:
    """The indexed array of ``expression``'s folded 1- and 2-character substrings (the same text in the index and
    in the query, or PostgreSQL would not use the index); ``folded``: ``expression`` is folded already (layout 3's
    stored text)."""
    return f"{PG_GRAMS_FUNCTION}({expression if folded else f'lower({expression})'})"


# The substrings of length 2 (the last one: 1) and the characters; an index expression cannot hold a subquery, a
# function can. IMMUTABLE: the result depends on the argument only (lower() is applied by the caller, inside the
# indexed expression). COST: ~10 us a call, so a plan tests the index, not each row (a scan that called it per row
# took 300 ms for a page); GIN removes the duplicates.
# A contact's copy of its company's name: PostgreSQL cannot index across tables, and testing the company apart
# (company_id = ANY(<the companies that match>)) meant an array of 45,000 ids tested per contact for "as".
_PG_LAYOUT2_SQL = [
    f"CREATE OR REPLACE FUNCTION {PG_GRAMS_FUNCTION}(value text) RETURNS text[] "
    "LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE COST 1000 AS $$ "
    "SELECT array(SELECT substr(value, n, 2) FROM generate_series(1, length(value)) AS n) "
    "|| string_to_array(value, NULL) $$",
    f"ALTER TABLE contact ADD COLUMN IF NOT EXISTS {PG_COMPANY_NAME_COLUMN} text",
    f"CREATE OR REPLACE FUNCTION portal_contact_company_name() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
    f"NEW.{PG_COMPANY_NAME_COLUMN} := (SELECT name FROM company WHERE id = NEW.company_id); RETURN NEW; END $$",
    f"CREATE OR REPLACE FUNCTION portal_company_contacts_name() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
    f"UPDATE contact SET {PG_COMPANY_NAME_COLUMN} = NEW.name WHERE company_id = NEW.id; RETURN NULL; END $$",
    "DROP TRIGGER IF EXISTS contact_search_company_name_ai ON contact",
    "CREATE TRIGGER contact_search_company_name_ai BEFORE INSERT ON contact FOR EACH ROW "
    "WHEN (NEW.company_id IS NOT NULL) EXECUTE FUNCTION portal_contact_company_name()",
    "DROP TRIGGER IF EXISTS contact_search_company_name_au ON contact",
    "CREATE TRIGGER contact_search_company_name_au BEFORE UPDATE OF company_id ON contact FOR EACH ROW "
    "WHEN (OLD.company_id IS DISTINCT FROM NEW.company_id) EXECUTE FUNCTION portal_contact_company_name()",
    "DROP TRIGGER IF EXISTS company_search_contacts_name_au ON company",
    "CREATE TRIGGER company_search_contacts_name_au AFTER UPDATE OF name ON company FOR EACH ROW "
    "WHEN (OLD.name IS DISTINCT FROM NEW.name) EXECUTE FUNCTION portal_company_contacts_name()",
    f"UPDATE contact SET {PG_COMPANY_NAME_COLUMN} = company.name FROM company WHERE company.id = contact.company_id "
    f"AND contact.{PG_COMPANY_NAME_COLUMN} IS DISTINCT FROM company.name",
]


def _pg_layout3_sql(columns: Columns | None = None) -> list[str]:
    """Layout 3's stored folded texts (after layout 2's: a contact's text holds ``PG_COMPANY_NAME_COLUMN``, which
    its BEFORE triggers set — PostgreSQL computes a stored generated column after them)."""
    return [f"ALTER TABLE {crm_type} ADD COLUMN IF NOT EXISTS {PG_TEXT_COLUMN} text GENERATED ALWAYS AS "
            f"(lower({pg_expression(crm_type, columns=columns, extended=True)})) STORED" for crm_type in COLUMNS]


_PG_DROP_SQL = [
    *(f"ALTER TABLE IF EXISTS {crm_type} DROP COLUMN IF EXISTS {PG_TEXT_COLUMN}" for crm_type in COLUMNS),
    "DROP TRIGGER IF EXISTS contact_search_company_name_ai ON contact",
    "DROP TRIGGER IF EXISTS contact_search_company_name_au ON contact",
    "DROP TRIGGER IF EXISTS company_search_contacts_name_au ON company",
    f"ALTER TABLE IF EXISTS contact DROP COLUMN IF EXISTS {PG_COMPANY_NAME_COLUMN}",
    "DROP FUNCTION IF EXISTS portal_contact_company_name()",
    "DROP FUNCTION IF EXISTS portal_company_contacts_name()",
    f"DROP FUNCTION IF EXISTS {PG_GRAMS_FUNCTION}(text)",
]


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


def _create_pg_layout2(connection: Connection, columns: Columns | None = None, layout: int = 2) -> bool:
    try:
        with connection.begin_nested():
            for statement in _PG_LAYOUT2_SQL + (_pg_layout3_sql(columns) if layout >= 3 else []):
                connection.exec_driver_sql(statement)
        return True
    except Exception as error:  # noqa: BLE001 - any refusal: the search works with layout 1's indexes
        log.warning("cannot create the CRM search's functions and triggers (%s): searches for 1-2 letters and "
                    "contact searches scan their tables", str(error).splitlines()[0])
        return False


def create_postgresql(connection: Connection, columns: Columns | None = None, layout: int = LAYOUT) -> bool:
    """Create (if missing) the GIN indexes; False when pg_trgm is not available. Layout 2 without the right to
    create functions and triggers falls back to layout 1 (with a warning)."""
    _PG_READY.clear()
    extended = layout >= 2 and _create_pg_layout2(connection, columns, layout)
    stored = extended and layout >= 3

    def text(crm_type: str) -> str:
        return pg_text(crm_type) if stored else pg_expression(crm_type, columns=columns, extended=extended)

    if extended:
        for crm_type, index in PG_GRAM_INDEXES.items():
            connection.exec_driver_sql(f"CREATE INDEX IF NOT EXISTS {index} ON {crm_type} USING gin "
                                       f"({pg_grams(text(crm_type), folded=stored)})")
    if not has_pg_trgm(connection):
        return False
    for crm_type, index in PG_INDEXES.items():
        connection.exec_driver_sql(f"CREATE INDEX IF NOT EXISTS {index} ON {crm_type} USING gin "
                                   f"({text(crm_type)} gin_trgm_ops)")
    if not extended:
        connection.exec_driver_sql(f"CREATE INDEX IF NOT EXISTS {PG_COMPANY_NAME_INDEX} ON company "
                                   f"USING gin ({pg_company_name()} gin_trgm_ops)")
    return True


def drop_postgresql(connection: Connection) -> None:
    _PG_READY.clear()
    for index in (*PG_INDEXES.values(), PG_COMPANY_NAME_INDEX, *PG_GRAM_INDEXES.values()):
        connection.exec_driver_sql(f"DROP INDEX IF EXISTS {index}")
    for statement in _PG_DROP_SQL:
        connection.exec_driver_sql(statement)


# the layout in place (1, 2 or 3), per database URL: read once per process (a query must not name what is
# missing); create_postgresql and drop_postgresql forget it
_PG_READY: dict[str, int] = {}


def pg_layout() -> int:
    """PostgreSQL's layout in place: 1 (no short-term index), 2, or 3 (the short-term index on the stored text)."""
    key = str(db.session.get_bind().url)
    if key not in _PG_READY:
        definition = db.session.execute(select(literal_column("indexdef")).select_from(table("pg_indexes")).where(
            literal_column("indexname") == PG_GRAM_INDEXES["contact"])).scalar()
        _PG_READY[key] = 1 if definition is None else 3 if PG_TEXT_COLUMN in definition else 2
    return _PG_READY[key]


def pg_ready() -> bool:
    """Layout 2's extras (or 3's) are in place."""
    return pg_layout() >= 2


# ---------------------------------------------------------------------------------------------------------
# Schema hooks


def create(connection: Connection, *, fill: bool = True, columns: Columns | None = None,
           order_indexes: bool = False, layout: int = 1) -> None:
    """The index for the searched ``columns`` (default ``COLUMNS``) in ``layout`` (default 1: what the revisions
    before a8c0e2f4b6d8 built; each migration passes the columns and layout as of its revision) and, with
    ``order_indexes``, the list-order indexes (added by revision f7b9d1e3a5c6)."""
    if connection.dialect.name == "sqlite":
        create_sqlite(connection, fill=fill, columns=columns, layout=layout)
    elif connection.dialect.name == "postgresql":
        create_postgresql(connection, columns=columns, layout=layout)
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
        create(connection, order_indexes=True, layout=LAYOUT)


@event.listens_for(db.metadata, "before_drop")
def _before_drop(_metadata, connection, **_kw):
    drop(connection, order_indexes=True)


def _has_record_tables(connection: Connection) -> bool:
    from sqlalchemy import inspect

    return set(COLUMNS) <= set(inspect(connection).get_table_names())


def include_name(name: str | None, type_: str, _parent_names: dict) -> bool:
    """Alembic's ``include_name``: leave the index's tables and indexes out of model comparisons."""
    if type_ == "table" and name:
        return name not in VOCABULARIES.values() and not any(
            name == fts or (name.startswith(fts) and name[len(fts):] in _FTS5_SHADOWS) for fts in TABLES.values())
    if type_ == "index":
        return name not in (*PG_INDEXES.values(), PG_COMPANY_NAME_INDEX, *PG_GRAM_INDEXES.values(),
                            *(index for index, _columns in ORDER_INDEXES.values()))
    if type_ == "column":
        return name not in (PG_COMPANY_NAME_COLUMN, PG_TEXT_COLUMN)
    return True

"""Reading the CRM search index (search_index.py): the condition of a query, and one page of a search (issue #19:
p95 <= 10 ms at 100,000 companies) — the records, the page number, and the count: exact up to
``crm.SEARCH_COUNT_CAP`` matches, "more than" it beyond (counting tens of thousands of matches costs more than the
whole budget). The records and their order are exactly those of ``crm.paginate(crm.search_statement(..))``, the
LIKE scan's (``crm.search_statement_scan``); only the way to them differs per database. Every term of a query must
be in one searched column; a term that is part of another ("a" in "as") adds nothing and is left out.

**SQLite.** The search tables' rowids follow the list's order group by group (a *sort group*: the records whose
leading sort column starts alike), so reading the index in rowid order reads the matches in list order, up to the
order inside a group. A page reads the rowids of the first ``SEARCH_COUNT_CAP`` + 1 matches (the count; it stops
there), finds the group holding the last record the page needs, and takes every match of the earlier groups (fewer
than the page needs) and, of that group, either all its matches (at most ``SORT_LIMIT``) or — more than that: then
at least 1 in 100 of the group's records match — the first ones of a walk of the list's order index from the
group's first value, testing each record's text. The database sorts that bounded set for the page. So a page costs
about the count's ``SEARCH_COUNT_CAP`` index reads and a sort of at most ``SORT_LIMIT`` + the page, wherever the
matches sit in the list: thousands of "Hansen" after thousands of other surnames included.

A query of 1–2 character terms only has no trigram to look up: it reads the first ``SCAN_ROWS`` search texts in
rowid order (a common term reaches the count there), and only when they hold too few matches looks up the trigrams
that begin with each term (``short_term_trigrams``: few for a rare term, none for a term no record holds). A short
term beside a longer one is tested with ``instr`` on the longer one's matches.

**PostgreSQL.** GIN indexes return matches in no order. A page reads at most ``SEARCH_COUNT_CAP`` + 1 matches with
their list-order keys, ranked by PostgreSQL (its collation): that gives the count and the key of the last record
the page needs among them. Every record of the page sorts at or before that key, so the page sorts only the
matches up to it — a range of the list's order index that PostgreSQL ANDs with the GIN bitmap. Layout 3 tests
the stored folded text (``search_text LIKE lower('%term%')``, no folding per row); a query of 1–2 letter terms
walks the list's start first, and a common one (its page found there) is counted from the records, not from its
substring index; the sample is read with sequential scans off (the planner underprices the LIKE).
"""

from __future__ import annotations

import contextlib
import math
from bisect import bisect_left
from dataclasses import dataclass

from sqlalchemy import (
    ARRAY,
    Integer,
    Select,
    String,
    and_,
    any_,
    cast,
    func,
    literal,
    literal_column,
    or_,
    select,
    table,
    union_all,
)
from sqlalchemy.dialects.postgresql import array
from sqlalchemy.orm import aliased
from sqlalchemy.sql.elements import ColumnElement

from portal.extensions import db
from portal.models import Company, Contact
from portal.services import search_index
from portal.services.search_index import (
    ID_MASK,
    MIN_INDEXED,
    TABLES,
    VOCABULARIES,
    pg_company_name,
    pg_expression,
    pg_grams,
    pg_layout,
    pg_text,
)

# ---------------------------------------------------------------------------------------------------------
# Terms and conditions


def fold(term: str) -> str:
    return term.lower()


def like_pattern(term: str) -> str:
    escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def fts_phrase(folded_term: str) -> str:
    return '"' + folded_term.replace('"', '""') + '"'


def essential_terms(terms: list[str]) -> list[str]:
    """``terms`` without repeats and without a term that is part of another: a record holding "as" in a column holds
    "a" there too, so the query "as a" is the query "as" (and skips reading every record for "a")."""
    unique = list(dict.fromkeys(terms))
    return [term for n, term in enumerate(unique)
            if not any(term in other for m, other in enumerate(unique) if m != n and len(other) > len(term))]


def split_terms(terms: list[str]) -> tuple[list[str], list[str]]:
    """(folded terms of 3+ characters, folded terms of 1-2 characters), without repeats or terms part of another."""
    folded = essential_terms([fold(term) for term in terms])
    return [term for term in folded if len(term) >= MIN_INDEXED], [term for term in folded if len(term) < MIN_INDEXED]


def short_term_trigrams(crm_type: str, term: str) -> list[str]:
    """The trigrams of ``crm_type``'s index that begin with ``term`` (1-2 folded characters): a record holds the
    term exactly when its text holds one of them. The vocabulary is read by a range of terms, so a rare term costs
    a few index pages; a common one costs more, and a page reads those from the texts instead (``_Matches.first``)."""
    vocabulary = VOCABULARIES[crm_type]
    term_column = literal_column(f"{vocabulary}.term")
    rows = db.session.scalars(select(term_column).select_from(table(vocabulary)).where(
        term_column >= term, term_column <= term + "\U0010ffff\U0010ffff"))
    return [trigram for trigram in rows if trigram.startswith(term)]


def condition(crm_type: str, model, terms: list[str], dialect: str) -> ColumnElement[bool]:
    """The WHERE condition keeping the records of ``model`` (of ``crm_type``) that match every term."""
    if dialect == "sqlite":
        return model.id.in_(select(literal_column(f"{TABLES[crm_type]}.rowid").op("&")(ID_MASK))
                            .select_from(table(TABLES[crm_type])).where(fts_condition(crm_type, terms)))
    return pg_condition(crm_type, model, terms)


def fts_condition(crm_type: str, terms: list[str], expansions: dict[str, list[str]] | None = None):
    """The condition on ``crm_type``'s FTS5 table: a MATCH of the long terms, then — each short term — one of its
    trigrams in the MATCH when ``expansions`` has them, else ``instr`` on the FTS5 table's text."""
    fts = TABLES[crm_type]
    long_terms, short_terms = split_terms(terms)
    expansions = expansions or {}
    parts = [fts_phrase(term) for term in long_terms]
    parts += ["(" + " OR ".join(map(fts_phrase, expansions[term])) + ")" for term in short_terms if term in expansions]
    tests = [literal_column(fts).op("MATCH")(" AND ".join(parts))] if parts else []
    tests += [func.instr(literal_column(f"{fts}.text"), term) > 0 for term in short_terms if term not in expansions]
    return and_(*tests)


def pg_condition(crm_type: str, model, terms: list[str], indexed: bool = True):
    """PostgreSQL: per term, the indexed text — a LIKE / ILIKE for 3+ characters, the substring array for 1–2 —
    which holds a contact's company name too (layout 2); without layout 2's extras a contact tests its company
    apart (``company_id = ANY(...)``, which PostgreSQL can OR with the contact's own index in one bitmap). Layout 3
    tests the stored folded text with LIKE (``search_text LIKE lower('%term%')``: ILIKE is that, folding both sides
    on every row). Not ``indexed``: LIKE / ILIKE only, the cheap test of one row (and of a common 1–2 letter term,
    read sooner from the records than from its index)."""
    terms = essential_terms(terms)  # on the terms as typed: PostgreSQL's lower() folds one character at a time
    layout = pg_layout()
    extended = layout >= 2
    # a short term through its index only when no term needs pg_trgm: a trigram match is rechecked row by row, and
    # the recheck would call the substring function on each (40 ms for a page), where ILIKE costs microseconds
    grams = indexed and extended and all(len(term) < MIN_INDEXED for term in terms)
    conditions = []
    for term in terms:
        if layout >= 3:
            conditions.append(_pg_folded_test(crm_type, term, grams))
            continue
        matches = _pg_test(pg_expression(crm_type, crm_type, extended=extended), term, grams)
        if crm_type == "contact" and not extended:
            company = aliased(Company, name="search_company")
            names = select(func.array_agg(company.id)).where(_pg_test(pg_company_name("search_company"), term, False))
            # an array (cast: ANY(<subquery>) would read as a set of rows) computed once, looked up in the index
            matches = or_(matches, Contact.company_id == any_(cast(names.scalar_subquery(), ARRAY(Integer))))
        conditions.append(matches)
    return and_(*conditions)


def _pg_test(expression: str, term: str, grams: bool):
    """``expression`` holds ``term``, as an indexed test: a term of 1-2 characters (PostgreSQL's ``lower()`` keeps
    a string's length, so it stays one) is one of the expression's indexed substrings."""
    if grams and len(term) < MIN_INDEXED:
        return literal_column(pg_grams(expression)).op("@>")(array([func.lower(_pg_literal(term))]))
    return literal_column(expression).ilike(_pg_literal(like_pattern(term)), escape="\\")


def _pg_folded_test(crm_type: str, term: str, grams: bool):
    """Layout 3: the stored folded text holds ``term`` — ``lower()`` of the pattern written into the SQL, which
    PostgreSQL computes once while planning (so pg_trgm sees the pattern)."""
    text = literal_column(pg_text(crm_type, crm_type))
    if grams and len(term) < MIN_INDEXED:
        return literal_column(pg_grams(pg_text(crm_type, crm_type), folded=True)).op("@>")(
            array([func.lower(_pg_literal(term))]))
    return text.like(func.lower(_pg_literal(like_pattern(term))), escape="\\")


def _pg_literal(value: str):
    """``value`` written into the SQL, not bound: psycopg prepares a statement run 5 times, and PostgreSQL's generic
    plan for ``ILIKE $1`` cannot know the pattern's trigrams — it scanned (20 ms where the index takes 0.1)."""
    return literal(value, String, literal_execute=True)


# ---------------------------------------------------------------------------------------------------------
# One page

SORT_LIMIT = 1000  # a sort group's matches are sorted up to this many; beyond, the page walks the group in order
SCAN_ROWS = 4000  # a query of 1-2 character terms reads this many texts before it looks up their trigrams
PG_WALK_ROWS = 500  # PostgreSQL: records of the list's start tested for a page before the GIN bitmap is ranged


@dataclass
class Plan:
    """What a page reads: ``number`` (clamped to the last page when the matches are known to end before it),
    ``candidates`` (record ids — a SELECT of them, or a list — holding the page and the records before it in list
    order; None: no match at all) and ``count`` (the number of matches when all were read, else None: more than
    the cap)."""

    number: int
    candidates: Select | list[int] | None
    count: int | None
    #: the page's ORDER BY when not the list's own (PostgreSQL: the same order, written so no index serves it)
    order: tuple | None = None


class _Matches:
    """The matches of ``terms`` on SQLite, in rowid order: ``rowids`` reads them, ``ids`` is a SELECT of their
    record ids. Read from the FTS5 table (a MATCH), or — a query of common 1–2 character terms — from the search
    texts themselves (``instr``), which then reach the count's cap within the first rows."""

    def __init__(self, crm_type: str, terms: list[str]):
        self.crm_type = crm_type
        self.terms = terms
        self.long_terms, self.short_terms = split_terms(terms)
        fts = TABLES[crm_type]
        self.content = table(f"{fts}_content")
        self.content_id = literal_column(f"{fts}_content.id")
        self.content_text = literal_column(f"{fts}_content.c0")
        self.fts_rowid = literal_column(f"{fts}.rowid")
        self.scan = False
        self.none = False  # a term no record holds
        self.expansions: dict[str, list[str]] | None = None

    def first(self, limit: int) -> list[int]:
        """The rowids of the first ``limit`` matches; decides how the later reads go."""
        if self.long_terms:
            return self.rowids(limit)
        beyond = _scalar(select(self.content_id).select_from(self.content).order_by(self.content_id)
                         .offset(SCAN_ROWS).limit(1))  # the first text past the window, None: no more texts
        self.scan = True
        found = self.rowids(limit, below=beyond)
        if len(found) >= limit or beyond is None:
            return found
        self.scan = False
        self.expansions = {term: short_term_trigrams(self.crm_type, term) for term in self.short_terms}
        self.none = not all(self.expansions.values())
        return [] if self.none else self.rowids(limit)

    def _text_test(self, text):
        return and_(*(func.instr(text, term) > 0 for term in (*self.long_terms, *self.short_terms)))

    def _select(self, column):
        if self.scan:
            return select(column).select_from(self.content).where(self._text_test(self.content_text))
        # the short terms' instr reads the text from the content table, joined: FTS5's own text column reads it
        # through a statement per row, twice as slow
        fts = table(TABLES[self.crm_type])
        instr_terms = [term for term in self.short_terms if term not in (self.expansions or {})]
        indexed = [*self.long_terms, *(term for term in self.short_terms if term not in instr_terms)]
        stmt = select(column).where(fts_condition(self.crm_type, indexed, self.expansions))
        if not instr_terms:
            return stmt.select_from(fts)
        return stmt.select_from(fts.join(self.content, self.content_id == self.fts_rowid)).where(
            and_(*(func.instr(self.content_text, term) > 0 for term in instr_terms)))

    def _key(self):
        return self.content_id if self.scan else self.fts_rowid

    def rowids(self, limit: int, after: int | None = None, below: int | None = None) -> list[int]:
        if self.none:
            return []
        key = self._key()
        stmt = self._select(key)
        if after is not None:
            stmt = stmt.where(key > after)
        if below is not None:
            stmt = stmt.where(key < below)
        return _scalars(stmt.order_by(key).limit(limit))

    def ids(self, below: int | None = None) -> Select:
        key = self._key()
        stmt = self._select(key.op("&")(ID_MASK).label("id"))
        return stmt if below is None else stmt.where(key < below)

    def walk(self, model, order, group: int, wanted: int) -> Select:
        """The ids of the first ``wanted`` matches of sort group ``group``, walking the list's order from the
        group's first value; a record of another group has no text at ``group``'s rowid for its id, so the test
        keeps the group's records only."""
        start, _end = search_index.group_rowids(group)
        test = select(self._text_test(self.content_text)).select_from(self.content).where(
            self.content_id == start + model.id)
        lead = getattr(model, search_index.SORT_COLUMNS[self.crm_type])
        floor = search_index.group_floor(group)
        return (select(model.id).where(lead.is_(None) if floor is None else lead >= floor)
                .where(test.scalar_subquery().is_(True)).order_by(*order).limit(wanted))


def candidate_condition(model, candidates: Select | list[int]):
    """``model``'s id among the plan's candidates: a list goes as one array parameter (a thousand bound values
    would be a new statement to parse and plan for each count of them)."""
    if isinstance(candidates, list):
        return model.id == any_(literal(candidates, ARRAY(Integer)))
    return model.id.in_(candidates)


def _scalars(stmt) -> list:
    """Run a Core SELECT on the session's connection (no ORM layer: a thousand ids, fetched as plain values)."""
    return db.session.connection().execute(stmt).scalars().all()


def _scalar(stmt):
    return db.session.connection().execute(stmt).scalar()


def sqlite_plan(crm_type: str, model, order, terms: list[str], number: int, per_page: int, cap: int) -> Plan:
    matches = _Matches(crm_type, terms)
    offset = (number - 1) * per_page
    need = offset + per_page + 1  # the page and one record more: whether another page follows
    limit = max(cap + 1, need)
    rows = matches.first(limit)
    count = len(rows) if len(rows) < limit else None
    if not rows:
        return Plan(1, None, 0)
    if count is not None and offset >= count:  # past the last match (a hand-made URL): the last page
        number = math.ceil(count / per_page)
        offset = (number - 1) * per_page
    last = min(offset + per_page + 1, len(rows))  # the matches up to the last one this page needs
    group = search_index.sort_group(rows[last - 1])
    start, end = search_index.group_rowids(group)
    before = bisect_left(rows, start)
    in_group = bisect_left(rows, end) - before
    if count is None and rows[-1] < end and in_group <= SORT_LIMIT:  # the group goes on past what was read
        in_group += len(matches.rowids(SORT_LIMIT + 1 - in_group, after=rows[-1], below=end))
    if in_group <= SORT_LIMIT:
        return Plan(number, matches.ids(below=end), count)
    walked = matches.walk(model, order, group, last - before).subquery()
    return Plan(number, union_all(matches.ids(below=start), select(walked.c.id)), count)


def pg_plan(crm_type: str, model, order, terms: list[str], number: int, per_page: int, cap: int) -> Plan:
    offset = (number - 1) * per_page
    need = offset + per_page + 1  # the page and one record more: whether another page follows
    limit = max(cap + 1, need)
    walked = None
    if all(len(term) < MIN_INDEXED for term in essential_terms(terms)) and pg_layout() >= 2:
        # 1-2 letters: their substring index answers a rare term at once, but a common one's GIN bitmap holds tens
        # of thousands of ids (17 ms for "ø"), where reading records finds the page and the count sooner. So walk
        # the list's start first: a page found there is a common term, and its count reads records too
        walked = _pg_walk(crm_type, model, order, terms, need)
        if len(walked) == need:
            count = _pg_count(crm_type, model, terms, limit, indexed=False)
            return Plan(number, walked, count if count < limit else None, order=_pg_sort(order))
    with _pg_index_scans():
        return _pg_sample_plan(crm_type, model, order, terms, number, per_page, limit, walked)


#: PostgreSQL's price of an operator while the matches are read: a LIKE on a stored search text costs ~0.6 µs a
#: row (a scan of 100,000 texts: 72 ms, priced 4,271 units, so ~17 µs a unit: ~0.035 units), 14 times the default
#: 0.0025. Priced at the default, rechecking 13,351 trigram candidates looked cheaper than ANDing the GIN bitmap
#: with the list-order range (13.6 ms against 7.8 for "hansen")
PG_LIKE_COST = "0.05"


@contextlib.contextmanager
def _pg_index_scans():
    """The matches read from the GIN indexes, not by a scan of the table from its start, and priced at what a LIKE
    costs (``PG_LIKE_COST``): PostgreSQL prices a LIKE on a stored text at a fraction of what it costs (~0.5 µs a
    row), and for the 1,001 matches of a term held by 1 record in 10 it scanned 10,000 records (7.7 ms) where the
    trigram index reads 1,001 (3.9 ms). ``SET LOCAL`` for the statements inside, the settings before them back
    after them (a failed statement ends the transaction, and the settings with it)."""
    connection = db.session.connection()
    previous = connection.exec_driver_sql(
        "SELECT current_setting('enable_seqscan'), current_setting('cpu_operator_cost'), "
        "set_config('enable_seqscan', 'off', true), set_config('cpu_operator_cost', %s, true)",
        (PG_LIKE_COST,)).first()
    yield
    connection.exec_driver_sql("SELECT set_config('enable_seqscan', %s, true), set_config('cpu_operator_cost', %s, "
                               "true)", (previous[0], previous[1]))


def _pg_sample_plan(crm_type: str, model, order, terms: list[str], number: int, per_page: int, limit: int,
                    walked: list[int] | None) -> Plan:
    offset = (number - 1) * per_page
    need = offset + per_page + 1
    condition = pg_condition(crm_type, model, terms)
    # one read of at most `limit` matches from the GIN indexes (in no order), counted, and the first `need` of them
    # in the list's order ranked by PostgreSQL (its collation; a top-N sort): how many, and the key of the last
    # record the page needs among them
    sample = select(model.id, *(column.label(f"key_{n}") for n, column in enumerate(order))).where(condition) \
        .limit(limit).subquery()
    keys = [sample.c[f"key_{n}"] for n in range(len(order))]
    rows = db.session.connection().execute(select(func.count().over().label("matches"), sample.c.id, *keys)
                                           .order_by(*keys).limit(need)).all()
    if not rows:
        return Plan(1, None, 0)
    matches = rows[0].matches
    if matches < limit:  # every match was read: the first `need` of them are the page's candidates
        count = matches
        number = min(number, math.ceil(count / per_page))
        return Plan(number, [row.id for row in rows], count, order=_pg_sort(order))
    # more matches than were read. Spread over the list (most common words), the page is among the first records
    # of the list: walk PG_WALK_ROWS of them in order, testing each (under a microsecond a record on layout 3)
    if walked is None:
        walked = _pg_walk(crm_type, model, order, terms, need)
    if len(walked) == need:
        return Plan(number, walked, None, order=_pg_sort(order))
    # Else the matches are not spread over the list's start (the walk found too few): every record the
    # page needs sorts at or before the last match of the sample's ranking (that many matches do). Read the ids of
    # the matches up to it — a range of the list's order that PostgreSQL ANDs with the GIN bitmap — and sort only
    # those. Bounded on the first two sort columns (an index on both), not as a row comparison, which PostgreSQL
    # bounds by the first column alone: every "Hansen" then, not the "Hansen, Berit" the page needs.
    first, second = order[0], order[1]
    bound_first, bound_second = rows[-1][2], rows[-1][3]
    candidates = select(model.id).where(condition)
    if bound_first is not None and bound_second is not None:
        candidates = candidates.where(or_(first < _pg_value(bound_first), and_(
            first == _pg_value(bound_first), second <= _pg_value(bound_second))))
    elif bound_first is not None:  # a NULL sorts last on PostgreSQL
        candidates = candidates.where(first <= _pg_value(bound_first))
    # the first `need` of them, read first: inside the page's query, PostgreSQL would walk the list's order index
    # instead, testing each record, and the matches may sit anywhere in that order. Sorted here (by _pg_sort: no
    # index serves it), so the page fetches `need` records, not every match up to the bound (520 for "hansen")
    return Plan(number, _scalars(candidates.order_by(*_pg_sort(order)).limit(need)), None, order=_pg_sort(order))


def _pg_walk(crm_type: str, model, order, terms: list[str], need: int) -> list[int]:
    """The first ``need`` matches among the list's first ``PG_WALK_ROWS`` records, in order, each record tested;
    none when the page needs more records than that."""
    if need > PG_WALK_ROWS:
        return []
    walk = select(model.id, pg_condition(crm_type, model, terms, indexed=False).label("hit")).order_by(*order) \
        .limit(PG_WALK_ROWS).subquery()
    return _scalars(select(walk.c.id).where(walk.c.hit).limit(need))


def _pg_count(crm_type: str, model, terms: list[str], limit: int, indexed: bool = True) -> int:
    """The number of matches, counted up to ``limit``."""
    matches = select(literal(1)).select_from(model).where(pg_condition(crm_type, model, terms, indexed=indexed)) \
        .limit(limit).subquery()
    return _scalar(select(func.count()).select_from(matches))


def _pg_sort(order) -> tuple:
    """The list's order for a page of known ids: by the index's own columns, PostgreSQL walks the whole list's order
    index testing each record for the ids (it takes them for spread evenly: 24,790 records read for "hansen");
    ``|| ''`` changes no value and no order, but no index holds it, so the ids are fetched and sorted."""
    return (order[0] + "", *order[1:])


def _pg_value(value):
    """A key written into the SQL: a prepared statement's generic plan would not know the range it bounds."""
    return literal(value, literal_execute=True)

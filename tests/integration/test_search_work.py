"""A search page's work does not grow with the records that are not on it (issue #19), on SQLite.

Counted as SQLite virtual-machine steps (``set_progress_handler``), not as time, so the test is as steady on a busy
machine as on an idle one. Two cases the search used to answer by reading every record before the page:

* a term of 1–2 letters that no record holds has no trigram: the search read every search text (``instr``), now
  it reads ``SCAN_ROWS`` of them and then the index's vocabulary;
* more matches than the count's cap, all late in the list's order (thousands of contacts named "Hansen" after
  thousands of others): the page walked the list from its start, testing each record, now it reads the index in
  rowid order, which is the list's order group by group.
"""

from __future__ import annotations

import os
from unittest import mock

import pytest
from sqlalchemy import insert, text

from portal.extensions import db
from portal.models import Company, Contact
from portal.services import crm

pytestmark = pytest.mark.skipif(os.environ.get("PORTAL_TEST_DATABASE_URL", "").startswith("postgresql"),
                                reason="SQLite's virtual machine (PostgreSQL: test_search_index.py reads its plans)")

STEP = 100  # the progress handler runs every STEP virtual-machine instructions


def _steps(run) -> int:
    """The virtual-machine instructions ``run()`` costs on the session's SQLite connection."""
    connection = db.session.connection().connection.driver_connection
    ticks = [0]

    def tick():
        ticks[0] += 1
        return 0

    connection.set_progress_handler(tick, STEP)
    try:
        run()
    finally:
        connection.set_progress_handler(None, STEP)
    return ticks[0] * STEP


def test_a_rare_short_term_does_not_read_every_text(app_ctx):
    db.session.execute(insert(Company), [{"name": f"Firma {n:05d} AS", "postal_city": "Oslo"} for n in range(40_000)])
    db.session.commit()
    every_text = _steps(lambda: db.session.execute(text(
        "SELECT count(*) FROM company_search_content WHERE instr(c0, 'qx') > 0")).scalar())
    for query in ("qx", "Q", "ø"):
        page = crm.search("company", query)
        assert page.total == 0 and page.items == []
        steps = _steps(lambda query=query: crm.search("company", query))
        assert steps < every_text / 2.5, (query, steps, every_text)  # the first 4,000 texts, not 40,000


def test_matches_late_in_the_list_are_not_walked_to(app_ctx):
    db.session.execute(insert(Contact), [{"first_name": f"Kari{n % 50}", "last_name": "Aasen", "email": f"a{n}@x.no"}
                                         for n in range(12_000)]
                       + [{"first_name": f"Ola{n % 50}", "last_name": "Hansen", "email": f"h{n}@x.no"}
                          for n in range(400)])
    db.session.commit()
    scan = crm.paginate(crm.search_statement_scan("contact", "hansen"), 2)
    with mock.patch.object(crm, "SEARCH_COUNT_CAP", 100):  # 400 matches: more than the count's cap
        page = crm.search("contact", "hansen", 2)
        assert page.capped and [item.id for item in page.items] == [item.id for item in scan.items]
        steps = _steps(lambda: crm.search("contact", "hansen", 2))
    walk_to_them = _steps(lambda: db.session.execute(text(
        "SELECT count(*) FROM contact WHERE last_name < 'Hansen' AND instr(lower(email), 'hansen') = 0")).scalar())
    assert steps < walk_to_them / 2, (steps, walk_to_them)

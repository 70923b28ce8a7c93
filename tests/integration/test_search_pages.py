"""The list screen of a search with more matches than the search counts (crm.SEARCH_COUNT_CAP, issue #19):
"more than N" in the summary, a pager without a last page number, and pages that follow one another."""

from __future__ import annotations

import re
from unittest import mock

from sqlalchemy import insert

from portal.extensions import db
from portal.models import Company
from portal.services import crm


def _text(response) -> str:
    return re.sub(r"\s+", " ", response.get_data(as_text=True))


def test_a_search_over_the_cap_says_more_than_and_pages_on(app, user_client):
    with app.app_context():
        db.session.execute(insert(Company), [{"name": f"Bygg {n:02d} AS"} for n in range(30)]
                           + [{"name": "Other"}])
        db.session.commit()
    with mock.patch.object(crm, "SEARCH_COUNT_CAP", 12):
        first = _text(user_client.get("/companies?q=BYGG"))
        assert "Showing 1–25 of more than 25 companies matching “BYGG”." in first  # 26 were read
        assert "Page 1</span>" in first and "Page 1 of" not in first
        assert 'rel="next"' in first and 'rel="prev"' not in first
        assert "Bygg 00 AS" in first and "Bygg 24 AS" in first and "Bygg 25 AS" not in first

        second = _text(user_client.get("/companies?q=bygg&page=2"))
        assert "Showing 26–30 of 30 companies matching “bygg”." in second  # the walk reached the end
        assert 'rel="prev"' in second and 'rel="next"' not in second and "Page 2 of 2" in second
        assert "Bygg 29 AS" in second and "Other" not in second

        past = _text(user_client.get("/companies?q=bygg&page=9"))  # past the end: the last page, counted
        assert "Showing 26–30 of 30 companies matching “bygg”." in past

        partial = _text(user_client.get("/companies?q=bygg", headers={"HX-Request": "true"}))
        assert "more than 25 companies" in partial
    with mock.patch.object(crm, "SEARCH_COUNT_CAP", 1):
        assert "Showing 1–25 of more than 25 companies" in _text(user_client.get("/companies?q=bygg"))
    exact = _text(user_client.get("/companies?q=bygg"))  # under the cap: the exact count and page count
    assert "Showing 1–25 of 30 companies matching “bygg”." in exact and "Page 1 of 2" in exact

"""The SQLite search index's sort rowids (portal/services/search_index.py): FTS5 returns matches by rowid, and a
page of a search relies on the rowid order being the list's order, sort group by sort group.

Checked against SQLite itself: for any values of the leading sort column (NULL, '', ASCII, accented letters,
letters of other scripts, the characters between the coded blocks), ``ORDER BY value, id`` never puts a record of a
later group before one of an earlier group, every value of a group is at least ``group_floor`` of it and every value
of an earlier group below it, and the id comes back out of the rowid.
"""

from __future__ import annotations

import sqlite3

from hypothesis import given, settings
from hypothesis import strategies as st

from portal.services import search_index, search_query
from portal.services.search_index import group_floor, record_id, sort_group

# the edges of the codes: ASCII, U+0080–U+00BF (one code), U+00C0–U+00FF (a code each), blocks of 64 up to U+1080,
# and beyond (one code); plus letters that fold oddly
CHARACTERS = st.sampled_from([
    "\x01", " ", "0", "A", "Z", "a", "z", "~", "\x7f", "\x80", "\xbf", "\xc0", "À", "Á", "Å", "Æ", "Ø", "ß", "ÿ",
    "\u0100", "İ", "ı", "\u013f", "\u0140", "Σ", "ς", "\u107f", "\u1080", "\u1081", "東", "\U0001f600"])
VALUES = st.one_of(st.none(), st.text(alphabet=CHARACTERS, max_size=6))


def _rowids(values: list[str | None]) -> list[tuple[int, str | None, int]]:
    connection = sqlite3.connect(":memory:")
    connection.execute("CREATE TABLE company (id INTEGER PRIMARY KEY, name TEXT)")
    connection.executemany("INSERT INTO company (id, name) VALUES (?, ?)",
                           [(n + 1, value) for n, value in enumerate(values)])
    return connection.execute(f"SELECT {search_index.sqlite_rowid('company', 'company')}, name, id FROM company "
                              "ORDER BY name, id").fetchall()


@settings(max_examples=300, deadline=None)
@given(values=st.lists(VALUES, min_size=1, max_size=30))
def test_sort_rowids_follow_the_lists_order_group_by_group(values):
    rows = _rowids(values)  # in the list's order (SQLite's ORDER BY name, id: NULL first, then by code point)
    groups = [sort_group(rowid) for rowid, _name, _id in rows]
    assert groups == sorted(groups)
    for rowid, _name, record in rows:
        assert record_id(rowid) == record
        start, end = search_index.group_rowids(sort_group(rowid))
        assert start <= rowid < end
    for group in set(groups):
        floor = group_floor(group)
        members = [name for (_rowid, name, _id), other in zip(rows, groups, strict=True) if other == group]
        earlier = [name for (_rowid, name, _id), other in zip(rows, groups, strict=True) if other < group]
        if floor is None:  # the group of NULL, which sorts first
            assert members == [None] * len(members) and not earlier
        else:
            assert all(name is not None and name >= floor for name in members)
            assert all(name is None or name < floor for name in earlier)


def test_values_sharing_their_first_characters_share_a_group():
    rows = {name: sort_group(rowid) for rowid, name, _id in _rowids(
        ["Hansen", "Hanssen", "Hans", "Han", "Haugen", "Ørsta", "Østfold", "Àb", "Áa", "Āz", "āa", None, ""])}
    assert rows["Hansen"] == rows["Hanssen"] == rows["Hans"] < rows["Haugen"]  # 4 characters coded
    assert rows["Han"] < rows["Hans"]  # shorter first, as SQLite sorts
    assert rows["Ørsta"] < rows["Østfold"]  # Ø has a code of its own, so the next letters count
    assert rows["Àb"] < rows["Áa"]  # À and Á have a code each
    assert rows["Āz"] == rows["āa"]  # U+0100–U+013F share one: nothing after it is coded
    assert rows[None] < rows[""] < rows["Han"]
    assert group_floor(rows["Hansen"]) == "Hans" and group_floor(rows[None]) is None


def test_terms_part_of_another_are_left_out():
    assert search_query.essential_terms(["as", "a", "as", "s", "bygg", "by", "x"]) == ["as", "bygg", "x"]
    assert search_query.split_terms(["ØST", "øs", "Q"]) == (["øst"], ["q"])

"""The sync engine's fast paths give exactly what the general code gives.

* ``merge.merge_prepared`` (rules prepared once per run, plain values compared inline) against ``merge.merge``;
* ``bulk.BulkStatement`` (one DBAPI executemany of SQLAlchemy's own compiled statement) against
  ``Connection.execute(table.update()/insert(), rows)``: the same rows stored, byte for byte;
* ``changelog.erp_text`` against ``values.display``, ``plan.crm_values`` on a row tuple against attribute access;
* ``context.GcPaused`` restores the collector's state, also when nested.
"""

from __future__ import annotations

import gc
import math
from datetime import UTC, datetime, timedelta, timezone
from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import bindparam, insert, select, text

from portal.database import utcnow
from portal.extensions import db
from portal.models import (
    ActorTypeConfig,
    Company,
    Connection,
    Connector,
    CrmFieldType,
    FieldType,
    Link,
    LinkStatus,
    SyncChange,
    SyncRun,
)
from portal.services.sync import bulk, changelog, context
from portal.services.sync import plan as sync_plan
from portal.services.sync.merge import MODES, POLICIES, FieldRule, merge, merge_prepared, prepare
from portal.services.values import display
from tests.sync_support import mapped_field

# ------------------------------------------------------------------------------------------ the merge

KEYS = ("a", "b", "c", "d", "e")
# Plain values (the inline comparison) and everything that must still go through _same: bool/number mixes,
# NaN, floats equal to ints, containers, blank strings.
VALUES = st.one_of(
    st.none(), st.sampled_from(["", " ", "x", "y", "X"]), st.integers(-2, 2), st.booleans(),
    st.sampled_from([0.0, 1.0, 1.5, -0.0, math.nan, math.inf]), st.sampled_from([[], [1], {}, {"k": 1}, ()]),
)
SIDE = st.dictionaries(st.sampled_from(KEYS), VALUES)
RULES = st.lists(st.builds(FieldRule, st.sampled_from(KEYS + ("f",)), st.booleans(), st.booleans()), max_size=8)
TIMES = st.one_of(
    st.none(),
    st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2026, 1, 2)),
    st.datetimes(min_value=datetime(2026, 1, 1), max_value=datetime(2026, 1, 2),
                 timezones=st.sampled_from([UTC, timezone(timedelta(hours=2))])),
)


def _same_result(a, b) -> None:
    # repr: NaN != NaN, but the same NaN object must come out in the same place
    assert repr(a.to_crm) == repr(b.to_crm) and list(a.to_crm) == list(b.to_crm)
    assert repr(a.to_erp) == repr(b.to_erp) and list(a.to_erp) == list(b.to_erp)
    assert repr(a.new_base) == repr(b.new_base) and list(a.new_base) == list(b.new_base)
    assert repr(a.conflicts) == repr(b.conflicts)
    assert a.skipped_blank == b.skipped_blank


@settings(max_examples=1500, deadline=None)
@given(rules=RULES, base=SIDE, crm=SIDE, erp=SIDE, policy=st.sampled_from(POLICIES), mode=st.sampled_from(MODES),
       crm_rank=st.integers(0, 3), erp_rank=st.integers(0, 3), crm_at=TIMES, erp_at=TIMES, no_blank=st.booleans())
def test_merge_prepared_equals_merge(rules, base, crm, erp, policy, mode, crm_rank, erp_rank, crm_at, erp_at,
                                     no_blank):
    options = dict(policy=policy, crm_rank=crm_rank, erp_rank=erp_rank, crm_changed_at=crm_at,
                   erp_changed_at=erp_at, no_blank=no_blank, mode=mode, erp_name="Demo ERP")
    _same_result(merge_prepared(prepare(rules), base, crm, erp, **options), merge(rules, base, crm, erp, **options))


@settings(max_examples=300, deadline=None)
@given(base=SIDE, crm=SIDE, erp=SIDE)
def test_only_one_side_changed_is_the_common_case_and_equal(base, crm, erp):
    """The benchmark's shape: the base, one side equal to it, the other side changed in a few fields."""
    rules = [FieldRule(key, True, True) for key in KEYS]
    agreed = {key: base.get(key) for key in KEYS}
    for changed_crm in (True, False):
        crm_now = {**agreed, **crm} if changed_crm else dict(agreed)
        erp_now = dict(agreed) if changed_crm else {**agreed, **erp}
        _same_result(merge_prepared(prepare(rules), agreed, crm_now, erp_now, policy="priority"),
                     merge(rules, agreed, crm_now, erp_now, policy="priority"))


def test_merge_prepared_refuses_what_merge_refuses():
    with pytest.raises(ValueError, match="policy"):
        merge_prepared(prepare([]), {}, {}, {}, policy="nope")
    with pytest.raises(ValueError, match="mode"):
        merge_prepared(prepare([]), {}, {}, {}, policy="crm", mode="nope")


# ------------------------------------------------------------------------------------- the conversions


_FIELDS = [
    mapped_field("NAME", "Text", "name", CrmFieldType.TEXT),
    mapped_field("DEPT", "Label", "department", CrmFieldType.TEXT),
    mapped_field("COUNTRY", "List", "country_id", CrmFieldType.LIST, {"NO": 1, "SE": 2, "S2": 2, "X": None}),
    mapped_field("LIMIT", "Double", "number", CrmFieldType.TEXT),
]
_ANY = st.one_of(st.none(), st.text(max_size=6), st.sampled_from(["", "NO", "SE", "S2", "X", "7"]),
                 st.integers(-3, 9), st.floats(allow_nan=True), st.booleans(),
                 st.dates().map(lambda d: d), st.just([1]))


@settings(max_examples=500, deadline=None)
@given(value=_ANY, erp_type=st.sampled_from(list(FieldType) + ["Text", "List", "Unknown"]))
def test_erp_text_equals_display(value, erp_type):
    f = mapped_field("K", erp_type, "name", CrmFieldType.TEXT)
    assert changelog.erp_text(f, value) == display(erp_type, value)


@settings(max_examples=300, deadline=None)
@given(crm=st.fixed_dictionaries({"name": _ANY, "department": _ANY, "number": _ANY,
                                  "country_id": st.one_of(st.none(), st.integers(0, 3), st.text(max_size=2))}),
       current=st.one_of(st.none(), st.sampled_from(["NO", "SE", "S2", "X", "zz"])))
def test_crm_values_from_a_row_tuple_equal_attribute_access(crm, current):
    plan = sync_plan.TypePlan("Customer", "company", _FIELDS)
    values = {"id": 1, "updated_at": datetime(2026, 1, 1), **crm}
    row = SimpleNamespace(**values)
    raw = tuple(values[column.key] for column in plan.columns)
    erp_now = {"COUNTRY": current}
    assert sync_plan.crm_values(plan, row, erp_now, raw=raw) == sync_plan.crm_values(plan, row, erp_now)


# ------------------------------------------------------------------------------------- bulk statements


@pytest.fixture
def ctx(app):
    with app.app_context():
        yield


def _stored(table, ids=None) -> list[tuple]:
    """The rows as the database stores them (no type processing)."""
    sql = f"SELECT * FROM {table.name}" + (f" WHERE id IN ({', '.join(map(str, ids))})" if ids else "")
    return [tuple(row) for row in db.session.connection().exec_driver_sql(sql + " ORDER BY id").all()]


def _links(count: int) -> tuple[int, list[int]]:
    connector = Connector(name="C", url="http://127.0.0.1:9/erp")
    connection = Connection(connector=connector, name="ERP", guid="guid-fast", active=True)
    connection.actor_types.append(ActorTypeConfig(erp_actor_type="Customer", crm_type="company", is_active=True))
    db.session.add(connection)
    db.session.flush()
    ids = db.session.execute(insert(Company).returning(Company.id),
                             [{"name": f"Company {n}"} for n in range(count)]).scalars().all()
    links = db.session.execute(insert(Link).returning(Link.id), [
        {"connection_id": connection.id, "crm_type": "company", "crm_id": company_id, "erp_actor_type": "Customer",
         "erp_key": f"K{n}", "base": {}, "status": "ok", "status_message": "", "last_result": "", "failures": 0}
        for n, company_id in enumerate(ids)]).scalars().all()
    db.session.commit()
    return connection.id, list(links)


def _link_updates(ids: list[int], now: datetime) -> list[dict]:
    rows = []
    for n, link_id in enumerate(ids):
        row = {"id": link_id, "base": {"NAME": f"Ä {n}", "N": n, "F": 1.5, "B": True, "none": None, "l": [1, "x"]},
               "last_synced_at": now, "last_result": f"Synced: {n}", "status": "ok", "status_message": "",
               "crm_synced_at": now + timedelta(microseconds=n) if n % 3 else None,
               "erp_last_modified": f"2026-01-01T00:00:0{n % 10}Z", "updated_at": now}
        rows.append(row)
    return rows


def test_bulk_update_stores_what_core_stores(ctx):
    _cid, ids = _links(8)
    now = datetime(2026, 11, 25, 12, 0, 0)  # microsecond 0: stored with .000000, as SQLAlchemy formats it
    payloads = _link_updates(range(4), now)
    fast_ids, core_ids = ids[:4], ids[4:]
    bulk.update_many(Link.__table__, [{**row, "id": link_id} for row, link_id in zip(payloads, fast_ids,
                                                                                            strict=True)])
    table = Link.__table__
    stmt = table.update().where(table.c.id == bindparam("_id")).values(
        {key: bindparam(key) for key in payloads[0] if key != "id"})
    db.session.connection().execute(stmt, [{**{k: v for k, v in row.items() if k != "id"}, "_id": link_id}
                                           for row, link_id in zip(payloads, core_ids, strict=True)])
    db.session.commit()
    columns = [c.name for c in table.columns]
    updated = [columns.index(key) for key in payloads[0] if key != "id"]
    fast = [[row[i] for i in updated] for row in _stored(table, fast_ids)]
    core = [[row[i] for i in updated] for row in _stored(table, core_ids)]
    assert fast == core
    assert any(value is None for row in fast for value in row)  # None went through as NULL
    assert db.session.get(Link, fast_ids[0]).base == payloads[0]["base"]


def test_bulk_insert_stores_what_core_stores_with_defaults(ctx):
    connection_id, ids = _links(2)
    run = SyncRun(connection_id=connection_id, kind="sync")
    db.session.add(run)
    db.session.commit()
    now = utcnow()
    rows = [
        {"run_id": run.id, "connection_id": connection_id, "link_id": ids[0], "crm_type": "company", "crm_id": 1,
         "erp_actor_type": "Customer", "erp_key": "K0", "direction": "to_crm", "erp_field_key": "NAME",
         "crm_field_key": "name", "old_value": "a", "new_value": "b", "conflict": True, "other_value": "c",
         "rule": "CRM wins", "at": now},
        {"run_id": run.id, "connection_id": connection_id, "link_id": ids[1], "crm_type": "company", "crm_id": 2,
         "erp_actor_type": "Customer", "erp_key": "K1", "direction": "error", "erp_field_key": "",
         "crm_field_key": "", "conflict": False, "rule": "broken", "at": now},  # old/new/other from defaults
    ]
    bulk.insert_many(SyncChange.__table__, [dict(row) for row in rows], changelog.CHANGE_DEFAULTS)
    db.session.commit()
    fast = _stored(SyncChange.__table__)
    db.session.execute(text("DELETE FROM sync_change"))
    db.session.connection().execute(insert(SyncChange.__table__), [{**changelog.CHANGE_DEFAULTS, **row} for row in rows])
    db.session.commit()
    slow = _stored(SyncChange.__table__)
    assert [row[1:] for row in fast] == [row[1:] for row in slow]
    got = db.session.scalars(select(SyncChange).order_by(SyncChange.id)).all()
    assert [(c.conflict, c.old_value, c.at) for c in got] == [(True, "a", now), (False, None, now)]


def test_a_bulk_statement_never_skips_a_default_or_onupdate(ctx):
    conn = db.session.connection()
    with pytest.raises(ValueError, match="updated_at"):  # Link.updated_at has an onupdate: it must be given
        bulk.BulkStatement.get(conn.dialect, Link.__table__, "update", ("status",))
    with pytest.raises(ValueError):  # SyncChange.at has a default: an INSERT must give it
        bulk.BulkStatement.get(conn.dialect, SyncChange.__table__, "insert", ("run_id", "connection_id"))
    with pytest.raises(KeyError):  # a row without a value and no default for it
        bulk.BulkStatement.get(conn.dialect, Link.__table__, "update", ("status", "updated_at")).params(
            [{"id": 1, "status": "ok"}])


NASTY_TEXTS = ["NULL", "null", "", " ", "a,b", '{"}', "{a,b}", "back\\slash", 'quo"te', "tab\tnew\nline", "Å ø 中 🙂",
               "(1,2)", "x" * 3000]


def test_bulk_writes_of_nasty_values_store_what_row_by_row_writes_store(ctx):
    """Array and COPY syntax characters, the word NULL, empty and long texts, and a column that mixes Python types
    (ints among floats, a plain str among StrEnums) arrive exactly as one UPDATE per row stores them, and the
    change log's bulk INSERT (a COPY on PostgreSQL) keeps them too."""
    _cid, ids = _links(2 * len(NASTY_TEXTS))
    now = datetime(2026, 11, 25, 12, 0, 0)
    rows = [{"status_message": value, "last_result": value[::-1], "base": {"v": value, "n": n},
             "status": LinkStatus.OK if n % 2 else "ok", "failures": n, "updated_at": now}
            for n, value in enumerate(NASTY_TEXTS)]
    bulk_ids, single_ids = ids[:len(rows)], ids[len(rows):]
    assert bulk.update_many(Link.__table__, [{**row, "id": i} for row, i in zip(rows, bulk_ids, strict=True)]) \
        == len(rows)
    for row, link_id in zip(rows, single_ids, strict=True):
        bulk.update_many(Link.__table__, [{**row, "id": link_id}])  # one row: the per-row statement
    db.session.commit()
    columns = [c.name for c in Link.__table__.columns]
    keep = [columns.index(key) for key in ("status_message", "last_result", "base", "status", "failures")]
    assert [[row[i] for i in keep] for row in _stored(Link.__table__, bulk_ids)] == \
        [[row[i] for i in keep] for row in _stored(Link.__table__, single_ids)]
    assert [db.session.get(Link, i).status_message for i in bulk_ids] == NASTY_TEXTS
    # an ERP Double arrives as 5 or 5.5 (JSON has one number type): a float column gets ints and floats
    companies = [db.session.get(Link, i).crm_id for i in ids[:4]]
    limits = [5, 5.5, None, 10**12]
    bulk.update_many(Company.__table__, [{"id": company_id, "credit_limit": limit, "updated_at": now}
                                         for company_id, limit in zip(companies, limits, strict=True)])
    db.session.commit()
    db.session.expire_all()
    assert [db.session.get(Company, i).credit_limit for i in companies] == limits
    # the change log's bulk INSERT (PostgreSQL: a COPY, bulk.copy_rows) of the same texts
    run = SyncRun(connection_id=_cid, kind="sync")
    db.session.add(run)
    db.session.commit()
    changes = [{"run_id": run.id, "connection_id": _cid, "link_id": bulk_ids[n], "crm_type": "company",
                "crm_id": n, "erp_actor_type": "Customer", "erp_key": value[:200], "direction": "to_crm",
                "erp_field_key": "F", "crm_field_key": "name", "old_value": value, "new_value": None,
                "conflict": bool(n % 2), "rule": value, "at": now} for n, value in enumerate(NASTY_TEXTS)]
    bulk.insert_many(SyncChange.__table__, changes, changelog.CHANGE_DEFAULTS)
    db.session.commit()
    stored = db.session.scalars(select(SyncChange).where(SyncChange.run_id == run.id).order_by(SyncChange.id)).all()
    assert [(c.old_value, c.new_value, c.rule, c.conflict, c.at) for c in stored] == \
        [(value, None, value, bool(n % 2), now) for n, value in enumerate(NASTY_TEXTS)]


def test_a_guarded_bulk_update_skips_exactly_the_rows_whose_record_changed(ctx):
    """update_many with ``record``: only links whose company still has the ``seen`` updated_at are written, and
    the count says how many — the apply step's check that nothing changed meanwhile (apply._Contended)."""
    _cid, ids = _links(4)
    links = [db.session.get(Link, i) for i in ids]
    seen = {link.id: db.session.get(Company, link.crm_id).updated_at for link in links}
    db.session.execute(text("UPDATE company SET updated_at = :at WHERE id = :id"),
                       {"at": datetime(2030, 1, 1), "id": links[1].crm_id})
    db.session.commit()
    now = datetime(2026, 11, 25, 12, 0, 0)
    rows = [{"id": link.id, "last_result": "written", "updated_at": now, "seen": seen[link.id]} for link in links]
    assert bulk.update_many(Link.__table__, rows, Company.__table__) == 3
    db.session.commit()
    assert [db.session.get(Link, i).last_result for i in ids] == ["written", "", "written", "written"]


def test_a_bulk_update_naming_a_row_twice_applies_both_in_order(ctx):
    """Two updates of one row in a batch: the later one wins, as with one statement per row (one FROM row per
    target row is all an UPDATE … FROM can apply, so such a batch is not sent as arrays)."""
    _cid, ids = _links(2)
    now = datetime(2026, 11, 25, 12, 0, 0)
    rows = [{"id": ids[0], "last_result": "first", "updated_at": now},
            {"id": ids[1], "last_result": "other", "updated_at": now},
            {"id": ids[0], "last_result": "second", "updated_at": now}]
    bulk.update_many(Link.__table__, rows)
    db.session.commit()
    assert [db.session.get(Link, i).last_result for i in ids] == ["second", "other"]


# ------------------------------------------------------------------------------------------------ GC


def test_gc_paused_nests_and_restores_the_collector():
    assert gc.isenabled()
    with context.GcPaused():
        assert not gc.isenabled()
        with context.GcPaused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()
    gc.disable()
    try:
        with context.GcPaused():
            assert not gc.isenabled()
        assert not gc.isenabled()  # it was off before: it stays off
    finally:
        gc.enable()
    with pytest.raises(RuntimeError), context.GcPaused():
        raise RuntimeError("boom")
    assert gc.isenabled()


def test_gc_is_not_paused_during_connector_calls():
    seen = []
    with context.GcPaused():
        with context.GcPaused.resumed():
            seen.append(gc.isenabled())
        seen.append(gc.isenabled())
    with context.GcPaused.resumed():  # not paused: nothing to lift
        seen.append(gc.isenabled())
    assert seen == [True, False, True] and gc.isenabled()

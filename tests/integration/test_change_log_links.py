"""The change log outlives the links it was written through, and deleting a link never looks through the log
(``sync_change.link_id`` is not a foreign key: with ``ON DELETE SET NULL`` and no index, every deleted link
made the database scan the whole log)."""

from __future__ import annotations

import pytest
from sqlalchemy import delete, insert, inspect

from portal.database import utcnow
from portal.extensions import db
from portal.models import Link, SyncChange
from tests import sync_support as s


@pytest.fixture
def ctx(app):
    with app.app_context():
        yield app


def test_the_change_log_has_no_foreign_key_to_links(ctx):
    foreign_keys = inspect(db.engine).get_foreign_keys("sync_change")
    assert {fk["referred_table"] for fk in foreign_keys} == {"connection", "sync_run"}


def test_a_deleted_link_keeps_its_log_rows(ctx, fake):
    connection_id = s.make_connection(fake)
    company_id, _key, link_id = s.link_company(fake, connection_id, phone="+47 1")
    s.edit_company(company_id, phone="+47 2")
    outcome = s.run(connection_id)
    assert outcome.status == "succeeded"
    written = s.changes(outcome.run_id)
    assert [(c.direction, c.link_id, c.new_value) for c in written] == [("to_erp", link_id, "+47 2")]
    db.session.execute(delete(Link).where(Link.id == link_id))
    db.session.commit()
    db.session.expire_all()
    assert [(c.direction, c.link_id, c.new_value) for c in s.changes(outcome.run_id)] == [
        ("to_erp", link_id, "+47 2")]


def _work_to_delete_a_link(link_id: int) -> int:
    """How much work deleting one link takes: SQLite virtual-machine steps (in hundreds); on PostgreSQL, the
    foreign-key triggers that run for it on the change log (each one a search of the log)."""
    conn = db.session.connection()
    if conn.dialect.name != "sqlite":
        plan = conn.exec_driver_sql(f"EXPLAIN ANALYZE DELETE FROM link WHERE id = {int(link_id)}").scalars().all()
        db.session.commit()
        return sum("Trigger for constraint fk_sync_change" in line for line in plan)
    raw = conn.connection.dbapi_connection
    steps = [0]

    def count() -> int:
        steps[0] += 1
        return 0

    raw.set_progress_handler(count, 100)
    try:
        conn.execute(delete(Link).where(Link.id == link_id))
    finally:
        raw.set_progress_handler(None, 100)
    db.session.commit()
    return steps[0]


def test_deleting_a_link_does_not_grow_with_the_log(ctx, fake):
    connection_id = s.make_connection(fake)
    first = s.link_company(fake, connection_id, name="First AS")[2]
    second = s.link_company(fake, connection_id, name="Second AS")[2]
    small = _work_to_delete_a_link(first)
    now = utcnow()
    db.session.execute(insert(SyncChange), [
        {"connection_id": connection_id, "link_id": second, "crm_type": "company", "crm_id": n,
         "direction": "to_crm", "at": now} for n in range(20_000)])
    db.session.commit()
    large = _work_to_delete_a_link(second)
    # With the old foreign key, 20,000 log rows made this delete about a thousand times the work on SQLite.
    assert large <= small + 2, (small, large)
    if db.engine.dialect.name != "sqlite":
        assert large == 0

"""Import from ERP: writing one planned batch (issue #6; in bulk since issue #19).

:func:`apply` writes what ``Importer.plan`` decided (``portal.services.importer``), in the current transaction and
without committing: new list items and their mappings, the companies created from persons' company names, then

* new records: one INSERT executemany per CRM type, with ids taken beforehand (:func:`allocate_ids`) and every
  column given (:func:`record_defaults`: what the ORM would store), so their links and change-log rows refer to
  them without reading them back;
* changed records: one UPDATE executemany per set of columns, ``updated_at`` moved as the ORM's ``onupdate`` would;
* links: new ones inserted, the others (an actor linked before, a stale link re-pointed) updated, in bulk too;
* the change log: a row per field written and per value the CRM could not hold, as one executemany.

The records and links a batch reads and writes are plain rows (``import_rules.Row``), not ORM instances: building,
tracking and flushing them through the ORM cost the import more than the database's work for them (an unchanged
re-run updated its links at 13 times the floor). The rare writes — list items, mappings, companies from names —
still go through the ORM.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import func, insert, select

from portal.database import utcnow
from portal.extensions import db
from portal.models import CRM_MODELS, Company, CrmType, Link, LinkStatus, ListItem, ListItemMapping, SyncChange
from portal.services.import_convert import link_base
from portal.services.import_rules import NewCompany, Row
from portal.services.sync.bulk import BulkStatement, core_connection, insert_many, update_many
from portal.services.sync.changelog import CHANGE_DEFAULTS

RULE_NEW = "import: new record"
RULE_UPDATED = "import: updated"


@dataclass
class NewListItem:
    """A CRM list item the import will create (list policy "add"); ``id`` is set once it is flushed."""

    list_name: str
    name: str
    id: int | None = None


def _stored(value):
    """A planned value as stored: an item or company this import creates is stored as its id."""
    return value.id if isinstance(value, NewListItem | NewCompany) else value


def apply(imp, planned: Sequence) -> None:
    """Write one batch of ``imp`` (an ``Importer``) in the current transaction. No commit."""
    now = utcnow()
    _list_items(imp, planned)
    _create_companies(imp, planned)
    writing = [p for p in planned if p.writes]
    _update_records([p for p in writing if p.outcome != "new"], now)
    _insert_records([p for p in writing if p.outcome == "new"], now)
    db.session.flush()  # the ORM's rows (list item mappings): a unique index says no here, inside the batch
    _write_links(imp, writing, now)
    _log_changes(imp, planned, now)


def _list_items(imp, planned: Sequence) -> None:
    """The list items this batch adds (the records refer to them) and the ERP items' new mappings."""
    new_items = {}
    for p in planned:
        if p.writes:
            for _fid, _key, _text, target in p.new_mappings:
                if isinstance(target, NewListItem) and target.id is None:
                    new_items[(target.list_name, target.name.casefold())] = target
    if new_items:
        imp.items_added += len(new_items)
        rows = {k: ListItem(list_name=item.list_name, name=item.name, rank=999) for k, item in new_items.items()}
        db.session.add_all(rows.values())
        db.session.flush()
        for k, row in rows.items():
            new_items[k].id = row.id
    seen = set()
    for p in planned:
        if not p.writes:
            continue
        for fid, key, text, target in p.new_mappings:
            if (fid, key) in seen or not fid:
                continue
            seen.add((fid, key))
            db.session.add(ListItemMapping(erp_field_id=fid, erp_item_key=key, erp_item_text=text,
                                           crm_item_id=_stored(target)))


def _create_companies(imp, planned: Sequence) -> None:
    """The companies this batch creates from persons' company names (before the contacts that refer to them),
    each logged as a new record of the run (so the Done page and the sync log list it)."""
    created: dict[int, tuple[NewCompany, object]] = {}
    for p in planned:
        target = p.values.get("company_id")
        if p.writes and isinstance(target, NewCompany) and target.id is None:
            created.setdefault(id(target), (target, p))
    if not created:
        return
    rows = {k: Company(name=item.name) for k, (item, _p) in created.items()}
    db.session.add_all(rows.values())
    db.session.flush()
    log_rows = []
    for k, row in rows.items():
        item, p = created[k]
        item.id = row.id
        log_rows.append(dict(run_id=imp.run_id, connection_id=imp.connection_id, crm_type=CrmType.COMPANY,
                             erp_actor_type=p.actor_type, erp_key=p.key, at=utcnow(), link_id=None,
                             crm_id=row.id, direction="to_crm", erp_field_key=imp.settings.company_name_field,
                             crm_field_key="name", old_value=None, new_value=item.name, conflict=False,
                             other_value=None, rule=RULE_NEW))
    db.session.connection().execute(insert(SyncChange.__table__), log_rows)


def _update_records(planned: Sequence, now) -> None:
    """The changes of existing records, as one UPDATE executemany per CRM type and set of columns."""
    by_type: dict[str, list[dict]] = {}
    for p in planned:
        if not p.changes:
            continue
        row = {key: _stored(new) for key, _old, new in p.changes}
        row["updated_at"] = now  # the ORM's onupdate: the sync sees the record changed by this import
        p.record.__dict__.update(row)
        row["id"] = p.record.id
        by_type.setdefault(p.crm_type, []).append(row)
    for crm_type, rows in by_type.items():
        update_many(CRM_MODELS[crm_type].__table__, rows)


def _insert_records(planned: Sequence, now) -> None:
    """New records as one INSERT executemany per CRM type."""
    by_type: dict[str, list] = {}
    for p in planned:
        by_type.setdefault(p.crm_type, []).append(p)
    for crm_type, group in by_type.items():
        table = CRM_MODELS[crm_type].__table__
        defaults = record_defaults(table, now)
        rows = []
        for p, record_id in zip(group, allocate_ids(table, len(group)), strict=True):
            row = dict(defaults)
            for key, value in p.values.items():
                row[key] = _stored(value)
            row["id"] = record_id
            rows.append(row)
            p.record = Row(row, crm_type)
        bulk_insert(table, rows)


def _write_links(imp, writing: Sequence, now) -> None:
    """The link of every written actor (the bulk equivalent of links.create_link: plan() found both sides free),
    with its base; an existing link keeps a base that did not change out of the UPDATE."""
    new_links, updates = [], []
    for p in writing:
        mapped_now = {(fid, key): _stored(t) for fid, key, _x, t in p.new_mappings}
        old = dict(p.link.base or {}) if p.link is not None else None
        base = link_base(p.spec.base_plan, p.record, p.erp_values, old, mapped_now)
        actor, record = p.actor, p.record
        parent = actor.get("ParentErpKey") or p.parent_base
        if p.link is None and p.stale_link is None:
            new_links.append((p, dict(
                connection_id=imp.connection_id, crm_type=p.crm_type, crm_id=record.id, erp_actor_type=p.actor_type,
                erp_key=p.key, parent_erp_key=parent, erp_last_modified=actor.get("LastModified") or None, base=base,
                status=LinkStatus.OK, status_message="", last_synced_at=now, crm_synced_at=record.updated_at,
                last_result="Imported from the ERP", retry_at=None, failures=0, created_by_id=imp.user_id,
                created_at=now, updated_at=now,
                import_run_id=imp.run_id)))  # what undo of this run may remove (import_undo)
            continue
        if p.link is None:  # its old record is gone: re-pointed to the new one, and undo treats it as this run's
            p.link = p.stale_link
            values = dict(crm_type=p.crm_type, crm_id=record.id, base=base,
                          erp_last_modified=actor.get("LastModified") or None, last_result="Imported from the ERP",
                          import_run_id=imp.run_id)
        else:
            values = dict(erp_last_modified=actor.get("LastModified") or p.link.erp_last_modified,
                          last_result="Updated by an import from the ERP")
            if base != p.link.base:
                values["base"] = base
        values.update(parent_erp_key=parent, status=LinkStatus.OK, status_message="", last_synced_at=now,
                      crm_synced_at=record.updated_at, updated_at=now)
        p.link.__dict__.update(values)
        updates.append(dict(values, id=p.link.id))
    update_many(Link.__table__, updates)
    if new_links:
        table = Link.__table__
        for (p, row), link_id in zip(new_links, allocate_ids(table, len(new_links)), strict=True):
            row["id"] = link_id
            p.link = Row(row)
        bulk_insert(table, [row for _p, row in new_links])


def _log_changes(imp, planned: Sequence, now) -> None:
    rows = []
    text = imp.text
    for p in planned:
        common = dict(run_id=imp.run_id, connection_id=imp.connection_id, crm_type=p.crm_type,
                      erp_actor_type=p.actor_type, erp_key=p.key, at=now, conflict=False, other_value=None)
        if p.outcome == "error":
            for erp_key, message in p.errors or [("", p.reason)]:
                rows.append(dict(common, link_id=p.link.id if p.link else None,
                                 crm_id=getattr(p.record, "id", None) or 0, direction="error",
                                 erp_field_key=erp_key, crm_field_key="", old_value=None, new_value=None,
                                 rule=message[:2000]))
            continue
        if not p.writes:
            continue
        common.update(link_id=p.link.id, crm_id=p.record.id)
        for item in p.refused:  # what the CRM could not hold: the ERP value, and what the CRM kept
            rows.append(dict(common, direction="error", erp_field_key=item.erp_key, crm_field_key=item.crm_key,
                             old_value=item.crm_text, new_value=item.erp_text, rule=item.message[:2000]))
        by_crm = p.spec.erp_key_by_crm
        if p.sources:
            by_crm = dict(by_crm)
            for spare, source in p.sources.items():
                by_crm.setdefault(spare, by_crm.get(source, ""))
        common.update(direction="to_crm", rule=RULE_NEW if p.outcome == "new" else RULE_UPDATED)
        crm_type = p.crm_type
        for key, old, new in p.changes:
            rows.append(dict(common, erp_field_key=by_crm.get(key, "ParentErpKey" if key == "company_id" else ""),
                             crm_field_key=key, old_value=None if old is None else text(crm_type, key, old),
                             new_value=text(crm_type, key, new, p)))
    # One executemany of SQLAlchemy's compiled INSERT (portal.services.sync.bulk), no per-row bookkeeping.
    insert_many(SyncChange.__table__, rows, CHANGE_DEFAULTS)


def record_defaults(table, now) -> dict:
    """Every column of a CRM record table but ``id`` with what a new record holds when the import does not write
    it: the column's default (the ORM's ``default=``), ``now`` for the timestamps, else NULL."""
    defaults = {}
    for column in table.c:
        if column.primary_key:
            continue
        default = column.default
        if default is None:
            defaults[column.key] = None
        elif default.is_scalar:
            defaults[column.key] = default.arg
        elif column.key in ("created_at", "updated_at"):
            defaults[column.key] = now
        else:  # pragma: no cover - no other callable default on the record tables
            defaults[column.key] = default.arg(None)
    return defaults


def allocate_ids(table, count: int) -> list[int]:
    """``count`` new primary keys of ``table`` for rows inserted in bulk in the current transaction.

    PostgreSQL: taken from the column's sequence (safe next to any other writer). SQLite: the ids after the
    table's largest one. When the batch already wrote, it holds SQLite's only write lock and nobody can take
    them; when not, another writer may commit a row with one of them first, and the bulk insert then fails on
    the primary key — an ``IntegrityError``, on which ``import_run._write_batch`` plans the batch again (tested in
    tests/integration/test_import_speed.py)."""
    if count <= 0:
        return []
    conn = core_connection()
    if conn.dialect.name == "postgresql":
        rows = conn.exec_driver_sql(
            f"SELECT nextval(pg_get_serial_sequence('{table.name}', 'id')) FROM generate_series(1, {int(count)})")
        return sorted(row[0] for row in rows)
    start = conn.execute(select(func.coalesce(func.max(table.c.id), 0))).scalar_one()
    return list(range(start + 1, start + 1 + count))


def bulk_insert(table, rows: list[dict]) -> None:
    """INSERT of complete rows (``id`` and every other column) as one executemany (portal.services.sync.bulk)."""
    if rows:
        conn = core_connection()
        BulkStatement.get(conn.dialect, table, "insert", tuple(c.key for c in table.c)).execute(conn, rows)

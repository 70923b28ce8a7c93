"""Undo of an import run (issue #18 point 3): delete the CRM records an import created and the links it made,
where nobody has changed them since. Business rules only (no ``request``).

What the run did is read back from the database:

* the records it **created**: its ``SyncChange`` rows with rule ``import_write.RULE_NEW`` (a new record always has
  at least its name written, so at least one row); a company created from a person's company name is logged under
  that person's actor and has no link of its own;
* the **links** it made: ``Link.import_run_id``, which the importer sets when it creates a link or re-points a
  link left behind by a deleted record (``Importer.apply``).

Rules (the plan is computed on the preview and computed again, under a lock on the run row, on confirm):

* A created record is **removed** with its link unless it was changed since: its ``updated_at`` is after the
  run's ``finished_at``; a later run (sync, import, Sync now) wrote a value of it either way; it is linked on
  another connection, or its link on the run's connection is not the one the run made (disconnected, linked
  again); for a company: it has contacts this undo does not remove (added by hand, by another import, or imported
  with it but kept themselves).
* A link the run made to an **existing** record (matched by the duplicate rule) is removed; the record stays. It
  is kept when a later run wrote changes through it.
* Records the run **updated** are not rolled back (undo is not a restore); list items and list mappings it added
  stay; the change log of the run stays; nothing is deleted in the ERP.
* Undo is for a finished import run only, once (``SyncRun.counts["undo"]`` records it), never while a run is
  active on the connection, all-or-nothing in one transaction, audited (``import.undo``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import delete, func, select
from sqlalchemy.orm.attributes import flag_modified

from portal.database import utcnow
from portal.extensions import db
from portal.models import (
    CRM_MODELS,
    ActorType,
    Connection,
    Contact,
    CrmType,
    Link,
    RunKind,
    SyncChange,
    SyncRun,
    User,
)
from portal.services.import_write import RULE_NEW, RULE_UPDATED
from portal.services.sync import runs

WRITES = ("to_crm", "to_erp")  # change-log directions that are writes (not errors)
TYPE_LABELS = {CrmType.COMPANY: "company", CrmType.CONTACT: "contact", CrmType.PROJECT: "project"}
DELETE_ORDER = (CrmType.CONTACT, CrmType.PROJECT, CrmType.COMPANY)  # contacts before their companies
CHUNK = 500  # ids per IN (…) list


class UndoProblem(ValueError):
    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


# ------------------------------------------------------------------------------------------------ the plan


@dataclass
class UndoItem:
    crm_type: str
    id: int
    name: str
    erp_key: str = ""
    link_id: int | None = None
    reason: str = ""  # why it is kept (kept items only)
    only_link: bool = False  # a link to a record that was already in the CRM (the record stays)

    @property
    def type_label(self) -> str:
        return TYPE_LABELS.get(self.crm_type, self.crm_type)


@dataclass
class UndoPlan:
    run: SyncRun
    refusal: str = ""  # why undo cannot be done now ("" = it can)
    remove: list[UndoItem] = field(default_factory=list)  # created records to delete (with their links)
    unlink: list[UndoItem] = field(default_factory=list)  # links to existing records to delete
    kept: list[UndoItem] = field(default_factory=list)  # created records / links kept, with the reason
    gone: int = 0  # created records already deleted since
    updated: int = 0  # records the run updated: never rolled back

    @property
    def possible(self) -> bool:
        return not self.refusal and bool(self.remove or self.unlink)

    def remove_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for item in self.remove:
            counts[item.crm_type] = counts.get(item.crm_type, 0) + 1
        return counts

    def summary(self) -> dict:
        return {"records_removed": len(self.remove), "by_type": self.remove_counts(),
                "links_removed": self.links_removed,
                "existing_unlinked": len(self.unlink), "kept": len(self.kept), "already_gone": self.gone,
                "updated_not_restored": self.updated}

    @property
    def links_removed(self) -> int:
        return sum(1 for item in self.remove if item.link_id) + len(self.unlink)

    def fingerprint(self) -> list[str]:
        """What undo would remove, for comparing the preview with the confirm."""
        return sorted([f"r:{i.crm_type}:{i.id}" for i in self.remove] + [f"l:{i.link_id}" for i in self.unlink])


def undo_info(run: SyncRun) -> dict | None:
    """The recorded undo of the run (when, by whom, what), or None."""
    info = (run.counts or {}).get("undo")
    return info if isinstance(info, dict) else None


def refusal(run: SyncRun) -> str:
    """Why the run cannot be undone (the cheap checks, for the run page), or ""."""
    if run.kind != RunKind.IMPORT:
        return "Only an import run can be undone."
    if run.is_active or run.finished_at is None:
        return "The import is still running; undo is possible once it has finished."
    info = undo_info(run)
    if info is not None:
        return f"This import was already undone on {info.get('at', '')[:16].replace('T', ' ')} UTC" + (
            f" by {info['by']}." if info.get("by") else ".")
    return ""


def _chunks(values: list) -> list[list]:
    return [values[i:i + CHUNK] for i in range(0, len(values), CHUNK)]


def _when(at: datetime | None) -> str:
    return at.strftime("%Y-%m-%d %H:%M UTC") if at else ""


def plan(run: SyncRun) -> UndoPlan:
    """What undo of ``run`` would remove and keep, from the database as it is now (reads only)."""
    result = UndoPlan(run=run, refusal=refusal(run))
    if run.kind != RunKind.IMPORT:
        return result
    result.updated = db.session.scalar(
        select(func.count()).select_from(
            select(SyncChange.crm_type, SyncChange.crm_id)
            .where(SyncChange.run_id == run.id, SyncChange.direction == "to_crm", SyncChange.rule == RULE_UPDATED)
            .distinct().subquery())) or 0
    if run.is_active or run.finished_at is None or undo_info(run) is not None:
        return result
    active = runs.active_run(run.connection_id)
    if active is not None:
        result.refusal = runs.describe_busy(active)
    finished = run.finished_at
    connection_names = dict(db.session.execute(select(Connection.id, Connection.name)).all())

    # The records the run created, with the ERP actor each came from.
    created: dict[tuple[str, int], str] = {}
    # companies created from a person's company name (import option): logged under the person's actor, never linked
    from_names: set[tuple[str, int]] = set()
    for crm_type, crm_id, erp_key, actor_type in db.session.execute(
            select(SyncChange.crm_type, SyncChange.crm_id, SyncChange.erp_key, SyncChange.erp_actor_type)
            .where(SyncChange.run_id == run.id, SyncChange.direction == "to_crm", SyncChange.rule == RULE_NEW)
            .distinct()):
        created.setdefault((crm_type, crm_id), erp_key)
        if crm_type == CrmType.COMPANY and actor_type == ActorType.PERSON:
            from_names.add((crm_type, crm_id))
    records: dict[tuple[str, int], object] = {}
    for crm_type in CRM_MODELS:
        ids = sorted(i for t, i in created if t == crm_type)
        model = CRM_MODELS[crm_type]
        for chunk in _chunks(ids):
            for record in db.session.scalars(select(model).where(model.id.in_(chunk))):
                records[(crm_type, record.id)] = record
    result.gone = len(created) - len(records)

    # Their links (on every connection), and the links the run made to records it did not create.
    links_of: dict[tuple[str, int], list[Link]] = {}
    for crm_type in CRM_MODELS:
        ids = sorted(i for t, i in records if t == crm_type)
        for chunk in _chunks(ids):
            for link in db.session.scalars(select(Link).where(Link.crm_type == crm_type, Link.crm_id.in_(chunk))):
                links_of.setdefault((crm_type, link.crm_id), []).append(link)
    run_links = [link for link in db.session.scalars(select(Link).where(Link.import_run_id == run.id)
                                                     .order_by(Link.id))
                 if (link.crm_type, link.crm_id) not in created]

    # Later writes (any other run) to those records, or through those links.
    later: dict[tuple[str, int], tuple[int | None, datetime]] = {}
    for crm_type in CRM_MODELS:
        ids = sorted(i for t, i in records if t == crm_type)
        for chunk in _chunks(ids):
            for crm_id, run_id, at in db.session.execute(
                    select(SyncChange.crm_id, SyncChange.run_id, func.max(SyncChange.at))
                    .where(SyncChange.crm_type == crm_type, SyncChange.crm_id.in_(chunk),
                           SyncChange.direction.in_(WRITES), SyncChange.at >= (run.started_at or run.created_at),
                           (SyncChange.run_id != run.id) | SyncChange.run_id.is_(None))
                    .group_by(SyncChange.crm_id, SyncChange.run_id)):
                later[(crm_type, crm_id)] = (run_id, at)
    later_by_link: dict[int, tuple[int | None, datetime]] = {}
    for chunk in _chunks([link.id for link in run_links]):
        for link_id, run_id, at in db.session.execute(
                select(SyncChange.link_id, SyncChange.run_id, func.max(SyncChange.at))
                .where(SyncChange.link_id.in_(chunk), SyncChange.direction.in_(WRITES),
                       (SyncChange.run_id != run.id) | SyncChange.run_id.is_(None))
                .group_by(SyncChange.link_id, SyncChange.run_id)):
            later_by_link[link_id] = (run_id, at)

    # The first pass: each created record on its own.
    kept: dict[tuple[str, int], str] = {}
    own_link: dict[tuple[str, int], Link | None] = {}
    for key, record in records.items():
        crm_type, crm_id = key
        mine = None
        reason = ""
        for link in links_of.get(key, []):
            if link.connection_id != run.connection_id:
                reason = (f"linked to an ERP actor on {connection_names.get(link.connection_id, 'another')} "
                          "connection since the import")
            elif link.import_run_id == run.id or (link.import_run_id is None and link.created_at <= finished):
                mine = link
            else:
                reason = "linked again since the import"
        own_link[key] = mine
        if record.updated_at is not None and record.updated_at > finished:
            reason = f"changed in the CRM on {_when(record.updated_at)}, after the import"
        elif key in later:
            other_run, at = later[key]
            reason = (f"written by run #{other_run} on {_when(at)}, after the import" if other_run
                      else f"written by a sync on {_when(at)}, after the import")
        elif not reason and mine is None and key not in from_names:
            reason = "disconnected from the ERP since the import"
        if reason:
            kept[key] = reason

    # Companies: keep those with contacts that stay (added by others, or imported with it but kept).
    company_ids = sorted(i for t, i in records if t == CrmType.COMPANY)
    contacts_of: dict[int, list[int]] = {}
    for chunk in _chunks(company_ids):
        for contact_id, company_id in db.session.execute(
                select(Contact.id, Contact.company_id).where(Contact.company_id.in_(chunk))):
            contacts_of.setdefault(company_id, []).append(contact_id)
    for company_id in company_ids:
        key = (CrmType.COMPANY, company_id)
        if key in kept:
            continue
        others = [c for c in contacts_of.get(company_id, []) if (CrmType.CONTACT, c) not in records]
        staying = [c for c in contacts_of.get(company_id, []) if (CrmType.CONTACT, c) in kept]
        if others:
            kept[key] = f"has {len(others)} contact(s) not added by this import"
        elif staying:
            kept[key] = f"has {len(staying)} contact(s) from this import that are kept"

    for key in sorted(records, key=lambda k: (DELETE_ORDER.index(k[0]) if k[0] in DELETE_ORDER else 9, k[1])):
        record = records[key]
        link = own_link.get(key)
        item = UndoItem(key[0], key[1], getattr(record, "display_name", "") or f"#{key[1]}",
                        erp_key=created[key], link_id=link.id if link is not None else None)
        if key in kept:
            item.reason = kept[key]
            result.kept.append(item)
        else:
            result.remove.append(item)

    # Links to records that existed before the run.
    existing: dict[tuple[str, int], str] = {}
    for crm_type in CRM_MODELS:
        model = CRM_MODELS[crm_type]
        ids = sorted({link.crm_id for link in run_links if link.crm_type == crm_type})
        for chunk in _chunks(ids):
            for record in db.session.scalars(select(model).where(model.id.in_(chunk))):
                existing[(crm_type, record.id)] = record.display_name
    for link in run_links:
        name = existing.get((link.crm_type, link.crm_id), f"#{link.crm_id}")
        item = UndoItem(link.crm_type, link.crm_id, name, erp_key=link.erp_key, link_id=link.id, only_link=True)
        if link.id in later_by_link:
            other_run, at = later_by_link[link.id]
            item.reason = (f"link kept: run #{other_run} synced changes through it on {_when(at)}" if other_run
                           else f"link kept: a sync wrote changes through it on {_when(at)}")
            result.kept.append(item)
        else:
            result.unlink.append(item)
    if not result.refusal and not (result.remove or result.unlink):
        result.refusal = "Nothing this import created or linked can be removed any more."
    return result


# ------------------------------------------------------------------------------------------------- undo


def undo(run_id: int, *, expected: list[str] | None = None, actor: User | None = None, request_id: str = "",
         ip: str = "") -> UndoPlan:
    """Undo the import run in one transaction: the plan is made again under a lock on the run row, and only
    what it says is removable is deleted (what changed since the preview is kept). Raises UndoProblem."""
    from portal.services import audit

    run = db.session.scalar(select(SyncRun).where(SyncRun.id == run_id).with_for_update()
                            .execution_options(populate_existing=True))
    if run is None or run.kind != RunKind.IMPORT:
        raise UndoProblem("There is no such import run.")
    result = plan(run)
    if result.refusal:
        db.session.rollback()
        raise UndoProblem(result.refusal)
    kept_since_preview = 0
    if expected is not None:
        kept_since_preview = _only_previewed(result, set(expected))
        if not (result.remove or result.unlink):
            db.session.rollback()
            raise UndoProblem("Everything the preview listed changed since; nothing was removed.")
    link_ids = [i.link_id for i in result.remove if i.link_id] + [i.link_id for i in result.unlink]
    for chunk in _chunks(link_ids):
        db.session.execute(delete(Link).where(Link.id.in_(chunk)), execution_options={"synchronize_session": False})
    for crm_type in DELETE_ORDER:
        model = CRM_MODELS[crm_type]
        ids = [i.id for i in result.remove if i.crm_type == crm_type]
        for chunk in _chunks(ids):
            # Links the checks did not see cannot exist (a record with another link is kept), but a record row
            # must never outlive its delete with a link pointing at it.
            db.session.execute(delete(Link).where(Link.crm_type == crm_type, Link.crm_id.in_(chunk)),
                               execution_options={"synchronize_session": False})
            db.session.execute(delete(model).where(model.id.in_(chunk)),
                               execution_options={"synchronize_session": False})
    summary = result.summary()
    if expected is not None:
        summary["kept_since_preview"] = kept_since_preview
    counts = dict(run.counts or {})
    counts["undo"] = {"at": utcnow().isoformat(timespec="seconds"),
                      "by": getattr(actor, "email", "") or "", "by_id": getattr(actor, "id", None), **summary}
    run.counts = counts
    flag_modified(run, "counts")
    audit.record("import.undo", run, object_type="import_run",
                 object_repr=f"Import #{run.id}",
                 after={"run": run.id, **summary,
                        "removed": [f"{i.crm_type} #{i.id} {i.name}" for i in result.remove][:200],
                        "unlinked": [f"{i.crm_type} #{i.id} {i.name}" for i in result.unlink][:200]},
                 actor=actor, request_id=request_id, ip=ip)
    db.session.commit()
    return result


def _only_previewed(result: UndoPlan, expected: set[str]) -> int:
    """Limit the plan to what the confirmed preview listed: what it listed that is no longer removable is kept
    (the plan says why), and what it did not list is kept too. A company whose contact stays is kept. Returns
    how many previewed items are kept now."""
    now = set(result.fingerprint())
    for attr, prefix in (("remove", "r"), ("unlink", "l")):
        keep, drop = [], []
        for item in getattr(result, attr):
            key = f"r:{item.crm_type}:{item.id}" if prefix == "r" else f"l:{item.link_id}"
            (keep if key in expected else drop).append(item)
        for item in drop:
            item.reason = "not listed in the preview that was confirmed"
        setattr(result, attr, keep)
        result.kept.extend(drop)
    removed_contacts = {i.id for i in result.remove if i.crm_type == CrmType.CONTACT}
    companies = [i for i in result.remove if i.crm_type == CrmType.COMPANY]
    staying = set()
    for chunk in _chunks([i.id for i in companies]):
        for contact_id, company_id in db.session.execute(
                select(Contact.id, Contact.company_id).where(Contact.company_id.in_(chunk))):
            if contact_id not in removed_contacts:
                staying.add(company_id)
    for item in companies:
        if item.id in staying:
            item.reason = "has contacts that are kept"
            result.remove.remove(item)
            result.kept.append(item)
    return len(expected - now)


def page(items: list[UndoItem], number: int, per_page: int) -> tuple[list[UndoItem], int, int]:
    """(items of page ``number``, that page number, the number of pages)."""
    pages = max(1, (len(items) + per_page - 1) // per_page)
    number = min(max(1, number), pages)
    return items[(number - 1) * per_page:number * per_page], number, pages


__all__ = ["UndoItem", "UndoPlan", "UndoProblem", "page", "plan", "refusal", "undo",
           "undo_info"]

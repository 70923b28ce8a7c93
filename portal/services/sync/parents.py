"""A person's parent: the contact's company in the CRM, ``ParentActorType``/``ParentErpKey`` in the ERP.

A contact moved to another company (in either system) is merged like a field, three ways: the link's
``parent_erp_key`` is the base (the parent both sides agreed on), the CRM side is the ERP key of the contact
company's link on this connection, the ERP side is the actor's ``ParentErpKey``. It syncs in the directions the
person's fields sync (ERP → CRM when any field does, CRM → ERP likewise); a conflict is settled by the
connection's conflict policy and logged like any field.

What cannot be expressed on the other side is never written as a blank: a contact moved in the CRM to a company
that is not linked to this connection, or a person moved in the ERP to a parent that is not linked to a CRM
company, leaves both sides as they are and is reported as an error of the record (retried later). A person
without a parent, or a contact without a company, is taken as unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import or_, select

from portal.extensions import db
from portal.models import Company, CrmType, Link
from portal.services.sync.context import IN_CHUNK, RunContext, chunks
from portal.services.sync.merge import Conflict, merge
from portal.services.sync.plan import PARENT_KEY, BatchItem, TypePlan


@dataclass
class ParentMove:
    """The parent of one record as merged: what to write where, and the new agreed parent."""

    crm_before: int | None  # the contact's company id as read
    erp_before: str | None  # the actor's ParentErpKey as read
    base: str | None  # the agreed parent before
    new_base: str | None
    to_crm: int | None = None  # company id to move the contact to
    to_erp: tuple[str, str] | None = None  # (ParentActorType, ParentErpKey) to move the person to
    conflict: Conflict | None = None
    sent: bool = False


@dataclass
class ParentLookup:
    """The company links of one batch on this connection: company id <-> (actor type, ERP key), with names."""

    by_company: dict[int, tuple[str, str]]
    by_key: dict[str, tuple[int, str]]  # ERP key -> (company id, actor type)
    names: dict[int, str]

    def company_text(self, company_id: int | None) -> str:
        if company_id is None:
            return ""
        return self.names.get(company_id, f"company #{company_id}")

    def erp_text(self, key: str | None, actor_type: str = "") -> str:
        if not key:
            return ""
        found = self.by_key.get(key)
        kind = actor_type or (found[1] if found else "")
        name = self.names.get(found[0]) if found else None
        return f"{kind} {key}".strip() + (f" ({name})" if name else "")


def lookup(ctx: RunContext, items: list[BatchItem]) -> ParentLookup:
    """One query per chunk: the company links of the batch's contacts, of their persons' parents and bases."""
    company_ids = {it.row.company_id for it in items if it.row is not None and it.row.company_id is not None}
    keys = {key for it in items for key in ((it.actor or {}).get("ParentErpKey"), it.parent_erp_key)
            if isinstance(key, str) and key}
    by_company: dict[int, tuple[str, str]] = {}
    by_key: dict[str, tuple[int, str]] = {}
    names: dict[int, str] = {}
    stmt = (select(Link.crm_id, Link.erp_actor_type, Link.erp_key, Company.name)
            .join(Company, Company.id == Link.crm_id)
            .where(Link.connection_id == ctx.connection_id, Link.crm_type == CrmType.COMPANY))
    for id_chunk in chunks(sorted(company_ids), IN_CHUNK) if company_ids else [[]]:
        for key_chunk in chunks(sorted(keys), IN_CHUNK) if keys else [[]]:
            if not id_chunk and not key_chunk:
                continue
            for crm_id, actor_type, key, name in db.session.execute(
                    stmt.where(or_(Link.crm_id.in_(list(id_chunk)), Link.erp_key.in_(list(key_chunk))))):
                by_company[crm_id] = (actor_type, key)
                by_key.setdefault(key, (crm_id, actor_type))
                names[crm_id] = name
    missing = company_ids - set(names)
    if missing:
        names.update(db.session.execute(select(Company.id, Company.name).where(Company.id.in_(sorted(missing)))).all())
    db.session.commit()
    return ParentLookup(by_company, by_key, names)


def plan_parent(ctx: RunContext, plan: TypePlan, it: BatchItem, mode: str, parents: ParentLookup) -> None:
    """Merge the record's parent (``it.parent``); problems are added to ``it.errors``."""
    base = it.parent_erp_key or None
    erp_now = (it.actor.get("ParentErpKey") or None) if it.actor else None
    company_id = it.row.company_id
    crm_link = parents.by_company.get(company_id) if company_id is not None else None
    crm_now = crm_link[1] if crm_link else None
    move = ParentMove(crm_before=company_id, erp_before=erp_now, base=base, new_base=base)
    it.parent = move
    if crm_now is None:
        base_company = parents.by_key[base][0] if base in parents.by_key else None
        if company_id is not None and company_id != base_company and plan.parent.to_erp:
            it.errors.append((PARENT_KEY, f"Company in the CRM: {parents.company_text(company_id)} is not linked to "
                                          f"{ctx.name}, so the contact's parent there is left as it is"))
        crm_now = base  # nothing the ERP could take: as if unchanged
    if erp_now is None:
        erp_now = base  # a person without a parent does not take the contact away from its company
    if crm_now is None and erp_now is None:
        return
    result = merge([plan.parent], {PARENT_KEY: base} if base else {}, {PARENT_KEY: crm_now}, {PARENT_KEY: erp_now},
                   policy=ctx.policy, crm_rank=ctx.crm_rank, erp_rank=ctx.erp_rank,
                   crm_changed_at=it.crm_updated_at, no_blank=True, mode=mode, erp_name=ctx.name)
    move.new_base = result.new_base.get(PARENT_KEY, base)
    move.conflict = result.conflicts[0] if result.conflicts else None
    if PARENT_KEY in result.to_crm:
        key = result.to_crm[PARENT_KEY]
        target = parents.by_key.get(key)
        if target is None:
            it.errors.append((PARENT_KEY, f"Parent in {ctx.name}: {parents.erp_text(key, it.actor.get('ParentActorType'))}"
                                          " is not linked to a CRM company, so the contact stays under "
                                          f"{parents.company_text(company_id) or 'no company'}"))
            move.new_base, move.conflict = base, None
        elif target[0] != company_id:
            move.to_crm = target[0]
            it.crm_write["company_id"] = target[0]
    if PARENT_KEY in result.to_erp:
        key = result.to_erp[PARENT_KEY]
        move.to_erp = (parents.by_key[key][1] if key in parents.by_key else "", key)


def check_answer(ctx: RunContext, it: BatchItem, answer: dict | None) -> None:
    """The ERP's answer to a parent move: a connector that kept the old parent has not moved the person."""
    move = it.parent
    if move is None or move.to_erp is None or answer is None:
        return
    move.sent = True
    kept = answer.get("ParentErpKey") if "ParentErpKey" in answer else move.to_erp[1]
    if (kept or None) != move.to_erp[1]:
        move.new_base, move.sent = move.base, False
        it.errors.append((PARENT_KEY, f"{ctx.name} kept the person under {kept or 'no parent'}; the move to "
                                      f"{move.to_erp[0]} {move.to_erp[1]} was not taken"))

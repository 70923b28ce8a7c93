"""Import from ERP: what a batch of actors meets in the CRM (issue #6, issue #18 point 3).

* a person's **company**: its parent's link, in a preview also a company imported in the same run, or — for a
  person without a parent — the company of its company name, found or created once per name
  (:func:`parent_companies`, :func:`resolve_parent`, :func:`companies_from_names`);
* an existing, unlinked **record** by the duplicate rule (:func:`find_duplicates`).

``Importer.plan`` (``portal.services.importer``) calls these for each batch, ``imp`` being the importer: a handful
of batched queries, never one per actor. The rules themselves are ``import_rules``'.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from sqlalchemy import select

from portal.extensions import db
from portal.models import Company, CrmType, Link, crm_field
from portal.services import import_rules as rules
from portal.services.import_plan import Planned, TypeSpec
from portal.services.import_rules import MATCH_ATTRS


def parent_companies(imp, planned: Sequence[Planned]) -> dict[tuple[str, str], tuple[int, str]]:
    wanted = {(p.actor.get("ParentActorType") or "", p.actor.get("ParentErpKey") or "") for p in planned}
    keys = sorted({key for _t, key in wanted if key})
    if not keys:
        return {}
    rows = db.session.connection().execute(  # Core: plain tuples, no ORM result machinery
        select(Link.erp_actor_type, Link.erp_key, Link.crm_id, Company.name)
        .join(Company, Company.id == Link.crm_id)
        .where(Link.connection_id == imp.connection_id, Link.crm_type == CrmType.COMPANY,
               Link.erp_key.in_(keys))).all()
    return {(t, k): (crm_id, name) for t, k, crm_id, name in rows}


def resolve_parent(imp, p: Planned, parents: Mapping, pending_parents: Mapping | None) -> None:
    """A person's CRM company: its parent's link; in a preview also a company imported in the same run.
    Only a found company is written (company_id); otherwise the person policy decides."""
    parent_type = p.actor.get("ParentActorType") or ""
    parent_key = p.actor.get("ParentErpKey") or ""
    policy = imp.settings.person_policy
    if not parent_key:
        if imp.settings.company_from_name:
            p.company_name = rules.company_name_of(p.actor, imp.settings.company_name_field)
            if p.company_name:
                return  # companies_from_names finds or creates it
        if policy == "skip":
            p.outcome, p.reason = "skip", "it has no company in the ERP"
        return
    found = _by_parent(parents, parent_type, parent_key)
    if found is not None:
        p.company = found
        p.values["company_id"] = found[0]
        return
    pending = _by_parent(pending_parents or {}, parent_type, parent_key)
    if pending is not None:  # preview: the company is imported in the same run
        p.company = pending
        if pending[0] is not None:
            p.values["company_id"] = pending[0]
        else:
            p.notes.append(f"under the new company {pending[1]}")
        return
    where = f"{parent_type} {parent_key}".strip()
    if policy == "no_company":
        p.notes.append(f"its company ({where}) is not in the CRM: imported without a company")
        return
    if policy == "import_company" and imp.dry_run and parent_type in imp.specs:
        p.company = (None, where)
        p.notes.append(f"its company ({where}) is imported too")
        return
    p.outcome = "skip"
    p.reason = (f"its company ({where}) is not in the CRM" if policy == "skip"
                else f"its company ({where}) could not be imported")


def companies_from_names(imp, planned: Sequence[Planned]) -> None:
    """Persons without a parent: the CRM company of their company name, found (by the company duplicate
    rule's name, unless it is "none" or the action "add anyway") or created once per name, with one query for
    the batch. A contact that already has a company keeps it."""
    wanted = [p for p in planned if p.company_name and not p.errors and p.outcome not in ("skip", "error")
              and (p.record is None or p.record.company_id is None)]
    if not wanted:
        return
    match = imp.settings.company_match != "none" and imp.settings.company_action != "add"
    resolved = rules.resolve_companies_by_name([p.company_name for p in wanted], match=match,
                                               known=imp.name_companies, pending={})
    found_ids = sorted({cid for cid, _n, _o in resolved.values() if cid is not None})
    company_links = dict(db.session.execute(select(Link.crm_id, Link.erp_key).where(
        Link.connection_id == imp.connection_id, Link.crm_type == CrmType.COMPANY,
        Link.crm_id.in_(found_ids))).all()) if found_ids else {}
    for p in wanted:
        found = resolved.get(rules.norm_text(p.company_name))
        if found is None:
            p.notes.append(f"its company name {p.company_name!r} cannot be stored: imported without a company")
            continue
        company_id, name, new = found
        p.company = (company_id, name)
        if new is None:
            p.values["company_id"] = company_id
            p.parent_base = company_links.get(company_id)
            p.notes.append(f"under the existing company {name} (found by its company name)")
        else:
            p.values["company_id"] = new
            p.notes.append(f"creates the company {name} from its company name")


def find_duplicates(imp, spec: TypeSpec, candidates: list[Planned]) -> None:
    """Find an existing, unlinked CRM record for each actor by the duplicate rule (one query per batch)."""
    crm_type = spec.crm_type
    rule = imp.settings.match(crm_type)
    action = imp.settings.action(crm_type)
    if rule == "none" or action == "add" or not candidates:
        return
    id_label = ""
    if rule == "id":
        if imp.settings.id_source(crm_type) != "field":
            return  # the ERP key: only the actor's link identifies its record (Importer.plan found it)
        erp_key = imp.settings.id_field(crm_type)
        crm_key = rules.id_crm_key(spec, erp_key)
        if crm_key is None:
            return  # not mapped to a CRM number on this actor type: nothing to compare
        attrs: tuple[str, ...] = (crm_key,)
        probes = rules.id_probes(candidates, erp_key)
        crm_spec = crm_field(crm_type, crm_key)
        id_label = f"{spec.erp_fields.get(erp_key, (0, erp_key))[1]} = {crm_spec.label if crm_spec else crm_key}"
    else:
        attrs = MATCH_ATTRS[crm_type][rule]
        probes = rules.value_probes(candidates, attrs)
    index = rules.find_matches(spec.model, crm_type, attrs, probes, imp.connection_id)
    for p in candidates:
        probe = probes.get(id(p))
        if probe is None:
            continue
        found = index.get(probe.values, [])
        if rule == "id":
            pass  # an identity is not looked for under the person's company only
        elif crm_type == CrmType.CONTACT and p.company is not None and p.company[0] is not None:
            found = [r for r in found if r.company_id == p.company[0]]
        elif crm_type == CrmType.CONTACT and p.company is not None:
            found = []  # under a company that is new in this import: nothing can match
        found = [r for r in found if (crm_type, r.id) not in imp.claimed]
        if found:
            p.record, p.matched = found[0], True
            if id_label:
                p.notes.append(f"found by ID: {id_label} ({probe.raw})")
            if len(found) > 1:
                p.notes.append(f"{len(found)} records match; the oldest is used")
            if action != "skip":
                imp.claimed.add((crm_type, found[0].id))


def _by_parent(parents: Mapping, parent_type: str, parent_key: str):
    found = parents.get((parent_type, parent_key))
    if found is None and not parent_type:
        found = next((v for (_t, k), v in parents.items() if k == parent_key), None)
    return found

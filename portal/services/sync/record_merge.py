"""The three-way merge of one record of a batch, with its values checked before anything is written."""

from __future__ import annotations

from sqlalchemy import select

from portal.extensions import db
from portal.models import SyncChange
from portal.services.crm_rules import check_crm_values, load_list_items
from portal.services.sync import parents
from portal.services.sync.changelog import crm_text
from portal.services.sync.context import RunContext, changed_at
from portal.services.sync.merge import FieldRule, MergeResult, merge, merge_prepared, prepare
from portal.services.sync.plan import BatchItem, TypePlan, check_erp_values, crm_values, erp_values, to_crm_values
from portal.services.values import is_blank


def merge_mode(mode: str) -> str:
    return mode if mode in ("from_crm", "from_erp") else "sync"


def plan_item(ctx: RunContext, plan: TypePlan, it: BatchItem, mode: str) -> None:
    erp_vals, erp_errors = erp_values(plan, it.actor.get("FieldValues") or {})
    crm_vals, crm_errors = crm_values(plan, it.row, erp_vals, raw=it.row)
    it.erp_vals, it.crm_vals = erp_vals, crm_vals
    it.errors = []
    for key, message in erp_errors.items():
        it.errors.append((key, f"{plan.by_key[key].erp_label} in {ctx.name}: {message}"))
    for key, message in crm_errors.items():
        it.errors.append((key, f"{plan.by_key[key].crm_label} in the CRM: {message}"))
    if erp_errors or crm_errors:
        it.bad = set(erp_errors) | set(crm_errors)
        rules = [r for r in plan.rules if r.key not in it.bad]
        prepared = prepare(rules)
    else:
        it.bad = set()
        rules, prepared = plan.rules, plan.prepared
    # The change times only decide conflicts under the 'newest' policy: LastModified is parsed only then.
    result = merge_prepared(prepared, it.base, crm_vals, erp_vals, policy=ctx.policy, crm_rank=ctx.crm_rank,
                            erp_rank=ctx.erp_rank, crm_changed_at=it.crm_updated_at,
                            erp_changed_at=(changed_at(it.actor.get("LastModified")) if ctx.policy == "newest"
                                            else None),
                            no_blank=ctx.no_blank, mode=merge_mode(mode), erp_name=ctx.name)
    if result.conflicts and ctx.policy == "priority" and merge_mode(mode) == "sync":
        result = _hub_priority(ctx, plan, it, rules, result)
    it.result = result
    it.crm_write = {}
    _validate(ctx, plan, it, result.to_crm, result.to_erp)
    if plan.parent is not None:
        parents.plan_parent(ctx, plan, it, merge_mode(mode), ctx.parents)


def _drop(it: BatchItem, result: MergeResult, key: str) -> None:
    it.bad.add(key)
    result.to_crm.pop(key, None)
    result.to_erp.pop(key, None)
    if key in it.base:
        result.new_base[key] = it.base[key]
    else:
        result.new_base.pop(key, None)
    result.conflicts = [c for c in result.conflicts if c.key != key]


def _validate(ctx: RunContext, plan: TypePlan, it: BatchItem, to_crm: dict, to_erp: dict) -> None:
    """Convert the CRM writes and check the ERP writes; a value that cannot be written is dropped (the field keeps
    its base) and reported as an error of the record."""
    result = it.result
    crm_write, crm_errors = to_crm_values(plan, to_crm)
    for key in list(to_crm):
        f = plan.by_key.get(key)
        if f is not None and f.crm_key in plan.required and f.crm_key in crm_write and is_blank(crm_write[f.crm_key]):
            crm_errors[key] = "the CRM does not allow it to be blank"
            crm_write.pop(f.crm_key, None)
    for key, message in crm_errors.items():
        it.errors.append((key, f"{plan.by_key[key].crm_label} could not be written to the CRM: {message}"))
        _drop(it, result, key)
    erp_errors = check_erp_values(plan, to_erp)
    for key, message in erp_errors.items():
        it.errors.append((key, f"{plan.by_key[key].erp_label} could not be written to {ctx.name}: {message}"))
        _drop(it, result, key)
    it.crm_write.update(crm_write)
    _refuse_what_the_crm_cannot_hold(ctx, plan, it)


def _refuse_what_the_crm_cannot_hold(ctx: RunContext, plan: TypePlan, it: BatchItem) -> None:
    """The CRM's own rules (the forms' and the import's): a value the CRM would refuse is not stored but reported
    with the ERP's value, and the field keeps its base, so it is tried again when either side changes."""
    if not it.crm_write:
        return
    if ctx.list_items is None:
        ctx.list_items = load_list_items()
    refused = check_crm_values(plan.crm_type, it.crm_write, record=it.row, list_items=ctx.list_items)
    for crm_key, reason in refused.items():
        f = plan.by_crm[crm_key]
        it.errors.append((f.erp_key, f"{f.crm_label} could not be written to the CRM: {reason}"))
        it.crm_write.pop(crm_key, None)
        _drop(it, it.result, f.erp_key)


def _hub_priority(ctx: RunContext, plan: TypePlan, it: BatchItem, rules: list[FieldRule], result: MergeResult
                  ) -> MergeResult:
    """When the CRM value in a two-way conflict was itself written by another ERP connection (the CRM is the hub),
    the conflict is between the two ERPs: decide it with *that* connection's sync priority instead of the CRM's."""
    two_way = {r.key for r in rules if r.to_crm and r.to_erp}
    groups: dict[int, list[str]] = {}
    for conflict in result.conflicts:
        if conflict.key not in two_way:
            continue
        f = plan.by_key[conflict.key]
        stmt = (select(SyncChange.connection_id, SyncChange.new_value)
                .where(SyncChange.crm_type == plan.crm_type, SyncChange.crm_id == it.crm_id,
                       SyncChange.crm_field_key == f.crm_key, SyncChange.direction == "to_crm",
                       SyncChange.connection_id != ctx.connection_id))
        if it.last_synced_at is not None:
            stmt = stmt.where(SyncChange.at >= it.last_synced_at)
        found = db.session.execute(stmt.order_by(SyncChange.at.desc(), SyncChange.id.desc()).limit(1)).first()
        if found is None or found.new_value != crm_text(ctx, f, getattr(it.row, f.crm_key)):
            continue
        rank = ctx.ranks.get(found.connection_id, len(ctx.ranks))
        if rank == ctx.crm_rank:
            continue
        it.authors[conflict.key] = found.connection_id
        groups.setdefault(rank, []).append(conflict.key)
    db.session.commit()
    if not groups:
        return result
    for rank, keys in groups.items():
        sub = merge([r for r in rules if r.key in keys], it.base, it.crm_vals, it.erp_vals, policy="priority",
                    crm_rank=rank, erp_rank=ctx.erp_rank, no_blank=ctx.no_blank, erp_name=ctx.name)
        for key in keys:
            result.to_crm.pop(key, None)
            result.to_erp.pop(key, None)
            if key in sub.new_base:
                result.new_base[key] = sub.new_base[key]
        result.to_crm.update(sub.to_crm)
        result.to_erp.update(sub.to_erp)
        kept = [c for c in result.conflicts if c.key not in keys]
        for conflict in sub.conflicts:
            author = ctx.names.get(it.authors[conflict.key], "another connection")
            if conflict.winner == "crm":
                text = (f"CRM wins (sync priority: the CRM value came from {author}, which is above {ctx.name})")
            else:
                text = (f"{ctx.name} wins (sync priority: {ctx.name} is above {author}, where the CRM value "
                        "came from)")
            kept.append(type(conflict)(conflict.key, conflict.base, conflict.crm, conflict.erp, conflict.winner,
                                       conflict.value, text, conflict.has_base))
        result.conflicts = kept
        result.skipped_blank += [k for k in sub.skipped_blank if k not in result.skipped_blank]
    return result

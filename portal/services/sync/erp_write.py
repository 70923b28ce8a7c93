"""ERP writes of a batch: one SaveActors, isolation of a refused record, stale writes, the answer merged."""

from __future__ import annotations

import logging

from portal.connectors.client import ConnectorError
from portal.services.sync import journal, parents, record_merge
from portal.services.sync.context import GONE_CODES, STALE_WRITE_CODE, RecordLevel, RunContext, read_actors
from portal.services.sync.merge import merge
from portal.services.sync.plan import BatchItem, TypePlan, erp_values, to_crm_values
from portal.services.sync.record_merge import merge_mode

log = logging.getLogger(__name__)


def _erp_actor(plan: TypePlan, it: BatchItem) -> dict:
    # LastModified as last read lets a connector refuse a stale write (ErrorCode CONFLICT) instead of silently
    # overwriting a change made in the ERP since.
    actor = {"ActorType": plan.actor_type, "ErpKey": it.erp_key, "LastModified": it.actor.get("LastModified") or "",
             "FieldValues": dict(it.result.to_erp)}
    if it.parent is not None and it.parent.to_erp is not None:
        actor["ParentActorType"], actor["ParentErpKey"] = it.parent.to_erp
    return actor


def save_actors(ctx: RunContext, plan: TypePlan, items: list[BatchItem], mode: str) -> None:
    if ctx.dry_run:
        raise RuntimeError("a dry run never calls SaveActors")  # batch.py stops a dry run before any write
    journal.write_intent(ctx, plan, items)  # on record before the ERP is changed (committed by ctx.call)
    try:
        answer = ctx.call(ctx.client.save_actors, ctx.guid, [_erp_actor(plan, it) for it in items],
                          record_level=True)
    except RecordLevel as exc:
        if len(items) == 1:
            _save_failed(ctx, plan, items[0], exc.error, mode)
            return
        ctx.count("isolated_batches")
        log.info("SaveActors of %d %s actors failed (%s); retrying one by one", len(items), plan.actor_type,
                 exc.error.error_code or exc.error.user_message)
        for it in items:
            _save_one(ctx, plan, it, mode)
        return
    _take_answer(ctx, plan, items, answer, mode)


def _save_one(ctx: RunContext, plan: TypePlan, it: BatchItem, mode: str) -> None:
    journal.write_intent(ctx, plan, [it])
    try:
        answer = ctx.call(ctx.client.save_actors, ctx.guid, [_erp_actor(plan, it)], record_level=True)
    except RecordLevel as exc:
        _save_failed(ctx, plan, it, exc.error, mode)
        return
    _take_answer(ctx, plan, [it], answer, mode)


def _reread(ctx: RunContext, plan: TypePlan, it: BatchItem) -> bool:
    actors = read_actors(ctx, plan.actor_type, [it.erp_key], plan.keys)
    fresh = next((a for a in actors if isinstance(a, dict) and a.get("ErpKey") == it.erp_key), None)
    if fresh is None:
        it.outcome = "broken"
        return False
    it.actor = fresh
    return True


def _save_failed(ctx: RunContext, plan: TypePlan, it: BatchItem, error: ConnectorError, mode: str) -> None:
    code = error.error_code or ""
    if code == STALE_WRITE_CODE and not it.reread:
        # The ERP changed the actor since we read it: never overwrite; read it again and merge once more.
        it.reread = True
        ctx.count("stale_writes")
        if not _reread(ctx, plan, it):
            return
        record_merge.plan_item(ctx, plan, it, mode)
        if it.result.to_erp:
            _save_one(ctx, plan, it, mode)
        return
    if code == STALE_WRITE_CODE:
        it.outcome = "deferred"
        return
    if code in GONE_CODES and not _reread(ctx, plan, it):
        return
    it.outcome = "failed"
    it.message = f"{ctx.name} refused the changes: {error.user_message}"
    it.errors.append(("", it.message))


def _entry_error(actor: dict | None) -> ConnectorError | None:
    """A per-entry error in a SaveActors answer (``IsOk: false`` or an ``ErrorCode`` on the entry)."""
    if not isinstance(actor, dict) or actor.get("IsOk") is True:
        return None
    if actor.get("IsOk") is False or actor.get("ErrorCode"):
        return ConnectorError(str(actor.get("UserExplanation") or "the ERP refused this record"),
                              tech_message=str(actor.get("TechExplanation") or ""),
                              error_code=str(actor.get("ErrorCode") or ""))
    return None


def _take_answer(ctx: RunContext, plan: TypePlan, items: list[BatchItem], answer: list[dict], mode: str) -> None:
    """SaveActors answers the actors as now stored: that is the ERP side of the new base. In a normal sync the
    answer is merged once more, so a value the ERP adjusted (or a field changed in the ERP meanwhile) flows on
    instead of being mistaken for a CRM change later."""
    saved = {a.get("ErpKey"): a for a in answer if isinstance(a, dict)}
    for it in items:
        it.sent = dict(it.result.to_erp)
        actor = saved.get(it.erp_key)
        refused = _entry_error(actor)
        if actor is None or refused is not None:
            # Not saved (a per-entry error of a partial SaveActors, or left out of the answer): the link keeps
            # its base, so the record is merged again — never taken as agreed on values the ERP does not hold.
            it.sent = {}
            _save_failed(ctx, plan, it, refused or ConnectorError(
                "the record was left out of the answer, so it was not saved", error_code="NOT_SAVED"), mode)
            continue
        parents.check_answer(ctx, it, actor)
        if merge_mode(mode) != "sync":
            it.new_lm = None  # one-way: the next normal sync merges the record in full once more
            continue
        values = actor.get("FieldValues") or {}
        present = [f for f in plan.fields if f.erp_key in values]
        answer_vals, answer_errors = erp_values(plan, values, present)
        complete = len(present) == len(plan.fields) and not answer_errors
        expected = {**it.erp_vals, **it.result.to_erp}
        if complete and all(answer_vals[k] == expected.get(k) for k in answer_vals):
            # The ERP stores exactly what we merged and sent: merging its answer again would change nothing.
            it.new_lm = str(actor.get("LastModified") or "") or None
            continue
        rules = [r for r in plan.rules if r.key in answer_vals and r.key not in it.bad and r.key not in answer_errors]
        crm_after = {**it.crm_vals, **it.result.to_crm}
        second = merge(rules, it.result.new_base, crm_after, answer_vals, policy=ctx.policy, crm_rank=ctx.crm_rank,
                       erp_rank=ctx.erp_rank, no_blank=ctx.no_blank, erp_name=ctx.name)
        if second.to_crm:
            crm_write, crm_errors = to_crm_values(plan, second.to_crm)
            for key in crm_errors:
                second.to_crm.pop(key, None)
                second.new_base[key] = it.result.new_base.get(key)
                it.errors.append((key, f"{plan.by_key[key].crm_label} could not be written to the CRM: "
                                       f"{crm_errors[key]}"))
            it.result.to_crm.update(second.to_crm)
            it.crm_write.update(crm_write)
            it.erp_vals.update({k: answer_vals[k] for k in second.to_crm})
        it.result.new_base = second.new_base
        it.result.conflicts += second.conflicts
        complete = len(present) == len(plan.fields) and not answer_errors and not second.to_erp
        it.new_lm = (str(actor.get("LastModified") or "") or None) if complete else None

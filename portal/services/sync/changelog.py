"""The field-level change log of a batch and the text of what was written."""

from __future__ import annotations

from datetime import date, datetime

from portal.models import CrmFieldType
from portal.services.sync.context import RunContext, plural
from portal.services.sync.fieldmap import MappedField
from portal.services.sync.outcomes import ChangeLine, ConflictLine, RecordDetail
from portal.services.sync.plan import PARENT_KEY, PLAIN_DISPLAY_TYPES, BatchItem, TypePlan
from portal.services.values import display, number_text

CHANGE_DEFAULTS = {"link_id": None, "erp_actor_type": "", "erp_key": "", "erp_field_key": "", "crm_field_key": "",
                    "old_value": None, "new_value": None, "conflict": False, "other_value": None, "rule": ""}


def crm_text(ctx: RunContext, f: MappedField, value: object) -> str:
    if value is None:
        return ""
    if f.crm_type == CrmFieldType.LIST:
        return ctx.list_names.get(value, f"#{value}")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bool):  # a CRM checkbox
        return "Yes" if value else "No"
    if isinstance(value, int | float):  # a CRM whole or decimal number: no needless zeros
        try:
            return number_text(value)
        except ValueError:
            return str(value)
    return str(value)


def erp_text(f: MappedField, value: object) -> str:
    if (value is None or type(value) is str) and f.erp_type in PLAIN_DISPLAY_TYPES:
        return value or ""  # what values.display answers for a text, label or list value (tested)
    return display(f.erp_type, value)


def record_summary(ctx: RunContext, it: BatchItem) -> str:
    if it.outcome == "failed":
        return it.message
    result = it.result
    parts = []
    if it.crm_write:
        parts.append(f"{plural(len(it.crm_write), 'field')} to the CRM")
    if it.sent:
        parts.append(f"{plural(len(it.sent), 'field')} to {ctx.name}")
    if result is not None and result.conflicts:
        parts.append(plural(len(result.conflicts), "conflict"))
    text = "Synced: " + ", ".join(parts) if parts else "In sync"
    if it.errors:
        text += "; " + "; ".join(message for _key, message in it.errors[:3])
    return text[:2000]


def _common(ctx: RunContext, plan: TypePlan, it: BatchItem, now: datetime) -> dict:
    return {"run_id": ctx.run_id, "connection_id": ctx.connection_id, "link_id": it.link_id,
            "crm_type": plan.crm_type, "crm_id": it.crm_id, "erp_actor_type": plan.actor_type,
            "erp_key": it.erp_key, "at": now}


def _erp_write_row(common: dict, it: BatchItem, f: MappedField, new: object, conflict) -> dict:
    old = (it.actor.get("FieldValues") or {}).get(f.erp_key)
    return {**common, "direction": "to_erp", "erp_field_key": f.erp_key, "crm_field_key": f.crm_key,
            "old_value": erp_text(f, old), "new_value": erp_text(f, new), "conflict": conflict is not None,
            "other_value": erp_text(f, conflict.erp) if conflict else None, "rule": conflict.rule if conflict else ""}


def _parent_rows(ctx: RunContext, it: BatchItem, common: dict, *, sent: bool) -> list[dict]:
    """A person's parent move (parents.py), in the log as the contact's company."""
    move, names = it.parent, ctx.parents
    if move is None or names is None:
        return []
    conflict = move.conflict
    both = {"erp_field_key": PARENT_KEY, "crm_field_key": "company_id", "conflict": conflict is not None,
            "rule": conflict.rule if conflict else ""}
    rows = []
    if move.to_crm is not None and "company_id" in it.crm_write:
        rows.append({**common, **both, "direction": "to_crm", "old_value": names.company_text(move.crm_before),
                     "new_value": names.company_text(move.to_crm),
                     "other_value": names.erp_text(conflict.crm) if conflict else None})
    if move.to_erp is not None and sent:
        rows.append({**common, **both, "direction": "to_erp", "old_value": names.erp_text(move.erp_before),
                     "new_value": names.erp_text(move.to_erp[1], move.to_erp[0]),
                     "other_value": names.erp_text(conflict.erp) if conflict else None})
    return rows


def planned_erp_rows(ctx: RunContext, plan: TypePlan, it: BatchItem, now: datetime) -> list[dict]:
    """The change-log rows of the ERP writes the record is about to send (for the journal, before SaveActors)."""
    common = _common(ctx, plan, it, now)
    conflicts = {c.key: c for c in it.result.conflicts}
    rows = [_erp_write_row(common, it, f, it.result.to_erp[f.erp_key], conflicts.get(f.erp_key))
            for f in plan.fields if f.erp_key in it.result.to_erp]
    return rows + [row for row in _parent_rows(ctx, it, common, sent=True) if row["direction"] == "to_erp"]


def change_rows(ctx: RunContext, plan: TypePlan, it: BatchItem, now: datetime) -> list[dict]:
    common = _common(ctx, plan, it, now)
    rows = []
    result = it.result
    if not (it.crm_write or it.sent or it.errors or (it.parent is not None and it.parent.sent)):
        return rows
    conflicts = {c.key: c for c in (result.conflicts if result else [])}
    for f in plan.fields:
        key = f.erp_key
        conflict = conflicts.get(key)
        if f.crm_key in it.crm_write and key in (result.to_crm if result else {}):
            old = getattr(it.row, f.crm_key)
            new = it.crm_write[f.crm_key]
            rows.append({**common, "direction": "to_crm", "erp_field_key": key, "crm_field_key": f.crm_key,
                         "old_value": crm_text(ctx, f, old), "new_value": crm_text(ctx, f, new),
                         "conflict": conflict is not None,
                         "other_value": erp_text(f, conflict.crm) if conflict else None,
                         "rule": conflict.rule if conflict else ""})
        if key in it.sent:
            rows.append(_erp_write_row(common, it, f, it.sent[key], conflict))
    rows += _parent_rows(ctx, it, common, sent=it.parent is not None and it.parent.sent)
    for key, message in it.errors:
        f = plan.by_key.get(key)
        rows.append({**common, "direction": "error", "erp_field_key": key or "",
                     "crm_field_key": f.crm_key if f else ("company_id" if key == PARENT_KEY else ""),
                     "old_value": None, "new_value": None,
                     "conflict": False, "other_value": None, "rule": message[:4000]})
    return rows


def record_detail(ctx: RunContext, plan: TypePlan, it: BatchItem) -> RecordDetail:
    detail = RecordDetail(outcome=it.outcome or "ok")
    if it.outcome in ("broken", "still_broken", "gone", "deferred", "failed"):
        if it.outcome == "failed":
            detail.errors.append(it.message)
        return detail
    result = it.result
    if result is None:
        return detail
    for f in plan.fields:
        if f.crm_key in it.crm_write and f.erp_key in result.to_crm:
            detail.to_crm.append(ChangeLine(f.crm_label or f.erp_label, crm_text(ctx, f, getattr(it.row, f.crm_key)),
                                            crm_text(ctx, f, it.crm_write[f.crm_key])))
        if f.erp_key in it.sent:
            detail.to_erp.append(ChangeLine(f.erp_label or f.erp_key,
                                            erp_text(f, (it.actor.get("FieldValues") or {}).get(f.erp_key)),
                                            erp_text(f, it.sent[f.erp_key])))
    move = it.parent
    if move is not None and ctx.parents is not None:
        if move.to_crm is not None and "company_id" in it.crm_write:
            detail.to_crm.append(ChangeLine("Company", ctx.parents.company_text(move.crm_before),
                                            ctx.parents.company_text(move.to_crm)))
        if move.to_erp is not None and move.sent:
            detail.to_erp.append(ChangeLine("Parent", ctx.parents.erp_text(move.erp_before),
                                            ctx.parents.erp_text(move.to_erp[1], move.to_erp[0])))
        if move.conflict is not None:
            c = move.conflict
            detail.conflicts.append(ConflictLine("Company", ctx.parents.erp_text(c.crm), ctx.parents.erp_text(c.erp),
                                                 "CRM" if c.winner == "crm" else ctx.name, c.rule))
    for conflict in result.conflicts:
        f = plan.by_key[conflict.key]
        detail.conflicts.append(ConflictLine(f.crm_label or f.erp_label, erp_text(f, conflict.crm),
                                             erp_text(f, conflict.erp),
                                             "CRM" if conflict.winner == "crm" else ctx.name, conflict.rule))
    detail.errors = [message for _key, message in it.errors]
    detail.skipped_blank = [plan.by_key[k].crm_label for k in result.skipped_blank if k in plan.by_key]
    return detail

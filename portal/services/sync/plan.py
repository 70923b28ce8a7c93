"""The plan of an actor type (mapped fields snapshotted when a run starts), the fast value conversions and the
linked record going through a batch."""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, select

from portal.models import CRM_MODELS, CRM_TYPE_LABELS, ActorType, CrmFieldType, FieldType, Link, crm_field
from portal.services.sync import fieldmap
from portal.services.sync.fieldmap import MappedField
from portal.services.sync.merge import FieldRule, MergeResult, PreparedRules, prepare

PARENT_KEY = "ParentErpKey"  # the merge's key for a person's parent (not a field of FieldValues)


@dataclass
class TypePlan:
    """The mapped fields of one active actor type, snapshotted when the run starts."""

    actor_type: str
    crm_type: str
    fields: list[MappedField]

    def __post_init__(self) -> None:
        self.model = CRM_MODELS[self.crm_type]
        self.rules: list[FieldRule] = fieldmap.rules(self.fields)
        self.prepared: PreparedRules = prepare(self.rules)
        self.keys: list[str] = list(dict.fromkeys(fieldmap.field_keys(self.fields)))
        self.by_key: dict[str, MappedField] = {f.erp_key: f for f in self.fields}
        self.by_crm: dict[str, MappedField] = {f.crm_key: f for f in self.fields}
        crm_keys = list(dict.fromkeys(f.crm_key for f in self.fields))
        # A person's parent (its customer/supplier) is the contact's company: it syncs in the directions the
        # actor type's fields sync (see parents.py); the contact's company_id is read with the record.
        self.parent: FieldRule | None = None
        if self.actor_type == ActorType.PERSON and hasattr(self.model, "company_id") and self.fields:
            self.parent = FieldRule(PARENT_KEY, any(f.to_crm for f in self.fields),
                                    any(f.to_erp and not f.read_only for f in self.fields))
            crm_keys.append("company_id")
        self.columns = [self.model.id, self.model.updated_at] + [getattr(self.model, k) for k in crm_keys
                                                                 if k not in ("id", "updated_at")]
        # The CRM row of a record as the engine uses it: by position (plan.crm_text) and by column key (fieldmap)
        self.row_type = namedtuple("CrmRow", [column.key for column in self.columns])
        # Statements built once per run, the id lists as expanding parameters (no per-value coercion, one cache key)
        self.sql_rows = select(*self.columns).where(self.model.id.in_(bindparam("ids", expanding=True)))
        # links with their CRM rows (LINK_COLUMNS, then self.columns): one SELECT reads both sides of a batch
        self.sql_linked = (select(*LINK_COLUMNS, *self.columns).join(self.model, self.model.id == Link.crm_id)
                           .where(Link.erp_actor_type == self.actor_type, Link.crm_type == self.crm_type))
        self.sql_links_by_key = self.sql_linked.where(Link.connection_id == bindparam("connection_id"),
                                                      Link.erp_key.in_(bindparam("keys", expanding=True)))
        # what the transaction that applies a batch checks first: the link still there, the record not changed since
        self.sql_check = (select(Link.id, self.model.updated_at).join(self.model, self.model.id == Link.crm_id)
                          .where(Link.id.in_(bindparam("ids", expanding=True))).with_for_update())
        # … or its writes check the same row by row (update_many with ``record``, see _apply_once)
        self.required = {f.crm_key for f in self.fields
                         if (spec := crm_field(self.crm_type, f.crm_key)) is not None and spec.required}
        # Text-to-text and list-to-list fields take a fast path (see erp_values/crm_values), the rest go through
        # fieldmap; anything unusual (a number in a text field, an unmapped list item …) falls back to fieldmap.
        self.fast = [f for f in self.fields if f.erp_type in _TEXT_ERP_TYPES and f.crm_type in _TEXT_CRM_TYPES]
        self.lists = [f for f in self.fields if f.erp_type == FieldType.LIST and f.crm_type == CrmFieldType.LIST]
        self.fast_keys = {f.erp_key for f in self.fast}
        self.list_keys = {f.erp_key for f in self.lists}
        self.slow = [f for f in self.fields if f.erp_key not in self.fast_keys and f.erp_key not in self.list_keys]
        # The same, unpacked once for the per-record loops: (erp key, field) and (erp key, crm key, column index, field)
        self.erp_plain = tuple((f.erp_key, f) for f in self.fast) + tuple((f.erp_key, f) for f in self.lists)
        index = {column.key: position for position, column in enumerate(self.columns)}
        self.crm_text = tuple((f.erp_key, f.crm_key, index[f.crm_key], f) for f in self.fast)
        self.crm_lists = tuple((f.erp_key, f.crm_key, index[f.crm_key], f) for f in self.lists)
        # CRM list item id -> the ERP keys mapped to it, smallest first (values.invert_list_map's tie-break)
        self.reverse_lists = {}
        for f in self.lists:
            reverse: dict[int, list[str]] = {}
            for key, crm_id in sorted((f.list_map or {}).items(), key=lambda item: str(item[0])):
                if crm_id is not None and key not in ("", None):
                    reverse.setdefault(crm_id, []).append(key)
            self.reverse_lists[f.erp_key] = reverse

    @property
    def label(self) -> str:
        return f"{self.actor_type} \u2194 {CRM_TYPE_LABELS.get(self.crm_type, self.crm_type)}"


_TEXT_ERP_TYPES = frozenset({FieldType.TEXT, FieldType.LABEL})
PLAIN_DISPLAY_TYPES = frozenset({FieldType.TEXT, FieldType.LABEL, FieldType.LIST})
_TEXT_CRM_TYPES = frozenset({CrmFieldType.TEXT, CrmFieldType.LONGTEXT})


def erp_values(plan: TypePlan, field_values: dict, fields: list[MappedField] | None = None
                ) -> tuple[dict, dict[str, str]]:
    """``fieldmap.erp_side`` with fast paths, same results as values.to_crm_precision: a text field's string as
    is ('' as None); a list field's item key as is (to_crm_precision returns a list key unchanged, mapped or
    not). Anything else goes through fieldmap."""
    if fields is None:
        plain, slow = plan.erp_plain, None
    else:
        plain = tuple((f.erp_key, f) for f in fields if f.erp_key in plan.fast_keys) + tuple(
            (f.erp_key, f) for f in fields if f.erp_key in plan.list_keys)
        slow = [f for f in fields if f.erp_key not in plan.fast_keys and f.erp_key not in plan.list_keys]
    values: dict = {}
    for key, f in plain:
        value = field_values.get(key)
        if value is None or type(value) is str:
            values[key] = value or None
        else:
            if slow is None:
                slow = list(plan.slow)
            slow.append(f)
    if slow is None:
        slow = plan.slow
    errors: dict[str, str] = {}
    if slow:
        more, errors = fieldmap.erp_side(field_values, slow)
        values.update(more)
    return values, errors


def crm_values(plan: TypePlan, row, erp_now: dict, raw: Sequence | None = None) -> tuple[dict, dict[str, str]]:
    """``fieldmap.crm_side`` with the same fast paths (same results as values.crm_to_erp with
    invert_list_map(prefer=[the ERP's current key])). ``raw``: the same record as a tuple in ``plan.columns``
    order (the engine's CRM rows; indexing costs less than attribute access)."""
    values: dict = {}
    slow = None
    for key, crm_key, index, f in plan.crm_text:
        value = raw[index] if raw is not None else getattr(row, crm_key)
        if value is None or type(value) is str:
            values[key] = value or None
        else:
            if slow is None:
                slow = list(plan.slow)
            slow.append(f)
    for key, crm_key, index, f in plan.crm_lists:
        value = raw[index] if raw is not None else getattr(row, crm_key)
        if value is None:
            values[key] = None
            continue
        keys = plan.reverse_lists[key].get(value) if type(value) is int else None
        if not keys:
            if slow is None:
                slow = list(plan.slow)
            slow.append(f)  # unmapped: fieldmap words the error
            continue
        current = erp_now.get(key)
        values[key] = current if current in keys else keys[0]
    if slow is None:
        slow = plan.slow
    errors: dict[str, str] = {}
    if slow:
        more, errors = fieldmap.crm_side(row, slow, erp_now)
        values.update(more)
    return values, errors


def to_crm_values(plan: TypePlan, values: dict) -> tuple[dict, dict[str, str]]:
    """``fieldmap.to_crm_values`` with fast paths for text and list fields (same results)."""
    result: dict = {}
    slow: dict = {}
    for key, value in values.items():
        f = plan.by_key.get(key)
        if f is None:
            continue
        if key in plan.fast_keys and (value is None or (type(value) is str and (
                not f.crm_max_length or len(value) <= f.crm_max_length))):
            result[f.crm_key] = value or ""
        elif key in plan.list_keys and value is None:
            result[f.crm_key] = None
        elif key in plan.list_keys and type(value) is str and (f.list_map or {}).get(value) is not None:
            result[f.crm_key] = f.list_map[value]
        else:
            slow[key] = value
    errors: dict[str, str] = {}
    if slow:
        more, errors = fieldmap.to_crm_values(slow, plan.fields)
        result.update(more)
    return result, errors


def check_erp_values(plan: TypePlan, values: dict) -> dict[str, str]:
    """``fieldmap.check_erp_values`` with a fast path for text and list fields (same results)."""
    slow: dict = {}
    for key, value in values.items():
        f = plan.by_key.get(key)
        if f is None:
            continue
        if (key in plan.fast_keys or key in plan.list_keys) and (value is None or (type(value) is str and (
                not f.erp_max_length or len(value) <= f.erp_max_length))):
            continue
        slow[key] = value
    return fieldmap.check_erp_values(slow, plan.fields) if slow else {}


LINK_COLUMNS = (Link.id, Link.crm_id, Link.erp_key, Link.base, Link.crm_synced_at, Link.erp_last_modified,
                 Link.status, Link.failures, Link.retry_at, Link.last_synced_at, Link.parent_erp_key)
LINK_WIDTH = len(LINK_COLUMNS)


class BatchItem:
    """One linked record going through a batch."""

    __slots__ = ("link_id", "crm_id", "erp_key", "base", "crm_synced_at", "erp_last_modified", "status", "failures",
                 "last_synced_at", "parent_erp_key", "retry_at", "actor", "row", "crm_updated_at", "crm_vals", "erp_vals",
                 "bad", "result", "crm_write", "errors", "sent", "new_lm", "outcome", "message", "reread",
                 "authors", "parent")

    def __init__(self, row, plan: TypePlan | None = None) -> None:
        # row: the LINK_COLUMNS first, in their order (unpacked: attribute access on a Row costs more), then —
        # with ``plan`` — the CRM record's plan.columns
        (self.link_id, self.crm_id, self.erp_key, base, self.crm_synced_at, self.erp_last_modified, self.status,
         failures, self.retry_at, self.last_synced_at, self.parent_erp_key) = row[:LINK_WIDTH]
        # a fresh dict per row (the JSON column is decoded per row) that nothing modifies: no copy needed
        self.base: dict = base if type(base) is dict else dict(base or {})
        self.failures = failures or 0
        self.actor: dict | None = None
        self.row = plan.row_type._make(row[LINK_WIDTH:]) if plan is not None else None
        self.crm_updated_at: datetime | None = None
        self.crm_vals: dict = {}
        self.erp_vals: dict = {}
        self.bad: set[str] = set()
        self.result: MergeResult | None = None
        self.crm_write: dict = {}
        self.errors: list[tuple[str, str]] = []  # (erp field key or '', message)
        self.sent: dict = {}
        self.new_lm: str | None = None
        self.outcome: str | None = None  # None (in progress/ok) | broken | failed | gone | deferred | still_broken
        self.message = ""
        self.reread = False
        self.authors: dict[str, int] = {}  # conflict key -> connection id the CRM value came from
        self.parent = None  # a person's parent move (parents.ParentMove)

"""What people read instead of stored keys: CRM field labels, ERP field names and list item names (issue #17).

The change log keeps the keys and values a sync wrote (``SyncChange``): CRM field keys such as ``postal_zip``, and
for ERP list fields the ERP item keys (``NO``, ``NOK``). Screens show them through this module, which reads only
what the portal already stores (the CRM field catalogue, the cached ERP field catalogue and the list mappings), so
a page of the log never calls a connector. Anything nothing names is shown as it is.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace

from sqlalchemy import select

from portal.extensions import db
from portal.models import ActorTypeConfig, CrmType, ErpField, FieldType, ListItem, SyncChange, crm_field
from portal.services.sync.outcomes import ConflictLine

# A person's parent move is logged under these keys (portal.services.sync.changelog): the contact's company.
PARENT_CRM_KEY = "company_id"
PARENT_ERP_KEY = "ParentErpKey"


def crm_field_label(crm_type: str, key: str) -> str:
    """The label of a CRM field ("Postal zip code" for ``postal_zip``), else the key."""
    if key == PARENT_CRM_KEY:
        return "Company"
    try:
        found = crm_field(CrmType(crm_type), key)
    except ValueError:  # an unknown CRM type
        found = None
    return found.label if found is not None else key


def erp_field_label(erp_field: ErpField | None, key: str) -> str:
    if key == PARENT_ERP_KEY:
        return "Parent"
    return (erp_field.display_name or erp_field.field_key) if erp_field is not None else key


def erp_item_texts(erp_field: ErpField) -> dict[str, str]:
    """ERP item key -> ERP item name, from the field's list mapping (items mapped without a name are left out)."""
    return {m.erp_item_key: m.erp_item_text for m in erp_field.list_mappings if m.erp_item_text}


def value_texts(fields: Iterable[ErpField], values: Mapping[str, object],
                lists: Mapping[str, Mapping[str, str]] | None = None,
                read: Callable[[list[ErpField]], Mapping[str, Mapping[str, str]]] | None = None
                ) -> dict[str, dict[str, str]]:
    """The names of the ERP list items among ``values`` (ERP field key -> value), per ERP field key.

    From whole lists already read (``lists``, by list name), then the list mappings; ``read(fields)`` (a connector
    look-up, e.g. GetListItems) is asked only for the fields whose item is still unnamed.
    """
    texts: dict[str, dict[str, str]] = {}
    unnamed = []
    for f in fields:
        value = values.get(f.field_key)
        if f.field_type != FieldType.LIST or value in (None, ""):
            continue
        texts[f.field_key] = {**erp_item_texts(f), **((lists or {}).get(f.list_name) or {})}
        if str(value) not in texts[f.field_key]:
            unnamed.append(f)
    if unnamed and read is not None:
        for key, found in read(unnamed).items():
            texts[key] = {**texts.get(key, {}), **found}
    return texts


@dataclass(frozen=True)
class ChangeText:
    """One change-log row as people read it."""

    field: str  # the CRM field's label, else the ERP field's name
    erp_field: str  # the ERP field's name when ``field`` is a CRM label ("" otherwise)
    old: str
    new: str
    other: str  # a conflict's losing value ("" otherwise)
    rule: str


def _erp_fields(changes: list[SyncChange]) -> dict[tuple[int, str, str], ErpField]:
    wanted = {(c.connection_id, c.erp_actor_type, c.erp_field_key) for c in changes if c.erp_field_key}
    if not wanted:
        return {}
    rows = db.session.execute(
        select(ErpField, ActorTypeConfig.connection_id, ActorTypeConfig.erp_actor_type)
        .join(ActorTypeConfig, ActorTypeConfig.id == ErpField.actor_type_id)
        .where(ActorTypeConfig.connection_id.in_({w[0] for w in wanted}),
               ErpField.field_key.in_({w[2] for w in wanted}))).all()
    return {(cid, actor_type, f.field_key): f for f, cid, actor_type in rows
            if (cid, actor_type, f.field_key) in wanted}


def change_texts(changes: Iterable[SyncChange]) -> dict[int, ChangeText]:
    """Readable texts of change-log rows, by row id: field labels, and names for the list items of ERP list fields.

    An ERP list field's row holds ERP item keys where the value is the ERP's (a write to the ERP; the CRM's
    losing value of a conflict, which the engine compares in ERP form) and CRM item names where it is a write to
    the CRM; each key is named from the field's list mapping — the CRM's value with the CRM item's name.
    """
    changes = list(changes)
    fields = _erp_fields(changes)
    lists = {key: f for key, f in fields.items() if f.field_type == FieldType.LIST}
    erp_names = {key: erp_item_texts(f) for key, f in lists.items()}
    crm_ids = {key: {m.erp_item_key: m.crm_item_id for m in f.list_mappings if m.crm_item_id} for key, f in lists.items()}
    ids = {item_id for by_key in crm_ids.values() for item_id in by_key.values()}
    crm_names = dict(db.session.execute(select(ListItem.id, ListItem.name).where(ListItem.id.in_(ids))).all()) if ids else {}
    texts = {}
    for c in changes:
        key = (c.connection_id, c.erp_actor_type, c.erp_field_key)
        erp_field = fields.get(key)
        erp_label = erp_field_label(erp_field, c.erp_field_key) if c.erp_field_key else ""
        label = crm_field_label(c.crm_type, c.crm_field_key) if c.crm_field_key else erp_label
        names = erp_names.get(key, {})

        def erp_value(value: str | None, names=names) -> str:
            return names.get(value, value) if value is not None else ""

        def crm_value(value: str | None, key=key, names=names) -> str:
            if value is None:
                return ""
            item_id = crm_ids.get(key, {}).get(value)
            return crm_names.get(item_id) or names.get(value, value)

        if c.direction == "to_erp":  # the ERP's values, the ERP's losing value included
            old, new, other = erp_value(c.old_value), erp_value(c.new_value), erp_value(c.other_value)
        else:
            old, new = c.old_value or "", c.new_value or ""
            other = crm_value(c.other_value)  # the CRM's losing value, in ERP form
        texts[c.id] = ChangeText(label or "—", erp_label if c.crm_field_key and erp_label != label else "",
                                 old, new, other, c.rule or "")
    return texts


class ItemNames:
    """Names for the ERP list items in what Sync now reports: its lines carry a field's label and ERP item keys
    (the values sent to the ERP; both values of a conflict, compared in ERP form), not the field."""

    def __init__(self, fields: Iterable[ErpField], crm_type: str):
        self._by_label: dict[str, ErpField] = {}
        for f in fields:
            if f.field_type == FieldType.LIST and not f.missing_in_erp:
                self._by_label.setdefault(erp_field_label(f, f.field_key), f)
                if f.crm_field:
                    self._by_label.setdefault(crm_field_label(crm_type, f.crm_field), f)

    def erp(self, label: str, value: str) -> str:
        f = self._by_label.get(label)
        return erp_item_texts(f).get(value, value) if f is not None else value

    def crm(self, label: str, value: str) -> str:
        """The CRM's value (an ERP item key) as the CRM names it."""
        f = self._by_label.get(label)
        item_id = next((m.crm_item_id for m in f.list_mappings if m.erp_item_key == value), None) if f else None
        item = db.session.get(ListItem, item_id) if item_id else None
        return item.name if item is not None else self.erp(label, value)

    def sent(self, lines: Iterable) -> list:
        """(label, old, new) lines of values sent to the ERP, their items named; other shapes pass as they are."""
        named = []
        for line in lines or []:
            try:
                label, old, new = line
            except (TypeError, ValueError):
                named.append(line)
                continue
            named.append((label, self.erp(str(label), old), self.erp(str(label), new)))
        return named

    def conflicts(self, lines: Iterable) -> list:
        return [replace(c, crm_value=self.crm(c.label, c.crm_value), erp_value=self.erp(c.label, c.erp_value))
                if isinstance(c, ConflictLine) else c for c in lines or []]


"""The list mapping: which CRM list item each item of an ERP List field's list stands for — the rows of the
screen (GetList's items, then stored mappings of items the ERP no longer has), saving them all or nothing, and
suggestions by name."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from sqlalchemy import select

from portal.connectors.client import ConnectorError
from portal.extensions import db
from portal.models import (
    Connection,
    CrmField,
    CrmFieldType,
    ErpField,
    FieldType,
    ListItem,
    ListItemMapping,
    crm_field,
)
from portal.models.crm import LIST_LABELS
from portal.services.connectors import ServiceError, client_for
from portal.services.mapping.rules import MappingError, field_label, ordered_fields
from portal.services.mapping.saving import _audit, _forget_agreed_value, _guarded_commit, _problems_now, sync_running


def list_target(erp_field: ErpField) -> CrmField | None:
    """The CRM list field an ERP List field is mapped to (None when it is not a mapped list field)."""
    if erp_field.field_type != FieldType.LIST or not erp_field.crm_field:
        return None
    target = crm_field(erp_field.actor_type.crm_type, erp_field.crm_field)
    return target if target is not None and target.type == CrmFieldType.LIST else None


def list_fields(connection: Connection) -> list[ErpField]:
    """The ERP list fields mapped to a CRM list, per actor type in rank order."""
    return [f for config in connection.actor_types for f in ordered_fields(config) if list_target(f) is not None]


def crm_items(list_name: str, keep_ids: Iterable[int] = ()) -> list[ListItem]:
    """The CRM list's items offered as targets: the live ones, plus deleted ones still in use (``keep_ids``)."""
    keep = set(keep_ids)
    items = db.session.scalars(select(ListItem).where(ListItem.list_name == list_name)
                               .order_by(ListItem.rank, ListItem.name)).all()
    return [i for i in items if not i.deleted or i.id in keep]


def erp_list(connection: Connection, list_name: str) -> dict[str, str]:
    """GetList from the connector: {key: text}. Raises ServiceError when the connector cannot answer."""
    if not list_name:
        raise ServiceError("The connector names no list for this field.")
    try:
        with client_for(connection.connector) as client:
            return client.get_list(connection.guid, list_name)
    except ConnectorError as exc:
        raise ServiceError(f"Could not read the ERP list {list_name}: {exc.user_message}") from exc


@dataclass
class ListRow:
    erp_key: str
    erp_text: str
    crm_item_id: int | None
    in_erp: bool = True
    duplicate_of: list[str] = field(default_factory=list)  # texts of the other ERP items mapped to the same item
    error: str = ""

    @property
    def dom_id(self) -> str:
        return "list-item-" + hashlib.sha1(self.erp_key.encode()).hexdigest()[:12]


def list_rows(erp_field: ErpField, erp_items: Mapping[str, str] | None,
              submitted: Mapping[str, int | None] | None = None,
              errors: Mapping[str, str] | None = None) -> list[ListRow]:
    """The rows of the list mapping table: every ERP item (in the connector's order), then stored mappings of items
    the ERP no longer has. ``submitted`` shows a refused submission as it was sent."""
    stored = {m.erp_item_key: m for m in erp_field.list_mappings}
    rows: list[ListRow] = []
    keys = list(erp_items or {}) if erp_items is not None else list(stored)
    for key in keys:
        text = (erp_items or {}).get(key) or (stored[key].erp_item_text if key in stored else key)
        crm_id = stored[key].crm_item_id if key in stored else None
        rows.append(ListRow(key, text, crm_id, in_erp=True))
    if erp_items is not None:
        for key, mapping in stored.items():
            if key not in erp_items:
                rows.append(ListRow(key, mapping.erp_item_text or key, mapping.crm_item_id, in_erp=False))
    for row in rows:
        if submitted and row.erp_key in submitted:
            row.crm_item_id = submitted[row.erp_key]
        row.error = (errors or {}).get(row.erp_key, "")
    by_crm: dict[int, list[ListRow]] = defaultdict(list)
    for row in rows:
        if row.crm_item_id is not None:
            by_crm[row.crm_item_id].append(row)
    for group in by_crm.values():
        if len(group) > 1:
            for row in group:
                row.duplicate_of = [other.erp_text for other in group if other is not row]
    return rows


def save_list_mapping(erp_field: ErpField, submitted: Mapping[str, int | None], *,
                      erp_items: Mapping[str, str] | None = None, actor=None, **ctx) -> list[str]:
    """Map ERP list items (keys of ``submitted``) to CRM list items (ids, None = no selection), all or nothing.

    The ERP list is read with GetList first (unless ``erp_items`` is given): an item the ERP no longer has cannot
    be mapped (only its stored mapping removed). Duplicates are saved but flagged (and block activation); on an
    active connection a new duplicate is refused. Returns the keys whose mapping changed.
    """
    target = list_target(erp_field)
    if target is None:
        raise MappingError([f"{field_label(erp_field)} is not mapped to a CRM list; map the field first."])
    config = erp_field.actor_type
    connection = config.connection
    if erp_items is None:
        erp_items = erp_list(connection, erp_field.list_name)
    stored = {m.erp_item_key: m for m in erp_field.list_mappings}
    allowed = {i.id: i for i in crm_items(target.list_name, keep_ids=[m.crm_item_id for m in stored.values()
                                                                     if m.crm_item_id is not None])}
    errors: dict[str, str] = {}
    for key, crm_id in submitted.items():
        if crm_id is None:
            if key not in erp_items and key not in stored:
                errors[key] = f"ERP item “{key}” does not exist in the ERP list {erp_field.list_name}."
            continue
        if key not in erp_items:
            errors[key] = (f"ERP item “{key}” no longer exists in the ERP list {erp_field.list_name}; "
                           f"it can only be removed.")
        elif crm_id not in allowed:
            errors[key] = f"That is not an item of the CRM list {LIST_LABELS.get(target.list_name, target.list_name)}."
    if errors:
        raise MappingError([f"{erp_items.get(k, k)}: {m}" for k, m in errors.items()], by_key=errors)
    changed = [k for k, crm_id in submitted.items()
               if (stored[k].crm_item_id if k in stored else None) != crm_id]
    if not changed:
        return []
    if sync_running(connection):
        raise MappingError(["A sync of this connection is running: change the list mapping when it has finished."])

    def name(crm_id):
        return allowed[crm_id].name if crm_id in allowed else None

    before = {k: name(stored[k].crm_item_id) if k in stored else None for k in changed}
    after = {k: name(submitted[k]) for k in changed}
    problems_before = _problems_now(connection)
    for key in changed:
        crm_id = submitted[key]
        mapping = stored.get(key)
        if crm_id is None:
            if mapping is not None:
                erp_field.list_mappings.remove(mapping)
            continue
        if mapping is None:
            mapping = ListItemMapping(erp_item_key=key)
            erp_field.list_mappings.append(mapping)
        mapping.crm_item_id = crm_id
        mapping.erp_item_text = (erp_items.get(key) or key)[:200]
    _forget_agreed_value(config, erp_field.field_key)
    _audit("list_mapping.update", erp_field, connection, before=before, after=after, object_type="erp_field",
           actor=actor, **ctx)
    _guarded_commit(connection, problems_before, f"this list mapping of {field_label(erp_field)}")
    return changed


def match_by_name(erp_field: ErpField, erp_items: Mapping[str, str]) -> dict[str, int]:
    """Suggestions for unmapped ERP items whose text equals a CRM item's name (case-insensitive), one to one."""
    target = list_target(erp_field)
    if target is None:
        return {}
    stored = {m.erp_item_key for m in erp_field.list_mappings if m.crm_item_id is not None}
    taken = {m.crm_item_id for m in erp_field.list_mappings if m.crm_item_id is not None}
    by_name = {i.name.strip().lower(): i.id for i in crm_items(target.list_name)}
    result = {}
    for key, text in erp_items.items():
        crm_id = by_name.get((text or "").strip().lower())
        if key not in stored and crm_id is not None and crm_id not in taken:
            result[key] = crm_id
            taken.add(crm_id)
    return result

"""Which ERP fields the tab shows where (tab, search columns, ask-user), and values as the tab shows them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date

from portal.extensions import db
from portal.models import ActorTypeConfig, CrmFieldType, ErpField, FieldType, ListItem
from portal.services.sync.fieldmap import MappedField
from portal.services.values import display, number_text


def fields_by_key(config: ActorTypeConfig) -> dict[str, ErpField]:
    return {f.field_key: f for f in config.fields if not f.missing_in_erp}


def _ranked(fields: Iterable[ErpField]) -> list[ErpField]:
    return sorted(fields, key=lambda f: (f.rank, f.connector_rank, f.id or 0))


def tab_fields(config: ActorTypeConfig | None) -> list[ErpField]:
    """Show in ERP tab fields, rank order."""
    if config is None:
        return []
    return _ranked(f for f in config.fields if f.show_in_gui and not f.missing_in_erp)


def search_fields(config: ActorTypeConfig) -> list[ErpField]:
    """Show in search fields (the result columns), rank order."""
    return _ranked(f for f in config.fields if f.show_in_search and not f.missing_in_erp)


def ask_fields(config: ActorTypeConfig) -> list[ErpField]:
    """The admin's "ask user" default-value fields, rank order (Label and read-only fields cannot be asked)."""
    return _ranked(f for f in config.fields if f.ask_user and not f.missing_in_erp and not f.read_only
                   and f.field_type != FieldType.LABEL)


def display_value(erp_field: ErpField | None, value: object, list_texts: Mapping[str, str] | None = None) -> str:
    field_type = erp_field.field_type if erp_field is not None else FieldType.TEXT
    return display(field_type, value, list_texts)


def value_text(field_type: str, value: object) -> str:
    """A normalized ERP value as the text an input shows (for prefilling forms)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "y" if value else ""
    if isinstance(value, int | float):
        return number_text(value)
    if field_type == FieldType.DATE:
        return str(value)[:10]
    return str(value)


def crm_value_text(record, f: MappedField) -> str:
    raw = getattr(record, f.crm_key, None)
    if raw is None:
        return ""
    if f.crm_type == CrmFieldType.LIST:
        item = db.session.get(ListItem, raw)
        return item.name if item is not None else f"#{raw}"
    if isinstance(raw, date):
        return raw.isoformat()
    if isinstance(raw, bool):  # a CRM checkbox
        return "Yes" if raw else "No"
    if isinstance(raw, int | float):  # a CRM whole or decimal number, without needless zeros
        return number_text(raw)
    return str(raw)

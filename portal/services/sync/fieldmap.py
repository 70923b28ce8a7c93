"""The mapped fields of one actor type on one connection, and the bridge between a CRM record and ERP values.

Everything the merge compares is in normalized ERP form (portal.services.values): CRM values are converted to
ERP form, ERP values are reduced to what the CRM field can hold (``to_crm_precision``), so an unchanged value
always compares equal. Used by the sync engine, the ERP tab (link, create) and the import.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from portal.models import ActorTypeConfig, CrmFieldType, FieldType, crm_field
from portal.services.sync.merge import FieldRule
from portal.services.values import (
    ConversionError,
    compatible,
    crm_to_erp,
    erp_to_crm,
    invert_list_map,
    normalize_erp,
    to_crm_precision,
)


@dataclass(frozen=True)
class MappedField:
    erp_key: str
    erp_type: str
    erp_label: str
    erp_max_length: int
    crm_key: str
    crm_type: CrmFieldType
    crm_label: str
    crm_max_length: int
    to_crm: bool
    to_erp: bool
    read_only: bool
    list_map: Mapping[str, int | None] = field(default_factory=dict)

    @property
    def rule(self) -> FieldRule:
        return FieldRule(self.erp_key, self.to_crm, self.to_erp and not self.read_only)


def mapped_fields(config: ActorTypeConfig, *, synced_only: bool = False) -> list[MappedField]:
    """The usable mappings of an actor type: a CRM field chosen, present on both sides and type-compatible.
    ``synced_only`` keeps those with at least one direction."""
    result = []
    for erp_field in config.fields:
        if not erp_field.crm_field or erp_field.missing_in_erp:
            continue
        target = crm_field(config.crm_type, erp_field.crm_field)
        if target is None or not compatible(erp_field.field_type, target.type)[0]:
            continue
        to_erp = erp_field.sync_to_erp and not erp_field.read_only
        if synced_only and not (erp_field.sync_to_crm or to_erp):
            continue
        # only a List field has item mappings (reading them for every field was a query per field and run)
        list_map = ({m.erp_item_key: m.crm_item_id for m in erp_field.list_mappings}
                    if erp_field.field_type == FieldType.LIST else {})
        result.append(MappedField(
            erp_key=erp_field.field_key, erp_type=erp_field.field_type, erp_label=erp_field.display_name,
            erp_max_length=erp_field.max_length or 0, crm_key=target.key, crm_type=target.type,
            crm_label=target.label, crm_max_length=target.max_length, to_crm=erp_field.sync_to_crm,
            to_erp=to_erp, read_only=erp_field.read_only, list_map=list_map,
        ))
    return result


def field_keys(fields: Iterable[MappedField]) -> list[str]:
    return [f.erp_key for f in fields]


def rules(fields: Iterable[MappedField]) -> list[FieldRule]:
    return [f.rule for f in fields]


def crm_side(record, fields: Iterable[MappedField], erp_now: Mapping | None = None) -> tuple[dict, dict[str, str]]:
    """The record's mapped values in normalized ERP form, and per-field conversion errors (erp_key -> text).
    ``erp_now`` (the ERP's current values) makes a list item that several ERP items map to convert back to the
    key the ERP already holds."""
    values: dict = {}
    errors: dict[str, str] = {}
    for f in fields:
        raw = getattr(record, f.crm_key)
        current = (erp_now or {}).get(f.erp_key)
        try:
            values[f.erp_key] = crm_to_erp(f.erp_type, f.crm_type, raw,
                                           invert_list_map(f.list_map, prefer=[current]), 0)
        except ConversionError as exc:
            errors[f.erp_key] = str(exc)
    return values, errors


def erp_side(field_values: Mapping, fields: Iterable[MappedField]) -> tuple[dict, dict[str, str]]:
    """An actor's mapped values, normalized and reduced to CRM precision; errors for values of the wrong type."""
    values: dict = {}
    errors: dict[str, str] = {}
    for f in fields:
        try:
            values[f.erp_key] = to_crm_precision(f.erp_type, f.crm_type, field_values.get(f.erp_key), f.list_map)
        except ConversionError as exc:
            errors[f.erp_key] = str(exc)
    return values, errors


def check_erp_values(values: Mapping, fields: Iterable[MappedField]) -> dict[str, str]:
    """Errors for values that cannot be written to the ERP (e.g. longer than the ERP field's MaxLength)."""
    errors = {}
    for f in fields:
        if f.erp_key not in values:
            continue
        value = values[f.erp_key]
        try:
            normalized = normalize_erp(f.erp_type, value)
        except ConversionError as exc:
            errors[f.erp_key] = str(exc)
            continue
        if f.erp_max_length and isinstance(normalized, str) and len(normalized) > f.erp_max_length:
            errors[f.erp_key] = f"{f.erp_label} can hold at most {f.erp_max_length} characters in the ERP"
    return errors


def to_crm_values(values: Mapping, fields: Iterable[MappedField]) -> tuple[dict, dict[str, str]]:
    """ERP values -> {crm attribute: CRM value}, with per-field errors (erp_key -> text)."""
    by_key = {f.erp_key: f for f in fields}
    result: dict = {}
    errors: dict[str, str] = {}
    for key, value in values.items():
        f = by_key.get(key)
        if f is None:
            continue
        try:
            result[f.crm_key] = erp_to_crm(f.erp_type, f.crm_type, value, f.list_map, f.crm_max_length)
        except ConversionError as exc:
            errors[key] = str(exc)
    return result, errors


def write_crm(record, crm_values: Mapping) -> list[tuple[str, object, object]]:
    """Set attributes on the record; returns (crm attribute, old, new) for those that really changed."""
    changes = []
    for key, new in crm_values.items():
        old = getattr(record, key)
        if old != new:
            setattr(record, key, new)
            changes.append((key, old, new))
    return changes

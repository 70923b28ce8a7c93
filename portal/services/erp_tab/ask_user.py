"""The admin's "ask user" fields of Connect and Create in ERP: their starting values and the answers checked,
normalized and mapped to the CRM."""

from __future__ import annotations

from collections.abc import Mapping

from portal.models import ActorTypeConfig, ErpField, FieldType
from portal.services.erp_tab.errors import InvalidInput
from portal.services.erp_tab.fields import ask_fields, fields_by_key
from portal.services.sync.fieldmap import crm_side, mapped_fields, to_crm_values
from portal.services.values import ConversionError, is_blank, normalize_erp


def _ask_prefill(config: ActorTypeConfig, actor_values: Mapping | None, record=None) -> dict[str, object]:
    """Ask-user fields start with the ERP's current value (connect) or the CRM's mapped value (create), else the
    admin's default."""
    prefill = {}
    mapped = {f.erp_key: f for f in mapped_fields(config)}
    for f in ask_fields(config):
        value = None
        if actor_values is not None:
            try:
                value = normalize_erp(f.field_type, actor_values.get(f.field_key))
            except ConversionError:
                value = None
        elif record is not None and f.field_key in mapped and mapped[f.field_key].to_erp:
            values, _errors = crm_side(record, [mapped[f.field_key]])
            value = values.get(f.field_key)
        if value is None and f.has_default:
            try:
                value = normalize_erp(f.field_type, f.default_value)
            except ConversionError:
                value = None
        prefill[f.field_key] = value
    return prefill


def _check_answers(ask: list[ErpField], answers: Mapping[str, object]) -> dict[str, object]:
    errors = {}
    clean = {}
    for f in ask:
        value = answers.get(f.field_key)
        label = f.display_name or f.field_key
        try:
            value = normalize_erp(f.field_type, value)
        except ConversionError as exc:
            errors[f"ask_{f.id}"] = f"{label}: {exc}."
            continue
        if f.mandatory and f.field_type != FieldType.CHECKBOX and is_blank(value):
            errors[f"ask_{f.id}"] = f"{label} is required."
            continue
        if f.max_length and isinstance(value, str) and len(value) > f.max_length:
            errors[f"ask_{f.id}"] = f"{label} can be at most {f.max_length} characters."
            continue
        clean[f.field_key] = value
    if errors:
        raise InvalidInput("Please correct the highlighted fields.", errors)
    return clean


def _checked_answers(config: ActorTypeConfig, answers: Mapping[str, object]
                     ) -> tuple[list[ErpField], dict[str, object], dict]:
    """The ask-user fields, the normalized answers and the CRM values they map to; raises InvalidInput."""
    ask = ask_fields(config)
    answers = _check_answers(ask, answers)
    ask_crm, problems = _ask_to_crm(config, answers)
    if problems:
        raise InvalidInput("Please correct the highlighted fields.", problems)
    return ask, answers, ask_crm


def _ask_to_crm(config: ActorTypeConfig, answers: Mapping[str, object]) -> tuple[dict, dict[str, str]]:
    """CRM values for the answers of ask-user fields that are mapped ERP → CRM; errors by form field name."""
    by_key = fields_by_key(config)
    mapped = [f for f in mapped_fields(config, synced_only=True) if f.to_crm and f.erp_key in answers]
    values, errors = to_crm_values({f.erp_key: answers[f.erp_key] for f in mapped}, mapped)
    return values, {f"ask_{by_key[key].id}": f"{by_key[key].display_name}: {text}." for key, text in errors.items()}

"""User-defined fields: what an admin may define, and what a change does to records and mappings.

A definition claims the first free slot column of its type on its record type (portal/models/user_fields.py);
its type and list are fixed from then on (the slot is typed), its label, "required" and "show in list" may change,
and it can be moved. Deleting a definition blanks its values on every record and removes the ERP mappings to it,
so the slot is free again and a later field never shows or syncs old values. Every change is audited.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select, update

from portal.extensions import db
from portal.models import (
    BUILTIN_CRM_FIELDS,
    CRM_MODELS,
    CRM_TYPE_LABELS,
    ActorTypeConfig,
    CrmList,
    CrmType,
    ErpField,
    UserField,
    forget_user_fields,
)
from portal.models.crm import LIST_LABELS
from portal.models.user_fields import SLOTS, UDF_TYPES, slot_keys
from portal.services import audit
from portal.services.lists import move_in_order

LABEL_MAX_LENGTH = 80
TYPE_LABELS = {"text": "Text", "integer": "Whole number", "decimal": "Decimal", "checkbox": "Checkbox",
               "date": "Date", "list": "List"}
assert set(TYPE_LABELS) == set(UDF_TYPES)


class UserFieldError(ValueError):
    """A definition that breaks a rule; the message is shown next to ``field``."""

    def __init__(self, message: str, field: str | None = "label"):
        super().__init__(message)
        self.field = field


def parse_crm_type(value: str | None) -> CrmType | None:
    try:
        return CrmType(value)
    except ValueError:
        return None


def definitions(crm_type: str) -> list[UserField]:
    return list(db.session.scalars(select(UserField).where(UserField.crm_type == CrmType(crm_type))
                                   .order_by(UserField.rank, UserField.id)))


@dataclass(frozen=True)
class SlotUse:
    field_type: str
    used: int
    total: int

    @property
    def free(self) -> int:
        return self.total - self.used


def slot_use(crm_type: str) -> list[SlotUse]:
    taken = {d.slot for d in definitions(crm_type)}
    return [SlotUse(t, sum(1 for key in slot_keys(t) if key in taken), SLOTS[t]) for t in UDF_TYPES]


def _snapshot(definition: UserField) -> dict:
    return {"record type": definition.crm_type, "label": definition.label, "type": definition.field_type,
            "list": definition.list_name, "required": definition.required, "show in list": definition.show_in_list,
            "slot": definition.slot}


def _repr(definition: UserField) -> str:
    return f"{CRM_TYPE_LABELS[CrmType(definition.crm_type)]}: {definition.label}"


def _check_label(crm_type: CrmType, label: str | None, definition_id: int | None = None) -> str:
    label = " ".join((label or "").split())
    if not label:
        raise UserFieldError("Enter a label.")
    if len(label) > LABEL_MAX_LENGTH:
        raise UserFieldError(f"The label can be at most {LABEL_MAX_LENGTH} characters.")
    # a label names one field of the record type: the forms, the mapping screen and the change log show labels
    if any(spec.label.lower() == label.lower() for spec in BUILTIN_CRM_FIELDS[crm_type]) or (
            crm_type == CrmType.CONTACT and label.lower() == "company"):
        raise UserFieldError(f"{CRM_TYPE_LABELS[crm_type]} already has a built-in field “{label}”.")
    clash = db.session.scalar(select(UserField).where(UserField.crm_type == crm_type,
                                                      func.lower(UserField.label) == label.lower()))
    if clash is not None and clash.id != definition_id:
        raise UserFieldError(f"{CRM_TYPE_LABELS[crm_type]} already has a field “{clash.label}”.")
    return label


def _check_required(field_type: str, required: bool) -> None:
    if required and field_type == "checkbox":
        raise UserFieldError("A checkbox always has a value (ticked or not): it cannot be required.", "required")


def create(crm_type: str, *, label: str, field_type: str, list_name: str | None = None, required: bool = False,
           show_in_list: bool = False, actor=None, **ctx) -> UserField:
    parsed = parse_crm_type(crm_type)
    if parsed is None:
        raise UserFieldError("Choose a record type.", "crm_type")
    if field_type not in UDF_TYPES:
        raise UserFieldError("Choose a type.", "field_type")
    label = _check_label(parsed, label)
    _check_required(field_type, required)
    if field_type == "list":
        if list_name not in {item.value for item in CrmList}:
            raise UserFieldError("Choose the list its items come from.", "list_name")
    else:
        list_name = None
    taken = set(db.session.scalars(select(UserField.slot).where(UserField.crm_type == parsed)))
    free = [key for key in slot_keys(field_type) if key not in taken]
    if not free:
        raise UserFieldError(f"All {SLOTS[field_type]} {TYPE_LABELS[field_type].lower()} fields of "
                             f"{CRM_TYPE_LABELS[parsed].lower()} records are in use; delete one first.", "field_type")
    top = db.session.scalar(select(func.max(UserField.rank)).where(UserField.crm_type == parsed))
    definition = UserField(crm_type=parsed.value, slot=free[0], label=label, field_type=field_type,
                           list_name=list_name, required=bool(required), show_in_list=bool(show_in_list),
                           rank=(top if top is not None else -1) + 1)
    db.session.add(definition)
    db.session.flush()
    _blank_slot(parsed, definition.slot)  # a slot is blank when free; this makes sure of it
    audit.record("user_field.create", definition, object_type="user_field", object_repr=_repr(definition),
                 after=_snapshot(definition), actor=actor, **ctx)
    db.session.commit()
    forget_user_fields()
    return definition


def update_definition(definition: UserField, *, label: str, required: bool, show_in_list: bool, actor=None,
                      **ctx) -> UserField:
    label = _check_label(CrmType(definition.crm_type), label, definition.id)
    _check_required(definition.field_type, required)
    before = _snapshot(definition)
    definition.label, definition.required, definition.show_in_list = label, bool(required), bool(show_in_list)
    if _snapshot(definition) != before:
        audit.record("user_field.update", definition, object_type="user_field", object_repr=_repr(definition),
                     before=before, after=_snapshot(definition), actor=actor, **ctx)
    db.session.commit()
    forget_user_fields()
    return definition


def move(definition: UserField, direction: str, *, actor=None, **ctx) -> bool:
    """Swap with the neighbour above ("up") or below ("down"); False at the end. Ranks are renumbered first."""
    if direction not in ("up", "down"):
        raise UserFieldError("Unknown direction.", None)
    if not move_in_order(definitions(definition.crm_type), definition, direction):
        return False
    audit.record(f"user_field.move_{direction}", definition, object_type="user_field",
                 object_repr=_repr(definition), actor=actor, **ctx)
    db.session.commit()
    forget_user_fields()
    return True


def _blank_value(field_type: str):
    return "" if field_type == "text" else False if field_type == "checkbox" else None


def _slot_type(slot: str) -> str:
    return slot.split("_")[1]


def _blank_slot(crm_type: CrmType, slot: str) -> int:
    model = CRM_MODELS[crm_type]
    column = getattr(model, slot)
    blank = _blank_value(_slot_type(slot))
    # records are not "changed" by this (no updated_at move): the value was never visible or synced
    return db.session.execute(update(model).where(column.is_not(None) if blank is None else column != blank)
                              .values({slot: blank}).execution_options(synchronize_session=False)).rowcount


def records_with_values(definition: UserField) -> int:
    model = CRM_MODELS[CrmType(definition.crm_type)]
    column = getattr(model, definition.slot)
    blank = _blank_value(definition.field_type)
    condition = column.is_not(None) if blank is None else column != blank
    return db.session.scalar(select(func.count()).select_from(model).where(condition)) or 0


def mappings_to(definition: UserField) -> list[ErpField]:
    """The ERP fields of any connection mapped to this field."""
    return list(db.session.scalars(
        select(ErpField).join(ActorTypeConfig, ErpField.actor_type_id == ActorTypeConfig.id)
        .where(ActorTypeConfig.crm_type == definition.crm_type, ErpField.crm_field == definition.slot)))


def delete(definition: UserField, *, actor=None, **ctx) -> tuple[int, int]:
    """Delete the definition, blank its values, unmap it; returns (records blanked, mappings removed)."""
    crm_type = CrmType(definition.crm_type)
    before = _snapshot(definition)
    unmapped = mappings_to(definition)
    for erp_field in unmapped:
        erp_field.crm_field, erp_field.sync_to_crm, erp_field.sync_to_erp = None, False, False
    blanked = _blank_slot(crm_type, definition.slot)
    audit.record("user_field.delete", definition, object_type="user_field", object_repr=_repr(definition),
                 before=before | {"records blanked": blanked, "mappings removed": len(unmapped)},
                 actor=actor, **ctx)
    db.session.delete(definition)
    db.session.commit()
    forget_user_fields()
    return blanked, len(unmapped)


def list_labels() -> dict[str, str]:
    return {item.value: label for item, label in LIST_LABELS.items()}

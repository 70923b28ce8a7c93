"""The mapping rules: which CRM field an ERP field may map to, which direction is possible and why not, the
validation of one submitted row, and ``mapping_problems`` — every reason the mappings keep a connection from being
active. Read-only: the saves are in ``grid``, ``list_mapping`` and ``defaults``."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass

from sqlalchemy import select

from portal.extensions import db
from portal.models import (
    CRM_TYPE_LABELS,
    ActorTypeConfig,
    Connection,
    CrmFieldType,
    ErpField,
    FieldAccess,
    FieldType,
    ListItem,
    ListItemMapping,
    crm_field,
    crm_fields,
)
from portal.services.actor_labels import actor_label
from portal.services.connectors import ServiceError
from portal.services.values import compatible

NOT_WRITABLE_TYPES = frozenset({FieldType.LABEL, FieldType.PASSWORD})


class MappingError(ServiceError):
    """A refused change. ``details`` lists every reason; ``by_key`` ties reasons to rows or inputs."""

    def __init__(self, messages: list[str], by_key: Mapping[str, str] | None = None, field: str | None = None):
        super().__init__(" ".join(messages), field, list(messages))
        self.by_key = dict(by_key or {})


def crm_label(crm_type: str) -> str:
    return CRM_TYPE_LABELS.get(crm_type, str(crm_type).title())


def switch_label(config: ActorTypeConfig) -> str:
    return f'Sync ERP "{actor_label(config)}" to CRM "{crm_label(config.crm_type)}"'


def field_label(erp_field: ErpField) -> str:
    return erp_field.display_name or erp_field.field_key


def _where(erp_field: ErpField) -> str:
    """Where a field is, as people read it (the actor type under its shown name)."""
    return f"{actor_label(erp_field.actor_type)}: “{field_label(erp_field)}”"


def ordered_fields(config: ActorTypeConfig) -> list[ErpField]:
    return sorted(config.fields, key=lambda f: (f.rank, f.id or 0))


def actor_config(connection: Connection, actor_type: str | None) -> ActorTypeConfig | None:
    """The requested actor type of the connection, else its first one (None when it has none)."""
    if actor_type:
        found = connection.actor_type(actor_type)
        if found is not None:
            return found
    return connection.actor_types[0] if connection.actor_types else None


def _writable_type(erp_field: ErpField) -> bool:
    return erp_field.field_type not in NOT_WRITABLE_TYPES


@dataclass(frozen=True)
class MappingState:
    """What one row of the mapping grid says: the CRM field and the four switches."""

    crm_field: str | None
    to_crm: bool
    to_erp: bool
    show_in_search: bool
    show_in_gui: bool

    @classmethod
    def of(cls, erp_field: ErpField) -> MappingState:
        return cls(erp_field.crm_field or None, bool(erp_field.sync_to_crm), bool(erp_field.sync_to_erp),
                   bool(erp_field.show_in_search), bool(erp_field.show_in_gui))

    def as_dict(self) -> dict:
        return {"crm_field": self.crm_field, "to_crm": self.to_crm, "to_erp": self.to_erp,
                "show_in_search": self.show_in_search, "show_in_gui": self.show_in_gui}


@dataclass(frozen=True)
class Availability:
    ok: bool
    reason: str = ""


@dataclass(frozen=True)
class CrmChoice:
    key: str
    label: str
    disabled: bool = False
    reason: str = ""  # why it is disabled
    note: str = ""  # shown but not blocking (e.g. "to-CRM target of connection X")


def other_to_crm_targets(connection: Connection) -> dict[tuple[str, str], str]:
    """(CRM type, CRM field) → name of another non-deleted connection that has it as a to-CRM target."""
    rows = db.session.execute(
        select(ActorTypeConfig.crm_type, ErpField.crm_field, Connection.name)
        .join(ErpField, ErpField.actor_type_id == ActorTypeConfig.id)
        .join(Connection, Connection.id == ActorTypeConfig.connection_id)
        .where(Connection.id != connection.id, Connection.deleted.is_(False), ErpField.sync_to_crm.is_(True),
               ErpField.crm_field.is_not(None))
        .order_by(Connection.name)
    ).all()
    result: dict[tuple[str, str], str] = {}
    for crm_type, key, name in rows:
        result.setdefault((crm_type, key), name)
    return result


def _used_in_tab(config: ActorTypeConfig) -> dict[str, ErpField]:
    """CRM field key -> the first ERP field (rank order) of the tab mapped to it."""
    used: dict[str, ErpField] = {}
    for f in ordered_fields(config):
        if f.crm_field:
            used.setdefault(f.crm_field, f)
    return used


def crm_choices(erp_field: ErpField, crm_type: str, used: Mapping[str, ErpField],
                elsewhere: Mapping[tuple[str, str], str]) -> list[CrmChoice]:
    """Every CRM field of the record type, disabled (with the reason) where this ERP field cannot map to it."""
    choices = []
    for target in crm_fields(crm_type):
        disabled, reason, note = False, "", ""
        ok, why = compatible(erp_field.field_type, target.type, target.label)
        user = used.get(target.key)
        if not ok:
            disabled, reason = True, why
        elif user is not None and user.id != erp_field.id:
            disabled, reason = True, f"already mapped from ERP field {field_label(user)}"
        other = elsewhere.get((crm_type, target.key))
        if other and not disabled:
            note = f"to-CRM target of connection {other}"
        choices.append(CrmChoice(target.key, target.label, disabled, reason, note))
    return choices


def _target_problem(erp_field: ErpField, crm_type: str, crm_key: str | None) -> Availability | None:
    """Why no direction can be set toward/from the chosen CRM field (None when the target is usable)."""
    if not crm_key:
        return Availability(False, "no CRM field is chosen")
    target = crm_field(crm_type, crm_key)
    if target is None:
        return Availability(False, f"CRM field {crm_key} no longer exists")
    ok, why = compatible(erp_field.field_type, target.type, target.label)
    if not ok:
        return Availability(False, why)
    return None


def direction_to_crm(erp_field: ErpField, crm_type: str, crm_key: str | None,
                     elsewhere: Mapping[tuple[str, str], str]) -> Availability:
    if erp_field.missing_in_erp:
        return Availability(False, "the ERP no longer offers this field")
    problem = _target_problem(erp_field, crm_type, crm_key)
    if problem is not None:
        return problem
    target = crm_field(crm_type, crm_key)
    other = elsewhere.get((crm_type, crm_key))
    if other:
        return Availability(False, f"CRM field {target.label} is already the to-CRM target of connection {other}")
    return Availability(True)


def direction_to_erp(erp_field: ErpField, crm_type: str, crm_key: str | None) -> Availability:
    if erp_field.missing_in_erp:
        return Availability(False, "the ERP no longer offers this field")
    if erp_field.access == FieldAccess.READ_ONLY:
        return Availability(False, "the field is read-only in the ERP (a key or value the ERP assigns), "
                                   "so it cannot be written")
    if erp_field.field_type == FieldType.LABEL:
        return Availability(False, "a Label field is static text and cannot be written to the ERP")
    return _target_problem(erp_field, crm_type, crm_key) or Availability(True)


def has_value_source(erp_field: ErpField) -> bool:
    """A value for this field when the CRM creates an ERP actor: a direction to the ERP, a default or a question."""
    crm_type = erp_field.actor_type.crm_type
    to_erp = erp_field.sync_to_erp and direction_to_erp(erp_field, crm_type, erp_field.crm_field).ok
    return bool(to_erp or (erp_field.has_default and erp_field.default_value is not None) or erp_field.ask_user)


def needs_value(erp_field: ErpField) -> bool:
    return (erp_field.access == FieldAccess.MANDATORY and not erp_field.missing_in_erp
            and _writable_type(erp_field) and not has_value_source(erp_field))


def validate_row(erp_field: ErpField, state: MappingState,
                 elsewhere: Mapping[tuple[str, str], str] | None = None) -> list[str]:
    """Every reason why ``state`` cannot be saved for ``erp_field`` (empty = it can)."""
    config = erp_field.actor_type
    if elsewhere is None:
        elsewhere = other_to_crm_targets(config.connection)
    errors: list[str] = []
    current = MappingState.of(erp_field)
    if erp_field.missing_in_erp:
        if state != MappingState(None, False, False, False, False) and state != current:
            errors.append(f"The ERP no longer offers {field_label(erp_field)}: it can only be unmapped.")
        return errors
    key = state.crm_field
    if key:
        target = crm_field(config.crm_type, key)
        if target is None:
            if key != current.crm_field:
                errors.append(f"Unknown CRM field “{key}”: choose one of the {crm_label(config.crm_type)} fields.")
            elif state.to_crm or state.to_erp:
                errors.append(f"CRM field “{key}” no longer exists: unmap {field_label(erp_field)}.")
            return errors
        ok, why = compatible(erp_field.field_type, target.type, target.label)
        if not ok:
            errors.append(f"{field_label(erp_field)} cannot be mapped to CRM field {target.label}: {why}.")
            return errors
        user = _used_in_tab(config).get(key)
        if user is not None and user.id != erp_field.id:
            errors.append(f"CRM field {target.label} is already mapped from ERP field {field_label(user)} on this "
                          f"tab; unmap it there first.")
    elif state.to_crm or state.to_erp:
        errors.append("Choose a CRM field before choosing a direction.")
        return errors
    if state.to_crm:
        available = direction_to_crm(erp_field, config.crm_type, key, elsewhere)
        if not available.ok:
            errors.append(f"{field_label(erp_field)} cannot sync to the CRM: {available.reason}.")
    if state.to_erp:
        available = direction_to_erp(erp_field, config.crm_type, key)
        if not available.ok:
            errors.append(f"{field_label(erp_field)} cannot sync to the ERP: {available.reason}.")
    return errors


def _list_duplicates(erp_field: ErpField) -> dict[int, list[ListItemMapping]]:
    by_crm: dict[int, list[ListItemMapping]] = defaultdict(list)
    for item in erp_field.list_mappings:
        if item.crm_item_id is not None:
            by_crm[item.crm_item_id].append(item)
    return {crm_id: items for crm_id, items in by_crm.items() if len(items) > 1}


def mapping_problems(connection: Connection) -> list[str]:
    """Every mapping reason why the connection cannot be active (empty = none). Each names actor type and field.

    * no actor type is switched on (there would be nothing to sync);
    * an active actor type the connector no longer offers;
    * a Mandatory ERP field of an active actor type without a value source (see ``has_value_source``);
    * a field flagged *missing in ERP* that is still mapped; a mapping to a CRM field that no longer exists
      (*missing in CRM*) or whose type no longer fits;
    * a to-CRM target that another connection already has;
    * two ERP items mapped to the same CRM list item.
    """
    problems: list[str] = []
    active = [c for c in connection.actor_types if c.is_active]
    if not active:
        problems.append("No actor type is switched on: under Mappings, switch on “Sync ERP … to CRM …” for at "
                        "least one actor type.")
        return problems
    elsewhere = other_to_crm_targets(connection)
    for config in active:
        if not config.supported:
            problems.append(f"{actor_label(config)}: the connector no longer offers this actor type; switch it "
                            f"off.")
        for erp_field in ordered_fields(config):
            where = _where(erp_field)
            mapped = bool(erp_field.crm_field or erp_field.sync_to_crm or erp_field.sync_to_erp)
            if erp_field.missing_in_erp:
                if mapped:
                    problems.append(f"{where} is missing in the ERP but still mapped; unmap it.")
                continue
            if needs_value(erp_field):
                problems.append(f"{where} is Mandatory in the ERP but has neither a direction to the ERP nor a "
                                f"default value.")
            if not erp_field.crm_field:
                continue
            target = crm_field(config.crm_type, erp_field.crm_field)
            if target is None:
                problems.append(f"{where} is mapped to CRM field “{erp_field.crm_field}”, which is missing in the "
                                f"CRM; unmap it.")
                continue
            ok, why = compatible(erp_field.field_type, target.type, target.label)
            if not ok:
                problems.append(f"{where} is mapped to CRM field {target.label}, which no longer fits: {why}.")
                continue
            other = elsewhere.get((config.crm_type, erp_field.crm_field))
            if erp_field.sync_to_crm and other:
                problems.append(f"{where} syncs to CRM field {target.label}, which connection {other} already "
                                f"syncs to.")
            if target.type == CrmFieldType.LIST:
                for crm_id, items in sorted(_list_duplicates(erp_field).items()):
                    crm_item = db.session.get(ListItem, crm_id)
                    names = " and ".join(f"“{i.erp_item_text or i.erp_item_key}”"
                                         for i in sorted(items, key=lambda i: i.erp_item_key))
                    problems.append(f"{where}: in the list mapping, ERP items {names} all map to CRM item "
                                    f"“{crm_item.name if crm_item else crm_id}”.")
    return problems

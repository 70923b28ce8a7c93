"""The Mappings grid: what the screen draws for each row, and its saves — one row (CRM field, directions,
search/GUI switches), unmapping, the "Sync ERP … to CRM …" switch of an actor type, and the rank order."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from sqlalchemy import select

from portal.extensions import db
from portal.models import (
    ActorTypeConfig,
    CrmField,
    ErpField,
    ListItem,
    crm_field,
)
from portal.services.actor_labels import actor_label
from portal.services.mapping.rules import (
    Availability,
    CrmChoice,
    MappingError,
    MappingState,
    _used_in_tab,
    crm_choices,
    direction_to_crm,
    direction_to_erp,
    field_label,
    needs_value,
    ordered_fields,
    other_to_crm_targets,
    validate_row,
)
from portal.services.mapping.saving import _audit, _forget_agreed_value, _guarded_commit, _problems_now, sync_running


@dataclass
class RowView:
    """Everything the template needs to draw one mapping row."""

    field: ErpField
    config: ActorTypeConfig
    state: MappingState
    choices: list[CrmChoice]
    crm: CrmField | None
    missing_in_crm: bool
    already_mapped_by: str | None
    to_crm: Availability
    to_erp: Availability
    errors: list[str] = field(default_factory=list)
    needs_value: str = ""  # the Mandatory warning, when the field lacks a value source

    @property
    def flagged(self) -> bool:
        return bool(self.field.missing_in_erp or self.missing_in_crm or self.errors or self.needs_value)


def row_view(erp_field: ErpField, *, elsewhere: Mapping[tuple[str, str], str] | None = None,
             errors: Iterable[str] = (), used: Mapping[str, ErpField] | None = None) -> RowView:
    config = erp_field.actor_type
    if elsewhere is None:
        elsewhere = other_to_crm_targets(config.connection)
    if used is None:
        used = _used_in_tab(config)
    state = MappingState.of(erp_field)
    crm = crm_field(config.crm_type, state.crm_field) if state.crm_field else None
    missing_in_crm = bool(state.crm_field) and crm is None
    view = RowView(
        field=erp_field, config=config, state=state,
        choices=crm_choices(erp_field, config.crm_type, used, elsewhere),
        crm=crm, missing_in_crm=missing_in_crm,
        already_mapped_by=elsewhere.get((config.crm_type, state.crm_field)) if state.crm_field else None,
        to_crm=direction_to_crm(erp_field, config.crm_type, state.crm_field, elsewhere),
        to_erp=direction_to_erp(erp_field, config.crm_type, state.crm_field),
        errors=list(errors),
    )
    if needs_value(erp_field):
        view.needs_value = ("Mandatory in the ERP: choose the direction to the ERP (←) or give it a default value "
                            "before this actor type can be active.")
    return view


def row_views(config: ActorTypeConfig) -> list[RowView]:
    elsewhere = other_to_crm_targets(config.connection)
    used = _used_in_tab(config)  # once for the grid, not once per row
    return [row_view(f, elsewhere=elsewhere, used=used) for f in ordered_fields(config)]


def save_row(erp_field: ErpField, state: MappingState, *, actor=None, **ctx) -> ErpField:
    """Save one mapping row, all or nothing. Raises ``MappingError`` with every reason it was refused."""
    if not state.crm_field:
        state = MappingState(None, False, False, state.show_in_search, state.show_in_gui)
    config = erp_field.actor_type
    connection = config.connection
    errors = validate_row(erp_field, state)
    if errors:
        raise MappingError(errors)
    current = MappingState.of(erp_field)
    if state == current:
        return erp_field
    retarget = state.crm_field != current.crm_field
    if retarget and sync_running(connection):
        raise MappingError(["A sync of this connection is running: change the CRM field when it has finished."])
    problems_before = _problems_now(connection)
    erp_field.crm_field = state.crm_field
    erp_field.sync_to_crm, erp_field.sync_to_erp = state.to_crm, state.to_erp
    erp_field.show_in_search, erp_field.show_in_gui = state.show_in_search, state.show_in_gui
    if retarget:
        _forget_agreed_value(config, erp_field.field_key)
        target = crm_field(config.crm_type, state.crm_field) if state.crm_field else None
        if target is not None:  # item mappings into another CRM list than the new target's are void
            item_ids = {item.crm_item_id for item in erp_field.list_mappings if item.crm_item_id}
            items_by_id = {}
            if item_ids:  # one query for all the mapped items, not one per mapping
                items_by_id = {i.id: i for i in db.session.scalars(select(ListItem).where(ListItem.id.in_(item_ids)))}
            for item in list(erp_field.list_mappings):
                crm_item = items_by_id.get(item.crm_item_id) if item.crm_item_id else None
                if crm_item is None or crm_item.list_name != target.list_name:
                    erp_field.list_mappings.remove(item)
    _audit("mapping.update", erp_field, connection, before=current.as_dict(), after=state.as_dict(),
           object_type="erp_field", **ctx, actor=actor)
    _guarded_commit(connection, problems_before, f"this change of {field_label(erp_field)}")
    return erp_field


def unmap(erp_field: ErpField, *, actor=None, **ctx) -> ErpField:
    """Clear the CRM field and both directions (the way out of *missing in ERP* / *missing in CRM*)."""
    show_search = erp_field.show_in_search and not erp_field.missing_in_erp
    show_gui = erp_field.show_in_gui and not erp_field.missing_in_erp
    return save_row(erp_field, MappingState(None, False, False, show_search, show_gui), actor=actor, **ctx)


def set_actor_type_active(config: ActorTypeConfig, on: bool, *, actor=None, **ctx) -> ActorTypeConfig:
    """The "Sync ERP <actor type> to CRM <record>" switch. Several actor types may sync to the same record type."""
    connection = config.connection
    if on and not config.supported:
        raise MappingError([f"The connector no longer offers {actor_label(config)}; it cannot be switched on."])
    if bool(config.is_active) == on:
        return config
    problems_before = _problems_now(connection)
    config.is_active = on
    _audit("mapping.actor_type", config, connection, before={"is_active": not on}, after={"is_active": on},
           object_type="actor_type_config", actor=actor, **ctx)
    _guarded_commit(connection, problems_before,
                    f"switching {'on' if on else 'off'} {actor_label(config)}")
    return config


def move_field(erp_field: ErpField, direction: int | str, *, actor=None, **ctx) -> bool:
    """Move a field in the rank order of its actor type: one place up (-1) or down (+1), or to the "top" or
    "bottom". Ranks are renumbered 1..n on the way. Returns False when it is already at that end."""
    config = erp_field.actor_type
    fields = ordered_fields(config)
    index = fields.index(erp_field)
    other = {"top": 0, "bottom": len(fields) - 1}.get(direction) if isinstance(direction, str) \
        else index + (1 if direction > 0 else -1)
    if other is None or other < 0 or other >= len(fields) or other == index:
        return False
    neighbour = fields[other]
    fields.insert(other, fields.pop(index))
    for position, f in enumerate(fields, start=1):
        f.rank = position
    _audit("rank.move", erp_field, config.connection,
           before={"position": index + 1, "swapped_with": None},
           after={"position": other + 1,
                  "swapped_with": field_label(neighbour) if abs(other - index) == 1 else None},
           object_type="erp_field", actor=actor, **ctx)
    db.session.commit()
    return True

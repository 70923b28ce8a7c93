"""Connection configuration: field mapping, list mapping, default values, rank and the activation rules they feed
(spec §1.6–1.10).

Everything an admin changes here goes through this module: the rules (which CRM field an ERP field may map to,
which direction is possible and why not), validation of a whole submitted row or form *before* anything is
written (nothing is ever saved half), the audit trail, and ``mapping_problems(connection)``, which
``portal.services.connections.activation_problems`` adds to the reasons an activation is refused.

Decisions (see docs/decisions.md, "Editing mappings while a connection is active"):

* Mappings, defaults, list mappings and rank may be edited while the connection is active. A change that would
  make the active connection invalid (it would add a reason to ``mapping_problems``) is refused, with the reason.
* Re-targeting a field (another CRM field, or a changed list item mapping) changes what the values already agreed
  on by the two sides (``Link.base``, keyed by ERP field key) mean; so the agreed value of that field is forgotten
  on every link of the actor type, and the next sync treats the field like one of a newly linked record. While a
  sync of the connection is queued or running such a change is refused (the run works on its own snapshot of the
  mapping and would write back base values in the old meaning).
* A Mandatory ERP field of an active actor type needs a value when the CRM creates an ERP actor: a direction to
  the ERP, a fixed default, or "ask user" (the user creating the actor must then fill it in). A ReadOnly field is
  assigned by the ERP and never needs one.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from sqlalchemy import select

from portal.connectors.client import ConnectorError
from portal.extensions import db
from portal.models import (
    ACTIVE_RUN_STATUSES,
    CRM_TYPE_LABELS,
    ActorTypeConfig,
    Connection,
    CrmField,
    CrmFieldType,
    ErpField,
    FieldAccess,
    FieldType,
    Link,
    ListItem,
    ListItemMapping,
    SyncRun,
    crm_field,
    crm_fields,
)
from portal.models.crm import LIST_LABELS
from portal.services import audit
from portal.services.actor_labels import actor_label
from portal.services.connectors import ServiceError, client_for
from portal.services.values import ConversionError, compatible, display, parse_input

NOT_WRITABLE_TYPES = frozenset({FieldType.LABEL, FieldType.PASSWORD})


class MappingError(ServiceError):
    """A refused change. ``details`` lists every reason; ``by_key`` ties reasons to rows or inputs."""

    def __init__(self, messages: list[str], by_key: Mapping[str, str] | None = None, field: str | None = None):
        super().__init__(" ".join(messages), field, list(messages))
        self.by_key = dict(by_key or {})


# ============================================================================================ small helpers

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


def sync_running(connection: Connection) -> bool:
    return db.session.scalar(
        select(SyncRun.id).where(SyncRun.connection_id == connection.id,
                                 SyncRun.status.in_(ACTIVE_RUN_STATUSES)).limit(1)) is not None


def _forget_agreed_value(config: ActorTypeConfig, erp_key: str) -> int:
    """Drop ``erp_key`` from the agreed values of every link of this actor type; returns how many changed."""
    changed = 0
    links = db.session.scalars(select(Link).where(Link.connection_id == config.connection_id,
                                                  Link.erp_actor_type == config.erp_actor_type)).all()
    for link in links:
        if link.base and erp_key in link.base:
            link.base = {k: v for k, v in link.base.items() if k != erp_key}
            changed += 1
    return changed


def _guarded_commit(connection: Connection, problems_before: list[str], what: str) -> None:
    """Commit the pending change, unless the connection is active and the change adds activation problems:
    then roll it back and refuse with those problems."""
    if connection.active:
        db.session.flush()
        before = set(problems_before)
        new = [p for p in mapping_problems(connection) if p not in before]
        if new:
            db.session.rollback()
            raise MappingError([f"The connection is active, and {what} would stop it from being valid: "
                                + " ".join(new) + " Deactivate the connection first, or fix that instead."])
    db.session.commit()


def _problems_now(connection: Connection) -> list[str]:
    return mapping_problems(connection) if connection.active else []


def _audit(action: str, erp_field_or_config, connection: Connection, *, before: dict, after: dict,
           object_type: str, secret: bool = False, **ctx) -> None:
    if isinstance(erp_field_or_config, ErpField):  # the audit names the actor type by its constant
        what = (f"{connection.name} / {erp_field_or_config.actor_type.erp_actor_type}: "
                f"“{field_label(erp_field_or_config)}”")
    else:
        what = f"{connection.name} / {erp_field_or_config.erp_actor_type}"
    audit.record(action, erp_field_or_config, before=before, after=after, object_type=object_type,
                 object_repr=what, secret_keys=frozenset({"default_value"}) if secret else frozenset(), **ctx)


# ============================================================================================ field mapping

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


# ============================================================================================ activation rules

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


# ============================================================================================ list mapping

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


# ============================================================================================ defaults

def default_rows(config: ActorTypeConfig) -> list[ErpField]:
    """The fields listed on the Defaults tab: those with a default, a question, or a mandatory flag."""
    return [f for f in ordered_fields(config) if f.has_default or f.ask_user or f.mandatory
            or f.access == FieldAccess.MANDATORY]


def can_have_default(erp_field: ErpField) -> bool:
    return (not erp_field.missing_in_erp and erp_field.access != FieldAccess.READ_ONLY
            and _writable_type(erp_field))


def default_candidates(config: ActorTypeConfig) -> list[ErpField]:
    """Fields the Add editor offers: writable ones without a default entry yet."""
    listed = {f.id for f in default_rows(config)}
    return [f for f in ordered_fields(config) if can_have_default(f) and f.id not in listed]


def default_list_texts(connection: Connection, fields: Iterable[ErpField]) -> dict[str, dict[str, str]]:
    """{list name: {key: text}} for the List defaults shown (GetListItems); a connector failure shows keys only."""
    wanted: dict[str, set[str]] = defaultdict(set)
    for f in fields:
        if f.field_type == FieldType.LIST and f.has_default and f.default_value not in (None, ""):
            wanted[f.list_name].add(str(f.default_value))
    texts: dict[str, dict[str, str]] = {}
    if not wanted:
        return texts
    with client_for(connection.connector, retries=1) as client:
        for list_name, keys in wanted.items():
            try:
                texts[list_name] = client.get_list_items(connection.guid, list_name, sorted(keys))
            except ConnectorError:
                texts[list_name] = {}
    return texts


def default_display(erp_field: ErpField, list_texts: Mapping[str, Mapping[str, str]] | None = None) -> str:
    if not erp_field.has_default:
        return ""
    return display(erp_field.field_type, erp_field.default_value, (list_texts or {}).get(erp_field.list_name))


def _default_snapshot(erp_field: ErpField) -> dict:
    return {"has_default": erp_field.has_default, "default_value": erp_field.default_value,
            "ask_user": erp_field.ask_user, "mandatory": erp_field.mandatory}


def _commit_default(erp_field: ErpField, connection: Connection, before: dict, problems_before: list[str],
                    what: str, *, actor=None, **ctx) -> ErpField:
    """Audit and commit the default-value settings just assigned to ``erp_field`` (nothing when unchanged)."""
    after = _default_snapshot(erp_field)
    if after == before:
        return erp_field
    _audit("default.update", erp_field, connection, before=before, after=after, object_type="erp_field",
           secret=erp_field.field_type == FieldType.PASSWORD, actor=actor, **ctx)
    _guarded_commit(connection, problems_before, what)
    return erp_field


def parse_default(erp_field: ErpField, text: str | None, *, erp_items: Mapping[str, str] | None = None):
    """The typed default value of ``text`` for ``erp_field`` (normalized ERP form). Raises ``ConversionError``."""
    value = parse_input(erp_field.field_type, text if text is not None else "")
    if erp_field.field_type == FieldType.CHECKBOX and value is None:
        value = False  # an unticked box is a real "no"
    if value is None:
        raise ConversionError("Enter a default value, or untick Set default value.")
    if isinstance(value, str) and erp_field.max_length and len(value) > erp_field.max_length:
        raise ConversionError(f"The ERP field holds at most {erp_field.max_length} characters.")
    if erp_field.field_type == FieldType.LIST and erp_items is not None and str(value) not in erp_items:
        raise ConversionError(f"“{value}” is not an item of the ERP list {erp_field.list_name} (any more).")
    return value


def save_default(erp_field: ErpField, *, set_default: bool, value_text: str | None, ask_user: bool,
                 mandatory: bool, actor=None, **ctx) -> ErpField:
    """Save the default-value settings of one field, all or nothing (errors keyed by input: value, mandatory…)."""
    connection = erp_field.actor_type.connection
    errors: dict[str, str] = {}
    if not can_have_default(erp_field):
        reason = ("the ERP no longer offers it" if erp_field.missing_in_erp else
                  "it is read-only in the ERP" if erp_field.access == FieldAccess.READ_ONLY else
                  f"a {erp_field.field_type} field is never written to the ERP")
        raise MappingError([f"{field_label(erp_field)} cannot have a default value: {reason}."], field="field")
    if erp_field.access == FieldAccess.MANDATORY:
        mandatory = True  # the connector says so: forced on
    value = None
    if set_default:
        erp_items = None
        if erp_field.field_type == FieldType.LIST:
            try:
                erp_items = erp_list(connection, erp_field.list_name)
            except ServiceError as exc:
                errors["value"] = exc.message
        if "value" not in errors:
            try:
                value = parse_default(erp_field, value_text, erp_items=erp_items)
            except ConversionError as exc:
                errors["value"] = str(exc)
    if mandatory and not (set_default or ask_user):
        errors["mandatory"] = ("A mandatory value needs a default value or Ask user for value"
                               + (" (the ERP requires this field)." if erp_field.access == FieldAccess.MANDATORY
                                  else "."))
    if errors:
        raise MappingError(list(errors.values()), by_key=errors)
    before = _default_snapshot(erp_field)
    problems_before = _problems_now(connection)
    erp_field.has_default = set_default
    erp_field.default_value = value if set_default else None
    erp_field.ask_user = ask_user
    erp_field.mandatory = mandatory
    return _commit_default(erp_field, connection, before, problems_before,
                           f"this default of {field_label(erp_field)}", actor=actor, **ctx)


def remove_default(erp_field: ErpField, *, actor=None, **ctx) -> ErpField:
    """Remove the default entry (the connector's Mandatory flag stays)."""
    connection = erp_field.actor_type.connection
    before = _default_snapshot(erp_field)
    problems_before = _problems_now(connection)
    erp_field.has_default, erp_field.default_value, erp_field.ask_user = False, None, False
    erp_field.mandatory = erp_field.access == FieldAccess.MANDATORY
    return _commit_default(erp_field, connection, before, problems_before,
                           f"removing the default of {field_label(erp_field)}", actor=actor, **ctx)


# ============================================================================================ rank

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

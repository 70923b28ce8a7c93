"""The Defaults tab: the values (or the question to the user) an ERP field gets when the CRM creates an ERP
actor — which fields are listed or can have one, how they are shown, parsed and saved."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping

from portal.connectors.client import ConnectorError
from portal.models import (
    ActorTypeConfig,
    Connection,
    ErpField,
    FieldAccess,
    FieldType,
)
from portal.services.connectors import ServiceError, client_for
from portal.services.mapping.list_mapping import erp_list
from portal.services.mapping.rules import MappingError, _writable_type, field_label, ordered_fields
from portal.services.mapping.saving import _audit, _guarded_commit, _problems_now
from portal.services.values import ConversionError, display, parse_input


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

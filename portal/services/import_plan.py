"""Import from ERP: what a plan is made of (issue #6), plain data that is safe across commits.

:class:`TypeSpec` is one ERP actor type of the connection as the import needs it (its mapped fields and their
prepared conversions); :class:`Planned` is the outcome for one actor and what would be written. The planner
(``portal.services.importer``) fills them, ``import_write`` writes them, the preview shows them.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from dataclasses import dataclass, field

from portal.models import CRM_MODELS, ActorTypeConfig, CrmType
from portal.services import import_rules as rules
from portal.services.import_convert import FieldConverter, base_plan, converters
from portal.services.import_write import NewListItem
from portal.services.sync.fieldmap import MappedField, mapped_fields

# What the import reads of an actor's existing link (import_write updates it by id).
LINK_COLUMNS = ("id", "crm_type", "crm_id", "erp_key", "base", "erp_last_modified")

OUTCOME_LABELS = {"new": "New", "update": "Update", "unchanged": "Unchanged", "skip": "Skip", "error": "Error"}


# -------------------------------------------------------------------------------------------- type specs


@dataclass
class TypeSpec:
    """One ERP actor type on the connection, as the import needs it (plain data, safe across commits)."""

    actor_type: str
    crm_type: str
    fields: list[MappedField]  # the mappings with a direction: what the link base covers
    write: list[MappedField]  # the mappings ERP -> CRM: what the import writes
    field_keys: list[str]  # GetActors FieldKeys
    erp_fields: dict[str, tuple[int, str, str]]  # field key -> (ErpField id, display name, list name)
    convert: dict[str, FieldConverter] = field(default_factory=dict)  # erp key -> its conversions (import_convert)

    @property
    def model(self):
        return CRM_MODELS[self.crm_type]

    @functools.cached_property
    def write_by_crm(self) -> dict[str, MappedField]:
        return {f.crm_key: f for f in self.write}

    @functools.cached_property
    def erp_key_by_crm(self) -> dict[str, str]:
        return {f.crm_key: f.erp_key for f in self.write}

    @functools.cached_property
    def converting(self) -> list[tuple[MappedField, FieldConverter]]:
        return [(f, self.convert[f.erp_key]) for f in self.fields]

    @functools.cached_property
    def base_plan(self) -> list[tuple]:
        return base_plan(self.fields, self.convert, {key: ids[0] for key, ids in self.erp_fields.items()})


def type_spec(config: ActorTypeConfig) -> TypeSpec:
    fields = []
    for f in mapped_fields(config):
        if f.to_crm or f.to_erp:
            # A private, mutable copy of the list map: items mapped during this import are added to it.
            fields.append(dataclasses.replace(f, list_map=dict(f.list_map)))
    write = [f for f in fields if f.to_crm]
    erp_fields = {f.field_key: (f.id, f.display_name or f.field_key, f.list_name or "") for f in config.fields}
    return TypeSpec(config.erp_actor_type, config.crm_type, fields, write, [f.erp_key for f in fields], erp_fields,
                    converters(fields))


# ---------------------------------------------------------------------------------------------- planned


@dataclass(frozen=True)
class Refused:
    """An ERP value the CRM cannot hold: not written (blank on a new record, unchanged on an existing one)."""

    erp_key: str
    crm_key: str
    reason: str  # 'E-mail: "post10@erp" is not a valid e-mail address'
    message: str  # the reason + "(left blank)" / "(left unchanged)"
    erp_text: str | None  # the ERP value, for the sync log
    crm_text: str | None  # what the CRM keeps (None on a new record)


@dataclass
class Planned:
    """The outcome for one actor, and what would be written."""

    spec: TypeSpec
    actor: dict
    outcome: str = "new"
    reason: str = ""
    record: rules.Row | None = None  # the existing CRM record (linked or matched), as a plain row
    link: rules.Row | None = None  # the existing link (LINK_COLUMNS of it)
    matched: bool = False  # an existing, unlinked CRM record was found by the duplicate rule
    erp_values: dict = field(default_factory=dict)  # normalized ERP values (the base's source)
    values: dict = field(default_factory=dict)  # crm attribute -> value to set (may hold NewListItem)
    changes: list[tuple[str, object, object]] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)  # (erp field key or "", message)
    notes: list[str] = field(default_factory=list)
    # values the CRM cannot hold (portal.services.crm_rules), left out of the write and reported
    refused: list[Refused] = field(default_factory=list)
    new_mappings: list[tuple[int, str, str, NewListItem | int]] = field(default_factory=list)
    company: tuple[int | None, str] | None = None  # persons: (CRM company id or None if new, its name)
    excluded: bool = False
    stale_link: rules.Row | None = None  # the actor's link to a CRM record that no longer exists (reused)
    company_name: str = ""  # persons without a parent: the company name the ERP gives (company_from_name)
    parent_base: str | None = None  # the ERP key of that company's link, when it has one (the link's parent)
    sources: dict = field(default_factory=dict)  # CRM field written from another field's ERP value -> ERP key

    @property
    def key(self) -> str:
        return self.actor["ErpKey"]

    @property
    def actor_type(self) -> str:
        return self.spec.actor_type

    @property
    def crm_type(self) -> str:
        return self.spec.crm_type

    @property
    def name(self) -> str:
        return actor_name(self.crm_type, self.values, self.record) or self.key

    @property
    def writes(self) -> bool:
        return self.outcome in ("new", "update", "unchanged") and not self.excluded

    @property
    def outcome_label(self) -> str:
        return OUTCOME_LABELS.get(self.outcome, self.outcome)


def actor_name(crm_type: str, values: Mapping, record=None) -> str:
    def get(attr):
        if attr in values and isinstance(values[attr], str):
            return values[attr]
        return getattr(record, attr, "") or "" if record is not None else ""

    if crm_type == CrmType.CONTACT:
        return " ".join(p for p in (get("first_name"), get("middle_name"), get("last_name")) if p)
    return get("name")

"""Import from ERP (spec §5, issue #6): bring ERP actors into the CRM as linked records that keep syncing.

Business rules only (no ``request``): which connections and actor types can be imported, the search criteria,
duplicate matching, what happens to a match, list values without a list mapping, persons under their company,
the preview, and the background executor.

The wizard's state is an :class:`ImportRequest` (plain JSON, see ``to_options``); the web layer carries it signed
between steps and stores it in ``SyncRun.options`` when the import starts. An import *is* a ``SyncRun`` of kind
``import``: the partial unique index on ``sync_run`` allows one queued-or-running run per connection, so the run
row is the connection's run lock and the sync engine cannot work on the connection while the import runs (and
vice versa). Automatic sync does not need to be turned off.

Execution (:func:`execute_import`), in batches of ``BATCH_SIZE`` actors:

1. resolve the selection (the chosen keys, or the search re-run server-side for "all results");
2. per batch: ``GetActors`` (no database transaction open) → :meth:`Importer.plan` (a few batched reads:
   links, records, duplicate candidates, parent links) → :meth:`Importer.apply` (records, links, list items,
   ``SyncChange`` rows, progress) → one commit. A record and its link are always committed together;
3. for companies "with their persons": the persons of the imported companies are found with
   ``SearchActorsAdvanced(ParentErpKey oneof …)`` (or ``SearchActorByParent`` when a connector does not support
   that) and imported the same way, after the companies, so they land under their company.

A connector failure stops the run: what was committed stays (records and their links), the remaining actors are
reported, and running the import again completes it: linked actors are found through their link and updated,
never duplicated.

Link base (the merge's "agreed" values): a mapped field where the CRM now holds the ERP's value gets that value.
A field where the two sides still differ (not written by the import: one-way CRM → ERP, "merge" kept the CRM's
value, a list value the CRM cannot hold) gets the CRM's value, so the next sync sees "changed in the ERP" and only
ever flows ERP → CRM where that direction is mapped: an import never causes a write to the ERP. For an actor
that was already linked, a differing field keeps its previous base (a pending CRM edit stays pending).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from sqlalchemy import func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from portal.connectors.client import ConnectorClient, ConnectorError
from portal.connectors.protocol import OPERATORS
from portal.database import utcnow
from portal.extensions import db
from portal.models import (
    ACTOR_CRM_TYPE,
    CRM_FIELDS,
    CRM_MODELS,
    ActorType,
    ActorTypeConfig,
    Company,
    Connection,
    Connector,
    CrmFieldType,
    CrmType,
    ErpField,
    FieldType,
    Link,
    LinkStatus,
    ListItem,
    ListItemMapping,
    RunKind,
    RunStatus,
    SyncChange,
    SyncRun,
    User,
    crm_field,
)
from portal.services.connectors import client_for
from portal.services.crm import Paging
from portal.services.crm_rules import MISSING, ListItemInfo, storable, storable_text, value_problem
from portal.services.sync import runs
from portal.services.sync.fieldmap import MappedField, crm_side, erp_side, mapped_fields
from portal.services.values import (
    ConversionError,
    UnmappedListItem,
    display,
    erp_to_crm,
    is_blank,
    number_text,
    parse_input,
    same_value,
)

log = logging.getLogger(__name__)

BATCH_SIZE = 200  # actors per GetActors call and per database transaction
PARENT_CHUNK = 500  # company keys per SearchActorsAdvanced(ParentErpKey oneof …)
MAX_EXPLICIT_KEYS = 2000  # rows ticked one by one; beyond that use "all results"
MAX_REPORTED = 200  # row problems kept in SyncRun.counts (all of them are in the sync log)
MAX_LIST_NAME = 120

COMPANY_TYPES = (ActorType.CUSTOMER, ActorType.SUPPLIER, ActorType.PARTNER)

MATCH_CHOICES: dict[str, dict[str, str]] = {
    CrmType.COMPANY: {"name": "Name", "name_department": "Name and department", "number": "Number",
                      "code": "Code", "vat_no": "VAT number", "none": "None: always add"},
    CrmType.CONTACT: {"name": "Name", "email": "E-mail", "mobile": "Mobile phone", "number": "Number",
                      "none": "None: always add"},
    CrmType.PROJECT: {"name": "Name", "number": "Number", "none": "None: always add"},
}
# The CRM attributes a rule compares; the first one is looked up in SQL, the rest compared in Python.
MATCH_ATTRS: dict[str, dict[str, tuple[str, ...]]] = {
    CrmType.COMPANY: {"name": ("name",), "name_department": ("name", "department"), "number": ("number",),
                      "code": ("code",), "vat_no": ("vat_no",)},
    CrmType.CONTACT: {"name": ("last_name", "first_name"), "email": ("email",), "mobile": ("phone_mobile",),
                      "number": ("number",)},
    CrmType.PROJECT: {"name": ("name",), "number": ("number",)},
}
PHONE_ATTRS = frozenset({"phone_mobile"})

ACTION_CHOICES = {
    "add": "Add anyway (a new record)",
    "merge": "Merge: fill the empty fields of the existing record",
    "replace": "Replace: overwrite the existing record's fields",
    "skip": "Skip the actor",
}
LIST_POLICY_CHOICES = {
    "add": "Add a new CRM list item (and map it)",
    "default": "Use a default list item",
    "blank": "Leave the field blank",
}
PERSON_POLICY_CHOICES = {
    "import_company": "Import them under their company (importing the company too when it is not in the CRM)",
    "skip": "Skip persons whose company is not in the CRM",
    "no_company": "Import them without a company when their company is not in the CRM",
}
OUTCOME_LABELS = {"new": "New", "update": "Update", "unchanged": "Unchanged", "skip": "Skip", "error": "Error"}
OPERATOR_LABELS = {
    "=": "Equals", "isnot": "Is not", "begins": "Starts with", "contains": "Contains", "ends": "Ends with",
    "notbegins": "Does not start with", "notcontains": "Does not contain", "notends": "Does not end with",
    "between": "Between", ">": "Greater than", "<": "Less than", ">=": "At least", "<=": "At most",
    "!=": "Is not", "oneof": "Is one of", "notoneof": "Is not one of", "before": "Before", "after": "After",
    "beforeOrEqual": "On or before", "afterOrEqual": "On or after",
}
RULE_NEW = "import: new record"
RULE_UPDATED = "import: updated"


class ImportProblem(ValueError):
    """A wizard input or precondition that is not met; ``message`` is for the admin, ``field`` names the input."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field


# ------------------------------------------------------------------------------------------------ settings


@dataclass
class ImportSettings:
    company_match: str = "name"
    company_action: str = "merge"
    contact_match: str = "name"
    contact_action: str = "merge"
    project_match: str = "name"
    project_action: str = "merge"
    list_policy: str = "blank"
    # "ActorType.FIELDKEY" -> CRM ListItem id used by list_policy "default"
    list_defaults: dict[str, int] = field(default_factory=dict)
    include_persons: bool = False
    person_policy: str = "import_company"

    def match(self, crm_type: str) -> str:
        return getattr(self, f"{crm_type}_match")

    def action(self, crm_type: str) -> str:
        return getattr(self, f"{crm_type}_action")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping | None) -> ImportSettings:
        data = dict(data or {})
        known = {f.name for f in dataclasses.fields(cls)}
        settings = cls(**{k: v for k, v in data.items() if k in known})
        settings.validate()
        return settings

    def validate(self) -> None:
        for crm_type in (CrmType.COMPANY, CrmType.CONTACT, CrmType.PROJECT):
            if self.match(crm_type) not in MATCH_CHOICES[crm_type]:
                raise ImportProblem("Choose how duplicates are found.", f"{crm_type}_match")
            if self.action(crm_type) not in ACTION_CHOICES:
                raise ImportProblem("Choose what to do with a duplicate.", f"{crm_type}_action")
        if self.list_policy not in LIST_POLICY_CHOICES:
            raise ImportProblem("Choose what to do with list values.", "list_policy")
        if self.person_policy not in PERSON_POLICY_CHOICES:
            raise ImportProblem("Choose what to do with persons.", "person_policy")
        self.include_persons = bool(self.include_persons)
        self.list_defaults = {str(k): int(v) for k, v in (self.list_defaults or {}).items() if v not in (None, "")}


@dataclass
class ImportRequest:
    """What to import and how: the wizard's state, stored as ``SyncRun.options``."""

    connection_id: int
    actor_type: str
    restrictions: list[dict] = field(default_factory=list)
    all_results: bool = False
    keys: list[str] = field(default_factory=list)
    excluded: list[str] = field(default_factory=list)  # "ActorType:ErpKey" unticked in the preview
    settings: ImportSettings = field(default_factory=ImportSettings)

    def to_options(self) -> dict:
        return {"connection_id": self.connection_id, "actor_type": self.actor_type,
                "restrictions": list(self.restrictions), "all_results": bool(self.all_results),
                "keys": list(self.keys), "excluded": list(self.excluded), "settings": self.settings.to_dict()}

    @classmethod
    def from_options(cls, options: Mapping) -> ImportRequest:
        return cls(connection_id=int(options["connection_id"]), actor_type=str(options["actor_type"]),
                   restrictions=list(options.get("restrictions") or []),
                   all_results=bool(options.get("all_results")), keys=[str(k) for k in options.get("keys") or []],
                   excluded=[str(k) for k in options.get("excluded") or []],
                   settings=ImportSettings.from_dict(options.get("settings")))

    def is_excluded(self, actor_type: str, erp_key: str) -> bool:
        return f"{actor_type}:{erp_key}" in self._excluded_set

    @functools.cached_property
    def _excluded_set(self) -> frozenset[str]:
        return frozenset(self.excluded)

    @property
    def crm_type(self) -> str:
        return ACTOR_CRM_TYPE.get(self.actor_type, CrmType.COMPANY)


# ------------------------------------------------------------------------------------- what can be imported


def _user_in_scope(connection: Connection, user: User | None) -> bool:
    if connection.all_access or user is None:
        return True
    group_ids = {g.id for g in user.groups}
    return any(row.user_id == user.id or (row.group_id is not None and row.group_id in group_ids)
               for row in connection.access if row.can_connect)


def import_connections(user: User | None = None) -> list[Connection]:
    """Active connections (on a live connector) the user may use, with at least one importable actor type."""
    rows = db.session.scalars(select(Connection).join(Connector, Connection.connector_id == Connector.id)
                              .where(Connection.active.is_(True), Connection.deleted.is_(False),
                                     Connector.deleted.is_(False))
                              .order_by(Connection.name)).all()
    return [c for c in rows if _user_in_scope(c, user) and importable_types(c)]


def _write_fields(config: ActorTypeConfig) -> list[MappedField]:
    return [f for f in mapped_fields(config) if f.to_crm]


def importable_types(connection: Connection) -> list[ActorTypeConfig]:
    """Actor types offered for import: mapping active, still supported, with searchable fields (spec §5.3) and
    at least one field mapped to the CRM."""
    return [c for c in connection.actor_types
            if c.is_active and c.supported and c.searchable_fields and c.erp_actor_type in ACTOR_CRM_TYPE
            and _write_fields(c)]


def get_import_connection(connection_id: int | None, user: User | None = None) -> Connection:
    connection = db.session.get(Connection, connection_id) if connection_id else None
    if connection is None or connection.deleted:
        raise ImportProblem("Choose an ERP connection.", "connection_id")
    if not connection.active or connection.connector.deleted:
        raise ImportProblem(f"{connection.name} is not active; activate it on the Sync tab first.", "connection_id")
    if not _user_in_scope(connection, user):
        raise ImportProblem(f"You are not in the scope of {connection.name}.", "connection_id")
    return connection


def get_import_type(connection: Connection, actor_type: str | None) -> ActorTypeConfig:
    for config in importable_types(connection):
        if config.erp_actor_type == actor_type:
            return config
    raise ImportProblem("Choose an actor type that can be imported from this connection.", "actor_type")


def persons_config(connection: Connection) -> ActorTypeConfig | None:
    """The Person actor type when its persons can be imported with their companies."""
    config = connection.actor_type(ActorType.PERSON)
    if config is None or not config.is_active or not config.supported or not _write_fields(config):
        return None
    return config


# ------------------------------------------------------------------------------------------- search criteria


@dataclass(frozen=True)
class SearchField:
    key: str
    label: str
    field_type: str
    list_name: str = ""

    @property
    def operators(self) -> list[tuple[str, str]]:
        return [(op, OPERATOR_LABELS.get(op, op)) for op in OPERATORS.get(self.field_type, OPERATORS["Text"])]

    @property
    def is_list(self) -> bool:
        return self.field_type == FieldType.LIST

    @property
    def input_type(self) -> str:
        return {FieldType.DATE: "date", FieldType.INTEGER: "number", FieldType.DOUBLE: "number"}.get(
            self.field_type, "text")


def search_fields(config: ActorTypeConfig) -> list[SearchField]:
    """The criteria grid's fields: the actor type's searchable fields, typed from the cached metadata."""
    by_key = {f.field_key: f for f in config.fields}
    result = []
    for key in config.searchable_fields:
        erp_field = by_key.get(key)
        if erp_field is None:
            result.append(SearchField(key, key, FieldType.TEXT))
            continue
        kind = erp_field.field_type if erp_field.field_type in OPERATORS else FieldType.TEXT
        result.append(SearchField(key, erp_field.display_name or key, kind, erp_field.list_name or ""))
    return result


def result_fields(config: ActorTypeConfig) -> list[ErpField]:
    """Columns of the search results: the fields marked Show in search, by rank."""
    fields = [f for f in config.fields if f.show_in_search and not f.missing_in_erp]
    return sorted(fields, key=lambda f: (f.rank, f.id or 0))


@dataclass
class Criterion:
    """One row of the criteria grid as typed (strings), plus its error."""

    field: str = ""
    operator: str = ""
    values: list[str] = dataclasses.field(default_factory=list)
    active: bool = True
    error: str = ""

    def to_dict(self) -> dict:
        return {"field": self.field, "operator": self.operator, "values": list(self.values), "active": self.active}

    @classmethod
    def from_dict(cls, data: Mapping) -> Criterion:
        return cls(field=str(data.get("field") or ""), operator=str(data.get("operator") or ""),
                   values=[str(v) for v in data.get("values") or []], active=bool(data.get("active", True)))


def build_restrictions(criteria: Sequence[Criterion], fields: Sequence[SearchField]) -> list[dict]:
    """SearchRestriction[] from the grid's active rows that have a value; sets ``error`` on bad rows and raises
    ImportProblem if any row is bad."""
    by_key = {f.key: f for f in fields}
    restrictions = []
    bad = False
    for row in criteria:
        row.error = ""
        if not row.active:
            continue
        spec = by_key.get(row.field)
        if spec is None:
            row.error = "Choose a field to search on."
            bad = True
            continue
        if row.operator not in dict(spec.operators):
            row.error = f"Choose an operator for {spec.label}."
            bad = True
            continue
        texts = [v.strip() for v in row.values]
        if not any(texts) and spec.field_type != FieldType.CHECKBOX:
            continue  # a row without a value is not a criterion (the grid says so)
        try:
            if spec.is_list:
                values = [t for t in texts if t]
            else:
                needed = 2 if row.operator == "between" else 1
                texts = (texts + ["", ""])[:needed]
                if spec.field_type == FieldType.CHECKBOX:
                    values = [parse_input(FieldType.CHECKBOX, texts[0] or "false")]
                else:
                    if any(not t for t in texts):
                        raise ConversionError(f"Enter {'two values' if needed == 2 else 'a value'} for "
                                              f"{spec.label}.")
                    values = [parse_input(spec.field_type, t) for t in texts]
        except ConversionError as exc:
            row.error = str(exc)
            bad = True
            continue
        restrictions.append({"FieldKey": spec.key, "Operator": row.operator, "Values": values})
    if bad:
        raise ImportProblem("Some search criteria are not valid.", "criteria")
    return restrictions


def field_list_items(connection: Connection, list_names: Iterable[str],
                     client: ConnectorClient | None = None) -> dict[str, dict[str, str]]:
    """GetList for each ERP list (for the criteria grid's pickers). Raises ConnectorError."""
    names = sorted({n for n in list_names if n})
    if not names:
        return {}
    guid = connection.guid
    own = client is None
    if own:
        client = client_for(connection.connector)
    try:
        db.session.commit()  # no transaction open while the connector is called
        return {name: client.get_list(guid, name) for name in names}
    finally:
        if own:
            client.close()


@dataclass
class SearchResult:
    actors: list[dict]
    columns: list[ErpField]
    list_texts: dict[str, dict[str, str]]

    @property
    def keys(self) -> list[str]:
        return [a["ErpKey"] for a in self.actors]

    def cell(self, actor: dict, column: ErpField) -> str:
        value = (actor.get("FieldValues") or {}).get(column.field_key)
        return display(column.field_type, value, self.list_texts.get(column.list_name))


def search(connection: Connection, config: ActorTypeConfig, restrictions: list[dict]) -> SearchResult:
    """SearchActorsAdvanced with the Show-in-search fields (SearchActorsAdvanced has no paging: the result is
    what it is; the grid pages it). Raises ConnectorError."""
    columns = result_fields(config)
    keys = [c.field_key for c in columns] or list(config.searchable_fields[:1])
    guid, actor_type = connection.guid, config.erp_actor_type
    with client_for(connection.connector) as client:
        db.session.commit()  # no transaction open while the connector is called
        actors = client.search_actors_advanced(guid, actor_type, restrictions, keys)
    return SearchResult(actors, columns, {})


def resolve_list_texts(connection: Connection, result: SearchResult, actors: Sequence[dict]) -> None:
    """Texts of the List cells of ``actors`` (one page) with GetListItems, one call per list."""
    wanted: dict[str, set[str]] = {}
    for column in result.columns:
        if column.field_type != FieldType.LIST or not column.list_name:
            continue
        for actor in actors:
            value = (actor.get("FieldValues") or {}).get(column.field_key)
            if value not in (None, ""):
                wanted.setdefault(column.list_name, set()).add(str(value))
    if not wanted:
        return
    guid = connection.guid
    with client_for(connection.connector) as client:
        db.session.commit()
        for list_name, item_keys in sorted(wanted.items()):
            result.list_texts.setdefault(list_name, {}).update(client.get_list_items(guid, list_name,
                                                                                     sorted(item_keys)))


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

    @property
    def model(self):
        return CRM_MODELS[self.crm_type]


def type_spec(config: ActorTypeConfig) -> TypeSpec:
    fields = []
    for f in mapped_fields(config):
        if f.to_crm or f.to_erp:
            # A private, mutable copy of the list map: items mapped during this import are added to it.
            fields.append(dataclasses.replace(f, list_map=dict(f.list_map)))
    write = [f for f in fields if f.to_crm]
    erp_fields = {f.field_key: (f.id, f.display_name or f.field_key, f.list_name or "") for f in config.fields}
    return TypeSpec(config.erp_actor_type, config.crm_type, fields, write, [f.erp_key for f in fields], erp_fields)


# ------------------------------------------------------------------------------------------------- planning


@dataclass
class NewListItem:
    """A CRM list item the import will create (list policy "add"); ``id`` is set once it is flushed."""

    list_name: str
    name: str
    id: int | None = None


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
    record: object | None = None  # the existing CRM record (linked or matched)
    link: Link | None = None  # the existing link
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
    stale_link: Link | None = None  # the actor's link to a CRM record that no longer exists (reused)

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


def _norm_text(value) -> str:
    return " ".join(str(value or "").split()).casefold()


def _norm_phone(value) -> str:
    text = str(value or "").strip()
    digits = re.sub(r"\D", "", text)
    return ("+" + digits) if text.startswith("+") and digits else digits


def _norm(attr: str, value) -> str:
    return _norm_phone(value) if attr in PHONE_ATTRS else _norm_text(value)


def _sql_key(column, attr: str):
    if attr in PHONE_ATTRS:
        expr = column
        for char in (" ", "-", "(", ")", ".", "/"):
            expr = func.replace(expr, char, "")
        return expr
    expr = func.lower(func.trim(column))
    for _ in range(2):  # runs of up to four spaces collapse to one, as _norm_text does
        expr = func.replace(expr, "  ", " ")
    return expr


class Importer:
    """Plans and applies the import of actors of one connection. One instance per run (or preview page)."""

    def __init__(self, connection: Connection, request: ImportRequest, *, run_id: int | None = None,
                 user_id: int | None = None, dry_run: bool = False, client: ConnectorClient | None = None):
        self.connection_id = connection.id
        self.guid = connection.guid
        self.request = request
        self.settings = request.settings
        self.run_id = run_id
        self.user_id = user_id
        self.dry_run = dry_run
        self.client = client
        self.specs: dict[str, TypeSpec] = {}
        for config in connection.actor_types:
            if config.is_active and config.supported and config.erp_actor_type in ACTOR_CRM_TYPE:
                spec = type_spec(config)
                if spec.write:
                    self.specs[config.erp_actor_type] = spec
        self.erp_list_texts: dict[str, dict[str, str]] = {}
        self.claimed: set[tuple[str, int]] = set()
        self.counts: dict[str, Counter] = {t: Counter() for t in (CrmType.COMPANY, CrmType.CONTACT, CrmType.PROJECT)}
        self.linked_existing = 0
        self.problems: list[dict] = []
        self.problem_count = 0
        self.refused: list[dict] = []  # records imported without some values (at most MAX_REPORTED listed)
        self.refused_count = 0  # values left out
        self.refused_records = 0
        self.skip_reasons: Counter = Counter()
        self.items_added = 0
        self.done = 0
        self.total = 0
        self._load_crm_lists()

    # -- caches --------------------------------------------------------------------------------------------

    def _load_crm_lists(self) -> None:
        self.list_item_names: dict[int, str] = {}
        self.list_items_by_name: dict[tuple[str, str], int] = {}
        rows = db.session.execute(select(ListItem.id, ListItem.list_name, ListItem.name, ListItem.deleted)
                                  .order_by(ListItem.deleted, ListItem.id)).all()
        for item_id, list_name, name, _deleted in rows:
            self.list_item_names[item_id] = name
            self.list_items_by_name.setdefault((list_name, name.casefold()), item_id)
        self.valid_items: dict[int, str] = {item_id: list_name for item_id, list_name, _n, _d in rows}
        # For crm_rules' list check (the items as the rules see them; no query per value).
        self.list_items_info: dict[int, ListItemInfo] = {
            item_id: ListItemInfo(list_name, name, bool(deleted)) for item_id, list_name, name, deleted in rows}

    def fetch_list_texts(self, client: ConnectorClient) -> None:
        """GetList for the ERP lists of every List field the import writes (texts for new CRM list items).
        Call with no transaction open."""
        if self.settings.list_policy != "add":
            return
        names = set()
        for spec in self.specs.values():
            for f in spec.write:
                if f.erp_type == FieldType.LIST:
                    names.add(spec.erp_fields.get(f.erp_key, (0, "", ""))[2])
        for name in sorted(n for n in names if n and n not in self.erp_list_texts):
            self.erp_list_texts[name] = client.get_list(self.guid, name)

    def spec_for(self, actor_type: str) -> TypeSpec | None:
        return self.specs.get(actor_type)

    # -- conversion ----------------------------------------------------------------------------------------

    def _convert(self, p: Planned, pending_items: dict) -> dict:
        """ERP values -> CRM values for the fields the import writes; fills p.errors and p.notes."""
        spec = p.spec
        raw = p.actor.get("FieldValues") or {}
        erp_values, erp_errors = erp_side(raw, spec.fields)
        p.erp_values = erp_values
        crm: dict = {}
        for f in spec.write:
            if f.erp_key in erp_errors:
                p.errors.append((f.erp_key, f"{f.erp_label or f.erp_key}: {erp_errors[f.erp_key]}"))
                continue
            value = erp_values.get(f.erp_key)
            try:
                crm[f.crm_key] = erp_to_crm(f.erp_type, f.crm_type, value, f.list_map, f.crm_max_length)
            except UnmappedListItem as exc:
                crm[f.crm_key] = self._unmapped(p, f, str(exc.key), pending_items)
            except ConversionError as exc:
                p.errors.append((f.erp_key, f"{f.erp_label or f.erp_key}: {exc}"))
        return crm

    def _unmapped(self, p: Planned, f: MappedField, item_key: str, pending_items: dict):
        """The CRM value for an ERP list item without a list mapping, by the list policy."""
        erp_field_id, _label, erp_list = p.spec.erp_fields.get(f.erp_key, (0, f.erp_label, ""))
        crm_spec = crm_field(p.crm_type, f.crm_key)
        crm_list = crm_spec.list_name if crm_spec is not None else None
        label = f.erp_label or f.erp_key
        if item_key in f.list_map:  # mapped to "No selection" on purpose
            return None
        policy = self.settings.list_policy
        if policy == "add" and crm_list:
            text = (self.erp_list_texts.get(erp_list, {}).get(item_key) or item_key).strip()[:MAX_LIST_NAME]
            existing = self.list_items_by_name.get((crm_list, text.casefold()))
            if existing is not None:
                p.new_mappings.append((erp_field_id, item_key, text, existing))
                p.notes.append(f"{label}: maps {item_key} to the existing list item {text}")
                return existing
            item = pending_items.get((crm_list, text.casefold()))
            if item is None:
                item = pending_items[(crm_list, text.casefold())] = NewListItem(crm_list, text)
            p.new_mappings.append((erp_field_id, item_key, text, item))
            p.notes.append(f"{label}: adds the list item {text}")
            return item
        if policy == "default":
            default = self.settings.list_defaults.get(f"{p.actor_type}.{f.erp_key}")
            if default is not None and self.valid_items.get(default) == crm_list:
                p.notes.append(f"{label}: {item_key} is not mapped; uses the default "
                               f"{self.list_item_names.get(default, default)}")
                return default
        p.notes.append(f"{label}: {item_key} is not mapped; left blank")
        return None

    # -- planning ------------------------------------------------------------------------------------------

    def plan(self, spec: TypeSpec, actors: Sequence[dict], *, pending_parents: Mapping | None = None,
             pending_items: dict | None = None) -> list[Planned]:
        """Decide every actor's outcome with a handful of batched queries (never one query per actor)."""
        pending_items = {} if pending_items is None else pending_items
        crm_type, model = spec.crm_type, spec.model
        planned = [Planned(spec, actor) for actor in actors]
        keys = [p.key for p in planned]
        links = {link.erp_key: link for link in db.session.scalars(
            select(Link).where(Link.connection_id == self.connection_id, Link.erp_actor_type == spec.actor_type,
                               Link.erp_key.in_(keys)))} if keys else {}
        linked_ids = [link.crm_id for link in links.values() if link.crm_type == crm_type]
        records = {r.id: r for r in db.session.scalars(select(model).where(model.id.in_(linked_ids)))} \
            if linked_ids else {}
        parents = self._parent_companies(planned) if crm_type == CrmType.CONTACT else {}

        for p in planned:
            p.excluded = self.request.is_excluded(spec.actor_type, p.key)
            p.values = self._convert(p, pending_items)
            link = links.get(p.key)
            if link is not None:
                record = records.get(link.crm_id) if link.crm_type == crm_type else None
                if record is None:  # a stale link (record gone): the actor is imported anew, the link reused
                    p.stale_link = link
                    p.notes.append("its old link pointed to a record that no longer exists")
                else:
                    p.link, p.record = link, record
            if crm_type == CrmType.CONTACT:
                self._resolve_parent(p, parents, pending_parents)
        self._match(spec, [p for p in planned if p.record is None and p.outcome not in ("skip", "error")
                           and not p.errors])
        for p in planned:
            self._decide(p)
        return planned

    def _parent_companies(self, planned: Sequence[Planned]) -> dict[tuple[str, str], tuple[int, str]]:
        wanted = {(p.actor.get("ParentActorType") or "", p.actor.get("ParentErpKey") or "") for p in planned}
        keys = sorted({key for _t, key in wanted if key})
        if not keys:
            return {}
        rows = db.session.execute(
            select(Link.erp_actor_type, Link.erp_key, Link.crm_id, Company.name)
            .join(Company, Company.id == Link.crm_id)
            .where(Link.connection_id == self.connection_id, Link.crm_type == CrmType.COMPANY,
                   Link.erp_key.in_(keys))).all()
        return {(t, k): (crm_id, name) for t, k, crm_id, name in rows}

    def _resolve_parent(self, p: Planned, parents: Mapping, pending_parents: Mapping | None) -> None:
        """A person's CRM company: its parent's link; in a preview also a company imported in the same run.
        Only a found company is written (company_id); otherwise the person policy decides."""
        parent_type = p.actor.get("ParentActorType") or ""
        parent_key = p.actor.get("ParentErpKey") or ""
        policy = self.settings.person_policy
        if not parent_key:
            if policy == "skip":
                p.outcome, p.reason = "skip", "it has no company in the ERP"
            return
        found = _by_parent(parents, parent_type, parent_key)
        if found is not None:
            p.company = found
            p.values["company_id"] = found[0]
            return
        pending = _by_parent(pending_parents or {}, parent_type, parent_key)
        if pending is not None:  # preview: the company is imported in the same run
            p.company = pending
            if pending[0] is not None:
                p.values["company_id"] = pending[0]
            else:
                p.notes.append(f"under the new company {pending[1]}")
            return
        where = f"{parent_type} {parent_key}".strip()
        if policy == "no_company":
            p.notes.append(f"its company ({where}) is not in the CRM: imported without a company")
            return
        if policy == "import_company" and self.dry_run and parent_type in self.specs:
            p.company = (None, where)
            p.notes.append(f"its company ({where}) is imported too")
            return
        p.outcome = "skip"
        p.reason = (f"its company ({where}) is not in the CRM" if policy == "skip"
                    else f"its company ({where}) could not be imported")

    def _match(self, spec: TypeSpec, candidates: list[Planned]) -> None:
        """Find an existing, unlinked CRM record for each actor by the duplicate rule (one query per batch)."""
        crm_type = spec.crm_type
        rule = self.settings.match(crm_type)
        action = self.settings.action(crm_type)
        if rule == "none" or action == "add" or not candidates:
            return
        attrs = MATCH_ATTRS[crm_type][rule]
        first = attrs[0]
        probes: dict[int, tuple] = {}
        for p in candidates:
            if is_blank(p.values.get(first)):
                continue
            if not all(storable(str(p.values.get(a) or "")) for a in attrs):
                continue  # no stored record can hold it, and PostgreSQL refuses it even in a query
            probes[id(p)] = tuple(_norm(a, p.values.get(a)) for a in attrs)
        if not probes:
            return
        model = spec.model
        column = getattr(model, first)
        wanted_raw = {str(p.values[first]).strip() for p in candidates if id(p) in probes}
        if first in PHONE_ATTRS:
            condition = _sql_key(column, first).in_({_norm_phone(v) for v in wanted_raw}
                                                    | {_norm_phone(v).lstrip("+") for v in wanted_raw})
        else:
            condition = or_(_sql_key(column, first).in_({" ".join(v.split()).lower() for v in wanted_raw}),
                            column.in_(wanted_raw))
        linked = select(Link.crm_id).where(Link.connection_id == self.connection_id, Link.crm_type == crm_type)
        rows = db.session.scalars(select(model).where(condition, model.id.not_in(linked)).order_by(model.id)).all()
        index: dict[tuple, list] = {}
        for record in rows:
            index.setdefault(tuple(_norm(a, getattr(record, a)) for a in attrs), []).append(record)
        for p in candidates:
            probe = probes.get(id(p))
            if probe is None:
                continue
            found = index.get(probe, [])
            if crm_type == CrmType.CONTACT and p.company is not None and p.company[0] is not None:
                found = [r for r in found if r.company_id == p.company[0]]
            elif crm_type == CrmType.CONTACT and p.company is not None:
                found = []  # under a company that is new in this import: nothing can match
            found = [r for r in found if (crm_type, r.id) not in self.claimed]
            if found:
                p.record, p.matched = found[0], True
                if len(found) > 1:
                    p.notes.append(f"{len(found)} records match; the oldest is used")
                if action != "skip":
                    self.claimed.add((crm_type, found[0].id))

    def _decide(self, p: Planned) -> None:
        crm_type = p.crm_type
        action = self.settings.action(crm_type)
        if p.errors:
            p.outcome = "error"
            p.reason = "; ".join(message for _k, message in p.errors)
            return
        if p.outcome == "skip":
            return
        if p.record is not None and p.link is None and p.matched and action == "skip":
            p.outcome = "skip"
            p.reason = f"matches the existing {crm_type} {_record_name(p.record)}"
            return
        if p.record is None:
            p.outcome = "new"
            for item in self._refuse(p, {k: v for k, v in p.values.items() if not is_blank(v)}, None):
                p.values[item.crm_key] = _EMPTY[crm_type].get(item.crm_key)
            # an unticked checkbox is what a new record has anyway: not listed as a change
            p.changes = [(k, None, v) for k, v in p.values.items() if not is_blank(v) and v is not False]
            problem = _required_problem(crm_type, p.values, None)
        else:
            # Linked actors are updated (merge keeps filling empty fields only); a matched record is merged
            # or replaced as chosen.
            merge = action == "merge"
            changes = []
            for key, new in p.values.items():
                old = getattr(p.record, key)
                if not isinstance(new, NewListItem) and same_value(old, new):
                    continue
                if merge and (not is_blank(old) or is_blank(new)):
                    continue
                changes.append((key, old, new))
            refused = {item.crm_key for item in self._refuse(p, {k: n for k, _o, n in changes}, p.record)}
            for key in refused:
                p.values.pop(key, None)
            p.changes = [c for c in changes if c[0] not in refused]
            changes = p.changes
            p.outcome = "update" if changes else "unchanged"
            if p.matched:
                p.notes.append(f"links the existing {crm_type} {_record_name(p.record)}")
            problem = _required_problem(crm_type, {k: n for k, _o, n in changes}, p.record)
        if problem:
            p.outcome = "error"
            # The record is not imported at all: its refused values are part of the error, not "left blank".
            p.errors.extend((item.erp_key, item.reason) for item in p.refused)
            p.errors.append(("", problem))
            p.reason = "; ".join(message for _k, message in p.errors)
            left_out = {item.message for item in p.refused}
            p.notes = [note for note in p.notes if note not in left_out]
            p.refused = []

    def _refuse(self, p: Planned, values: Mapping, record) -> list[Refused]:
        """The values (non-blank, about to be written) the CRM cannot hold (portal.services.crm_rules): noted on
        ``p`` and returned; the caller leaves them out. A value equal to the record's is accepted."""
        by_crm = {f.crm_key: f for f in p.spec.write}
        found = []
        for key, value in values.items():
            f = by_crm.get(key)
            if f is None or isinstance(value, NewListItem) or is_blank(value):
                continue  # company_id, list items this import creates; blank required fields: _required_problem
            current = getattr(record, key) if record is not None else MISSING
            problem = value_problem(p.crm_type, key, value, current=current, list_items=self.list_items_info)
            if problem is None:
                continue
            erp_value = p.erp_values.get(f.erp_key)
            erp_text = storable_text(display(f.erp_type, erp_value)) if erp_value is not None else None
            crm_text = self.text(p.crm_type, key, current) if record is not None else None
            kept = "left unchanged" if record is not None else "left blank"
            reason = f"{problem.label}: {problem.reason}"
            item = Refused(f.erp_key, key, reason, f"{reason} ({kept})", erp_text,
                           storable_text(crm_text) if crm_text is not None else None)
            p.refused.append(item)
            p.notes.append(item.message)
            found.append(item)
        return found

    # -- applying ------------------------------------------------------------------------------------------

    def apply(self, planned: Sequence[Planned]) -> None:
        """Write one batch in the current transaction: list items, records, links, change log. No commit."""
        now = utcnow()
        # List items first (the records refer to them).
        new_items = {}
        for p in planned:
            if p.writes:
                for _fid, _key, _text, target in p.new_mappings:
                    if isinstance(target, NewListItem) and target.id is None:
                        new_items[(target.list_name, target.name.casefold())] = target
        if new_items:
            self.items_added += len(new_items)
            rows = {k: ListItem(list_name=item.list_name, name=item.name, rank=999) for k, item in new_items.items()}
            db.session.add_all(rows.values())
            db.session.flush()
            for k, row in rows.items():
                new_items[k].id = row.id
        seen_mappings = set()
        for p in planned:
            if not p.writes:
                continue
            for fid, key, text, target in p.new_mappings:
                if (fid, key) in seen_mappings or not fid:
                    continue
                seen_mappings.add((fid, key))
                crm_id = target.id if isinstance(target, NewListItem) else target
                db.session.add(ListItemMapping(erp_field_id=fid, erp_item_key=key, erp_item_text=text,
                                               crm_item_id=crm_id))
        # Records.
        for p in planned:
            if not p.writes:
                continue
            values = {k: (v.id if isinstance(v, NewListItem) else v) for k, v in p.values.items()}
            if p.outcome == "new":
                p.record = p.spec.model(**values)
                db.session.add(p.record)
            else:
                for key, _old, new in p.changes:
                    setattr(p.record, key, new.id if isinstance(new, NewListItem) else new)
        db.session.flush()
        # Links (the bulk equivalent of links.create_link: both sides were checked free by plan()).
        for p in planned:
            if not p.writes:
                continue
            base = self._base(p)
            actor = p.actor
            if p.link is None and p.stale_link is not None:
                p.link = p.stale_link
                p.link.crm_type, p.link.crm_id, p.link.base = p.crm_type, p.record.id, base
                p.link.parent_erp_key = actor.get("ParentErpKey") or None
                p.link.erp_last_modified = actor.get("LastModified") or None
                p.link.status, p.link.status_message = LinkStatus.OK, ""
                p.link.last_synced_at, p.link.crm_synced_at = now, p.record.updated_at
                p.link.last_result = "Imported from the ERP"
                p.link.import_run_id = self.run_id  # re-pointed to the new record: undo treats it as this run's
            elif p.link is None:
                p.link = Link(connection_id=self.connection_id, crm_type=p.crm_type, crm_id=p.record.id,
                              erp_actor_type=p.actor_type, erp_key=p.key,
                              parent_erp_key=actor.get("ParentErpKey") or None,
                              erp_last_modified=actor.get("LastModified") or None, base=base, status=LinkStatus.OK,
                              last_synced_at=now, crm_synced_at=p.record.updated_at,
                              last_result="Imported from the ERP", created_by_id=self.user_id,
                              import_run_id=self.run_id)  # what undo of this run may remove (import_undo)
                db.session.add(p.link)
            else:
                link = p.link
                link.base = base
                link.parent_erp_key = actor.get("ParentErpKey") or None
                link.erp_last_modified = actor.get("LastModified") or link.erp_last_modified
                link.status, link.status_message = LinkStatus.OK, ""
                link.last_synced_at, link.crm_synced_at = now, p.record.updated_at
                link.last_result = "Updated by an import from the ERP"
        db.session.flush()
        self._log_changes(planned, now)

    def _base(self, p: Planned) -> dict:
        crm_now, crm_errors = crm_side(p.record, p.spec.fields, erp_now=p.erp_values)
        old = dict(p.link.base or {}) if p.link is not None else {}
        base = {}
        mapped_now = {(fid, key): (t.id if isinstance(t, NewListItem) else t) for fid, key, _x, t in p.new_mappings}
        for f in p.spec.fields:
            key = f.erp_key
            if key in crm_errors:
                fid = p.spec.erp_fields.get(key, (0,))[0]
                erp_value = p.erp_values.get(key)
                if erp_value is not None and mapped_now.get((fid, erp_value)) == getattr(p.record, f.crm_key):
                    base[key] = erp_value  # a list item mapped by this import: both sides agree
                elif key in old:
                    base[key] = old[key]
                continue
            if key in p.erp_values and same_value(crm_now.get(key), p.erp_values.get(key)):
                base[key] = p.erp_values[key]
            elif p.link is not None:
                if key in old:
                    base[key] = old[key]
            else:
                base[key] = crm_now.get(key)
        return base

    def _log_changes(self, planned: Sequence[Planned], now) -> None:
        rows = []
        for p in planned:
            common = dict(run_id=self.run_id, connection_id=self.connection_id, crm_type=p.crm_type,
                          erp_actor_type=p.actor_type, erp_key=p.key, at=now)
            if p.outcome == "error":
                for erp_key, message in p.errors or [("", p.reason)]:
                    rows.append(dict(common, link_id=p.link.id if p.link else None,
                                     crm_id=getattr(p.record, "id", None) or 0, direction="error",
                                     erp_field_key=erp_key, crm_field_key="", old_value=None, new_value=None,
                                     conflict=False, other_value=None, rule=message[:2000]))
                continue
            if not p.writes:
                continue
            for item in p.refused:  # what the CRM could not hold: the ERP value, and what the CRM kept
                rows.append(dict(common, link_id=p.link.id, crm_id=p.record.id, direction="error",
                                 erp_field_key=item.erp_key, crm_field_key=item.crm_key, old_value=item.crm_text,
                                 new_value=item.erp_text, conflict=False, other_value=None,
                                 rule=item.message[:2000]))
            by_crm = {f.crm_key: f.erp_key for f in p.spec.write}
            rule = RULE_NEW if p.outcome == "new" else RULE_UPDATED
            for key, old, new in p.changes:
                rows.append(dict(common, link_id=p.link.id, crm_id=p.record.id, direction="to_crm",
                                 erp_field_key=by_crm.get(key, "ParentErpKey" if key == "company_id" else ""),
                                 crm_field_key=key, old_value=self.text(p.crm_type, key, old),
                                 new_value=self.text(p.crm_type, key, new, p), conflict=False, other_value=None,
                                 rule=rule))
        if rows:  # Core executemany: the ORM's per-row bulk bookkeeping is not needed for log rows
            db.session.connection().execute(insert(SyncChange.__table__), rows)

    def text(self, crm_type: str, key: str, value, p: Planned | None = None) -> str | None:
        """A CRM value as text for the change log and the preview."""
        if isinstance(value, NewListItem):
            return value.name
        if key == "company_id" and p is not None and p.company is not None:
            return p.company[1]
        if value is None:
            return None
        if key == "company_id":
            return f"#{value}"
        if key in _LIST_KEYS[crm_type]:
            return self.list_item_names.get(value, f"#{value}")
        if hasattr(value, "isoformat"):
            return value.isoformat()
        if isinstance(value, bool):
            return "Yes" if value else "No"
        if isinstance(value, int | float):
            try:
                return number_text(value)
            except ValueError:
                return str(value)
        return str(value)

    def count(self, planned: Sequence[Planned]) -> None:
        for p in planned:
            self._count(p)

    def release(self, planned: Sequence[Planned]) -> None:
        """Forget the claims of a batch that was rolled back (its matches may be used again)."""
        for p in planned:
            if p.matched and p.record is not None:
                self.claimed.discard((p.crm_type, p.record.id))

    def _count(self, p: Planned) -> None:
        if p.excluded:
            return
        self.counts[p.crm_type][p.outcome] += 1
        if p.matched and p.writes:
            self.linked_existing += 1
        if p.outcome == "skip":
            self.skip_reasons[_reason_kind(p.reason)] += 1
        if p.outcome == "error":
            self.report(p.actor_type, p.key, p.name, p.reason)
        elif p.writes and p.refused:
            self.refused_count += len(p.refused)
            self.refused_records += 1
            if len(self.refused) < MAX_REPORTED:
                self.refused.append({"actor_type": p.actor_type, "erp_key": p.key, "name": p.name,
                                     "message": "; ".join(item.message for item in p.refused),
                                     "fields": [item.crm_key for item in p.refused]})

    def report(self, actor_type: str, erp_key: str, name: str, message: str) -> None:
        self.problem_count += 1
        if len(self.problems) < MAX_REPORTED:
            self.problems.append({"actor_type": actor_type, "erp_key": erp_key, "name": name, "message": message})

    def after_commit(self, planned: Sequence[Planned]) -> None:
        """Make the items and mappings this batch created known to the next batches."""
        for p in planned:
            if not p.writes:
                continue
            for fid, key, _text, target in p.new_mappings:
                crm_id = target.id if isinstance(target, NewListItem) else target
                if isinstance(target, NewListItem):
                    self.list_items_by_name[(target.list_name, target.name.casefold())] = crm_id
                    self.list_item_names[crm_id] = target.name
                    self.valid_items[crm_id] = target.list_name
                    self.list_items_info[crm_id] = ListItemInfo(target.list_name, target.name, False)
                for f in p.spec.fields:
                    if p.spec.erp_fields.get(f.erp_key, (0,))[0] == fid:
                        f.list_map[key] = crm_id  # type: ignore[index]

    # -- view helpers --------------------------------------------------------------------------------------

    def describe(self, p: Planned) -> list[tuple[str, str, str]]:
        """(label, old, new) of the fields the import would write, for the preview."""
        labels = {c.key: c.label for c in CRM_FIELDS[p.crm_type]}
        labels["company_id"] = "Company"
        rows = []
        for key, old, new in p.changes:
            new_text = self.text(p.crm_type, key, new, p) or ""
            if isinstance(new, NewListItem):
                new_text += " (new list item)"
            rows.append((labels.get(key, key), self.text(p.crm_type, key, old) or "", new_text))
        return rows

    def counts_json(self) -> dict:
        return {
            "by_type": {t: dict(c) for t, c in self.counts.items() if c},
            "new": sum(c["new"] for c in self.counts.values()),
            "updated": sum(c["update"] for c in self.counts.values()),
            "unchanged": sum(c["unchanged"] for c in self.counts.values()),
            "skipped": sum(c["skip"] for c in self.counts.values()),
            "errors": sum(c["error"] for c in self.counts.values()),
            "linked_existing": self.linked_existing,
            "list_items_added": self.items_added,
            "skip_reasons": dict(self.skip_reasons),
            "problems": list(self.problems),
            "problem_count": self.problem_count,
            # Records imported without some ERP values the CRM cannot hold (one entry per record; the count is
            # of values). Each value is also an error row, with the ERP value, in the sync log.
            "values_refused": list(self.refused),
            "values_refused_count": self.refused_count,
            "values_refused_records": self.refused_records,
        }


_LIST_KEYS = {crm_type: frozenset(c.key for c in specs if c.type == CrmFieldType.LIST)
              for crm_type, specs in CRM_FIELDS.items()}
_TEXT_KEYS = {crm_type: frozenset(c.key for c in specs if c.type in (CrmFieldType.TEXT, CrmFieldType.LONGTEXT))
              for crm_type, specs in CRM_FIELDS.items()}
# What a new record holds in a field left empty: '' for text, False for a checkbox (never blank), else None
_EMPTY = {crm_type: {c.key: "" if c.key in _TEXT_KEYS[crm_type] else False if c.type == CrmFieldType.CHECKBOX
                     else None for c in specs}
          for crm_type, specs in CRM_FIELDS.items()}


def _by_parent(parents: Mapping, parent_type: str, parent_key: str):
    found = parents.get((parent_type, parent_key))
    if found is None and not parent_type:
        found = next((v for (_t, k), v in parents.items() if k == parent_key), None)
    return found


def _record_name(record) -> str:
    return getattr(record, "display_name", None) or f"#{record.id}"


def _reason_kind(reason: str) -> str:
    if reason.startswith("matches the existing"):
        return "duplicate skipped"
    if "company" in reason:
        return "company not in the CRM"
    if "no longer" in reason:
        return "no longer in the ERP"
    return reason[:80]


def _required_problem(crm_type: str, values: Mapping, record) -> str:
    def value(attr):
        if attr in values:
            return values[attr]
        return getattr(record, attr, "") if record is not None else ""

    if crm_type == CrmType.CONTACT:
        if is_blank(value("first_name")) and is_blank(value("last_name")):
            return "A contact needs a first name or a last name."
        return ""
    for spec in CRM_FIELDS[crm_type]:
        if spec.required and is_blank(value(spec.key)):
            return f"{spec.label} is blank, and a {crm_type} needs one."
    return ""


# -------------------------------------------------------------------------------------------------- preview


@dataclass
class PreviewRow:
    planned: Planned
    fields: list[tuple[str, str, str]]
    children: list[PreviewRow] = field(default_factory=list)


@dataclass
class PreviewPage(Paging):
    rows: list[PreviewRow]
    total: int
    page: int
    per_page: int
    missing: list[str]
    notes: list[str]
    counts: Counter


def selected_keys(connection: Connection, request: ImportRequest, client: ConnectorClient) -> list[str]:
    """The actors to import: the chosen keys, or every result of the search (re-run now). Excluded keys stay in
    the list (the preview shows them unticked). Call with no transaction open."""
    if request.all_results:
        config = connection.actor_type(request.actor_type)
        columns = result_fields(config) if config is not None else []
        probe = [columns[0].field_key] if columns else list((config.searchable_fields if config else [])[:1])
        guid = connection.guid
        db.session.commit()
        actors = client.search_actors_advanced(guid, request.actor_type, request.restrictions, probe)
        keys = [a["ErpKey"] for a in actors]
    else:
        keys = list(request.keys)
    return list(dict.fromkeys(k for k in keys if isinstance(k, str) and k))


def preview(connection: Connection, request: ImportRequest, page: int = 1, per_page: int = 25) -> PreviewPage:
    """The outcome of one page of the selection (and, with "include persons", of their persons). Raises
    ConnectorError. Reads only."""
    client = client_for(connection.connector)
    try:
        importer = Importer(connection, request, dry_run=True, client=client)
        spec = importer.spec_for(request.actor_type)
        if spec is None:
            raise ImportProblem("This actor type cannot be imported from this connection any more.")
        db.session.commit()
        importer.fetch_list_texts(client)
        keys = selected_keys(connection, request, client)
        total = len(keys)
        page = max(1, min(page, max(1, -(-total // per_page))))
        page_keys = keys[(page - 1) * per_page: page * per_page]
        db.session.commit()
        actors = client.get_actors(importer.guid, request.actor_type, page_keys, spec.field_keys) if page_keys \
            else []
        found = {a["ErpKey"] for a in actors}
        missing = [k for k in page_keys if k not in found]
        order = {k: i for i, k in enumerate(page_keys)}
        actors.sort(key=lambda a: order.get(a["ErpKey"], 0))
        pending_items: dict = {}
        planned = importer.plan(spec, actors, pending_items=pending_items)
        rows = [PreviewRow(p, importer.describe(p)) for p in planned]
        notes: list[str] = []
        person_spec = importer.spec_for(ActorType.PERSON)
        if spec.crm_type == CrmType.COMPANY and request.settings.include_persons and person_spec is not None:
            parent_keys = [p.key for p in planned if not p.excluded]
            db.session.commit()
            persons = find_persons(client, importer.guid, request.actor_type, parent_keys, person_spec.field_keys)
            pending = {}
            for p in planned:
                if p.writes and not p.excluded:
                    pending[(p.actor_type, p.key)] = (getattr(p.record, "id", None), p.name)
            planned_persons = importer.plan(person_spec, persons, pending_parents=pending,
                                            pending_items=pending_items)
            by_parent: dict[str, list[PreviewRow]] = {}
            for child in planned_persons:
                by_parent.setdefault(child.actor.get("ParentErpKey") or "", []).append(
                    PreviewRow(child, importer.describe(child)))
            for row in rows:
                row.children = by_parent.get(row.planned.key, [])
        counts: Counter = Counter()
        for row in rows:
            for item in [row, *row.children]:
                if not item.planned.excluded:
                    counts[item.planned.outcome] += 1
        if missing:
            notes.append(f"{len(missing)} selected actor(s) are no longer in the ERP.")
        return PreviewPage(rows, total, page, per_page, missing, notes, counts)
    finally:
        client.close()
        db.session.rollback()  # a preview never writes


def find_persons(client: ConnectorClient, guid: str, parent_type: str, parent_keys: Sequence[str],
                 field_keys: Sequence[str]) -> list[dict]:
    """The persons of these companies: SearchActorsAdvanced(ParentErpKey oneof …) in chunks, or
    SearchActorByParent per company for connectors that refuse that restriction."""
    by_parent = False  # the connector refused ParentErpKey oneof: ask per company from then on
    result: list[dict] = []
    keys = list(dict.fromkeys(parent_keys))
    for start in range(0, len(keys), PARENT_CHUNK):
        chunk = keys[start:start + PARENT_CHUNK]
        wanted = set(chunk)
        if not by_parent:
            try:
                found = client.search_actors_advanced(
                    guid, ActorType.PERSON,
                    [{"FieldKey": "ParentErpKey", "Operator": "oneof", "Values": chunk}], list(field_keys))
                result.extend(a for a in found if a.get("ParentErpKey") in wanted
                              and (a.get("ParentActorType") or parent_type) == parent_type)
                continue
            except ConnectorError as exc:
                if exc.transient:
                    raise
                log.info("connector refused ParentErpKey oneof (%s); searching persons per company", exc.error_code)
                by_parent = True
        for key in chunk:
            result.extend(client.search_actor_by_parent(guid, ActorType.PERSON, "", parent_type, key,
                                                        list(field_keys)))
    return list({a["ErpKey"]: a for a in result}.values())


# ------------------------------------------------------------------------------------------------- the run


class RunBusy(ImportProblem):
    """Another run (a sync or an import) holds the connection's run lock."""

    def __init__(self, run: SyncRun):
        super().__init__(runs.describe_busy(run))
        self.run = run


def start_import(connection: Connection, request: ImportRequest, *, actor: User | None = None,
                 request_id: str = "", ip: str = "") -> SyncRun:
    """Queue the import (taking the connection's run lock) and hand it to the background worker.
    Raises RunBusy when a sync or another import is active on the connection."""
    from portal.services import audit

    if not request.all_results and not request.keys:
        raise ImportProblem("Select at least one actor to import.")
    if len(request.keys) > MAX_EXPLICIT_KEYS:
        raise ImportProblem(f"Tick at most {MAX_EXPLICIT_KEYS} rows, or select all results.")
    options = request.to_options()
    try:
        run, created = runs.request_run(connection.id, kind=RunKind.IMPORT, trigger="manual", requested_by=actor,
                                        options=options)
    except runs.RunError as exc:
        raise ImportProblem(str(exc)) from exc
    if not created:
        raise RunBusy(run)
    audit.record("import.start", connection, after={"run": run.id, "actor_type": request.actor_type,
                                                    "selection": "all results" if request.all_results
                                                    else f"{len(request.keys)} actor(s)",
                                                    "excluded": len(request.excluded),
                                                    "settings": request.settings.to_dict()},
                 actor=actor, request_id=request_id, ip=ip)
    db.session.commit()
    submit(run.id)
    return run


def submit(run_id: int) -> bool:
    """Give the run to the scheduler of this process (jobs.tasks.run_cycle → engine.execute_run → execute_import);
    without one, the dispatcher sweep picks the queued run up."""
    return runs.submit([run_id])


def rerun(run: SyncRun, *, actor: User | None = None, request_id: str = "", ip: str = "") -> SyncRun:
    """Run a finished import again with the same options (safe: linked actors are updated, never duplicated)."""
    request = ImportRequest.from_options(run.options)
    connection = get_import_connection(run.connection_id, actor)
    get_import_type(connection, request.actor_type)
    return start_import(connection, request, actor=actor, request_id=request_id, ip=ip)


class _RunState:
    """Progress and counts of the running import, written with each batch (same transaction)."""

    def __init__(self, run_id: int, importer: Importer):
        self.run_id = run_id
        self.importer = importer

    def write(self, message: str | None = None) -> None:
        """Progress + heartbeat, in the batch's transaction; raises RunAbandoned when the reaper gave the run up
        (the batch is then rolled back: nothing is written by a run that no longer holds the lock)."""
        imp = self.importer
        values = dict(progress_done=imp.done, progress_total=max(imp.total, imp.done), heartbeat_at=utcnow(),
                      counts=imp.counts_json())
        if message is not None:
            values["message"] = message
        result = db.session.execute(update(SyncRun).where(SyncRun.id == self.run_id,
                                                          SyncRun.status == RunStatus.RUNNING).values(**values)
                                    .execution_options(synchronize_session=False))
        if result.rowcount != 1:
            raise RunAbandoned()


class RunAbandoned(Exception):
    """The run is no longer 'running' (the reaper failed it): stop without writing more."""


def execute_import(run_id: int) -> str | None:
    """Run a queued import (the background job's entry point; engine.execute_run hands kind 'import' runs here).
    Returns the final status, or None when the run could not be claimed (gone, taken or finished)."""
    run = db.session.get(SyncRun, run_id)
    if run is None or run.kind != RunKind.IMPORT:
        db.session.rollback()
        return None
    db.session.commit()
    if not runs.claim(run_id):
        return None
    run = db.session.get(SyncRun, run_id)
    connection = db.session.get(Connection, run.connection_id)
    try:
        request = ImportRequest.from_options(run.options or {})
        if connection is None or connection.deleted:
            raise ImportProblem("The connection no longer exists.")
    except (ImportProblem, KeyError, ValueError, TypeError) as exc:
        _finish(run_id, RunStatus.FAILED, f"The import could not start: {exc}", {}, error=str(exc))
        return RunStatus.FAILED
    client = client_for(connection.connector)
    importer = Importer(connection, request, run_id=run_id, user_id=run.requested_by_id, client=client)
    state = _RunState(run_id, importer)
    remaining: list[str] = []
    persons_pending = False
    error_message = ""
    try:
        spec = importer.spec_for(request.actor_type)
        if spec is None:
            raise ImportProblem(f"{request.actor_type} actors are no longer set up to sync to the CRM.")
        db.session.commit()
        importer.fetch_list_texts(client)
        keys = [k for k in selected_keys(connection, request, client)
                if not request.is_excluded(request.actor_type, k)]
        importer.total = len(keys)
        state.write(f"Importing {len(keys)} {request.actor_type} actor(s)")
        db.session.commit()
        remaining = list(keys)
        if spec.crm_type == CrmType.CONTACT:
            _import_persons(importer, state, spec, keys, remaining)
        else:
            _import_batches(importer, state, spec, keys, remaining)
            person_spec = importer.spec_for(ActorType.PERSON)
            if spec.crm_type == CrmType.COMPANY and request.settings.include_persons and person_spec is not None:
                persons_pending = True
                db.session.commit()
                persons = find_persons(client, importer.guid, request.actor_type, keys, person_spec.field_keys[:1])
                person_keys = [a["ErpKey"] for a in persons
                               if not request.is_excluded(ActorType.PERSON, a["ErpKey"])]
                importer.total += len(person_keys)
                remaining = list(person_keys)
                state.write(f"Importing {len(person_keys)} person(s) of the imported companies")
                db.session.commit()
                _import_batches(importer, state, person_spec, person_keys, remaining)
                persons_pending = False
    except ConnectorError as exc:
        db.session.rollback()
        error_message = f"The connector failed: {exc.user_message}"
        log.warning("import run %s stopped: %s (%s)", run_id, exc.user_message, exc.tech_message)
    except ImportProblem as exc:
        db.session.rollback()
        error_message = exc.message
    except RunAbandoned:
        db.session.rollback()
        log.warning("import run %s was given up by the reaper; stopping", run_id)
        return RunStatus.FAILED
    except Exception:
        db.session.rollback()
        log.exception("import run %s failed", run_id)
        error_message = "The import failed unexpectedly; the error has been logged."
    finally:
        client.close()
    counts = importer.counts_json()
    counts["remaining"] = len(remaining) if error_message else 0
    counts["remaining_keys"] = remaining[:50] if error_message else []
    if client.warnings:
        counts["warnings"] = sorted({text for _m, text in client.warnings})[:5]
    written = counts["new"] + counts["updated"] + counts["unchanged"]
    if error_message:
        status = RunStatus.PARTIAL if (written or importer.done) else RunStatus.FAILED
        message = error_message
        if remaining or persons_pending:
            what = f"{len(remaining)} actor(s) were" if remaining else "The persons of the companies were"
            message += (f" {what} not imported; run the import again to complete it (what was imported is "
                        "linked and will be updated, not duplicated).")
    elif counts["errors"] or counts["values_refused_count"]:
        status = RunStatus.PARTIAL
        parts = [f"{counts['errors']} row error(s)"] if counts["errors"] else []
        if counts["values_refused_count"]:
            parts.append(f"{counts['values_refused_count']} ERP value(s) the CRM cannot hold left out of "
                         f"{counts['values_refused_records']} record(s) (see the sync log)")
        message = f"Imported with {' and '.join(parts)}."
    else:
        status = RunStatus.SUCCEEDED
        message = "Import finished."
    message += (f" {counts['new']} new, {counts['updated']} updated, {counts['unchanged']} unchanged, "
                f"{counts['skipped']} skipped.")
    _finish(run_id, status, message, counts, done=importer.done, total=max(importer.total, importer.done),
            error=error_message, seconds=client.seconds)
    return status


def _finish(run_id: int, status: str, message: str, counts: dict, *, done: int | None = None,
            total: int | None = None, error: str = "", seconds: float | None = None) -> None:
    runs.finish(run_id, status, message=message, error=error, counts=counts, connector_seconds=seconds,
                progress_done=done, progress_total=total)


def _import_batches(importer: Importer, state: _RunState, spec: TypeSpec, keys: Sequence[str],
                    remaining: list[str]) -> None:
    client, guid = importer.client, importer.guid
    for start in range(0, len(keys), BATCH_SIZE):
        batch = list(keys[start:start + BATCH_SIZE])
        db.session.commit()  # nothing open while the connector works
        actors = client.get_actors(guid, spec.actor_type, batch, spec.field_keys)
        _write_batch(importer, state, spec, batch, actors)
        del remaining[:len(batch)]


def _import_persons(importer: Importer, state: _RunState, spec: TypeSpec, keys: Sequence[str],
                    remaining: list[str]) -> None:
    """Persons chosen directly: per batch, their companies that are not linked yet are imported first (policy
    "import_company"), then the persons, under them."""
    client, guid = importer.client, importer.guid
    for start in range(0, len(keys), BATCH_SIZE):
        batch = list(keys[start:start + BATCH_SIZE])
        db.session.commit()
        actors = client.get_actors(guid, spec.actor_type, batch, spec.field_keys)
        if importer.settings.person_policy == "import_company":
            wanted = {(a.get("ParentActorType") or "", a.get("ParentErpKey") or "") for a in actors}
            wanted = {(t, k) for t, k in wanted if k and t in importer.specs
                      and importer.specs[t].crm_type == CrmType.COMPANY}
            linked = set()
            if wanted:
                linked = {(t, k) for t, k in db.session.execute(select(Link.erp_actor_type, Link.erp_key).where(
                    Link.connection_id == importer.connection_id, Link.crm_type == CrmType.COMPANY,
                    Link.erp_key.in_(sorted({k for _t, k in wanted})))).all()}
            missing = sorted(wanted - linked)
            for parent_type in sorted({t for t, _k in missing}):
                parent_spec = importer.specs[parent_type]
                parent_keys = [k for t, k in missing if t == parent_type]
                db.session.commit()
                companies = client.get_actors(guid, parent_type, parent_keys, parent_spec.field_keys)
                _write_batch(importer, state, parent_spec, [], companies)
        _write_batch(importer, state, spec, batch, actors)
        del remaining[:len(batch)]


def _write_batch(importer: Importer, state: _RunState, spec: TypeSpec, batch: Sequence[str],
                 actors: list[dict]) -> None:
    """Plan and write one batch in one transaction. When another writer took a link or list item meanwhile (a
    unique index says no), plan again once, then fall back to one actor per transaction."""
    found = {a["ErpKey"] for a in actors}
    missing = [k for k in batch if k not in found]
    written = False
    for attempt in (1, 2):
        planned: list[Planned] = []
        try:
            planned = importer.plan(spec, actors)
            importer.apply(planned)
        except IntegrityError:
            db.session.rollback()
            importer.release(planned)
            importer._load_crm_lists()
            log.info("import batch of %d %s met a concurrent change (attempt %d)", len(actors), spec.actor_type,
                     attempt)
            continue
        importer.count(planned)
        _batch_done(importer, state, spec, batch, missing)
        importer.after_commit(planned)
        written = True
        break
    if written:
        return
    for actor in actors:
        planned = []
        try:
            planned = importer.plan(spec, [actor])
            importer.apply(planned)
            db.session.commit()
        except IntegrityError:
            db.session.rollback()
            importer.release(planned)
            importer.counts[spec.crm_type]["error"] += 1
            importer.report(spec.actor_type, actor["ErpKey"], actor["ErpKey"],
                            "It was linked or changed by someone else during the import; run the import again.")
        else:
            importer.count(planned)
            importer.after_commit(planned)
    _batch_done(importer, state, spec, batch, missing)


def _batch_done(importer: Importer, state: _RunState, spec: TypeSpec, batch: Sequence[str],
                missing: Sequence[str]) -> None:
    """Count the batch's actors the ERP no longer has, move the progress on and commit."""
    _report_missing(importer, spec, missing)
    importer.done += len(batch)
    state.write()
    db.session.commit()


def _report_missing(importer: Importer, spec: TypeSpec, missing: Sequence[str]) -> None:
    for key in missing:
        importer.counts[spec.crm_type]["skip"] += 1
        importer.skip_reasons["no longer in the ERP"] += 1
        importer.report(spec.actor_type, key, key, "It is no longer in the ERP.")


# --------------------------------------------------------------------------------------------- done page


@dataclass
class RecordRef:
    crm_type: str
    id: int
    name: str


def run_records(run: SyncRun, which: str, page: int = 1, per_page: int = 50) -> tuple[list[RecordRef], int]:
    """The records an import created (``which='new'``) or updated (``'updated'``), paged, from the sync log."""
    rule = RULE_NEW if which == "new" else RULE_UPDATED
    base = (select(SyncChange.crm_type, SyncChange.crm_id)
            .where(SyncChange.run_id == run.id, SyncChange.direction == "to_crm", SyncChange.rule == rule)
            .distinct())
    total = db.session.scalar(select(func.count()).select_from(base.subquery())) or 0
    rows = db.session.execute(base.order_by(SyncChange.crm_type, SyncChange.crm_id)
                              .limit(per_page).offset((max(page, 1) - 1) * per_page)).all()
    refs = []
    by_type: dict[str, list[int]] = {}
    for crm_type, crm_id in rows:
        by_type.setdefault(crm_type, []).append(crm_id)
    names: dict[tuple[str, int], str] = {}
    for crm_type, ids in by_type.items():
        model = CRM_MODELS[crm_type]
        for record in db.session.scalars(select(model).where(model.id.in_(ids))):
            names[(crm_type, record.id)] = record.display_name
    for crm_type, crm_id in rows:
        if (crm_type, crm_id) in names:
            refs.append(RecordRef(crm_type, crm_id, names[(crm_type, crm_id)]))
    return refs, total


def import_runs(limit: int = 20) -> list[SyncRun]:
    return list(db.session.scalars(select(SyncRun).where(SyncRun.kind == RunKind.IMPORT)
                                   .order_by(SyncRun.id.desc()).limit(limit)))


def _register_with_engine() -> None:
    """The sync engine executes runs of kind 'import' by calling execute_import (engine.register_kind)."""
    from portal.services.sync import engine

    engine.register_kind(RunKind.IMPORT, execute_import)


_register_with_engine()

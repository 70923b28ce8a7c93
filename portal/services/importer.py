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
   links, records, duplicate candidates, parent links, as plain rows; each ERP value converted through its field's
   prepared conversions, ``portal.services.import_convert``) → :meth:`Importer.apply` (records, links, list items,
   ``SyncChange`` rows, in bulk: ``portal.services.import_write``; progress) → one commit. A record and its link
   are always committed together;
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
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from sqlalchemy import and_, func, select, update
from sqlalchemy.exc import IntegrityError

from portal.connectors.client import ConnectorClient, ConnectorError
from portal.database import utcnow
from portal.extensions import db
from portal.models import (
    ACTOR_CRM_TYPE,
    CRM_MODELS,
    ActorType,
    ActorTypeConfig,
    Company,
    Connection,
    CrmFieldType,
    CrmType,
    FieldType,
    Link,
    ListItem,
    RunKind,
    RunStatus,
    SyncChange,
    SyncRun,
    User,
    crm_field,
    crm_fields,
)
from portal.services import import_rules as rules
from portal.services import import_write
from portal.services.connectors import client_for
from portal.services.crm import Paging
from portal.services.crm_rules import MISSING, ListItemInfo, storable_text, value_problem
from portal.services.import_convert import FieldConverter, base_plan, converters

# Public names of the split-out modules, importable from here as before.
from portal.services.import_rules import (  # noqa: F401
    CONTACT_INFO_CHOICES,
    CONTACT_INFO_KINDS,
    ID_SOURCE_CHOICES,
    MATCH_ATTRS,
    MATCH_CHOICES,
    PHONE_ATTRS,
    NewCompany,
)
from portal.services.import_search import (  # noqa: F401
    OPERATOR_LABELS,
    Criterion,
    SearchField,
    SearchResult,
    build_restrictions,
    field_list_items,
    resolve_list_texts,
    result_fields,
    search,
    search_fields,
)
from portal.services.import_settings import (  # noqa: F401
    ACTION_CHOICES,
    COMPANY_TYPES,
    LIST_POLICY_CHOICES,
    PERSON_POLICY_CHOICES,
    ImportProblem,
    ImportRequest,
    ImportSettings,
    check_settings,
    company_name_choices,
    get_import_connection,
    get_import_type,
    id_field_choices,
    import_connections,
    importable_types,
    involved_configs,
    persons_config,
    settings_summary,
)
from portal.services.import_write import RULE_NEW, RULE_UPDATED, NewListItem
from portal.services.sync import runs
from portal.services.sync.fieldmap import MappedField, mapped_fields
from portal.services.values import (
    ConversionError,
    UnmappedListItem,
    display,
    is_blank,
    number_text,
    same_value,
)

log = logging.getLogger(__name__)

BATCH_SIZE = 200  # actors per GetActors call and per database transaction
PARENT_CHUNK = 500  # company keys per SearchActorsAdvanced(ParentErpKey oneof …)
MAX_EXPLICIT_KEYS = 2000  # rows ticked one by one; beyond that use "all results"
MAX_REPORTED = 200  # row problems kept in SyncRun.counts (all of them are in the sync log)
MAX_LIST_NAME = 120
MAX_REMEMBERED = 50_000  # texts of new records whose check is remembered (_refuse), per run
_TEXT_TYPES = frozenset({CrmFieldType.TEXT, CrmFieldType.LONGTEXT})
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


# ------------------------------------------------------------------------------------------------- planning


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


_norm_text = rules.norm_text
_norm_phone = rules.norm_phone
_norm = rules.norm
_sql_key = rules.sql_key


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
        person = self.specs.get(ActorType.PERSON)
        name_key = self.settings.company_name_field
        if self.settings.company_from_name and person is not None and name_key and name_key not in person.field_keys:
            person.field_keys.append(name_key)  # read, not mapped: only the company's name comes from it
        self.name_companies: dict[str, tuple[int, str]] = {}  # companies found or created from a name, this run
        self.companies_from_names = 0
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
        self.info_policies: dict[tuple[str, str], str | None] = {}
        self.ignored_keys: dict[str, frozenset[str]] = {}
        self.text_problems: dict[tuple[str, str, str], object] = {}  # _refuse: (CRM type, field, text) -> problem
        # CRM fields whose value is not shown as is by text(): list items (their names) and the company (its name)
        self.not_plain: dict[str, frozenset[str]] = {
            t: frozenset({"company_id"} | {c.key for c in crm_fields(t) if c.type == CrmFieldType.LIST})
            for t in self.counts}
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
        """ERP values -> CRM values for the fields the import writes; fills p.errors and p.notes. ``p.erp_values``
        gets every mapped field's ERP value as fieldmap.erp_side gives it (through the prepared conversions)."""
        raw = p.actor.get("FieldValues") or {}
        erp_values: dict = {}
        p.erp_values = erp_values
        crm: dict = {}
        for f, conv in p.spec.converting:  # one pass: the fields written (to_crm) in the order of spec.write
            try:
                value = erp_values[f.erp_key] = conv.erp(raw.get(f.erp_key))
            except ConversionError as exc:
                if f.to_crm:
                    p.errors.append((f.erp_key, f"{f.erp_label or f.erp_key}: {exc}"))
                continue
            if not f.to_crm:
                continue
            try:
                crm[f.crm_key] = conv.crm(value)
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
        links = {link.erp_key: link for link in rules.read_rows(Link.__table__, and_(
            Link.connection_id == self.connection_id, Link.erp_actor_type == spec.actor_type,
            Link.erp_key.in_(keys)), columns=LINK_COLUMNS)} if keys else {}
        linked_ids = [link.crm_id for link in links.values() if link.crm_type == crm_type]
        records = {r.id: r for r in rules.read_rows(model.__table__, model.id.in_(linked_ids), crm_type)} \
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
        if crm_type == CrmType.CONTACT and self.settings.company_from_name:
            self._companies_from_names(planned)
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
        rows = db.session.connection().execute(  # Core: plain tuples, no ORM result machinery
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
            if self.settings.company_from_name:
                p.company_name = rules.company_name_of(p.actor, self.settings.company_name_field)
                if p.company_name:
                    return  # _companies_from_names finds or creates it
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

    def _companies_from_names(self, planned: Sequence[Planned]) -> None:
        """Persons without a parent: the CRM company of their company name, found (by the company duplicate
        rule's name, unless it is "none" or the action "add anyway") or created once per name, with one query for
        the batch. A contact that already has a company keeps it."""
        wanted = [p for p in planned if p.company_name and not p.errors and p.outcome not in ("skip", "error")
                  and (p.record is None or p.record.company_id is None)]
        if not wanted:
            return
        match = self.settings.company_match != "none" and self.settings.company_action != "add"
        resolved = rules.resolve_companies_by_name([p.company_name for p in wanted], match=match,
                                                   known=self.name_companies, pending={})
        found_ids = sorted({cid for cid, _n, _o in resolved.values() if cid is not None})
        company_links = dict(db.session.execute(select(Link.crm_id, Link.erp_key).where(
            Link.connection_id == self.connection_id, Link.crm_type == CrmType.COMPANY,
            Link.crm_id.in_(found_ids))).all()) if found_ids else {}
        for p in wanted:
            found = resolved.get(rules.norm_text(p.company_name))
            if found is None:
                p.notes.append(f"its company name {p.company_name!r} cannot be stored: imported without a company")
                continue
            company_id, name, new = found
            p.company = (company_id, name)
            if new is None:
                p.values["company_id"] = company_id
                p.parent_base = company_links.get(company_id)
                p.notes.append(f"under the existing company {name} (found by its company name)")
            else:
                p.values["company_id"] = new
                p.notes.append(f"creates the company {name} from its company name")

    def _match(self, spec: TypeSpec, candidates: list[Planned]) -> None:
        """Find an existing, unlinked CRM record for each actor by the duplicate rule (one query per batch)."""
        crm_type = spec.crm_type
        rule = self.settings.match(crm_type)
        action = self.settings.action(crm_type)
        if rule == "none" or action == "add" or not candidates:
            return
        id_label = ""
        if rule == "id":
            if self.settings.id_source(crm_type) != "field":
                return  # the ERP key: only the actor's link identifies its record (plan() found it)
            erp_key = self.settings.id_field(crm_type)
            crm_key = rules.id_crm_key(spec, erp_key)
            if crm_key is None:
                return  # not mapped to a CRM number on this actor type: nothing to compare
            attrs: tuple[str, ...] = (crm_key,)
            probes = rules.id_probes(candidates, erp_key)
            crm_spec = crm_field(crm_type, crm_key)
            id_label = f"{spec.erp_fields.get(erp_key, (0, erp_key))[1]} = {crm_spec.label if crm_spec else crm_key}"
        else:
            attrs = MATCH_ATTRS[crm_type][rule]
            probes = rules.value_probes(candidates, attrs)
        index = rules.find_matches(spec.model, crm_type, attrs, probes, self.connection_id)
        for p in candidates:
            probe = probes.get(id(p))
            if probe is None:
                continue
            found = index.get(probe.values, [])
            if rule == "id":
                pass  # an identity is not looked for under the person's company only
            elif crm_type == CrmType.CONTACT and p.company is not None and p.company[0] is not None:
                found = [r for r in found if r.company_id == p.company[0]]
            elif crm_type == CrmType.CONTACT and p.company is not None:
                found = []  # under a company that is new in this import: nothing can match
            found = [r for r in found if (crm_type, r.id) not in self.claimed]
            if found:
                p.record, p.matched = found[0], True
                if id_label:
                    p.notes.append(f"found by ID: {id_label} ({probe.raw})")
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
        if p.record is not None and p.link is not None and action == "skip" and self.settings.match(crm_type) == "id":
            # Under the ID rule the link is the match: "skip" leaves records imported or linked before alone.
            p.outcome = "skip"
            p.reason = f"already linked to the existing {crm_type} {_record_name(p.record)} (ID rule: skip)"
            return
        label = self._label
        if p.record is None:
            p.outcome = "new"
            ignored = self._ignored(crm_type)
            for key in [k for k in p.values if k in ignored]:
                value = p.values[key]
                if not is_blank(value):
                    what = rules.CONTACT_INFO_KINDS[rules.contact_info_kind(crm_type, key)].lower()
                    p.notes.append(f"{label(crm_type, key)}: the ERP's {value} is not imported ({what}: ignore)")
                    p.values[key] = _empty_value(crm_type, key)
            written = {k: v for k, v in p.values.items() if (v.strip() if type(v) is str else not is_blank(v))}
            for item in self._refuse(p, written, None):
                p.values[item.crm_key] = _empty_value(crm_type, item.crm_key)
                del written[item.crm_key]
            # an unticked checkbox is what a new record has anyway: not listed as a change
            p.changes = [(k, None, v) for k, v in written.items() if v is not False]
            problem = _required_problem(crm_type, p.values, None)
        else:
            # Linked actors are updated (merge keeps filling empty fields only); a matched record is merged
            # or replaced as chosen.
            merge = action == "merge"
            changes = []
            spares: set[str] = set()
            for key, new in p.values.items():
                policy = self._info_policy(crm_type, key)
                if policy is not None:  # a phone, e-mail or web site under its own policy
                    more, note = rules.plan_contact_info(
                        crm_type, p.record, key, new, policy, written=p.values.__contains__, taken=spares,
                        label=functools.partial(label, crm_type))
                    for change in more:
                        if change[0] != key:
                            p.sources[change[0]] = key
                    changes.extend(more)
                    if note:
                        p.notes.append(note)
                    continue
                old = getattr(p.record, key)
                if not isinstance(new, NewListItem | NewCompany) and same_value(old, new):
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

    def _ignored(self, crm_type: str) -> frozenset[str]:
        """The CRM fields whose phone, e-mail or web site policy is "ignore" (once per run and CRM type)."""
        found = self.ignored_keys.get(crm_type)
        if found is None:
            found = self.ignored_keys[crm_type] = frozenset(
                key for keys in rules.CONTACT_INFO_FIELDS.get(crm_type, {}).values() for key in keys
                if self._info_policy(crm_type, key) == "ignore")
        return found

    def _info_policy(self, crm_type: str, key: str) -> str | None:
        """rules.contact_info_policy, asked once per run and field (the settings do not change during a run)."""
        found = self.info_policies.get((crm_type, key), MISSING)
        if found is MISSING:
            found = self.info_policies[(crm_type, key)] = rules.contact_info_policy(self.settings, crm_type, key)
        return found

    @staticmethod
    def _label(crm_type: str, key: str) -> str:
        spec = crm_field(crm_type, key)
        return spec.label if spec is not None else key

    def _refuse(self, p: Planned, values: Mapping, record) -> list[Refused]:
        """The values (non-blank, about to be written) the CRM cannot hold (portal.services.crm_rules): noted on
        ``p`` and returned; the caller leaves them out. A value equal to the record's is accepted."""
        by_crm, sources, crm_type = p.spec.write_by_crm, p.sources, p.crm_type
        remembered = self.text_problems
        found = []
        for key, value in values.items():
            f = by_crm.get(key) or (by_crm.get(sources.get(key, "")) if sources else None)
            if f is None:
                continue  # company_id
            if record is None and type(value) is str and f.crm_key == key and f.crm_type in _TEXT_TYPES:
                # A text for a new record is judged on the field and the text alone: a repeated one (a city, a
                # first name) is judged once per run.
                if not value.strip():
                    continue  # blank: _required_problem
                problem = remembered.get((crm_type, key, value), MISSING)
                if problem is MISSING:
                    problem = value_problem(crm_type, key, value, list_items=self.list_items_info)
                    if len(remembered) < MAX_REMEMBERED:
                        remembered[(crm_type, key, value)] = problem
                current = MISSING
            else:
                if isinstance(value, NewListItem | NewCompany) or is_blank(value):
                    continue  # list items and companies this import creates; blank: _required_problem
                current = getattr(record, key) if record is not None else MISSING
                problem = value_problem(crm_type, key, value, current=current, list_items=self.list_items_info)
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
        import_write.apply(self, planned)

    def text(self, crm_type: str, key: str, value, p: Planned | None = None) -> str | None:
        """A CRM value as text for the change log and the preview."""
        if type(value) is str and key not in self.not_plain.get(crm_type, ("company_id",)):
            return value  # most values: what the last line answers, without the checks in between
        if isinstance(value, NewListItem | NewCompany):
            return value.name
        if key == "company_id" and p is not None and p.company is not None:
            return p.company[1]
        if value is None:
            return None
        if key == "company_id":
            return f"#{value}"
        if (spec := crm_field(crm_type, key)) is not None and spec.type == CrmFieldType.LIST:
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
        seen = set()
        for p in planned:
            target = p.values.get("company_id")
            if p.writes and isinstance(target, NewCompany) and target.id is not None and target.id not in seen:
                seen.add(target.id)
                self.counts[CrmType.COMPANY]["new"] += 1
                self.companies_from_names += 1

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
            if p.writes and p.company_name and p.company is not None and p.company[0] is not None:
                self.name_companies[rules.norm_text(p.company[1])] = (p.company[0], p.company[1])
            target = p.values.get("company_id")
            if p.writes and isinstance(target, NewCompany) and target.id is not None:
                self.name_companies[rules.norm_text(target.name)] = (target.id, target.name)
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
        labels = {c.key: c.label for c in crm_fields(p.crm_type)}
        labels["company_id"] = "Company"
        rows = []
        for key, old, new in p.changes:
            new_text = self.text(p.crm_type, key, new, p) or ""
            if isinstance(new, NewListItem):
                new_text += " (new list item)"
            elif isinstance(new, NewCompany):
                new_text += " (new company)"
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
            "companies_from_names": self.companies_from_names,
            "skip_reasons": dict(self.skip_reasons),
            "problems": list(self.problems),
            "problem_count": self.problem_count,
            # Records imported without some ERP values the CRM cannot hold (one entry per record; the count is
            # of values). Each value is also an error row, with the ERP value, in the sync log.
            "values_refused": list(self.refused),
            "values_refused_count": self.refused_count,
            "values_refused_records": self.refused_records,
        }



def _empty_value(crm_type: str, key: str):
    """What a new record holds in a field left empty: '' for text, False for a checkbox (never blank), else None."""
    spec = crm_field(crm_type, key)
    if spec is None:
        return None
    if spec.type in (CrmFieldType.TEXT, CrmFieldType.LONGTEXT):
        return ""
    return False if spec.type == CrmFieldType.CHECKBOX else None


def _by_parent(parents: Mapping, parent_type: str, parent_key: str):
    found = parents.get((parent_type, parent_key))
    if found is None and not parent_type:
        found = next((v for (_t, k), v in parents.items() if k == parent_key), None)
    return found


def _record_name(record) -> str:
    return getattr(record, "display_name", None) or f"#{record.id}"


def _reason_kind(reason: str) -> str:
    if reason.startswith(("matches the existing", "already linked to the existing")):
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
    for spec in crm_fields(crm_type):
        if spec.required and spec.type != CrmFieldType.CHECKBOX and is_blank(value(spec.key)):
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
        check_settings(connection, request)
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
    request.settings.validate()
    check_settings(connection, request)
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
        check_settings(connection, request)
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
    if counts["new"] >= ANALYZE_AFTER_NEW:
        refresh_statistics()
    return status


ANALYZE_AFTER_NEW = 1000  # new records from which an import refreshes PostgreSQL's planner statistics


def refresh_statistics() -> None:
    """PostgreSQL: ANALYZE the tables a large import filled. Until autovacuum gets to them (up to a minute or
    more), the planner takes just-filled tables for nearly empty and a sync right after the import walks every
    link for each batch — measured: 385 ms instead of 0.2 ms a batch SELECT at 10,000 links. SQLite: nothing."""
    if db.engine.dialect.name != "postgresql":
        return
    try:
        with db.engine.connect() as conn:
            conn.exec_driver_sql("ANALYZE link, company, contact, project, sync_change")
            conn.commit()
    except Exception:  # statistics are an optimisation: autovacuum gathers them anyway
        log.exception("could not refresh the planner statistics after an import")


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

"""Import from ERP (spec §5, issue #6): the planner — what happens to each actor of a batch, and the counts.

:class:`Importer` plans and applies the import of the actors of one connection, one instance per run (or preview
page): :meth:`Importer.plan` decides every actor's outcome with a handful of batched reads (links, records, duplicate
candidates, parent links, as plain rows; each ERP value converted through its field's prepared conversions,
``portal.services.import_convert``), what happens to a match, list values without a list mapping and persons under
their company; :meth:`Importer.apply` writes a batch (``portal.services.import_write``); the importer counts what
happened for the run's report.

Around it: the wizard's state and settings (``import_settings``), the search (``import_search``), the rules
(``import_rules``), what a plan is made of (``import_plan``), a person's company and duplicate matching
(``import_match``), the preview (``import_preview``), starting and executing a run (``import_run``) and undoing it
(``import_undo``).

Link base (the merge's "agreed" values): a mapped field where the CRM now holds the ERP's value gets that value.
A field where the two sides still differ (not written by the import: one-way CRM → ERP, "merge" kept the CRM's
value, a list value the CRM cannot hold) gets the CRM's value, so the next sync sees "changed in the ERP" and only
ever flows ERP → CRM where that direction is mapped: an import never causes a write to the ERP. For an actor
that was already linked, a differing field keeps its previous base (a pending CRM edit stays pending).

What the planner decides for each actor is ``import_decide``'s, what it counts for the run's report
``import_count``'s: the two mixins :class:`Importer` is made of.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

from sqlalchemy import and_, select

from portal.connectors.client import ConnectorClient
from portal.extensions import db
from portal.models import (
    ACTOR_CRM_TYPE,
    ActorType,
    Connection,
    CrmFieldType,
    CrmType,
    FieldType,
    Link,
    ListItem,
    crm_field,
    crm_fields,
)
from portal.services import import_match, import_write
from portal.services import import_rules as rules
from portal.services.crm_rules import ListItemInfo
from portal.services.import_count import RunCounts
from portal.services.import_decide import PlanDecisions
from portal.services.import_plan import LINK_COLUMNS, Planned, TypeSpec, type_spec
from portal.services.import_rules import NewCompany
from portal.services.import_settings import ImportRequest
from portal.services.import_write import NewListItem
from portal.services.sync.fieldmap import MappedField
from portal.services.values import ConversionError, UnmappedListItem, number_text

MAX_LIST_NAME = 120


class Importer(PlanDecisions, RunCounts):
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
        parents = import_match.parent_companies(self, planned) if crm_type == CrmType.CONTACT else {}

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
                import_match.resolve_parent(self, p, parents, pending_parents)
        if crm_type == CrmType.CONTACT and self.settings.company_from_name:
            import_match.companies_from_names(self, planned)
        import_match.find_duplicates(self, spec, [p for p in planned if p.record is None
                                                   and p.outcome not in ("skip", "error") and not p.errors])
        for p in planned:
            self._decide(p)
        return planned

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

    def release(self, planned: Sequence[Planned]) -> None:
        """Forget the claims of a batch that was rolled back (its matches may be used again)."""
        for p in planned:
            if p.matched and p.record is not None:
                self.claimed.discard((p.crm_type, p.record.id))

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

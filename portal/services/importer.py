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
"""

from __future__ import annotations

import functools
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
from portal.services.crm_rules import MISSING, ListItemInfo, storable_text, value_problem
from portal.services.import_plan import LINK_COLUMNS, Planned, Refused, TypeSpec, type_spec
from portal.services.import_rules import NewCompany
from portal.services.import_settings import ImportRequest
from portal.services.import_write import NewListItem
from portal.services.sync.fieldmap import MappedField
from portal.services.values import (
    ConversionError,
    UnmappedListItem,
    display,
    is_blank,
    number_text,
    same_value,
)

MAX_REPORTED = 200  # row problems kept in SyncRun.counts (all of them are in the sync log)
MAX_LIST_NAME = 120
MAX_REMEMBERED = 50_000  # texts of new records whose check is remembered (_refuse), per run
_TEXT_TYPES = frozenset({CrmFieldType.TEXT, CrmFieldType.LONGTEXT})


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


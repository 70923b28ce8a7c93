"""Import from ERP: the planner's decision for each actor of a batch (issue #6, issue #18 point 3).

``Importer.plan`` (``portal.services.importer``) calls :meth:`PlanDecisions._decide` for every planned actor once
its values are converted and its link, record, company and duplicate are found: new, update, unchanged, skip or
error; the phone, e-mail and web site policies; the values the CRM cannot hold (left out, noted); a record that
would lack a required field. :class:`PlanDecisions` is a mixin of :class:`~portal.services.importer.Importer`."""

from __future__ import annotations

import functools
from collections.abc import Mapping

from portal.models import CrmFieldType, CrmType, crm_field, crm_fields
from portal.services import import_rules as rules
from portal.services.crm_rules import MISSING, storable_text, value_problem
from portal.services.import_plan import Planned, Refused
from portal.services.import_rules import NewCompany
from portal.services.import_write import NewListItem
from portal.services.values import display, is_blank, same_value

MAX_REMEMBERED = 50_000  # texts of new records whose check is remembered (_refuse), per run
_TEXT_TYPES = frozenset({CrmFieldType.TEXT, CrmFieldType.LONGTEXT})


class PlanDecisions:
    """The planner's decision for each planned actor; a mixin of ``Importer``, whose state it reads."""

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

"""Values one side cannot hold (a list item without a list mapping, too long, the wrong type): how to tell, how
to say so, and how Connect / Create in ERP leave them as they are instead of writing a blank over them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from portal.models import ActorTypeConfig, CrmFieldType, FieldType
from portal.services.crm_rules import check_crm_value
from portal.services.sync.fieldmap import MappedField, check_erp_values, crm_side, mapped_fields, to_crm_values
from portal.services.values import is_blank

SHOWN_LENGTH = 60  # characters of a value quoted in an explanation


def _shown(text: str) -> str:
    text = text if len(text) <= SHOWN_LENGTH else text[:SHOWN_LENGTH - 1] + "…"
    return f"“{text}”"


@dataclass(frozen=True)
class Unmappable:
    """Why one field's CRM value cannot be held by the ERP and why its ERP value cannot be held by the CRM
    ('' = it can), whatever the sync directions: a list item without a list mapping, a value too long for the
    other side or of a type it cannot take. A blank is never unmappable."""

    crm: str = ""
    erp: str = ""
    crm_list: bool = False  # the CRM value is a list item without a list mapping
    erp_list: bool = False

    def __bool__(self) -> bool:
        return bool(self.crm or self.erp)


def _crm_refuses(crm_type: str, f: MappedField, erp_value: object) -> str:
    """Why the CRM cannot hold the ERP's value in ``f`` — its conversion, or the CRM's own rules (crm_rules, the
    same as the forms, the import and the sync); '' when it can."""
    converted, problems = to_crm_values({f.erp_key: erp_value}, [f])
    if f.erp_key in problems:
        return problems[f.erp_key]
    if f.crm_key not in converted:
        return ""
    return check_crm_value(crm_type, f.crm_key, converted[f.crm_key]) or ""


def _unmappable(f: MappedField, crm_value: object, crm_error: str | None, erp_value: object,
                erp_error: str | None, crm_type: str) -> Unmappable:
    """``crm_value``/``erp_value`` as crm_side/erp_side gave them, ``crm_error``/``erp_error`` what they said."""
    crm_bad = crm_error or ""
    if not crm_bad and not is_blank(crm_value):
        crm_bad = check_erp_values({f.erp_key: crm_value}, [f]).get(f.erp_key, "")
    erp_bad = erp_error or ""
    if not erp_bad and not is_blank(erp_value):
        erp_bad = _crm_refuses(crm_type, f, erp_value)
    return Unmappable(crm_bad, erp_bad, bool(crm_bad) and f.crm_type == CrmFieldType.LIST,
                      bool(erp_bad) and not erp_error and f.erp_type == FieldType.LIST)


def _why_unmappable(label: str, shown: str, reason: str, *, listed: bool, target: str) -> str:
    """One side's value the other side (``target``) cannot hold, in a sentence."""
    if listed:
        return f"{label} {_shown(shown)} has no list mapping"
    return f"{label} {_shown(shown)} cannot be stored in {target} ({reason})"


def _why_kept(label: str, crm_text: str, erp_text: str, bad: Unmappable) -> str:
    """The explanation of a field Connect leaves as it is on both sides."""
    if bad.crm_list and bad.erp_list:
        why = f"{label} {_shown(crm_text)} and {_shown(erp_text)} have no list mapping"
    else:
        parts = []
        if bad.crm:
            parts.append(_why_unmappable(label, crm_text, bad.crm, listed=bad.crm_list, target="the ERP"))
        if bad.erp:
            parts.append(_why_unmappable(label, erp_text, bad.erp, listed=bad.erp_list, target="the CRM"))
        why = "; ".join(parts)
    return f"{why}: left as it is on both sides"


def _crm_unmappable(record, fields: list[MappedField]) -> dict[str, str]:
    """The fields (by ERP key) whose CRM value the ERP cannot hold, with the reason."""
    values, errors = crm_side(record, fields)
    errors.update({key: text for key, text in check_erp_values(values, fields).items() if key not in errors})
    return errors


def _keeping_unmappable(record, config: ActorTypeConfig, crm_values: Mapping) -> dict:
    """``crm_values`` (CRM attribute -> value, from ask-user answers) without the fields whose CRM value the ERP
    cannot hold: an answer for the ERP never replaces (or blanks) such a value in the CRM."""
    fields = [f for f in mapped_fields(config, synced_only=True) if f.crm_key in crm_values]
    kept = {f.crm_key for f in fields if f.erp_key in _crm_unmappable(record, fields)}
    return {key: value for key, value in crm_values.items() if key not in kept}

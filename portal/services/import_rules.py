"""Import from ERP: the rules that decide what an actor meets in the CRM (spec §5.6, issue #18 point 3).

* **Duplicate rules** (``MATCH_CHOICES``): which existing, unlinked CRM record an actor is the same as. Value rules
  compare what the import would write (name, number, e-mail …); the **ID** rule compares identities only: the
  actor's ERP key as stored in a link of the connection (``id_source = "link"``), or an ERP number field mapped to a
  CRM number field (``id_source = "field"``, e.g. NUMBER1 ↔ company Number). One query per batch, never one per
  actor (:func:`find_matches`).
* **Phone numbers, e-mail addresses and web sites** (``CONTACT_INFO_CHOICES``): what the import does with them on a
  record that already exists — add, keep, replace or ignore — for the CRM's single-valued fields
  (:func:`contact_info_policy`, :func:`plan_contact_info`).
* **A company from the contact's company name** for persons without a parent in the ERP
  (:func:`resolve_companies_by_name`).

Plain rules over plain data; the importer (``portal.services.importer``) calls them while it plans a batch.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import func, or_, select

from portal.extensions import db
from portal.models import CRM_MODELS, Company, CrmType, FieldType, Link, crm_field
from portal.services.crm_rules import storable
from portal.services.values import is_blank, same_value

MATCH_CHOICES: dict[str, dict[str, str]] = {
    CrmType.COMPANY: {"name": "Name", "name_department": "Name and department", "number": "Number",
                      "code": "Code", "vat_no": "VAT number", "id": "ID: ERP key or ERP number",
                      "none": "None: always add"},
    CrmType.CONTACT: {"name": "Name", "email": "E-mail", "mobile": "Mobile phone", "number": "Number",
                      "id": "ID: ERP key or ERP number", "none": "None: always add"},
    CrmType.PROJECT: {"name": "Name", "number": "Number", "id": "ID: ERP key or ERP number",
                      "none": "None: always add"},
}
# The CRM attributes a value rule compares; the first one is looked up in SQL, the rest compared in Python.
MATCH_ATTRS: dict[str, dict[str, tuple[str, ...]]] = {
    CrmType.COMPANY: {"name": ("name",), "name_department": ("name", "department"), "number": ("number",),
                      "code": ("code",), "vat_no": ("vat_no",)},
    CrmType.CONTACT: {"name": ("last_name", "first_name"), "email": ("email",), "mobile": ("phone_mobile",),
                      "number": ("number",)},
    CrmType.PROJECT: {"name": ("name",), "number": ("number",)},
}
PHONE_ATTRS = frozenset({"phone_mobile"})

ID_SOURCE_CHOICES = {
    "link": "Its ERP key, in a link this connection already has (only actors imported or linked before match)",
    "field": "An ERP number field mapped to a CRM number field",
}
# The CRM fields an ERP number may be compared with by the ID rule.
ID_CRM_FIELDS: dict[str, tuple[str, ...]] = {
    CrmType.COMPANY: ("number", "code"),
    CrmType.CONTACT: ("number",),
    CrmType.PROJECT: ("number",),
}

CONTACT_INFO_KINDS = {"phone": "Phone numbers", "email": "E-mail addresses", "url": "Web sites"}
CONTACT_INFO_CHOICES = {
    "action": "As the rest of the record (the duplicate action above)",
    "add": "Add: fill an empty field or a free extra field; keep the existing value",
    "keep": "Keep the existing value; fill only an empty field",
    "replace": "Replace the existing value with the ERP's",
    "ignore": "Ignore: do not import them (not even into new records)",
}
# The CRM fields of each kind (single-valued), per record type.
CONTACT_INFO_FIELDS: dict[str, dict[str, tuple[str, ...]]] = {
    CrmType.COMPANY: {"phone": ("phone", "fax"), "email": ("email",), "url": ("url",)},
    CrmType.CONTACT: {"phone": ("phone_direct", "phone_mobile", "phone_private", "phone_other"),
                      "email": ("email",), "url": ("url",)},
    CrmType.PROJECT: {"url": ("url",)},
}
# "add": where a value goes when its own field already holds another one (empty, and not written by the import).
SPARE_FIELDS: dict[str, dict[str, tuple[str, ...]]] = {CrmType.CONTACT: {"phone": ("phone_other",)}}

COMPANY_NAME_KEYS = ("COMPANYNAME", "COMPANY_NAME", "COMPANY", "ORGNAME")


# --------------------------------------------------------------------------------------------- normalizing


def norm_text(value) -> str:
    return " ".join(str(value or "").split()).casefold()


def norm_phone(value) -> str:
    text = str(value or "").strip()
    digits = re.sub(r"\D", "", text)
    return ("+" + digits) if text.startswith("+") and digits else digits


def norm(attr: str, value) -> str:
    return norm_phone(value) if attr in PHONE_ATTRS else norm_text(value)


def sql_key(column, attr: str):
    if attr in PHONE_ATTRS:
        expr = column
        for char in (" ", "-", "(", ")", ".", "/"):
            expr = func.replace(expr, char, "")
        return expr
    expr = func.lower(func.trim(column))
    for _ in range(2):  # runs of up to four spaces collapse to one, as norm_text does
        expr = func.replace(expr, "  ", " ")
    return expr


def id_text(value) -> str:
    """An ERP number as text: 10042.0 → "10042"."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or value is None:
        return ""
    return str(value).strip()


# ------------------------------------------------------------------------------------------ duplicate rules


def contact_info_kind(crm_type: str, key: str) -> str | None:
    for kind, keys in CONTACT_INFO_FIELDS.get(crm_type, {}).items():
        if key in keys:
            return kind
    return None


def id_field_choices(configs: Sequence, crm_type: str) -> list[tuple[str, str]]:
    """(ERP field key, label) of the mappings the ID rule can compare: an ERP field mapped (with a direction) to
    a CRM number field, on any of ``configs`` (ActorTypeConfig of one CRM type)."""
    from portal.services.sync.fieldmap import mapped_fields

    seen: dict[str, str] = {}
    for config in configs:
        for f in mapped_fields(config):
            if (f.to_crm or f.to_erp) and f.crm_key in ID_CRM_FIELDS.get(crm_type, ()) and f.erp_key not in seen:
                seen[f.erp_key] = f"{f.erp_label or f.erp_key} ({f.erp_key}) ↔ CRM {f.crm_label}"
    return sorted(seen.items(), key=lambda item: item[1].casefold())


def company_name_choices(config) -> list[tuple[str, str]]:
    """(field key, label) of the Person fields that can hold a company name (Text fields of the ERP)."""
    if config is None:
        return []
    return [(f.field_key, f"{f.display_name or f.field_key} ({f.field_key})") for f in
            sorted(config.fields, key=lambda f: (f.rank, f.id or 0))
            if f.field_type == FieldType.TEXT and not f.missing_in_erp]


def guess_company_name_field(choices: Sequence[tuple[str, str]]) -> str:
    keys = [k for k, _l in choices]
    for key in keys:
        if key.upper() in COMPANY_NAME_KEYS:
            return key
    return next((k for k, label in choices if "company" in label.casefold()), "")


class Row:
    """A CRM record or link as the import reads and writes it in bulk: its columns as attributes, without an ORM
    instance (building and tracking those cost more than the database's work for them, issue #19)."""

    def __init__(self, values: Mapping, crm_type: str = ""):
        self.__dict__.update(values)
        self._record_type = crm_type

    @property
    def display_name(self) -> str:
        """The record's name as its model gives it (``Company.display_name`` …)."""
        model = CRM_MODELS.get(self._record_type)
        return model.display_name.fget(self) if model is not None else f"#{self.id}"


def read_rows(table, condition, crm_type: str = "", *, columns: Sequence[str] = (), oldest_first: bool = False
              ) -> list[Row]:
    """The rows of ``table`` where ``condition`` holds as :class:`Row` (one Core query): every column, or only
    ``columns`` (each column read costs its type conversion)."""
    selected = [table.c[key] for key in columns] if columns else list(table.c)
    keys = [column.key for column in selected]
    query = select(*selected).where(condition)
    if oldest_first:
        query = query.order_by(table.c.id)
    return [Row(dict(zip(keys, values, strict=True)), crm_type)
            for values in db.session.connection().execute(query)]


@dataclass
class Probe:
    """What one actor is compared with: normalized values of ``attrs``, and the raw first value (SQL IN)."""

    values: tuple[str, ...]
    raw: str


def find_matches(model, crm_type: str, attrs: Sequence[str], probes: Mapping[int, Probe],
                 connection_id: int) -> dict[tuple, list]:
    """Unlinked CRM records (on this connection) whose ``attrs`` equal a probe's, oldest first, indexed by the
    normalized values: one query for the whole batch."""
    if not probes:
        return {}
    first = attrs[0]
    column = getattr(model, first)
    wanted_raw = {p.raw for p in probes.values()}
    if first in PHONE_ATTRS:
        condition = sql_key(column, first).in_({norm_phone(v) for v in wanted_raw}
                                               | {norm_phone(v).lstrip("+") for v in wanted_raw})
    else:
        condition = or_(sql_key(column, first).in_({" ".join(v.split()).lower() for v in wanted_raw}),
                        column.in_(wanted_raw))
    linked = select(Link.crm_id).where(Link.connection_id == connection_id, Link.crm_type == crm_type)
    rows = read_rows(model.__table__, condition & model.id.not_in(linked), crm_type, oldest_first=True)
    index: dict[tuple, list] = {}
    for record in rows:
        index.setdefault(tuple(norm(a, getattr(record, a)) for a in attrs), []).append(record)
    return index


def value_probes(candidates: Sequence, attrs: Sequence[str]) -> dict[int, Probe]:
    """Probes of a value rule: the values the import would write."""
    probes = {}
    for p in candidates:
        if is_blank(p.values.get(attrs[0])):
            continue
        if not all(storable(str(p.values.get(a) or "")) for a in attrs):
            continue  # no stored record can hold it, and PostgreSQL refuses it even in a query
        probes[id(p)] = Probe(tuple(norm(a, p.values.get(a)) for a in attrs), str(p.values[attrs[0]]).strip())
    return probes


def id_probes(candidates: Sequence, erp_key: str) -> dict[int, Probe]:
    """Probes of the ID rule on an ERP number field: the ERP's value of that field as read."""
    probes = {}
    for p in candidates:
        text = id_text(p.erp_values.get(erp_key))
        if text and storable(text):
            probes[id(p)] = Probe((norm_text(text),), text)
    return probes


def id_crm_key(spec, erp_key: str) -> str | None:
    """The CRM number field the ERP field ``erp_key`` is mapped to on this actor type, if the ID rule may use it."""
    for f in spec.fields:
        if f.erp_key == erp_key and f.crm_key in ID_CRM_FIELDS.get(spec.crm_type, ()):
            return f.crm_key
    return None


# ----------------------------------------------------------------------------- phones, e-mails, web sites


def contact_info_policy(settings, crm_type: str, key: str) -> str | None:
    """The policy for CRM field ``key`` ("add", "keep", "replace", "ignore"), or None when the field is not a
    phone, e-mail or web site or its policy follows the record's action."""
    kind = contact_info_kind(crm_type, key)
    if kind is None:
        return None
    policy = getattr(settings, f"{kind}_policy", "action")
    return None if policy == "action" else policy


def plan_contact_info(crm_type: str, record, key: str, new, policy: str, *, written: Callable[[str], bool],
                      taken: set[str], label: Callable[[str], str]) -> tuple[list[tuple[str, object, object]], str]:
    """The changes for one phone/e-mail/web field of an existing record under ``policy``, and a note for the
    preview ("" when there is nothing to say). ``written(key)`` tells whether the import writes that CRM field
    itself; ``taken`` collects the spare fields used by this record (each takes one value)."""
    old = getattr(record, key)
    kind = contact_info_kind(crm_type, key) or ""
    what = CONTACT_INFO_KINDS.get(kind, kind).lower()
    if same_value(old, new) or (is_blank(old) and is_blank(new)):
        return [], ""
    if policy == "ignore":
        return [], (f"{label(key)}: the ERP's {new} is not imported ({what}: ignore)" if not is_blank(new) else "")
    if is_blank(new):
        return [], ""  # these policies never blank a CRM value
    if policy == "replace":
        return [(key, old, new)], ""
    if is_blank(old):
        return [(key, old, new)], ""  # add and keep fill an empty field
    if policy == "add":
        same = norm_phone if kind == "phone" else norm_text
        holders = [k for k in CONTACT_INFO_FIELDS.get(crm_type, {}).get(kind, ())
                   if crm_field(crm_type, k) is not None and same(getattr(record, k, "")) == same(new)]
        if holders:
            return [], f"{label(key)}: the ERP's {new} is already in {label(holders[0])}"
        for spare in SPARE_FIELDS.get(crm_type, {}).get(kind, ()):
            if spare != key and spare not in taken and not written(spare) and is_blank(getattr(record, spare, "")):
                taken.add(spare)
                return [(spare, getattr(record, spare), new)], \
                    f"{label(key)}: keeps {old}; the ERP's {new} is added as {label(spare)} ({what}: add)"
        return [], f"{label(key)}: keeps {old}; the ERP's {new} is not added: no free field ({what}: add)"
    return [], f"{label(key)}: keeps {old}; the ERP's {new} is not imported ({what}: keep)"


# ------------------------------------------------------------------------------- company from a name


@dataclass
class NewCompany:
    """A CRM company the import creates from a person's company name; ``id`` is set once it is flushed."""

    name: str
    id: int | None = None


def company_name_of(actor: Mapping, field_key: str) -> str:
    value = (actor.get("FieldValues") or {}).get(field_key) if field_key else None
    return " ".join(str(value).split()) if isinstance(value, str) else ""


def resolve_companies_by_name(names: Sequence[str], *, match: bool, known: Mapping[str, tuple[int, str]],
                              pending: dict[str, NewCompany]) -> dict[str, tuple[int | None, str, object | None]]:
    """For each company name: (company id or None, name, the NewCompany to create or None). Existing companies are
    looked up (when ``match``) with one query for all the names, oldest first; ``known`` are the companies found or
    created by earlier batches of the run; a name not found is created once per run (``pending``)."""
    wanted: dict[str, str] = {}
    for n in names:
        if n and storable(n):
            wanted.setdefault(norm_text(n), n)  # the first spelling names a new company
    result: dict[str, tuple[int | None, str, object | None]] = {}
    found: dict[str, tuple[int, str]] = {}
    if match:
        found = {k: v for k, v in known.items() if k in wanted}
        missing = [n for k, n in wanted.items() if k not in found]
        if missing:
            condition = or_(sql_key(Company.name, "name").in_({" ".join(n.split()).lower() for n in missing}),
                            Company.name.in_(missing))
            for company_id, name in db.session.execute(select(Company.id, Company.name).where(condition)
                                                       .order_by(Company.id)):
                found.setdefault(norm_text(name), (company_id, name))
    else:
        found = {k: v for k, v in known.items() if k in wanted}  # created by this run: one company per name
    for k, name in wanted.items():
        if k in found:
            result[k] = (found[k][0], found[k][1], None)
        else:
            item = pending.setdefault(k, NewCompany(name))
            result[k] = (None, item.name, item)
    return result

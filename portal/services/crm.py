"""CRM records (companies, contacts, projects): validation, create/update/delete, search and paging.

Business rules only: plain values in, models out, never ``request``. Every rule failure raises
``ValidationError`` carrying ``{field: message}`` so a form can show each message next to its input.

Search is case-insensitive (``ILIKE`` on PostgreSQL, ``lower(..) LIKE lower(..)`` on SQLite) and every
whitespace-separated term must match one of the searched columns — the rule ``search_statement_scan`` writes as a
scan, answered from the search index (search_index.py, search_query.py). Lists are paged with SQL
``LIMIT``/``OFFSET``; a search counts its matches up to ``SEARCH_COUNT_CAP`` and reads a bounded set of records for
a page, so a list of 100,000 companies never loads more than a page.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from sqlalchemy import Select, and_, func, or_, select, update
from sqlalchemy.orm import selectinload

from portal.database import utcnow
from portal.extensions import db
from portal.models import CRM_MODELS, Company, Contact, CrmFieldType, CrmType, Project, crm_fields
from portal.models.user_fields import slot_keys
from portal.security.params import bounded_int
from portal.services import crm_rules, search_query

log = logging.getLogger(__name__)

PAGE_SIZE = 25
SEARCH_COUNT_CAP = 1000  # a search counts its matches up to this number, then shows "more than" it
MAX_QUERY_LENGTH = 100
MAX_TERMS = 6


class ValidationError(ValueError):
    """The values break one or more rules; ``errors`` maps a field key to its message."""

    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(f"{key}: {message}" for key, message in errors.items()))
        self.errors = errors


# ---------------------------------------------------------------------------------------------------------
# Paging


class Paging:
    """Page arithmetic for a result with ``page`` (1-based), ``per_page`` and ``total``; the names match the
    ``pager`` macro in templates/_macros/ui.html."""

    page: int
    per_page: int
    total: int

    #: ``total`` is only a lower bound (a search matching more than ``SEARCH_COUNT_CAP`` records): the pages end
    #: where the records do, ``has_more`` says whether another page follows this one
    capped: bool = False
    has_more: bool = False

    @property
    def pages(self) -> int:
        if self.capped:
            return self.page + 1 if self.has_more else self.page
        return max(1, math.ceil(self.total / self.per_page))

    @property
    def has_prev(self) -> bool:
        return self.page > 1

    @property
    def has_next(self) -> bool:
        return self.page < self.pages

    @property
    def prev_num(self) -> int | None:
        return self.page - 1 if self.has_prev else None

    @property
    def next_num(self) -> int | None:
        return self.page + 1 if self.has_next else None

    @property
    def first_index(self) -> int:
        return (self.page - 1) * self.per_page + 1 if self.total else 0

    @property
    def last_index(self) -> int:
        if self.capped:
            return (self.page - 1) * self.per_page + len(getattr(self, "items", ()))
        return min(self.total, self.page * self.per_page)


@dataclass
class Page(Paging):
    """One page of results."""

    items: list
    page: int
    per_page: int
    total: int
    query: str = ""
    extra: dict = field(default_factory=dict)
    capped: bool = False
    has_more: bool = False


def paginate(stmt: Select, page: int | str | None = 1, per_page: int = PAGE_SIZE, options=(), columns=(), *,
             total: int | None = None) -> Page:
    """Run ``stmt`` (a select of one model, already ordered) for one page; an out-of-range page is clamped.
    ``columns``: more columns computed with the page's query (not the count), in ``extra["columns"]`` by item id;
    ``total``: the number of records ``stmt`` selects when the caller knows it (no ``COUNT`` query then)."""
    number = _page_number(page)
    if total is None:
        total = db.session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery())) or 0
    pages = max(1, math.ceil(total / per_page))
    number = min(max(1, number), pages)
    paged = stmt.options(*options).limit(per_page).offset((number - 1) * per_page)
    if not columns:
        return Page(items=list(db.session.scalars(paged)), page=number, per_page=per_page, total=total)
    rows = db.session.execute(paged.add_columns(*columns)).all()
    return Page(items=[row[0] for row in rows], page=number, per_page=per_page, total=total,
                extra={"columns": {row[0].id: tuple(row[1:]) for row in rows}})


MAX_PAGE = 1_000_000  # a page number past any real list; larger ones would overflow the database's integers


def _page_number(page: int | str | None) -> int:
    try:
        return min(MAX_PAGE, max(1, int(page or 1)))
    except (TypeError, ValueError):
        return 1


# ---------------------------------------------------------------------------------------------------------
# Search

# the text fields a user may define are searched too (a free slot is blank)
_USER_TEXT = tuple(slot_keys("text"))
SEARCH_COLUMNS = {
    CrmType.COMPANY: (Company.name, Company.number, Company.code, Company.postal_city, Company.street_city,
                      Company.email, *(getattr(Company, key) for key in _USER_TEXT)),
    CrmType.CONTACT: (Contact.first_name, Contact.middle_name, Contact.last_name, Contact.email,
                      *(getattr(Contact, key) for key in _USER_TEXT), Company.name),
    CrmType.PROJECT: (Project.name, Project.number, *(getattr(Project, key) for key in _USER_TEXT)),
}
ORDER = {
    CrmType.COMPANY: (Company.name, Company.department, Company.id),
    CrmType.CONTACT: (Contact.last_name, Contact.first_name, Contact.id),
    CrmType.PROJECT: (Project.name, Project.id),
}
LIST_OPTIONS = {
    CrmType.COMPANY: (selectinload(Company.country),),
    CrmType.CONTACT: (selectinload(Contact.company),),
    CrmType.PROJECT: (selectinload(Project.status),),
}


def search_terms(query: str | None) -> list[str]:
    """The search words of ``query`` (trimmed, capped in length and number). NUL is dropped: no CRM text can hold
    one (crm_rules), SQLite's LIKE ends a pattern at it, and FTS5 refuses it ("unterminated string")."""
    return (query or "").replace("\x00", "").strip()[:MAX_QUERY_LENGTH].split()[:MAX_TERMS]


def _like_pattern(term: str) -> str:
    escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def search_statement(crm_type: str, query: str | None = "") -> Select:
    """``SELECT`` of the records matching every term of ``query`` (each term in any searched column, letters
    folded as ``str.lower()``), answered from the search index (portal/services/search_index.py); the same
    records as ``search_statement_scan``."""
    crm_type = CrmType(crm_type)
    model = CRM_MODELS[crm_type]
    stmt = select(model)
    if crm_type == CrmType.CONTACT:
        stmt = stmt.outerjoin(Company, Contact.company_id == Company.id)
    terms = search_terms(query)
    if terms:
        dialect = db.session.get_bind().dialect.name
        stmt = stmt.where(search_query.condition(crm_type.value, model, terms, dialect))
    return stmt.order_by(*ORDER[crm_type])


def search_statement_scan(crm_type: str, query: str | None = "") -> Select:
    """The search as a ``LIKE`` scan of every record (the rule ``search_statement`` answers from its index; kept
    as the reference of tests/integration/test_search_index.py and bench/search_bench.py)."""
    crm_type = CrmType(crm_type)
    model = CRM_MODELS[crm_type]
    stmt = select(model)
    if crm_type == CrmType.CONTACT:
        stmt = stmt.outerjoin(Company, Contact.company_id == Company.id)
    conditions = []
    for term in search_terms(query):
        pattern = _like_pattern(term)
        conditions.append(or_(*(column.ilike(pattern, escape="\\") for column in SEARCH_COLUMNS[crm_type])))
    if conditions:
        stmt = stmt.where(and_(*conditions))
    return stmt.order_by(*ORDER[crm_type])


def search(crm_type: str, query: str | None = "", page: int | str | None = 1, per_page: int = PAGE_SIZE, *,
           sync_filter: str | None = None, with_sync: bool = False) -> Page:
    """One page of the records matching ``query``. ``sync_filter`` ("errors", "unlinked-<connection id>") keeps
    the records with sync errors / not linked to that connection; ``with_sync`` adds each record's sync status
    (``extra["sync"]``: {id: record_sync_status.Status}), both computed in SQL with the list query."""
    from portal.services import record_sync_status

    crm_type = CrmType(crm_type)
    model = CRM_MODELS[crm_type]
    stmt = search_statement(crm_type, query)
    condition = record_sync_status.filter_condition(model, crm_type, sync_filter) if sync_filter else None
    if condition is not None:
        stmt = stmt.where(condition)
    columns = (record_sync_status.rank_column(model, crm_type),) if with_sync else ()
    terms = search_terms(query)
    if terms and condition is None:
        result = _search_page(crm_type, terms, page, per_page, columns)
    else:
        result = paginate(stmt, page, per_page, LIST_OPTIONS[crm_type], columns=columns)
    result.query = " ".join(search_terms(query))
    if with_sync:
        ranks = result.extra.pop("columns", {})
        result.extra["sync"] = {record.id: record_sync_status.from_rank(ranks.get(record.id, (None,))[0])
                                for record in result.items}
    result.extra["sync_filter"] = sync_filter if condition is not None else ""
    return result


def _search_page(crm_type: CrmType, terms: list[str], page: int | str | None, per_page: int, columns) -> Page:
    """One page of a search (issue #19: p95 <= 10 ms at 100,000 companies), the same records in the same order as
    ``paginate(search_statement(..))``: search_query.py plans which records the page is sorted from (a bounded set,
    wherever the matches sit in the list) and counts the matches up to ``SEARCH_COUNT_CAP``; beyond, the total
    shown is "more than SEARCH_COUNT_CAP". A page past the last match is clamped to the last page with an exact
    count."""
    model = CRM_MODELS[crm_type]
    dialect = db.session.get_bind().dialect.name
    plan_page = search_query.sqlite_plan if dialect == "sqlite" else search_query.pg_plan
    plan = plan_page(crm_type.value, model, ORDER[crm_type], terms, _page_number(page), per_page, SEARCH_COUNT_CAP)
    if plan.candidates is None:
        return Page(items=[], page=1, per_page=per_page, total=0)
    offset = (plan.number - 1) * per_page
    stmt = select(model).where(search_query.candidate_condition(model, plan.candidates))
    stmt = stmt.order_by(*(plan.order or ORDER[crm_type]))
    rows = db.session.execute(stmt.options(*LIST_OPTIONS[crm_type]).add_columns(*columns).limit(per_page + 1)
                              .offset(offset)).all()
    if not rows:  # past the last of more than SEARCH_COUNT_CAP matches (a hand-made URL): the last page, counted
        return paginate(search_statement(crm_type, " ".join(terms)), page, per_page, LIST_OPTIONS[crm_type],
                        columns=columns)
    has_more = len(rows) > per_page  # no more: this is the last page, and the count is known after all
    rows = rows[:per_page]
    extra = {"columns": {row[0].id: tuple(row[1:]) for row in rows}} if columns else {}
    items = [row[0] for row in rows]
    if plan.count is not None and plan.count <= SEARCH_COUNT_CAP:
        return Page(items=items, page=plan.number, per_page=per_page, total=plan.count, extra=extra)
    return Page(items=items, page=plan.number, per_page=per_page, capped=has_more, has_more=has_more,
                total=max(SEARCH_COUNT_CAP + 1, offset + len(rows) + 1) if has_more else offset + len(rows),
                extra=extra)


def company_options(query: str | None, limit: int = 20) -> tuple[list[Company], bool]:
    """Companies for the contact form's company picker: (the first ``limit`` matches, more exist)."""
    rows = list(db.session.scalars(search_statement(CrmType.COMPANY, query).limit(limit + 1)))
    return rows[:limit], len(rows) > limit


def company_contacts(company_id: int, page: int | str | None = 1, per_page: int = PAGE_SIZE) -> Page:
    stmt = select(Contact).where(Contact.company_id == company_id).order_by(*ORDER[CrmType.CONTACT])
    return paginate(stmt, page, per_page)


def counts() -> dict[str, int]:
    return {crm_type.value: db.session.scalar(select(func.count()).select_from(model)) or 0
            for crm_type, model in CRM_MODELS.items()}


def recently_updated(crm_type: str, limit: int = 5) -> list:
    model = CRM_MODELS[CrmType(crm_type)]
    return list(db.session.scalars(select(model).order_by(model.updated_at.desc(), model.id.desc()).limit(limit)))


# ---------------------------------------------------------------------------------------------------------
# Validation


def _clean_text(value) -> str:
    if value is None:
        return ""
    text = value if isinstance(value, str) else str(value)
    return text.replace("\r\n", "\n").strip()


def _clean_id(value) -> int | None:
    """An integer id, None for blank; ValueError for anything else (a number no id can be included: it must not
    reach the database, whose integers stop at ``MAX_INT``)."""
    if value is None or value == "" or value is False:
        return None
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, int | str) and str(value).strip().lstrip("-").isdigit():
        return bounded_int(str(value).strip())
    raise ValueError(value)


_CHECKED = frozenset({"on", "true", "1", "yes", "y"})
_UNCHECKED = frozenset({"", "off", "false", "0", "no", "n"})
_WHOLE_RE = re.compile(r"[+-]?\d{1,30}")
_DECIMAL_RE = re.compile(r"[+-]?(?:\d{1,30}(?:[.,]\d{0,30})?|[.,]\d{1,30})")


def _clean_checkbox(value):
    """A checkbox: a bool as is, ``"on"`` (what a browser sends) and yes-words -> True, a missing or empty value
    and no-words -> False; anything else is kept so the rule refuses it."""
    if value is None or isinstance(value, bool):
        return bool(value)
    if isinstance(value, str):
        word = value.strip().lower()
        if word in _CHECKED:
            return True
        if word in _UNCHECKED:
            return False
    return value


def _clean_integer(value):
    """A typed whole number: ``" 25 "`` -> 25, blank -> None; text that is not one is kept (the rule refuses it
    with the field's message; a number out of range is refused there too)."""
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        if _WHOLE_RE.fullmatch(text):
            return int(text)
    return value


def _clean_decimal(value):
    """A typed decimal number, with a point or a comma as the decimal separator: ``"1250,5"`` -> 1250.5, blank
    -> None; text that is not one (``abc``, ``1.000,50``, ``inf``) is kept so the rule refuses it."""
    if value is None or isinstance(value, bool | float):
        return value
    if isinstance(value, int):
        return float(value) if abs(value) <= crm_rules.MAX_DECIMAL else value
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        if _DECIMAL_RE.fullmatch(text):
            return float(text.replace(",", ".")) + 0.0
    return value


def clean(crm_type: str, data: Mapping, record=None) -> dict:
    """Validate ``data`` for a new record (``record`` None) or an update; return the values to assign.

    Only the keys present in ``data`` are checked and returned on an update; a create treats missing keys as
    blank. What each field may hold is ``portal.services.crm_rules`` (the rules the import and the sync apply
    too); a value equal to the record's stored one is accepted, so a legacy value in a field the user did not
    change never blocks a save, and a deleted list item stays on the records that have it. Raises
    ``ValidationError``.
    """
    crm_type = CrmType(crm_type)
    creating = record is None
    errors: dict[str, str] = {}
    values: dict = {}
    for spec in crm_fields(crm_type):
        if spec.key not in data and not creating:
            continue
        raw = data.get(spec.key)
        if spec.type in (CrmFieldType.TEXT, CrmFieldType.LONGTEXT):
            value = _clean_text(raw)
        elif spec.type == CrmFieldType.DATE:
            try:
                value = crm_rules.as_date(raw)
            except ValueError:
                value = raw  # refused below, with the field's message
        elif spec.type == CrmFieldType.CHECKBOX:
            value = _clean_checkbox(raw)
        elif spec.type == CrmFieldType.INTEGER:
            value = _clean_integer(raw)
        elif spec.type == CrmFieldType.DECIMAL:
            value = _clean_decimal(raw)
        else:
            try:
                value = _clean_id(raw)
            except ValueError:
                value = raw
        current = crm_rules.MISSING if creating else getattr(record, spec.key)
        problem = crm_rules.value_problem(crm_type, spec.key, value, current=current)
        if problem is not None:
            errors[spec.key] = problem.message
        else:
            values[spec.key] = value
    if crm_type == CrmType.CONTACT:
        if "company_id" in data or creating:
            try:
                company_id = _clean_id(data.get("company_id"))
            except ValueError:
                company_id = -1
            if company_id is not None and db.session.get(Company, company_id) is None:
                errors["company_id"] = "Choose an existing company."
            else:
                values["company_id"] = company_id
        first = values.get("first_name", getattr(record, "first_name", ""))
        last = values.get("last_name", getattr(record, "last_name", ""))
        if not first and not last and "first_name" not in errors and "last_name" not in errors:
            errors["first_name"] = "Enter a first name or a last name."
    if errors:
        raise ValidationError(errors)
    return values


# ---------------------------------------------------------------------------------------------------------
# Create / update / delete


def create_record(crm_type: str, data: Mapping):
    """Validate and insert a company, contact or project; commits. Raises ``ValidationError``."""
    crm_type = CrmType(crm_type)
    values = clean(crm_type, data)
    record = CRM_MODELS[crm_type](**values)
    db.session.add(record)
    db.session.commit()
    return record


def update_record(record, data: Mapping):
    """Validate and apply ``data`` to ``record``; commits. Raises ``ValidationError`` (record untouched)."""
    crm_type = crm_type_of(record)
    values = clean(crm_type, data, record)
    for key, value in values.items():
        setattr(record, key, value)
    db.session.commit()
    return record


def crm_type_of(record) -> CrmType:
    for crm_type, model in CRM_MODELS.items():
        if isinstance(record, model):
            return crm_type
    raise TypeError(f"not a CRM record: {record!r}")


def _links_hook():
    """``portal.services.links.on_crm_record_deleted`` when that module exists (written by another team)."""
    try:
        from portal.services import links
    except ModuleNotFoundError as exc:
        if exc.name != "portal.services.links":
            raise
        return None
    return getattr(links, "on_crm_record_deleted", None)


def delete_record(record) -> dict:
    """Delete a record in one transaction with its ERP links; a company's contacts are kept (unlinked).

    Returns ``{"contacts_detached": n}`` (always 0 for contacts and projects).
    """
    crm_type = crm_type_of(record)
    detached = 0
    if crm_type == CrmType.COMPANY:
        # One UPDATE instead of loading every contact; updated_at moves so the sync sees the change.
        result = db.session.execute(
            update(Contact).where(Contact.company_id == record.id).values(company_id=None, updated_at=utcnow()),
            execution_options={"synchronize_session": "fetch"},
        )
        detached = result.rowcount or 0
        db.session.expire(record, ["contacts"])
    hook = _links_hook()
    if hook is not None:
        hook(crm_type.value, record.id)
    db.session.delete(record)
    db.session.commit()
    return {"contacts_detached": detached}


def contact_count(company_id: int) -> int:
    return db.session.scalar(select(func.count()).select_from(Contact).where(Contact.company_id == company_id)) or 0

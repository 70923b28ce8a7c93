"""What a CRM field may hold: the one definition used by the CRM forms (through ``portal.services.crm.clean``),
the import from ERP and the sync engine, so a value the CRM would refuse on its own form is never stored by any
path (a stored one would make every later save of that record fail until someone fixed a field they never
touched).

Plain functions: no Flask request or app is needed, except to look up list items when no ``list_items`` mapping
is passed (then the database is asked, which needs an app context).

The rules, per field (``crm_fields()`` in portal/models/crm.py):

* **blank** (None, ``''``, only spaces) is allowed, unless the field is *required* (company and project name);
  the contact's "first or last name" rule spans two fields and stays with the callers;
* **text / long text**: a ``str``; no NUL character or unpaired surrogate (no database can store them);
  at most the field's length (the column's length), counted as stored (not stripped);
* **e-mail** fields (``email``): ``something@something.something`` without spaces (checked on the trimmed text,
  as the form does) — exactly the rule the CRM form has always applied, so a value the form accepted before is
  never refused now;
* **web site** fields (``url``): an absolute ``http://`` or ``https://`` address with a host name and no
  spaces; never ``javascript:``, ``data:``, ``ftp:`` or a bare domain (the form never accepted those);
* **dates**: a ``date`` (a ``datetime`` counts as its date, an ISO ``YYYY-MM-DD`` text is parsed) from the year
  1800 on; a birth date not in the future;
* **lists**: the integer id of an existing item of the field's own list that is not deleted;
* **checkboxes**: a ``bool`` (``True``/``False``); a checkbox is never blank, so ``None`` is refused too (the
  form, the import and the sync turn an empty value into ``False`` before asking);
* **whole numbers** (``integer``): an ``int`` (not a bool) within ±``MAX_INTEGER`` (the database's integer);
* **decimal numbers** (``decimal``): an ``int`` or ``float`` (not a bool), finite, within ±``MAX_DECIMAL``
  (beyond it a double no longer holds every cent).

A value equal to the one the record already holds (``current`` / ``record``) is always accepted apart from a blank
required field: storing it again changes nothing, and refusing it would block the save of a record for a field
the user did not touch (a deleted list item stays on the records that have it — the forms' rule since the
start — and legacy values written before these rules existed do not block saves).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import NamedTuple
from urllib.parse import urlsplit

from sqlalchemy import select

from portal.database import MAX_INT, utcnow
from portal.extensions import db
from portal.models import BUILTIN_CRM_FIELDS, CrmField, CrmFieldType, CrmType, ListItem, crm_field

__all__ = [
    "MAX_DECIMAL",
    "MAX_INTEGER",
    "MISSING",
    "ListItemInfo",
    "ValueProblem",
    "as_date",
    "check_crm_value",
    "check_crm_values",
    "is_email",
    "is_web_address",
    "load_list_items",
    "storable_text",
    "value_problem",
]

EMAIL_KEYS = frozenset({"email"})
URL_KEYS = frozenset({"url"})
EMAIL_RE = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")
WEB_SCHEMES = ("http", "https")
MIN_YEAR = 1800
SHOWN_LENGTH = 60  # characters of an offending value quoted in a reason
MAX_INTEGER = MAX_INT  # a CRM whole number field: the database's integer (PostgreSQL's 4 bytes)
MAX_DECIMAL = 1e15  # a CRM decimal field: a double holds every cent up to here


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING = _Missing()
"""``current`` when there is no record yet (a create): nothing is exempt."""


class ListItemInfo(NamedTuple):
    list_name: str
    name: str
    deleted: bool


@dataclass(frozen=True)
class ValueProblem:
    """Why a value cannot be stored in a CRM field.

    ``message`` is for the form, next to the field ("Enter a valid e-mail address, such as name@example.com.");
    ``reason`` names the value, for the sync log and import results ('"post10@erp" is not a valid e-mail
    address'; the value is quoted, with control characters escaped, cut at 60 characters).
    """

    crm_type: str
    key: str
    label: str
    message: str
    reason: str


_BUILTIN_SPECS: dict[tuple[str, str], tuple[str, CrmField]] = {
    (crm_type.value, spec.key): (crm_type.value, spec) for crm_type, specs in BUILTIN_CRM_FIELDS.items()
    for spec in specs}
"""``_spec``'s answer for every built-in field, built once: one dict lookup per value instead of the record type's
enum conversion and the catalogue's lookup (the import and the sync check every value they write). Keys are the
exact, case-sensitive values (a ``CrmType`` member hashes and compares as its value); anything else —
user-defined fields, which change at run time, and unknown types or keys — takes the long way below."""


def _spec(crm_type: str, crm_key: str) -> tuple[str, CrmField]:
    try:
        found = _BUILTIN_SPECS.get((crm_type, crm_key))
    except TypeError:  # an unhashable argument: the long way raises as it always did
        found = None
    if found is not None:
        return found
    crm_type = CrmType(crm_type).value  # ValueError for an unknown record type
    spec = crm_field(crm_type, crm_key)
    if spec is None:
        raise KeyError(f"{crm_type} has no CRM field {crm_key!r}")
    return crm_type, spec


# ------------------------------------------------------------------------------------------- plain checks


def is_email(text: str) -> bool:
    """The CRM's e-mail rule: ``local@domain.tld`` without spaces or a second ``@`` (on the trimmed text)."""
    return isinstance(text, str) and EMAIL_RE.fullmatch(text.strip()) is not None


def is_web_address(text: str) -> bool:
    """The CRM's web site rule: an ``http``/``https`` address with a host name and no whitespace anywhere."""
    if not isinstance(text, str):
        return False
    text = text.strip()
    if not text or any(ch.isspace() for ch in text):
        return False
    try:
        parts = urlsplit(text)
        return parts.scheme.lower() in WEB_SCHEMES and bool(parts.hostname)
    except ValueError:
        return False


def as_date(value) -> date | None:
    """A ``date`` from a date, a datetime (its date) or an ISO ``YYYY-MM-DD`` text; blank is None.
    Raises ValueError for anything else (``31.01.2030``, ``2030-1-5``, ``1981-02-29``, numbers)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str) and DATE_RE.fullmatch(value.strip()):
        return date.fromisoformat(value.strip())
    raise ValueError(value)


def storable(text: str) -> bool:
    """Whether every database can store ``text`` (no NUL, no unpaired surrogate)."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # an unpaired surrogate (e.g. "\ud800" from a JSON escape)
        return False
    return True


def storable_text(text: str) -> str:
    """``text`` with what no database can store escaped (NUL as ``\\x00``, an unpaired surrogate as ``\\ud800``),
    for writing a refused value into a log."""
    if storable(text):
        return text
    return text.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")


def _blank(value) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _shown(value) -> str:
    """The value quoted for a reason: control and other unprintable characters escaped, cut at 60 characters."""
    if isinstance(value, date):
        text = value.isoformat()
    else:
        text = value if isinstance(value, str) else repr(value)
    text = "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)
    if len(text) > SHOWN_LENGTH:
        text = text[: SHOWN_LENGTH - 1] + "…"
    return f'"{text}"'


# ----------------------------------------------------------------------------------------------- list items


def load_list_items(ids: Iterable[int] | None = None) -> dict[int, ListItemInfo]:
    """Every CRM list item (or those with ``ids``) as ``{id: ListItemInfo}``: one query, for callers that check
    many values (pass it as ``list_items``). Needs an app context."""
    stmt = select(ListItem.id, ListItem.list_name, ListItem.name, ListItem.deleted)
    if ids is not None:
        wanted = sorted({i for i in ids if isinstance(i, int) and not isinstance(i, bool)})
        if not wanted:
            return {}
        stmt = stmt.where(ListItem.id.in_(wanted))
    return {row.id: ListItemInfo(row.list_name, row.name, bool(row.deleted)) for row in db.session.execute(stmt)}


def _list_item(item_id: int, list_items: Mapping[int, ListItemInfo] | None) -> ListItemInfo | None:
    if list_items is not None:
        return list_items.get(item_id)
    return load_list_items([item_id]).get(item_id)


# ------------------------------------------------------------------------------------------------ the rules


def value_problem(crm_type: str, crm_key: str, value, *, current=MISSING,
                  list_items: Mapping[int, ListItemInfo] | None = None) -> ValueProblem | None:
    """None when ``value`` may be stored in the field ``crm_key`` of a ``crm_type`` record, else the problem.

    ``current``: the record's value of this field now (leave it out for a new record); an equal value is
    accepted (see the module docstring). ``list_items``: ``{id: ListItemInfo}`` (``load_list_items()``) for list
    fields; without it the item is read from the database. Raises ValueError for an unknown ``crm_type`` and
    KeyError for an unknown ``crm_key``.
    """
    crm_type, spec = _spec(crm_type, crm_key)
    label = spec.label

    def problem(message: str, reason: str) -> ValueProblem:
        return ValueProblem(crm_type, crm_key, label, message, reason)

    if spec.type == CrmFieldType.CHECKBOX:
        if isinstance(value, bool):
            return None
        return problem(f"Tick {label.lower()} or leave it unticked.", f"{_shown(value)} is not a yes/no value")
    if _blank(value):
        if spec.required:
            return problem(f"{label} is required.", f"{label} is blank, and a {crm_type} needs one")
        return None
    if current is not MISSING and _same(value, current):
        return None

    if spec.type in (CrmFieldType.TEXT, CrmFieldType.LONGTEXT):
        if not isinstance(value, str):
            return problem(f"Enter {label.lower()} as text.", f"{_shown(value)} is not text")
        if not storable(value):
            return problem(f"{label} contains a character that cannot be stored.",
                           f"{_shown(value)} contains a character the CRM cannot store")
        if spec.max_length and len(value) > spec.max_length:
            return problem(f"{label} can be at most {spec.max_length} characters.",
                           f"{_shown(value)} is longer than {spec.max_length} characters ({len(value)})")
        if crm_key in EMAIL_KEYS and not is_email(value):
            return problem("Enter a valid e-mail address, such as name@example.com.",
                           f"{_shown(value)} is not a valid e-mail address")
        if crm_key in URL_KEYS and not is_web_address(value):
            return problem("Enter a web address starting with http:// or https://.",
                           f"{_shown(value)} is not a web address starting with http:// or https://")
        return None

    if spec.type == CrmFieldType.DATE:
        try:
            day = as_date(value)
        except ValueError:
            return problem(f"Enter {label.lower()} as a date (YYYY-MM-DD).",
                           f"{_shown(value)} is not a date (YYYY-MM-DD)")
        if crm_key == "birth_date" and day > utcnow().date():
            return problem("The birth date cannot be in the future.",
                           f"{_shown(day)} is in the future, and a birth date cannot be")
        if day.year < MIN_YEAR:
            return problem(f"Enter a realistic {label.lower()}.", f"{_shown(day)} is before the year {MIN_YEAR}")
        return None

    if spec.type == CrmFieldType.INTEGER:
        if isinstance(value, bool) or not isinstance(value, int):
            return problem(f"Enter {label.lower()} as a whole number, such as 25.",
                           f"{_shown(value)} is not a whole number")
        if not -MAX_INTEGER <= value <= MAX_INTEGER:
            return problem(f"Enter {label.lower()} between -{MAX_INTEGER} and {MAX_INTEGER}.",
                           f"{_number(value)} is out of range for {label} (-{MAX_INTEGER} to {MAX_INTEGER})")
        return None

    if spec.type == CrmFieldType.DECIMAL:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return problem(f"Enter {label.lower()} as a number, such as 1250.50.",
                           f"{_shown(value)} is not a number")
        if isinstance(value, float) and not math.isfinite(value):
            return problem(f"Enter {label.lower()} as a number, such as 1250.50.",
                           f"{_shown(value)} is not a finite number")
        if not -MAX_DECIMAL <= value <= MAX_DECIMAL:
            limit = f"{int(MAX_DECIMAL)}"
            return problem(f"Enter {label.lower()} between -{limit} and {limit}.",
                           f"{_number(value)} is out of range for {label} (-{limit} to {limit})")
        return None

    # list
    message = f"Choose a {label.lower()} from the list."
    if isinstance(value, bool) or not isinstance(value, int):
        return problem(message, f"{_shown(value)} is not a list item id")
    item = _list_item(value, list_items)
    list_label = f"{label} list"
    if item is None:
        return problem(message, f"#{value} is not an item of the {list_label}")
    if item.list_name != spec.list_name:
        return problem(message, f"{_shown(item.name)} (#{value}) is an item of another list, not the {list_label}")
    if item.deleted:
        return problem(message, f"{_shown(item.name)} (#{value}) is a deleted item of the {list_label}")
    return None


def _number(value) -> str:
    """A number for a reason, quoted and cut like ``_shown`` (an int too long to print says so)."""
    try:
        return _shown(repr(value))
    except ValueError:  # more digits than Python converts to text
        return "The number"


def _same(value, current) -> bool:
    if type(value) is not type(current) and not (isinstance(value, str) and isinstance(current, str)):
        return False  # True == 1, date vs datetime: never "the same stored value"
    return value == current


def check_crm_value(crm_type: str, crm_key: str, value, *, current=MISSING,
                    list_items: Mapping[int, ListItemInfo] | None = None) -> str | None:
    """None when the CRM can hold ``value`` in ``crm_key``, else a short reason naming the value, such as
    ``"post10@erp" is not a valid e-mail address``. Same arguments as :func:`value_problem`."""
    found = value_problem(crm_type, crm_key, value, current=current, list_items=list_items)
    return found.reason if found is not None else None


def check_crm_values(crm_type: str, values: Mapping[str, object], *, record=None,
                     list_items: Mapping[int, ListItemInfo] | None = None) -> dict[str, str]:
    """``{crm_key: reason}`` for the values the CRM cannot hold; ``{}`` when all can be stored.

    Keys that are not CRM fields of ``crm_type`` (such as a contact's ``company_id``) are not checked here.
    ``record``: the record the values are for (None for a new one); a value equal to the record's is accepted.
    Without ``list_items`` the list items are read in one query.
    """
    crm_type = CrmType(crm_type).value
    specs = {key: spec for key in values if (spec := crm_field(crm_type, key)) is not None}
    checked = {key: value for key, value in values.items() if key in specs}
    if list_items is None:
        ids = [value for key, value in checked.items()
               if specs[key].type == CrmFieldType.LIST and isinstance(value, int)]
        list_items = load_list_items(ids) if ids else {}
    problems = {}
    for key, value in checked.items():
        current = getattr(record, key, MISSING) if record is not None else MISSING
        reason = check_crm_value(crm_type, key, value, current=current, list_items=list_items)
        if reason is not None:
            problems[key] = reason
    return problems

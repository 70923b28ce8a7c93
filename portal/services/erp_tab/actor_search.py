"""Finding the ERP actor to link: the simple search (SearchActors, SearchActorByParent for contacts) and the
advanced search (its criteria form, the restrictions parsed from it, SearchActorsAdvanced)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from sqlalchemy import select

from portal.connectors.client import ConnectorClient, ConnectorError
from portal.connectors.protocol import OPERATORS
from portal.extensions import db
from portal.models import ActorTypeConfig, ErpField, FieldType, Link
from portal.services.erp_tab.erp_calls import _client, _failed, _list_texts, _release, _warnings, get_lists
from portal.services.erp_tab.errors import InvalidInput
from portal.services.erp_tab.fields import display_value, fields_by_key, search_fields
from portal.services.erp_tab.sections import Section, _parent_of, require_connect
from portal.services.links import holder_descriptions
from portal.services.values import ConversionError, normalize_erp

SEARCH_LIMIT = 100  # result rows shown in the search dialog
MAX_SEARCH_TEXT = 100


PARENT_KEYS = ("ParentErpKey", "ParentActorType")

OPERATOR_LABELS = {
    "=": "is", "isnot": "is not", "begins": "begins with", "notbegins": "does not begin with",
    "contains": "contains", "notcontains": "does not contain", "ends": "ends with", "notends": "does not end with",
    "between": "is between", "!=": "is not", ">": "is greater than", "<": "is less than", ">=": "is at least",
    "<=": "is at most", "oneof": "is one of", "notoneof": "is not one of", "before": "is before",
    "after": "is after", "beforeOrEqual": "is on or before", "afterOrEqual": "is on or after",
}


@dataclass
class ResultRow:
    erp_key: str
    cells: list[str]
    holder: str = ""  # "the company Acme" when the actor is already linked to another record
    this_record: bool = False


@dataclass
class SearchResult:
    columns: list[str]
    rows: list[ResultRow]
    truncated: bool = False
    warnings: list[str] = field(default_factory=list)
    text: str = ""
    advanced: bool = False


def _result(section: Section, config: ActorTypeConfig, client: ConnectorClient, actors: list[dict],
            columns: list[ErpField], text: str = "", advanced: bool = False) -> SearchResult:
    truncated = len(actors) > SEARCH_LIMIT
    actors = [a for a in actors if isinstance(a.get("ErpKey"), str) and a["ErpKey"]][:SEARCH_LIMIT]
    texts = _list_texts(client, section.connection.guid, columns, actors) if actors else {}
    warnings = _warnings(client)
    keys = [a["ErpKey"] for a in actors]
    holders: dict[str, Link] = {}
    if keys:
        for link in db.session.scalars(select(Link).where(Link.connection_id == section.connection.id,
                                                          Link.erp_actor_type == config.erp_actor_type,
                                                          Link.erp_key.in_(keys))):
            holders[link.erp_key] = link
    others = [link for link in holders.values()
              if not (link.crm_type == section.crm_type and link.crm_id == section.record.id)]
    described = holder_descriptions(others)  # their records read in one query per CRM type, not one per row
    rows = []
    for actor in actors:
        values = actor.get("FieldValues") or {}
        row = ResultRow(actor["ErpKey"], [display_value(f, values.get(f.field_key), texts.get(f.field_key))
                                          for f in columns])
        holder = holders.get(actor["ErpKey"])
        if holder is not None:
            if holder.crm_type == section.crm_type and holder.crm_id == section.record.id:
                row.this_record = True
            else:
                row.holder = described[holder.id]
        rows.append(row)
    return SearchResult([f.display_name or f.field_key for f in columns], rows, truncated, warnings, text,
                        advanced)


def search(section: Section, config: ActorTypeConfig, text: str) -> SearchResult:
    """Simple search (SearchActors; contacts: SearchActorByParent under the company's actor). Blank lists all."""
    require_connect(section)
    text = (text or "").strip()[:MAX_SEARCH_TEXT]
    parent = _parent_of(section)
    columns = search_fields(config)
    keys = [f.field_key for f in columns]
    guid, actor_type = section.connection.guid, config.erp_actor_type
    client = _client(section.connection)
    _release()
    try:
        try:
            if parent is not None:
                actors = client.search_actor_by_parent(guid, actor_type, text, parent[0], parent[1], keys)
            else:
                actors = client.search_actors(guid, actor_type, text, keys, limit=SEARCH_LIMIT + 1)
        except ConnectorError as exc:
            raise _failed(exc, "The ERP search failed") from exc
        return _result(section, config, client, actors, columns, text=text)
    finally:
        client.close()


@dataclass
class Criterion:
    """One searchable field of the advanced search form."""

    erp_field: ErpField
    operators: list[tuple[str, str]]  # (operator, label)
    choices: list[tuple[str, str]] = field(default_factory=list)  # list fields: (key, text)

    @property
    def key(self) -> str:
        return self.erp_field.field_key

    @property
    def ident(self) -> int:
        return self.erp_field.id


def criteria(section: Section, config: ActorTypeConfig) -> list[Criterion]:
    """The advanced search form: one row per searchable field, with the operators of its type and, for list
    fields, the list items (GetList). Empty when the actor type has no searchable fields."""
    require_connect(section)
    known = fields_by_key(config)
    fields = [known[key] for key in config.searchable_fields or [] if key in known]
    lists = get_lists(section.connection, fields) if fields else {}
    result = []
    for f in fields:
        ops = OPERATORS.get(f.field_type) or OPERATORS["Text"]
        choices = list(lists.get(f.list_name, {}).items()) if f.field_type == FieldType.LIST else []
        result.append(Criterion(f, [(op, OPERATOR_LABELS.get(op, op)) for op in ops], choices))
    return result


def parse_restrictions(config: ActorTypeConfig, form: Mapping[str, list[str]]) -> list[dict]:
    """SearchRestrictions from the advanced search form (``use_<id>``, ``op_<id>``, ``v_<id>``, ``v2_<id>``;
    ``form`` maps a name to all its submitted values). Raises InvalidInput naming each bad row."""
    known = fields_by_key(config)
    errors: dict[str, str] = {}
    restrictions = []
    for key in config.searchable_fields or []:
        f = known.get(key)
        if f is None or not form.get(f"use_{f.id}"):
            continue
        label = f.display_name or f.field_key
        op = (form.get(f"op_{f.id}") or [""])[0]
        if op not in (OPERATORS.get(f.field_type) or OPERATORS["Text"]):
            errors[f"op_{f.id}"] = f"Choose how to compare {label}."
            continue
        raw = [v for v in form.get(f"v_{f.id}", []) if v.strip()]
        if op == "between":
            raw = raw[:1] + [v for v in form.get(f"v2_{f.id}", []) if v.strip()][:1]
            if len(raw) < 2:
                errors[f"v_{f.id}"] = f"Enter both values for {label}."
                continue
        elif f.field_type != FieldType.LIST:
            raw = raw[:1]
        if not raw:
            errors[f"v_{f.id}"] = f"Enter a value for {label}."
            continue
        try:
            values = [normalize_erp(f.field_type, v) for v in raw]
        except ConversionError as exc:
            errors[f"v_{f.id}"] = f"{label}: {exc}."
            continue
        restrictions.append({"FieldKey": key, "Operator": op, "Values": values})
    if errors:
        raise InvalidInput("Some search criteria are not valid.", errors)
    if not restrictions:
        raise InvalidInput("Tick at least one criterion to search with.")
    return restrictions


def advanced_search(section: Section, config: ActorTypeConfig, restrictions: list[dict]) -> SearchResult:
    """SearchActorsAdvanced; for contacts restricted to the company's ERP actor (ParentErpKey/ParentActorType)."""
    require_connect(section)
    parent = _parent_of(section)
    if parent is not None:
        restrictions = [r for r in restrictions if r.get("FieldKey") not in PARENT_KEYS] + [
            {"FieldKey": "ParentActorType", "Operator": "=", "Values": [parent[0]]},
            {"FieldKey": "ParentErpKey", "Operator": "=", "Values": [parent[1]]},
        ]
    columns = search_fields(config)
    guid, actor_type = section.connection.guid, config.erp_actor_type
    client = _client(section.connection)
    _release()
    try:
        try:
            actors = client.search_actors_advanced(guid, actor_type, restrictions, [f.field_key for f in columns])
        except ConnectorError as exc:
            raise _failed(exc, "The ERP search failed") from exc
        return _result(section, config, client, actors, columns, advanced=True)
    finally:
        client.close()

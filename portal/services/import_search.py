"""Import from ERP: the Search ERP step (spec §5.4): the criteria grid's fields and rows, SearchActorsAdvanced and
the result grid."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from portal.connectors.client import ConnectorClient
from portal.connectors.protocol import OPERATORS
from portal.extensions import db
from portal.models import ActorTypeConfig, Connection, ErpField, FieldType
from portal.services.connectors import client_for
from portal.services.import_settings import ImportProblem
from portal.services.values import ConversionError, display, parse_input

OPERATOR_LABELS = {
    "=": "Equals", "isnot": "Is not", "begins": "Starts with", "contains": "Contains", "ends": "Ends with",
    "notbegins": "Does not start with", "notcontains": "Does not contain", "notends": "Does not end with",
    "between": "Between", ">": "Greater than", "<": "Less than", ">=": "At least", "<=": "At most",
    "!=": "Is not", "oneof": "Is one of", "notoneof": "Is not one of", "before": "Before", "after": "After",
    "beforeOrEqual": "On or before", "afterOrEqual": "On or after",
}


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

"""Import from ERP: the wizard's preview (spec §5, issue #6) — the outcome of one page of the selection and, with
"include persons", of their persons. Reads only: a preview never writes.

:func:`selected_keys` (the actors to import) and :func:`find_persons` (the persons of companies) resolve the
selection for the run too (``portal.services.import_run``).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from portal.connectors.client import ConnectorClient, ConnectorError
from portal.extensions import db
from portal.models import ActorType, Connection, CrmType
from portal.services.connectors import client_for
from portal.services.crm import Paging
from portal.services.import_plan import Planned
from portal.services.import_search import result_fields
from portal.services.import_settings import ImportProblem, ImportRequest, check_settings
from portal.services.importer import Importer

log = logging.getLogger(__name__)

PARENT_CHUNK = 500  # company keys per SearchActorsAdvanced(ParentErpKey oneof …)


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

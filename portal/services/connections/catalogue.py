"""The catalogue a connector reports for a connection (actor types, their fields and searchable keys), and its
cache in the database: kept mappings, vanished fields flagged, new fields pre-mapped by name."""

from __future__ import annotations

from dataclasses import dataclass, field

from portal.connectors.client import ConnectorError
from portal.connectors.protocol import ACTOR_TYPES
from portal.database import utcnow
from portal.extensions import db
from portal.models import (
    ACTOR_CRM_TYPE,
    ActorTypeConfig,
    Connection,
    Connector,
    ErpField,
    FieldAccess,
    FieldType,
    crm_fields,
)
from portal.services import audit
from portal.services.connections.config import sorted_fields
from portal.services.connectors import ServiceError, client_for

# ---------------------------------------------------------------------------------------------- catalogue

@dataclass
class Catalogue:
    """What the connector says it supports: {actor type: (fields, searchable keys)}."""
    actor_types: dict[str, tuple[list[dict], list[str]]]


def fetch_catalogue(connector: Connector, guid: str) -> Catalogue:
    client = client_for(connector)
    try:
        types = [t for t in client.get_supported_actor_types(guid) if t in ACTOR_TYPES]
        result = {}
        for actor_type in types:
            fields = client.get_supported_actor_type_fields(guid, actor_type)
            searchable = client.get_searchable_fields(guid, actor_type)
            result[actor_type] = (fields, searchable)
    except ConnectorError as exc:
        raise ServiceError(f"Could not read the actor types and fields: {exc.user_message}") from exc
    return Catalogue(result)


@dataclass
class RefreshReport:
    added: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    updated: int = 0


def _premap_target(crm_type: str, field_key: str, field_type: str) -> str | None:
    from portal.services.values import compatible

    wanted = field_key.upper()
    for crm_field in crm_fields(crm_type):
        if wanted in crm_field.erp_aliases and compatible(field_type, crm_field.type)[0]:
            return crm_field.key
    return None


def apply_catalogue(connection: Connection, catalogue: Catalogue) -> RefreshReport:
    """Upsert cached actor types and fields; keep mappings; flag what vanished; pre-map new fields by name
    (with no direction, so nothing syncs until an admin chooses one)."""
    report = RefreshReport()
    for config in connection.actor_types:
        config.supported = config.erp_actor_type in catalogue.actor_types
    for actor_type, (fields, searchable) in catalogue.actor_types.items():
        config = connection.actor_type(actor_type)
        if config is None:
            config = ActorTypeConfig(erp_actor_type=actor_type, crm_type=ACTOR_CRM_TYPE[actor_type],
                                     is_active=False)
            connection.actor_types.append(config)
        config.supported = True
        config.searchable_fields = [k for k in searchable if isinstance(k, str)]
        existing = {f.field_key: f for f in config.fields}
        taken = {f.crm_field for f in config.fields if f.crm_field}
        next_rank = max([f.rank for f in config.fields] or [0]) + 1
        seen = set()
        for meta in sorted_fields(fields):
            key = meta["FieldKey"]
            seen.add(key)
            erp_field = existing.get(key)
            if erp_field is None:
                erp_field = ErpField(field_key=key, rank=next_rank)
                next_rank += 1
                config.fields.append(erp_field)
                report.added.append(f"{actor_type}.{key}")
                target = _premap_target(config.crm_type, key, meta.get("FieldType") or FieldType.TEXT)
                if target and target not in taken:
                    erp_field.crm_field = target
                    taken.add(target)
                if key in config.searchable_fields or meta.get("Access") == FieldAccess.READ_ONLY:
                    erp_field.show_in_search = key in config.searchable_fields
            else:
                report.updated += 1
            erp_field.display_name = meta.get("DisplayName") or key
            erp_field.description = meta.get("DisplayDescription") or ""
            erp_field.field_type = meta.get("FieldType") or FieldType.TEXT
            erp_field.list_name = meta.get("ListName") or ""
            erp_field.meta_default = str(meta.get("DefaultValue") or "")
            erp_field.max_length = int(meta.get("MaxLength") or 0)
            erp_field.access = meta.get("Access") or FieldAccess.NORMAL
            erp_field.connector_rank = int(meta.get("Rank") or 0)
            erp_field.missing_in_erp = False
            if erp_field.access == FieldAccess.MANDATORY:
                erp_field.mandatory = True
            if erp_field.access == FieldAccess.READ_ONLY:
                erp_field.sync_to_erp = False
        for key, erp_field in existing.items():
            if key not in seen and not erp_field.missing_in_erp:
                erp_field.missing_in_erp = True
                report.missing.append(f"{actor_type}.{key}")
    connection.fields_refreshed_at = utcnow()
    return report


def refresh_fields(connection: Connection, actor=None, **ctx) -> RefreshReport:
    catalogue = fetch_catalogue(connection.connector, connection.guid)
    report = apply_catalogue(connection, catalogue)
    audit.record("connection.refresh_fields", connection,
                 after={"added": report.added, "missing": report.missing}, actor=actor, **ctx)
    db.session.commit()
    return report

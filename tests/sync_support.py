"""Helpers for the sync engine tests: a connection to a FakeConnector with company mappings, linked records on
both sides, and running syncs. Call them inside an app context."""

from __future__ import annotations

from sqlalchemy import select

from portal.database import utcnow
from portal.extensions import db
from portal.models import (
    Company,
    Connection,
    Connector,
    CrmList,
    Link,
    ListItem,
    ListItemMapping,
    RunKind,
    SyncChange,
    SyncRun,
)
from portal.security import crypto
from portal.services.connections import Catalogue, apply_catalogue
from portal.services.sync import engine, fieldmap, runs
from tests.fakes.connector_app import FIELDS

# ERP field key (FakeConnector Customer) -> CRM company attribute
COMPANY_MAPPING = {
    "name": "name",
    "orgnr": "vat_no",
    "email": "email",
    "phone": "phone",
    "country": "country_id",
    "creditlimit": "number",
    "employees": "code",
}
COUNTRIES = {"NO": "Norway", "SE": "Sweden", "DK": "Denmark", "FI": "Finland", "DE": "Germany"}


def make_connection(fake, *, name: str = "Fake ERP", policy: str = "priority", actor_types=("Customer",),
                    mapping: dict | None = None, directions: dict | None = None, active: bool = True,
                    mappings: dict | None = None) -> int:
    """A connection to ``fake`` with its catalogue cached, ``mapping`` (companies) or ``mappings`` ({actor type:
    {erp key: crm attribute}}) set both ways (``directions`` overrides {erp key: (to_crm, to_erp)}), the
    Countries list mapped and the actor types active. Returns its id."""
    mapping = COMPANY_MAPPING if mapping is None else mapping
    mappings = {"Customer": mapping, "Supplier": mapping, **(mappings or {})}
    directions = directions or {}
    connector = Connector(name=f"{name} connector", url=fake.url)
    db.session.add(connector)
    guid = fake.add_connection()
    connection = Connection(connector=connector, name=name, guid=guid, active=active, conflict_policy=policy,
                            last_test_ok=True, config_values={"Company": "Fake AS"},
                            secrets_encrypted=crypto.encrypt_json({"ApiKey": "k"}))
    db.session.add(connection)
    db.session.flush()
    searchable = {t: [f["FieldKey"] for f in FIELDS[t] if f["FieldType"] == "Text"] for t in actor_types}
    apply_catalogue(connection, Catalogue({t: (FIELDS[t], searchable[t]) for t in actor_types}))
    countries = {item.name: item.id for item in db.session.scalars(
        select(ListItem).where(ListItem.list_name == CrmList.COUNTRY))}
    for config in connection.actor_types:
        config.is_active = True
        for erp_field in config.fields:
            wanted = mappings.get(config.erp_actor_type, {})
            if erp_field.field_key in wanted:
                erp_field.crm_field = wanted[erp_field.field_key]
                to_crm, to_erp = directions.get(erp_field.field_key, (True, True))
                erp_field.sync_to_crm, erp_field.sync_to_erp = to_crm, to_erp
                if erp_field.field_key == "country":
                    for key, text in COUNTRIES.items():
                        erp_field.list_mappings.append(ListItemMapping(erp_item_key=key, erp_item_text=text,
                                                                       crm_item_id=countries.get(text)))
            else:
                erp_field.crm_field = None
                erp_field.sync_to_crm = erp_field.sync_to_erp = False
    from portal.services.sync_settings import ensure_in_priority

    ensure_in_priority(connection.id)
    db.session.commit()
    return connection.id


def mapped_field(erp_key: str, erp_type: str, crm_key: str, crm_type: str,
                 list_map: dict | None = None) -> fieldmap.MappedField:
    """A plain two-way MappedField (labels = keys, no max lengths, not read-only) for the fast-path tests."""
    return fieldmap.MappedField(erp_key=erp_key, erp_type=erp_type, erp_label=erp_key, erp_max_length=0,
                                crm_key=crm_key, crm_type=crm_type, crm_label=crm_key, crm_max_length=0,
                                to_crm=True, to_erp=True, read_only=False, list_map=list_map or {})


def country_id(name: str) -> int:
    return db.session.scalar(select(ListItem.id).where(ListItem.list_name == CrmList.COUNTRY, ListItem.name == name))


def erp_values_for(crm_values: dict) -> dict:
    """The ERP FieldValues that equal a company's CRM values under COMPANY_MAPPING."""
    names = {v: k for k, v in COUNTRIES.items()}
    result = {}
    for erp_key, crm_key in COMPANY_MAPPING.items():
        if crm_key not in crm_values:
            continue
        value = crm_values[crm_key]
        if erp_key == "country":
            item = db.session.get(ListItem, value) if value else None
            result[erp_key] = names.get(item.name) if item else None
        elif erp_key == "creditlimit":
            result[erp_key] = float(value) if value else None
        elif erp_key == "employees":
            result[erp_key] = int(value) if value else None
        else:
            result[erp_key] = value or None
    return result


def link_company(fake, connection_id: int, *, actor_type: str = "Customer", erp_key: str | None = None,
                 **crm_values) -> tuple[int, str, int]:
    """A company and an ERP actor with the same values, linked with an agreed base (as after a sync).
    Returns (company id, ErpKey, link id)."""
    crm_values.setdefault("name", "Acme AS")
    company = Company(**crm_values)
    db.session.add(company)
    db.session.flush()
    key = erp_key or fake.add_actor(actor_type, erp_values_for(crm_values))
    if erp_key is not None and fake.get_actor(actor_type, erp_key) is None:
        fake.add_actor(actor_type, erp_values_for(crm_values), erp_key=erp_key)
    actor = fake.get_actor(actor_type, key)
    connection = db.session.get(Connection, connection_id)
    config = connection.actor_type(actor_type)
    fields = fieldmap.mapped_fields(config, synced_only=True)
    erp_side, _ = fieldmap.erp_side(actor["FieldValues"], fields)
    crm_side, _ = fieldmap.crm_side(company, fields, erp_side)
    assert crm_side == erp_side, (crm_side, erp_side)
    link = Link(connection_id=connection_id, crm_type=config.crm_type, crm_id=company.id, erp_actor_type=actor_type,
                erp_key=key, erp_last_modified=actor["LastModified"], base=crm_side, status="ok",
                last_synced_at=utcnow(), crm_synced_at=company.updated_at, last_result="Linked")
    db.session.add(link)
    cursors = dict(connection.cursors or {})
    cursors[actor_type] = actor["LastModified"]
    connection.cursors = cursors
    db.session.commit()
    return company.id, key, link.id


def run(connection_id: int, kind: str = RunKind.SYNC, **options) -> engine.RunOutcome:
    the_run, created = runs.request_run(connection_id, kind=kind, trigger="cli", requested_by="test",
                                        options=options)
    assert created, "another run is active"
    return engine.execute_run(the_run.id)


def company(company_id: int) -> Company:
    db.session.expire_all()
    return db.session.get(Company, company_id)


def changes(run_id: int | None = None, **where) -> list[SyncChange]:
    stmt = select(SyncChange).order_by(SyncChange.id)
    if run_id is not None:
        stmt = stmt.where(SyncChange.run_id == run_id)
    for key, value in where.items():
        stmt = stmt.where(getattr(SyncChange, key) == value)
    return list(db.session.scalars(stmt))


def get_run(run_id: int) -> SyncRun:
    db.session.expire_all()
    return db.session.get(SyncRun, run_id)


def get_link(link_id: int) -> Link:
    db.session.expire_all()
    return db.session.get(Link, link_id)


def edit_company(company_id: int, **values) -> None:
    record = db.session.get(Company, company_id)
    for key, value in values.items():
        setattr(record, key, value)
    db.session.commit()


def run_request(connection_id: int, kind: str = RunKind.SYNC, **options) -> int:
    """Queue a run (trigger 'cli') and return its id, without executing it."""
    the_run, created = runs.request_run(connection_id, kind=kind, trigger="cli", requested_by="test",
                                        options=options)
    assert created, "another run is active"
    return the_run.id

"""Connectors, connections and their cached connector metadata, mappings and defaults (spec §1, §3.7)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import JSON, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.extensions import db
from portal.models.base import TimestampMixin
from portal.models.crm import CrmType

ZERO_GUID = "00000000-0000-0000-0000-000000000000"
CRM_PRIORITY_ID = 0  # the CRM's own entry in the sync-priority list (SuperOffice's ConnectionRank '0')


class ActorType(StrEnum):
    CUSTOMER = "Customer"
    SUPPLIER = "Supplier"
    PARTNER = "Partner"
    PERSON = "Person"
    PROJECT = "Project"


# Which CRM record an ERP actor type links to (spec §1.7).
ACTOR_CRM_TYPE: dict[str, CrmType] = {
    ActorType.CUSTOMER: CrmType.COMPANY,
    ActorType.SUPPLIER: CrmType.COMPANY,
    ActorType.PARTNER: CrmType.COMPANY,
    ActorType.PERSON: CrmType.CONTACT,
    ActorType.PROJECT: CrmType.PROJECT,
}


class FieldType(StrEnum):
    CHECKBOX = "Checkbox"
    TEXT = "Text"
    PASSWORD = "Password"
    INTEGER = "Integer"
    DOUBLE = "Double"
    LIST = "List"
    DATE = "Date"
    LABEL = "Label"


class FieldAccess(StrEnum):
    NORMAL = "Normal"
    MANDATORY = "Mandatory"
    READ_ONLY = "ReadOnly"


class ConflictPolicy(StrEnum):
    PRIORITY = "priority"  # the side higher on the Set sync priority list wins
    NEWEST = "newest"  # the most recent change wins
    CRM = "crm"
    ERP = "erp"


CONFLICT_POLICY_LABELS = {
    ConflictPolicy.PRIORITY: "Sync priority decides",
    ConflictPolicy.NEWEST: "Most recent change wins",
    ConflictPolicy.CRM: "CRM wins",
    ConflictPolicy.ERP: "ERP wins",
}


class SyncSettings(db.Model):
    """The single row of global sync settings (SuperOffice's ErpConfiguration)."""

    __tablename__ = "sync_settings"

    id: Mapped[int] = mapped_column(primary_key=True)
    auto_sync: Mapped[bool] = mapped_column(default=True)
    interval_seconds: Mapped[int] = mapped_column(default=300)
    # Ordered connection ids, highest priority first; CRM_PRIORITY_ID (0) is the CRM itself.
    priority: Mapped[list] = mapped_column(JSON, default=lambda: [CRM_PRIORITY_ID])
    log_retention_days: Mapped[int] = mapped_column(default=90)
    next_due_at: Mapped[datetime | None] = mapped_column()
    # The scheduled reconcile (portal.services.sync.reconcile): every this many hours (0 = Off), the slots
    # anchored at this hour (UTC). Default: every night at 02:00 UTC.
    reconcile_every_hours: Mapped[int] = mapped_column(default=24, server_default="24")
    reconcile_hour: Mapped[int] = mapped_column(default=2, server_default="2")


class Connector(TimestampMixin, db.Model):
    __tablename__ = "connector"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(120))
    url: Mapped[str] = mapped_column(String(1023))
    # Optional bearer token, encrypted with portal.security.crypto; never rendered.
    token_encrypted: Mapped[str | None] = mapped_column(Text)
    deleted: Mapped[bool] = mapped_column(default=False)

    connections: Mapped[list[Connection]] = relationship(back_populates="connector")

    def __repr__(self) -> str:
        return f"<Connector {self.id} {self.name}>"


class Connection(TimestampMixin, db.Model):
    """An ERP connection: a connector plus configuration (SuperOffice's ErpConnection)."""

    __tablename__ = "connection"

    id: Mapped[int] = mapped_column(primary_key=True)
    connector_id: Mapped[int] = mapped_column(ForeignKey("connector.id"), index=True)
    name: Mapped[str] = mapped_column(String(120))
    description: Mapped[str] = mapped_column(Text, default="")
    # Identity toward the connector: generated on first save, never the database id.
    guid: Mapped[str] = mapped_column(String(36), unique=True)
    active: Mapped[bool] = mapped_column(default=False)
    deleted: Mapped[bool] = mapped_column(default=False)
    all_access: Mapped[bool] = mapped_column(default=True)
    # With all_access: may everyone also create actors in the ERP (else only scoped users/groups marked so)?
    all_can_create: Mapped[bool] = mapped_column(default=True)
    # Config values by FieldKey, JSON-native; Password-type values live only in secrets_encrypted.
    config_values: Mapped[dict] = mapped_column(JSON, default=dict)
    secrets_encrypted: Mapped[str | None] = mapped_column(Text)
    conflict_policy: Mapped[str] = mapped_column(String(16), default=ConflictPolicy.PRIORITY)
    last_test_ok: Mapped[bool] = mapped_column(default=False)
    last_test_at: Mapped[datetime | None] = mapped_column()
    last_test_message: Mapped[str] = mapped_column(Text, default="")
    # High-water mark of GetActorsByTimestamp (MostRecentTimestamp), per actor type: {ActorType: LastModified}.
    cursors: Mapped[dict] = mapped_column(JSON, default=dict)
    # The CRM side's mark, per actor type: {ActorType: ISO time} — records saved before it were synced (see
    # portal.services.sync.crm_changes); none yet means "look at every link".
    crm_cursors: Mapped[dict] = mapped_column(JSON, default=dict)
    fields_refreshed_at: Mapped[datetime | None] = mapped_column()
    # When this connection's next scheduled reconcile is due (None: not scheduled yet, the dispatcher picks the
    # next slot); moved on with a conditional UPDATE (portal.services.sync.reconcile.dispatch_due).
    reconcile_due_at: Mapped[datetime | None] = mapped_column()

    connector: Mapped[Connector] = relationship(back_populates="connections")
    access: Mapped[list[ConnectionAccess]] = relationship(
        back_populates="connection", cascade="all, delete-orphan"
    )
    actor_types: Mapped[list[ActorTypeConfig]] = relationship(
        back_populates="connection", cascade="all, delete-orphan", order_by="ActorTypeConfig.id"
    )

    def actor_type(self, erp_actor_type: str) -> ActorTypeConfig | None:
        for item in self.actor_types:
            if item.erp_actor_type == erp_actor_type:
                return item
        return None

    def __repr__(self) -> str:
        return f"<Connection {self.id} {self.name}>"


class ConnectionAccess(db.Model):
    """Scope entry: a user or a group, with what they may do (ErpConnectionAccess)."""

    __tablename__ = "connection_access"
    __table_args__ = (
        UniqueConstraint("connection_id", "user_id", "group_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    connection_id: Mapped[int] = mapped_column(ForeignKey("connection.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("user.id", ondelete="CASCADE"))
    group_id: Mapped[int | None] = mapped_column(ForeignKey("user_group.id", ondelete="CASCADE"))
    can_connect: Mapped[bool] = mapped_column(default=True)
    can_create: Mapped[bool] = mapped_column(default=False)

    connection: Mapped[Connection] = relationship(back_populates="access")
    user = relationship("User")
    group = relationship("UserGroup")


class ActorTypeConfig(db.Model):
    """An ERP actor type a connection supports, and whether it syncs (ErpConnectionActorType)."""

    __tablename__ = "actor_type_config"
    __table_args__ = (UniqueConstraint("connection_id", "erp_actor_type"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    connection_id: Mapped[int] = mapped_column(ForeignKey("connection.id", ondelete="CASCADE"), index=True)
    erp_actor_type: Mapped[str] = mapped_column(String(16))
    crm_type: Mapped[str] = mapped_column(String(16))
    # The "Sync ERP <actor> to CRM <record>" switch.
    is_active: Mapped[bool] = mapped_column(default=False)
    # False once the connector stopped listing this actor type.
    supported: Mapped[bool] = mapped_column(default=True)
    searchable_fields: Mapped[list] = mapped_column(JSON, default=list)
    # The name people see for this actor type on this connection ("Vendor" for Supplier), set by an admin on the
    # actor type's mapping tab; NULL = the standard name. May be multi-language (US:"Vendor";NO:"Leverandør").
    # The protocol gives only the constant (GetSupportedActorTypes), which stays what is stored and sent; see
    # portal/services/actor_labels.py and docs/decisions.md.
    label: Mapped[str | None] = mapped_column(String(120))

    connection: Mapped[Connection] = relationship(back_populates="actor_types")
    fields: Mapped[list[ErpField]] = relationship(
        back_populates="actor_type", cascade="all, delete-orphan", order_by="ErpField.rank"
    )


class ErpField(db.Model):
    """One ERP field of an actor type: cached connector metadata + mapping + defaults + rank (ErpField)."""

    __tablename__ = "erp_field"
    __table_args__ = (UniqueConstraint("actor_type_id", "field_key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    actor_type_id: Mapped[int] = mapped_column(ForeignKey("actor_type_config.id", ondelete="CASCADE"), index=True)
    # Connector metadata (FieldMetadataInfo), refreshed by "Refresh fields".
    field_key: Mapped[str] = mapped_column(String(120))
    display_name: Mapped[str] = mapped_column(String(200), default="")
    description: Mapped[str] = mapped_column(Text, default="")
    field_type: Mapped[str] = mapped_column(String(16), default=FieldType.TEXT)
    list_name: Mapped[str] = mapped_column(String(120), default="")
    meta_default: Mapped[str] = mapped_column(Text, default="")
    max_length: Mapped[int] = mapped_column(default=0)
    access: Mapped[str] = mapped_column(String(16), default=FieldAccess.NORMAL)
    connector_rank: Mapped[int] = mapped_column(default=0)
    missing_in_erp: Mapped[bool] = mapped_column(default=False)
    # Mapping.
    crm_field: Mapped[str | None] = mapped_column(String(64))
    sync_to_crm: Mapped[bool] = mapped_column(default=False)
    sync_to_erp: Mapped[bool] = mapped_column(default=False)
    show_in_gui: Mapped[bool] = mapped_column(default=False)
    show_in_search: Mapped[bool] = mapped_column(default=False)
    rank: Mapped[int] = mapped_column(default=0)
    # Defaults for a newly created ERP actor.
    has_default: Mapped[bool] = mapped_column(default=False)
    default_value: Mapped[object | None] = mapped_column(JSON)
    ask_user: Mapped[bool] = mapped_column(default=False)
    mandatory: Mapped[bool] = mapped_column(default=False)

    actor_type: Mapped[ActorTypeConfig] = relationship(back_populates="fields")
    list_mappings: Mapped[list[ListItemMapping]] = relationship(
        back_populates="erp_field", cascade="all, delete-orphan"
    )

    @property
    def read_only(self) -> bool:
        return self.access == FieldAccess.READ_ONLY

    @property
    def connector_mandatory(self) -> bool:
        return self.access == FieldAccess.MANDATORY


class ListItemMapping(db.Model):
    """ERP list item -> CRM list item, for one mapped list field (ErpListItemMapping)."""

    __tablename__ = "list_item_mapping"
    __table_args__ = (UniqueConstraint("erp_field_id", "erp_item_key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    erp_field_id: Mapped[int] = mapped_column(ForeignKey("erp_field.id", ondelete="CASCADE"), index=True)
    erp_item_key: Mapped[str] = mapped_column(String(120))
    erp_item_text: Mapped[str] = mapped_column(String(200), default="")
    crm_item_id: Mapped[int | None] = mapped_column(ForeignKey("list_item.id", ondelete="SET NULL"))

    erp_field: Mapped[ErpField] = relationship(back_populates="list_mappings")

"""Links between CRM records and ERP actors, sync runs (the queue) and the field-level change log."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import JSON, ForeignKey, Index, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.database import utcnow
from portal.extensions import db
from portal.models.base import TimestampMixin


class LinkStatus(StrEnum):
    OK = "ok"
    BROKEN = "broken"  # the ERP no longer returns the actor (deleted in the ERP)


class Link(TimestampMixin, db.Model):
    """A CRM record linked to an ERP actor on one connection (ErpInternalKey + ErpExternalKey)."""

    __tablename__ = "link"
    __table_args__ = (
        UniqueConstraint("connection_id", "crm_type", "crm_id", name="uq_link_crm_record"),
        UniqueConstraint("connection_id", "erp_actor_type", "erp_key", name="uq_link_erp_actor"),
        # Every sync of a record rewrites its link, and none of the columns it writes is indexed: with room left
        # on each page PostgreSQL updates the row in place (a HOT update) instead of adding an entry to all six
        # indexes — 2,000 link updates 0.083 s at 80 against 0.129 s on full pages (bench/README.md)
        {"postgresql_with": {"fillfactor": 80}},
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    connection_id: Mapped[int] = mapped_column(ForeignKey("connection.id", ondelete="CASCADE"), index=True)
    crm_type: Mapped[str] = mapped_column(String(16))
    crm_id: Mapped[int] = mapped_column()
    erp_actor_type: Mapped[str] = mapped_column(String(16))
    erp_key: Mapped[str] = mapped_column(String(255))
    parent_erp_key: Mapped[str | None] = mapped_column(String(255))
    erp_last_modified: Mapped[str | None] = mapped_column(String(64))
    # The values both sides agreed on at the last sync, by ERP field key, in ERP (JSON-native) form:
    # the base of the three-way merge.
    base: Mapped[dict] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(16), default=LinkStatus.OK)
    status_message: Mapped[str] = mapped_column(Text, default="")
    last_synced_at: Mapped[datetime | None] = mapped_column()
    # The CRM record's updated_at as of the last sync: a later updated_at means "changed in the CRM".
    crm_synced_at: Mapped[datetime | None] = mapped_column()
    last_result: Mapped[str] = mapped_column(Text, default="")
    # Set when the last sync of this record failed: from this time on the engine retries it in full (both sides
    # read again), with a growing delay; cleared by the next successful sync of the record.
    retry_at: Mapped[datetime | None] = mapped_column(index=True)
    failures: Mapped[int] = mapped_column(default=0)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id", ondelete="SET NULL"))
    # The import run that made this link (issue #18, undo of an import): stamped when an import creates or
    # re-points the link (portal.services.import_undo). Not a foreign key, like SyncChange.link_id.
    import_run_id: Mapped[int | None] = mapped_column(index=True)
    # Not indexed (unlike TimestampMixin's): nothing looks links up by it, and the engine rewrites it for every
    # link it syncs.
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow, nullable=False)

    connection = relationship("Connection")


class RunStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    PARTIAL = "partial"
    FAILED = "failed"


ACTIVE_RUN_STATUSES = (RunStatus.QUEUED, RunStatus.RUNNING)


class RunKind(StrEnum):
    SYNC = "sync"  # incremental, both ways
    RECORD = "record"  # Sync now on one record
    RESYNC_FROM_CRM = "resync_from_crm"
    RESYNC_FROM_ERP = "resync_from_erp"
    IMPORT = "import"
    RECONCILE = "reconcile"  # every link read with GetActors and merged (drift repaired), docs/sync-engine.md


class SyncRun(db.Model):
    """One sync of one connection: the database is the queue, this row is the job."""

    __tablename__ = "sync_run"
    __table_args__ = (
        # At most one queued-or-running run per connection, enforced by the database.
        Index(
            "uq_sync_run_one_active",
            "connection_id",
            unique=True,
            sqlite_where=text("status IN ('queued', 'running')"),
            postgresql_where=text("status IN ('queued', 'running')"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    connection_id: Mapped[int] = mapped_column(ForeignKey("connection.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(24), default=RunKind.SYNC)
    trigger: Mapped[str] = mapped_column(String(16), default="schedule")  # schedule|manual|user|cli
    requested_by_id: Mapped[int | None] = mapped_column(ForeignKey("user.id", ondelete="SET NULL"))
    requested_by_label: Mapped[str] = mapped_column(String(254), default="")
    status: Mapped[str] = mapped_column(String(16), default=RunStatus.QUEUED, index=True)
    options: Mapped[dict] = mapped_column(JSON, default=dict)
    progress_done: Mapped[int] = mapped_column(default=0)
    progress_total: Mapped[int] = mapped_column(default=0)
    counts: Mapped[dict] = mapped_column(JSON, default=dict)
    message: Mapped[str] = mapped_column(Text, default="")
    error: Mapped[str] = mapped_column(Text, default="")
    connector_seconds: Mapped[float] = mapped_column(default=0.0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    started_at: Mapped[datetime | None] = mapped_column()
    heartbeat_at: Mapped[datetime | None] = mapped_column()
    finished_at: Mapped[datetime | None] = mapped_column()
    # The process that claimed the run (or queued it to execute it itself): "host:pid/pid-namespace", set by
    # runs.claim. A run whose owner is on this host and whose pid is gone is reaped at once (runs.reap_stale).
    worker: Mapped[str | None] = mapped_column(String(255))

    connection = relationship("Connection")
    requested_by = relationship("User")

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_RUN_STATUSES

    @property
    def duration_seconds(self) -> float | None:
        if self.started_at is None:
            return None
        end = self.finished_at or utcnow()
        return (end - self.started_at).total_seconds()


class SyncChange(db.Model):
    """The field-level change log (ErpSyncLog): every value the engine wrote, and every conflict."""

    __tablename__ = "sync_change"
    __table_args__ = (Index("ix_sync_change_record", "crm_type", "crm_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("sync_run.id", ondelete="CASCADE"), index=True)
    connection_id: Mapped[int] = mapped_column(ForeignKey("connection.id", ondelete="CASCADE"), index=True)
    # The link the change was made through. Deliberately not a foreign key: with one, every link deleted (a
    # disconnect, a deleted CRM record or connection) made the database look through the whole log for rows to
    # clear, a cost growing with the log's size. A log row outlives its link, like its keys and values do.
    link_id: Mapped[int | None] = mapped_column()
    crm_type: Mapped[str] = mapped_column(String(16))
    crm_id: Mapped[int] = mapped_column()
    erp_actor_type: Mapped[str] = mapped_column(String(16), default="")
    erp_key: Mapped[str] = mapped_column(String(255), default="")
    direction: Mapped[str] = mapped_column(String(8))  # to_crm | to_erp | error
    erp_field_key: Mapped[str] = mapped_column(String(120), default="")
    crm_field_key: Mapped[str] = mapped_column(String(64), default="")
    old_value: Mapped[str | None] = mapped_column(Text)
    new_value: Mapped[str | None] = mapped_column(Text)
    conflict: Mapped[bool] = mapped_column(default=False)
    # For conflicts: the losing value and the rule that settled it; for errors: the message.
    other_value: Mapped[str | None] = mapped_column(Text)
    rule: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class SyncJournal(db.Model):
    """The ERP writes of one batch, written (and committed) before its SaveActors is sent and deleted in the
    transaction that applies the batch. A row still here belongs to a run that stopped in between (the process was
    killed, the run reaped): the next run of the connection turns it into change-log rows, so a value overwritten
    in the ERP is always on record — the loser of a conflict included (docs/sync-engine.md, "Crash window")."""

    __tablename__ = "sync_journal"

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int | None] = mapped_column(ForeignKey("sync_run.id", ondelete="SET NULL"))
    connection_id: Mapped[int] = mapped_column(ForeignKey("connection.id", ondelete="CASCADE"), index=True)
    # The change-log rows the batch will write for its ERP side, as SyncChange columns (``at`` as ISO text).
    rows: Mapped[list] = mapped_column(JSON, default=list)
    at: Mapped[datetime] = mapped_column(default=utcnow)

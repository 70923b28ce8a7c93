"""What a run, or Sync now on one record, reports."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass
class ChangeLine:
    """A field written by a sync, for the screen: label, old and new value as text."""

    label: str
    old: str
    new: str

    def __iter__(self):  # so it unpacks as (label, old, new)
        return iter((self.label, self.old, self.new))


@dataclass
class ConflictLine:
    label: str
    crm_value: str
    erp_value: str
    winner: str  # 'CRM' or the connection's name
    rule: str


@dataclass
class RecordDetail:
    to_crm: list[ChangeLine] = field(default_factory=list)
    to_erp: list[ChangeLine] = field(default_factory=list)
    conflicts: list[ConflictLine] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    skipped_blank: list[str] = field(default_factory=list)
    outcome: str = ""


@dataclass
class RunOutcome:
    run_id: int
    connection_id: int | None = None
    kind: str = ""
    status: str = ""
    message: str = ""
    error: str = ""
    counts: dict = field(default_factory=dict)
    wrote_crm: bool = False
    started_at: datetime | None = None
    detail: RecordDetail | None = None
    warning: str | None = None


@dataclass
class RecordSyncResult:
    """What "Sync now" on one record did (``portal.services.sync.engine.sync_record``)."""

    run_id: int
    to_crm: list[ChangeLine]
    to_erp: list[ChangeLine]
    conflicts: list[ConflictLine]
    message: str
    ok: bool
    warning: str | None = None
    errors: list[str] = field(default_factory=list)
    broken: bool = False

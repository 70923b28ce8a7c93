"""Sync issues an admin chose to ignore (Settings → Sync → Issues; portal/services/sync_issues.py)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from portal.database import utcnow
from portal.extensions import db


class SyncIssueIgnore(db.Model):
    """"Ignore" on an open sync issue: the issue of this link is hidden from the inbox and the health counts while
    its error is the one ignored. ``fingerprint`` is the issue's error text as it was when ignored
    (``sync_issues.issue_text``); a different error shows the issue again. One row per link; deleted with the
    link."""

    __tablename__ = "sync_issue_ignore"

    id: Mapped[int] = mapped_column(primary_key=True)
    link_id: Mapped[int] = mapped_column(ForeignKey("link.id", ondelete="CASCADE"), unique=True)
    fingerprint: Mapped[str] = mapped_column(Text)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("user.id", ondelete="SET NULL"))
    user_label: Mapped[str] = mapped_column(String(254), default="")
    at: Mapped[datetime] = mapped_column(default=utcnow)

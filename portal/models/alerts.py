"""Alert rules: who is told, and how, when a connection turns failing or recovers, when its open sync issues pass
a threshold, and once a day (portal/services/alerts.py)."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Boolean, Date, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from portal.extensions import db
from portal.models.base import TimestampMixin


class AlertChannel:
    EMAIL = "email"
    WEBHOOK = "webhook"
    ALL = (EMAIL, WEBHOOK)


class AlertRule(TimestampMixin, db.Model):
    __tablename__ = "alert_rule"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(120))
    # None: every connection
    connection_id: Mapped[int | None] = mapped_column(ForeignKey("connection.id", ondelete="CASCADE"), index=True)
    channel: Mapped[str] = mapped_column(String(16), default=AlertChannel.EMAIL)
    recipients: Mapped[str] = mapped_column(Text, default="")  # e-mail addresses, one per line
    webhook_url: Mapped[str] = mapped_column(String(2000), default="")
    webhook_secret_encrypted: Mapped[str | None] = mapped_column(Text)  # Fernet; signs the webhook's body
    on_state_change: Mapped[bool] = mapped_column(Boolean, default=True)
    issue_threshold: Mapped[int | None] = mapped_column(Integer)  # None: no threshold alert
    daily_digest: Mapped[bool] = mapped_column(Boolean, default=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    last_digest_on: Mapped[date | None] = mapped_column(Date)
    digest_error: Mapped[str] = mapped_column(Text, default="")  # the last failed digest (audited once per text)

    connection = relationship("Connection")


class AlertState(db.Model):
    """What a rule last told about one connection: an alert goes out when this changes, never again for the same."""

    __tablename__ = "alert_state"

    rule_id: Mapped[int] = mapped_column(ForeignKey("alert_rule.id", ondelete="CASCADE"), primary_key=True)
    connection_id: Mapped[int] = mapped_column(ForeignKey("connection.id", ondelete="CASCADE"), primary_key=True)
    state: Mapped[str] = mapped_column(String(16), default="")
    issues_over: Mapped[bool] = mapped_column(Boolean, default=False)
    changed_at: Mapped[datetime | None] = mapped_column()
    last_error: Mapped[str] = mapped_column(Text, default="")  # the last failed delivery (audited once per text)
